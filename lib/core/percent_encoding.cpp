// percent_encoding: thin wrappers over Boost.URL's encode() and pct_string_view.
#include "core/percent_encoding.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/pct_string_view.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace mxp {

namespace urls = boost::urls;

std::string percent_encode(std::string_view text, pct_keep keep) {
  static constexpr auto unreserved_at_colon = urls::unreserved_chars + '@' + ':';
  // encoding_opts' defaults: upper-case hex digits, a space is %20 (never '+').
  return keep == pct_keep::unreserved ? urls::encode(text, urls::unreserved_chars)
                                      : urls::encode(text, unreserved_at_colon);
}

std::optional<std::string> percent_decode(std::string_view text) {
  const auto checked = urls::make_pct_string_view(text);
  if (!checked) return std::nullopt;
  return checked->decode();
}

}  // namespace mxp
