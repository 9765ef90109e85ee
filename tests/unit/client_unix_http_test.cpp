// Tests of unix_http_client against support/script_server, a scripted HTTP server on a Unix
// socket in a temp dir (plain POSIX, one thread, one connection at a time).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "client/percent_encoding.hpp"
#include "client/unix_http_client.hpp"
#include "support/script_server.hpp"

namespace {

using mxp::client::http_protocol_error;
using mxp::client::http_response;
using mxp::client::percent_encode_path_segment;
using mxp::client::unix_http_client;
using namespace std::chrono_literals;

using connection = mxp::test::script_connection;
using mxp::test::recorded_request;
using mxp::test::script_server;

std::string ok(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string{body};
}

// Answers every request on every connection with its own target as the body.
void echo_target(connection& c, int) {
  while (auto r = c.read_request()) c.write(ok(r->target));
}

TEST(UnixHttpClient, KeepAliveReusesOneConnectionAcrossRequests) {
  script_server server{echo_target};
  unix_http_client client{server.path(), 5s};
  for (const char* target : {"/one", "/two", "/three"}) {
    const http_response r = client.request("GET", target);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, target);
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("CONTENT-LENGTH"), std::to_string(std::strlen(target)));
    EXPECT_EQ(r.header("X-Missing"), "");
    EXPECT_TRUE(client.connected());
  }
  EXPECT_EQ(server.accepted(), 1);
}

TEST(UnixHttpClient, SendsWellFormedRequests) {
  script_server server{echo_target};
  unix_http_client client{server.path(), 5s};
  client.request("GET", "/v1/status");
  client.request("POST", "/v1/users/@a:b/invalidate", R"({"access_token":"x"})");
  client.request("DELETE", "/v1/users/@a:b/session");
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].head, "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n");
  EXPECT_EQ(reqs[1].method, "POST");
  EXPECT_NE(reqs[1].head.find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_NE(reqs[1].head.find("Content-Length: 20\r\n"), std::string::npos);
  EXPECT_EQ(reqs[1].body, R"({"access_token":"x"})");
  EXPECT_EQ(reqs[2].head, "DELETE /v1/users/@a:b/session HTTP/1.1\r\nHost: localhost\r\n");
}

TEST(UnixHttpClient, RejectsRequestLinesThatWouldBreakTheProtocol) {
  unix_http_client client{"/nonexistent/socket", 1s};
  EXPECT_THROW(client.request("GET", "/a b"), std::invalid_argument);
  EXPECT_THROW(client.request("GET", "/a\r\nX: y"), std::invalid_argument);
  EXPECT_THROW(client.request("G ET", "/"), std::invalid_argument);
  EXPECT_THROW(client.request("POST", "/", "x", "text/plain\r\nX: y"), std::invalid_argument);
}

TEST(UnixHttpClient, ReadsChunkedBodiesAndKeepsTheConnection) {
  script_server server{[](connection& c, int) {
    if (!c.read_request()) return;
    c.write(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=value\r\nhello\r\n7\r\n, world\r\n1A\r\n" +
        std::string(26, 'z') + "\r\n0\r\nX-Trailer: t\r\n\r\n");
    if (!c.read_request()) return;
    c.write_slowly(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    if (!c.read_request()) return;
    c.write(ok("after"));
  }};
  unix_http_client client{server.path(), 5s};
  EXPECT_EQ(client.request("GET", "/a").body, "hello, world" + std::string(26, 'z'));
  EXPECT_EQ(client.request("GET", "/b").body, "abc");  // arrives a byte at a time
  EXPECT_EQ(client.request("GET", "/c").body, "after");
  EXPECT_EQ(server.accepted(), 1);
}

TEST(UnixHttpClient, ReadsAnswersArrivingAByteAtATime) {
  script_server server{[](connection& c, int) {
    while (c.read_request()) c.write_slowly(ok(R"({"access_token":"syt_abc"})"));
  }};
  unix_http_client client{server.path(), 5s};
  EXPECT_EQ(client.request("GET", "/x").body, R"({"access_token":"syt_abc"})");
  EXPECT_EQ(client.request("GET", "/y").body, R"({"access_token":"syt_abc"})");
  EXPECT_EQ(server.accepted(), 1);
}

TEST(UnixHttpClient, ReconnectsWhenTheServerClosedAnIdleConnection) {
  // Each connection answers one request, then the server closes it.
  script_server server{[](connection& c, int) {
    if (auto r = c.read_request()) c.write(ok(r->target));
  }};
  unix_http_client client{server.path(), 5s};
  EXPECT_EQ(client.request("GET", "/1").body, "/1");
  EXPECT_EQ(client.request("GET", "/2").body, "/2");
  EXPECT_EQ(client.request("GET", "/3").body, "/3");
  EXPECT_EQ(server.accepted(), 3);
}

TEST(UnixHttpClient, ResendsOnceWhenAReusedConnectionClosesBeforeAnyAnswer) {
  // Connection 1 answers once, then reads the next request and hangs up without a
  // word (the race where the server's idle timer fires as the request arrives).
  script_server server{[](connection& c, int n) {
    if (n == 1) {
      if (auto r = c.read_request()) c.write(ok(r->target));
      c.read_request();
      return;
    }
    echo_target(c, n);
  }};
  unix_http_client client{server.path(), 5s};
  EXPECT_EQ(client.request("GET", "/first").body, "/first");
  EXPECT_EQ(client.request("GET", "/second").body, "/second");
  EXPECT_EQ(server.accepted(), 2);
  const auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[1].target, "/second");
  EXPECT_EQ(reqs[2].target, "/second");
}

