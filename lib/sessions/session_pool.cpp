// session_pool: the callers' side of the pool (token requests, invalidation, revocation,
// restore, reload, maintenance, shutdown) and the session table. Logins and logouts run
// as background tasks (session_tasks.cpp), never tied to one caller's connection; callers
// wait for them with their own deadlines.
#include "sessions/session_pool.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/errc.hpp"
#include "sessions/pool_report.hpp"
#include "sessions/pool_state.hpp"

namespace mxp::sessions {

namespace asio = boost::asio;

// --- the table ---------------------------------------------------------------------------------

pool_state::pool_state(asio::any_io_executor ex, pool_options opts)
    : executor(std::move(ex)),
      options(std::move(opts)),
      clock(options.clock ? *options.clock : system_session_clock::instance()),
      homeservers(clock, options.health),
      task_finished(clock),
      maintenance_wake(clock) {
  if (options.max_sessions == 0) options.max_sessions = 1;
}

std::int64_t pool_state::deadline_ms(steady_time deadline) const {
  if (deadline == steady_time::max()) return session_clock::never_ms;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  return clock.steady_ms() + left;
}

void pool_state::touch(session_entry& e) {
  if (e.is_linked()) lru.splice(lru.begin(), lru, lru.iterator_to(e));
}

token_view pool_state::view(const session_entry& e) const {
  const auto& t = e.machine().token();
  // Both halves are bumped on change, and the pair never comes back to an earlier value (nor to 0)
  // within 2^32 token changes of one session and 2^32 reloads.
  const auto key = (std::uint64_t{e.homeserver->version} << 32 | e.machine().token_version()) + 1;
  return {e.user_id,
          &t.access_token,
          &t.device_id,
          t.expires_at_ms,
          e.homeserver->entry.client.get(),
          &e.rendered,
          key};
}

void pool_state::erase(session_entry& e) {
  if (e.is_linked()) lru.erase(lru.iterator_to(e));
  if (auto it = sessions.find(e.user_id); it != sessions.end() && it->second.get() == &e)
    sessions.erase(it);
}

std::shared_ptr<session_entry> pool_state::find_or_create(const std::string& user_id,
                                                          homeserver_state* hs) {
  if (auto it = sessions.find(user_id); it != sessions.end()) return it->second;
  auto e = std::make_shared<session_entry>(user_id, hs, clock);
  sessions.emplace(e->user_id, e);
  lru.push_front(*e);
  enforce_capacity(e.get());
  return e;
}

void pool_state::enforce_capacity(const session_entry* keep) {
  if (lru.size() <= options.max_sessions) return;
  // Pick first, evict after: evicting unlinks the node an iterator would stand on.
  std::vector<session_entry*> victims;
  const auto excess = lru.size() - options.max_sessions;
  for (auto it = lru.rbegin(); it != lru.rend() && victims.size() < excess; ++it)
    if (&*it != keep && !it->machine().busy()) victims.push_back(&*it);
  for (auto* victim : victims) evict(*victim, "capacity");
}

void pool_state::evict(session_entry& e, std::string_view why) {
  auto keep_alive = sessions.at(e.user_id);
  spdlog::info("evicting session of {} ({})", e.user_id, why);
  if (e.is_linked()) lru.erase(lru.iterator_to(e));
  if (options.revoke_on_evict && e.machine().on_revoke() == revoke_step::start_logout) {
    spawn(logout_task(keep_alive, /*forget_even_if_unconfirmed=*/true));
    return;
  }
  erase(e);
  e.changed.notify_all();
  // Forgotten without a logout: a restart must not bring it back, unless its row is all that
  // says its device may hold a live token.
  if (!e.record.device_unclean) spawn(unpersist(e.user_id));
}

void pool_state::stop_everything() {
  stopping = true;
  maintenance_wake.notify_all();
  homeservers.for_each([](homeserver_state& hs) {
    hs.login_slot_freed.notify_all();
    hs.probe_finished.notify_all();
    hs.entry.client->cancel_requests();
  });
  for (auto& [_, e] : sessions) {
    e->changed.notify_all();
    e->caller_left.notify_all();
  }
}

// --- the pool ----------------------------------------------------------------------------------

session_pool::session_pool(asio::any_io_executor executor, pool_options options,
                           std::map<std::string, homeserver_entry, std::less<>> homeservers)
    : state_(std::make_shared<pool_state>(std::move(executor), std::move(options))) {
  for (auto& [name, entry] : homeservers) state_->homeservers.put(name, std::move(entry));
}

// Tasks still running hold the state (shared) and end as soon as the io_context runs them: they
// are woken and their requests cancelled here. They no longer report to the store or the
// observer, which may be gone with the pool.
session_pool::~session_pool() {
  state_->options.store = nullptr;
  state_->options.observer = nullptr;
  state_->stop_everything();
}

session_pool::restore_result session_pool::restore(std::vector<store::stored_session> rows) {
  auto& self = *state_;
  restore_result result;
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.last_used_at_ms < b.last_used_at_ms; });
  for (auto& row : rows) {
    auto hs = self.homeservers.route(row.user_id);
    if (!hs || self.sessions.count(row.user_id)) {
      ++result.skipped;
      continue;
    }
    // The login method gets back its handles (mas: personal session ids) before anything
    // uses or ends these tokens.
    auto& client = *(*hs)->entry.client;
    client.adopt_token(row.access_token, std::move(row.token_handle));
    client.adopt_token(row.pending_logout, std::move(row.pending_logout_handle));
    auto e = std::make_shared<session_entry>(std::move(row.user_id), *hs, self.clock);
    e->machine().restore({std::move(row.access_token), std::move(row.device_id), row.expires_at_ms,
                          std::move(row.refresh_token), row.lifetime_ms},
                         std::move(row.pending_logout), row.created_at_ms, row.last_used_at_ms);
    e->record.device_unclean = row.login_in_flight;
    self.sessions.emplace(e->user_id, e);
    self.lru.push_front(*e);  // rows come oldest first: the newest ends up in front
    ++result.restored;
  }
  return result;
}

