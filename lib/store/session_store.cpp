// session_store on SQLite: one writer thread, group commit, results posted back.
#include "store/session_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace mxp::store {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class sqlite_category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "sqlite"; }
  std::string message(int ev) const override { return sqlite3_errstr(ev); }
};
const sqlite_category& sqlite_errors() {
  static const sqlite_category c;
  return c;
}

// A completion handler of any type, invoked from the writer thread and run on
// the handler's own executor.
struct completion {
  virtual ~completion() = default;
  virtual void complete(error_code ec) = 0;
};

template <typename Handler, typename Executor>
struct handler_completion final : completion {
  handler_completion(Handler h, Executor ex) : handler(std::move(h)), work(std::move(ex)) {}
  void complete(error_code ec) override {
    auto ex = work.get_executor();
    asio::post(ex, [h = std::move(handler), ec]() mutable { std::move(h)(ec); });
    work.reset();
  }
  Handler handler;
  asio::executor_work_guard<Executor> work;
};

struct write_op {
  enum class kind { save, erase, flush, save_handle, erase_handle } what;
  stored_session session;  // save: the row; erase: user_id only
  stored_handle handle;    // save_handle: the row; erase_handle: sha256_hex only
  std::unique_ptr<completion> done;
};

struct statement {
  sqlite3_stmt* stmt = nullptr;
  ~statement() { sqlite3_finalize(stmt); }
};

void bind_text(sqlite3_stmt* s, int i, const std::string& v, bool null_if_empty = true) {
  if (null_if_empty && v.empty())
    sqlite3_bind_null(s, i);
  else
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string{p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))} : std::string{};
}

}  // namespace

