// fuzz_config: any text as a config file. The loader must answer with errors (file,
// line, key) or a config, never crash, hang or echo secret file contents.
#include <cstdint>
#include <string>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A base directory with no files: every *_file is "cannot read", which is part of the point.
  const auto result = mxp::config::load_config_text(text, "fuzz.yaml", "/nonexistent-mxp-fuzz");
  if (result.config && !result.errors.empty()) __builtin_trap();  // a config only without errors
  return 0;
}
