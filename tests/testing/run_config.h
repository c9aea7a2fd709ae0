// File: tests/testing/run_config.h
//
// Running a config in a test, as the embedded runtime or as a coordinator
// with worker processes on loopback (`fedsim launch`), into a run
// directory that the caller reads back with run_dir.h. Failures are test
// failures (the directory is returned anyway). Header-only; integration
// tests only (it needs the runtimes).
#ifndef FEDSIM_TESTS_TESTING_RUN_CONFIG_H_
#define FEDSIM_TESTS_TESTING_RUN_CONFIG_H_

#include <filesystem>
#include <string>

#include "common/config/config.h"
#include "gtest/gtest.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"

namespace fedsim::test {

// `workers` = 0: embedded; otherwise that many worker processes.
inline std::string RunConfig(const std::string& yaml, const std::string& dir, int workers) {
  std::filesystem::remove_all(dir);
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return dir;
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, dir, workers == 0 ? "embedded" : "distributed");
  EXPECT_TRUE(run.ok()) << run.status();
  if (!run.ok()) return dir;
  absl::StatusOr<RunSummary> summary;
  if (workers == 0) {
    summary = RunEmbedded(*run);
  } else {
    LaunchOptions options;
    options.workers = workers;
    options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
    summary = LaunchRun(*run, options);
  }
  EXPECT_TRUE(summary.ok()) << summary.status();
  return dir;
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_RUN_CONFIG_H_
