// test_tls: a throw-away self-signed certificate (EC P-256, SAN localhost and
// 127.0.0.1) for HTTPS tests against the fake homeserver.
#pragma once

#include <string>

namespace mxp::test {

struct test_cert {
  std::string cert_file, key_file, ca_file;  // PEM; ca_file == cert_file (self-signed)
};

// Writes cert.pem and key.pem into `dir` (which must exist), valid from an hour
// ago to a day from now. Throws std::runtime_error on failure.
test_cert make_self_signed_cert(const std::string& dir);

}  // namespace mxp::test
