// session_pool: drives one session_machine per user with coroutines. Logins and
// logouts run as background tasks (never tied to one caller's connection), and
// callers wait for them with their own deadlines.
#include "sessions/session_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive/list.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
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
  unsigned logins_in_flight = 0;
  wait_queue login_slot_freed;
  std::uint64_t logins_ok = 0, logins_failed = 0, logouts = 0;
  bool healthy = true;
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

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct session_pool::impl {
  using lru_list = boost::intrusive::list<session_entry>;  // front: most recently used

  asio::any_io_executor executor;
  pool_options options;
  std::map<std::string, std::unique_ptr<homeserver_state>, std::less<>> homeservers;
  // Keys view the entry's own user_id.
  std::unordered_map<std::string_view, std::shared_ptr<session_entry>> sessions;
  lru_list lru;  // sessions that may be evicted (not those already being revoked for good)
  std::size_t tasks = 0;
  wait_queue task_finished;
  bool stopping = false;
  std::optional<asio::steady_timer> maintenance_timer;

  ~impl() { lru.clear(); }

  std::int64_t now() const { return options.now_ms(); }

  void touch(session_entry& e) {
    if (e.is_linked()) lru.splice(lru.begin(), lru, lru.iterator_to(e));
  }

  token_view view(const session_entry& e) const {
    const auto& t = e.machine.token();
    return {e.user_id, &t.access_token, &t.device_id, t.expires_at_ms, e.homeserver->entry.client.get()};
  }

  // Removes `e` from the pool if it is still the pool's entry for its user.
  void erase(session_entry& e) {
    if (e.is_linked()) lru.erase(lru.iterator_to(e));
    if (auto it = sessions.find(e.user_id); it != sessions.end() && it->second.get() == &e) sessions.erase(it);
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
    spawn(unpersist(e.user_id));  // forgotten without a logout: a restart must not bring it back
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
    }
    row.pending_logout = std::move(pending);
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

  template <typename Task>
  void spawn(Task task) {
    ++tasks;
    asio::co_spawn(executor, std::move(task), [this](std::exception_ptr ep) {
      --tasks;
      task_finished.notify_all();
      if (!ep) return;
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& ex) {
        spdlog::error("background session task failed: {}", ex.what());
      }
    });
  }

  asio::awaitable<void> login_task(std::shared_ptr<session_entry> e) {
    auto& hs = *e->homeserver;
    auto& client = *hs.entry.client;
    while (hs.logins_in_flight >= hs.entry.max_concurrent_logins)
      co_await hs.login_slot_freed.wait(steady_clock::time_point::max());
    ++hs.logins_in_flight;
    struct release_slot {
      homeserver_state& hs;
      ~release_slot() {
        --hs.logins_in_flight;
        hs.login_slot_freed.notify_one();
      }
    } slot{hs};

    const auto started = steady_clock::now();
    std::optional<pool_error> failure;
    try {
      if (e->machine.has_pending_logout()) {
        // The previous token may still be live: it must die before a new login on the same device.
        auto out = co_await client.logout(e->machine.pending_logout());
        if (out) {
          e->machine.on_pending_logout_done();
          ++hs.logouts;
          if (options.observer) options.observer->on_logout(client.server_name(), nullptr);
        } else {
          failure = std::move(out).error();
        }
      }
      if (!failure) {
        auto grant = co_await client.login(e->user_id);
        if (grant) {
          const auto now_ms = now();
          session_token token{std::move(grant->access_token), std::move(grant->device_id), std::nullopt};
          if (grant->expires_in_ms) token.expires_at_ms = now_ms + *grant->expires_in_ms;
          e->machine.on_login_succeeded(std::move(token), now_ms);
          // Durable before any caller sees it: a restart must find this token, not add a device.
          co_await persist(row_of(*e, {}));
          e->last_failure.reset();
          ++hs.logins_ok;
          hs.healthy = true;
        } else {
          failure = std::move(grant).error();
        }
      }
    } catch (const std::exception& ex) {
      failure = local_error(errc::upstream_unavailable, ex.what());
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started).count();
    if (options.observer)
      options.observer->on_login(client.server_name(), client.method_name(), steady_clock::now() - started,
                                 failure ? &*failure : nullptr);
    if (failure) {
      ++hs.logins_failed;
      hs.healthy = !is_unreachable(*failure);
      spdlog::warn("login user={} homeserver={} method={} result={} duration_ms={} upstream_status={} "
                   "upstream_errcode={} upstream_error=\"{}\" detail=\"{}\"",
                   e->user_id, client.server_name(), client.method_name(), failure->code.message(), ms,
                   failure->http_status, failure->errcode, failure->error, failure->diagnostic);
      e->last_failure = std::make_unique<pool_error>(std::move(*failure));
      e->machine.on_login_failed();
    } else {
      spdlog::info("login user={} homeserver={} method={} result=ok duration_ms={}", e->user_id,
                   client.server_name(), client.method_name(), ms);
    }
    e->changed.notify_all();
  }

  asio::awaitable<void> logout_task(std::shared_ptr<session_entry> e, bool forget_even_if_unconfirmed) {
    auto& hs = *e->homeserver;
    // Written first: if the daemon dies mid-logout, the next run still logs this token out.
    co_await persist(row_of(*e, e->machine.token_to_log_out()));
    const auto started = steady_clock::now();
    std::optional<pool_error> failure;
    bool was_live = false;
    try {
      auto out = co_await hs.entry.client->logout(e->machine.token_to_log_out());
      if (out) {
        was_live = out->token_was_live;
      } else {
        failure = std::move(out).error();
      }
    } catch (const std::exception& ex) {
      failure = local_error(errc::upstream_unavailable, ex.what());
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started).count();
    if (options.observer) options.observer->on_logout(hs.entry.client->server_name(), failure ? &*failure : nullptr);
    if (failure) {
      spdlog::warn("logout user={} homeserver={} result={} duration_ms={} upstream_status={} detail=\"{}\"",
                   e->user_id, hs.entry.client->server_name(), failure->code.message(), ms,
                   failure->http_status, failure->diagnostic);
      e->last_failure = std::make_unique<pool_error>(std::move(*failure));
    } else {
      ++hs.logouts;
      spdlog::info("logout user={} homeserver={} result=ok token_was_live={} duration_ms={}", e->user_id,
                   hs.entry.client->server_name(), was_live, ms);
    }
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
    : impl_(std::make_unique<impl>()) {
  impl_->executor = std::move(executor);
  impl_->options = std::move(options);
  if (!impl_->options.now_ms) impl_->options.now_ms = system_now_ms;
  if (impl_->options.max_sessions == 0) impl_->options.max_sessions = 1;
  for (auto& [name, entry] : homeservers) {
    auto state = std::make_unique<homeserver_state>();
    state->entry = std::move(entry);
    if (state->entry.max_concurrent_logins == 0) state->entry.max_concurrent_logins = 1;
    impl_->homeservers.emplace(name, std::move(state));
  }
}

session_pool::~session_pool() = default;

expected<const matrix::homeserver_client*, pool_error> session_pool::route(std::string_view user_id) const {
  auto parts = matrix::parse_user_id(user_id);
  if (!parts) return unexpected{local_error(errc::invalid_user_id, "malformed user ID")};
  auto it = impl_->homeservers.find(parts->server_name);
  if (it == impl_->homeservers.end())
    return unexpected{local_error(errc::unknown_homeserver,
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
    auto e = std::make_shared<session_entry>(std::move(row.user_id), hs->second.get(), row.created_at_ms);
    e->machine.restore({std::move(row.access_token), std::move(row.device_id), row.expires_at_ms},
                       std::move(row.pending_logout), row.created_at_ms, row.last_used_at_ms);
    self.sessions.emplace(e->user_id, e);
    self.lru.push_front(*e);  // rows come oldest first: the newest ends up in front
    ++result.restored;
  }
  return result;
}

std::optional<token_view> session_pool::find_ready(std::string_view user_id, std::int64_t min_valid_ms) {
  auto it = impl_->sessions.find(user_id);
  if (it == impl_->sessions.end()) return std::nullopt;
  auto& e = *it->second;
  const auto now = impl_->now();
  if (!e.machine.usable(now, min_valid_ms)) return std::nullopt;
  e.machine.touch(now);
  impl_->touch(e);
  if (impl_->options.observer) impl_->options.observer->on_token_lookup(true);
  return impl_->view(e);
}

asio::awaitable<expected<token_view, pool_error>> session_pool::get_token(std::string user_id,
                                                                          std::int64_t min_valid_ms,
                                                                          steady_time deadline) {
  auto& self = *impl_;
  auto routed = route(user_id);
  if (!routed) co_return unexpected{routed.error()};
  auto* hs = self.homeservers.find(matrix::parse_user_id(user_id)->server_name)->second.get();
  std::uint32_t waited_for = 0;
  bool looked_up = false;  // counted as a cache hit or miss (observer)
  for (;;) {
    if (self.stopping) co_return unexpected{local_error(errc::shutting_down, "daemon is shutting down")};
    auto e = self.find_or_create(user_id, hs);
    switch (e->machine.on_token_request(self.now(), min_valid_ms, waited_for)) {
      case token_step::hand_out:
        self.touch(*e);
        if (!looked_up && self.options.observer) self.options.observer->on_token_lookup(true);
        co_return self.view(*e);
      case token_step::fail:
        co_return unexpected{e->last_failure ? *e->last_failure : local_error(errc::upstream_unavailable, "login failed")};
      case token_step::gone:
        waited_for = 0;
        continue;
      case token_step::start_login:
        self.touch(*e);
        self.spawn(self.login_task(e));
        [[fallthrough]];
      case token_step::wait:
        if (!looked_up && self.options.observer) self.options.observer->on_token_lookup(false);
        looked_up = true;
        waited_for = e->machine.flight();
        if (!co_await e->changed.wait(deadline))
          co_return unexpected{local_error(errc::deadline_exceeded, "no token within the request deadline")};
        continue;
    }
  }
}

asio::awaitable<expected<bool, pool_error>> session_pool::invalidate(std::string user_id, secret_string token,
                                                                     steady_time deadline) {
  auto& self = *impl_;
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
    if (!co_await e->changed.wait(deadline)) break;  // still dropped; the logout finishes in the background
  }
  co_return true;
}

asio::awaitable<expected<bool, pool_error>> session_pool::revoke(std::string user_id, steady_time deadline) {
  auto& self = *impl_;
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
          co_return unexpected{local_error(errc::deadline_exceeded, "session busy past the request deadline")};
        continue;
      case revoke_step::start_logout: {
        const auto flight = e->machine.flight();
        if (e->is_linked()) self.lru.erase(self.lru.iterator_to(*e));
        self.spawn(self.logout_task(e, false));
        while (e->machine.state() == session_state::revoking && e->machine.flight() == flight) {
          if (!co_await e->changed.wait(deadline))
            co_return unexpected{local_error(errc::deadline_exceeded, "logout did not finish within the request deadline")};
        }
        if (e->machine.state() == session_state::gone) co_return true;
        // Unconfirmed: kept with the token pending logout, so nothing is lost; report why.
        if (!e->is_linked() && self.sessions.count(e->user_id)) self.lru.push_front(*e);
        co_return unexpected{e->last_failure ? *e->last_failure : local_error(errc::upstream_unavailable, "logout failed")};
      }
    }
  }
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
  auto& self = *impl_;
  auto& timer = self.maintenance_timer.emplace(self.executor);
  const auto period = std::clamp<std::chrono::milliseconds>(self.options.idle_timeout / 4, std::chrono::seconds{1},
                                                            std::chrono::seconds{60});
  while (!self.stopping) {
    timer.expires_after(period);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (self.stopping) break;
    if (auto n = evict_idle(); n > 0) spdlog::info("evicted {} idle sessions", n);
  }
}

