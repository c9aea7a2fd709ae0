// fedsim: the command-line front end.
//
//   fedsim run CONFIG [--set KEY=VALUE ...] [--out DIR] [--threads N] [--quiet | --json]
//              [--tensorboard] [--resume]
//       Runs the experiment embedded (one process, no network); each --set
//       overrides one config key (checked as the file's own keys).
//   fedsim launch CONFIG --workers P [--out DIR] [--quiet | --json] [--tensorboard] [--resume]
//       Runs it as a coordinator plus P local fedsim-client processes.
//       --resume continues an interrupted run from its newest checkpoint
//       (docs/checkpoint.md); without a checkpoint it starts afresh.
//   fedsim report RUN_DIR... [--out DIR] [options]
//       Summary table, plots and an HTML page of finished or running runs:
//       runs tools/report/fedsim_report.py with Python (docs/report.md).
//   fedsim privacy --sampling-rate Q (--noise-multiplier Z | --target-epsilon E)
//                  --steps T [--delta D] [--json] ...
//       The RDP accountant: epsilon, or the noise multiplier for a target
//       (tools/privacy_cli.h; docs/dp.md).
//   fedsim sweep CONFIG --grid KEY=V1,V2,... [--seeds 1-5] [--jobs J] [--out DIR] [--resume]
//       A grid of runs, J at a time, resumable (tools/sweep_cli.h).
//   fedsim data inspect CONFIG|PATH [--json]
//       Rows, features, classes, label histograms and clients of a data
//       set as fedsim reads it (tools/data_cli.h; docs/data.md).
//   fedsim config CONFIG | --fields
//       The config with every default filled in, checked, as the run
//       directory's config.json; or every key of the schema with its type,
//       default and range (the table of docs/config.md).
//
// Exit codes: 0 success; 2 bad config or data (one line on stderr naming
// the key, the value and the rule); 1 a run that failed after it started.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "algorithms/registry.h"
#include "common/config/config.h"
#include "runtime/console.h"
#include "common/base/stop_signal.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "tools/cli_help.h"
#include "tools/fault_injection.h"
#include "tools/data_cli.h"
#include "tools/privacy_cli.h"
#include "tools/sweep_cli.h"

ABSL_FLAG(std::string, out, "", "run directory (default runs/<config name>)");
ABSL_FLAG(int, threads, 0, "override runtime.threads (>= 1)");
ABSL_FLAG(int, workers, 2, "number of worker processes, in [1, 256]");
ABSL_FLAG(std::string, auth, "none",
          "none, token, tls or mtls between the coordinator and its "
          "workers; launch makes the token or certificates itself (docs/security.md)");
ABSL_FLAG(bool, quiet, false, "print only the summary");
ABSL_FLAG(bool, resume, false,
          "continue from the newest checkpoint in the run "
          "directory if there is one (docs/checkpoint.md)");
ABSL_FLAG(bool, json, false,
          "progress and summary as JSON lines on stdout (docs/report.md)");
ABSL_FLAG(bool, rpc_stats, false,
          "print the coordinator's per-RPC statistics at the end "
          "(also env FEDSIM_RPC_STATS=1; docs/reliability.md)");
ABSL_FLAG(bool, tensorboard, false,
          "also write TensorBoard scalars (sets logging.tensorboard)");

namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  fedsim run CONFIG [--set KEY=VALUE ...] [--out DIR] [--threads N] [--quiet | --json]\n"
    "                [--tensorboard] [--resume]\n"
    "  fedsim launch CONFIG --workers P [--set KEY=VALUE ...] [--out DIR] [--quiet | --json]\n"
    "                [--tensorboard] [--resume] [--auth none|token|tls|mtls]\n"
    "  fedsim report RUN_DIR... [--out DIR] [--metrics M,...] [--x round,wall,virtual]\n"
    "                [--logy] [--logx] [--smooth K] [--size WxH]  (fedsim report --help)\n"
    "  fedsim privacy --sampling-rate Q (--noise-multiplier Z | --target-epsilon E)\n"
    "                 --steps T [--delta D] [--max-order N] [--fractional-orders=B]\n"
    "                 [--orders A,B,...] [--conversion tight|classical] [--json]\n"
    "  fedsim sweep CONFIG --grid KEY=V1,V2,... [--seeds 1-5] [--jobs J] [--out DIR]\n"
    "               [--resume]  (fedsim sweep --help)\n"
    "  fedsim data inspect CONFIG|PATH [--json]\n"
    "  fedsim config CONFIG [--set KEY=VALUE ...] | --fields";

