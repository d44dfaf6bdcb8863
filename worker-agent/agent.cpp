#include "worker-agent/agent.hpp"

#include <unistd.h>

#include <array>
#include <map>
#include <stdexcept>

#include "worker-agent/agent_loop.hpp"
#include "worker-agent/stop_signal.hpp"

namespace dispatch::worker {
namespace {

constexpr std::size_t max_name_length = 128;  // protocol limit on worker ids and type names

std::string default_worker_id() {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0 || host[0] == '\0')
    return "worker-" + std::to_string(::getpid());
  return std::string(host.data()) + "-" + std::to_string(::getpid());
}

void validate(const agent_options& o, const std::string& id) {
  if (o.endpoint.empty()) throw std::invalid_argument("endpoint must not be empty");
  if (id.empty() || id.size() > max_name_length)
    throw std::invalid_argument("worker id must be 1.." + std::to_string(max_name_length) +
                                " bytes");
  if (o.capacity < 1) throw std::invalid_argument("capacity must be at least 1");
  if (o.fetch_wait < std::chrono::milliseconds(0) || o.fetch_wait > std::chrono::seconds(60))
    throw std::invalid_argument("fetch wait must be between 0 and 60s");
  if (o.reconnect_min <= std::chrono::milliseconds(0) || o.reconnect_max < o.reconnect_min)
    throw std::invalid_argument("reconnect backoff needs 0 < min <= max");
}

}  // namespace

struct agent::impl {
  agent_options options;
  std::string id;
  std::map<std::string, handler> handlers;
  stop_signal stop;
};

agent::agent(agent_options options) : impl_(std::make_unique<impl>()) {
  impl_->id = options.id.empty() ? default_worker_id() : options.id;
  validate(options, impl_->id);
  impl_->options = std::move(options);
}

agent::~agent() = default;

void agent::add_handler(std::string type, handler h) {
  if (type.empty() || type.size() > max_name_length)
    throw std::invalid_argument("handler type must be 1.." + std::to_string(max_name_length) +
                                " bytes");
  if (!h) throw std::invalid_argument("handler for type '" + type + "' is empty");
  impl_->handlers.insert_or_assign(std::move(type), std::move(h));
}

int agent::run() {
  // Serve exactly the requested types, each of which needs a handler.
  std::map<std::string, handler> served;
  if (impl_->options.types.empty()) {
    served = impl_->handlers;
  } else {
    for (const auto& type : impl_->options.types) {
      const auto it = impl_->handlers.find(type);
      if (it == impl_->handlers.end())
        throw std::invalid_argument("no handler for type '" + type + "'");
      served.emplace(type, it->second);
    }
  }
  if (served.empty()) throw std::invalid_argument("no handler registered: nothing to serve");

  agent_loop loop(impl_->options, impl_->id, std::move(served), impl_->stop);
  return loop.run();
}

void agent::stop() noexcept { impl_->stop.request(); }

const std::string& agent::id() const noexcept { return impl_->id; }

}  // namespace dispatch::worker
