// End-to-end: GET /v1/sessions in pages (limit, from, next_batch) against the built mxpuppetd,
// and mxpuppetctl following next_batch through more than one page.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "support/e2e_fixture.hpp"
#include "support/json_fields.hpp"
#include "support/tcp_http.hpp"

using namespace mxp::test;
using mxp::client::unix_http_client;

namespace {

constexpr const char* secret = "paging-e2e-shared-secret";

struct page {
  int status = 0;
  std::vector<std::string> users;
  std::optional<std::string> next_batch;
  std::string body;
};

page parse_page(int status, std::string body) {
  page p;
  p.status = status;
  p.body = std::move(body);
  if (status != 200) return p;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array list;
  if (parser.parse(p.body).get(doc) != simdjson::SUCCESS ||
      doc["sessions"].get_array().get(list) != simdjson::SUCCESS) {
    ADD_FAILURE() << "not a sessions answer: " << p.body;
    return p;
  }
  for (auto s : list) {
    std::string_view user;
    EXPECT_EQ(s["user_id"].get_string().get(user), simdjson::SUCCESS);
    p.users.emplace_back(user);
  }
  std::string_view next;
  if (doc["next_batch"].get_string().get(next) == simdjson::SUCCESS) p.next_batch = next;
  return p;
}

page get_page(unix_http_client& c, const std::string& query) {
  auto r = c.request("GET", "/v1/sessions" + query);
  return parse_page(r.status, std::move(r.body));
}

// Every page from the start with `limit`, checking each one's size on the way.
std::vector<std::string> all_pages(unix_http_client& c, int limit, int* pages = nullptr) {
  std::vector<std::string> users;
  std::string from;
  for (int n = 1; n < 10'000; ++n) {
    auto p = get_page(c, "?limit=" + std::to_string(limit) + (from.empty() ? "" : "&from=" + from));
    EXPECT_EQ(p.status, 200) << p.body;
    if (p.status != 200) break;
    users.insert(users.end(), p.users.begin(), p.users.end());
    if (!p.next_batch) {
      EXPECT_LE(p.users.size(), static_cast<std::size_t>(limit));
      if (pages) *pages = n;
      break;
    }
    EXPECT_EQ(p.users.size(), static_cast<std::size_t>(limit));  // only the last page is short
    EXPECT_NE(*p.next_batch, from);
    from = *p.next_batch;
  }
  return users;
}

std::string user(int i) {
  char name[32];
  std::snprintf(name, sizeof name, "@u%04d:localhost", i);
  return name;
}

struct paging_fixture : e2e_fixture {
  paging_fixture() : e2e_fixture{secret} {}
  void SetUp() override {
    e2e_fixture::SetUp();
    for (int i = 0; i < 1001; ++i) hs->register_user(user(i));  // Synapse: users must exist
    hs->register_user("@a-newcomer:localhost");
  }
  void start(const std::string& listen_extra = "", const std::string& clients = "") {
    e2e_fixture::start(
        {.listen = listen_extra,
         .homeservers = {{.url = hs->url(),
                          .login = std::string{shared_secret_login} +
                                   "      login_type: com.devture.shared_secret_auth\n"}},
         .sections = clients,
         .log = "  level: info\n"});
  }
};

TEST_F(paging_fixture, PagesAreOrderedByUserIdAndFollowNextBatch) {
  start();
  unix_http_client c{socket};
  // 1,001 sessions, logged in out of order: more than the largest page (1,000).
  constexpr int total = 1001;
  std::vector<std::string> expected;
  for (int i = 0; i < total; ++i) expected.push_back(user((i * 7919) % total));
  for (const auto& u : expected)
    ASSERT_EQ(c.request("GET", "/v1/users/" + u + "/token").status, 200) << u;
  std::sort(expected.begin(), expected.end());

  // Default page: 100 sessions, the first 100 user IDs, and a cursor.
  auto first = get_page(c, "");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.users, std::vector<std::string>(expected.begin(), expected.begin() + 100));
  ASSERT_TRUE(first.next_batch);
  EXPECT_EQ(first.body.find("access_token"), std::string::npos);

  int pages = 0;
  EXPECT_EQ(all_pages(c, 100, &pages), expected);
  EXPECT_EQ(pages, 11);
  EXPECT_EQ(all_pages(c, 1000, &pages), expected);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(all_pages(c, 7, &pages), expected);
  EXPECT_EQ(pages, 143);
  // A page that ends exactly at the last session says there is no more.
  auto two = get_page(c, "?limit=1000");
  ASSERT_TRUE(two.next_batch);
  auto last = get_page(c, "?limit=1&from=" + *two.next_batch);
  EXPECT_EQ(last.users, std::vector<std::string>{expected.back()});
  EXPECT_FALSE(last.next_batch) << last.body;

