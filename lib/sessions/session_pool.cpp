// session_pool: drives one session_machine per user with coroutines. Logins and
// logouts run as background tasks (never tied to one caller's connection), and
// callers wait for them with their own deadlines.
#include "sessions/session_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive/list.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <unordered_map>

#include "core/errc.hpp"
#include "matrix/user_id.hpp"
#include "sessions/wait_queue.hpp"

namespace mxp::sessions {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

struct homeserver_state {
  homeserver_entry entry;
  bool removed = false;  // by a reload: its sessions are on their way out
  homeserver_health health;
  unsigned logins_in_flight = 0;
  wait_queue login_slot_freed;
  wait_queue probe_finished;  // the half-open circuit's probe is back (or gone)
  std::uint64_t logins_ok = 0, logins_failed = 0, logouts = 0, refreshes_ok = 0,
                refreshes_failed = 0;
};

// One user's session. Shared with the tasks working on it, so that a session
// dropped from the pool stays alive until they are done with it.
struct session_entry : boost::intrusive::list_base_hook<> {
  session_entry(std::string user, homeserver_state* hs, std::int64_t now_ms)
      : user_id(std::move(user)), homeserver(hs), machine(now_ms) {}
  std::string user_id;
  homeserver_state* homeserver;
  session_machine machine;
  wait_queue changed;                        // notified after every login/logout outcome
  std::unique_ptr<pool_error> last_failure;  // what the last failed operation said
  // While its login waits out a 429 or a backoff: when it will try again (steady ms), so that
  // callers whose deadline comes first get their answer now instead of a timeout later.
  std::int64_t retry_at_ms = 0;
  unsigned waiters = 0;    // callers waiting on `changed` for a token
  wait_queue caller_left;  // a caller stopped waiting: a login pausing for nobody gives up
  // A login went out whose outcome is unknown (cancelled, timed out, or the daemon died: the
  // row says so at restart). The homeserver may hold a live token of this device that nobody
  // has, so the next login cleans the device: log in, log out (every token of the device dies),
  // log in.
  bool device_unclean = false;
};

pool_error local_error(errc code, std::string diagnostic) {
  pool_error e;
  e.code = code;
  e.diagnostic = std::move(diagnostic);
  return e;
}

bool is_unreachable(const pool_error& e) {
  return e.code == errc::upstream_unavailable || e.code == errc::upstream_timeout ||
         e.code == errc::discovery_failed;
}

// Worth another try after a backoff: no answer, the homeserver's own 5xx, or a 2xx it cannot
// have meant (garbage, wrong shape). The last is retried too so that a broken homeserver
// or proxy meets the backoff and the circuit instead of a login per bridge request.
bool is_transient(const pool_error& e) {
  return is_unreachable(e) || e.http_status >= 500 || e.code == errc::upstream_bad_response;
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t elapsed_ms(steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - since).count();
}

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct session_pool::impl : std::enable_shared_from_this<session_pool::impl> {
  using lru_list = boost::intrusive::list<session_entry>;  // front: most recently used

  asio::any_io_executor executor;
  pool_options options;
  std::map<std::string, std::unique_ptr<homeserver_state>, std::less<>> homeservers;
  // Homeservers removed by a reload: kept while sessions and tasks may still point at them.
  std::vector<std::unique_ptr<homeserver_state>> retired;
  // Keys view the entry's own user_id.
  std::unordered_map<std::string_view, std::shared_ptr<session_entry>> sessions;
  lru_list lru;  // sessions that may be evicted (not those already being revoked for good)
  std::size_t tasks = 0;
  wait_queue task_finished;
  bool stopping = false;
  wait_queue stop_requested;  // wakes tasks sleeping through a backoff at shutdown
  std::optional<asio::steady_timer> maintenance_timer;
  std::minstd_rand jitter_source{std::random_device{}()};

  ~impl() { lru.clear(); }

  // Wakes everything that waits and ends every homeserver request in flight, so that each task
  // finishes at once: waiting callers get shutting_down, logins in flight end with it.
  void stop_everything() {
    stopping = true;
    stop_requested.notify_all();
    if (maintenance_timer) maintenance_timer->cancel();
    for (auto& [_, hs] : homeservers) wake_and_cancel(*hs);
    for (auto& hs : retired) wake_and_cancel(*hs);
    for (auto& [_, e] : sessions) {
      e->changed.notify_all();
      e->caller_left.notify_all();
    }
  }
  static void wake_and_cancel(homeserver_state& hs) {
    hs.login_slot_freed.notify_all();
    hs.probe_finished.notify_all();
    hs.entry.client->cancel_requests();
  }

  std::int64_t now() const { return options.now_ms(); }

  void touch(session_entry& e) {
    if (e.is_linked()) lru.splice(lru.begin(), lru, lru.iterator_to(e));
  }

  token_view view(const session_entry& e) const {
    const auto& t = e.machine.token();
    return {e.user_id, &t.access_token, &t.device_id, t.expires_at_ms,
            e.homeserver->entry.client.get()};
  }

  // Removes `e` from the pool if it is still the pool's entry for its user.
  void erase(session_entry& e) {
    if (e.is_linked()) lru.erase(lru.iterator_to(e));
    if (auto it = sessions.find(e.user_id); it != sessions.end() && it->second.get() == &e)
      sessions.erase(it);
  }

  std::shared_ptr<session_entry> find_or_create(const std::string& user_id, homeserver_state* hs) {
    if (auto it = sessions.find(user_id); it != sessions.end()) return it->second;
    auto e = std::make_shared<session_entry>(user_id, hs, now());
    sessions.emplace(e->user_id, e);
    lru.push_front(*e);
    enforce_capacity(e.get());
    return e;
  }

  // Evicts least recently used sessions beyond sessions.max; never `keep`, never busy ones.
  void enforce_capacity(const session_entry* keep) {
    if (lru.size() <= options.max_sessions) return;
    // Pick first, evict after: evicting unlinks the node an iterator would stand on.
    std::vector<session_entry*> victims;
    const auto excess = lru.size() - options.max_sessions;
    for (auto it = lru.rbegin(); it != lru.rend() && victims.size() < excess; ++it)
      if (&*it != keep && !it->machine.busy()) victims.push_back(&*it);
    for (auto* victim : victims) evict(*victim, "capacity");
  }

  void evict(session_entry& e, std::string_view why) {
    auto keep_alive = sessions.at(e.user_id);
    spdlog::info("evicting session of {} ({})", e.user_id, why);
    if (e.is_linked()) lru.erase(lru.iterator_to(e));
    if (options.revoke_on_evict && e.machine.on_revoke() == revoke_step::start_logout) {
      spawn(logout_task(keep_alive, /*forget_even_if_unconfirmed=*/true));
      return;
    }
    erase(e);
    e.changed.notify_all();
    // Forgotten without a logout: a restart must not bring it back, unless its row is all that
    // says its device may hold a live token.
    if (!e.device_unclean) spawn(unpersist(e.user_id));
  }

  // --- persistence: a row exists while something of the user may be live ---
  store::stored_session row_of(const session_entry& e, secret_string pending) const {
    const auto& m = e.machine;
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
    row.login_in_flight = e.device_unclean;
    row.created_at_ms = m.created_at_ms();
    row.last_used_at_ms = m.last_used_at_ms();
    return row;
  }
  asio::awaitable<void> persist(store::stored_session row) {
    if (!options.store) co_return;
    const auto user = row.user_id;
    if (auto ec = co_await options.store->save(std::move(row)))
      spdlog::error("session store: cannot save the session of {}: {}", user, ec.message());
  }
  asio::awaitable<void> unpersist(std::string user_id) {
    if (!options.store) co_return;
    if (auto ec = co_await options.store->erase(user_id))
      spdlog::error("session store: cannot delete the session of {}: {}", user_id, ec.message());
  }

  // Every background task is owned by the pool: counted, awaited by shutdown(), woken and its
  // requests cancelled by stop_everything(), and it keeps the pool's state alive until it ends,
  // even when the session_pool object is gone before it.
  template <typename Task>
  void spawn(Task task) {
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

  // Works a session out of logging_in, refreshing or validating (whichever the machine is
  // in), then wakes its waiters. At most max_concurrent_logins of these run per homeserver.
  asio::awaitable<void> session_task(std::shared_ptr<session_entry> e) {
    auto& hs = *e->homeserver;
    while (hs.logins_in_flight >= hs.entry.max_concurrent_logins && !stopping)
      co_await hs.login_slot_freed.wait(steady_clock::time_point::max());
    if (stopping) {  // never started: the session keeps what it had, its callers hear why
      e->last_failure =
          std::make_unique<pool_error>(local_error(errc::shutting_down, "daemon is shutting down"));
      abandon(*e);
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

    if (e->machine.state() == session_state::validating) co_await validate(*e);
    if (e->machine.state() == session_state::refreshing) co_await refresh(*e);
    if (e->machine.state() == session_state::logging_in) co_await log_in(*e);
    e->changed.notify_all();
  }

  // Moves a session out of the busy state its task will not work through (shutdown).
  static void abandon(session_entry& e) {
    switch (e.machine.state()) {
      case session_state::validating:
        return e.machine.on_validated(validation::unknown);
      case session_state::refreshing:
        return e.machine.on_refresh_deferred();
      case session_state::logging_in:
        return e.machine.on_login_failed();
      default:
        return;
    }
  }

  // validating: whoami; a dead token moves the machine on to refreshing or logging_in.
  asio::awaitable<void> validate(session_entry& e) {
    const auto client_ref =
        e.homeserver->entry.client;  // a reload may swap the entry's client meanwhile
    auto& client = *client_ref;
    const auto started = steady_clock::now();
    validation outcome = validation::unknown;
    std::string detail;
    try {
      auto who = co_await client.whoami(e.machine.token().access_token);
      if (who) {
        outcome = *who == e.user_id ? validation::alive : validation::dead;
        if (outcome == validation::dead) detail = "token belongs to another user";
      } else if (who.error().http_status == 401) {
        outcome = validation::dead;
        detail = who.error().errcode;
      } else {
        detail = who.error().code.message();
      }
    } catch (const std::exception& ex) {
      detail = ex.what();
    }
    static constexpr std::string_view names[] = {"alive", "dead", "unknown"};
    spdlog::info("validate user={} homeserver={} method={} result={} duration_ms={} detail=\"{}\"",
                 e.user_id, client.server_name(), client.method_name(),
                 names[static_cast<int>(outcome)], elapsed_ms(started), detail);
    e.machine.on_validated(outcome);  // unknown: handed out, the homeserver could not say otherwise
  }

  // refreshing: one POST /refresh, never replayed; any failure falls back to a login.
  asio::awaitable<void> refresh(session_entry& e) {
    auto& hs = *e.homeserver;
    const auto client_ref = hs.entry.client;  // a reload may swap the entry's client meanwhile
    auto& client = *client_ref;
    const auto started = steady_clock::now();
    std::optional<pool_error> failure;
    // Only an open circuit stops a refresh (Synapse's login rate limit does not cover /refresh),
    // and then the session keeps the token it has: it is served for as long as it is valid.
    if (hs.health.circuit(steady_ms()) == circuit_state::open || stopping) {
      e.last_failure = std::make_unique<pool_error>(local_error(
          errc::upstream_unavailable, "homeserver unreachable (circuit open): cannot refresh"));
      e.machine.on_refresh_deferred();
      co_return;
    }
    try {
      auto grant = co_await client.refresh(e.machine.token().refresh_token);
      if (grant) {
        const auto now_ms = now();
        session_token token{std::move(grant->access_token), std::nullopt, std::nullopt,
                            std::move(grant->refresh_token), grant->expires_in_ms.value_or(0)};
        if (grant->expires_in_ms) token.expires_at_ms = now_ms + *grant->expires_in_ms;
        e.machine.on_refresh_succeeded(std::move(token), now_ms);
        co_await persist(row_of(e, {}));  // the old refresh token is dead now: durable first
        hs.health.on_success();
        ++hs.refreshes_ok;
      } else {
        failure = std::move(grant).error();
      }
    } catch (const std::exception& ex) {
      failure = local_error(errc::upstream_unavailable, ex.what());
    }
    if (options.observer)
      options.observer->on_refresh(client.server_name(), steady_clock::now() - started,
                                   failure ? &*failure : nullptr);
    if (!failure) {
      spdlog::info("refresh user={} homeserver={} method={} result=ok duration_ms={}", e.user_id,
                   client.server_name(), client.method_name(), elapsed_ms(started));
      co_return;
    }
    ++hs.refreshes_failed;
    spdlog::warn(
        "refresh user={} homeserver={} method={} result={} duration_ms={} upstream_status={} "
        "upstream_errcode={} detail=\"{}\": logging in again",
        e.user_id, client.server_name(), client.method_name(), failure->code.message(),
        elapsed_ms(started), failure->http_status, failure->errcode, failure->diagnostic);
    e.machine.on_refresh_failed();
  }

  // logging_in: logs a possibly live old token out, then logs in; waits out 429s, backoffs and an
  // open circuit while callers whose deadlines cover the wait still wait (the others are
  // answered at once by get_token), up to max_login_attempts. A pause that nobody waits for any
  // more is given up, so that it does not hold a login slot.
  asio::awaitable<void> log_in(session_entry& e) {
    auto& hs = *e.homeserver;
    const auto client_ref = hs.entry.client;  // a reload may swap the entry's client meanwhile
    auto& client = *client_ref;
    const auto started = steady_clock::now();
    std::optional<pool_error> failure;
    unsigned attempts = 0;
    while (!stopping) {
      const auto now_steady = steady_ms();
      const auto admitted = hs.health.admit(now_steady);
      if (admitted == admission::wait_for_probe) {
        co_await hs.probe_finished.wait(steady_clock::time_point::max());
        continue;
      }
      if (admitted == admission::wait) {
        if (attempts > 0 && e.waiters == 0) break;  // nobody waits any more: report the failure
        const auto wait_ms = hs.health.not_before_ms() - now_steady;
        e.last_failure = std::make_unique<pool_error>(pause_reason(hs, now_steady, failure));
        e.retry_at_ms = hs.health.not_before_ms();
        e.changed.notify_all();  // waiters whose deadline comes first answer now
        co_await e.caller_left.wait(steady_clock::now() + std::chrono::milliseconds{wait_ms});
        if (!stopping && e.waiters == 0 && steady_ms() < hs.health.not_before_ms()) {
          failure = *e.last_failure;  // nobody waits for the pause: give the slot back
          if (failure->retry_after_ms) failure->retry_after_ms = e.retry_at_ms - steady_ms();
          break;
        }
        continue;
      }
      e.retry_at_ms = 0;
      ++attempts;
      const bool probe = admitted == admission::probe;
      if (probe) hs.health.begin_probe();
      failure = co_await attempt_login(e);
      if (probe) {
        hs.health.end_probe();
        hs.probe_finished.notify_all();  // after the outcome below is recorded: same turn
      }
      if (!failure) {
        hs.health.on_success();
        break;
      }
      e.last_failure = std::make_unique<pool_error>(*failure);
      if (failure->code == errc::shutting_down) break;
      if (failure->code == errc::upstream_rate_limited) {
        hs.health.on_rate_limited(steady_ms(), failure->retry_after_ms.value_or(0));
        spdlog::info("login user={} homeserver={}: rate limited, retrying in {} ms", e.user_id,
                     client.server_name(), hs.health.not_before_ms() - steady_ms());
        continue;
      }
      if (!is_transient(*failure)) {
        hs.health.on_success();  // it answered, and refused: trying again would not help
        break;
      }
      hs.health.on_unreachable(steady_ms(),
                               std::uniform_real_distribution<double>{0, 1}(jitter_source));
      if (attempts >= options.max_login_attempts) break;
    }
    e.retry_at_ms = 0;
    if (!failure && e.machine.state() == session_state::logging_in && stopping)
      failure = local_error(errc::shutting_down, "daemon is shutting down");
    // A login that never went out (paused, shutdown) is not one the homeserver saw: not counted.
    if (options.observer && attempts > 0)
      options.observer->on_login(client.server_name(), client.method_name(),
                                 steady_clock::now() - started, failure ? &*failure : nullptr);
    if (failure) {
      if (attempts > 0) ++hs.logins_failed;
      spdlog::warn(
          "login user={} homeserver={} method={} result={} duration_ms={} attempts={} "
          "upstream_status={} "
          "upstream_errcode={} upstream_error=\"{}\" detail=\"{}\"",
          e.user_id, client.server_name(), client.method_name(), failure->code.message(),
          elapsed_ms(started), attempts, failure->http_status, failure->errcode, failure->error,
          failure->diagnostic);
      e.last_failure = std::make_unique<pool_error>(std::move(*failure));
      e.machine.on_login_failed();
    } else {
      ++hs.logins_ok;
      e.last_failure.reset();
      spdlog::info("login user={} homeserver={} method={} result=ok duration_ms={} attempts={}",
                   e.user_id, client.server_name(), client.method_name(), elapsed_ms(started),
                   attempts);
    }
  }

  // Why a login is not going out now, for the callers that cannot wait for it: with the
  // remaining wait in retry_after_ms (429 for a rate limit, 503 for a failing homeserver).
  static pool_error pause_reason(const homeserver_state& hs, std::int64_t now_steady,
                                 const std::optional<pool_error>& own_failure) {
    const auto wait_ms = hs.health.not_before_ms() - now_steady;
    if (hs.health.rate_limited(now_steady)) {
      auto why =
          local_error(errc::upstream_rate_limited,
                      fmt::format("homeserver rate limit: logins paused for {} ms", wait_ms));
      why.retry_after_ms = wait_ms;
      return why;
    }
    // After a try of its own, the caller hears what that try met, and when the next one goes.
    auto why = own_failure
                   ? *own_failure
                   : local_error(errc::upstream_unavailable,
                                 hs.health.circuit(now_steady) == circuit_state::open
                                     ? fmt::format("homeserver unreachable ({} failures in "
                                                   "a row): circuit open for {} ms",
                                                   hs.health.consecutive_failures(), wait_ms)
                                     : fmt::format("homeserver failing: backing off for "
                                                   "{} ms",
                                                   wait_ms));
    why.retry_after_ms = wait_ms;
    return why;
  }

  // One try: the pending logout (if any), then the login; the token is durable before anyone sees
  // it. The login is marked in the store before it goes out: if its outcome is lost (cancelled,
  // timed out, the daemon killed), the homeserver may hold a live token of the device that
  // nobody has, and the next login cleans the device first.
  asio::awaitable<std::optional<pool_error>> attempt_login(session_entry& e) {
    auto& hs = *e.homeserver;
    const auto client_ref = hs.entry.client;  // a reload may swap the entry's client meanwhile
    auto& client = *client_ref;
    try {
      if (e.machine.has_pending_logout()) {
        // The previous token may still be live: it must die before a new login on the same device.
        auto out = co_await client.logout(e.machine.pending_logout());
        if (!out) co_return std::move(out).error();
        e.machine.on_pending_logout_done();
        ++hs.logouts;
        if (options.observer) options.observer->on_logout(client.server_name(), nullptr);
      }
      const bool was_unclean = e.device_unclean;
      if (!was_unclean) {
        e.device_unclean = true;
        co_await persist(row_of(e, e.machine.pending_logout()));
      } else {
        // Logging out any token of the device kills every token of it, the orphan included.
        auto orphan_killer = co_await client.login(e.user_id);
        if (!orphan_killer) co_return std::move(orphan_killer).error();
        auto out = co_await client.logout(std::move(orphan_killer->access_token));
        if (!out) co_return std::move(out).error();
        spdlog::info(
            "login user={} homeserver={}: device cleaned (a login whose outcome was lost may "
            "have left a live token on it)",
            e.user_id, client.server_name());
      }
      auto grant = co_await client.login(e.user_id);
      if (!grant) {
        // A refusal from the homeserver, or a request that never left, issued no token: the
        // device is as clean as it was. A timeout, a lost answer, a 2xx we could not read or a
        // proxy's 502/504 (the homeserver behind it may have finished the login) may hide one.
        const auto& failed = grant.error();
        const bool no_token = failed.http_status == 0
                                  ? !failed.request_sent
                                  : failed.http_status >= 400 && failed.http_status != 502 &&
                                        failed.http_status != 504;
        if (!was_unclean && no_token) e.device_unclean = false;
        co_return std::move(grant).error();
      }
      const auto now_ms = now();
      session_token token{std::move(grant->access_token), std::move(grant->device_id), std::nullopt,
                          std::move(grant->refresh_token), grant->expires_in_ms.value_or(0)};
      if (grant->expires_in_ms) token.expires_at_ms = now_ms + *grant->expires_in_ms;
      e.machine.on_login_succeeded(std::move(token), now_ms);
      e.device_unclean = false;  // the device holds this token and nothing else of ours
      // Durable before any caller sees it: a restart must find this token, not add a device.
      co_await persist(row_of(e, {}));
      co_return std::nullopt;
    } catch (const std::exception& ex) {
      co_return local_error(errc::upstream_unavailable, ex.what());
    }
  }

  asio::awaitable<void> logout_task(std::shared_ptr<session_entry> e,
                                    bool forget_even_if_unconfirmed) {
    auto& hs = *e->homeserver;
    // Written first: if the daemon dies mid-logout, the next run still logs this token out.
    co_await persist(row_of(*e, e->machine.token_to_log_out()));
    const auto started = steady_clock::now();
    std::optional<pool_error> failure;
    bool was_live = false;
    const auto client_ref = hs.entry.client;  // a reload may swap the entry's client meanwhile
    auto& client = *client_ref;
    try {
      auto out = co_await client.logout(e->machine.token_to_log_out());
      if (out) {
        was_live = out->token_was_live;
      } else {
        failure = std::move(out).error();
      }
    } catch (const std::exception& ex) {
      failure = local_error(errc::upstream_unavailable, ex.what());
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started)
            .count();
    if (options.observer)
      options.observer->on_logout(client.server_name(), failure ? &*failure : nullptr);
    if (failure) {
      spdlog::warn(
          "logout user={} homeserver={} method={} result={} duration_ms={} upstream_status={} "
          "detail=\"{}\"",
          e->user_id, client.server_name(), client.method_name(), failure->code.message(), ms,
          failure->http_status, failure->diagnostic);
      e->last_failure = std::make_unique<pool_error>(std::move(*failure));
    } else {
      ++hs.logouts;
      spdlog::info(
          "logout user={} homeserver={} method={} result=ok token_was_live={} duration_ms={}",
          e->user_id, client.server_name(), client.method_name(), was_live, ms);
    }
    if (!failure) e->device_unclean = false;  // logging out a token ends its whole device
    e->machine.on_logout_finished(!failure);
    if (!failure) co_await unpersist(e->user_id);  // nothing of it is live any more
    if (e->machine.state() == session_state::gone ||
        (forget_even_if_unconfirmed && e->machine.state() == session_state::absent)) {
      erase(*e);
    }
    e->changed.notify_all();
  }
};

session_pool::session_pool(asio::any_io_executor executor, pool_options options,
                           std::map<std::string, homeserver_entry, std::less<>> homeservers)
    : impl_(std::make_shared<impl>()) {
  impl_->executor = std::move(executor);
  impl_->options = std::move(options);
  if (!impl_->options.now_ms) impl_->options.now_ms = system_now_ms;
  if (impl_->options.max_sessions == 0) impl_->options.max_sessions = 1;
  for (auto& [name, entry] : homeservers) {
    auto state = std::make_unique<homeserver_state>();
    state->entry = std::move(entry);
    state->health = homeserver_health{impl_->options.health};
    if (state->entry.max_concurrent_logins == 0) state->entry.max_concurrent_logins = 1;
    impl_->homeservers.emplace(name, std::move(state));
  }
}

// Tasks still running hold the state (shared) and end as soon as the io_context runs them: they
// are woken and their requests cancelled here. They no longer report to the store or the
// observer, which may be gone with the pool.
session_pool::~session_pool() {
  impl_->options.store = nullptr;
  impl_->options.observer = nullptr;
  impl_->stop_everything();
}

expected<const matrix::homeserver_client*, pool_error> session_pool::route(
    std::string_view user_id) const {
  auto parts = matrix::parse_user_id(user_id);
  if (!parts) return unexpected{local_error(errc::invalid_user_id, "malformed user ID")};
  auto it = impl_->homeservers.find(parts->server_name);
  if (it == impl_->homeservers.end())
    return unexpected{local_error(
        errc::unknown_homeserver,
        "no homeserver configured for server name '" + std::string{parts->server_name} + "'")};
  return it->second->entry.client.get();
}

session_pool::restore_result session_pool::restore(std::vector<store::stored_session> rows) {
  auto& self = *impl_;
  restore_result result;
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.last_used_at_ms < b.last_used_at_ms; });
  for (auto& row : rows) {
    auto parts = matrix::parse_user_id(row.user_id);
    auto hs = parts ? self.homeservers.find(parts->server_name) : self.homeservers.end();
    if (hs == self.homeservers.end() || self.sessions.count(row.user_id)) {
      ++result.skipped;
      continue;
    }
    auto e = std::make_shared<session_entry>(std::move(row.user_id), hs->second.get(),
                                             row.created_at_ms);
    e->machine.restore({std::move(row.access_token), std::move(row.device_id), row.expires_at_ms,
                        std::move(row.refresh_token), row.lifetime_ms},
                       std::move(row.pending_logout), row.created_at_ms, row.last_used_at_ms);
    e->device_unclean = row.login_in_flight;
    self.sessions.emplace(e->user_id, e);
    self.lru.push_front(*e);  // rows come oldest first: the newest ends up in front
    ++result.restored;
  }
  return result;
}

std::optional<token_view> session_pool::find_ready(std::string_view user_id,
                                                   std::int64_t min_valid_ms) {
  auto it = impl_->sessions.find(user_id);
  if (it == impl_->sessions.end()) return std::nullopt;
  auto& e = *it->second;
  const auto now = impl_->now();
  if (e.homeserver->removed || !e.machine.ready_for(now, min_valid_ms, impl_->options.renewal))
    return std::nullopt;
  e.machine.touch(now);
  impl_->touch(e);
  if (impl_->options.observer) impl_->options.observer->on_token_lookup(true);
  return impl_->view(e);
}

asio::awaitable<expected<token_view, pool_error>> session_pool::get_token(std::string user_id,
                                                                          std::int64_t min_valid_ms,
                                                                          steady_time deadline) {
  const auto owner = impl_;  // the pool's state outlives this call even if the pool does not
  auto& self = *owner;
  auto routed = route(user_id);
  if (!routed) co_return unexpected{routed.error()};
  auto* hs = self.homeservers.find(matrix::parse_user_id(user_id)->server_name)->second.get();
  std::uint32_t waited_for = 0;
  bool looked_up = false;  // counted as a cache hit or miss (observer)
  for (;;) {
    if (self.stopping)
      co_return unexpected{local_error(errc::shutting_down, "daemon is shutting down")};
    auto e = self.find_or_create(user_id, hs);
    switch (
        e->machine.on_token_request(self.now(), min_valid_ms, waited_for, self.options.renewal)) {
      case token_step::hand_out:
        self.touch(*e);
        if (!looked_up && self.options.observer) self.options.observer->on_token_lookup(true);
        co_return self.view(*e);
      case token_step::fail:
        co_return unexpected{e->last_failure
                                 ? *e->last_failure
                                 : local_error(errc::upstream_unavailable, "login failed")};
      case token_step::too_short:
        co_return unexpected{local_error(
            errc::invalid_request,
            fmt::format("min_valid_ms={} is longer than the tokens this homeserver grants",
                        min_valid_ms))};
      case token_step::gone:
        waited_for = 0;
        continue;
      case token_step::start_login:
      case token_step::start_renewal:
        self.touch(*e);
        waited_for = e->machine.flight();
        // co_spawn dispatches: a task that never suspends (failing fast) is over already.
        self.spawn(self.session_task(e));
        if (!e->machine.busy() || e->machine.flight() != waited_for) continue;
        [[fallthrough]];
      case token_step::wait: {
        if (!looked_up && self.options.observer) self.options.observer->on_token_lookup(false);
        looked_up = true;
        // A login pausing (429, backoff, open circuit) past this caller's deadline: answer now,
        // and tell the login, which gives its slot up when nobody is left to wait for it.
        if (e->retry_at_ms > 0 && e->last_failure &&
            steady_clock::now() + std::chrono::milliseconds{e->retry_at_ms - steady_ms()} >
                deadline) {
          auto failure = *e->last_failure;
          failure.retry_after_ms = e->retry_at_ms - steady_ms();
          e->caller_left.notify_all();
          co_return unexpected{std::move(failure)};
        }
        waited_for = e->machine.flight();
        ++e->waiters;
        const bool woken = co_await e->changed.wait(deadline);
        --e->waiters;
        if (e->waiters == 0) e->caller_left.notify_all();
        if (!woken)
          co_return unexpected{
              local_error(errc::deadline_exceeded, "no token within the request deadline")};
        continue;
      }
    }
  }
}

asio::awaitable<expected<bool, pool_error>> session_pool::invalidate(std::string user_id,
                                                                     secret_string token,
                                                                     steady_time deadline) {
  const auto owner = impl_;
  auto& self = *owner;
  if (auto routed = route(user_id); !routed) co_return unexpected{routed.error()};
  auto it = self.sessions.find(user_id);
  if (it == self.sessions.end()) co_return false;
  auto e = it->second;
  if (!e->machine.on_invalidate(token)) co_return false;
  spdlog::info("invalidate user={}: logging the current token out", e->user_id);
  const auto flight = e->machine.flight();
  self.spawn(self.logout_task(e, false));
  // Answer once the old token is dead, so the bridge can rely on it.
  while (e->machine.state() == session_state::revoking && e->machine.flight() == flight) {
    if (!co_await e->changed.wait(deadline))
      break;  // still dropped; the logout finishes in the background
  }
  co_return true;
}

asio::awaitable<expected<bool, pool_error>> session_pool::revoke(std::string user_id,
                                                                 steady_time deadline) {
  const auto owner = impl_;
  auto& self = *owner;
  if (auto routed = route(user_id); !routed) co_return unexpected{routed.error()};
  for (;;) {
    auto it = self.sessions.find(user_id);
    if (it == self.sessions.end()) co_return false;
    auto e = it->second;
    switch (e->machine.on_revoke()) {
      case revoke_step::forget:
        self.erase(*e);
        e->changed.notify_all();
        co_return false;  // nothing was logged in
      case revoke_step::wait:
        if (!co_await e->changed.wait(deadline))
          co_return unexpected{
              local_error(errc::deadline_exceeded, "session busy past the request deadline")};
        continue;
      case revoke_step::start_logout: {
        const auto flight = e->machine.flight();
        if (e->is_linked()) self.lru.erase(self.lru.iterator_to(*e));
        self.spawn(self.logout_task(e, false));
        while (e->machine.state() == session_state::revoking && e->machine.flight() == flight) {
          if (!co_await e->changed.wait(deadline))
            co_return unexpected{local_error(errc::deadline_exceeded,
                                             "logout did not finish within the request deadline")};
        }
        if (e->machine.state() == session_state::gone) co_return true;
        // Unconfirmed: kept with the token pending logout, so nothing is lost; report why.
        if (!e->is_linked() && self.sessions.count(e->user_id)) self.lru.push_front(*e);
        co_return unexpected{e->last_failure
                                 ? *e->last_failure
                                 : local_error(errc::upstream_unavailable, "logout failed")};
      }
    }
  }
}

void session_pool::put_homeserver(const std::string& server_name, homeserver_entry entry) {
  auto& self = *impl_;
  if (entry.max_concurrent_logins == 0) entry.max_concurrent_logins = 1;
  auto it = self.homeservers.find(server_name);
  if (it == self.homeservers.end()) {
    auto state = std::make_unique<homeserver_state>();
    state->entry = std::move(entry);
    state->health = homeserver_health{self.options.health};
    self.homeservers.emplace(server_name, std::move(state));
    return;
  }
  auto& hs = *it->second;
  hs.entry = std::move(entry);  // running tasks hold the old client until they finish
  hs.health = homeserver_health{self.options.health};
  hs.login_slot_freed.notify_all();  // a higher cap lets waiting logins go
}

std::size_t session_pool::remove_homeserver(const std::string& server_name) {
  auto& self = *impl_;
  auto it = self.homeservers.find(server_name);
  if (it == self.homeservers.end()) return 0;
  auto* state = it->second.get();
  state->removed = true;
  self.retired.push_back(std::move(it->second));
  self.homeservers.erase(it);
  std::vector<session_entry*> victims;
  for (auto& [_, e] : self.sessions)
    if (e->homeserver == state) victims.push_back(e.get());
  for (auto* e : victims) {
    if (e->machine.busy())
      continue;  // its task finishes with the old client; it is gone from routing already
    self.evict(*e, "homeserver removed from the configuration");
  }
  return victims.size();
}

void session_pool::set_limits(std::size_t max_sessions, std::chrono::milliseconds idle_timeout,
                              bool revoke_on_evict, renewal_policy renewal,
                              bool background_refresh) {
  auto& o = impl_->options;
  o.max_sessions = std::max<std::size_t>(max_sessions, 1);
  o.idle_timeout = idle_timeout;
  o.revoke_on_evict = revoke_on_evict;
  o.renewal = renewal;
  o.background_refresh = background_refresh;
  impl_->enforce_capacity(nullptr);
  if (impl_->maintenance_timer)
    impl_->maintenance_timer->cancel();  // the next round uses the new period
}

std::size_t session_pool::refresh_due() {
  auto& self = *impl_;
  const auto now = self.now();
  // Every session that idle eviction keeps counts as in use. Collected first: a spawned task
  // may run at once and must not find the list half walked.
  std::vector<std::shared_ptr<session_entry>> due;
  for (auto& e : self.lru)
    if (e.machine.start_background_refresh(now, self.options.renewal))
      due.push_back(self.sessions.at(e.user_id));
  for (auto& e : due) self.spawn(self.session_task(std::move(e)));
  return due.size();
}

std::size_t session_pool::evict_idle() {
  auto& self = *impl_;
  const auto cutoff = self.now() - self.options.idle_timeout.count();
  std::size_t evicted = 0;
  while (!self.lru.empty()) {
    auto& oldest = self.lru.back();
    if (oldest.machine.last_used_at_ms() > cutoff || oldest.machine.busy()) break;
    self.evict(oldest, "idle");
    ++evicted;
  }
  return evicted;
}

asio::awaitable<void> session_pool::run_maintenance() {
  const auto owner = impl_;
  auto& self = *owner;
  auto& timer = self.maintenance_timer.emplace(self.executor);
  while (!self.stopping) {
    // Recomputed each round: a reload may change the idle timeout or the refresh policy.
    auto period = std::clamp<std::chrono::milliseconds>(
        self.options.idle_timeout / 4, std::chrono::seconds{1}, std::chrono::seconds{60});
    // Background refresh looks often enough to catch every token between twice the margin and the
    // margin.
    if (self.options.background_refresh)
      period = std::clamp<std::chrono::milliseconds>(
          std::chrono::milliseconds{self.options.renewal.refresh_margin_ms / 4},
          std::chrono::milliseconds{100}, period);
    timer.expires_after(period);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (self.stopping) break;
    if (auto n = evict_idle(); n > 0) spdlog::info("evicted {} idle sessions", n);
    if (self.options.background_refresh) {
      if (auto n = refresh_due(); n > 0) spdlog::debug("background refresh of {} sessions", n);
    }
  }
}

asio::awaitable<void> session_pool::shutdown(bool revoke_all, steady_time deadline) {
  const auto owner = impl_;
  auto& self = *owner;
  // Callers waiting for a token are answered now (shutting_down); logins, refreshes and
  // validations in flight end now. Their tokens, if the homeserver issued any, are covered by
  // the login_in_flight mark: the next run cleans those devices.
  self.stop_everything();
  if (revoke_all) {
    std::vector<std::shared_ptr<session_entry>> all;
    for (auto& [_, e] : self.sessions) all.push_back(e);
    std::size_t started = 0;
    for (auto& e : all)
      if (e->machine.on_revoke() == revoke_step::start_logout)
        self.spawn(self.logout_task(e, true)), ++started;
    spdlog::info("shutdown: logging out {} sessions", started);
  }
  // Logouts get the grace minus a reserve in which cancelled requests unwind and the store
  // flushes; what is still out then is cancelled (its row keeps the token pending logout).
  const auto reserve = std::min<steady_clock::duration>(std::chrono::milliseconds{500},
                                                        (deadline - steady_clock::now()) / 4);
  while (self.tasks > 0)
    if (!co_await self.task_finished.wait(deadline - reserve)) break;
  if (self.tasks > 0) {
    spdlog::warn("shutdown: cancelling {} homeserver operations still running at the deadline",
                 self.tasks);
    self.stop_everything();
    while (self.tasks > 0)
      if (!co_await self.task_finished.wait(deadline)) break;
  }
  for (auto& [_, hs] : self.homeservers) hs->entry.client->close_idle_connections();
  if (self.options.store) co_await self.options.store->flush();
}

std::vector<homeserver_status> session_pool::homeservers() const {
  std::vector<homeserver_status> out;
  for (const auto& [name, hs] : impl_->homeservers) {
    const auto& c = *hs->entry.client;
    const auto now = steady_ms();
    homeserver_status st{name,
                         c.base_url(),
                         std::string{c.method_name()},
                         c.login_type(),
                         hs->logins_in_flight,
                         hs->logins_ok,
                         hs->logins_failed,
                         hs->logouts,
                         hs->refreshes_ok,
                         hs->refreshes_failed};
    st.consecutive_failures = hs->health.consecutive_failures();
    st.healthy = st.consecutive_failures == 0;
    st.circuit = hs->health.circuit(now);
    st.rate_limited = hs->health.rate_limited(now);
    out.push_back(std::move(st));
  }
  return out;
}

pool_stats session_pool::stats() const {
  pool_stats s;
  for (const auto& [_, e] : impl_->sessions) {
    ++s.total;
    switch (e->machine.state()) {
      case session_state::active:
        ++s.active;
        break;
      case session_state::logging_in:
        ++s.logging_in;
        break;
      case session_state::refreshing:
        ++s.refreshing;
        break;
      case session_state::validating:
        ++s.validating;
        break;
      case session_state::revoking:
        ++s.revoking;
        break;
      default:
        ++s.absent;
        break;
    }
  }
  return s;
}

std::size_t session_pool::background_tasks() const noexcept {
  return impl_->tasks;
}

// One page of /v1/sessions. The sessions live in a hash map, so each page is one pass over it
// that keeps the `limit + 1` smallest user IDs after `after` in a max-heap: O(n log limit) time
// and O(limit) memory, whatever the pool's size (the extra one says whether there is more).
session_page session_pool::sessions_page(
    std::string_view after, std::size_t limit,
    const std::function<bool(std::string_view)>& visible) const {
  session_page page;
  if (limit == 0) return page;
  const auto by_user = [](const session_entry* a, const session_entry* b) {
    return a->user_id < b->user_id;
  };
  std::vector<const session_entry*> heap;  // front: the largest user ID kept
  heap.reserve(std::min(limit + 1, impl_->sessions.size()));
  for (const auto& [id, e] : impl_->sessions) {
    if (!after.empty() && id <= after) continue;
    if (heap.size() == limit + 1 && !(id < heap.front()->user_id)) continue;
    if (visible && !visible(id)) continue;
    if (heap.size() == limit + 1) {
      std::pop_heap(heap.begin(), heap.end(), by_user);
      heap.pop_back();
    }
    heap.push_back(e.get());
    std::push_heap(heap.begin(), heap.end(), by_user);
  }
  std::sort_heap(heap.begin(), heap.end(), by_user);
  if (heap.size() > limit) {
    page.more = true;
    heap.pop_back();
  }
  page.sessions.reserve(heap.size());
  for (const auto* e : heap) {
    const auto& m = e->machine;
    page.sessions.push_back(
        {e->user_id, m.token().device_id, std::string{e->homeserver->entry.client->method_name()},
         m.created_at_ms(), m.last_used_at_ms(), m.token().expires_at_ms, m.state()});
  }
  return page;
}

}  // namespace mxp::sessions
