// session_store: sessions persisted in SQLite (WAL, file mode 0600) so that a
// restart serves the same tokens and adds no device. Writes run on the store's
// own thread, grouped into one transaction per batch, and complete back on the
// caller's executor: the event loop never waits for an fsync.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/secret.hpp"

namespace mxp::store {

// One user's session as persisted. A row exists while something of the user
// may be live at the homeserver: a current token and/or one awaiting logout.
struct stored_session {
  std::string user_id;
  secret_string access_token;  // empty: no current token
  std::optional<std::string> device_id;
  std::optional<std::int64_t> expires_at_ms;
  secret_string pending_logout;  // a token to log out before the next login
  secret_string refresh_token;   // empty: none
  std::int64_t lifetime_ms = 0;  // expires_in_ms as granted; 0: unknown
  std::int64_t created_at_ms = 0;
  std::int64_t last_used_at_ms = 0;
  // A login was sent (or about to be) and its outcome is not known: the homeserver may hold a
  // live token of this device that nobody has. The next login cleans the device first.
  bool login_in_flight = false;
  // The login method's opaque handles of access_token and pending_logout (mas: the personal
  // session ids, without which a later run cannot revoke them); empty: none.
  std::string token_handle, pending_logout_handle;
};

// A bridge gateway handle (`mxpg_…`, lib/gateway) as persisted: only its SHA-256 is stored,
// with the bridge and user it stands for.
struct stored_handle {
  std::string sha256_hex;
  std::string bridge;
  std::string user_id;
  std::int64_t created_at_ms = 0;
};

struct open_result {
  std::vector<std::string> warnings;  // e.g. permissions fixed
};

class session_store {
 public:
  // Opens (creating if needed) the database at `path`; enforces mode 0600
  // (fixing a looser file and saying so in the result). Throws std::runtime_error
  // with the path and SQLite's message when it cannot.
  session_store(boost::asio::any_io_executor executor, const std::string& path,
                open_result* result = nullptr);
  ~session_store();  // flushes queued writes and joins the writer thread
  session_store(const session_store&) = delete;
  session_store& operator=(const session_store&) = delete;

  // Every persisted session; call before serving (synchronous, start-up only).
  std::vector<stored_session> load_all();

  // Inserts or replaces the user's row; completes once it is durable.
  boost::asio::awaitable<boost::system::error_code> save(stored_session session);
  // Deletes the user's row; completes once it is durable.
  boost::asio::awaitable<boost::system::error_code> erase(std::string user_id);
  // Every persisted gateway handle (synchronous, start-up only).
  std::vector<stored_handle> load_handles();
  // Inserts or replaces a handle's row / deletes it; each completes once durable.
  boost::asio::awaitable<boost::system::error_code> save_handle(stored_handle handle);
  boost::asio::awaitable<boost::system::error_code> erase_handle(std::string sha256_hex);

  // Waits until every queued write is durable (shutdown).
  boost::asio::awaitable<void> flush();

  std::uint64_t transactions() const noexcept;  // commits so far (each may hold many writes)

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace mxp::store
