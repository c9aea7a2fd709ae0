#include "runtime/embedded.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <vector>

#include "algorithms/registry.h"
#include "common/base/status_macros.h"
#include "server/coordinator/drive.h"

namespace fedsim {
namespace {

// Runs a round's (step's) tasks in this process: in parallel on
// runtime.threads OpenMP threads, each into its own result slot, then
// submitted in client-id order, so the run is the same on any thread count.
class LocalExecutor : public TaskExecutor {
 public:
  absl::StatusOr<ClosedSteps> Step(CoordinatorRun& run) override {
    Engine& engine = *run.engine;
    const Experiment& exp = *run.experiment;
    const std::uint64_t seed = run.config.seed();
    const int threads = run.config.runtime().threads();
    FEDSIM_ASSIGN_OR_RETURN(const Algorithm* algorithm,
                            FindAlgorithm(run.config.algorithm().name()));
    const std::vector<Task> tasks = engine.TakeTasks();
    std::vector<std::optional<absl::StatusOr<ClientResult>>> results(tasks.size());
    // Client-side state lives in the run (restored from a checkpoint when
    // the run resumes), as it would on the clients' own devices. Looked up
    // before the parallel loop: std::map nodes are stable, and each task of
    // a round has its own client.
    std::vector<ClientState*> states(tasks.size(), nullptr);
    if (ClientsKeepState(run.config)) {
      for (std::size_t i = 0; i < tasks.size(); ++i) {
        states[i] = &run.client_states[tasks[i].client.value];
      }
    }
    // Largest clients first (longest processing time first): with dynamic
    // scheduling a large client drawn last would otherwise leave the other
    // threads idle at the end of the round (Dirichlet sizes vary tenfold).
    // Each result lands at its task's index, so the order of execution
    // changes no result.
    std::vector<std::size_t> order(tasks.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    const auto size_of = [&](std::size_t i) {
      const std::int64_t k = tasks[i].client.value;
      return k >= 0 && k < exp.num_clients() ? exp.client_sizes[static_cast<std::size_t>(k)] : 0;
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return size_of(a) > size_of(b); });
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
    for (std::size_t n = 0; n < order.size(); ++n) {
      const std::size_t i = order[n];
      results[i] = RunTask(*algorithm, exp, seed, tasks[i], states[i]);
    }
    // Tasks are sorted by client id; submit in that order.
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (!results[i]->ok()) {
        engine.Drop(tasks[i].id, std::string(results[i]->status().message()), 0);
        continue;
      }
      // A rejected update (INVALID_ARGUMENT: NaN, norm bound, ...) is
      // logged and counted by the engine; the round goes on without it.
      if (absl::Status s = engine.Submit(*std::move(*results[i]), 0);
          absl::IsInvalidArgument(s)) {
        engine.Drop(tasks[i].id, std::string(s.message()), 0);
      } else {
        FEDSIM_RETURN_IF_ERROR(s);
      }
    }
    ClosedSteps closed;
    FEDSIM_ASSIGN_OR_RETURN(closed.reports, engine.Close());
    closed.done = engine.done();
    return closed;
  }

  void Published(CoordinatorRun& run, const StepReport& report,
                 std::shared_ptr<const CheckpointData> /*unsaved*/) override {
    run.steps_logged = report.row.round + 1;
  }
};

}  // namespace

absl::StatusOr<RunSummary> RunEmbedded(CoordinatorRun& run, const ProgressFn& progress) {
  if (run.engine->kind() == EngineKind::kWallClock) {
    return absl::FailedPreconditionError(
        "async.clock = wall runs on worker processes (fedsim launch or fedsim-server), "
        "not embedded");
  }
  LocalExecutor executor;
  DriveOptions options;
  options.progress = progress;
  return Drive(run, executor, options);
}

}  // namespace fedsim
