// The pool's background tasks: a thin driver that performs what session_operation asks
// for (homeserver calls, store writes, waits) and reports each outcome back, plus the
// logout task and persistence. Policy lives in the operation, not here.
#include <boost/asio/co_spawn.hpp>

#include <spdlog/spdlog.h>

#include "core/errc.hpp"
#include "sessions/pool_state.hpp"

namespace mxp::sessions {

namespace asio = boost::asio;

namespace {

// A homeserver call that threw (allocation, a bug in a client) is one that got no answer.
template <typename T>
asio::awaitable<matrix::upstream_result<T>> guarded(
    asio::awaitable<matrix::upstream_result<T>> call) {
  try {
    co_return co_await std::move(call);
  } catch (const std::exception& ex) {
    co_return local_error(errc::upstream_unavailable, ex.what());
  }
}

validation classify_whoami(const matrix::upstream_result<std::string>& who,
                           const std::string& user_id, std::string& detail) {
  if (who.has_value()) {
    if (*who == user_id) return validation::alive;
    detail = "token belongs to another user";
    return validation::dead;
  }
  if (who.error().http_status == 401) {
    detail = who.error().errcode;
    return validation::dead;
  }
  detail = who.error().code.message();
  return validation::unknown;
}

// Moves a session out of the busy state its task will not work through (shutdown).
void abandon(session_machine& m) {
  switch (m.state()) {
    case session_state::validating:
      return m.on_validated(validation::unknown);
    case session_state::refreshing:
      return m.on_refresh_deferred();
    case session_state::logging_in:
      return m.on_login_failed();
    default:
      return;
  }
}

}  // namespace

void pool_state::spawn(asio::awaitable<void> task) {
  ++tasks;
  asio::co_spawn(executor, std::move(task), [self = shared_from_this()](std::exception_ptr ep) {
    --self->tasks;
    self->task_finished.notify_all();
    if (!ep) return;
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      spdlog::error("background session task failed: {}", ex.what());
    }
  });
}

