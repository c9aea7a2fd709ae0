// File: tests/testing/engine_harness.h
//
// Driving an Engine by hand in unit tests: close the open round (step) and
// publish its one report, as the drive loop does. Header-only.
#ifndef FEDSIM_TESTS_TESTING_ENGINE_HARNESS_H_
#define FEDSIM_TESTS_TESTING_ENGINE_HARNESS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/coordinator/engine.h"

namespace fedsim::test {

// Engine::Close, then Engine::Publish of its report (at `wall_time_s`).
// REQUIRES: a round or virtual-clock step open (one report).
inline absl::StatusOr<MetricsRow> FinishOne(Engine& engine, double wall_time_s = 0.0) {
  absl::StatusOr<std::vector<StepReport>> reports = engine.Close();
  if (!reports.ok()) return reports.status();
  if (reports->size() != 1) {
    return absl::InternalError(absl::StrCat("Close gave ", reports->size(), " reports, not 1"));
  }
  return engine.Publish((*reports)[0], wall_time_s);
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_ENGINE_HARNESS_H_
