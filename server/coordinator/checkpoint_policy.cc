#include "server/coordinator/checkpoint_policy.h"

#include <string>

#include "common/base/status_macros.h"

namespace fedsim {

CheckpointData MakeCheckpointData(const CoordinatorRun& run, const StepReport& report,
                                  const RunSummary& summary, double wall_time_s) {
  CheckpointData data;
  data.config = run.config;
  data.runtime = run.runtime;
  data.incarnation = run.incarnation;
  data.engine = report.snapshot.has_value() ? *report.snapshot : run.engine->Snapshot();
  data.clients = run.client_states;
  data.wall_time_s = wall_time_s;
  data.best_accuracy = summary.best_accuracy;
  return data;
}

absl::StatusOr<bool> MaybeCheckpoint(CoordinatorRun& run, const StepReport& report, bool last,
                                     const RunSummary& summary, double wall_time_s,
                                     Clock& clock) {
  const int every = run.config.checkpoint().every();
  if (every <= 0) return false;
  // Rounds (steps) completed.
  const std::int64_t completed = report.row.round + 1;
  if (run.before_checkpoint) run.before_checkpoint(completed);
  // Too soon after the previous checkpoint (the last step always writes).
  const double min_interval = run.config.checkpoint().min_interval_s();
  const bool too_soon = min_interval > 0 && run.last_checkpoint.has_value() &&
                        absl::ToDoubleSeconds(clock.Now() - *run.last_checkpoint) < min_interval;
  if (!last && (completed % every != 0 || too_soon)) return false;
  FEDSIM_ASSIGN_OR_RETURN(
      const std::string path,
      WriteCheckpoint(run.log->dir(), MakeCheckpointData(run, report, summary, wall_time_s),
                      run.config.checkpoint().keep()));
  (void)path;
  run.last_checkpoint = clock.Now();
  return true;
}

}  // namespace fedsim
