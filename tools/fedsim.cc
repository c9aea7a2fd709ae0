// fedsim: the command-line front end.
//
//   fedsim run CONFIG [--out DIR] [--threads N] [--quiet] [--resume]
//       Runs the experiment embedded (one process, no network).
//   fedsim launch CONFIG --workers P [--out DIR] [--quiet] [--resume]
//       Runs it as a coordinator plus P local fedsim-client processes.
//   --resume continues an interrupted run from its newest checkpoint
//   (docs/checkpoint.md); without a checkpoint it starts afresh.
//   fedsim privacy --sampling-rate Q (--noise-multiplier Z | --target-epsilon E)
//                  --steps T [--delta D] [--json] ...
//       The RDP accountant: epsilon, or the noise multiplier for a target
//       (tools/privacy_cli.h; docs/dp.md).
//
// Exit codes: 0 success; 2 bad config or data (one line on stderr naming
// the key, the value and the rule); 1 a run that failed after it started.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "runtime/console.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "tools/privacy_cli.h"

ABSL_FLAG(std::string, out, "", "run directory (default runs/<config name>)");
ABSL_FLAG(int, threads, 0, "run: override runtime.threads");
ABSL_FLAG(int, workers, 2, "launch: number of worker processes");
ABSL_FLAG(bool, quiet, false, "print only the summary");
ABSL_FLAG(bool, resume, false,
          "run, launch: continue from the newest checkpoint in the run "
          "directory if there is one (docs/checkpoint.md)");

namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  fedsim run CONFIG [--out DIR] [--threads N] [--quiet] [--resume]\n"
    "  fedsim launch CONFIG --workers P [--out DIR] [--quiet] [--resume]\n"
    "  fedsim privacy --sampling-rate Q (--noise-multiplier Z | --target-epsilon E)\n"
    "                 --steps T [--delta D] [--max-order N] [--fractional-orders=B]\n"
    "                 [--orders A,B,...] [--conversion tight|classical] [--json]";

int Fail(int code, const absl::Status& status) {
  std::fprintf(stderr, "fedsim: %s\n", std::string(status.message()).c_str());
  return code;
}

int RunCommand(const std::string& command, const std::string& config_path) {
  absl::StatusOr<fedsim::v1::ExperimentConfig> config =
      fedsim::LoadConfigFile(config_path);
  if (!config.ok()) return Fail(2, config.status());
  if (absl::GetFlag(FLAGS_threads) != 0) {
    if (absl::GetFlag(FLAGS_threads) < 1) {
      return Fail(2, absl::InvalidArgumentError(absl::StrCat(
                         "--threads = ", absl::GetFlag(FLAGS_threads),
                         "; must be >= 1")));
    }
    config->mutable_runtime()->set_threads(absl::GetFlag(FLAGS_threads));
  }
  const int workers = absl::GetFlag(FLAGS_workers);
  if (command == "launch" && (workers < 1 || workers > 256)) {
    return Fail(2, absl::InvalidArgumentError(absl::StrCat(
                       "--workers = ", workers, "; must be in [1, 256]")));
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
  if (run->resumed && !absl::GetFlag(FLAGS_quiet)) {
    std::fprintf(stderr, "fedsim: resuming %s at round %lld\n", out.c_str(),
                 static_cast<long long>(run->engine->round()));
  }
  const fedsim::ProgressFn progress =
      fedsim::MakeConsoleProgress(stderr, absl::GetFlag(FLAGS_quiet));
  absl::StatusOr<fedsim::RunSummary> summary;
  if (command == "run") {
    summary = fedsim::RunEmbedded(*run, progress);
  } else {
    fedsim::LaunchOptions options;
    options.workers = workers;
    options.progress = progress;
    summary = fedsim::LaunchRun(*run, options);
  }
  if (!summary.ok()) return Fail(1, summary.status());
  fedsim::PrintSummary(stdout, *run, *summary);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // `privacy` parses its own (hyphenated) flags.
  if (argc >= 2 && std::string(argv[1]) == "privacy") {
    return fedsim::PrivacyCommand(std::vector<std::string>(argv + 2, argv + argc),
                                  stdout, stderr);
  }
  absl::SetProgramUsageMessage(kUsage);
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
    return RunCommand(command, args[2]);
  }
  std::fprintf(stderr, "fedsim: unknown command '%s'\n%s\n", command.c_str(), kUsage);
  return 2;
}