constexpr char kConfigUsage[] =
    "usage: fedsim config CONFIG [--set KEY=VALUE ...]\n"
    "       fedsim config --fields\n"
    "\n"
    "CONFIG: prints the experiment config with every default filled in, as\n"
    "JSON (the run directory's config.json), after the config's own checks\n"
    "(a run also checks the data); exit 2 with one line naming the key, the\n"
    "value and the rule if it is refused. --fields: prints every key of the\n"
    "schema with its type, default and range as a Markdown table\n"
    "(docs/config.md).";

constexpr char kRunUsage[] =
    "usage: fedsim run CONFIG [--set KEY=VALUE ...] [--out DIR] [--threads N]\n"
    "                  [--quiet | --json] [--tensorboard] [--resume]\n"
    "\n"
    "Runs the experiment CONFIG (YAML; docs/config.md) in this process, on\n"
    "runtime.threads threads, and writes its run directory (default\n"
    "runs/<config name>; docs/run-directory.md). --set section.key=VALUE\n"
    "(repeatable) overrides a key of CONFIG, VALUE in YAML (0.1, fedavg,\n"
    "[1, 2], {mu: 0.01}); config.json records the result. Exit codes: 0 done,\n"
    "2 bad flags, config or data (one line naming the key, the value and the\n"
    "rule), 1 a run that failed after it started.";

constexpr char kLaunchUsage[] =
    "usage: fedsim launch CONFIG --workers P [--set KEY=VALUE ...] [--out DIR]\n"
    "                     [--quiet | --json] [--tensorboard] [--resume]\n"
    "                     [--auth none|token|tls|mtls] [--rpc_stats]\n"
    "\n"
    "Runs the experiment CONFIG as a coordinator in this process and P local\n"
    "fedsim-client worker processes talking gRPC over loopback; synchronous\n"
    "runs end bit-identical to fedsim run. SIGTERM/SIGINT stop it gracefully\n"
    "(--resume continues). Exit codes as fedsim run.";

const std::vector<std::string> kRunFlags = {"out", "threads", "quiet", "json",
                                            "tensorboard", "resume"};
const std::vector<std::string> kLaunchFlags = {"out",    "workers", "quiet", "json",
                                               "tensorboard", "resume", "auth",
                                               "rpc_stats"};

constexpr char kMoreHelp[] =
    "fedsim COMMAND --help (or fedsim help COMMAND) describes a command and its flags.";

bool WantsHelpOrHelpCommand(const char* arg) {
  const std::string a = arg;
  return a == "help" || a == "-h" || a == "-help" || a == "--help" || a == "--helpfull";
}

int Fail(int code, const absl::Status& status) {
  std::fprintf(stderr, "fedsim: %s\n", std::string(status.message()).c_str());
  return code;
}

// `fedsim report`: replaces this process by Python running the report tool,
// passing the arguments through. The script is looked for next to the binary
// (<bin>/../share/fedsim/, where the build and `cmake --install` put it),
// then in the source tree. The interpreter: FEDSIM_PYTHON if set; else the
// active virtual environment's ($VIRTUAL_ENV/bin/python3), so a venv with
// matplotlib from PyPI works; else the one found at configure time (a
// python3 that imported matplotlib then); else python3 on PATH. The script
// says what is missing (matplotlib, and how to get it) if its import fails.
int ReportCommand(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(self.parent_path().parent_path() / "share" / "fedsim" /
                         "fedsim_report.py");
  }
  candidates.push_back(FEDSIM_REPORT_SOURCE);
  std::string script;
  for (const fs::path& c : candidates) {
    if (fs::is_regular_file(c, ec)) {
      script = c.string();
      break;
    }
  }
  if (script.empty()) {
    std::fprintf(stderr, "fedsim report: fedsim_report.py not found (looked in %s and %s)\n",
                 candidates.front().c_str(), FEDSIM_REPORT_SOURCE);
    return 2;
  }
  std::string python;
  if (const char* env = std::getenv("FEDSIM_PYTHON"); env != nullptr && env[0] != '\0') {
    python = env;
  } else if (const char* venv = std::getenv("VIRTUAL_ENV");
             venv != nullptr && venv[0] != '\0' &&
             fs::exists(fs::path(venv) / "bin" / "python3", ec)) {
    python = (fs::path(venv) / "bin" / "python3").string();
  } else if (fs::path(FEDSIM_REPORT_PYTHON).is_absolute() &&
             fs::exists(FEDSIM_REPORT_PYTHON, ec)) {
    python = FEDSIM_REPORT_PYTHON;
  } else {
    python = "python3";
  }
  std::vector<std::string> args = {python, script};
  for (int i = 2; i < argc; ++i) args.emplace_back(argv[i]);
  std::vector<char*> c_args;
  for (std::string& a : args) c_args.push_back(a.data());
  c_args.push_back(nullptr);
  std::fflush(nullptr);
  ::execvp(python.c_str(), c_args.data());
  std::fprintf(stderr,
               "fedsim report: cannot run %s: %s; it needs Python 3 with matplotlib "
               "(Debian: apt-get install python3 python3-matplotlib; or a venv with "
               "pip install matplotlib, activated or named by FEDSIM_PYTHON)\n",
               python.c_str(), std::strerror(errno));
  return 2;
}

