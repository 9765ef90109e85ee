// daemon_process: starts the built mxpuppetd binary with a config written to a
// temp directory, waits until its socket answers, and stops it; the log it wrote
// stays readable so tests can check what it said (and that no token leaked).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace mxp::test {

// A fresh directory under $TMPDIR, removed with everything in it on destruction.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Writes `content` to path()/name with `mode`; returns the full path.
  std::string write(const std::string& name, const std::string& content,
                    unsigned mode = 0600) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);
std::string env_or_throw(const char* name);

struct run_result {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs a program to completion with a timeout (killed after it); for mxpuppetctl and
// --check-config.
run_result run_program(const std::vector<std::string>& argv,
                       std::chrono::milliseconds timeout = std::chrono::seconds{30});

// How to start the daemon beyond its config: extra environment, a socket-activation fd.
struct daemon_options {
  std::vector<std::string> env;  // "NAME=value" entries added to the child's environment
  // A listening socket handed over as fd 3 with LISTEN_FDS=1 and LISTEN_PID=<the child's pid>,
  // as systemd's socket activation does. The caller keeps its own copy.
  int listen_fd = -1;
};

class daemon_process {
 public:
  // Starts $MXPUPPETD_BIN -c config_file, logging to log_file.
  daemon_process(std::string config_file, std::string socket_path, std::string log_file,
                 daemon_options options = {});
  ~daemon_process();  // SIGKILL if still running
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  // Polls GET /healthz until it answers 200; false if the process died or time ran out.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds{15});
  // Sends `sig` and waits for the exit; returns the exit code (128+signal if killed), nullopt on
  // timeout.
  std::optional<int> stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds{20});
  // Non-blocking: the exit code if it has exited.
  std::optional<int> exited();
  std::string log() const;
  pid_t pid() const { return pid_; }

 private:
  std::string socket_path_, log_file_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace mxp::test
