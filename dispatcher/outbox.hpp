// The way out for replies: any thread (any actor) hands a reply and its return address to the
// outbox; the I/O thread, the only thread that touches the ROUTER sockets, takes everything
// queued in one swap and sends it. A reply costs its encoding and an append under a mutex; the
// I/O thread is woken (an eventfd it polls next to its sockets) only when the queue goes from
// empty to not empty, so a burst of replies costs one wake-up, not one per reply.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include "dispatcher/envelope.hpp"
#include "dispatcher/wake_signal.hpp"

namespace dispatch {

// Replies taken from the outbox in one go: the encoded bodies back to back in `bytes`.
struct reply_batch {
  struct entry {
    endpoint_kind endpoint = endpoint_kind::work;
    bool delimiter = false;
    std::string routing_id;
    std::size_t offset = 0;
    std::size_t size = 0;
  };
  std::string bytes;
  std::vector<entry> entries;

  void clear() {
    bytes.clear();
    entries.clear();
  }
};

class outbox {
 public:
  outbox() = default;
  outbox(const outbox&) = delete;
  outbox& operator=(const outbox&) = delete;

  void send(const peer_address& to, const protocol::reply& reply);
  void send(const peer_address& to, std::uint64_t request_id, protocol::reply_body body);

  // The file descriptor that becomes readable when replies are waiting (for zmq::poll).
  int wake_fd() const { return wake_.fd(); }
  // Replies are waiting, without a system call (a hint: may be stale by the time it is used).
  bool waiting() const { return waiting_.load(std::memory_order_relaxed); }
  // I/O thread: swaps every queued reply into `into` (cleared first; its capacity is kept for
  // the next swap, so steady traffic allocates nothing here) and resets the wake-up.
  void take(reply_batch& into);
  // After close() replies are dropped: nobody will send them (the I/O thread has stopped).
  void close();

 private:
  std::mutex mutex_;
  reply_batch queued_;   // guarded by mutex_
  std::string encoded_;  // reused encode buffer, guarded by mutex_
  bool closed_ = false;  // guarded by mutex_
  wake_signal wake_;
  std::atomic<bool> waiting_{false};  // queued_ is not empty
};

}  // namespace dispatch
