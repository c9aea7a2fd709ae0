// fedsim-client: a worker process hosting virtual clients.
//
//   fedsim-client --server HOST:PORT [--worker_name NAME] [--data_dir DIR] [--parallel T]
//                 [--data_cache DIR]
//
// --worker_name (alias --name; env FEDSIM_WORKER_NAME or FEDSIM_NAME) is the
// worker's stable identity: a worker restarted under the same name is the
// same worker to the coordinator, which re-issues the tasks the crashed
// process held (worker_rejoined). Give every worker its own name; without
// one it is HOST-PID, unique but not stable across restarts.
//
// Joins the coordinator, receives the experiment config, and trains the
// virtual clients named by the tasks it pulls until the run is over. The
// flags can also come from the environment (FEDSIM_SERVER, FEDSIM_NAME,
// FEDSIM_DATA_DIR; the authentication flags of docs/security.md from
// FEDSIM_AUTH, FEDSIM_AUTH_TOKEN_FILE, FEDSIM_TLS_CA, FEDSIM_TLS_CERT,
// FEDSIM_TLS_KEY, FEDSIM_TLS_SERVER_NAME). Exit codes: 0 the run finished,
// or SIGTERM/SIGINT stopped the worker (it leaves the coordinator, which
// re-issues its task); 1 a permanent error (coordinator unreachable for too
// long, credentials refused or TLS handshake failed, data missing, ...); 2
// bad flags or an unreadable secret/certificate file. A second signal exits
// at once (128 + signal).
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/grpc/grpc_coordinator_client.h"
#include "client/worker/worker.h"
#include "common/base/stop_signal.h"
#include "tools/cli_help.h"
#include "tools/fault_injection.h"

ABSL_FLAG(std::string, server, "", "coordinator address HOST:PORT; env FEDSIM_SERVER");
ABSL_FLAG(std::string, worker_name, "",
          "the worker's stable identity (default: HOST-PID); env FEDSIM_WORKER_NAME");
ABSL_FLAG(std::string, name, "", "alias of --worker_name; env FEDSIM_NAME");
ABSL_FLAG(std::string, data_dir, "", "replaces data.path of the config; env FEDSIM_DATA_DIR");
ABSL_FLAG(std::string, data_cache, "",
          "folder where the workers of a host share the prepared rows (one file, mapped "
          "by all); env FEDSIM_DATA_CACHE");
ABSL_FLAG(int, parallel, 1, "tasks trained concurrently by this process");
ABSL_FLAG(int, exit_with_parent, 0,
          "PID of the launching process: exit when it dies (fedsim launch)");
ABSL_FLAG(std::string, auth, "",
          "none (default), token, tls or mtls (docs/security.md); env FEDSIM_AUTH");
ABSL_FLAG(std::string, token_file, "",
          "file holding this worker's secret (token; optional with tls/mtls); "
          "env FEDSIM_AUTH_TOKEN_FILE");
ABSL_FLAG(std::string, tls_ca, "", "CA certificate (PEM) that signed the coordinator's; env FEDSIM_TLS_CA");
ABSL_FLAG(std::string, tls_cert, "", "mtls: this worker's certificate (PEM); env FEDSIM_TLS_CERT");
ABSL_FLAG(std::string, tls_key, "", "mtls: this worker's private key (PEM); env FEDSIM_TLS_KEY");
ABSL_FLAG(std::string, tls_server_name, "",
          "name to check the coordinator's certificate against (default: the "
          "host of --server); env FEDSIM_TLS_SERVER_NAME");
ABSL_FLAG(double, max_unreachable_s, 60, "give up after the coordinator is unreachable this long");

