// daemon_process and friends: fork/exec of the built binaries for end-to-end tests.
#include "support/daemon_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "client/unix_http_client.hpp"

namespace mxp::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

temp_dir::temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "mxp-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string temp_dir::write(const std::string& name, const std::string& content,
                            unsigned mode) const {
  const auto p = file(name);
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << content;
  }
  ::chmod(p.c_str(), mode);
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string env_or_throw(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw std::runtime_error(std::string{name} + " is not set (run the tests through ctest)");
  return v;
}

namespace {

pid_t spawn(const std::vector<std::string>& argv, int out_fd, const daemon_options& options = {}) {
  // Everything the child needs is built before fork(): the child only calls async-signal-safe
  // functions.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) {
    const std::string_view entry{*e};
    if (options.listen_fd >= 0 && entry.starts_with("LISTEN_")) continue;
    env_storage.emplace_back(entry);
  }
  for (const auto& e : options.env) env_storage.push_back(e);
  std::size_t listen_pid_index = std::string::npos;
  if (options.listen_fd >= 0) {
    env_storage.emplace_back("LISTEN_FDS=1");
    env_storage.emplace_back("LISTEN_PID=" +
                             std::string(20, '\0'));  // the child writes its pid here
    listen_pid_index = env_storage.size() - 1;
  }
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(out_fd, STDERR_FILENO);
    int first_to_close = 3;
    if (options.listen_fd >= 0) {
      if (options.listen_fd == 3)
        ::fcntl(3, F_SETFD, 0);
      else
        ::dup2(options.listen_fd, 3);  // dup2 clears FD_CLOEXEC on the copy
      first_to_close = 4;
      char digits[20];
      int n = 0;
      for (auto p = static_cast<unsigned long>(::getpid()); p > 0 && n < 20; p /= 10)
        digits[n++] = static_cast<char>('0' + p % 10);
      char* out = envp[listen_pid_index] + std::strlen("LISTEN_PID=");
      while (n > 0) *out++ = digits[--n];
    }
    // Nothing else of the test process leaks into the child: an inherited listening
    // socket of a fake homeserver would keep its port open after the test closed it.
    ::close_range(static_cast<unsigned>(first_to_close), ~0U, 0);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

run_result run_program(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  char path[] = "/tmp/mxp-run-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  const pid_t pid = spawn(argv, fd);
  ::close(fd);
  run_result r;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      r.exit_code = decode_status(status);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.exit_code = -1;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  r.output = read_file(path);
  ::unlink(path);
  return r;
}

daemon_process::daemon_process(std::string config_file, std::string socket_path,
                               std::string log_file, daemon_options options)
    : socket_path_(std::move(socket_path)), log_file_(std::move(log_file)) {
  const int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + log_file_);
  pid_ = spawn({env_or_throw("MXPUPPETD_BIN"), "-c", config_file}, fd, options);
  ::close(fd);
}

daemon_process::~daemon_process() {
  if (!exited()) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

std::optional<int> daemon_process::exited() {
  if (exit_code_) return exit_code_;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) exit_code_ = decode_status(status);
  return exit_code_;
}

bool daemon_process::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (exited()) return false;
    try {
      client::unix_http_client c{socket_path_, 1s};
      if (c.request("GET", "/healthz").status == 200) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

std::optional<int> daemon_process::stop(int sig, std::chrono::milliseconds timeout) {
  if (exited()) return exit_code_;
  ::kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (exited()) return exit_code_;
    std::this_thread::sleep_for(5ms);
  }
  return std::nullopt;
}

std::string daemon_process::log() const {
  return read_file(log_file_);
}

}  // namespace mxp::test
