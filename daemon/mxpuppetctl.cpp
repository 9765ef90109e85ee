// mxpuppetctl: command-line client of mxpuppetd's socket API. All the work is
// in lib/client/ctl.cpp; this only wires it to the process.
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string_view>
#include <vector>

#include "client/ctl.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  const char* env_socket = std::getenv("MXPUPPETD_SOCKET");
  mxp::client::ctl_context ctx{std::cout, std::cerr, std::cin, env_socket ? env_socket : "", {}};
  if (const char* bin = std::getenv("MXPUPPETD_BIN")) ctx.daemon_bin_from_env = bin;
  if (const char* path = std::getenv("PATH")) ctx.search_path = path;
  // check-config looks for mxpuppetd where this binary was installed.
  std::error_code ec;
  if (const auto self = std::filesystem::read_symlink("/proc/self/exe", ec); !ec)
    ctx.self_dir = self.parent_path().string();
  try {
    return mxp::client::run_ctl(args, ctx);
  } catch (const std::exception& e) {
    std::cerr << "mxpuppetctl: " << e.what() << '\n';
    return 1;
  }
}
