// mxpuppet-fakehs: the test suite's fake Matrix homeserver as a stand-alone
// process, for the demo script and manual testing. Runs until SIGINT/SIGTERM.
#include <pthread.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/fake_homeserver.hpp"

namespace {

void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --port N --server-name NAME --secret-file PATH [--latency-ms N]\n"
               "          [--tls-cert PEM --tls-key PEM] [--no-devture] [--no-password]\n"
               "          [--register USER_ID]... [--auto-register]\n"
               "          [--rc-login-address PER_SECOND,BURST] [--rc-login-account "
               "PER_SECOND,BURST]\n"
               "Shared-secret logins work for users that exist: --register makes one,\n"
               "--auto-register lets every valid HMAC create its user (not what Synapse does).\n"
               "--rc-login-*: Synapse's rc_login buckets (its defaults: 0.003,5); off unless "
               "given.\n",
               argv0);
}

std::string read_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read secret file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() &&
         (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) {
    s.pop_back();
  }
  if (s.empty()) throw std::runtime_error("secret file " + path + " is empty");
  return s;
}

int to_int(std::string_view flag, const std::string& v, long lo, long hi) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < lo || n > hi) {
    throw std::runtime_error(std::string(flag) + ": bad number " + v);
  }
  return static_cast<int>(n);
}

// "0.003,5" -> {0.003, 5}
mxp::test::rate_limit to_rate_limit(std::string_view flag, const std::string& v) {
  const auto comma = v.find(',');
  if (comma == std::string::npos) throw std::runtime_error(std::string(flag) + ": want RATE,BURST");
  const std::string rate = v.substr(0, comma);
  char* end = nullptr;
  const double per_second = std::strtod(rate.c_str(), &end);
  if (rate.empty() || *end != '\0' || !(per_second > 0) || per_second > 1e6)
    throw std::runtime_error(std::string(flag) + ": bad rate " + rate);
  return {per_second, to_int(flag, v.substr(comma + 1), 1, 1'000'000)};
}

}  // namespace

int main(int argc, char** argv) {
  mxp::test::fake_homeserver_options opts;
  std::string secret_file;
  int latency_ms = 0;
  std::vector<std::string> users;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(std::string(arg) + " needs a value");
        return argv[++i];
      };
      if (arg == "--port") {
        opts.port = static_cast<unsigned short>(to_int(arg, value(), 0, 65535));
      } else if (arg == "--server-name") {
        opts.server_name = value();
      } else if (arg == "--secret-file") {
        secret_file = value();
      } else if (arg == "--latency-ms") {
        latency_ms = to_int(arg, value(), 0, 3'600'000);
      } else if (arg == "--tls-cert") {
        opts.tls_cert_file = value();
      } else if (arg == "--tls-key") {
        opts.tls_key_file = value();
      } else if (arg == "--no-devture") {
        opts.flow_devture = false;
      } else if (arg == "--no-password") {
        opts.flow_password = false;
      } else if (arg == "--register") {
        users.push_back(value());
      } else if (arg == "--auto-register") {
        opts.auto_register = true;
      } else if (arg == "--rc-login-address") {
        opts.rc_login_address = to_rate_limit(arg, value());
      } else if (arg == "--rc-login-account") {
        opts.rc_login_account = to_rate_limit(arg, value());
      } else if (arg == "--help" || arg == "-h") {
        usage(argv[0]);
        return 0;
      } else {
        throw std::runtime_error("unknown argument " + std::string(arg));
      }
    }
    if (secret_file.empty()) throw std::runtime_error("--secret-file is required");
    opts.shared_secret = read_secret(secret_file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mxpuppet-fakehs: %s\n", e.what());
    usage(argv[0]);
    return 2;
  }

  // Block the signals before the server's thread exists, so it inherits the
  // mask and sigwait below is the only receiver.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    mxp::test::fake_homeserver server(std::move(opts));
    server.set_latency(std::chrono::milliseconds{latency_ms});
    server.register_users(users);
    std::printf("fakehs listening on %s\n", server.url().c_str());
    std::fflush(stdout);

    int sig = 0;
    sigwait(&signals, &sig);
    std::printf(
        "fakehs stopping (%s): logins=%d successful_logins=%d rate_limited=%d logouts=%d "
        "whoami=%d devices=%d\n",
        sig == SIGTERM ? "SIGTERM" : "SIGINT", server.login_count(),
        server.successful_login_count(), server.rate_limited_count(), server.logout_count(),
        server.whoami_count(), server.device_count());
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mxpuppet-fakehs: %s\n", e.what());
    return 1;
  }
  return 0;
}