asio::awaitable<void> session_pool::shutdown(bool revoke_all, steady_time deadline) {
  auto& self = *impl_;
  self.stopping = true;
  if (self.maintenance_timer) self.maintenance_timer->cancel();
  if (revoke_all) {
    std::vector<std::shared_ptr<session_entry>> all;
    for (auto& [_, e] : self.sessions) all.push_back(e);
    for (auto& e : all)
      if (e->machine.on_revoke() == revoke_step::start_logout) self.spawn(self.logout_task(e, true));
    spdlog::info("shutdown: logging out {} sessions", self.tasks);
  }
  while (self.tasks > 0)
    if (!co_await self.task_finished.wait(deadline)) break;
  if (self.tasks > 0) spdlog::warn("shutdown: {} homeserver operations still running at the deadline", self.tasks);
  for (auto& [_, hs] : self.homeservers) hs->entry.client->close_idle_connections();
  if (self.options.store) co_await self.options.store->flush();
}

std::vector<session_info> session_pool::sessions() const {
  std::vector<session_info> out;
  out.reserve(impl_->sessions.size());
  for (const auto& [_, e] : impl_->sessions) {
    const auto& m = e->machine;
    out.push_back({e->user_id, m.token().device_id, std::string{e->homeserver->entry.client->method_name()},
                   m.created_at_ms(), m.last_used_at_ms(), m.token().expires_at_ms, m.state()});
  }
  return out;
}

std::vector<homeserver_status> session_pool::homeservers() const {
  std::vector<homeserver_status> out;
  for (const auto& [name, hs] : impl_->homeservers) {
    const auto& c = *hs->entry.client;
    out.push_back({name, c.base_url(), std::string{c.method_name()}, c.login_type(), hs->logins_in_flight,
                   hs->logins_ok, hs->logins_failed, hs->logouts, hs->healthy});
  }
  return out;
}

pool_stats session_pool::stats() const {
  pool_stats s;
  for (const auto& [_, e] : impl_->sessions) {
    ++s.total;
    switch (e->machine.state()) {
      case session_state::active: ++s.active; break;
      case session_state::logging_in: ++s.logging_in; break;
      case session_state::revoking: ++s.revoking; break;
      default: ++s.absent; break;
    }
  }
  return s;
}

std::size_t session_pool::background_tasks() const noexcept { return impl_->tasks; }

}  // namespace mxp::sessions
