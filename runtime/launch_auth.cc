#include "runtime/launch_auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/auth/pki.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

// Writes `text` to `path`, readable by the owner only.
absl::Status WritePrivate(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

LaunchSecrets::LaunchSecrets(LaunchSecrets&& other) noexcept
    : server(std::move(other.server)), mode(other.mode), dir(std::move(other.dir)) {
  other.dir.clear();
}

LaunchSecrets::~LaunchSecrets() {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

std::vector<std::string> LaunchSecrets::WorkerFlags(int i) const {
  std::vector<std::string> flags = {absl::StrCat("--auth=", AuthModeName(mode))};
  if (mode == AuthMode::kToken) flags.push_back(absl::StrCat("--token_file=", dir, "/token"));
  if (mode == AuthMode::kTls || mode == AuthMode::kMtls) {
    flags.push_back(absl::StrCat("--tls_ca=", dir, "/ca.pem"));
  }
  if (mode == AuthMode::kMtls) {
    flags.push_back(absl::StrCat("--tls_cert=", dir, "/worker-", i, ".pem"));
    flags.push_back(absl::StrCat("--tls_key=", dir, "/worker-", i, ".key"));
  }
  return flags;
}

absl::StatusOr<LaunchSecrets> MakeLaunchSecrets(AuthMode mode, int workers) {
  LaunchSecrets secrets;
  secrets.mode = mode;
  secrets.server.mode = mode;
  if (mode == AuthMode::kNone) return secrets;
  std::error_code ec;
  const std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
  std::string pattern =
      absl::StrCat(ec ? std::string("/tmp") : tmp.string(), "/fedsim-launch-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a private directory ",
                                            pattern, ": ", std::strerror(errno)));
  }
  secrets.dir = pattern;  // mkdtemp makes it 0700
  if (mode == AuthMode::kToken) {
    secrets.server.shared_secret = HexEncode(RandomBytes(32));
    FEDSIM_RETURN_IF_ERROR(
        WritePrivate(secrets.dir + "/token", secrets.server.shared_secret + "\n"));
    return secrets;
  }
  FEDSIM_ASSIGN_OR_RETURN(PemCertificate ca, MakeCaCertificate("fedsim launch CA"));
  FEDSIM_ASSIGN_OR_RETURN(
      PemCertificate server,
      MakeLeafCertificate(ca, "fedsim-coordinator", {"IP:127.0.0.1", "DNS:localhost"}));
  secrets.server.cert_pem = server.cert_pem;
  secrets.server.key_pem = server.key_pem;
  secrets.server.ca_pem = ca.cert_pem;
  FEDSIM_RETURN_IF_ERROR(WritePrivate(secrets.dir + "/ca.pem", ca.cert_pem));
  if (mode == AuthMode::kMtls) {
    for (int i = 0; i < workers; ++i) {
      const std::string name = absl::StrCat("worker-", i);
      FEDSIM_ASSIGN_OR_RETURN(PemCertificate leaf,
                              MakeLeafCertificate(ca, name, {"DNS:" + name}));
      FEDSIM_RETURN_IF_ERROR(WritePrivate(absl::StrCat(secrets.dir, "/", name, ".pem"),
                                          leaf.cert_pem));
      FEDSIM_RETURN_IF_ERROR(WritePrivate(absl::StrCat(secrets.dir, "/", name, ".key"),
                                          leaf.key_pem));
    }
  }
  return secrets;
}

}  // namespace fedsim
