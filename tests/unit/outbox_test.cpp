// The outbox replies leave the actors through: its queue, its eventfd wake-up and the flag the
// serving thread checks between jobs.
#include <poll.h>

#include <catch2/catch.hpp>

#include "dispatcher/outbox.hpp"
#include "protocol/codec.hpp"

namespace {

using dispatch::outbox;
using dispatch::peer_address;
using dispatch::reply_batch;

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

}  // namespace

TEST_CASE("outbox queues replies in order and signals them until they are taken") {
  outbox box;
  CHECK_FALSE(box.waiting());
  CHECK_FALSE(readable(box.wake_fd()));

  box.send(peer_address{dispatch::endpoint_kind::work, "a", false}, 1, dispatch::protocol::ok{});
  box.send(peer_address{dispatch::endpoint_kind::admin, "b", true}, 2, dispatch::protocol::ok{});
  CHECK(box.waiting());
  CHECK(readable(box.wake_fd()));

  reply_batch taken;
  box.take(taken);
  CHECK_FALSE(box.waiting());
  CHECK_FALSE(readable(box.wake_fd()));
  REQUIRE(taken.entries.size() == 2);
  CHECK(taken.entries[0].routing_id == "a");
  CHECK(taken.entries[0].endpoint == dispatch::endpoint_kind::work);
  CHECK_FALSE(taken.entries[0].delimiter);
  CHECK(taken.entries[1].routing_id == "b");
  CHECK(taken.entries[1].endpoint == dispatch::endpoint_kind::admin);
  CHECK(taken.entries[1].delimiter);
  dispatch::protocol::reply first;
  dispatch::protocol::decode_failure why;
  REQUIRE(dispatch::protocol::decode(
      std::string_view(taken.bytes).substr(taken.entries[0].offset, taken.entries[0].size), first,
      why));
  CHECK(first.id == 1);
  CHECK(std::holds_alternative<dispatch::protocol::ok>(first.body));

  // Taken empty: the next reply signals again.
  box.send(peer_address{dispatch::endpoint_kind::work, "c", false}, 3, dispatch::protocol::ok{});
  CHECK(box.waiting());
  CHECK(readable(box.wake_fd()));
}

TEST_CASE("a closed outbox drops replies") {
  outbox box;
  box.send(peer_address{dispatch::endpoint_kind::work, "a", false}, 1, dispatch::protocol::ok{});
  box.close();
  CHECK_FALSE(box.waiting());
  box.send(peer_address{dispatch::endpoint_kind::work, "a", false}, 2, dispatch::protocol::ok{});
  reply_batch taken;
  box.take(taken);
  CHECK(taken.entries.empty());
  CHECK(taken.bytes.empty());
}
