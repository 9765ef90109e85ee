// soak: mixed load against the real mxpuppetd while the (in-process, fake) homeserver cycles
// through faults and the daemon is SIGKILLed and restarted every ~30 s; checks the answers and
// the homeserver's state all the way and prints the figures (run it with bench/soak.sh).
//
//   soak [--seconds N] [--daemon PATH] [--kill-every SECONDS] [--users N] [--connections N]
//        [--max-rss-mb N] [--keep] [--faults-on-every-endpoint]
//
// Exit status 0 only when every must-be-zero figure is zero (see print_report).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "client/percent_encoding.hpp"
#include "client/unix_http_client.hpp"
#include "support/daemon_process.hpp"
#include "support/fake_homeserver.hpp"
#include "support/json_fields.hpp"

namespace {

using namespace std::chrono_literals;
using mxp::client::unix_http_client;
using mxp::test::failure;
using steady = std::chrono::steady_clock;

constexpr const char* secret = "soak-shared-secret";

// ---------------------------------------------------------------------------------------------
// A TCP forwarder between the daemon and the fake homeserver, so that the homeserver can be
// "down" (connection refused, open connections reset) without losing the fake's state.
class tcp_forwarder {
 public:
  explicit tcp_forwarder(unsigned short target_port) : target_port_(target_port) {
    listen_fd_ = open_listener(0);
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~tcp_forwarder() {
    stop_ = true;
    acceptor_.join();
    reset_all();
    while (active_ > 0) std::this_thread::sleep_for(5ms);
    std::lock_guard lk{mu_};
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  unsigned short port() const { return port_; }

  // Down: the listening socket is closed (connections are refused) and every open connection is
  // reset. Up: listening again on the same port.
  void set_down(bool down) {
    std::lock_guard lk{mu_};
    if (down && listen_fd_ >= 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
      reset_all_locked();
    } else if (!down && listen_fd_ < 0) {
      listen_fd_ = open_listener(port_);
    }
  }

 private:
  static int open_listener(unsigned short port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 512) != 0)
      throw std::system_error(errno, std::generic_category(), "forwarder bind/listen");
    return fd;
  }

  void accept_loop() {
    while (!stop_) {
      int lfd;
      {
        std::lock_guard lk{mu_};
        lfd = listen_fd_;
      }
      if (lfd < 0) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      pollfd p{lfd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      std::unique_lock lk{mu_};
      if (listen_fd_ != lfd) continue;  // went down meanwhile
      const int in = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (in < 0) continue;
      const int out = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_port_);
      if (::connect(out, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(in), ::close(out);
        continue;
      }
      fds_.insert(in), fds_.insert(out);
      ++active_;
      lk.unlock();
      std::thread([this, in, out] { pump(in, out); }).detach();
    }
  }

  void pump(int a, int b) {
    char buf[16384];
    pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    for (bool open = true; open && !stop_;) {
      if (::poll(p, 2, 100) < 0) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (!p[i].revents) continue;
        const ssize_t n = ::read(p[i].fd, buf, sizeof buf);
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t off = 0; off < n;) {
          const ssize_t w =
              ::send(p[1 - i].fd, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          off += w;
        }
      }
    }
    {
      std::lock_guard lk{mu_};
      fds_.erase(a), fds_.erase(b);
      ::close(a), ::close(b);
    }
    --active_;
  }

  void reset_all() {
    std::lock_guard lk{mu_};
    reset_all_locked();
  }
  void reset_all_locked() {
    for (int fd : fds_) {
      const linger l{1, 0};  // close() sends RST
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::shutdown(fd, SHUT_RDWR);
    }
  }

