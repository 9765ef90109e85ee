// ctl_gateway: a table of the gateway's bridges; a fresh bridge token from the kernel's CSPRNG.
#include "client/ctl_gateway.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <ostream>
#include <string>
#include <vector>

#include "client/ctl_format.hpp"
#include "client/ctl_json.hpp"

namespace mxp::client {
namespace {

namespace dom = simdjson::dom;

std::string hex(const unsigned char* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < size; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

}  // namespace

int print_bridges(command_runner& r, dom::element doc) {
  dom::array bridges;
  if (doc["bridges"].get_array().get(bridges) != simdjson::SUCCESS)
    return r.bad_answer("no bridges list");
  std::vector<std::vector<std::string>> rows{{"BRIDGE", "HANDLES", "LAST_USE"}};
  for (dom::element b : bridges) {
    std::string name = "-", handles = "0", last = "never";
    std::string_view s;
    if (b["name"].get_string().get(s) == simdjson::SUCCESS) name = printable(s);
    bool configured = true;
    if (b["configured"].get_bool().get(configured) == simdjson::SUCCESS && !configured)
      name += " (no longer configured)";
    dom::element count;
    if (b["handles"].get(count) == simdjson::SUCCESS)
      if (auto n = as_int(count)) handles = std::to_string(*n);
    std::int64_t at = 0;
    if (b["last_used_at_ms"].get_int64().get(at) == simdjson::SUCCESS && at > 0)
      last = human_duration(std::max<std::int64_t>(0, r.now_ms() - at)) + " ago";
    rows.push_back({std::move(name), std::move(handles), std::move(last)});
  }
  if (rows.size() == 1) {
    r.ctx().out << "no bridges\n";
    return 0;
  }
  print_table(r.ctx().out, rows, "");
  return 0;
}

int print_gateway_token(const ctl_context& ctx) {
  std::array<unsigned char, 32> random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    ctx.err << "mxpuppetctl: cannot get random bytes\n";
    return 1;
  }
  std::string token = "mxgw_" + hex(random.data(), random.size());
  OPENSSL_cleanse(random.data(), random.size());
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  ::SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  ctx.out << token << '\n' << "token_sha256: " << hex(digest.data(), digest.size()) << '\n';
  OPENSSL_cleanse(token.data(), token.size());
  return 0;
}

}  // namespace mxp::client