TEST(UnixHttpClient, DoesNotRetryOnAFreshConnectionOrMoreThanOnce) {
  // Every connection reads a request and hangs up.
  script_server server{[](connection& c, int n) {
    if (n == 1) {
      if (auto r = c.read_request()) c.write(ok("fine"));
    }
    c.read_request();
  }};
  unix_http_client client{server.path(), 5s};
  EXPECT_EQ(client.request("GET", "/a").body, "fine");
  try {
    client.request("GET", "/b");  // reused connection closes, so does the retry
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_reset);
  }
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_FALSE(client.connected());

  try {
    client.request("GET", "/c");  // fresh connection closes: no retry
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_reset);
  }
  EXPECT_EQ(server.accepted(), 3);
}

TEST(UnixHttpClient, TimesOutWhenTheServerNeverAnswers) {
  script_server server{[](connection& c, int) {
    c.read_request();
    c.wait_for_shutdown();
  }};
  unix_http_client client{server.path(), 200ms};
  const auto start = std::chrono::steady_clock::now();
  try {
    client.request("GET", "/slow");
    FAIL() << "expected a timeout";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::timed_out);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_FALSE(client.connected());
  server.stopping = true;
}

TEST(UnixHttpClient, TimesOutWhenTheBodyStalls) {
  script_server server{[](connection& c, int) {
    c.read_request();
    c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    c.wait_for_shutdown();
  }};
  unix_http_client client{server.path(), 200ms};
  try {
    client.request("GET", "/slow");
    FAIL() << "expected a timeout";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::timed_out);
  }
  server.stopping = true;
}

TEST(UnixHttpClient, MissingSocketIsASystemError) {
  unix_http_client client{"/nonexistent-dir/mxpuppetd.sock", 1s};
  try {
    client.request("GET", "/");
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  unix_http_client too_long{"/" + std::string(200, 'x'), 1s};
  EXPECT_THROW(too_long.request("GET", "/"), std::system_error);
}

// Each case: a raw answer that must be rejected as malformed.
class MalformedAnswer : public testing::TestWithParam<std::string> {};

TEST_P(MalformedAnswer, IsAProtocolError) {
  const std::string answer = GetParam();
  script_server server{[&](connection& c, int) {
    if (c.read_request()) c.write(answer);
  }};
  unix_http_client client{server.path(), 2s};
  EXPECT_THROW(client.request("GET", "/"), http_protocol_error);
  EXPECT_FALSE(client.connected());
}

INSTANTIATE_TEST_SUITE_P(
    UnixHttpClient, MalformedAnswer,
    testing::Values("garbage\r\n\r\n", "HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
                    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  // then the server closes
                    "HTTP/1.1 200 OK\r\nContent-Length: 16777217\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000001\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
                    "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Le"));

TEST(UnixHttpClient, HandlesBodilessAndCloseDelimitedAnswers) {
  script_server server{[](connection& c, int n) {
    if (n == 1) {
      if (!c.read_request()) return;
      c.write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
      if (!c.read_request()) return;
      c.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");  // HEAD: no body follows
      if (!c.read_request()) return;
      c.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
      return;
    }
    if (c.read_request()) c.write("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    c.wait_for_shutdown();  // HTTP/1.0 without keep-alive: the client must not wait for a close
  }};
  unix_http_client client{server.path(), 5s};
  const auto r204 = client.request("DELETE", "/x");
  EXPECT_EQ(r204.status, 204);
  EXPECT_EQ(r204.body, "");
  const auto head = client.request("HEAD", "/x");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
  const auto closing = client.request("GET", "/x");
  EXPECT_EQ(closing.body, "until the end");
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(client.request("GET", "/y").body, "ok");
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(server.accepted(), 2);
  server.stopping = true;
}

TEST(UnixHttpClient, ErrorStatusesAreAnswersNotExceptions) {
  script_server server{[](connection& c, int) {
    while (c.read_request()) {
      c.write(
          "HTTP/1.1 404 Not Found\r\nContent-Length: 43\r\n\r\n"
          R"({"errcode":"M_NOT_FOUND","error":"no such"})");
    }
  }};
  unix_http_client client{server.path(), 5s};
  const auto r = client.request("GET", "/v1/users/@a:b/token");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, R"({"errcode":"M_NOT_FOUND","error":"no such"})");
}

TEST(UnixHttpClient, CloseThenRequestReconnects) {
  script_server server{echo_target};
  unix_http_client client{server.path(), 5s};
  EXPECT_EQ(client.request("GET", "/a").body, "/a");
  client.close();
  EXPECT_FALSE(client.connected());
  unix_http_client moved = std::move(client);
  EXPECT_EQ(moved.request("GET", "/b").body, "/b");
  EXPECT_EQ(server.accepted(), 2);
}

TEST(PercentEncoding, KeepsUserIdsReadableAndEncodesTheRest) {
  EXPECT_EQ(percent_encode_path_segment("@alice:example.org"), "@alice:example.org");
  EXPECT_EQ(percent_encode_path_segment("@a/b:x.org"), "@a%2Fb:x.org");
  EXPECT_EQ(percent_encode_path_segment("@a?b#c%d:x.org"), "@a%3Fb%23c%25d:x.org");
  EXPECT_EQ(percent_encode_path_segment("@a b+c=d&e:[::1]:8448"),
            "@a%20b%2Bc%3Dd%26e:%5B::1%5D:8448");
  EXPECT_EQ(percent_encode_path_segment("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percent_encode_path_segment("\xC3\xA9\x01\x7F\xFF"), "%C3%A9%01%7F%FF");
  EXPECT_EQ(percent_encode_path_segment(""), "");
  EXPECT_EQ(percent_encode_path_segment(std::string_view{"a\0b", 3}), "a%00b");
}

}  // namespace