struct session_store::impl {
  asio::any_io_executor executor;
  std::string path;
  sqlite3* db = nullptr;
  statement upsert, remove, upsert_handle, remove_handle;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<write_op> queue;
  bool stopping = false;
  std::atomic<std::uint64_t> commits{0};
  std::thread writer;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(fmt::format("session store {}: {}: {}", path, what,
                                         db ? sqlite3_errmsg(db) : "out of memory"));
  }
  void exec(const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(sql);
  }

  void open(open_result* result) {
    // Create the file 0600 ourselves so it is never, even briefly, readable by others.
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      throw std::runtime_error(
          fmt::format("session store {}: cannot open: {}", path, std::strerror(errno)));
    struct stat st {};
    ::fstat(fd, &st);
    if ((st.st_mode & 077) != 0) {
      if (::fchmod(fd, 0600) != 0) {
        ::close(fd);
        throw std::runtime_error(fmt::format(
            "session store {} is readable by others (mode {:04o}) and cannot be fixed: {}", path,
            st.st_mode & 0777, std::strerror(errno)));
      }
      if (result)
        result->warnings.push_back(
            fmt::format("session store {} had mode {:04o}; tokens at rest must not be readable "
                        "by others: changed to 0600",
                        path, st.st_mode & 0777));
    }
    ::close(fd);
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK)
      fail("cannot open");
    sqlite3_busy_timeout(db, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");  // a token is handed out only once its row survives a crash
    exec(
        "CREATE TABLE IF NOT EXISTS sessions ("
        " user_id TEXT PRIMARY KEY, access_token TEXT, device_id TEXT, expires_at_ms INTEGER,"
        " pending_logout TEXT, created_at_ms INTEGER NOT NULL, last_used_at_ms INTEGER NOT NULL,"
        " refresh_token TEXT, lifetime_ms INTEGER, login_in_flight INTEGER, token_handle TEXT,"
        " pending_logout_handle TEXT"
        ") WITHOUT ROWID");
    // A database written by an earlier version gains the columns it lacks (NULL: none).
    for (const char* column :
         {"refresh_token TEXT", "lifetime_ms INTEGER", "login_in_flight INTEGER",
          "token_handle TEXT", "pending_logout_handle TEXT"}) {
      const auto sql = fmt::format("ALTER TABLE sessions ADD COLUMN {}", column);
      if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK &&
          std::string_view{sqlite3_errmsg(db)}.find("duplicate column") == std::string_view::npos)
        fail(sql);
    }
    exec(
        "CREATE TABLE IF NOT EXISTS gateway_handles ("
        " sha256 TEXT PRIMARY KEY, bridge TEXT NOT NULL, user_id TEXT NOT NULL,"
        " created_at_ms INTEGER NOT NULL) WITHOUT ROWID");
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO gateway_handles (sha256, bridge, user_id,"
                           " created_at_ms) VALUES (?,?,?,?)",
                           -1, &upsert_handle.stmt, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM gateway_handles WHERE sha256 = ?", -1,
                           &remove_handle.stmt, nullptr) != SQLITE_OK)
      fail("cannot prepare statements");
    if (sqlite3_prepare_v2(
            db,
            "INSERT OR REPLACE INTO sessions (user_id, access_token, device_id, expires_at_ms,"
            " pending_logout, created_at_ms, last_used_at_ms, refresh_token, lifetime_ms,"
            " login_in_flight, token_handle, pending_logout_handle)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            -1, &upsert.stmt, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM sessions WHERE user_id = ?", -1, &remove.stmt,
                           nullptr) != SQLITE_OK)
      fail("cannot prepare statements");
  }

  int apply(const write_op& op) {
    sqlite3_stmt* s = nullptr;
    const auto& r = op.session;
    if (op.what == write_op::kind::save) {
      s = upsert.stmt;
      bind_text(s, 1, r.user_id, false);
      bind_text(s, 2, r.access_token.reveal());
      if (r.device_id)
        bind_text(s, 3, *r.device_id, false);
      else
        sqlite3_bind_null(s, 3);
      if (r.expires_at_ms)
        sqlite3_bind_int64(s, 4, *r.expires_at_ms);
      else
        sqlite3_bind_null(s, 4);
      bind_text(s, 5, r.pending_logout.reveal());
      sqlite3_bind_int64(s, 6, r.created_at_ms);
      sqlite3_bind_int64(s, 7, r.last_used_at_ms);
      bind_text(s, 8, r.refresh_token.reveal());
      if (r.lifetime_ms > 0)
        sqlite3_bind_int64(s, 9, r.lifetime_ms);
      else
        sqlite3_bind_null(s, 9);
      sqlite3_bind_int(s, 10, r.login_in_flight ? 1 : 0);
      bind_text(s, 11, r.token_handle);
      bind_text(s, 12, r.pending_logout_handle);
    } else if (op.what == write_op::kind::erase) {
      s = remove.stmt;
      bind_text(s, 1, r.user_id, false);
    } else if (op.what == write_op::kind::save_handle) {
      s = upsert_handle.stmt;
      bind_text(s, 1, op.handle.sha256_hex, false);
      bind_text(s, 2, op.handle.bridge, false);
      bind_text(s, 3, op.handle.user_id, false);
      sqlite3_bind_int64(s, 4, op.handle.created_at_ms);
    } else if (op.what == write_op::kind::erase_handle) {
      s = remove_handle.stmt;
      bind_text(s, 1, op.handle.sha256_hex, false);
    } else {
      return SQLITE_DONE;
    }
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
  }

  // Takes everything queued, commits it as one transaction, completes each write.
  void run_writer() {
    std::unique_lock lock{mutex};
    for (;;) {
      wake.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) return;  // stopping and drained
      auto batch = std::move(queue);
      queue.clear();
      lock.unlock();
      int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
      for (const auto& op : batch) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE) break;
        rc = apply(op);
      }
      if (rc == SQLITE_OK || rc == SQLITE_DONE) {
        rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
      } else {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      }
      ++commits;
      const error_code ec = rc == SQLITE_OK ? error_code{} : error_code{rc, sqlite_errors()};
      for (auto& op : batch)
        if (op.done) op.done->complete(ec);
      lock.lock();
    }
  }

  template <typename Token>
  auto async_submit(write_op op, Token&& token) {
    return asio::async_initiate<Token, void(error_code)>(
        [this](auto handler, write_op op) {
          auto ex = asio::get_associated_executor(handler, executor);
          op.done = std::make_unique<handler_completion<decltype(handler), decltype(ex)>>(
              std::move(handler), ex);
          {
            std::lock_guard lock{mutex};
            queue.push_back(std::move(op));
          }
          wake.notify_one();
        },
        token, std::move(op));
  }
};

session_store::session_store(asio::any_io_executor executor, const std::string& path,
                             open_result* result)
    : impl_(std::make_unique<impl>()) {
  impl_->executor = std::move(executor);
  impl_->path = path;
  try {
    impl_->open(result);
  } catch (...) {
    if (impl_->db) sqlite3_close_v2(impl_->db);
    throw;
  }
  impl_->writer = std::thread([this] { impl_->run_writer(); });
}