std::optional<token_view> session_pool::find_ready(std::string_view user_id,
                                                   std::int64_t min_valid_ms) {
  auto& self = *state_;
  auto it = self.sessions.find(user_id);
  if (it == self.sessions.end()) return std::nullopt;
  auto& e = *it->second;
  const auto now = self.wall_ms();
  if (e.homeserver->removed || !e.machine().ready_for(now, min_valid_ms, self.options.renewal))
    return std::nullopt;
  e.machine().touch(now);
  self.touch(e);
  if (self.options.observer) self.options.observer->on_token_lookup(true);
  return self.view(e);
}

asio::awaitable<pool_result<token_view>> session_pool::get_token(std::string user_id,
                                                                 std::int64_t min_valid_ms,
                                                                 steady_time deadline) {
  const auto owner = state_;  // the pool's state outlives this call even if the pool does not
  auto& self = *owner;
  auto routed = self.homeservers.route(user_id);
  if (!routed) co_return routed.error();
  auto* hs = *routed;
  const auto deadline_ms = self.deadline_ms(deadline);
  std::uint32_t waited_for = 0;
  bool looked_up = false;  // counted as a cache hit or miss (observer)
  for (;;) {
    if (self.stopping) co_return local_error(errc::shutting_down, "daemon is shutting down");
    auto e = self.find_or_create(user_id, hs);
    auto& m = e->machine();
    switch (m.on_token_request(self.wall_ms(), min_valid_ms, waited_for, self.options.renewal)) {
      case token_step::hand_out:
        self.touch(*e);
        if (!looked_up && self.options.observer) self.options.observer->on_token_lookup(true);
        co_return self.view(*e);
      case token_step::fail:
        co_return e->record.last_failure ? *e->record.last_failure
                                         : local_error(errc::upstream_unavailable, "login failed");
      case token_step::too_short:
        co_return local_error(
            errc::invalid_request,
            fmt::format("min_valid_ms={} is longer than the tokens this homeserver grants",
                        min_valid_ms));
      case token_step::gone:
        waited_for = 0;
        continue;
      case token_step::start_login:
      case token_step::start_renewal:
        self.touch(*e);
        waited_for = m.flight();
        // co_spawn dispatches: a task that never suspends (failing fast) is over already.
        self.spawn(self.session_task(e));
        if (!m.busy() || m.flight() != waited_for) continue;
        [[fallthrough]];
      case token_step::wait: {
        if (!looked_up && self.options.observer) self.options.observer->on_token_lookup(false);
        looked_up = true;
        // A login pausing (429, backoff, open circuit) past this caller's deadline: answer now,
        // and tell the login, which gives its slot up when nobody is left to wait for it.
        const auto& r = e->record;
        if (r.retry_at_ms > 0 && r.last_failure && r.retry_at_ms > deadline_ms) {
          auto failure = *r.last_failure;
          failure.retry_after_ms = r.retry_at_ms - self.steady_ms();
          e->caller_left.notify_all();
          co_return failure;
        }
        waited_for = m.flight();
        ++e->waiters;
        const bool woken = co_await e->changed.wait(deadline_ms);
        --e->waiters;
        // Only a caller that leaves tells the login: one woken by the start of a pause waits on
        // (telling it then made the login and its callers wake each other without end).
        if (!woken) {
          if (e->waiters == 0) e->caller_left.notify_all();
          co_return local_error(errc::deadline_exceeded, "no token within the request deadline");
        }
        continue;
      }
    }
  }
}

