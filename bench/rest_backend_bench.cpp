// rest_backend_bench: check_credentials answers per second and latency percentiles of a running
// backend listener, with N client threads that each open a new connection per request (as
// ma1uta's rest_auth_provider does) and send a password the backend never issued (the flood of
// ordinary users' logins that every homeserver password check sends it).
//
//   rest_backend_bench PORT [SECONDS=5] [CONNECTIONS=16]      (bench/rest_backend_bench.sh)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

// One request on a new connection; true when the answer was the expected refusal.
bool one_call(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    std::string answer;
    char buf[1024];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) answer.append(buf, n);
    ok = answer.starts_with("HTTP/1.1 200") &&
         answer.find(R"({"auth":{"success":false}})") != std::string::npos;
  }
  ::close(fd);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PORT [SECONDS] [CONNECTIONS]\n", argv[0]);
    return 2;
  }
  const auto port = static_cast<std::uint16_t>(std::atoi(argv[1]));
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 5;
  const int connections = argc > 3 ? std::atoi(argv[3]) : 16;
  const std::string body =
      R"({"user":{"id":"@someone:example.com","password":"an ordinary user's password"}})";
  // What the module's requests.post sends, Connection: close so that the server ends each call.
  const std::string request =
      "POST /_matrix-internal/identity/v1/check_credentials HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "User-Agent: python-requests/2.28\r\nAccept: */*\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;

  std::atomic<bool> stop{false};
  std::atomic<long> failures{0};
  std::vector<std::vector<double>> latencies(connections);
  std::vector<std::thread> threads;
  const auto began = clock_type::now();
  for (int t = 0; t < connections; ++t)
    threads.emplace_back([&, t] {
      auto& mine = latencies[t];
      mine.reserve(1 << 20);
      while (!stop.load(std::memory_order_relaxed)) {
        const auto s = clock_type::now();
        const bool ok = one_call(port, request);
        mine.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - s).count());
        if (!ok) failures.fetch_add(1, std::memory_order_relaxed);
      }
    });
  std::this_thread::sleep_for(std::chrono::seconds{seconds});
  stop = true;
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - began).count();

  std::vector<double> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  const auto pct = [&](double p) {
    return all.empty() ? 0.0
                       : all[std::min(all.size() - 1, static_cast<std::size_t>(p * all.size()))];
  };
  std::printf(
      "check_credentials, new connection per request, %d connections, %.1f s: %zu answers, "
      "%.0f answers/s, p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us, failures %ld\n",
      connections, elapsed, all.size(), all.size() / elapsed, pct(0.50), pct(0.99), pct(0.999),
      all.empty() ? 0.0 : all.back(), failures.load());
  return failures.load() == 0 ? 0 : 1;
}