asio::awaitable<void> pool_state::session_task(std::shared_ptr<session_entry> e) {
  auto& hs = *e->homeserver;
  while (hs.logins_in_flight >= hs.entry.max_concurrent_logins && !stopping)
    co_await hs.login_slot_freed.wait(session_clock::never_ms);
  if (stopping) {  // never started: the session keeps what it had, its callers hear why
    e->record.last_failure =
        std::make_unique<pool_error>(local_error(errc::shutting_down, "daemon is shutting down"));
    abandon(e->machine());
    e->changed.notify_all();
    co_return;
  }
  ++hs.logins_in_flight;
  struct release_slot {
    homeserver_state& hs;
    ~release_slot() {
      --hs.logins_in_flight;
      hs.login_slot_freed.notify_one();
    }
  } slot{hs};

  // A reload may swap the entry's client meanwhile: this task keeps the one it started with.
  const auto client_ref = hs.entry.client;
  auto& client = *client_ref;
  const auto& user = e->user_id;
  const auto started = std::chrono::steady_clock::now();
  const auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 started)
        .count();
  };
  session_operation op{e->record, hs.health, options.max_login_attempts};
  auto action = op.start(tick_of(*e));
  for (;;) {
    using kind = session_action_kind;
    switch (action.kind) {
      case kind::whoami: {
        const auto began = elapsed_ms();
        auto who = co_await guarded(client.whoami(e->machine().token().access_token));
        std::string detail;
        const auto outcome = classify_whoami(who, user, detail);
        static constexpr std::string_view names[] = {"alive", "dead", "unknown"};
        spdlog::info(
            "validate user={} homeserver={} method={} result={} duration_ms={} detail=\"{}\"", user,
            client.server_name(), client.method_name(), names[static_cast<int>(outcome)],
            elapsed_ms() - began, detail);
        action = op.on_whoami(tick_of(*e), outcome);
        break;
      }
      case kind::refresh: {
        const auto began = std::chrono::steady_clock::now();
        auto grant = co_await guarded(client.refresh(e->machine().token().refresh_token));
        const auto took = std::chrono::steady_clock::now() - began;
        const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
        // result::error() is a copy: kept here for the observer's pointer.
        const auto failure = grant.has_value() ? std::nullopt : std::optional{grant.error()};
        if (options.observer)
          options.observer->on_refresh(client.server_name(), took, failure ? &*failure : nullptr);
        if (grant.has_value()) {
          spdlog::info("refresh user={} homeserver={} method={} result=ok duration_ms={}", user,
                       client.server_name(), client.method_name(), took_ms);
        } else {
          const auto& f = grant.error();
          spdlog::warn(
              "refresh user={} homeserver={} method={} result={} duration_ms={} upstream_status={} "
              "upstream_errcode={} detail=\"{}\": logging in again",
              user, client.server_name(), client.method_name(), f.code.message(), took_ms,
              f.http_status, f.errcode, f.diagnostic);
        }
        action = op.on_refreshed(tick_of(*e), std::move(grant));
        break;
      }
      case kind::logout_pending: {
        // Built before the co_await: GCC 12 mishandles a conditional temporary in one.
        const bool renewal = e->machine().pending_logout_is_renewal();
        auto call = renewal ? client.retire(e->machine().pending_logout())
                            : client.logout(e->machine().pending_logout());
        auto out = co_await guarded(std::move(call));
        if (out.has_value() && options.observer)
          options.observer->on_logout(client.server_name(), nullptr);
        action = op.on_pending_logged_out(tick_of(*e), out);
        break;
      }
      case kind::persist: {
        // Built before the co_await: GCC 12 mishandles a conditional temporary in one.
        secret_string pending;
        if (action.with_pending_logout) pending = e->machine().pending_logout();
        auto row = row_of(*e, std::move(pending));
        co_await persist(std::move(row));
        action = op.on_persisted(tick_of(*e));
        break;
      }
      case kind::clean_device_login:
        action = op.on_orphan_killer(tick_of(*e), co_await guarded(client.login(user)));
        break;
      case kind::clean_device_logout: {
        auto out = co_await guarded(client.logout(op.orphan_killer()));
        if (out.has_value())
          spdlog::info(
              "login user={} homeserver={}: device cleaned (a login whose outcome was lost may "
              "have left a live token on it)",
              user, client.server_name());
        action = op.on_device_cleaned(tick_of(*e), out);
        break;
      }
      case kind::login: {
        auto grant = co_await guarded(client.login(user));
        const auto jitter = std::uniform_real_distribution<double>{0, 1}(jitter_source);
        action = op.on_logged_in(tick_of(*e), std::move(grant), jitter);
        if (auto& f = op.last_attempt_failure(); f && f->code == errc::upstream_rate_limited)
          spdlog::info("login user={} homeserver={}: rate limited, retrying in {} ms", user,
                       client.server_name(), hs.health.not_before_ms() - steady_ms());
        break;
      }
      case kind::wait_for_probe:
        co_await hs.probe_finished.wait(session_clock::never_ms);
        action = op.on_woken(tick_of(*e));
        break;
      case kind::answer:
        e->changed.notify_all();  // waiters whose deadline comes first answer now
        action = op.on_answered(tick_of(*e));
        break;
      case kind::wait_until:
        co_await e->caller_left.wait(action.until_ms);
        action = op.on_woken(tick_of(*e));
        break;
      case kind::probe_finished:
        hs.probe_finished.notify_all();
        action = op.resume(tick_of(*e));
        break;
      case kind::done: {
        const auto& out = op.outcome();
        // A login that never went out (paused, shutdown) is not one the homeserver saw.
        if (out.login && out.login_attempts > 0 && options.observer)
          options.observer->on_login(client.server_name(), client.method_name(),
                                     std::chrono::steady_clock::now() - started,
                                     out.failure ? &*out.failure : nullptr);
        if (out.login && out.failure) {
          const auto& f = *out.failure;
          spdlog::warn(
              "login user={} homeserver={} method={} result={} duration_ms={} attempts={} "
              "upstream_status={} upstream_errcode={} upstream_error=\"{}\" detail=\"{}\"",
              user, client.server_name(), client.method_name(), f.code.message(), elapsed_ms(),
              out.login_attempts, f.http_status, f.errcode, f.error, f.diagnostic);
        } else if (out.login) {
          spdlog::info("login user={} homeserver={} method={} result=ok duration_ms={} attempts={}",
                       user, client.server_name(), client.method_name(), elapsed_ms(),
                       out.login_attempts);
        }
        e->changed.notify_all();
        co_return;
      }
    }
  }
}

