// simple_request: the hot path's parser. What it calls complete must be exactly what Beast's
// request_parser reads (same target, keep-alive, no body, same length); it must wait for a
// request cut anywhere, read pipelined requests one after the other, and leave everything
// unusual to request_parser.
#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "api/request_parser.hpp"
#include "api/simple_request.hpp"

namespace {

using namespace std::string_literals;
using mxp::api::parse_simple_request;
using mxp::api::simple_parse;
using mxp::api::simple_request;

constexpr std::size_t limit = 8 * 1024;

simple_parse parse(std::string_view data, simple_request* out = nullptr) {
  simple_request r;
  const auto p = parse_simple_request(data, limit, r);
  if (out) *out = r;
  return p;
}

// What Beast's request_parser (the general path) reads from the front of `data`.
struct beast_reading {
  bool done = false;
  std::string method, target;
  bool keep_alive = false;
  std::size_t used = 0;
};
beast_reading read_with_beast(std::string_view data) {
  mxp::api::request_buffers b;
  mxp::api::request_parser parser{b};
  parser.header_limit(static_cast<std::uint32_t>(limit));
  parser.eager(true);
  boost::beast::error_code ec;
  beast_reading r;
  r.used = parser.put(boost::asio::buffer(data.data(), data.size()), ec);
  r.done = !ec && parser.is_done();
  if (r.done) r.method = b.method, r.target = b.target, r.keep_alive = parser.keep_alive();
  return r;
}

const std::vector<std::string> simple_requests = {
    "GET /v1/users/@alice:example.com/token HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /v1/users/@a:b/token?min_valid_ms=60000 HTTP/1.1\r\n\r\n",
    "GET /v1/users/%40a%3Ab/token HTTP/1.1\r\nHost: x\r\nUser-Agent: mautrix-go/0.20 (+x)\r\n"
    "Accept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nX-Empty:\r\nX-Tabs:\t a\tb \t\r\nCONNECTION: Keep-Alive\r\n\r\n",
};

TEST(simple_request, ReadsWhatBeastReads) {
  for (const auto& req : simple_requests) {
    simple_request r;
    ASSERT_EQ(parse(req, &r), simple_parse::complete) << req;
    const auto beast = read_with_beast(req);
    ASSERT_TRUE(beast.done) << req;
    EXPECT_EQ(beast.method, "GET");
    EXPECT_EQ(r.target, beast.target) << req;
    EXPECT_TRUE(beast.keep_alive) << req;
    EXPECT_EQ(r.size, req.size());
    EXPECT_EQ(beast.used, req.size());
  }
}

TEST(simple_request, ACutRequestIsIncompleteAtEveryByte) {
  for (const auto& req : simple_requests)
    for (std::size_t n = 0; n < req.size(); ++n)
      EXPECT_EQ(parse(std::string_view{req}.substr(0, n)), simple_parse::incomplete)
          << n << " bytes of " << req;
}

TEST(simple_request, PipelinedRequestsAreReadOneAfterTheOther) {
  std::string all;
  for (const auto& req : simple_requests) all += req;
  all += "GET /v1/users/@b:c/tok";  // the start of one more
  std::string_view rest = all;
  for (const auto& req : simple_requests) {
    simple_request r;
    ASSERT_EQ(parse(rest, &r), simple_parse::complete);
    EXPECT_EQ(rest.substr(0, r.size), req);
    EXPECT_EQ(r.target, read_with_beast(req).target);
    rest.remove_prefix(r.size);
  }
  EXPECT_EQ(parse(rest), simple_parse::incomplete);
}

TEST(simple_request, EverythingUnusualGoesToTheGeneralParser) {
  const std::vector<std::string> unusual = {
      "POST /v1/users/@a:b/invalidate HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
      "DELETE /v1/users/@a:b/session HTTP/1.1\r\n\r\n",
      "get /healthz HTTP/1.1\r\n\r\n",
      "GET /healthz HTTP/1.0\r\n\r\n",  // keep-alive rules differ
      "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nConnection: keep-alive\r\nConnection: keep-alive\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",  // obs-fold
      "GET /healthz HTTP/1.1\r\nX-Bad : a\r\n\r\n",
      "GET /healthz HTTP/1.1\r\n: a\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nX-Nul: a\0b\r\n\r\n"s,
      "GET /healthz HTTP/1.1\r\nX-High: caf\xc3\xa9\r\n\r\n",  // obs-text
      "GET /healthz HTTP/1.1\nHost: x\n\n",                    // bare LF
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\rX",
      "GET /v1/users/@caf\xc3\xa9:b/token HTTP/1.1\r\n\r\n",
      "GET v1/users HTTP/1.1\r\n\r\n",
      "GET  /healthz HTTP/1.1\r\n\r\n",
      "GET /healthz\tHTTP/1.1\r\n\r\n",
      "GET /a\x7f HTTP/1.1\r\n\r\n",
  };
  for (const auto& req : unusual) EXPECT_EQ(parse(req), simple_parse::not_simple) << req;
}

TEST(simple_request, AHeaderOverTheLimitIsLeftToTheGeneralParserFor431) {
  std::string big = "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(limit, 'a');
  EXPECT_EQ(parse(big), simple_parse::not_simple);  // not even complete yet
  big += "\r\n\r\n";
  EXPECT_EQ(parse(big), simple_parse::not_simple);
  std::string target = "GET /" + std::string(limit, 'a');
  EXPECT_EQ(parse(target), simple_parse::not_simple);
}

}  // namespace
