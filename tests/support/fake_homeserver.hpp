// fake_homeserver: an in-process Matrix homeserver for tests (a Beast HTTP/1.1
// server on 127.0.0.1, optionally HTTPS) that behaves like Synapse with the
// devture shared-secret-auth module (as ../shared/DESIGN.md records it: users
// must exist, refresh-token rotation, rc_login), and can be told to be slow or to fail.
// Beast and Asio stay out of this header: they are compiled in the .cpp only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mxp::test {

enum class failure {
  none,
  rate_limited,      // 429 {"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":N} (+ Retry-After header)
  server_error,      // 500 {"errcode":"M_UNKNOWN"}
  garbage,           // 200 with body "not json{"
  drop_connection,   // close the socket without an answer
  hang,              // never answer; the connection stays open until the server is destroyed
  wrong_json_shape,  // 200 {"foo":1}
};

// One of Synapse's rc_login token buckets (its Ratelimiter): `burst_count` actions at once,
// refilled at `per_second`. per_second 0 (the default here) turns it off.
struct rate_limit {
  double per_second = 0;
  int burst_count = 0;
};
// Synapse's default for rc_login.address and rc_login.account.
inline constexpr rate_limit synapse_rc_login{0.003, 5};

struct fake_homeserver_options {
  std::string server_name = "localhost";  // users are @local:server_name
  // HMAC-SHA512 key for com.devture.shared_secret_auth and m.login.password.
  std::string shared_secret;
  bool flow_devture = true;   // advertise/accept com.devture.shared_secret_auth
  bool flow_password = true;  // advertise/accept m.login.password (with the HMAC as password)
  // Shared-secret logins (both types) succeed only for users that exist: registered with
  // register_user(), by POST /register, or by a JWT/famedly login. Others are refused like a
  // wrong secret (403 M_FORBIDDEN "Invalid username or password"), as Synapse does.
  // auto_register: a valid HMAC creates its user instead (not Synapse; for the demo tool).
  bool auto_register = false;
  // Synapse's rc_login, off unless set (Synapse has both on: synapse_rc_login).
  // address: per client IP, taken by every POST /login before the credentials are checked
  // (appservice logins only when appservice_rate_limited). account: per user ID (lowercased),
  // taken after the credentials passed, just before the token is issued. An empty bucket gives
  // 429 {"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":N}, N the
  // time until the bucket has room, with no Retry-After header. /refresh is not limited.
  rate_limit rc_login_address, rc_login_account;
  bool appservice_rate_limited = true;      // the registration's rate_limited (default true)
  std::string tls_cert_file, tls_key_file;  // both set -> serve HTTPS instead of HTTP

  // Synapse's native JWT login (org.matrix.login.jwt), enabled when jwt_algorithm is set.
  // HS*: tokens are checked with jwt_secret; RS*/PS*/ES*/EdDSA: with jwt_public_key_pem (a
  // PEM "PUBLIC KEY"). 120 s of clock skew; <jwt_subject_claim> must be the localpart;
  // iss must be jwt_issuer and aud must hold one of jwt_audiences when those are set.
  // Missing users are created. Rejections: 403 M_FORBIDDEN "JWT validation failed: <why>".
  std::string jwt_algorithm, jwt_secret, jwt_public_key_pem;
  std::string jwt_subject_claim = "sub";
  std::string jwt_issuer;
  std::vector<std::string> jwt_audiences;
  // famedly's com.famedly.login.token, enabled when famedly_algorithm is set: the same
  // checks with 60 s of skew, exp required, sub (localpart or user ID) = identifier.user;
  // every rejection is the generic 403 "Invalid username or password". Creates users.
  std::string famedly_algorithm, famedly_secret, famedly_public_key_pem;
  // m.login.application_service and POST /register for it, enabled when as_token is set.
  // A login for a user never registered answers 200 with a token that is dead at once.
  std::string as_token;
  // The registration's sender_localpart: who `Bearer <as_token>` acts as without ?user_id=.
  std::string as_token_sender = "appservice";
  // POST /_synapse/admin/v1/users/{userId}/login, enabled when admin_token is set; the
  // admin is admin_user_id (default "@admin:<server_name>") and may not log in as itself.
  std::string admin_token, admin_user_id;
  unsigned short port = 0;  // 0 = ephemeral
  // Refresh tokens (Matrix v1.3), when above 0: a login with "refresh_token": true gets an
  // access token expiring after this long (then 401 M_UNKNOWN_TOKEN, soft_logout true) and a
  // refresh token. POST /v1/refresh rotates both on the same device; the old access token
  // stays valid until its own expiry. As Synapse: a replaced refresh token still works (and
  // discards its successor and that one's access token) until the successor's access token is
  // used or the successor is refreshed; then it gives 403 M_FORBIDDEN "refresh token isn't
  // valid anymore". An unknown or discarded one gives 401 M_UNKNOWN_TOKEN "refresh token does
  // not exist".
  std::int64_t refresh_access_lifetime_ms = 0;
  bool refresh_on_v3 = false;  // false: /v3/refresh answers 400 M_UNRECOGNIZED, as older Synapse

