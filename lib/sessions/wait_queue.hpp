// wait_queue: coroutines wait here, each with its own deadline, until someone
// calls notify_all()/notify_one(). Single-threaded (one io_context thread), no locks.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <vector>

namespace mxp::sessions {

class wait_queue {
 public:
  wait_queue() = default;
  wait_queue(const wait_queue&) = delete;
  wait_queue& operator=(const wait_queue&) = delete;
  ~wait_queue() { notify_all(); }

  // True when notified, false when the deadline passed (or the wait was cancelled) first.
  boost::asio::awaitable<bool> wait(std::chrono::steady_clock::time_point deadline);
  void notify_all() noexcept;
  void notify_one() noexcept;
  std::size_t waiting() const noexcept { return waiters_.size(); }

 private:
  struct waiter;
  std::vector<waiter*> waiters_;
};

}  // namespace mxp::sessions
