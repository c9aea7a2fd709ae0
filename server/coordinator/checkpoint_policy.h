// File: server/coordinator/checkpoint_policy.h
//
// When a run writes a checkpoint (docs/checkpoint.md): after every
// checkpoint.every rounds (steps), not within checkpoint.min_interval_s of
// the previous one, and always after the run's last step; and what it holds
// (checkpoint.h).
#ifndef FEDSIM_SERVER_COORDINATOR_CHECKPOINT_POLICY_H_
#define FEDSIM_SERVER_COORDINATOR_CHECKPOINT_POLICY_H_

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/engine.h"
#include "server/coordinator/progress.h"
#include "server/coordinator/run.h"

namespace fedsim {

// The checkpoint of the run after `report`: the report's snapshot (wall
// clock) or the engine's. REQUIRES: no round or step open, but on the wall
// clock.
CheckpointData MakeCheckpointData(const CoordinatorRun& run, const StepReport& report,
                                  const RunSummary& summary, double wall_time_s);

// Called after a round or step was published (`report`): calls
// run.before_checkpoint, then writes a checkpoint when one is due (`last`:
// the run's last step, always written). `wall_time_s` is the run time so
// far, including time before a restart; `clock` measures min_interval_s.
// Returns whether it wrote one; kDataLoss if writing failed.
absl::StatusOr<bool> MaybeCheckpoint(CoordinatorRun& run, const StepReport& report,
                                     bool last, const RunSummary& summary,
                                     double wall_time_s, Clock& clock);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_CHECKPOINT_POLICY_H_
