// File: server/coordinator/drive.h
//
// The one drive loop of a run, shared by the embedded runtime and the
// distributed coordinator, which differ only in how tasks are executed
// (TaskExecutor): in this process on OpenMP threads, or by worker
// processes that pull them over gRPC.
//
//   while the engine is not done:
//     reports = executor.Step(run)        // tasks out, results in, closed
//     for each report:
//       row = engine.Publish(report)      // evaluation, events, metrics row
//       checkpoint if due (MaybeCheckpoint)
//       executor.Published(report, ...)  // bookkeeping of the runtime
//       progress(row)
//   executor.Finish(run); CompleteRun(run)  // model.bin, run_end
//
// Publish runs outside the executor's synchronisation, so the coordinator
// keeps taking results while a round or step is evaluated.
#ifndef FEDSIM_SERVER_COORDINATOR_DRIVE_H_
#define FEDSIM_SERVER_COORDINATOR_DRIVE_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/checkpoint_policy.h"
#include "server/coordinator/engine.h"
#include "server/coordinator/progress.h"
#include "server/coordinator/run.h"

namespace fedsim {

// What one TaskExecutor::Step closed.
struct ClosedSteps {
  std::vector<StepReport> reports;  // in order
  // The engine was done when they were closed (read under the executor's
  // synchronisation: the wall-clock engine moves on concurrently).
  bool done = false;
};

class TaskExecutor {
 public:
  virtual ~TaskExecutor() = default;

  // Has the engine's open work done and returns what the engine closed:
  // takes its tasks, has them run, feeds the results back (Submit, or Drop
  // for a client that failed) until the engine is ready to close (or the
  // executor's deadline passes), then closes. Errors end the run:
  // kCancelled when it was stopped (a resumed run continues it).
  virtual absl::StatusOr<ClosedSteps> Step(CoordinatorRun& run) = 0;

  // After `report` was published and, if due, checkpointed: records that
  // its step is logged (run.steps_logged) and, when `unsaved` is set (the
  // checkpoint of this step was not written and DriveOptions::keep_unsaved
  // asked for it), keeps it for a checkpoint on a graceful stop.
  virtual void Published(CoordinatorRun& run, const StepReport& report,
                         std::shared_ptr<const CheckpointData> unsaved) = 0;

  // The run is over (before CompleteRun): no more tasks.
  virtual void Finish(CoordinatorRun& /*run*/) {}
};

struct DriveOptions {
  Clock* clock = Clock::Real();
  // When the run started (elapsed times count from it; plus the run time
  // before a restart). Default: when Drive starts.
  absl::Time start = absl::InfinitePast();
  ProgressFn progress;
  // Pass Published the checkpoint data of every step whose checkpoint was
  // not written (the distributed coordinator saves it on a graceful stop).
  bool keep_unsaved = false;
};

// Drives `run` to its end with `executor`, writes model.bin and run_end.
// Returns the summary, or the first error (kCancelled on a stop).
absl::StatusOr<RunSummary> Drive(CoordinatorRun& run, TaskExecutor& executor,
                                 const DriveOptions& options);

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_DRIVE_H_