  unsigned short target_port_, port_ = 0;
  std::mutex mu_;
  int listen_fd_ = -1;
  std::set<int> fds_;
  std::atomic<bool> stop_{false};
  std::atomic<int> active_{0};
  std::thread acceptor_;
};

// ---------------------------------------------------------------------------------------------
// What the driver knows about one user.
struct user_state {
  std::string id, token_path, invalidate_path, session_path;
  // Readers hold it shared around a token request and its checks; invalidations and
  // revocations hold it exclusively, so no reader sees a token the driver is killing.
  std::shared_mutex op;
  std::mutex m;                  // guards the fields below
  std::string token;             // last token handed out with 200 ("" after an invalidate/revoke)
  bool change_explained = true;  // the next token may differ from `token` (first login, ...)
  bool revoked = false;          // revoke answered {"revoked":true}: nothing may stay live
  bool asked = false;            // a token was asked for at least once
  std::string known_dead;        // killed at the homeserver, its invalidate never answered 200
};

struct counters {
  std::mutex m;
  std::map<std::string, long> by_kind;  // "200", "503 MXP_UNAVAILABLE", ...
  std::map<std::string, long> by_op;    // token, first_login, invalidate, revoke, final
  std::map<std::string, std::map<std::string, long>> by_op_kind;
  std::vector<std::string> failures;  // details of must-be-zero events (first 50 kept)
  void count(const std::string& op, const std::string& kind) {
    std::lock_guard lk{m};
    ++by_op[op];
    ++by_kind[kind];
    ++by_op_kind[op][kind];
  }
  void fail(std::string what) {
    std::lock_guard lk{m};
    if (failures.size() < 200) failures.push_back(std::move(what));
  }
};

struct options {
  double seconds = 60;
  std::string daemon_bin;
  double kill_every = 30;
  int users = 300;
  int connections = 16;
  long max_rss_mb = 256;
  bool keep = false;
  // garbage and wrong_json_shape on every endpoint, as the fake does them (see fault_cycle)
  bool faults_everywhere = false;
};

class soak {
 public:
  explicit soak(options o) : o_(std::move(o)) {}
  int run();

 private:
  // --- daemon ---------------------------------------------------------------------------------
  void start_daemon() {
    for (int attempt = 1;; ++attempt) {
      const auto log =
          dir_ + "/daemon-" + std::to_string(generation_) + "-" + std::to_string(attempt) + ".log";
      daemon_ = std::make_unique<mxp::test::daemon_process>(config_, socket_, log);
      if (daemon_->wait_ready(20s)) break;
      ++restart_failures_;
      stats_.fail("the daemon did not become ready; see " + log);
      if (attempt == 3) throw std::runtime_error("the daemon did not start three times");
    }
    daemon_pid_ = daemon_->pid();
  }
  bool integrity_ok(const char* when) {
    const auto r = mxp::test::run_program(
        {"/usr/bin/sqlite3", dir_ + "/sessions.db", "PRAGMA integrity_check;"});
    ++integrity_checks_;
    if (r.exit_code == 0 && r.output == "ok\n") return true;
    ++integrity_failures_;
    stats_.fail(std::string{"integrity_check "} + when + ": exit " + std::to_string(r.exit_code) +
                " " + r.output.substr(0, 300));
    return false;
  }
  // SIGKILL, integrity check, start again. Connections cut meanwhile are expected.
  void kill_and_restart() {
    sample_rss();
    rss_at_kills_.push_back(rss_last_kib_);
    killing_ = true;
    ++generation_;
    event("SIGKILL, generation " + std::to_string(generation_) + " starts");
    const auto code = daemon_->stop(SIGKILL, 10s);
    daemon_pid_ = -1;
    if (code != 128 + SIGKILL) {
      ++crashes_;
      stats_.fail("daemon exit code " + (code ? std::to_string(*code) : "none") +
                  " at a kill (it died before it)");
    }
    integrity_ok("after a kill");
    start_daemon();
    event("ready again");
    ++kills_;
    killing_ = false;
  }

