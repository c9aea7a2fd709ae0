// File: server/coordinator/progress.h
//
// Progress reporting of a run (called once per finished round) and the
// summary of a finished run.
#ifndef FEDSIM_SERVER_COORDINATOR_PROGRESS_H_
#define FEDSIM_SERVER_COORDINATOR_PROGRESS_H_

#include <cmath>
#include <cstdint>
#include <functional>

#include "common/runlog/run_log.h"

namespace fedsim {

using ProgressFn =
    std::function<void(const MetricsRow& row, std::int64_t total_rounds)>;

// The outcome of a finished run.
struct RunSummary {
  std::int64_t rounds = 0;
  double wall_time_s = 0.0;
  MetricsRow last;           // the last round's metrics
  double best_accuracy = NAN;
  std::string out_dir;

  // Takes in a finished round's metrics.
  void Record(const MetricsRow& row) {
    if (!std::isnan(row.test_accuracy) &&
        (std::isnan(best_accuracy) || row.test_accuracy > best_accuracy)) {
      best_accuracy = row.test_accuracy;
    }
    last = row;
  }
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_PROGRESS_H_
