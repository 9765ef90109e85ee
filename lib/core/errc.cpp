// The mxp error_category: names of mxpuppet's own error codes.
#include "core/errc.hpp"

namespace mxp {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "mxpuppet"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok:
        return "success";
      case errc::invalid_user_id:
        return "malformed user ID";
      case errc::invalid_request:
        return "malformed request";
      case errc::unknown_homeserver:
        return "no homeserver configured for this server name";
      case errc::forbidden:
        return "forbidden";
      case errc::not_found:
        return "not found";
      case errc::upstream_refused:
        return "homeserver refused the request";
      case errc::upstream_rate_limited:
        return "homeserver rate limit exceeded";
      case errc::upstream_unavailable:
        return "homeserver unavailable";
      case errc::upstream_bad_response:
        return "homeserver sent an unusable response";
      case errc::upstream_timeout:
        return "homeserver timed out";
      case errc::deadline_exceeded:
        return "request deadline exceeded";
      case errc::shutting_down:
        return "daemon is shutting down";
      case errc::discovery_failed:
        return "homeserver discovery failed";
    }
    return "unknown mxpuppet error";
  }
};

}  // namespace

const boost::system::error_category& mxp_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace mxp
