// child_program: runs another program as a bridge would (a snippet, an npm client library),
// with extra environment, stdin and a working directory, keeping stdout and stderr apart, and
// finds programs in $PATH. Shared by the end-to-end tests that drive non-C++ clients.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "support/daemon_process.hpp"

namespace mxp::test {

struct child_run {
  int exit_code = -1;    // 128 + signal when killed; -1 when it never ended
  std::string out, err;  // stdout, stderr
  std::chrono::milliseconds elapsed{};
};

// The program's path in $PATH ("" if none).
std::string find_in_path(const std::string& name);

// Runs argv in `cwd` (default: the test's cwd) with `env` ("K=V") added to the environment and
// `input` on stdin; its files go to `dir`. Killed after `timeout`.
child_run run_child(const temp_dir& dir, const std::vector<std::string>& argv,
                    const std::vector<std::string>& env, const std::string& input = "",
                    const std::string& cwd = "",
                    std::chrono::milliseconds timeout = std::chrono::seconds{60});

}  // namespace mxp::test
