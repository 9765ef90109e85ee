// ctl_doctor: the doctor's checks (socket, config, homeservers, store, clock), each a plain
// blocking step with a deadline; the homeserver probe runs net::http_client on a private
// io_context.
#include "client/ctl_doctor.hpp"

#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <ranges>
#include <system_error>
#include <variant>

#include "client/ctl_format.hpp"
#include "client/ctl_json.hpp"
#include "client/ctl_runner.hpp"
#include "client/unix_http_client.hpp"
#include "config/config.hpp"
#include "net/http_client.hpp"

namespace mxp::client {
namespace {

namespace fs = std::filesystem;
namespace dom = simdjson::dom;
using namespace std::chrono_literals;

constexpr auto socket_timeout = 5s;
constexpr auto homeserver_timeout = 10s;

class report {
 public:
  explicit report(std::ostream& out) : out_(out) {}
  void ok(std::string_view check, std::string_view detail) {
    out_ << "ok " << check << ": " << detail << '\n';
  }
  void fail(std::string_view check, std::string_view detail, std::string_view fix) {
    out_ << "FAIL " << check << ": " << detail << "\n  fix: " << fix << '\n';
    failed_ = true;
  }
  bool failed() const { return failed_; }

 private:
  std::ostream& out_;
  bool failed_ = false;
};

// What the daemon says about one homeserver in /v1/status.
struct homeserver_info {
  std::string url;
  std::string login_type;
};

// ok socket, and the homeservers of /v1/status; nullopt when the daemon cannot be asked.
std::optional<std::map<std::string, homeserver_info>> check_socket(report& r,
                                                                   const std::string& socket) {
  const std::string fix_start =
      "start the daemon (systemctl start mxpuppetd; journalctl -u mxpuppetd says why it stopped), "
      "or name its socket with --socket or MXPUPPETD_SOCKET";
  try {
    unix_http_client c{socket, socket_timeout};
    const auto health = c.request("GET", "/healthz");
    if (health.status != 200) {
      r.fail("socket", fmt::format("{} answers /healthz with HTTP {}", socket, health.status),
             "see `mxpuppetctl status` and the daemon's log (journalctl -u mxpuppetd)");
      return std::nullopt;
    }
    r.ok("socket", fmt::format("{} answers /healthz", socket));
    const auto status = c.request("GET", "/v1/status");
    dom::parser parser;
    dom::element doc;
    std::map<std::string, homeserver_info> out;
    if (status.status != 200 || parser.parse(status.body).get(doc) != simdjson::SUCCESS ||
        !doc.is_object())
      return out;
    const auto list = member(dom::object(doc), "homeservers");
    if (!list || !list->is_array()) return out;
    for (dom::element hs : dom::array(*list)) {
      if (!hs.is_object()) continue;
      const auto o = dom::object(hs);
      const auto name = member(o, "server_name");
      if (!name || !as_string(*name)) continue;
      homeserver_info info;
      if (const auto u = member(o, "url"); u && as_string(*u)) info.url = *as_string(*u);
      if (const auto t = member(o, "login_type"); t && as_string(*t))
        info.login_type = *as_string(*t);
      out.emplace(std::string{*as_string(*name)}, std::move(info));
    }
    return out;
  } catch (const std::system_error& e) {
    const bool denied = e.code() == std::errc::permission_denied;
    r.fail("socket", fmt::format("cannot connect to {}: {}", socket, e.code().message()),
           denied ? "run as a user in the socket's group (listen.socket_group, or the group of "
                    "mxpuppetd.socket), or as root"
                  : fix_start);
  } catch (const std::exception& e) {
    r.fail("socket", fmt::format("{} did not answer HTTP: {}", socket, e.what()),
           "check that --socket names mxpuppetd's socket, not another program's");
  }
  return std::nullopt;
}

std::optional<config::daemon_config> check_config(report& r, const std::string& path) {
  auto loaded = config::load_config_file(path);
  if (!loaded.errors.empty()) {
    std::string detail = loaded.errors.front();
    if (loaded.errors.size() > 1) detail += fmt::format(" (and {} more)", loaded.errors.size() - 1);
    const bool unreadable = detail.find("cannot read config file") != std::string::npos;
    r.fail("config", detail,
           unreadable ? "run as root or as the daemon's user, or name the config with --config"
                      : fmt::format("run `mxpuppetctl check-config {}`, fix every line it names, "
                                    "then systemctl reload mxpuppetd",
                                    path));
    return std::nullopt;
  }
  std::string detail =
      fmt::format("{} is valid ({} homeserver{})", path, loaded.config->homeservers.size(),
                  loaded.config->homeservers.size() == 1 ? "" : "s");
  if (!loaded.warnings.empty())  // as --check-config prints them; they do not stop the daemon
    detail += fmt::format("; warning: {}{}", loaded.warnings.front(),
                          loaded.warnings.size() > 1
                              ? fmt::format(" (and {} more)", loaded.warnings.size() - 1)
                              : std::string{});
  r.ok("config", detail);
  return std::move(loaded.config);
}

// The login_type /v1/status would report for a configured homeserver (the daemon not running).
std::string login_type_of(const config::homeserver_config& hs) {
  if (const auto* s = std::get_if<config::shared_secret_login>(&hs.login)) {
    if (s->login_type == config::shared_secret_login_type::devture)
      return "com.devture.shared_secret_auth";
    if (s->login_type == config::shared_secret_login_type::password) return "m.login.password";
    return "auto";
  }
  if (const auto* j = std::get_if<config::jwt_login>(&hs.login))
    return j->flavor == config::jwt_flavor::famedly ? "com.famedly.login.token"
                                                    : "org.matrix.login.jwt";
  if (std::holds_alternative<config::appservice_login>(hs.login))
    return "m.login.application_service";
  if (std::holds_alternative<config::rest_backend_login>(hs.login)) return "m.login.password";
  if (std::holds_alternative<config::mas_login>(hs.login)) return "mas_personal_session";
  return "synapse_admin";
}

// GET URL/_matrix/client/v3/login, with the client's connect and request deadlines.
boost::system::result<net::http_response, net::http_failure> get_login_flows(
    const std::string& url, const std::string& ca_file) {
  boost::asio::io_context io;
  net::http_client_options options;
  options.ca_file = ca_file;
  options.connect_timeout = homeserver_timeout;
  options.request_timeout = homeserver_timeout;
  net::http_client client{io.get_executor(), url, options};
  std::optional<boost::system::result<net::http_response, net::http_failure>> got;
  std::exception_ptr failed;
  net::http_request req{"GET", "/_matrix/client/v3/login", {}, nullptr, true};
  boost::asio::co_spawn(io, client.request(std::move(req)), [&](std::exception_ptr e, auto result) {
    if (e)
      failed = e;
    else
      got.emplace(std::move(result));
  });
  io.run();
  if (failed) std::rethrow_exception(failed);
  return std::move(*got);
}

void check_homeserver(report& r, const std::string& name, const homeserver_info& info,
                      const std::string& ca_file) {
  const std::string check = "homeserver " + name;
  if (info.url.empty()) {
    r.fail(check, "no URL known (the daemon is not running, and the config leaves it to discovery)",
           fmt::format("set homeservers.{}.url, or start the daemon", name));
    return;
  }
  const std::string reach_fix = fmt::format(
      "check homeservers.{}.url and that this host reaches it (DNS, firewall, proxy; TLS: "
      "homeservers.{}.ca_file)",
      name, name);
  try {
    const auto answer = get_login_flows(info.url, ca_file);
    if (!answer) {
      r.fail(check, fmt::format("cannot reach {}: {}", info.url, answer.error().diagnostic),
             reach_fix);
      return;
    }
    dom::parser parser;
    dom::element doc;
    std::vector<std::string> offered;
    if (answer->status == 200 && parser.parse(answer->body).get(doc) == simdjson::SUCCESS &&
        doc.is_object()) {
      if (const auto flows = member(dom::object(doc), "flows"); flows && flows->is_array())
        for (dom::element f : dom::array(*flows))
          if (f.is_object())
            if (const auto t = member(dom::object(f), "type"); t && as_string(*t))
              offered.push_back(printable(*as_string(*t)));
    }
    if (answer->status != 200) {
      r.fail(
          check,
          fmt::format("GET {}/_matrix/client/v3/login answered HTTP {}", info.url, answer->status),
          "check that the URL is the client-server API's base (no /_matrix in it)");
      return;
    }
    const auto needed = flows_needed(info.login_type);
    const bool fits = needed.empty() || std::any_of(needed.begin(), needed.end(), [&](auto& n) {
                        return std::find(offered.begin(), offered.end(), n) != offered.end();
                      });
    const std::string offered_text =
        offered.empty() ? "no flow" : fmt::format("{}", fmt::join(offered, ", "));
    if (!fits) {
      r.fail(check,
             fmt::format("{} offers {}, not {}", info.url, offered_text, fmt::join(needed, " or ")),
             fmt::format("enable {} on the homeserver (shared_secret: "
                         "matrix-synapse-shared-secret-auth; jwt: jwt_config or "
                         "synapse-token-authenticator; appservice: the bridge's registration), or "
                         "change homeservers.{}.login",
                         fmt::join(needed, " or "), name));
      return;
    }
    r.ok(check, needed.empty() ? fmt::format("{} answers (login through the admin API)", info.url)
                               : fmt::format("{} offers {} (needs {})", info.url, offered_text,
                                             fmt::join(needed, " or ")));
  } catch (const std::exception& e) {
    r.fail(check, fmt::format("cannot ask {}: {}", info.url, e.what()), reach_fix);
  }
}

void check_store(report& r, const config::store_config& store) {
  if (store.path.empty()) {
    r.ok("store", "none configured (sessions live in memory only)");
    return;
  }
  const fs::path file{store.path};
  const fs::path dir = file.parent_path().empty() ? fs::path{"."} : file.parent_path();
  const std::string who = fmt::format("uid {}", ::geteuid());
  const std::string fix = fmt::format(
      "create {} writable by the daemon's user (the package does: systemd-tmpfiles --create "
      "mxpuppetd.conf), or change store.path; doctor checks as the user running it ({})",
      dir.string(), who);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    r.fail("store", fmt::format("directory {} does not exist", dir.string()), fix);
    return;
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    r.fail("store",
           fmt::format("directory {} is not writable for {}: {}", dir.string(), who,
                       std::strerror(errno)),
           fix);
    return;
  }
  if (fs::exists(file, ec) && ::access(file.c_str(), R_OK | W_OK) != 0) {
    r.fail("store",
           fmt::format("{} is not writable for {}: {}", file.string(), who, std::strerror(errno)),
           fix);
    return;
  }
  r.ok("store", fmt::format("{} is writable", dir.string()));
}

// The build date (__DATE__, "Mmm dd yyyy") as seconds since the epoch, UTC midnight.
std::int64_t build_time() {
  static constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
  const std::string_view date = __DATE__;
  std::tm tm{};
  tm.tm_mon = static_cast<int>(months.find(date.substr(0, 3)) / 3);
  tm.tm_mday = std::atoi(std::string{date.substr(4, 2)}.c_str());
  tm.tm_year = std::atoi(std::string{date.substr(7, 4)}.c_str()) - 1900;
  return static_cast<std::int64_t>(::timegm(&tm));
}

// A token for `user` through the daemon, as a bridge asks for it: a login with the configured
// method when the daemon holds none (the session's one device, as for any bridge request).
// A homeserver that refuses the login (401/403) almost always means a wrong secret or key.
void check_login(report& r, const std::string& socket, std::string_view user) {
  const auto check = fmt::format("login {}", user);
  try {
    unix_http_client c{socket, homeserver_timeout + socket_timeout};
    const auto answer = c.request("GET", user_path(user, "token"));
    dom::parser parser;
    dom::element doc;
    if (parser.parse(answer.body).get(doc) != simdjson::SUCCESS)
      return r.fail(check, fmt::format("HTTP {} with a body that is not JSON", answer.status),
                    "see the daemon's log (journalctl -u mxpuppetd)");
    const auto field = [&](std::string_view key) {
      auto v = doc.is_object() ? member(doc.get_object().value_unsafe(), key) : std::nullopt;
      return v ? as_string(*v) : std::nullopt;
    };
    if (answer.status == 200)
      return r.ok(check, fmt::format("the daemon holds a token for it ({} login)",
                                     field("method").value_or("?")));
    const auto errcode = field("errcode").value_or("?"), error = field("error").value_or("");
    const auto upstream_errcode = field("upstream_errcode").value_or("");
    auto status_member =
        doc.is_object() ? member(doc.get_object().value_unsafe(), "upstream_status") : std::nullopt;
    const auto upstream_status = status_member ? as_int(*status_member).value_or(0) : 0;
    if (upstream_status == 401 || upstream_status == 403)
      return r.fail(check,
                    fmt::format("the homeserver refused the login ({} {})", upstream_status,
                                upstream_errcode.empty() ? "no errcode" : upstream_errcode),
                    "the login secret or key does not match the homeserver's: compare the file "
                    "named under homeservers.<server>.login with the homeserver's login module "
                    "config, then `systemctl reload mxpuppetd`");
    r.fail(check, fmt::format("HTTP {} {}: {}", answer.status, errcode, error),
           answer.status == 404 ? "is the user's server name configured under homeservers:?"
           : answer.status == 403
               ? "the clients: section does not let this peer ask for this user"
               : "see `mxpuppetctl status` and the daemon's log (journalctl -u mxpuppetd)");
  } catch (const std::exception& e) {
    r.fail(check, e.what(), "start the daemon, or name its socket with --socket");
  }
}

void check_clock(report& r, std::int64_t now_ms) {
  const std::int64_t built = build_time();
  const std::int64_t now = now_ms / 1000;
  const auto when = [](std::int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string{buf};
  };
  if (now < built) {
    r.fail("clock",
           fmt::format("the system clock says {}, before this program was built ({})", when(now),
                       when(built)),
           "set the clock (timedatectl set-ntp true); tokens and JWTs carry times the homeserver "
           "checks");
    return;
  }
  r.ok("clock",
       fmt::format("{} (not before this build, {})", when(now), when(built).substr(0, 10)));
}

}  // namespace

