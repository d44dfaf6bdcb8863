#include "dispatcher/peer_limiter.hpp"

#include <algorithm>

namespace dispatch {

admission peer_limiter::admit(std::string_view peer, clock::time_point now) {
  if (now >= next_sweep_) forget_idle(now);
  key_.assign(peer.data(), peer.size());
  auto it = peers_.find(key_);
  // At least one message fits the bucket, or a rate below 1/s would admit nothing ever.
  const double burst = std::max(limits_.rate, 1.0);
  if (it == peers_.end()) {
    if (peers_.size() >= limits_.max_peers) return admission::too_many_peers;
    it = peers_.emplace(key_, bucket{burst, now}).first;
  }
  bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.last).count();
  b.last = now;
  if (limits_.rate <= 0) return admission::admitted;
  // Token bucket: refills at `rate` per second up to one second's worth.
  b.tokens = std::min(burst, b.tokens + elapsed * limits_.rate);
  if (b.tokens < 1) return admission::rate_limited;
  b.tokens -= 1;
  return admission::admitted;
}

void peer_limiter::forget_idle(clock::time_point now) {
  // A sweep walks the whole table, so it runs at most once a second (amortised O(1) a message).
  next_sweep_ = now + std::chrono::seconds(1);
  for (auto it = peers_.begin(); it != peers_.end();)
    it = now - it->second.last > limits_.idle ? peers_.erase(it) : std::next(it);
}

}  // namespace dispatch
