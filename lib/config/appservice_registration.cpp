// parse_registration: as_token, sender_localpart and the user namespace regexes (std::regex).
#include "config/appservice_registration.hpp"

#include "config/yaml_walker.hpp"

namespace mxp::config {

std::vector<std::string> parse_registration(const std::string& text, const std::string& where,
                                            appservice_login& login) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return {where + " line " + std::to_string(line_of(e.mark)) + ": not valid YAML"};
  }
  const auto at = [&](const YAML::Node& n) {
    return where + " line " + std::to_string(line_of(n, 1)) + ": ";
  };
  if (!root.IsMap()) return {where + ": expected a map, got " + kind_of(root)};
  const YAML::Node token = root["as_token"];
  if (!token.IsDefined() || !token.IsScalar() || token.Scalar().empty())
    return {where + ": as_token is missing or not a non-empty string"};
  login.as_token = secret_string{token.Scalar()};
  if (const YAML::Node sender = root["sender_localpart"]; sender.IsDefined() && sender.IsScalar())
    login.sender_localpart = sender.Scalar();
  const YAML::Node ns = root["namespaces"];
  const YAML::Node users = ns.IsMap() ? ns["users"] : YAML::Node{};
  if (users.IsDefined() && !users.IsNull() && !users.IsSequence())
    return {at(users) + "namespaces.users: expected a list, got " + kind_of(users)};
  std::vector<std::string> errors;
  if (users.IsSequence()) {
    for (std::size_t i = 0; i < users.size(); ++i) {
      const YAML::Node entry = users[i];
      const std::string name = "namespaces.users[" + std::to_string(i) + "].regex: ";
      const YAML::Node regex = entry.IsMap() ? entry["regex"] : YAML::Node{};
      if (!regex.IsDefined() || !regex.IsScalar() || regex.Scalar().empty()) {
        errors.push_back(at(entry) + name + "expected a non-empty string");
        continue;
      }
      try {
        login.user_regexes.emplace_back(regex.Scalar(), std::regex::ECMAScript);
        login.user_regex_sources.push_back(regex.Scalar());
      } catch (const std::regex_error& e) {
        errors.push_back(
            at(regex) + name + echoed(regex.Scalar()) +
            " is not a regular expression std::regex (ECMAScript) accepts: " + e.what());
      }
    }
  }
  if (errors.empty() && login.user_regexes.empty() && login.sender_localpart.empty())
    errors.push_back(where + ": has no namespaces.users regex, so no user could be logged in");
  return errors;
}

}  // namespace mxp::config