  // --- one request and its checks -------------------------------------------------------------
  struct answer {
    int status = 0;  // 0: no answer (connection failed)
    std::string body;
  };
  // Sends a request and classifies the outcome; a failed connection is "cut by a kill" when a kill
  // happened (or was under way) while it was out, an unexpected drop otherwise.
  answer send(unix_http_client& c, const std::string& op, const char* method,
              const std::string& target, const std::string& body = {}) {
    const auto gen = generation_.load();
    answer a;
    try {
      auto r = c.request(method, target, body);
      a.status = r.status;
      a.body = std::move(r.body);
    } catch (const std::exception& ex) {
      c.close();
      if (killing_ || generation_ != gen) {
        stats_.count(op, "cut by a kill");
      } else {
        ++unexpected_drops_;
        stats_.count(op, "connection error (daemon up)");
        stats_.fail(op + " " + target + ": connection error while the daemon was up: " + ex.what());
      }
      return a;
    }
    std::string kind = std::to_string(a.status);
    const auto errcode = mxp::test::json_string(a.body, "errcode");
    if (!errcode.empty()) kind += " " + errcode;
    bool documented = false;
    switch (a.status) {
      case 200:
        documented = errcode.empty();
        break;
      case 429: {
        const auto ms = mxp::test::json_int(a.body, "retry_after_ms");
        documented = errcode == "M_LIMIT_EXCEEDED" && ms >= 0 && ms <= 3'600'000;
        if (ms < 0) kind += " (no retry_after_ms)";
        break;
      }
      case 502:
        documented =
            errcode == "MXP_UPSTREAM" && mxp::test::json_int(a.body, "upstream_status") > 0;
        break;
      case 503:
        documented = errcode == "MXP_UNAVAILABLE";
        break;
      case 504:
        documented = errcode == "MXP_TIMEOUT";
        break;
      default:
        break;
    }
    stats_.count(op, kind);
    if (!documented) {
      ++undocumented_;
      stats_.fail(op + " " + target + ": undocumented answer " + std::to_string(a.status) + " " +
                  a.body.substr(0, 200));
    }
    return a;
  }

  // Checks a token the daemon handed out with 200: live at the homeserver, the user's own, and
  // the same as before unless the driver gave a reason for a change (the caller holds u.op).
  void check_token(user_state& u, const std::string& body, const char* when) {
    const auto token = mxp::test::token_of(body);
    if (token.empty()) {
      ++undocumented_;
      stats_.fail(u.id + ": 200 without access_token (" + when + ")");
      return;
    }
    std::lock_guard lk{u.m};
    if (!hs_->token_is_live(token)) {
      if (!u.known_dead.empty() && token == u.known_dead) {
        ++dead_known_;  // killed behind the daemon's back and never invalidated: documented
      } else {
        ++dead_tokens_;
        stats_.fail(u.id + ": dead token handed out (" + when + ", " + now_tag() +
                    "): " + describe(token));
      }
    }
    if (const auto owner = hs_->user_of_token(token); owner && *owner != u.id) {
      ++dead_tokens_;
      stats_.fail(u.id + ": token of " + *owner + " handed out (" + when + ")");
    }
    if (!u.token.empty() && token != u.token && !u.change_explained) {
      ++sessions_lost_;
      stats_.fail(u.id + ": token changed without an invalidate or revoke (" + when + ", " +
                  now_tag() + ")");
    }
    if (token != u.token) {
      std::lock_guard sk{seen_m_};
      seen_.try_emplace(token, std::string{when} + " (" + now_tag() + ")");
    }
    u.token = token;
    u.change_explained = false;
  }

  // Where a token came from, for the failure details: when the driver was handed it, if ever.
  std::string describe(const std::string& token) {
    std::string d = "device " + hs_->device_of_token(token).value_or("?");
    std::lock_guard lk{seen_m_};
    const auto it = seen_.find(token);
    return d + (it == seen_.end() ? ", never handed to the driver" : ", handed out " + it->second);
  }
  std::string now_tag() {
    std::lock_guard lk{fault_m_};
    return "gen " + std::to_string(generation_) + ", fault " + current_fault_ + ", t=" +
           std::to_string(
               std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0_).count()) +
           "ms";
  }

