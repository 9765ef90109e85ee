// Secret files: where one named in the config lives (systemd credentials first), and reading
// it whole without ever echoing its contents. Buffers are wiped on every failure path.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/secret.hpp"

namespace mxp::credentials {

inline constexpr std::size_t max_secret_file_bytes = 64 * 1024;

// Reads a small regular file whole. On failure returns nullopt and the reason in `why` (strerror
// text or a short phrase; never any of the contents).
std::optional<std::string> read_small_file(const std::filesystem::path& path, std::size_t limit,
                                           std::string& why);

// Where a secret file written as `name` lives: a bare name (no '/') that systemd passed as a
// credential (LoadCredential=, $CREDENTIALS_DIRECTORY) is taken from there; anything else is
// relative to `base_dir` (the config file's directory).
std::filesystem::path locate_secret(const std::string& name, const std::filesystem::path& base_dir);

struct secret_file {
  std::optional<secret_string> value;       // unset when `error` says why
  std::string error;                        // "cannot read 'PATH': why" or "NOUN 'PATH' is empty"
  std::optional<unsigned> others_may_read;  // the file's mode when others may read it
};

// Reads the secret at `path`. With `strip_newline`, one trailing "\n" or "\r\n" goes. An empty
// secret is an error naming the file as `noun`.
secret_file read_secret_file(const std::filesystem::path& path, bool strip_newline,
                             std::string_view noun);

}  // namespace mxp::credentials