  // ma1uta's rest_auth_provider (v0.1.4), enabled when rest_backend_port is set: every
  // m.login.password check first calls POST http://127.0.0.1:PORT/_matrix-internal/identity/v1/
  // check_credentials {"user":{"id":<full user ID, case kept>,"password":...}}, synchronously
  // (the server's only thread waits, as Synapse's reactor does), a new connection per call.
  // Success with a "profile" object logs the user in, registering an unknown one; a success
  // for a case variant or another domain gives 200 and a token that is dead at once. Any
  // failure (refused, down, 500, garbage, no profile) falls through to the shared-secret
  // check, so a nonce gets 403 "Invalid username or password".
  std::uint16_t rest_backend_port = 0;
  std::string rest_backend_send_user;  // tests: the module sends this user ID instead

  // A fake matrix-authentication-service on the same port (its URL is url()), enabled when
  // mas_client_id is set, following MAS v1.22's shapes as DESIGN.md records them:
  //   POST /oauth2/token (client_secret_basic, grant_type=client_credentials,
  //     scope=urn:mas:admin): 200 {"access_token","token_type","expires_in"}; bad credentials
  //     401 {"error":"invalid_client"}; another grant or scope 400 {"error":"invalid_request"}.
  //     Admin tokens live mas_admin_token_lifetime_s; an expired or unknown one gets 401
  //     {"errors":[{"title":"Access token expired"}]} on the admin API.
  //   GET /api/admin/v1/users/by-username/{localpart}: the users that exist here (registered),
  //     200 {"data":{"type":"user","id":..,"attributes":{"username":..}}}, else 404.
  //   POST /api/admin/v1/personal-sessions {actor_user_id, human_name, scope, expires_in}: 201
  //     with data.id and data.attributes.access_token ("mpt_..."), which this homeserver then
  //     accepts (device: the scope's urn:matrix:client:device:ID, else none of its own); 410
  //     for a deactivated actor (mas_deactivate_user).
  //   POST /api/admin/v1/personal-sessions/{id}/revoke: 200, the token dies here at once.
  // Admin API errors are {"errors":[{"title":...}]}.
  std::string mas_client_id, mas_client_secret;
  int mas_admin_token_lifetime_s = 300;
};

// Byte i of a downloaded "big<N>" media file (GET /_matrix/media/v3/download/<server>/big<N>).
inline unsigned char media_byte(std::uint64_t i) {
  return static_cast<unsigned char>((i * 7 + 3) & 0xff);
}

// What the last media upload carried: its size and FNV-1a 64 of its bytes.
struct media_upload_record {
  std::uint64_t bytes = 0;
  std::uint64_t fnv1a = 0;
};

// Lowercase hex HMAC-SHA512(key = secret, msg = user ID): the shared-secret login
// credential, computed independently of lib/credentials so tests can cross-check.
std::string fake_shared_secret_token(std::string_view secret, std::string_view full_user_id);

// Endpoints (both /_matrix/client/v3/... and the older /r0/... prefix):
//   GET  /login          flows per the options           (counted by login_flows_count)
//   POST /login          shared-secret login             (login_count, successful_login_count)
//   POST /logout         deletes the token's device and all its tokens   (logout_count)
//   POST /logout/all     deletes every device of the token's user        (logout_count)
//   GET  /account/whoami                                  (whoami_count)
//   GET  /.well-known/matrix/client
//   POST /register       appservice registration          (register_count)
//   POST /_synapse/admin/v1/users/{userId}/login          (admin_login_count)
//   PUT  /rooms/{roomId}/send/{type}/{txnId}             {"event_id"}
//   GET  /sync?timeout=N   answers {"next_batch"} after N ms
//   POST /_matrix/media/v3/upload      body streamed and counted (last_upload)
//   GET  /_matrix/media/v3/download/{server}/big<N>   N bytes of media_byte(i), streamed
// Sends, /sync, uploads and whoami take an access token, or the as_token with ?user_id= of a
// registered user of this server (appservice identity assertion; 403 M_FORBIDDEN otherwise).
// POST /login also takes org.matrix.login.jwt, com.famedly.login.token and
// m.login.application_service when the options enable them (see fake_homeserver_options).
// Anything else: 404 M_UNRECOGNIZED; a known path with the wrong method: 405 M_UNRECOGNIZED.
// Counters count requests as they arrive, including those answered with a failure.
//
// All members are thread-safe. The server runs its own io_context on its own
// thread; the constructor binds and listens before returning, the destructor
// closes every connection (hung ones included), stops and joins.
class fake_homeserver {
 public:
  explicit fake_homeserver(fake_homeserver_options options);
  ~fake_homeserver();
  fake_homeserver(const fake_homeserver&) = delete;
  fake_homeserver& operator=(const fake_homeserver&) = delete;