asio::awaitable<pool_result<bool>> session_pool::invalidate(std::string user_id,
                                                            secret_string token,
                                                            steady_time deadline) {
  const auto owner = state_;
  auto& self = *owner;
  if (auto routed = self.homeservers.route(user_id); !routed) co_return routed.error();
  auto it = self.sessions.find(user_id);
  if (it == self.sessions.end()) co_return false;
  auto e = it->second;
  if (!e->machine().on_invalidate(token)) co_return false;
  spdlog::info("invalidate user={}: logging the current token out", e->user_id);
  const auto flight = e->machine().flight();
  const auto deadline_ms = self.deadline_ms(deadline);
  self.spawn(self.logout_task(e, false));
  // Answer once the old token is dead, so the bridge can rely on it.
  while (e->machine().state() == session_state::revoking && e->machine().flight() == flight) {
    if (!co_await e->changed.wait(deadline_ms))
      break;  // still dropped; the logout finishes in the background
  }
  co_return true;
}

asio::awaitable<pool_result<bool>> session_pool::revoke(std::string user_id, steady_time deadline) {
  const auto owner = state_;
  auto& self = *owner;
  if (auto routed = self.homeservers.route(user_id); !routed) co_return routed.error();
  const auto deadline_ms = self.deadline_ms(deadline);
  for (;;) {
    auto it = self.sessions.find(user_id);
    if (it == self.sessions.end()) co_return false;
    auto e = it->second;
    auto& m = e->machine();
    switch (m.on_revoke()) {
      case revoke_step::forget:
        self.erase(*e);
        e->changed.notify_all();
        co_return false;  // nothing was logged in
      case revoke_step::wait:
        if (!co_await e->changed.wait(deadline_ms))
          co_return local_error(errc::deadline_exceeded, "session busy past the request deadline");
        continue;
      case revoke_step::start_logout: {
        const auto flight = m.flight();
        if (e->is_linked()) self.lru.erase(self.lru.iterator_to(*e));
        self.spawn(self.logout_task(e, false));
        while (m.state() == session_state::revoking && m.flight() == flight) {
          if (!co_await e->changed.wait(deadline_ms))
            co_return local_error(errc::deadline_exceeded,
                                  "logout did not finish within the request deadline");
        }
        if (m.state() == session_state::gone) co_return true;
        // Unconfirmed: kept with the token pending logout, so nothing is lost; report why.
        if (!e->is_linked() && self.sessions.count(e->user_id)) self.lru.push_front(*e);
        co_return e->record.last_failure ? *e->record.last_failure
                                         : local_error(errc::upstream_unavailable, "logout failed");
      }
    }
  }
}

// --- reload ------------------------------------------------------------------------------------

void session_pool::put_homeserver(const std::string& server_name, homeserver_entry entry) {
  state_->homeservers.put(server_name, std::move(entry));
}

std::size_t session_pool::remove_homeserver(const std::string& server_name) {
  auto& self = *state_;
  auto* removed = self.homeservers.remove(server_name);
  if (!removed) return 0;
  std::vector<session_entry*> victims;
  for (auto& [_, e] : self.sessions)
    if (e->homeserver == removed) victims.push_back(e.get());
  for (auto* e : victims) {
    if (e->machine().busy())
      continue;  // its task finishes with the old client; it is gone from routing already
    self.evict(*e, "homeserver removed from the configuration");
  }
  return victims.size();
}

void session_pool::set_limits(std::size_t max_sessions, std::chrono::milliseconds idle_timeout,
                              bool revoke_on_evict, renewal_policy renewal,
                              bool background_refresh) {
  auto& o = state_->options;
  o.max_sessions = std::max<std::size_t>(max_sessions, 1);
  o.idle_timeout = idle_timeout;
  o.revoke_on_evict = revoke_on_evict;
  o.renewal = renewal;
  o.background_refresh = background_refresh;
  state_->enforce_capacity(nullptr);
  state_->maintenance_wake.notify_all();  // the next round uses the new period
}