  // The cursor is a position, not a snapshot: sessions that end or start meanwhile neither
  // shift nor repeat the rest.
  auto p1 = get_page(c, "?limit=10");
  ASSERT_TRUE(p1.next_batch);
  ASSERT_EQ(c.request("DELETE", "/v1/users/" + expected[3] + "/session").status, 200);
  ASSERT_EQ(c.request("DELETE", "/v1/users/" + expected[10] + "/session").status, 200);
  ASSERT_EQ(c.request("GET", "/v1/users/@a-newcomer:localhost/token").status, 200);
  auto p2 = get_page(c, "?limit=10&from=" + *p1.next_batch);
  EXPECT_EQ(p2.users, std::vector<std::string>(expected.begin() + 11, expected.begin() + 21));
  // The cursor may be percent-encoded like any query value.
  std::string encoded;
  for (const char ch : *p1.next_batch) {
    char escape[4];
    std::snprintf(escape, sizeof escape, "%%%02X", static_cast<unsigned char>(ch));
    encoded += escape;
  }
  EXPECT_EQ(get_page(c, "?limit=10&from=" + encoded).users, p2.users);

  // Bad values: 400 M_INVALID_PARAM, nothing listed.
  for (const char* bad : {"?limit=0", "?limit=1001", "?limit=-1", "?limit=ten", "?limit=",
                          "?limit=1.5", "?limit=99999999999999999999999", "?from=", "?from=zz",
                          "?from=abc", "?from=%zz", "?from=4G", "?limit=5&from=0"}) {
    auto r = c.request("GET", std::string{"/v1/sessions"} + bad);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_EQ(json_string(r.body, "errcode"), "M_INVALID_PARAM") << bad;
  }
  // Other parameters are ignored; the first of a repeated one counts.
  EXPECT_EQ(get_page(c, "?limit=3&limit=5&other=1").users.size(), 3u);

  // mxpuppetctl lists every session across pages (1,000 at a time).
  expected.erase(expected.begin() + 10);
  expected.erase(expected.begin() + 3);
  expected.insert(expected.begin(), "@a-newcomer:localhost");
  auto r = run_ctl({"sessions"});
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 500);
  std::vector<std::string> listed;
  std::size_t at = r.output.find('\n') + 1;  // after the header
  while (at < r.output.size()) {
    const auto end = r.output.find('\n', at);
    listed.push_back(r.output.substr(at, r.output.find(' ', at) - at));
    at = end + 1;
  }
  EXPECT_EQ(listed, expected);
  r = run_ctl({"--json", "sessions"});
  ASSERT_EQ(r.exit_code, 0);
  const auto json = parse_page(200, r.output);
  EXPECT_EQ(json.users, expected);
  EXPECT_FALSE(json.next_batch);
}

// With clients:, a peer sees only its users, and its pages are full of those (the filter runs
// before the page is cut).
TEST_F(paging_fixture, PagesHoldOnlyWhatTheClientMaySee) {
  const auto port = free_loopback_port();
  dir.write("all.key", "paging-key-all-0123456789abcdef\n");
  start("  tcp: 127.0.0.1:" + std::to_string(port) + "\n",
        "clients:\n"
        "  - {name: everything, api_key_file: all.key, allow: [\"@*:localhost\"]}\n"
        "  - {name: some, uid: " +
            std::to_string(::getuid()) +
            ", allow: [\"@u00?0:localhost\", \"@u00?5:localhost\"]}\n");
  const std::vector<std::pair<std::string, std::string>> key = {
      {"Authorization", "Bearer paging-key-all-0123456789abcdef"}};
  std::vector<std::string> visible;
  for (int i = 0; i < 40; ++i) {
    auto r = tcp_request(port, "GET", "/v1/users/" + user(i) + "/token", key);
    ASSERT_EQ(r.status, 200) << r.body;
    if (i % 10 == 0 || i % 10 == 5) visible.push_back(user(i));
  }
  unix_http_client c{socket};
  int pages = 0;
  EXPECT_EQ(all_pages(c, 3, &pages), visible);  // 8 users: 3 + 3 + 2
  EXPECT_EQ(pages, 3);
  // Over TCP with the key that sees everything: all 40.
  auto r = tcp_request(port, "GET", "/v1/sessions?limit=1000", key);
  EXPECT_EQ(parse_page(r.status, r.body).users.size(), 40u);
}

}  // namespace
