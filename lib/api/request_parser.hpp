// request_parser: an HTTP/1.1 request parser on Beast's basic_parser that keeps
// only what the socket API needs (method, target, body, keep-alive; for the TCP
// listener the Authorization header) in buffers owned by the connection, so a
// request costs no allocation once they are warm.
// Beast does the grammar, limits, chunked bodies and keep-alive rules.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <string>

namespace mxp::api {

// Buffers reused across the requests of one connection.
struct request_buffers {
  std::string method, target, body;
  std::string authorization;  // only filled by a parser asked for it
  void clear() {
    method.clear();
    target.clear();
    body.clear();
    authorization.clear();
  }
};

class request_parser final : public boost::beast::http::basic_parser<true> {
 public:
  // With `want_authorization`, the Authorization header goes to out.authorization; a request
  // with more than one is malformed (which one would count is anybody's guess).
  explicit request_parser(request_buffers& out, bool want_authorization = false)
      : out_(out), want_authorization_(want_authorization) {
    out_.clear();
  }

 private:
  using error_code = boost::beast::error_code;
  using string_view = boost::beast::string_view;

  void on_request_impl(boost::beast::http::verb, string_view method, string_view target, int,
                       error_code&) override {
    out_.method.assign(method.data(), method.size());
    out_.target.assign(target.data(), target.size());
  }
  void on_response_impl(int, string_view, int, error_code&) override {}
  void on_field_impl(boost::beast::http::field name, string_view, string_view value,
                     error_code& ec) override {
    if (!want_authorization_ || name != boost::beast::http::field::authorization) return;
    if (seen_authorization_) {
      ec = boost::beast::http::error::bad_value;
      return;
    }
    seen_authorization_ = true;
    out_.authorization.assign(value.data(), value.size());
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(string_view body, error_code&) override {
    out_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    out_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  request_buffers& out_;
  bool want_authorization_;
  bool seen_authorization_ = false;
};

}  // namespace mxp::api
