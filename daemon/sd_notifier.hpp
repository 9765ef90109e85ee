// sd_notifier: mxpuppetd's side of the systemd service protocol through libsystemd:
// READY=1, periodic STATUS= lines, WATCHDOG=1 keep-alives at half of WatchdogSec,
// STOPPING=1; and the socket passed by socket activation (LISTEN_FDS).
// Header-only: the daemon is the only user.
#pragma once

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

namespace mxp::daemon {

// The listening socket systemd passed (mxpuppetd.socket), if any. Throws when what was
// passed is not exactly one AF_UNIX stream socket in listening state.
inline std::optional<int> socket_from_systemd() {
  const int n = sd_listen_fds(1);  // unsets LISTEN_* so children do not inherit them
  if (n < 0) throw std::runtime_error("sd_listen_fds failed");
  if (n == 0) return std::nullopt;
  if (n != 1)
    throw std::runtime_error("socket activation passed " + std::to_string(n) +
                             " sockets; expected 1");
  const int fd = SD_LISTEN_FDS_START;
  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) <= 0)
    throw std::runtime_error(
        "socket activation passed a socket that is not a listening AF_UNIX stream socket");
  return fd;
}

class sd_notifier {
 public:
  // `status` renders the STATUS= text (session counts); called on the io thread.
  sd_notifier(boost::asio::any_io_executor executor, std::function<std::string()> status)
      : timer_(std::move(executor)), status_(std::move(status)) {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    enabled_ = socket && *socket;
    std::uint64_t usec = 0;
    if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
      watchdog_interval_ = std::chrono::microseconds{usec / 2};
  }

  bool watchdog_enabled() const noexcept { return watchdog_interval_.has_value(); }

  void ready() {
    if (!enabled_) return;
    last_status_ = status_();
    notify("READY=1\nSTATUS=" + last_status_);
  }

  void stopping() {
    stopped_ = true;
    timer_.cancel();
    if (enabled_) notify("STOPPING=1\nSTATUS=shutting down");
  }

  // Sends WATCHDOG=1 every WatchdogSec/2 (from the io thread, so a stuck loop stops the
  // pings) and STATUS= when it changed, until stopping(). Returns at once outside systemd.
  boost::asio::awaitable<void> run() {
    if (!enabled_) co_return;
    constexpr std::chrono::microseconds status_period = std::chrono::seconds{5};
    const auto period =
        watchdog_interval_ ? std::min(*watchdog_interval_, status_period) : status_period;
    if (watchdog_interval_)
      spdlog::info(
          "systemd watchdog enabled: keep-alive every {} ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_interval_).count());
    while (!stopped_) {
      timer_.expires_after(period);
      boost::system::error_code ec;
      co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (stopped_) break;
      if (watchdog_interval_) notify("WATCHDOG=1");
      if (auto s = status_(); s != last_status_) {
        last_status_ = std::move(s);
        notify("STATUS=" + last_status_);
      }
    }
  }

 private:
  static void notify(const std::string& state) {
    if (const int rc = sd_notify(0, state.c_str()); rc < 0)
      spdlog::warn("sd_notify failed: error {}", -rc);
  }

  boost::asio::steady_timer timer_;
  std::function<std::string()> status_;
  std::optional<std::chrono::microseconds> watchdog_interval_;
  std::string last_status_;
  bool enabled_ = false;
  bool stopped_ = false;
};

}  // namespace mxp::daemon