  // --- load -----------------------------------------------------------------------------------
  void reader(int index) {
    unix_http_client c{socket_, 35s};
    std::mt19937 rng(static_cast<unsigned>(index * 7919 + 1));
    while (!stop_load_) {
      const auto n = published_.load();
      auto& u = *users_[std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)];
      std::shared_lock op{u.op, std::try_to_lock};
      if (!op) continue;  // being invalidated or revoked
      {
        std::lock_guard lk{u.m};
        if (u.revoked) continue;
        u.asked = true;
      }
      const auto a = send(c, "token", "GET", u.token_path);
      if (a.status == 200) check_token(u, a.body, "cached-token load");
      if (a.status != 200) std::this_thread::sleep_for(a.status == 0 ? 20ms : 2ms);
    }
  }

  user_state* add_user() {
    std::lock_guard lk{publish_m_};
    const auto n = published_.load();
    if (n >= users_.size()) return nullptr;
    auto& u = *users_[n];
    hs_->register_user(u.id);
    published_ = n + 1;
    return &u;
  }

  void first_login(unix_http_client& c, user_state& u) {
    std::unique_lock op{u.op};
    {
      std::lock_guard lk{u.m};
      u.asked = true;
    }
    const auto a = send(c, "first_login", "GET", u.token_path);
    if (a.status == 200) check_token(u, a.body, "first login");
  }

  // A bridge reports the token as rejected. In a third of the cases it really is dead: killed at
  // the homeserver first (as an admin or a password change would). The invalidate is repeated
  // until it is answered 200, so that no reader is handed the killed token afterwards.
  void invalidate(unix_http_client& c, user_state& u, bool kill_first) {
    std::unique_lock op{u.op};
    std::string token;
    {
      std::lock_guard lk{u.m};
      if (u.revoked || u.token.empty()) return;
      token = u.token;
      u.change_explained = true;
    }
    if (kill_first) hs_->kill_token(token);
    const std::string body = R"({"access_token":")" + token + "\"}";
    const auto until = steady::now() + 40s;
    for (;;) {
      const auto a = send(c, "invalidate", "POST", u.invalidate_path, body);
      if (a.status == 200) {
        if (a.body.find("false") != std::string::npos) ++invalidated_false_;
        break;
      }
      if (!kill_first || stop_load_ || steady::now() > until) {
        if (kill_first) {
          std::lock_guard lk{u.m};
          u.known_dead = token;
        }
        return;
      }
      std::this_thread::sleep_for(200ms);
    }
    std::lock_guard lk{u.m};
    u.token.clear();
  }

  void revoke(unix_http_client& c, user_state& u) {
    std::unique_lock op{u.op};
    {
      std::lock_guard lk{u.m};
      if (u.revoked || !u.asked) return;
      u.change_explained = true;
    }
    const auto a = send(c, "revoke", "DELETE", u.session_path);
    if (a.status != 200) return;
    std::lock_guard lk{u.m};
    u.token.clear();
    if (a.body.find("true") == std::string::npos) {
      ++revoked_false_;
      return;
    }
    u.revoked = true;
    // The logout was confirmed: every token of the device is dead.
    if (const auto live = hs_->live_tokens(u.id); !live.empty()) {
      leftover_tokens_ += static_cast<long>(live.size());
      for (const auto& t : live)
        stats_.fail(u.id + ": live token right after {\"revoked\":true} (" + now_tag() +
                    "): " + describe(t));
    }
  }

  void mutator(int index) {
    unix_http_client c{socket_, 35s};
    std::mt19937 rng(static_cast<unsigned>(index * 104729 + 17));
    while (!stop_load_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(
          std::uniform_int_distribution<int>(150, 450)(rng)));  // ~3.3 ops/s per thread
      const int dice = std::uniform_int_distribution<int>(0, 99)(rng);
      if (dice < 40) {
        if (auto* u = add_user()) first_login(c, *u);
        continue;
      }
      const auto n = published_.load();
      auto& u = *users_[std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)];
      if (dice < 75)
        invalidate(c, u, dice < 52);
      else
        revoke(c, u);
    }
  }

  // --- faults ---------------------------------------------------------------------------------
  void set_fault(const std::string& name) {
    event("fault " + name);
    std::lock_guard lk{fault_m_};
    current_fault_ = name;
    ++fault_phases_[name];
  }
  void event(const std::string& what) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0_).count();
    std::lock_guard lk{timeline_m_};
    timeline_.push_back("t=" + std::to_string(ms) + "ms " + what);
  }
  void fault_cycle() {
    std::mt19937 rng(4242);
    // Every fault covers every endpoint, except the answers that are a complete 200: the fake
    // answers those without doing the work, which on /logout would be a lie no homeserver tells
    // (a 200 {"foo":1} is a valid logout answer). Logins only, then, unless
    // --faults-on-every-endpoint: the daemon takes any 200 to /logout as a confirmed logout.
    struct phase {
      const char* name;
      failure kind;
      bool logins_only;
    };
    const phase faults[] = {
        {"500", failure::server_error, false},
        {"429", failure::rate_limited, false},
        {"hang", failure::hang, false},
        {"reset", failure::drop_connection, false},
        {"garbage", failure::garbage, true},
        {"wrong_json_shape", failure::wrong_json_shape, true},
        {"down", failure::none, false},
        {"slow (1.5 s)", failure::none, false},
    };
    const failure next_kinds[] = {failure::server_error,     failure::rate_limited,
                                  failure::drop_connection,  failure::garbage,
                                  failure::wrong_json_shape, failure::hang};
    auto sleep_while_loading = [&](std::chrono::milliseconds d) {
      for (const auto until = steady::now() + d; !stop_faults_ && steady::now() < until;)
        std::this_thread::sleep_for(20ms);
    };
    for (std::size_t i = 0; !stop_faults_; ++i) {
      // Healthy for 2-4 s, with a few failed logins sometimes.
      set_fault("none");
      if (rng() % 2)
        hs_->fail_next(static_cast<int>(1 + rng() % 3), next_kinds[rng() % std::size(next_kinds)],
                       static_cast<int>(100 + rng() % 900));
      sleep_while_loading(std::chrono::milliseconds(2000 + rng() % 2000));
      if (stop_faults_) break;
      const auto& f = faults[i % std::size(faults)];
      set_fault(std::string{f.name} +
                (f.logins_only && !o_.faults_everywhere ? " (logins only)" : ""));
      if (std::string_view{f.name} == "down")
        forwarder_->set_down(true);
      else if (f.kind == failure::none)
        hs_->set_latency(1500ms);
      else if (f.logins_only && !o_.faults_everywhere)
        hs_->fail_next(1'000'000, f.kind);
      else
        hs_->fail_all(f.kind, static_cast<int>(200 + rng() % 1800));
      sleep_while_loading(std::chrono::milliseconds(3000 + rng() % 3000));
      hs_->fail_all(failure::none);
      hs_->fail_next(0, failure::none);
      hs_->set_latency(0ms);
      forwarder_->set_down(false);
    }
    set_fault("none");
  }

  // --- RSS ------------------------------------------------------------------------------------
  static long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.starts_with("VmRSS:")) return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
  }
  void sample_rss() {
    const pid_t pid = daemon_pid_;
    if (pid <= 0 || killing_) return;
    const long kib = rss_kib(pid);
    if (kib <= 0) return;
    rss_last_kib_ = kib;
    rss_max_kib_ = std::max<long>(rss_max_kib_, kib);
  }

  // --- the end --------------------------------------------------------------------------------
  void final_check();
  int print_report(double elapsed_s);

  options o_;
  std::string dir_, config_, socket_;
  std::unique_ptr<mxp::test::fake_homeserver> hs_;
  std::unique_ptr<tcp_forwarder> forwarder_;
  std::unique_ptr<mxp::test::daemon_process> daemon_;
  std::atomic<pid_t> daemon_pid_{-1};
  std::vector<std::unique_ptr<user_state>> users_;
  std::mutex publish_m_;
  std::atomic<std::size_t> published_{0};
  std::atomic<bool> stop_load_{false}, stop_faults_{false}, killing_{false};
  std::atomic<long> generation_{0};
  std::mutex fault_m_;
  std::string current_fault_ = "none";
  std::map<std::string, int> fault_phases_;
  std::mutex seen_m_;
  std::map<std::string, std::string> seen_;  // token -> when it was first handed out
  steady::time_point t0_ = steady::now();
  std::mutex timeline_m_;
  std::vector<std::string> timeline_;  // faults and kills, printed when something failed
  counters stats_;
  std::atomic<long> kills_{0}, crashes_{0}, restart_failures_{0}, integrity_checks_{0},
      integrity_failures_{0}, unexpected_drops_{0}, undocumented_{0}, dead_tokens_{0},
      dead_known_{0}, sessions_lost_{0}, duplicate_devices_{0}, leftover_tokens_{0},
      invalidated_false_{0}, revoked_false_{0}, final_unanswered_{0};
  std::atomic<long> rss_last_kib_{0}, rss_max_kib_{0};
  std::vector<long> rss_at_kills_;  // KiB just before each kill (main thread only)
  long final_users_ = 0, final_revoked_ = 0;
};

