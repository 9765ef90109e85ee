// ctl_check_config: posix_spawn with both output pipes read through poll() until EOF,
// within the deadline.
#include "client/ctl_check_config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ostream>
#include <string_view>

#include "client/ctl_format.hpp"

extern char** environ;

namespace mxp::client {

namespace {

bool executable(const std::string& path) {
  return !path.empty() && ::access(path.c_str(), X_OK) == 0;
}

// $MXPUPPETD_BIN, else the mxpuppetd installed next to mxpuppetctl, else one on PATH; "" if none.
std::string find_daemon(const ctl_context& ctx) {
  if (!ctx.daemon_bin_from_env.empty()) return ctx.daemon_bin_from_env;
  if (!ctx.self_dir.empty() && executable(ctx.self_dir + "/mxpuppetd"))
    return ctx.self_dir + "/mxpuppetd";
  std::string_view path = ctx.search_path;
  while (!path.empty()) {
    const auto colon = path.find(':');
    const auto dir = path.substr(0, colon);
    path = colon == std::string_view::npos ? std::string_view{} : path.substr(colon + 1);
    if (dir.empty()) continue;  // an empty entry would mean the working directory: not for this
    if (auto candidate = std::string{dir} + "/mxpuppetd"; executable(candidate)) return candidate;
  }
  return {};
}

}  // namespace

int check_config(const ctl_context& ctx, const std::string& file) {
  const auto daemon = find_daemon(ctx);
  if (daemon.empty()) {
    ctx.err << "mxpuppetctl: cannot find mxpuppetd next to mxpuppetctl or on PATH"
               " (MXPUPPETD_BIN names it)\n";
    return exit_code(ctl_exit::unreachable);
  }
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ctx.err << "mxpuppetctl: pipe: " << std::strerror(errno) << '\n';
    return exit_code(ctl_exit::unreachable);
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ctx.err << "mxpuppetctl: pipe: " << std::strerror(errno) << '\n';
    ::close(out_pipe[0]), ::close(out_pipe[1]);
    return exit_code(ctl_exit::unreachable);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);  // dup2 drops O_CLOEXEC
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  std::string arg0 = daemon, arg1 = "--check-config", arg2 = "-c", arg3 = file;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), arg3.data(), nullptr};
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, daemon.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawned != 0) {
    ::close(out_pipe[0]), ::close(err_pipe[0]);
    ctx.err << "mxpuppetctl: cannot run " << daemon << ": " << std::strerror(spawned) << '\n';
    return exit_code(ctl_exit::unreachable);
  }

  // Both pipes until EOF, within the deadline (a secret file could be a FIFO nobody writes).
  const auto deadline = std::chrono::steady_clock::now() + ctx.timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::ostream* sinks[2] = {&ctx.out, &ctx.err};
  bool timed_out = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    const int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;  // poll ignores negative descriptors
        continue;
      }
      sinks[i]->write(buf, got);
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    ctx.err << "mxpuppetctl: " << daemon << " --check-config did not finish within "
            << human_duration(ctx.timeout.count()) << '\n';
    return exit_code(ctl_exit::unreachable);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return exit_code(ctl_exit::ok);
  // Exit status 2: the configuration is invalid, and mxpuppetd has said why.
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 2)
    ctx.err << "mxpuppetctl: " << daemon << " --check-config failed ("
            << (WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                  : fmt::format("signal {}", WTERMSIG(status)))
            << ")\n";
  return exit_code(ctl_exit::daemon_error);
}

}  // namespace mxp::client
