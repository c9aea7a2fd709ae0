// File: common/auth/pki.h
//
// A small certificate authority in memory (OpenSSL's C API): `fedsim launch`
// makes a throw-away CA, a server certificate for 127.0.0.1 and one client
// certificate per worker for --auth=tls/mtls, and the tests make theirs. Keys
// are EC P-256; certificates are valid from an hour ago for `days` days.
#ifndef FEDSIM_COMMON_AUTH_PKI_H_
#define FEDSIM_COMMON_AUTH_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedsim {

struct PemCertificate {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed CA certificate (basicConstraints CA:TRUE) with common name `cn`.
absl::StatusOr<PemCertificate> MakeCaCertificate(const std::string& cn, int days = 2);

// A leaf certificate signed by `ca`, with common name `cn` and the subject
// alternative names `sans` ("DNS:host", "IP:127.0.0.1"); usable by servers
// and clients alike.
absl::StatusOr<PemCertificate> MakeLeafCertificate(
    const PemCertificate& ca, const std::string& cn,
    const std::vector<std::string>& sans, int days = 2);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_AUTH_PKI_H_
