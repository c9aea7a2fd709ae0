#include "server/coordinator/drive.h"

#include <utility>

#include "common/base/status_macros.h"

namespace fedsim {

absl::StatusOr<RunSummary> Drive(CoordinatorRun& run, TaskExecutor& executor,
                                 const DriveOptions& options) {
  Clock& clock = *options.clock;
  const absl::Time start =
      options.start == absl::InfinitePast() ? clock.Now() : options.start;
  RunSummary summary;
  summary.out_dir = run.log->dir();
  summary.best_accuracy = run.resumed_best_accuracy;
  // Run time includes the time before a restart (a resumed run).
  const auto elapsed = [&] {
    return run.resumed_wall_time_s + absl::ToDoubleSeconds(clock.Now() - start);
  };
  // A run whose last steps were taken without being due for a checkpoint
  // (the wall clock's horizon ends a run between steps) writes the last one
  // it published at the end.
  std::shared_ptr<const CheckpointData> last_unsaved;
  bool done = run.engine->done();
  while (!done) {
    FEDSIM_ASSIGN_OR_RETURN(ClosedSteps closed, executor.Step(run));
    done = closed.done;
    for (std::size_t i = 0; i < closed.reports.size(); ++i) {
      const StepReport& report = closed.reports[i];
      FEDSIM_ASSIGN_OR_RETURN(MetricsRow row, run.engine->Publish(report, elapsed()));
      summary.Record(row);
      const bool last = done && i + 1 == closed.reports.size();
      FEDSIM_ASSIGN_OR_RETURN(const bool written,
                              MaybeCheckpoint(run, report, last, summary, row.wall_time_s, clock));
      std::shared_ptr<const CheckpointData> unsaved;
      // (Kept with checkpoint.every = 0 too: a graceful stop saves it.)
      if (!written && (options.keep_unsaved || report.snapshot.has_value())) {
        unsaved = std::make_shared<const CheckpointData>(
            MakeCheckpointData(run, report, summary, row.wall_time_s));
      }
      // Rounds and virtual-clock steps always checkpoint their last step.
      if (report.snapshot.has_value()) last_unsaved = unsaved;
      executor.Published(run, report, options.keep_unsaved ? unsaved : nullptr);
      if (options.progress) options.progress(row, ProgressTotal(run, row));
    }
  }
  if (last_unsaved != nullptr && run.config.checkpoint().every() > 0) {
    FEDSIM_ASSIGN_OR_RETURN(const std::string path,
                            WriteCheckpoint(run.log->dir(), *last_unsaved,
                                            run.config.checkpoint().keep()));
    (void)path;
  }
  executor.Finish(run);
  summary.rounds = CompletedRounds(run);
  summary.wall_time_s = elapsed();
  FEDSIM_RETURN_IF_ERROR(CompleteRun(run, summary.wall_time_s));
  return summary;
}

}  // namespace fedsim