// --- maintenance and shutdown ------------------------------------------------------------------

std::size_t session_pool::refresh_due() {
  auto& self = *state_;
  const auto now = self.wall_ms();
  // Every session that idle eviction keeps counts as in use. Collected first: a spawned task
  // may run at once and must not find the list half walked.
  std::vector<std::shared_ptr<session_entry>> due;
  for (auto& e : self.lru)
    if (e.machine().start_background_refresh(now, self.options.renewal))
      due.push_back(self.sessions.at(e.user_id));
  for (auto& e : due) self.spawn(self.session_task(std::move(e)));
  return due.size();
}

std::size_t session_pool::evict_idle() {
  auto& self = *state_;
  const auto cutoff = self.wall_ms() - self.options.idle_timeout.count();
  std::size_t evicted = 0;
  while (!self.lru.empty()) {
    auto& oldest = self.lru.back();
    if (oldest.machine().last_used_at_ms() > cutoff || oldest.machine().busy()) break;
    self.evict(oldest, "idle");
    ++evicted;
  }
  return evicted;
}

asio::awaitable<void> session_pool::run_maintenance() {
  const auto owner = state_;
  auto& self = *owner;
  while (!self.stopping) {
    // Recomputed each round: a reload may change the idle timeout or the refresh policy.
    auto period = std::clamp<std::chrono::milliseconds>(
        self.options.idle_timeout / 4, std::chrono::seconds{1}, std::chrono::seconds{60});
    // Background refresh looks often enough to catch every token between twice the margin and
    // the margin.
    if (self.options.background_refresh)
      period = std::clamp<std::chrono::milliseconds>(
          std::chrono::milliseconds{self.options.renewal.refresh_margin_ms / 4},
          std::chrono::milliseconds{100}, period);
    if (co_await self.maintenance_wake.wait(self.steady_ms() + period.count()))
      continue;  // woken early: a new period, or the pool stops
    if (self.stopping) break;
    if (auto n = evict_idle(); n > 0) spdlog::info("evicted {} idle sessions", n);
    if (self.options.background_refresh) {
      if (auto n = refresh_due(); n > 0) spdlog::debug("background refresh of {} sessions", n);
    }
  }
}

asio::awaitable<void> session_pool::shutdown(bool revoke_all, steady_time deadline) {
  const auto owner = state_;
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
      if (e->machine().on_revoke() == revoke_step::start_logout)
        self.spawn(self.logout_task(e, true)), ++started;
    spdlog::info("shutdown: logging out {} sessions", started);
  }
  // Logouts get the grace minus a reserve in which cancelled requests unwind and the store
  // flushes; what is still out then is cancelled (its row keeps the token pending logout).
  const auto end_ms = self.deadline_ms(deadline);
  const auto reserve = std::min<std::int64_t>(500, (end_ms - self.steady_ms()) / 4);
  while (self.tasks > 0)
    if (!co_await self.task_finished.wait(end_ms - reserve)) break;
  if (self.tasks > 0) {
    spdlog::warn("shutdown: cancelling {} homeserver operations still running at the deadline",
                 self.tasks);
    self.stop_everything();
    while (self.tasks > 0)
      if (!co_await self.task_finished.wait(end_ms)) break;
  }
  // The login methods' own work (mas: revocations of retired sessions) ends or is cancelled
  // within the same reserve.
  const auto methods_deadline = deadline - std::chrono::milliseconds(reserve);
  std::vector<std::shared_ptr<matrix::homeserver_client>> clients;
  self.homeservers.for_each([&](homeserver_state& hs) { clients.push_back(hs.entry.client); });
  for (auto& client : clients) co_await client->drain(methods_deadline);
  for (auto& [_, hs] : self.homeservers.active()) hs->entry.client->close_idle_connections();
  if (self.options.store) co_await self.options.store->flush();
}

// --- reports (pool_report.cpp) -----------------------------------------------------------------

session_page session_pool::sessions_page(
    std::string_view after, std::size_t limit,
    const std::function<bool(std::string_view)>& visible) const {
  return sessions_page_of(*state_, after, limit, visible);
}
std::vector<homeserver_status> session_pool::homeservers() const {
  return homeserver_statuses_of(*state_);
}
pool_stats session_pool::stats() const {
  return stats_of(*state_);
}
std::size_t session_pool::background_tasks() const noexcept {
  return state_->tasks;
}

}  // namespace mxp::sessions
