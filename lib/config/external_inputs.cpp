// load_external_inputs: the one place where loading a config touches the system (files, NSS).
#include "config/external_inputs.hpp"

#include <fcntl.h>
#include <grp.h>
#include <openssl/sha.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/appservice_registration.hpp"
#include "config/config.hpp"
#include "config/yaml_walker.hpp"
#include "credentials/secret_file.hpp"

namespace mxp::config {
namespace {

namespace fs = std::filesystem;

std::optional<std::uint32_t> lookup_user(const std::string& name) {
  std::vector<char> buf(16 * 1024);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
    return std::nullopt;
  return found->pw_uid;
}

std::optional<std::uint32_t> lookup_group(const std::string& name) {
  std::vector<char> buf(64 * 1024);
  group gr{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found)
    return std::nullopt;
  return found->gr_gid;
}

class input_loader {
 public:
  input_loader(daemon_config& cfg, const fs::path& base_dir, diagnostics& diag)
      : cfg_(cfg), base_dir_(base_dir), diag_(diag) {}

  void load(const input_request& r) {
    switch (r.kind) {
      case input_kind::socket_owner:
        return account(r, false, cfg_.listen.socket_owner);
      case input_kind::socket_group:
        return account(r, true, cfg_.listen.socket_group);
      case input_kind::client_user:
        return account(r, false, cfg_.clients->at(r.client).uid);
      case input_kind::client_group:
        return account(r, true, cfg_.clients->at(r.client).gid);
      case input_kind::client_api_key:
        return api_key(r, cfg_.clients->at(r.client));
      case input_kind::bridge_token:
        return bridge_token(r, cfg_.gateway->bridges.at(r.client));
      case input_kind::bridge_login_secret:
        return bridge_login_secret(r, cfg_.gateway->bridges.at(r.client));
      case input_kind::ca_file:
        return ca_file(r, cfg_.homeservers.at(r.homeserver));
      case input_kind::registration:
        return registration(r, std::get<appservice_login>(cfg_.homeservers.at(r.homeserver).login));
      case input_kind::login_secret:
        return std::visit([&](auto& login) { login_secret(r, login); },
                          cfg_.homeservers.at(r.homeserver).login);
    }
  }

 private:
  fs::path resolve(const std::string& p) const {
    fs::path path{p};
    if (path.is_relative() && !base_dir_.empty()) path = base_dir_ / path;
    return path.lexically_normal();
  }

  // A secret file (credentials::locate_secret); errors name the path, never the contents, and a
  // file that others may read loads with a warning.
  std::optional<secret_string> secret(const input_request& r, std::string& resolved,
                                      bool strip_newline, std::string_view noun = "file") {
    const auto path = credentials::locate_secret(r.value, base_dir_);
    resolved = path.string();
    auto read = credentials::read_secret_file(path, strip_newline, noun);
    if (!read.value) {
      diag_.error(r.at, read.error);
      return std::nullopt;
    }
    if (read.others_may_read)
      diag_.warning(r.at, "secret file '" + resolved + "' is readable by others (mode " +
                              fmt::format("{:04o}", *read.others_may_read) + "); chmod o-r it");
    return std::move(read.value);
  }

  void account(const input_request& r, bool is_group, std::optional<std::uint32_t>& out) {
    if (auto id = is_group ? lookup_group(r.value) : lookup_user(r.value))
      out = id;
    else
      diag_.error(r.at,
                  std::string{is_group ? "unknown group " : "unknown user "} + echoed(r.value));
  }

  // `api_key_file`: the key is read like every other secret and only its SHA-256 is kept.
  void api_key(const input_request& r, client_config& c) {
    auto key = secret(r, c.api_key_file, true, "API key file");
    if (!key) return;
    const std::string& k = key->reveal();
    if (!std::all_of(k.begin(), k.end(), [](char ch) { return ch > ' ' && ch < 127; })) {
      diag_.error(r.at, "API key file '" + c.api_key_file +
                            "' must hold one line of printable ASCII without spaces (it is sent "
                            "in a header)");
      return;
    }
    if (k.size() < 16)
      diag_.warning(r.at, "the API key in '" + c.api_key_file +
                              "' is shorter than 16 characters; `openssl rand -hex 32` makes a "
                              "good one");
    std::array<unsigned char, 32> digest{};
    ::SHA256(reinterpret_cast<const unsigned char*>(k.data()), k.size(), digest.data());
    c.api_key_sha256 = digest;
  }

