// ctl_format: plain string work with fmt; nothing here talks to the daemon.
#include "client/ctl_format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ostream>

namespace mxp::client {

std::string_view server_name_of(std::string_view user_id) {
  const auto colon = user_id.find(':');
  return colon == std::string_view::npos ? std::string_view{} : user_id.substr(colon + 1);
}

std::string human_duration(std::int64_t ms) {
  if (ms < 1000) return fmt::format("{}ms", std::max<std::int64_t>(ms, 0));
  const std::int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  const std::int64_t m = s / 60;
  auto two = [](std::int64_t big, char big_unit, std::int64_t small, char small_unit) {
    return small == 0 ? fmt::format("{}{}", big, big_unit)
                      : fmt::format("{}{} {}{}", big, big_unit, small, small_unit);
  };
  if (m < 60) return two(m, 'm', s % 60, 's');
  const std::int64_t h = m / 60;
  if (h < 24) return two(h, 'h', m % 60, 'm');
  return two(h / 24, 'd', h % 24, 'h');
}

std::string printable(std::string_view s) {
  std::string out{s};
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) c = '?';
  }
  return out;
}

void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                 std::string_view indent) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line{indent};
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
}

}  // namespace mxp::client
