// fedsim-server: the coordinator as a standalone process.
//
//   fedsim-server --config CONFIG [--listen 0.0.0.0:50051] [--out DIR]
//                 [--min_workers N] [--resume=true]
//
// Serves fedsim.v1.Coordinator and grpc.health.v1.Health, waits for
// distributed.min_workers workers, runs the experiment and exits. The flags
// can also come from the environment (FEDSIM_CONFIG, FEDSIM_LISTEN,
// FEDSIM_OUT, FEDSIM_MIN_WORKERS, FEDSIM_RESUME, and the authentication
// flags of docs/security.md: FEDSIM_AUTH, FEDSIM_AUTH_TOKEN_FILE,
// FEDSIM_TLS_CERT, FEDSIM_TLS_KEY, FEDSIM_TLS_CA), as container deployments set them; a
// deployment that scales its workers sets min_workers with them instead of
// editing the config. Exit codes as `fedsim`.
//
// SIGTERM/SIGINT stop the run gracefully (docs/reliability.md, "Faults"):
// health NOT_SERVING, no new joins or tasks, calls in flight drained, a
// checkpoint of the last completed round, logs closed, exit 0; --resume
// continues it. A second signal exits at once (128 + signal).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "common/base/stop_signal.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "runtime/console.h"
#include "runtime/distributed.h"
#include "tools/cli_help.h"
#include "tools/fault_injection.h"

ABSL_FLAG(std::string, config, "", "experiment config (YAML); env FEDSIM_CONFIG");
ABSL_FLAG(std::string, listen, "", "address to serve on (default 0.0.0.0:50051); env FEDSIM_LISTEN");
ABSL_FLAG(std::string, out, "", "run directory (default runs/server); env FEDSIM_OUT");
ABSL_FLAG(std::string, min_workers, "",
          "overrides distributed.min_workers (>= 1); env FEDSIM_MIN_WORKERS");
ABSL_FLAG(std::string, auth, "",
          "none (default), token, tls or mtls (docs/security.md); env FEDSIM_AUTH");
ABSL_FLAG(std::string, token_file, "",
          "worker secrets: one line SECRET (shared) and/or lines NAME SECRET; "
          "env FEDSIM_AUTH_TOKEN_FILE");
ABSL_FLAG(std::string, tls_cert, "", "tls/mtls: server certificate (PEM); env FEDSIM_TLS_CERT");
ABSL_FLAG(std::string, tls_key, "", "tls/mtls: server private key (PEM); env FEDSIM_TLS_KEY");
ABSL_FLAG(std::string, tls_ca, "",
          "mtls: CA certificate (PEM) that client certificates must chain to; "
          "env FEDSIM_TLS_CA");
ABSL_FLAG(std::string, data_cache, "",
          "folder shared with this host's workers' --data_cache: the coordinator writes the "
          "prepared rows there and maps them, as the workers do; env FEDSIM_DATA_CACHE");
ABSL_FLAG(bool, quiet, false, "print only the summary");
ABSL_FLAG(bool, rpc_stats, false,
          "print the per-RPC statistics table to stderr at the end "
          "(docs/reliability.md); env FEDSIM_RPC_STATS=1");
ABSL_FLAG(std::string, resume, "",
          "true: continue from the newest checkpoint in --out if there is one "
          "(docs/checkpoint.md); env FEDSIM_RESUME");

