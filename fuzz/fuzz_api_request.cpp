// fuzz_api_request: any bytes as what a bridge sends on the socket. They go through the hot
// path's parser (simple_request: what it reads must be what Beast reads, and answer_cached must
// take it without harm) and the request parser and, when they form a request, through the API
// against a pool whose one homeserver answers every call at once with a failure: routing,
// percent-decoding, user-ID checks, JSON bodies and error answers must never crash and always give
// a status.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>

#include "api/http_api.hpp"
#include "api/request_parser.hpp"
#include "api/simple_request.hpp"
#include "core/errc.hpp"
#include "sessions/session_pool.hpp"

namespace {

namespace asio = boost::asio;

class refusing_homeserver final : public mxp::matrix::homeserver_client {
 public:
  const std::string& server_name() const override { return name_; }
  std::string_view method_name() const override { return "shared_secret"; }
  std::string login_type() const override { return "com.devture.shared_secret_auth"; }
  const std::string& base_url() const override { return name_; }
  void close_idle_connections() override {}
  void cancel_requests() override {}  // nothing is ever in flight: answers are immediate
  asio::awaitable<mxp::matrix::upstream_result<mxp::matrix::login_grant>> login(
      std::string) override {
    co_return refusal();
  }
  asio::awaitable<mxp::matrix::upstream_result<mxp::matrix::refresh_grant>> refresh(
      mxp::secret_string) override {
    co_return refusal();
  }
  asio::awaitable<mxp::matrix::upstream_result<mxp::matrix::logout_outcome>> logout(
      mxp::secret_string) override {
    co_return mxp::matrix::logout_outcome{false};
  }
  asio::awaitable<mxp::matrix::upstream_result<std::string>> whoami(mxp::secret_string) override {
    co_return refusal();
  }

 private:
  static mxp::matrix::upstream_error refusal() {
    mxp::matrix::upstream_error e;
    e.code = mxp::errc::upstream_refused;
    e.http_status = 403;
    e.errcode = "M_FORBIDDEN";
    return e;
  }
  std::string name_ = "example.com";
};

struct world {
  asio::io_context io;
  std::unique_ptr<mxp::sessions::session_pool> pool;
  std::unique_ptr<mxp::api::http_api> api;
  world() {
    std::map<std::string, mxp::sessions::homeserver_entry, std::less<>> hs;
    hs.emplace("example.com",
               mxp::sessions::homeserver_entry{std::make_shared<refusing_homeserver>(), 4});
    pool = std::make_unique<mxp::sessions::session_pool>(
        io.get_executor(), mxp::sessions::pool_options{}, std::move(hs));
    api = std::make_unique<mxp::api::http_api>(*pool, std::chrono::milliseconds{1000});
    api->set_ready(true);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static world w;
  mxp::api::request_buffers buffers;
  mxp::api::request_parser parser{buffers, (size & 1) != 0};
  parser.header_limit(8 * 1024);
  parser.body_limit(64 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (!parser.is_done() && !ec) parser.put_eof(ec);
  // The hot path's parser reads a strict subset of the grammar, the same way.
  mxp::api::simple_request simple;
  const std::string_view bytes{reinterpret_cast<const char*>(data), size};
  const auto parsed = mxp::api::parse_simple_request(bytes, 8 * 1024, simple);
  if (parsed == mxp::api::simple_parse::complete) {
    mxp::api::request_buffers head;
    mxp::api::request_parser beast{head};
    beast.header_limit(8 * 1024);
    beast.eager(true);
    boost::beast::error_code head_ec;
    const auto used = beast.put(boost::asio::buffer(data, simple.size), head_ec);
    if (head_ec || !beast.is_done() || used != simple.size || head.method != "GET" ||
        head.target != simple.target || !beast.keep_alive() || simple.size > size)
      __builtin_trap();
    std::string out;
    mxp::api::connection_access access;
    if (!w.api->answer_cached(simple.target, nullptr, access, out) && !out.empty())
      __builtin_trap();
  }
  if (ec || !parser.is_done()) return 0;  // the server answers 400/413/431 and closes
  const mxp::api::api_request request{buffers.method, buffers.target, buffers.body};
  mxp::api::api_response res;
  mxp::api::pending_request pending;
  if (!w.api->handle_now(request, res, pending)) {
    bool done = false;
    asio::co_spawn(w.io, w.api->handle(request, pending, res), [&](std::exception_ptr e) {
      done = true;
      if (e) std::rethrow_exception(e);
    });
    w.io.run_for(std::chrono::seconds{5});
    w.io.restart();
    if (!done) __builtin_trap();  // an API request must finish on its own
  }
  if (res.status < 200 || res.status > 599) __builtin_trap();
  return 0;
}
