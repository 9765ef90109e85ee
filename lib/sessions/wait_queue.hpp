// wait_queue: coroutines wait here, each with its own deadline on the pool's
// session_clock, until someone calls notify_all()/notify_one(). Single-threaded (one
// io_context thread), no locks.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sessions/session_clock.hpp"

namespace mxp::sessions {

class wait_queue {
 public:
  explicit wait_queue(session_clock& clock) : clock_(&clock) {}
  wait_queue(const wait_queue&) = delete;
  wait_queue& operator=(const wait_queue&) = delete;
  ~wait_queue() { notify_all(); }

  // True when notified, false when steady time `deadline_ms` came (or the wait was cancelled)
  // first. session_clock::never_ms: no deadline.
  boost::asio::awaitable<bool> wait(std::int64_t deadline_ms);
  void notify_all() noexcept;
  void notify_one() noexcept;
  std::size_t waiting() const noexcept { return waiters_.size(); }

 private:
  struct waiter;
  session_clock* clock_;
  std::vector<waiter*> waiters_;
};

}  // namespace mxp::sessions