// The --set overrides of the command line (TakeConfigOverrides).
std::vector<std::string> g_overrides;

int RunCommand(const std::string& command, const std::string& config_path) {
  absl::StatusOr<fedsim::v1::ExperimentConfig> config =
      fedsim::LoadConfigFile(config_path, g_overrides);
  if (!config.ok()) return Fail(2, config.status());
  if (absl::GetFlag(FLAGS_threads) != 0) {
    if (absl::GetFlag(FLAGS_threads) < 1) {
      return Fail(2, absl::InvalidArgumentError(absl::StrCat(
                         "--threads = ", absl::GetFlag(FLAGS_threads),
                         "; must be >= 1")));
    }
    config->mutable_runtime()->set_threads(absl::GetFlag(FLAGS_threads));
  }
  if (absl::GetFlag(FLAGS_tensorboard)) config->mutable_logging()->set_tensorboard(true);
  const bool json = absl::GetFlag(FLAGS_json);
  if (json && absl::GetFlag(FLAGS_quiet)) {
    return Fail(2, absl::InvalidArgumentError(
                       "--quiet and --json both given; choose one"));
  }
  const int workers = absl::GetFlag(FLAGS_workers);
  if (command == "launch" && (workers < 1 || workers > 256)) {
    return Fail(2, absl::InvalidArgumentError(absl::StrCat(
                       "--workers = ", workers, "; must be in [1, 256]")));
  }
  absl::StatusOr<fedsim::AuthMode> auth = fedsim::ParseAuthMode(absl::GetFlag(FLAGS_auth));
  if (!auth.ok()) return Fail(2, auth.status());
  if (command == "run" && *auth != fedsim::AuthMode::kNone) {
    return Fail(2, absl::InvalidArgumentError(absl::StrCat(
                       "--auth = ", absl::GetFlag(FLAGS_auth),
                       " is for fedsim launch; fedsim run has no network")));
  }
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    out = (std::filesystem::path("runs") /
           std::filesystem::path(config_path).stem())
              .string();
  }
  const std::string runtime = command == "run" ? "embedded" : "distributed";
  absl::StatusOr<fedsim::CoordinatorRun> run =
      absl::GetFlag(FLAGS_resume) ? fedsim::PrepareOrResumeRun(*config, out, runtime)
                                  : fedsim::PrepareRun(*config, out, runtime);
  if (!run.ok()) return Fail(2, run.status());
  fedsim::InstallCoordinatorFaults(*run);
  if (run->resumed && !absl::GetFlag(FLAGS_quiet) && !json) {
    std::fprintf(stderr, "fedsim: resuming %s at round %lld\n", out.c_str(),
                 static_cast<long long>(fedsim::CompletedRounds(*run)));
  }
  const fedsim::ProgressFn progress =
      json ? fedsim::MakeConsoleProgress(stdout, fedsim::ProgressMode::kJson)
           : fedsim::MakeConsoleProgress(stderr, absl::GetFlag(FLAGS_quiet)
                                                     ? fedsim::ProgressMode::kQuiet
                                                     : fedsim::ProgressMode::kHuman);
  absl::StatusOr<fedsim::RunSummary> summary;
  if (command == "run") {
    summary = fedsim::RunEmbedded(*run, progress);
  } else {
    fedsim::LaunchOptions options;
    options.workers = workers;
    options.progress = progress;
    options.auth = *auth;
    options.print_rpc_stats =
        absl::GetFlag(FLAGS_rpc_stats) || fedsim::RpcStatsRequestedByEnv();
    options.stop_signal = fedsim::StopSignal::Get();
    summary = fedsim::LaunchRun(*run, options);
  }
  if (!summary.ok() && command == "launch" && absl::IsCancelled(summary.status()) &&
      fedsim::StopSignal::Get() != nullptr && fedsim::StopSignal::Get()->signal() != 0) {
    // Stopped by SIGTERM/SIGINT, forwarded to the workers; --resume continues.
    std::fprintf(stderr, "fedsim: %s\n", std::string(summary.status().message()).c_str());
    return 0;
  }
  if (!summary.ok()) return Fail(1, summary.status());
  if (json) {
    fedsim::PrintSummaryJson(stdout, *run, *summary);
  } else {
    fedsim::PrintSummary(stdout, *run, *summary);
  }
  return 0;
}

