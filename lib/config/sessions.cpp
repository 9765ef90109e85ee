// parse_sessions, parse_store and parse_log.
#include "config/sessions.hpp"
#include "config/yaml_walker.hpp"

#include <algorithm>
#include <iterator>

namespace mxp::config {

void parse_sessions(yaml_walker& yaml, const field& where, sessions_config& s) {
  yaml.walk_map(
      where,
      {
          {"max", false, [&](const field& f) { yaml.read_integer(f, s.max); }},
          {"idle_timeout", false, [&](const field& f) { yaml.read_duration(f, s.idle_timeout); }},
          {"revoke_on_evict", false, [&](const field& f) { yaml.read_bool(f, s.revoke_on_evict); }},
          {"revoke_on_shutdown", false,
           [&](const field& f) { yaml.read_bool(f, s.revoke_on_shutdown); }},
          {"refresh_tokens", false, [&](const field& f) { yaml.read_bool(f, s.refresh_tokens); }},
          {"refresh_margin", false,
           [&](const field& f) { yaml.read_duration(f, s.refresh_margin); }},
          {"refresh", false,
           [&](const field& f) {
             auto v = yaml.get_string(f);
             if (!v) return;
             if (*v == "on_demand")
               s.refresh = refresh_policy::on_demand;
             else if (*v == "background")
               s.refresh = refresh_policy::background;
             else
               yaml.error(f, "expected on_demand or background, got " + echoed(*v));
           }},
          {"validate_after", false,
           [&](const field& f) {
             milliseconds d{};
             yaml.read_duration(f, d);
             if (d.count() > 0) s.validate_after = d;
           }},
      });
}

void parse_store(yaml_walker& yaml, const field& where, store_config& st,
                 const std::filesystem::path& base_dir) {
  yaml.walk_map(where, {
                           {"path", false,
                            [&](const field& f) {
                              auto p = yaml.get_string(f);
                              if (!p) return;
                              if (p->empty()) return yaml.error(f, "must not be empty");
                              std::filesystem::path path{*p};  // relative to the config file
                              if (path.is_relative() && !base_dir.empty()) path = base_dir / path;
                              st.path = path.lexically_normal().string();
                            }},
                       });
}

void parse_log(yaml_walker& yaml, const field& where, log_config& l) {
  yaml.walk_map(
      where, {
                 {"level", false,
                  [&](const field& f) {
                    auto s = yaml.get_string(f);
                    if (!s) return;
                    static constexpr std::string_view levels[] = {
                        "trace", "debug", "info", "warn", "error", "critical", "off"};
                    if (std::find(std::begin(levels), std::end(levels), *s) == std::end(levels)) {
                      yaml.error(f,
                                 "expected one of trace, debug, info, warn, error, critical, "
                                 "off, got " +
                                     echoed(*s));
                      return;
                    }
                    l.level = std::move(*s);
                  }},
                 {"format", false,
                  [&](const field& f) {
                    auto s = yaml.get_string(f);
                    if (!s) return;
                    if (*s == "text")
                      l.format = log_format::text;
                    else if (*s == "json")
                      l.format = log_format::json;
                    else
                      yaml.error(f, "expected text or json, got " + echoed(*s));
                  }},
             });
}

}  // namespace mxp::config
