// File: server/coordinator/checkpoint_policy.h
//
// When a run writes a checkpoint (docs/checkpoint.md): after every
// checkpoint.every rounds (steps), not within checkpoint.min_interval_s of
// the previous one, and always after the run's last step; and what it holds
// (checkpoint.h).
#ifndef FEDSIM_SERVER_COORDINATOR_CHECKPOINT_POLICY_H_
#define FEDSIM_SERVER_COORDINATOR_CHECKPOINT_POLICY_H_

#include <cstdint>

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

// The largest checkpoint `run` can write must fit in one protobuf message
// (2 GiB): the model, the strategy's state (FedVARP and MIFA keep N d
// values) and every client's state at its full layout. With checkpoints on
// (checkpoint.every > 0), kInvalidArgument with one line naming the sizes
// when it would not, so that the run fails before it computes anything.
// Rounds only (the asynchronous engines keep at most a model per client).
// `limit`: tests pass a small one.
inline constexpr std::int64_t kMaxCheckpointBytes =
    (std::int64_t{1} << 31) - (std::int64_t{1} << 26);
absl::Status CheckCheckpointSize(const CoordinatorRun& run,
                                 std::int64_t limit = kMaxCheckpointBytes);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_CHECKPOINT_POLICY_H_
