// pool_report: sessions by page, homeserver health and session counts by state.
#include "sessions/pool_report.hpp"

#include <algorithm>

#include "sessions/pool_state.hpp"

namespace mxp::sessions {

// One page of /v1/sessions. The sessions live in a hash map, so each page is one pass over it
// that keeps the `limit + 1` smallest user IDs after `after` in a max-heap: O(n log limit) time
// and O(limit) memory, whatever the pool's size (the extra one says whether there is more).
session_page sessions_page_of(const pool_state& pool, std::string_view after, std::size_t limit,
                              const std::function<bool(std::string_view)>& visible) {
  session_page page;
  if (limit == 0) return page;
  const auto by_user = [](const session_entry* a, const session_entry* b) {
    return a->user_id < b->user_id;
  };
  std::vector<const session_entry*> heap;  // front: the largest user ID kept
  heap.reserve(std::min(limit + 1, pool.sessions.size()));
  for (const auto& [id, e] : pool.sessions) {
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
    const auto& m = e->machine();
    page.sessions.push_back(
        {e->user_id, m.token().device_id, std::string{e->homeserver->entry.client->method_name()},
         m.created_at_ms(), m.last_used_at_ms(), m.token().expires_at_ms, m.state()});
  }
  return page;
}

std::vector<homeserver_status> homeserver_statuses_of(const pool_state& pool) {
  std::vector<homeserver_status> out;
  const auto now = pool.steady_ms();
  for (const auto& [name, hs] : pool.homeservers.active()) {
    const auto& c = *hs->entry.client;
    homeserver_status st;
    st.server_name = name;
    st.url = c.base_url();
    st.method = std::string{c.method_name()};
    st.login_type = c.login_type();
    st.logins_in_flight = hs->logins_in_flight;
    st.consecutive_failures = hs->health.consecutive_failures();
    st.healthy = st.consecutive_failures == 0;
    st.circuit = hs->health.circuit(now);
    st.rate_limited = hs->health.rate_limited(now);
    st.configuration_error = c.configuration_error();
    out.push_back(std::move(st));
  }
  return out;
}

pool_stats stats_of(const pool_state& pool) {
  pool_stats s;
  for (const auto& [_, e] : pool.sessions) {
    ++s.total;
    switch (e->machine().state()) {
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

}  // namespace mxp::sessions