  // `token_file`: the bridge token, sent by the bridge as a Bearer; only its SHA-256 is kept.
  void bridge_token(const input_request& r, gateway_bridge_config& b) {
    auto token = secret(r, b.token_file, true, "bridge token file");
    if (!token) return;
    const std::string& t = token->reveal();
    if (!std::all_of(t.begin(), t.end(), [](char ch) { return ch > ' ' && ch < 127; })) {
      diag_.error(r.at, "bridge token file '" + b.token_file +
                            "' must hold one line of printable ASCII without spaces (it is sent "
                            "in a header)");
      return;
    }
    if (t.size() < 16)
      diag_.warning(r.at, "the bridge token in '" + b.token_file +
                              "' is shorter than 16 characters; mxpuppetctl gateway-token makes "
                              "a good one");
    std::array<unsigned char, 32> digest{};
    ::SHA256(reinterpret_cast<const unsigned char*>(t.data()), t.size(), digest.data());
    b.token_sha256 = digest;
  }

  void bridge_login_secret(const input_request& r, gateway_bridge_config& b) {
    if (auto s = secret(r, b.login_secret_file, true, "login secret file"))
      b.login_secret = std::move(*s);
  }

  void ca_file(const input_request& r, homeserver_config& hs) {
    const auto path = resolve(r.value);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
      return diag_.error(r.at, "cannot read '" + path.string() + "': " + std::strerror(errno));
    struct stat st {};
    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    ::close(fd);
    if (!regular)
      return diag_.error(r.at, "cannot read '" + path.string() + "': not a regular file");
    hs.ca_file = path.string();
  }

  void login_secret(const input_request& r, shared_secret_login& login) {
    if (auto s = secret(r, login.secret_file, true, "secret file")) login.secret = std::move(*s);
  }

  void login_secret(const input_request& r, jwt_login& login) {
    const bool hmac = login.algorithm.starts_with("HS");
    auto key = secret(r, login.key_file, hmac);
    if (!key) return;
    const bool pem = key->reveal().find("-----BEGIN") != std::string::npos;
    if (hmac && pem) {
      diag_.error(r.at, login.algorithm + " needs a shared secret, but '" + login.key_file +
                            "' holds a PEM key or certificate");
    } else if (!hmac && !pem) {
      diag_.error(r.at, login.algorithm + " needs a PEM private key, but '" + login.key_file +
                            "' holds no PEM text");
    } else {
      login.key = std::move(*key);
      login.key_origin = diag_.name(r.at);
    }
  }

  void login_secret(const input_request& r, appservice_login& login) {
    if (auto t = secret(r, login.as_token_file, true)) login.as_token = std::move(*t);
  }

  void login_secret(const input_request& r, synapse_admin_login& login) {
    if (auto t = secret(r, login.admin_token_file, true)) login.admin_token = std::move(*t);
  }

  void login_secret(const input_request&, rest_backend_login&) {}  // it reads no file

  void login_secret(const input_request& r, mas_login& login) {
    if (auto s = secret(r, login.client_secret_file, true, "client secret file"))
      login.client_secret = std::move(*s);
  }

  // The bridge's registration: errors name the config line of registration_file and the place
  // inside the registration.
  void registration(const input_request& r, appservice_login& login) {
    const auto path = resolve(r.value);
    login.registration_file = path.string();
    const std::string where = "registration '" + login.registration_file + "'";
    std::string why;
    auto text = credentials::read_small_file(path, credentials::max_secret_file_bytes, why);
    if (!text) return diag_.error(r.at, "cannot read " + where + ": " + why);
    const secret_string text_secret{std::move(*text)};  // it holds the as_token and hs_token
    for (const auto& e : parse_registration(text_secret.reveal(), where, login))
      diag_.error(r.at, e);
  }

  daemon_config& cfg_;
  const fs::path& base_dir_;
  diagnostics& diag_;
};

}  // namespace

void load_external_inputs(const input_requests& requests, daemon_config& cfg,
                          const fs::path& base_dir, diagnostics& diag) {
  input_loader loader{cfg, base_dir, diag};
  for (const auto& r : requests) loader.load(r);
}

}  // namespace mxp::config
