// pool_bench: what a cached session costs. Prints heap bytes per session, the
// cost of a cached-token lookup (find_ready) at 100 / 10,000 / 100,000 sessions,
// and how long 100,000 persisted sessions take to load from SQLite and restore.
//   build/bench/pool_bench [max_sessions=100000]
#include <malloc.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <spdlog/spdlog.h>

#include "sessions/session_pool.hpp"
#include "store/session_store.hpp"

namespace asio = boost::asio;
using namespace mxp;
using clock_type = std::chrono::steady_clock;

namespace {

// Answers every login at once with a Synapse-sized token; no I/O.
class instant_homeserver final : public matrix::homeserver_client {
 public:
  const std::string& server_name() const override { return name_; }
  std::string_view method_name() const override { return "shared_secret"; }
  std::string login_type() const override { return "com.devture.shared_secret_auth"; }
  const std::string& base_url() const override { return url_; }
  void close_idle_connections() override {}
  void cancel_requests() override {}  // nothing is ever in flight: answers are immediate
  asio::awaitable<matrix::upstream_result<matrix::login_grant>> login(
      std::string user_id) override {
    char token[40];
    std::snprintf(token, sizeof token, "syt_%s_%010u", "dXNlcjEyMzQ", ++n_);
    co_return matrix::login_grant{secret_string{token}, user_id, std::string{"MXPUPPETD"},
                                  std::nullopt};
  }
  asio::awaitable<matrix::upstream_result<matrix::refresh_grant>> refresh(secret_string) override {
    co_return matrix::refresh_grant{secret_string{"syt_refreshed"}, {}, std::nullopt};
  }
  asio::awaitable<matrix::upstream_result<matrix::logout_outcome>> logout(secret_string) override {
    co_return matrix::logout_outcome{true};
  }
  asio::awaitable<matrix::upstream_result<std::string>> whoami(secret_string) override {
    co_return std::string{};
  }

 private:
  std::string name_ = "example.com", url_ = "https://matrix.example.com";
  unsigned n_ = 0;
};

std::string user(std::size_t i) {
  return "@user" + std::to_string(i) + ":example.com";
}

std::unique_ptr<sessions::session_pool> make_pool(asio::io_context& io,
                                                  store::session_store* st = nullptr) {
  std::map<std::string, sessions::homeserver_entry, std::less<>> hs;
  hs.emplace("example.com", sessions::homeserver_entry{std::make_unique<instant_homeserver>(), 64});
  return std::make_unique<sessions::session_pool>(
      io.get_executor(), sessions::pool_options{10'000'000, std::chrono::hours{24}, true, {}, st},
      std::move(hs));
}

void fill(asio::io_context& io, sessions::session_pool& pool, std::size_t from, std::size_t to) {
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (std::size_t i = from; i < to; ++i)
          co_await pool.get_token(user(i), 0, clock_type::now() + std::chrono::seconds{10});
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  io.run();
  io.restart();
}

double lookup_ns(sessions::session_pool& pool, std::size_t sessions, std::size_t ops) {
  std::vector<std::string> ids;
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < 4096; ++i) ids.push_back(user(rng() % sessions));
  std::size_t hits = 0;
  const auto t0 = clock_type::now();
  for (std::size_t i = 0; i < ops; ++i) hits += pool.find_ready(ids[i & 4095], 0).has_value();
  const auto ns = std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
  if (hits != ops) std::fprintf(stderr, "unexpected misses: %zu\n", ops - hits);
  return ns / static_cast<double>(ops);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t max = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100'000;
  spdlog::set_level(spdlog::level::warn);  // one info line per login would be the benchmark
  std::printf("pool_bench: sessions of @userN:example.com, Synapse-sized tokens\n");

  asio::io_context io{1};
  const auto heap0 = mallinfo2().uordblks;
  auto pool = make_pool(io);
  std::size_t have = 0;
  for (std::size_t n : {std::size_t{100}, std::size_t{10'000}, max}) {
    if (n > max) continue;
    fill(io, *pool, have, n);
    have = n;
    const double per_session =
        static_cast<double>(mallinfo2().uordblks - heap0) / static_cast<double>(n);
    std::printf("  %7zu sessions: %6.0f heap bytes/session, cached lookup %6.1f ns/op\n", n,
                per_session, lookup_ns(*pool, n, 2'000'000));
  }
  pool.reset();

  // Start-up with persisted sessions: write `max` rows, then time load_all + restore.
  const auto dir =
      std::filesystem::temp_directory_path() / ("mxp-pool-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto db = (dir / "sessions.db").string();
  {
    store::session_store st{io.get_executor(), db};
    // Every save in flight at once, as a burst of logins would be: the writer group-commits them.
    for (std::size_t i = 0; i < max; ++i) {
      store::stored_session s;
      s.user_id = user(i);
      // A fake, Synapse-sized token (40 bytes).
      s.access_token = secret_string{std::string{"syt_"} + "bench_token_of_user_" +
                                     std::to_string(1'000'000'000'000'000ULL + i)};
      s.device_id = "MXPUPPETD";
      s.created_at_ms = s.last_used_at_ms = 1'700'000'000'000 + static_cast<std::int64_t>(i);
      asio::co_spawn(io, st.save(std::move(s)),
                     [](std::exception_ptr e, boost::system::error_code ec) {
                       if (e) std::rethrow_exception(e);
                       if (ec) std::fprintf(stderr, "save failed: %s\n", ec.message().c_str());
                     });
    }
    const auto t0 = clock_type::now();
    io.run();
    io.restart();
    std::printf(
        "  wrote %zu sessions, all saves in flight at once, in %.2f s (%llu transactions)\n", max,
        std::chrono::duration<double>(clock_type::now() - t0).count(),
        static_cast<unsigned long long>(st.transactions()));
  }
  const auto t0 = clock_type::now();
  store::session_store st{io.get_executor(), db};
  auto rows = st.load_all();
  const auto t1 = clock_type::now();
  pool = make_pool(io, &st);
  const auto restored = pool->restore(std::move(rows));
  const auto t2 = clock_type::now();
  std::printf("  start-up with %zu persisted sessions: load %.0f ms + restore %.0f ms = %.0f ms\n",
              restored.restored, std::chrono::duration<double, std::milli>(t1 - t0).count(),
              std::chrono::duration<double, std::milli>(t2 - t1).count(),
              std::chrono::duration<double, std::milli>(t2 - t0).count());
  std::printf("  restored pool, cached lookup %.1f ns/op\n", lookup_ns(*pool, max, 2'000'000));
  pool.reset();
  std::filesystem::remove_all(dir);
}
