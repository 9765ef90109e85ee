// Secret files: read_small_file, locate_secret ($CREDENTIALS_DIRECTORY) and read_secret_file.
#include "credentials/secret_file.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace mxp::credentials {

namespace fs = std::filesystem;

std::optional<std::string> read_small_file(const fs::path& path, std::size_t limit,
                                           std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_on_exit{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    why = "not a regular file";
    return std::nullopt;
  }
  const std::string too_large = "file is larger than " + std::to_string(limit) + " bytes";
  if (st.st_size < 0 || static_cast<std::uintmax_t>(st.st_size) > limit) {
    why = too_large;
    return std::nullopt;
  }
  std::string buf(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t used = 0;
  for (;;) {
    const auto n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);
      OPENSSL_cleanse(buf.data(), buf.size());
      return std::nullopt;
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
    if (used == buf.size()) {  // the file grew while we read it
      if (buf.size() > limit) {
        why = too_large;
        OPENSSL_cleanse(buf.data(), buf.size());
        return std::nullopt;
      }
      const auto old_size = buf.size();
      std::string bigger(std::min(old_size * 2, limit + 1), '\0');
      std::memcpy(bigger.data(), buf.data(), old_size);
      OPENSSL_cleanse(buf.data(), old_size);
      buf.swap(bigger);
    }
  }
  buf.resize(used);
  return buf;
}

fs::path locate_secret(const std::string& name, const fs::path& base_dir) {
  if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
      creds && *creds && name.find('/') == std::string::npos) {
    const fs::path candidate = fs::path{creds} / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  fs::path path{name};
  if (path.is_relative() && !base_dir.empty()) path = base_dir / path;
  return path.lexically_normal();
}

secret_file read_secret_file(const fs::path& path, bool strip_newline, std::string_view noun) {
  secret_file out;
  std::string why;
  auto contents = read_small_file(path, max_secret_file_bytes, why);
  if (!contents) {
    out.error = "cannot read '" + path.string() + "': " + why;
    return out;
  }
  secret_string secret{std::move(*contents)};
  const std::string_view v = secret.reveal();
  std::size_t keep = v.size();
  if (strip_newline && v.ends_with("\r\n"))
    keep -= 2;
  else if (strip_newline && v.ends_with('\n'))
    keep -= 1;
  if (keep != v.size()) secret = secret_string{std::string{v.substr(0, keep)}};
  if (secret.empty()) {
    out.error = std::string{noun} + " '" + path.string() + "' is empty";
    return out;
  }
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0)
    out.others_may_read = st.st_mode & 07777;
  out.value = std::move(secret);
  return out;
}

}  // namespace mxp::credentials