asio::awaitable<void> pool_state::logout_task(std::shared_ptr<session_entry> e,
                                              bool forget_even_if_unconfirmed) {
  auto& hs = *e->homeserver;
  // Written first: if the daemon dies mid-logout, the next run still logs this token out.
  co_await persist(row_of(*e, e->machine().token_to_log_out()));
  const auto started = std::chrono::steady_clock::now();
  const auto client_ref = hs.entry.client;  // a reload may swap the entry's client meanwhile
  auto& client = *client_ref;
  auto out = co_await guarded(client.logout(e->machine().token_to_log_out()));
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  const bool confirmed = out.has_value();
  const auto failure = confirmed ? std::nullopt : std::optional{out.error()};
  if (options.observer)
    options.observer->on_logout(client.server_name(), failure ? &*failure : nullptr);
  if (!confirmed) {
    const auto& f = out.error();
    spdlog::warn(
        "logout user={} homeserver={} method={} result={} duration_ms={} upstream_status={} "
        "detail=\"{}\"",
        e->user_id, client.server_name(), client.method_name(), f.code.message(), ms, f.http_status,
        f.diagnostic);
    e->record.last_failure = std::make_unique<pool_error>(f);
  } else {
    spdlog::info(
        "logout user={} homeserver={} method={} result=ok token_was_live={} duration_ms={}",
        e->user_id, client.server_name(), client.method_name(), out->token_was_live, ms);
    e->record.device_unclean = false;  // logging out a token ends its whole device
  }
  e->machine().on_logout_finished(confirmed);
  if (confirmed) co_await unpersist(e->user_id);  // nothing of it is live any more
  if (e->machine().state() == session_state::gone ||
      (forget_even_if_unconfirmed && e->machine().state() == session_state::absent)) {
    erase(*e);
  }
  e->changed.notify_all();
}

store::stored_session pool_state::row_of(const session_entry& e, secret_string pending) const {
  const auto& m = e.machine();
  store::stored_session row;
  row.user_id = e.user_id;
  if (m.state() == session_state::active) {
    row.access_token = m.token().access_token;
    row.device_id = m.token().device_id;
    row.expires_at_ms = m.token().expires_at_ms;
    row.refresh_token = m.token().refresh_token;
    row.lifetime_ms = m.token().lifetime_ms;
  }
  row.pending_logout = std::move(pending);
  const auto& client = *e.homeserver->entry.client;
  row.token_handle = client.token_handle(row.access_token);
  row.pending_logout_handle = client.token_handle(row.pending_logout);
  row.login_in_flight = e.record.device_unclean;
  row.created_at_ms = m.created_at_ms();
  row.last_used_at_ms = m.last_used_at_ms();
  return row;
}

asio::awaitable<void> pool_state::persist(store::stored_session row) {
  if (!options.store) co_return;
  const auto user = row.user_id;
  if (auto ec = co_await options.store->save(std::move(row)))
    spdlog::error("session store: cannot save the session of {}: {}", user, ec.message());
}

asio::awaitable<void> pool_state::unpersist(std::string user_id) {
  if (!options.store) co_return;
  if (auto ec = co_await options.store->erase(user_id))
    spdlog::error("session store: cannot delete the session of {}: {}", user_id, ec.message());
}

}  // namespace mxp::sessions