// `fedsim config`: the resolved config, or the schema's field table.
int ConfigCommand(int argc, char** argv) {
  g_overrides = fedsim::TakeConfigOverrides(argc, argv);
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "--helpfull")) {
    std::fprintf(stdout, "%s\n", kConfigUsage);
    return 0;
  }
  if (args.size() == 1 && args[0] == "--fields") {
    std::fputs(fedsim::ConfigFieldTable().c_str(), stdout);
    return 0;
  }
  if (args.size() != 1 || args[0].empty() || args[0][0] == '-') {
    std::fprintf(stderr, "fedsim config: expected one CONFIG file or --fields\n%s\n",
                 kConfigUsage);
    return 2;
  }
  absl::StatusOr<fedsim::v1::ExperimentConfig> config =
      fedsim::LoadConfigFile(args[0], g_overrides);
  if (!config.ok()) return Fail(2, config.status());
  if (absl::Status s = fedsim::ValidateAlgorithm(*config); !s.ok()) return Fail(2, s);
  std::fputs(fedsim::ConfigToJson(*config).c_str(), stdout);
  std::fputs("\n", stdout);
  return 0;
}

int Main(int argc, char** argv) {
  // `fedsim`, `fedsim help` and `fedsim --help` without a command.
  if (argc < 2 || (argc == 2 && WantsHelpOrHelpCommand(argv[1]))) {
    std::fprintf(argc < 2 ? stderr : stdout, "%s\n\n%s\n", kUsage, kMoreHelp);
    return argc < 2 ? 2 : 0;
  }
  if (argc >= 3 && std::string(argv[1]) == "help") {
    // `fedsim help COMMAND` is `fedsim COMMAND --help`.
    std::string help_flag = "--help";
    char* help_argv[] = {argv[0], argv[2], help_flag.data(), nullptr};
    return Main(3, help_argv);
  }
  // `privacy` parses its own (hyphenated) flags.
  if (argc >= 2 && std::string(argv[1]) == "privacy") {
    return fedsim::PrivacyCommand(std::vector<std::string>(argv + 2, argv + argc),
                                  stdout, stderr);
  }
  // `report` passes its (Python argparse) options through untouched.
  if (argc >= 2 && std::string(argv[1]) == "report") return ReportCommand(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "config") return ConfigCommand(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "sweep") {
    // The points run with this very binary.
    std::error_code ec;
    std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    if (ec) self = argv[0];
    return fedsim::SweepCommand(std::vector<std::string>(argv + 2, argv + argc), self, stdout,
                                stderr);
  }
  if (argc >= 2 && std::string(argv[1]) == "data") {
    return fedsim::DataCommand(std::vector<std::string>(argv + 2, argv + argc), stdout, stderr);
  }
  const std::string first = argv[1];
  if ((first == "run" || first == "launch") && fedsim::WantsHelp(argc, argv, 2)) {
    fedsim::PrintHelp(stdout, first == "run" ? kRunUsage : kLaunchUsage,
                      first == "run" ? kRunFlags : kLaunchFlags);
    return 0;
  }
  if (fedsim::WantsHelp(argc, argv, 1)) {
    std::fprintf(stdout, "%s\n\n%s\n", kUsage, kMoreHelp);
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  g_overrides = fedsim::TakeConfigOverrides(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string command = args[1];
  if (command == "run" || command == "launch") {
    if (args.size() != 3) {
      std::fprintf(stderr, "fedsim %s: expected exactly one CONFIG file\n%s\n",
                   command.c_str(), kUsage);
      return 2;
    }
    // `launch` stops gracefully on SIGTERM/SIGINT and forwards them to its
    // workers; installed before any thread starts.
    if (command == "launch") fedsim::StopSignal::Install();
    return RunCommand(command, args[2]);
  }
  std::fprintf(stderr, "fedsim: unknown command '%s'\n%s\n", command.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
