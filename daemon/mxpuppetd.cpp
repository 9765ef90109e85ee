// mxpuppetd: parse arguments, load the config, build the daemon (lib/app), run the io_context on
// one thread, reload on SIGHUP and stop cleanly on SIGTERM/SIGINT.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "app/daemon.hpp"
#include "config/config.hpp"
#include "sd_notifier.hpp"

namespace asio = boost::asio;

namespace {

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: mxpuppetd -c CONFIG [--check-config]\n"
               "  -c, --config FILE   YAML configuration (default /etc/mxpuppetd/config.yaml)\n"
               "      --check-config  validate the configuration and exit (0 valid, 2 invalid)\n"
               "      --version       print the version\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "/etc/mxpuppetd/config.yaml";
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--version") {
      std::printf("mxpuppetd %s\n", MXP_VERSION);
      return 0;
    } else if (arg == "-h" || arg == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "mxpuppetd: unknown argument '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }

  auto loaded = mxp::config::load_config_file(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "mxpuppetd: %zu configuration error(s); not starting\n",
                 loaded.errors.size());
    return 2;
  }
  if (check_only) {
    for (const auto& w : loaded.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("%s: configuration is valid (%zu homeserver(s))\n", config_path.c_str(),
                loaded.config->homeservers.size());
    return 0;
  }
  mxp::app::configure_logging(loaded.config->log);
  for (const auto& w : loaded.warnings) spdlog::warn("{}", w);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    // One thread runs everything; the reactor needs no locks (resolver threads only post to the
    // scheduler).
    asio::io_context io{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
    const int adopt_fd = mxp::daemon::socket_from_systemd().value_or(-1);  // mxpuppetd.socket
    mxp::app::daemon daemon{io.get_executor(), std::move(*loaded.config), adopt_fd};
    mxp::daemon::sd_notifier notifier{io.get_executor(), [&daemon] { return daemon.status(); }};

    asio::signal_set signals{io, SIGINT, SIGTERM, SIGHUP};
    auto on_signals = [&]() -> asio::awaitable<void> {
      for (;;) {
        boost::system::error_code ec;
        const int sig = co_await signals.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        if (sig == SIGHUP) {
          daemon.reload();
          continue;
        }
        spdlog::info("{}: shutting down (grace {} ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                     daemon.config().shutdown_grace.count());
        notifier.stopping();
        co_await daemon.shutdown();
        signals.cancel();
        co_return;
      }
    };
    daemon.start();
    asio::co_spawn(io, on_signals(), mxp::app::log_on_failure{"signal handling"});
    notifier.ready();
    asio::co_spawn(io, notifier.run(), mxp::app::log_on_failure{"systemd notifications"});
    spdlog::info("mxpuppetd {} ready: {} homeserver(s), socket {}", MXP_VERSION,
                 daemon.config().homeservers.size(), daemon.config().listen.unix_socket);
    io.run();
    spdlog::info("stopped");
  } catch (const std::exception& e) {
    spdlog::critical("mxpuppetd: {}", e.what());
    std::fprintf(stderr, "mxpuppetd: %s\n", e.what());
    return 1;
  }
  return 0;
}
