// File: server/coordinator/async_engine.h
//
// The asynchronous counterpart of RoundEngine (ALGORITHMS.md §4,
// docs/async.md): it owns the global model, its versions still in use, the
// schedule on the virtual clock and the aggregator, issues each client's
// tasks with the model version it started from, validates results,
// aggregates each step in client-id order, evaluates and logs. No clock of
// its own (the ScheduleRunner's virtual time is a value), no threads, no
// transport.
//
// A step: BeginStep() -> SubmitResult()* / DropTask()* -> FinishStep().
// The tasks BeginStep returns are the step's contributors' tasks, started
// earlier (at their start times, from their base versions); training them
// only now is invisible, because a task's result depends on nothing but its
// parameters, its client and its task index.
//
// Thread safety: not thread-safe; callers serialise all calls.
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
#include "server/coordinator/round_engine.h"
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

class AsyncEngine {
 public:
  // `inputs.privacy` must be null (no DP in asynchronous runs).
  AsyncEngine(const AsyncEngineOptions& options, RoundEngineInputs inputs,
              std::unique_ptr<ScheduleRunner> schedule,
              std::unique_ptr<AsyncAggregator> aggregator, FlatVector initial);

  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // True after max_steps steps or when the horizon has no further step.
  bool done() const { return !next_.has_value(); }
  // Steps finished so far (= the current version).
  std::int64_t version() const { return version_; }
  const FlatVector& model() const { return *model_; }
  const std::string& name() const { return options_.name; }
  // The step BeginStep will open. REQUIRES: !done().
  const ScheduledStep& next_step() const { return *next_; }

  // Opens the next step and returns its contributors' tasks (sorted by
  // client). REQUIRES: !done() && no step open.
  std::vector<Task> BeginStep();

  // Accepts the result of one of the open step's tasks after validating it
  // (errors as RoundEngine::SubmitResult; rejections are logged).
  absl::Status SubmitResult(ClientResult result);

  // Gives up on an open task (its client failed): it is left out of the
  // step; the client restarts with the others.
  void DropTask(TaskId task, const std::string& reason);

  // True while task `id` of the open step has neither a result nor was
  // dropped (the distributed coordinator's view of the step).
  bool TaskOpen(TaskId id) const;
  // True when every task of the open step has a result or was dropped.
  bool AllTasksResolved() const;

  // Aggregates the accepted results in client-id order, restarts the
  // contributors from the new model, evaluates on evaluation steps and
  // writes a metrics row and an `async_step` event.
  absl::StatusOr<MetricsRow> FinishStep(double wall_time_s);

  struct Tally {
    std::int64_t issued = 0, aggregated = 0, dropped = 0, rejected_pushes = 0,
                 duplicate_pushes = 0;
    // Of `dropped`: updates staler than max_staleness.
    std::int64_t stale = 0;
    // Tasks still computing (issued = aggregated + dropped + in_flight
    // between steps).
    std::int64_t in_flight = 0;
  };
  Tally tally() const {
    Tally t = tally_;
    t.in_flight = t.issued - t.aggregated - t.dropped;
    return t;
  }

  // What a checkpoint needs to continue bit-identically: the step reached,
  // the current model and every older version a task in flight started
  // from, task ids and counts. The schedule, the tasks' indices and base
  // versions and the evaluation times are functions of the config: a
  // restored engine replays the schedule to the same position. The
  // aggregator keeps no state between steps.
  struct Snapshot {
    std::int64_t version = 0;
    FlatVector model;
    std::int64_t next_task_id = 1;
    Tally tally;
    std::map<std::int64_t, FlatVector> versions;  // base version -> model
  };
  // REQUIRES: no step open.
  Snapshot TakeSnapshot() const;
  // Continues from `snapshot`, taken from an engine built from the same
  // config. REQUIRES: a fresh engine. kInvalidArgument, naming what does
  // not fit, if the schedule, the model size or the versions disagree.
  absl::Status RestoreSnapshot(const Snapshot& snapshot);

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
  // Counts and logs a rejected push. `task_open`: the push was for an open
  // task, which the rejection ends (always logged); otherwise the event is
  // rate limited (RunLog::LimitedEvent).
  absl::Status Reject(const ClientResult& r, absl::Status status, bool task_open = true);
  void LogEvent(const nlohmann::json& event);
  void Prefetch();
  // FinishStep's bookkeeping after the aggregation: every contributor of
  // `step` restarts from `params` (the new model), the next step is
  // fetched, and the evaluation time moves on. Returns whether this is an
  // evaluation step.
  bool AdvanceAfter(const ScheduledStep& step,
                    std::shared_ptr<const FlatVector> params);

  AsyncEngineOptions options_;
  RoundEngineInputs in_;
  std::unique_ptr<ScheduleRunner> schedule_;
  std::unique_ptr<AsyncAggregator> aggregator_;
  std::shared_ptr<const FlatVector> model_;
  std::int64_t version_ = 0;
  std::int64_t next_task_id_ = 1;
  std::vector<ClientTask> current_;            // per client: its task in flight
  std::optional<ScheduledStep> next_;          // the next step of the schedule
  std::optional<ScheduledStep> open_step_;     // the step being collected
  std::map<std::int64_t, State> open_;         // open step's tasks by client
  std::map<std::int64_t, ClientResult> results_;  // accepted, by client
  std::int64_t issued_since_last_step_ = 0;
  Tick next_eval_time_ = 0;
  Tally tally_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_ASYNC_ENGINE_H_
