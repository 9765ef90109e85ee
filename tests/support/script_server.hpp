// script_server: a scripted HTTP server on a Unix socket in a temp dir, for the tests of
// mxpuppetctl and its HTTP client. One thread, one connection at a time; each accepted
// connection is handed to the test's script, which reads requests and writes raw bytes
// (well-formed answers, slow ones, garbage, or nothing at all).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mxp::test {

struct recorded_request {
  std::string method, target;
  std::string head;  // request line and header fields, each ending in CRLF, without the blank line
  std::string body;
};

class script_server;

// One accepted connection, handed to the script.
class script_connection {
 public:
  script_connection(int fd, script_server& server) : fd_(fd), server_(server) {}

  // Reads one request (Content-Length bodies only) and records it; nullopt on EOF or shutdown.
  std::optional<recorded_request> read_request();
  void write(std::string_view s) const;
  // A byte at a time, with a 1 ms pause every 7 bytes.
  void write_slowly(std::string_view s) const;
  // Holds the connection open until the server stops.
  void wait_for_shutdown() const;

 private:
  bool fill();
  int fd_;
  script_server& server_;
  std::string buf_;
};

class script_server {
 public:
  // Called once per accepted connection, numbered from 1; the connection closes when it returns.
  using script = std::function<void(script_connection&, int connection_number)>;

  explicit script_server(script s);
  ~script_server();
  script_server(const script_server&) = delete;
  script_server& operator=(const script_server&) = delete;

  const std::string& path() const { return path_; }
  int accepted() const { return accepted_; }
  std::vector<recorded_request> requests();
  void record(recorded_request r);

  std::atomic<bool> stopping{false};

 private:
  void serve();

  script script_;
  std::string dir_, path_;
  int listen_fd_ = -1;
  std::atomic<int> accepted_{0};
  std::mutex mutex_;
  std::vector<recorded_request> requests_;
  std::thread thread_;
};

// "HTTP/1.1 <status> X" with a JSON Content-Type and Content-Length, then `body`.
std::string json_answer(int status, std::string_view body);

}  // namespace mxp::test