namespace {

std::string FlagOrEnv(const std::string& flag, const char* env,
                      const std::string& fallback) {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(env);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

constexpr char kUsage[] =
    "usage: fedsim-server --config CONFIG [--listen ADDR] [--out DIR] [--min_workers N]\n"
    "                     [--auth none|token|tls|mtls] [--resume=true] [--data_cache DIR]\n"
    "                     [--set KEY=VALUE ...]\n"
    "\n"
    "The coordinator as a standalone process: serves fedsim.v1.Coordinator and\n"
    "grpc.health.v1.Health, waits for distributed.min_workers workers\n"
    "(fedsim-client --server HOST:PORT), runs the experiment and exits.\n"
    "Every flag can also come from the FEDSIM_* variable its help names.\n"
    "--set section.key=VALUE (repeatable) overrides a key of CONFIG.\n"
    "SIGTERM/SIGINT stop the run gracefully (checkpoint, exit 0).\n"
    "Exit codes: 0 done, 2 bad flags, config or data, 1 a run that failed.";

int main(int argc, char** argv) {
  if (fedsim::WantsHelp(argc, argv)) {
    fedsim::PrintHelp(stdout, kUsage, fedsim::FlagsDefinedIn("tools/fedsim_server.cc"));
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<std::string> overrides = fedsim::TakeConfigOverrides(argc, argv);
  absl::ParseCommandLine(argc, argv);
  // Before any thread starts: they all inherit the blocked signals.
  fedsim::StopSignal& stop_signal = fedsim::StopSignal::Install();
  const std::string config_path =
      FlagOrEnv(absl::GetFlag(FLAGS_config), "FEDSIM_CONFIG", "");
  if (config_path.empty()) {
    std::fprintf(stderr, "fedsim-server: --config is required\n");
    return 2;
  }
  auto config = fedsim::LoadConfigFile(config_path, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "fedsim-server: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  const std::string min_workers =
      FlagOrEnv(absl::GetFlag(FLAGS_min_workers), "FEDSIM_MIN_WORKERS", "");
  if (!min_workers.empty()) {
    int n = 0;
    if (!absl::SimpleAtoi(min_workers, &n) || n < 1) {
      std::fprintf(stderr, "fedsim-server: --min_workers = %s; must be an integer >= 1\n",
                   min_workers.c_str());
      return 2;
    }
    config->mutable_distributed()->set_min_workers(n);
  }
  const std::string out = FlagOrEnv(absl::GetFlag(FLAGS_out), "FEDSIM_OUT", "runs/server");
  const std::string resume = FlagOrEnv(absl::GetFlag(FLAGS_resume), "FEDSIM_RESUME", "false");
  bool resuming = false;
  if (!absl::SimpleAtob(resume, &resuming)) {
    std::fprintf(stderr, "fedsim-server: --resume = %s; must be true or false\n",
                 resume.c_str());
    return 2;
  }
  auto run = resuming ? fedsim::PrepareOrResumeRun(*config, out, "distributed")
                      : fedsim::PrepareRun(*config, out, "distributed");
  if (!run.ok()) {
    std::fprintf(stderr, "fedsim-server: %s\n", std::string(run.status().message()).c_str());
    return 2;
  }
  fedsim::InstallCoordinatorFaults(*run);
  // One copy of the rows for the coordinator and the workers of this host
  // (docs/deploy.md); a folder that cannot be used costs only the sharing.
  if (const std::string cache =
          FlagOrEnv(absl::GetFlag(FLAGS_data_cache), "FEDSIM_DATA_CACHE", "");
      !cache.empty()) {
    const absl::Status shared =
        fedsim::ShareRowsThroughCache(*run->experiment, run->config, "", cache,
                                      /*durable=*/true);
    if (shared.ok()) {
      std::fprintf(stderr, "fedsim-server: %s\n", run->experiment->data_note.c_str());
    } else {
      std::fprintf(stderr, "fedsim-server: rows not shared (%s); this process keeps its own\n",
                   std::string(shared.message()).c_str());
    }
  }
  if (run->resumed) {
    std::fprintf(stderr, "fedsim-server: resuming %s at round %lld\n", out.c_str(),
                 static_cast<long long>(fedsim::CompletedRounds(*run)));
  }
  fedsim::AuthFiles auth_files;
  auth_files.mode = FlagOrEnv(absl::GetFlag(FLAGS_auth), "FEDSIM_AUTH", "none");
  auth_files.token_file =
      FlagOrEnv(absl::GetFlag(FLAGS_token_file), "FEDSIM_AUTH_TOKEN_FILE", "");
  auth_files.tls_cert = FlagOrEnv(absl::GetFlag(FLAGS_tls_cert), "FEDSIM_TLS_CERT", "");
  auth_files.tls_key = FlagOrEnv(absl::GetFlag(FLAGS_tls_key), "FEDSIM_TLS_KEY", "");
  auth_files.tls_ca = FlagOrEnv(absl::GetFlag(FLAGS_tls_ca), "FEDSIM_TLS_CA", "");
  auto auth = fedsim::LoadServerAuth(auth_files);
  if (!auth.ok()) {
    std::fprintf(stderr, "fedsim-server: %s\n", std::string(auth.status().message()).c_str());
    return 2;
  }
  fedsim::ServeOptions options;
  options.auth = *std::move(auth);
  options.listen = FlagOrEnv(absl::GetFlag(FLAGS_listen), "FEDSIM_LISTEN", "0.0.0.0:50051");
  options.print_rpc_stats = absl::GetFlag(FLAGS_rpc_stats) || fedsim::RpcStatsRequestedByEnv();
  options.stop_signal = &stop_signal;
  options.progress = fedsim::MakeConsoleProgress(
      stderr, absl::GetFlag(FLAGS_quiet) ? fedsim::ProgressMode::kQuiet
                                         : fedsim::ProgressMode::kHuman);
  options.on_listening = [&](int port) {
    std::fprintf(stderr, "fedsim-server: listening on %s (port %d), waiting for %d worker(s)\n",
                 options.listen.c_str(), port, config->distributed().min_workers());
    return absl::OkStatus();
  };
  auto summary = fedsim::ServeRun(*run, options);
  if (!summary.ok() && absl::IsCancelled(summary.status()) && stop_signal.signal() != 0) {
    std::fprintf(stderr, "fedsim-server: %s\n", std::string(summary.status().message()).c_str());
    run->log.reset();  // closes events.jsonl and metrics.csv
    return 0;
  }
  if (!summary.ok()) {
    std::fprintf(stderr, "fedsim-server: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  fedsim::PrintSummary(stdout, *run, *summary);
  return 0;
}
