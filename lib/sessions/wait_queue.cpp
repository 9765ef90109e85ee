// wait_queue: each waiter parks on its own steady_timer armed by the clock at its
// deadline; a notification cancels the timer and marks the waiter as notified.
#include "sessions/wait_queue.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace mxp::sessions {

namespace asio = boost::asio;

struct wait_queue::waiter {
  asio::steady_timer timer;
  bool notified = false;
};

asio::awaitable<bool> wait_queue::wait(std::int64_t deadline_ms) {
  waiter w{asio::steady_timer{co_await asio::this_coro::executor}};
  clock_->arm(w.timer, deadline_ms);
  waiters_.push_back(&w);
  // Unregisters on every exit path, including destruction of a suspended coroutine.
  struct unregister {
    std::vector<waiter*>& list;
    waiter* self;
    session_clock* clock;
    ~unregister() {
      clock->disarm(self->timer);
      if (auto it = std::find(list.begin(), list.end(), self); it != list.end()) list.erase(it);
    }
  } guard{waiters_, &w, clock_};
  boost::system::error_code ec;
  co_await w.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return w.notified;
}

void wait_queue::notify_all() noexcept {
  auto woken = std::move(waiters_);
  waiters_.clear();
  for (auto* w : woken) {
    w->notified = true;
    w->timer.cancel();
  }
}

void wait_queue::notify_one() noexcept {
  if (waiters_.empty()) return;
  auto* w = waiters_.front();
  waiters_.erase(waiters_.begin());
  w->notified = true;
  w->timer.cancel();
}

}  // namespace mxp::sessions