namespace {

std::string FlagOrEnv(const std::string& flag, const char* env,
                      const std::string& fallback) {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(env);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

constexpr char kUsage[] =
    "usage: fedsim-client --server HOST:PORT [--worker_name NAME] [--parallel N]\n"
    "                     [--auth none|token|tls|mtls] [--data_dir DIR]\n"
    "                     [--data_cache DIR]\n"
    "\n"
    "A worker process: joins the coordinator at --server, receives the\n"
    "experiment config, builds the same data partition, then trains the\n"
    "virtual clients' tasks it is given until the run ends (exit 0).\n"
    "Workers of one host given the same --data_cache share one copy of the\n"
    "prepared rows (the first writes a file there, all map it).\n"
    "Every flag can also come from the FEDSIM_* variable its help names.\n"
    "SIGTERM/SIGINT: the worker leaves (its task is re-issued) and exits 0.\n"
    "Exit codes: 0 done, 2 bad flags, 1 the coordinator unreachable or refusing.";

int main(int argc, char** argv) {
  if (fedsim::WantsHelp(argc, argv)) {
    fedsim::PrintHelp(stdout, kUsage, fedsim::FlagsDefinedIn("tools/fedsim_client.cc"));
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  absl::ParseCommandLine(argc, argv);
  // Before any thread starts: they all inherit the blocked signals.
  fedsim::StopSignal& stop_signal = fedsim::StopSignal::Install();
  if (const int parent = absl::GetFlag(FLAGS_exit_with_parent); parent > 0) {
    // A worker started by `fedsim launch` must not outlive its launcher.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) return 1;
  }
  fedsim::GrpcClientOptions client_options;
  client_options.target = FlagOrEnv(absl::GetFlag(FLAGS_server), "FEDSIM_SERVER", "");
  if (client_options.target.empty()) {
    std::fprintf(stderr, "fedsim-client: --server is required\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_parallel) < 1) {
    std::fprintf(stderr, "fedsim-client: --parallel = %d; must be >= 1\n",
                 absl::GetFlag(FLAGS_parallel));
    return 2;
  }
  if (!(absl::GetFlag(FLAGS_max_unreachable_s) > 0) ||
      !std::isfinite(absl::GetFlag(FLAGS_max_unreachable_s))) {
    std::fprintf(stderr, "fedsim-client: --max_unreachable_s = %g; must be finite and > 0\n",
                 absl::GetFlag(FLAGS_max_unreachable_s));
    return 2;
  }
  fedsim::AuthFiles auth_files;
  auth_files.mode = FlagOrEnv(absl::GetFlag(FLAGS_auth), "FEDSIM_AUTH", "none");
  auth_files.token_file =
      FlagOrEnv(absl::GetFlag(FLAGS_token_file), "FEDSIM_AUTH_TOKEN_FILE", "");
  auth_files.tls_ca = FlagOrEnv(absl::GetFlag(FLAGS_tls_ca), "FEDSIM_TLS_CA", "");
  auth_files.tls_cert = FlagOrEnv(absl::GetFlag(FLAGS_tls_cert), "FEDSIM_TLS_CERT", "");
  auth_files.tls_key = FlagOrEnv(absl::GetFlag(FLAGS_tls_key), "FEDSIM_TLS_KEY", "");
  auto auth = fedsim::LoadClientAuth(auth_files);
  if (!auth.ok()) {
    std::fprintf(stderr, "fedsim-client: %s\n", std::string(auth.status().message()).c_str());
    return 2;
  }
  client_options.auth = *std::move(auth);
  client_options.auth.server_name =
      FlagOrEnv(absl::GetFlag(FLAGS_tls_server_name), "FEDSIM_TLS_SERVER_NAME", "");
  char host[256] = "worker";
  ::gethostname(host, sizeof(host) - 1);
  fedsim::WorkerOptions options;
  host[sizeof(host) - 1] = '\0';
  // Flags first, then the environment, then HOST-PID.
  options.name = !absl::GetFlag(FLAGS_worker_name).empty()
                     ? absl::GetFlag(FLAGS_worker_name)
                     : FlagOrEnv(absl::GetFlag(FLAGS_name), "FEDSIM_WORKER_NAME",
                                 FlagOrEnv("", "FEDSIM_NAME",
                                           std::string(host) + "-" +
                                               std::to_string(::getpid())));
  options.data_dir = FlagOrEnv(absl::GetFlag(FLAGS_data_dir), "FEDSIM_DATA_DIR", "");
  options.data_cache = FlagOrEnv(absl::GetFlag(FLAGS_data_cache), "FEDSIM_DATA_CACHE", "");
  options.parallel = absl::GetFlag(FLAGS_parallel);
  options.max_unreachable = absl::Seconds(absl::GetFlag(FLAGS_max_unreachable_s));
  // No single call waits longer than the worker tolerates the coordinator
  // being unreachable (a plaintext worker waiting for a TLS coordinator's
  // channel to become ready would otherwise wait a whole rpc_timeout).
  client_options.rpc_timeout = std::min(client_options.rpc_timeout, options.max_unreachable);
  // The fault tests' seams (FEDSIM_FAULT_*; tools/fault_injection.h).
  std::unique_ptr<fedsim::CoordinatorClient> client =
      fedsim::WithWorkerFaults(fedsim::MakeGrpcCoordinatorClient(client_options), options.name);
  std::atomic<bool> stop{false};
  options.stop = &stop;
  const int stop_id = stop_signal.Add([&] {
    std::fprintf(stderr, "fedsim-client: stop signal, leaving\n");
    stop.store(true);
    client->CancelCalls();
  });
  absl::Status status = fedsim::RunWorker(options, *client);
  stop_signal.Remove(stop_id);
  if (stop.load()) {
    std::fprintf(stderr, "fedsim-client: stopped by signal\n");
    return 0;
  }
  if (!status.ok()) {
    // A refusal names its status code too (docs/security.md): an operator
    // reading a container's log sees UNAUTHENTICATED or PERMISSION_DENIED.
    std::string line(status.message());
    if (absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status)) {
      absl::StrAppend(&line, " (", absl::StatusCodeToString(status.code()), ")");
    }
    std::fprintf(stderr, "fedsim-client: %s\n", line.c_str());
    return 1;
  }
  std::fprintf(stderr, "fedsim-client: run finished\n");
  return 0;
}