  unsigned short port() const;
  std::string url() const;  // "http://127.0.0.1:PORT" or, with TLS, "https://localhost:PORT"
  const std::string& server_name() const;

  // Every answer (failures included) is delayed by this much, with an async timer:
  // other connections are served meanwhile.
  void set_latency(std::chrono::milliseconds latency);
  // The next `count` POST /login requests fail this way (replaces any pending
  // fail_next; count 0 or failure::none clears it). Other endpoints are not affected.
  void fail_next(int count, failure kind, int retry_after_ms = 1000);
  // Every request on every endpoint fails this way until fail_all(failure::none).
  // Takes precedence over fail_next, which is not consumed meanwhile.
  void fail_all(failure kind, int retry_after_ms = 1000);
  // The user does not exist (any registration is forgotten): shared-secret logins are refused
  // with 403 M_FORBIDDEN, even with auto_register. A bare localpart is qualified with
  // server_name.
  void add_nonexistent_user(std::string user_id);
  // Moves the rc_login buckets' clock forward (as if that much time had passed for them).
  void advance_rate_limit_clock(std::chrono::milliseconds by);
  int rate_limited_count() const;  // POST /login answered 429 by rc_login (not by fail_next)

  int login_count() const;                 // POST /login requests received
  int successful_login_count() const;      // POST /login answered 200 with a token
  int logout_count() const;                // POST /logout and /logout/all requests received
  int whoami_count() const;                // GET /account/whoami requests received
  int login_flows_count() const;           // GET /login requests received
  int register_count() const;              // POST /register requests received
  int admin_login_count() const;           // POST /_synapse/admin/v1/users/{id}/login received
  int refresh_count() const;               // POST /v1/refresh (and /v3/refresh) requests received
  int rest_backend_call_count() const;     // check_credentials calls made by the REST module
  int mas_token_count() const;             // POST /oauth2/token requests received
  int mas_personal_session_count() const;  // personal sessions created
  int mas_revocation_count() const;        // personal sessions revoked
  std::string mas_last_session_body() const;  // the last POST .../personal-sessions body
  void mas_deactivate_user(std::string user_id);
  // Kills one access token behind the client's back (as an admin or a password change would).
  void kill_token(const std::string& token);
  // The next `count` POST /refresh requests fail this way (drop_connection: after rotating the
  // tokens, so the answer is lost; others: before).
  void fail_next_refresh(int count, failure kind);
  // Makes a user exist (as an earlier POST /register would have), so that shared-secret and
  // appservice logins work for it. A bare localpart is qualified with server_name.
  void register_user(std::string user_id);
  void register_users(const std::vector<std::string>& user_ids);
  bool is_registered(const std::string& user_id) const;
  // valid_until_ms of an admin-minted token (nullopt: unknown token or no expiry).
  std::optional<std::int64_t> token_valid_until_ms(const std::string& token) const;
  int device_count() const;  // devices alive, all users
  int device_count(const std::string& user_id) const;
  bool token_is_live(const std::string& token) const;  // known and not expired
  // Every live access token of the user, on any device (to show none is left that nobody holds).
  std::vector<std::string> live_tokens(const std::string& user_id) const;
  std::optional<std::string> user_of_token(const std::string& token) const;
  std::optional<std::string> device_of_token(const std::string& token) const;
  // initial_device_display_name given when the device was created (nullopt if
  // the device does not exist or had none).
  std::optional<std::string> device_display_name(const std::string& user_id,
                                                 const std::string& device_id) const;
  // Peak number of POST /login requests in progress at once (from request read
  // to response written, latency included).
  int max_concurrent_logins_seen() const;
  std::vector<std::string> request_log() const;  // "METHOD TARGET" per request, in order
  std::string last_login_body() const;           // raw body of the last POST /login
  // The Authorization header of the most recent request ("" if it had none).
  std::string last_authorization_header() const;
  // The Authorization header of every request, in request_log() order ("" when none).
  std::vector<std::string> authorization_log() const;
  media_upload_record last_upload() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mxp::test
