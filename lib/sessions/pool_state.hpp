// pool_state: what the session pool holds (internal to lib/sessions): the session
// table with its LRU order, the homeserver registry, the owned background tasks and the
// clock. The driver (session_pool.cpp, session_tasks.cpp) and the reporting view
// (pool_report.cpp) work on it; nothing outside lib/sessions includes it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/intrusive/list.hpp>

#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sessions/homeserver_registry.hpp"
#include "sessions/session_operation.hpp"
#include "sessions/session_pool.hpp"
#include "sessions/wait_queue.hpp"

namespace mxp::sessions {

// One user's session. Shared with the tasks working on it, so that a session dropped from
// the pool stays alive until they are done with it.
struct session_entry : boost::intrusive::list_base_hook<> {
  session_entry(std::string user, homeserver_state* hs, session_clock& clock)
      : user_id(std::move(user)),
        homeserver(hs),
        record(clock.wall_ms()),
        changed(clock),
        caller_left(clock) {}
  std::string user_id;
  homeserver_state* homeserver;
  session_record record;            // the machine and what the operations and callers share
  wait_queue changed;               // notified after every login/logout outcome
  unsigned waiters = 0;             // callers waiting on `changed` for a token
  wait_queue caller_left;           // a caller stopped waiting: a login pausing for nobody gives up
  mutable rendered_token rendered;  // the caller's rendering of the current token (token_view)
  session_machine& machine() noexcept { return record.machine; }
  const session_machine& machine() const noexcept { return record.machine; }
};

struct pool_state : std::enable_shared_from_this<pool_state> {
  using lru_list = boost::intrusive::list<session_entry>;  // front: most recently used

  pool_state(boost::asio::any_io_executor ex, pool_options opts);
  ~pool_state() { lru.clear(); }

  boost::asio::any_io_executor executor;
  pool_options options;
  session_clock& clock;
  homeserver_registry homeservers;
  // Keys view the entry's own user_id.
  std::unordered_map<std::string_view, std::shared_ptr<session_entry>> sessions;
  lru_list lru;  // sessions that may be evicted (not those already being revoked for good)
  std::size_t tasks = 0;
  wait_queue task_finished;
  bool stopping = false;
  wait_queue maintenance_wake;  // a reload changed the period, or the pool stops
  std::minstd_rand jitter_source{std::random_device{}()};

  std::int64_t wall_ms() const { return clock.wall_ms(); }
  std::int64_t steady_ms() const { return clock.steady_ms(); }
  // A caller's deadline on the pool's clock: the same distance from now.
  std::int64_t deadline_ms(steady_time deadline) const;
  tick tick_of(const session_entry& e) const {
    return {clock.steady_ms(), clock.wall_ms(), stopping, e.waiters};
  }

  // --- the table (session_pool.cpp) -----------------------------------------------------------
  void touch(session_entry& e);
  token_view view(const session_entry& e) const;
  void erase(session_entry& e);  // if it is still the pool's entry for its user
  std::shared_ptr<session_entry> find_or_create(const std::string& user_id, homeserver_state* hs);
  // Evicts least recently used sessions beyond sessions.max; never `keep`, never busy ones.
  void enforce_capacity(const session_entry* keep);
  void evict(session_entry& e, std::string_view why);
  // Wakes everything that waits and ends every homeserver request in flight, so that each
  // task finishes at once: waiting callers get shutting_down, logins in flight end with it.
  void stop_everything();

  // --- background tasks (session_tasks.cpp) ---------------------------------------------------
  // Every background task is owned by the pool: counted, awaited by shutdown(), woken and its
  // requests cancelled by stop_everything(), and it keeps the pool's state alive until it
  // ends, even when the session_pool object is gone before it.
  void spawn(boost::asio::awaitable<void> task);
  // Works a session out of logging_in, refreshing or validating, then wakes its waiters. At
  // most max_concurrent_logins of these run per homeserver.
  boost::asio::awaitable<void> session_task(std::shared_ptr<session_entry> e);
  boost::asio::awaitable<void> logout_task(std::shared_ptr<session_entry> e,
                                           bool forget_even_if_unconfirmed);
  // Persistence: a row exists while something of the user may be live.
  store::stored_session row_of(const session_entry& e, secret_string pending) const;
  boost::asio::awaitable<void> persist(store::stored_session row);
  boost::asio::awaitable<void> unpersist(std::string user_id);
};

}  // namespace mxp::sessions