// With faults off and the daemon freshly restarted: every user asked for once more (after a
// pending invalidate, if any) must get a token that is live and alone on at most one device, the
// same as before the kill unless the driver gave a reason; a revoked user has nothing live.
void soak::final_check() {
  unix_http_client c{socket_, 35s};
  const auto n = published_.load();
  for (std::size_t i = 0; i < n; ++i) {
    auto& u = *users_[i];
    std::unique_lock op{u.op};
    bool revoked, asked;
    std::string known_dead;
    {
      std::lock_guard lk{u.m};
      revoked = u.revoked, asked = u.asked, known_dead = u.known_dead;
    }
    if (!asked) continue;
    if (revoked) {
      ++final_revoked_;
      if (const auto live = hs_->live_tokens(u.id); !live.empty()) {
        leftover_tokens_ += static_cast<long>(live.size());
        for (const auto& t : live)
          stats_.fail(u.id + ": revoked, but a token live at the end: " + describe(t));
      }
      continue;
    }
    ++final_users_;
    if (!known_dead.empty()) {
      const auto a = send(c, "invalidate", "POST", u.invalidate_path,
                          R"({"access_token":")" + known_dead + "\"}");
      if (a.status == 200) {
        std::lock_guard lk{u.m};
        u.token.clear(), u.change_explained = true, u.known_dead.clear();
      }
    }
    answer a;
    // The circuit may still be open or a backoff running from the last fault: wait it out.
    for (int attempt = 0; attempt < 20; ++attempt) {
      a = send(c, "final", "GET", u.token_path);
      if (a.status == 200) break;
      std::this_thread::sleep_for(500ms);
    }
    if (a.status != 200) {
      ++final_unanswered_;
      stats_.fail(u.id + ": no token in the final check: " + std::to_string(a.status) + " " +
                  a.body.substr(0, 200));
      continue;
    }
    check_token(u, a.body, "final check");
    const auto token = mxp::test::token_of(a.body);
    const auto live = hs_->live_tokens(u.id);
    const long extra = static_cast<long>(
        std::count_if(live.begin(), live.end(), [&](const auto& t) { return t != token; }));
    if (extra > 0) {
      leftover_tokens_ += extra;
      for (const auto& t : live)
        if (t != token) stats_.fail(u.id + ": a live token besides the one held: " + describe(t));
    }
    if (const int d = hs_->device_count(u.id); d > 1) {
      duplicate_devices_ += d - 1;
      stats_.fail(u.id + ": " + std::to_string(d) + " devices");
    }
  }
}

