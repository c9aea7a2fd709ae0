// File: server/coordinator/async_engine.h
//
// Asynchronous FL on the virtual clock (ALGORITHMS.md §4, docs/async.md):
// AsyncEngine, and what both clocks' engines share (the evaluation schedule,
// the stale_update record).
#ifndef FEDSIM_SERVER_COORDINATOR_ASYNC_ENGINE_H_
#define FEDSIM_SERVER_COORDINATOR_ASYNC_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/runlog/run_log.h"
#include "server/clock/schedule.h"
#include "server/coordinator/engine.h"
#include "server/strategy/async_fl.h"

namespace fedsim {

struct AsyncEngineOptions {
  std::int64_t max_steps = 1;     // `rounds`
  int eval_every = 1;             // evaluate every k steps and after the last
  Tick eval_interval = 0;         // > 0: instead, at the first step at or after every multiple
  bool eval_train_loss = true;
  int eval_threads = 1;
  std::int64_t ticks_per_unit = 1;
  LocalTrainingSpec local;        // every task's local work
  // async.max_staleness: > 0: an update staler than this is not aggregated
  // (stale_update, counted as dropped); 0: unbounded.
  std::int64_t max_staleness = 0;
  std::string name;               // the algorithm's display name
  // The run's incarnation, carried by task ids (RoundEngineOptions).
  std::int64_t incarnation = 0;
};

// When an asynchronous run evaluates (both clocks): after its last step,
// and, with an interval > 0, at the first step at or after every multiple
// of it (run time in ticks), else every `every` steps.
class AsyncEvalSchedule {
 public:
  // `start`: the run time the schedule starts at (a resumed wall-clock run).
  AsyncEvalSchedule(int every, Tick interval, Tick start = 0);
  // Whether step `version` (0-based), taken at run time `time`, evaluates;
  // `last`: the run has no further step.
  bool Due(std::int64_t version, Tick time, bool last);

 private:
  int every_;
  Tick interval_;
  Tick next_time_ = 0;
};

// Writes a stale_update record (an update past async.max_staleness).
nlohmann::json StaleUpdateEvent(std::int64_t step, TaskId task, std::int64_t client,
                                std::int64_t base_version, std::int64_t max_staleness);

// The asynchronous counterpart of RoundEngine (Engine, kVirtualClock;
// ALGORITHMS.md §4, docs/async.md): it owns the global model, its versions
// still in use, the schedule on the virtual clock and the aggregator,
// issues each client's tasks with the model version it started from,
// validates results and aggregates each step in client-id order. No clock
// of its own (the ScheduleRunner's virtual time is a value), no threads,
// no transport.
//
// A step: TakeTasks() -> Submit()* / Drop()* -> Close() -> Publish(). The
// tasks TakeTasks returns are the step's contributors' tasks, started
// earlier (at their start times, from their base versions); training them
// only now is invisible, because a task's result depends on nothing but its
// parameters, its client and its task index.
//
// Thread safety: not thread-safe (see engine.h).
class AsyncEngine : public Engine {
 public:
  // `inputs.privacy` must be null (no DP in asynchronous runs).
  AsyncEngine(const AsyncEngineOptions& options, EngineInputs inputs,
              std::unique_ptr<ScheduleRunner> schedule,
              std::unique_ptr<AsyncAggregator> aggregator, FlatVector initial);

  EngineKind kind() const override { return EngineKind::kVirtualClock; }
  std::string name() const override { return options_.name; }
  // True after max_steps steps or when the horizon has no further step.
  bool done() const override { return !next_.has_value(); }
  std::int64_t steps_done() const override { return version_; }
  const FlatVector& model() const override { return *model_; }

  // Opens the next step and returns its contributors' tasks (sorted by
  // client). REQUIRES: !done() && no step open.
  std::vector<Task> TakeTasks() override;
  absl::Status Submit(ClientResult result, Tick now) override;
  // The task is left out of the step; the client restarts with the others.
  void Drop(TaskId task, const std::string& reason, Tick now) override;
  bool TaskOpen(TaskId task) const override;
  // Every task of the open step has a result or was dropped.
  bool ReadyToClose() const override;
  // Aggregates the accepted results in client-id order and restarts the
  // contributors from the new model. One report.
  absl::StatusOr<std::vector<StepReport>> Close() override;

  // The step reached, the current model and every older version a task in
  // flight started from, task ids and counts. The schedule, the tasks'
  // indices and base versions and the evaluation times are functions of
  // the config: Restore replays the schedule to the same position.
  EngineSnapshot Snapshot() const override;
  absl::Status Restore(const EngineSnapshot& snapshot) override;
  // tasks_stale_dropped and tasks_in_flight.
  void AddRunEndFields(nlohmann::json& run_end) const override;

  // Steps finished so far (= the current version).
  std::int64_t version() const { return version_; }
  // The step TakeTasks will open. REQUIRES: !done().
  const ScheduledStep& next_step() const { return *next_; }

 private:
  struct ClientTask {
    TaskId id;
    std::int64_t task_index = 0;
    std::int64_t base_version = 0;
    std::shared_ptr<const FlatVector> params;
  };
  enum class State { kOpen, kDone, kDropped };

  void Issue(std::int64_t client, std::int64_t task_index,
             std::shared_ptr<const FlatVector> params);
  void Prefetch();
  // Close's bookkeeping after the aggregation: every contributor of `step`
  // restarts from `params` (the new model), the next step is fetched, and
  // the evaluation time moves on. Returns whether this is an evaluation
  // step.
  bool AdvanceAfter(const ScheduledStep& step, std::shared_ptr<const FlatVector> params);

  AsyncEngineOptions options_;
  std::unique_ptr<ScheduleRunner> schedule_;
  std::unique_ptr<AsyncAggregator> aggregator_;
  std::shared_ptr<const FlatVector> model_;
  std::int64_t version_ = 0;
  std::vector<ClientTask> current_;            // per client: its task in flight
  std::optional<ScheduledStep> next_;          // the next step of the schedule
  std::optional<ScheduledStep> open_step_;     // the step being collected
  std::map<std::int64_t, State> open_;         // open step's tasks by client
  std::map<std::int64_t, ClientResult> results_;  // accepted, by client
  std::int64_t issued_since_last_step_ = 0;
  AsyncEvalSchedule eval_schedule_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_ASYNC_ENGINE_H_
