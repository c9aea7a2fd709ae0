#include "runtime/embedded.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "absl/time/clock.h"
#include "client/worker/task_runner.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

// Asynchronous algorithms on the virtual clock: each step's contributors
// train in parallel (their tasks are independent: each starts from the
// model version it was given), then the step aggregates in client order.
absl::StatusOr<RunSummary> RunEmbeddedAsync(CoordinatorRun& run,
                                            const ProgressFn& progress) {
  const absl::Time start = absl::Now();
  const v1::ExperimentConfig& config = run.config;
  const Experiment& exp = *run.experiment;
  AsyncEngine& engine = *run.async_engine;
  const int threads = config.runtime().threads();
  RunSummary summary;
  summary.out_dir = run.log->dir();
  summary.best_accuracy = run.resumed_best_accuracy;
  // Run time includes the time before a restart (a resumed run).
  const auto elapsed = [&] {
    return run.resumed_wall_time_s + absl::ToDoubleSeconds(absl::Now() - start);
  };
  while (!engine.done()) {
    const std::vector<Task> tasks = engine.BeginStep();
    std::vector<std::optional<absl::StatusOr<ClientResult>>> results(tasks.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      results[i] = RunTask(exp, config.seed(), tasks[i], nullptr);
    }
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (!results[i]->ok()) {
        engine.DropTask(tasks[i].id, std::string(results[i]->status().message()));
        continue;
      }
      // A rejected update (INVALID_ARGUMENT: NaN, norm bound, ...) is
      // logged and counted by the engine; the round goes on without it.
      if (absl::Status s = engine.SubmitResult(*std::move(*results[i]));
          absl::IsInvalidArgument(s)) {
        engine.DropTask(tasks[i].id, std::string(s.message()));
      } else {
        FEDSIM_RETURN_IF_ERROR(s);
      }
    }
    FEDSIM_ASSIGN_OR_RETURN(MetricsRow row, engine.FinishStep(elapsed()));
    summary.Record(row);
    FEDSIM_RETURN_IF_ERROR(MaybeCheckpoint(run, summary, row.wall_time_s));
    if (progress) progress(row, ProgressTotal(run, row));
  }
  summary.rounds = engine.version();
  summary.wall_time_s = elapsed();
  FEDSIM_RETURN_IF_ERROR(CompleteRun(run, summary.wall_time_s));
  return summary;
}

}  // namespace

absl::StatusOr<RunSummary> RunEmbedded(CoordinatorRun& run,
                                       const ProgressFn& progress) {
  if (run.async_engine != nullptr) return RunEmbeddedAsync(run, progress);
  if (run.wall_engine != nullptr) {
    return absl::FailedPreconditionError(
        "async.clock = wall runs on worker processes (fedsim launch or fedsim-server), "
        "not embedded");
  }
  const absl::Time start = absl::Now();
  const v1::ExperimentConfig& config = run.config;
  const Experiment& exp = *run.experiment;
  RoundEngine& engine = *run.engine;
  const int threads = config.runtime().threads();
  const bool stateful = ClientsKeepState(config);
  // Client-side state lives in the run (restored from a checkpoint when the
  // run resumes), as it would on the clients' own devices.
  std::map<std::int64_t, ClientState>& client_states = run.client_states;
  RunSummary summary;
  summary.out_dir = run.log->dir();
  summary.best_accuracy = run.resumed_best_accuracy;
  // Run time includes the time before a restart (a resumed run).
  const auto elapsed = [&] {
    return run.resumed_wall_time_s + absl::ToDoubleSeconds(absl::Now() - start);
  };

  while (!engine.done()) {
    const std::vector<Task> tasks = engine.BeginRound();
    std::vector<std::optional<absl::StatusOr<ClientResult>>> results(tasks.size());
    // Look the states up before the parallel loop: std::map nodes are
    // stable, and each task of a round has its own client.
    std::vector<ClientState*> states(tasks.size(), nullptr);
    if (stateful) {
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        states[i] = &client_states[tasks[i].client.value];
      }
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      results[i] = RunTask(exp, config.seed(), tasks[i], states[i]);
    }
    // Tasks are sorted by client id; submit in that order.
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (!results[i]->ok()) {
        engine.DropTask(tasks[i].id, std::string(results[i]->status().message()));
        continue;
      }
      // A rejected update (INVALID_ARGUMENT: NaN, norm bound, ...) is
      // logged and counted by the engine; the round goes on without it.
      if (absl::Status s = engine.SubmitResult(*std::move(*results[i]));
          absl::IsInvalidArgument(s)) {
        engine.DropTask(tasks[i].id, std::string(s.message()));
      } else {
        FEDSIM_RETURN_IF_ERROR(s);
      }
    }
    FEDSIM_ASSIGN_OR_RETURN(MetricsRow row, engine.FinishRound(elapsed()));
    summary.Record(row);
    FEDSIM_RETURN_IF_ERROR(MaybeCheckpoint(run, summary, row.wall_time_s));
    if (progress) progress(row, config.rounds());
  }
  summary.rounds = engine.round();
  summary.wall_time_s = elapsed();
  FEDSIM_RETURN_IF_ERROR(CompleteRun(run, summary.wall_time_s));
  return summary;
}

}  // namespace fedsim