session_store::~session_store() {
  {
    std::lock_guard lock{impl_->mutex};
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  if (impl_->writer.joinable()) impl_->writer.join();
  sqlite3_finalize(impl_->upsert.stmt);
  sqlite3_finalize(impl_->remove.stmt);
  sqlite3_finalize(impl_->upsert_handle.stmt);
  sqlite3_finalize(impl_->remove_handle.stmt);
  impl_->upsert.stmt = impl_->remove.stmt = nullptr;
  impl_->upsert_handle.stmt = impl_->remove_handle.stmt = nullptr;
  sqlite3_close_v2(impl_->db);
}

std::vector<stored_session> session_store::load_all() {
  std::vector<stored_session> out;
  statement select;
  if (sqlite3_prepare_v2(
          impl_->db,
          "SELECT user_id, access_token, device_id, expires_at_ms, pending_logout, created_at_ms,"
          " last_used_at_ms, refresh_token, lifetime_ms, login_in_flight, token_handle,"
          " pending_logout_handle FROM sessions"
          " ORDER BY last_used_at_ms",
          -1, &select.stmt, nullptr) != SQLITE_OK)
    impl_->fail("cannot read sessions");
  int rc;
  while ((rc = sqlite3_step(select.stmt)) == SQLITE_ROW) {
    stored_session s;
    s.user_id = column_text(select.stmt, 0);
    s.access_token = secret_string{column_text(select.stmt, 1)};
    if (sqlite3_column_type(select.stmt, 2) != SQLITE_NULL)
      s.device_id = column_text(select.stmt, 2);
    if (sqlite3_column_type(select.stmt, 3) != SQLITE_NULL)
      s.expires_at_ms = sqlite3_column_int64(select.stmt, 3);
    s.pending_logout = secret_string{column_text(select.stmt, 4)};
    s.created_at_ms = sqlite3_column_int64(select.stmt, 5);
    s.last_used_at_ms = sqlite3_column_int64(select.stmt, 6);
    s.refresh_token = secret_string{column_text(select.stmt, 7)};
    s.lifetime_ms = sqlite3_column_int64(select.stmt, 8);  // NULL reads as 0
    s.login_in_flight = sqlite3_column_int(select.stmt, 9) != 0;
    s.token_handle = column_text(select.stmt, 10);  // NULL reads as empty
    s.pending_logout_handle = column_text(select.stmt, 11);
    out.push_back(std::move(s));
  }
  if (rc != SQLITE_DONE) impl_->fail("cannot read sessions");
  return out;
}

asio::awaitable<error_code> session_store::save(stored_session session) {
  write_op op{write_op::kind::save, std::move(session), {}, nullptr};
  error_code ec;
  co_await impl_->async_submit(std::move(op), asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

asio::awaitable<error_code> session_store::erase(std::string user_id) {
  write_op op{write_op::kind::erase, {}, {}, nullptr};
  op.session.user_id = std::move(user_id);
  error_code ec;
  co_await impl_->async_submit(std::move(op), asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

std::vector<stored_handle> session_store::load_handles() {
  std::vector<stored_handle> out;
  statement select;
  if (sqlite3_prepare_v2(impl_->db,
                         "SELECT sha256, bridge, user_id, created_at_ms FROM gateway_handles", -1,
                         &select.stmt, nullptr) != SQLITE_OK)
    impl_->fail("cannot read gateway handles");
  int rc;
  while ((rc = sqlite3_step(select.stmt)) == SQLITE_ROW)
    out.push_back({column_text(select.stmt, 0), column_text(select.stmt, 1),
                   column_text(select.stmt, 2), sqlite3_column_int64(select.stmt, 3)});
  if (rc != SQLITE_DONE) impl_->fail("cannot read gateway handles");
  return out;
}

asio::awaitable<error_code> session_store::save_handle(stored_handle handle) {
  write_op op{write_op::kind::save_handle, {}, std::move(handle), nullptr};
  error_code ec;
  co_await impl_->async_submit(std::move(op), asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

asio::awaitable<error_code> session_store::erase_handle(std::string sha256_hex) {
  write_op op{write_op::kind::erase_handle, {}, {}, nullptr};
  op.handle.sha256_hex = std::move(sha256_hex);
  error_code ec;
  co_await impl_->async_submit(std::move(op), asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

asio::awaitable<void> session_store::flush() {
  write_op op{write_op::kind::flush, {}, {}, nullptr};
  error_code ec;
  co_await impl_->async_submit(std::move(op), asio::redirect_error(asio::use_awaitable, ec));
}

std::uint64_t session_store::transactions() const noexcept {
  return impl_->commits;
}

}  // namespace mxp::store