std::vector<std::string> flows_needed(const std::string& login_type) {
  if (login_type == "synapse_admin") return {};
  if (login_type == "auto" || login_type.empty())
    return {"com.devture.shared_secret_auth", "m.login.password"};
  return {login_type};
}

int run_doctor(const ctl_context& ctx, const ctl_options& o) {
  report r{ctx.out};
  const std::string config_path =
      o.config ? std::string{*o.config} : std::string{default_config_path};
  auto daemon_view = check_socket(r, o.socket);
  const auto cfg = check_config(r, config_path);

  // The daemon's view of each homeserver (its URL after discovery), else the config's.
  std::map<std::string, homeserver_info> homeservers =
      daemon_view.value_or(decltype(homeservers){});
  if (cfg)
    for (const auto& [name, hs] : cfg->homeservers)
      homeservers.try_emplace(name, homeserver_info{hs.url, login_type_of(hs)});
  if (homeservers.empty())
    r.fail("homeservers", "none known: the daemon cannot be asked and the config did not load",
           "fix the checks above first");
  for (const auto& [name, info] : homeservers) {
    std::string ca_file;
    if (cfg)
      if (const auto hs = cfg->homeservers.find(name); hs != cfg->homeservers.end())
        ca_file = hs->second.ca_file;
    check_homeserver(r, name, info, ca_file);
  }

  if (cfg)
    check_store(r, cfg->store);
  else
    r.fail("store", "not checked: the config did not load", "fix the config first");
  // doctor USER...: a token for each, through the daemon: catches a wrong secret or key.
  for (const auto user : o.positional | std::views::drop(1)) check_login(r, o.socket, user);
  check_clock(r, ctx.now_ms ? ctx.now_ms()
                            : std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  return r.failed() ? exit_code(ctl_exit::daemon_error) : exit_code(ctl_exit::ok);
}

}  // namespace mxp::client
