// File: runtime/launch_auth.h
//
// The secrets `fedsim launch --auth=MODE` makes for its loopback workers: a
// random shared token (token), a throw-away CA and a server certificate for
// 127.0.0.1 (tls), plus one client certificate per worker with CN
// worker-<i> (mtls). The workers' files live in a private (0700) temporary
// directory that the LaunchSecrets removes when destroyed; nothing goes into
// the config or the run directory.
#ifndef FEDSIM_RUNTIME_LAUNCH_AUTH_H_
#define FEDSIM_RUNTIME_LAUNCH_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/auth/auth.h"

namespace fedsim {

class LaunchSecrets {
 public:
  LaunchSecrets() = default;
  LaunchSecrets(LaunchSecrets&& other) noexcept;
  LaunchSecrets& operator=(LaunchSecrets&&) = delete;
  LaunchSecrets(const LaunchSecrets&) = delete;
  ~LaunchSecrets();

  // The flags of worker `i`'s fedsim-client.
  std::vector<std::string> WorkerFlags(int i) const;

  ServerAuthConfig server;
  AuthMode mode = AuthMode::kNone;
  std::string dir;  // empty for none
};

absl::StatusOr<LaunchSecrets> MakeLaunchSecrets(AuthMode mode, int workers);

}  // namespace fedsim

#endif  // FEDSIM_RUNTIME_LAUNCH_AUTH_H_