int soak::run() {
  ::signal(SIGPIPE, SIG_IGN);
  std::string tmpl = (std::filesystem::temp_directory_path() / "mxp-soak-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  socket_ = dir_ + "/mxpuppetd.sock";
  ::setenv("MXPUPPETD_BIN", o_.daemon_bin.c_str(), 1);

  mxp::test::fake_homeserver_options ho;
  ho.shared_secret = secret;
  hs_ = std::make_unique<mxp::test::fake_homeserver>(ho);
  forwarder_ = std::make_unique<tcp_forwarder>(hs_->port());
  {
    std::ofstream(dir_ + "/secret") << secret << "\n";
    ::chmod((dir_ + "/secret").c_str(), 0600);
  }
  config_ = dir_ + "/config.yaml";
  std::ofstream(config_) << "listen:\n  unix_socket: " << socket_
                         << "\n  socket_mode: \"0600\"\n  request_timeout: 10s\n"
                            "homeservers:\n  localhost:\n    url: http://127.0.0.1:"
                         << forwarder_->port()
                         << "\n    login: {method: shared_secret, secret_file: secret}\n"
                            "    request_timeout: 3s\n    connect_timeout: 2s\n"
                            "store:\n  path: sessions.db\nlog:\n  level: info\n";

  // Users: the first o_.users are logged in before the load starts; the others are first logins
  // during the run (~5 a second).
  const auto capacity = static_cast<std::size_t>(o_.users + 8 * o_.seconds + 100);
  for (std::size_t i = 0; i < capacity; ++i) {
    auto u = std::make_unique<user_state>();
    u->id = "@soak" + std::to_string(i) + ":localhost";
    const auto seg = mxp::client::percent_encode_path_segment(u->id);
    u->token_path = "/v1/users/" + seg + "/token";
    u->invalidate_path = "/v1/users/" + seg + "/invalidate";
    u->session_path = "/v1/users/" + seg + "/session";
    users_.push_back(std::move(u));
  }
  start_daemon();
  {
    unix_http_client c{socket_, 35s};
    for (int i = 0; i < o_.users; ++i) first_login(c, *add_user());
  }
  std::printf(
      "soak: %.0f s, %d users to start with, %d keep-alive connections, kill every ~%.0f s\n",
      o_.seconds, o_.users, o_.connections, o_.kill_every);
  std::fflush(stdout);

  const auto start = steady::now();
  const auto end = start + std::chrono::milliseconds(static_cast<long>(o_.seconds * 1000));
  std::vector<std::thread> threads;
  for (int i = 0; i < o_.connections; ++i) threads.emplace_back([this, i] { reader(i); });
  for (int i = 0; i < 3; ++i) threads.emplace_back([this, i] { mutator(i); });
  std::thread faults([this] { fault_cycle(); });

  std::mt19937 rng(99);
  auto jitter = [&] {
    const double s = o_.kill_every * (0.8 + 0.4 * (rng() % 1000) / 1000.0);
    return std::chrono::milliseconds(static_cast<long>(s * 1000));
  };
  auto next_kill = start + jitter();
  auto next_rss = start;
  auto next_progress = start + 30s;
  std::exception_ptr error;
  try {
    while (steady::now() < end) {
      std::this_thread::sleep_for(50ms);
      const auto now = steady::now();
      if (auto code = daemon_->exited(); code && !killing_) {
        ++crashes_;
        stats_.fail("the daemon exited on its own with code " + std::to_string(*code) +
                    " (generation " + std::to_string(generation_) + ", logs in " + dir_ + ")");
        killing_ = true;
        ++generation_;
        integrity_ok("after a crash");
        start_daemon();
        killing_ = false;
      }
      if (now >= next_rss) sample_rss(), next_rss = now + 2s;
      if (now >= next_kill && now + 5s < end) {
        kill_and_restart();
        next_kill = steady::now() + jitter();
      }
      if (now >= next_progress) {
        next_progress = now + 30s;
        std::lock_guard lk{stats_.m};
        long total = 0;
        for (auto& [k, v] : stats_.by_op) total += v;
        std::printf("  t=%3lds requests=%ld kills=%ld users=%zu rss=%.1f MiB\n",
                    static_cast<long>(
                        std::chrono::duration_cast<std::chrono::seconds>(now - start).count()),
                    total, kills_.load(), published_.load(), rss_last_kib_ / 1024.0);
        std::fflush(stdout);
      }
    }
  } catch (...) {
    error = std::current_exception();
  }
  stop_load_ = true;
  stop_faults_ = true;
  faults.join();
  for (auto& t : threads) t.join();
  if (error) {
    print_report(0);
    std::printf("daemon logs, config and store kept in %s\n", dir_.c_str());
    std::rethrow_exception(error);
  }
  const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
  sample_rss();

  // The last kill, then the final check against a healthy homeserver.
  kill_and_restart();
  final_check();
  sample_rss();
  const auto term = daemon_->stop(SIGTERM, 20s);
  if (term != 0) {
    ++crashes_;
    stats_.fail("SIGTERM at the end: exit " + (term ? std::to_string(*term) : "none (timeout)"));
  }
  integrity_ok("after the final SIGTERM");
  daemon_.reset();
  const int rc = print_report(elapsed);
  forwarder_.reset();
  hs_.reset();
  if (rc == 0 && !o_.keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  } else {
    std::printf("daemon logs, config and store kept in %s\n", dir_.c_str());
  }
  return rc;
}

int soak::print_report(double elapsed_s) {
  std::lock_guard lk{stats_.m};
  long total = 0;
  for (auto& [k, v] : stats_.by_op) total += v;
  std::printf("\n== soak: %.0f s of load, then a last kill and the final check ==\n", elapsed_s);
  std::printf("requests                %ld (%.0f/s):", total, total / elapsed_s);
  for (auto& [k, v] : stats_.by_op) std::printf(" %s %ld,", k.c_str(), v);
  std::printf("\nanswers by kind        ");
  for (auto& [k, v] : stats_.by_kind) std::printf(" [%s] %ld", k.c_str(), v);
  for (auto& [op, kinds] : stats_.by_op_kind) {
    std::printf("\n  %-21s", op.c_str());
    for (auto& [k, v] : kinds) std::printf(" [%s] %ld", k.c_str(), v);
  }
  std::printf("\nfault phases           ");
  {
    std::lock_guard fk{fault_m_};
    for (auto& [k, v] : fault_phases_)
      if (k != "none") std::printf(" %s x%d", k.c_str(), v);
  }
  std::printf("\nusers                   %zu (%ld checked at the end, %ld revoked)\n",
              published_.load(), final_users_, final_revoked_);
  std::printf("invalidated:false       %ld, revoked:false %ld (stale, not failures)\n",
              invalidated_false_.load(), revoked_false_.load());
  std::printf(
      "killed tokens served    %ld (killed at the homeserver, invalidate unanswered: "
      "documented)\n",
      dead_known_.load());
  std::printf(
      "homeserver saw          %d logins (%d ok), %d logouts, %d devices alive at the end\n",
      hs_->login_count(), hs_->successful_login_count(), hs_->logout_count(), hs_->device_count());
  std::printf("kills survived          %ld (integrity_check ok %ld/%ld)\n", kills_.load(),
              integrity_checks_ - integrity_failures_, integrity_checks_.load());
  std::printf("RSS                     max %.1f MiB, last %.1f MiB (bound %ld MiB)\n",
              rss_max_kib_ / 1024.0, rss_last_kib_ / 1024.0, o_.max_rss_mb);
  std::printf("RSS before each kill    ");
  for (const long kib : rss_at_kills_) std::printf(" %.1f", kib / 1024.0);
  std::printf(" MiB\n");
  const bool rss_over = rss_max_kib_ > o_.max_rss_mb * 1024;
  struct {
    const char* name;
    long value;
  } must_be_zero[] = {
      {"daemon crashes", crashes_},
      {"restart failures", restart_failures_},
      {"integrity failures", integrity_failures_},
      {"undocumented answers", undocumented_},
      {"unexpected drops", unexpected_drops_},
      {"dead tokens handed out", dead_tokens_},
      {"sessions lost", sessions_lost_},
      {"duplicate devices", duplicate_devices_},
      {"live tokens nobody holds", leftover_tokens_},
      {"no token at the end", final_unanswered_},
      {"RSS over the bound", rss_over ? 1L : 0L},
  };
  int bad = 0;
  for (auto& m : must_be_zero) {
    std::printf("%-23s %ld%s\n", m.name, m.value, m.value ? "   <-- must be 0" : "");
    if (m.value) ++bad;
  }
  for (auto& f : stats_.failures) std::printf("  FAIL %s\n", f.c_str());
  if (bad) {
    std::lock_guard tk{timeline_m_};
    std::printf("timeline:");
    for (auto& e : timeline_) std::printf(" %s;", e.c_str());
    std::printf("\n");
  }
  std::printf("%s\n", bad ? "SOAK FAILED" : "SOAK OK");
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (const char* bin = std::getenv("MXPUPPETD_BIN")) o.daemon_bin = bin;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--seconds")
      o.seconds = std::stod(next());
    else if (a == "--daemon")
      o.daemon_bin = next();
    else if (a == "--kill-every")
      o.kill_every = std::stod(next());
    else if (a == "--users")
      o.users = std::stoi(next());
    else if (a == "--connections")
      o.connections = std::stoi(next());
    else if (a == "--max-rss-mb")
      o.max_rss_mb = std::stol(next());
    else if (a == "--keep")
      o.keep = true;
    else if (a == "--faults-on-every-endpoint")
      o.faults_everywhere = true;
    else {
      std::fprintf(stderr,
                   "usage: soak [--seconds N] [--daemon PATH] [--kill-every S] [--users N] "
                   "[--connections N] [--max-rss-mb N] [--keep] [--faults-on-every-endpoint]\n");
      return 2;
    }
  }
  if (o.daemon_bin.empty()) o.daemon_bin = "build/mxpuppetd";
  o.daemon_bin = std::filesystem::absolute(o.daemon_bin).string();
  if (o.seconds <= 0 || o.users < 1 || o.connections < 1) {
    std::fprintf(stderr, "soak: bad arguments\n");
    return 2;
  }
  try {
    return soak{o}.run();
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "soak: %s\n", ex.what());
    return 3;
  }
}
