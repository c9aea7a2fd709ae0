// File: server/coordinator/wall_engine.h
//
// Asynchronous FL on the wall clock (docs/async.md, "The wall clock"): the
// counterpart of AsyncEngine for `async.clock: wall`, driven by real
// arrivals instead of a simulated schedule. Every client always has one
// task in flight. A result accepted at time t (ticks of real time since the
// run started, async.ticks_per_unit per second) is an arrival for the
// scheme's AsyncScheduler (OnArrival); FedFix's window ends are its
// deadlines (NextDeadline / OnDeadline), taken before any arrival after
// them. A step aggregates its contributors' updates with the same
// AsyncAggregator as the virtual clock and restarts them from the new
// model at the step's time; clients not in the step keep computing.
//
// Weights of the `weight` variants are estimated online, since the real
// task times are not known in advance: tau_i is the mean of client i's
// observed task times (issue to arrival; a client without a finished task
// takes the mean over those with one), and FedBuff's f_i the fraction of
// the steps so far (this one included) that included client i. The weights
// a step used are in its `async_step` record.
//
// Steps are taken inside SubmitResult / AdvanceTo (cheap: one weighted sum
// of the contributors' updates); their evaluation and logging are left to
// TakeSteps' caller, which may run them without the caller's lock
// (FinishStepReport touches nothing but the report and const inputs).
//
// Thread safety: not thread-safe; callers serialise all calls except
// FinishStepReport, which may run concurrently with the others.
#ifndef FEDSIM_SERVER_COORDINATOR_WALL_ENGINE_H_
#define FEDSIM_SERVER_COORDINATOR_WALL_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/runlog/run_log.h"
#include "nlohmann/json.hpp"
#include "server/clock/virtual_clock.h"
#include "server/coordinator/async_engine.h"
#include "server/coordinator/round_engine.h"
#include "server/strategy/async_fl.h"

namespace fedsim {

// AsyncEngineOptions (max_steps, evaluation, ticks_per_unit, local work,
// max_staleness, name) plus what the virtual clock's schedule and fixed
// weights held: ticks_per_unit is ticks per second here.
struct WallEngineOptions : AsyncEngineOptions {
  Tick horizon = -1;  // no step after this time; < 0: none
  // The weights (AsyncWeights' inputs, tau_i and f_i excepted).
  AsyncScheme scheme = AsyncScheme::kAsyncFedAvg;
  bool weight_variant = true;
  std::vector<double> importance_mass;
  std::int64_t window_ticks = 1;
  std::int64_t buffer_size = 1;
  bool staleness_scaling = false;
  double server_lr = 1.0;
};

struct WallTally {
  std::int64_t issued = 0, aggregated = 0, dropped = 0, rejected_pushes = 0,
               duplicate_pushes = 0, stale = 0, in_flight = 0;
};

// A step taken but not yet evaluated and logged, with what a checkpoint of
// it needs.
struct WallStepReport {
  MetricsRow row;                              // all but the evaluation
  std::shared_ptr<const FlatVector> model;     // the model the step made
  bool evaluate = false;
  nlohmann::json event;                        // its async_step record
  Tick tick = 0;                               // the step's run time
  std::int64_t next_task_id = 1;               // after the step's restarts
  WallTally tally;                             // after the step
};

class WallEngine {
 public:
  // `inputs.privacy` must be null. Every client's task 0 starts from
  // `initial` at time 0 (`first_version` and `first_task_id` > 1 when a run
  // resumes from a checkpoint: time 0 is then the checkpoint's time;
  // `first_task_id` is a sequence number, the ids carry
  // options.incarnation).
  // `resumed`: the counts so far (the tasks lost with the restart counted
  // as dropped).
  WallEngine(const WallEngineOptions& options, RoundEngineInputs inputs,
             std::unique_ptr<AsyncScheduler> scheduler, FlatVector initial,
             std::int64_t first_version = 0, std::int64_t first_task_id = 1,
             Tick time_offset = 0, const WallTally& resumed = {});

  WallEngine(const WallEngine&) = delete;
  WallEngine& operator=(const WallEngine&) = delete;

  // True after max_steps steps or once the horizon has passed.
  bool done() const { return done_; }
  std::int64_t version() const { return version_; }
  const FlatVector& model() const { return *model_; }
  std::shared_ptr<const FlatVector> shared_model() const { return model_; }
  const std::string& name() const { return options_.name; }
  std::int64_t next_task_id() const { return next_task_id_; }
  // The run's time in ticks at `now` ticks since this engine started.
  Tick RunTime(Tick now) const { return now + time_offset_; }

  // The tasks issued since the last call (at first: every client's task 0),
  // in client order.
  std::vector<Task> TakeNewTasks();

  // Takes every step due at or before `now` (FedFix windows; the horizon
  // ends the run). Ticks since the engine started; never decreasing.
  void AdvanceTo(Tick now);
  // The same for the steps due strictly before `now`: a window ending at
  // `now` stays open for results received at `now`.
  void AdvanceBefore(Tick now);
  // The tick of the next time-triggered step, if any (FedFix).
  std::optional<Tick> NextDeadline() const;

  // A result arrived at `now`: validated (errors as RoundEngine's:
  // kNotFound never issued, kFailedPrecondition not the client's open task
  // or the run has ended, kAlreadyExists duplicate, kInvalidArgument
  // malformed; rejections are logged) and handed to the scheduler, which
  // may take a step at once.
  absl::Status SubmitResult(ClientResult result, Tick now);

  // Gives up on open task `task` (its result was rejected, or no worker can
  // run it): the client counts as arrived without an update and restarts
  // with the step that includes it.
  void DropTask(TaskId task, const std::string& reason, Tick now);
  // Drops every task open for longer than `limit` ticks (a stalled client).
  void DropOverdue(Tick now, Tick limit);

  // True while `task` is a client's task in flight (no result yet).
  bool TaskOpen(TaskId task) const;

  // The steps taken since the last call, in order.
  std::vector<WallStepReport> TakeSteps();
  // Evaluates (if due) and writes the step's async_step event and metrics
  // row. Runs concurrently with the other methods.
  absl::StatusOr<MetricsRow> FinishStepReport(const WallStepReport& report,
                                              double wall_time_s) const;

  using Tally = WallTally;
  Tally tally() const {
    Tally t = tally_;
    t.in_flight = t.issued - t.aggregated - t.dropped;
    return t;
  }
  // The estimates behind the `weight` variants: tau_i in seconds (NaN for a
  // client with no finished task) and, for FedBuff, f_i.
  std::vector<double> MeanTaskSeconds() const;
  std::vector<double> StepFractions() const;

 private:
  enum class State { kComputing, kArrived, kDropped };
  struct ClientTask {
    TaskId id;
    std::int64_t task_index = 0;
    std::int64_t base_version = 0;
    Tick start = 0;
    Tick arrival = 0;
    State state = State::kComputing;
    std::shared_ptr<const FlatVector> params;
    std::optional<ClientResult> result;
  };

  // Takes the steps due before `now` (and at `now` if `inclusive`).
  void Advance(Tick now, bool inclusive);
  void Issue(std::int64_t client, std::int64_t task_index, Tick now);
  void Arrive(std::int64_t client, Tick now);
  void TakeStep(Tick time, const std::vector<ClientId>& clients);
  std::vector<double> Weights() const;
  absl::Status Reject(const ClientResult& r, absl::Status status, bool task_open);
  void LogEvent(const nlohmann::json& event) const;

  WallEngineOptions options_;
  RoundEngineInputs in_;
  std::unique_ptr<AsyncScheduler> scheduler_;
  AsyncAggregator aggregator_;
  std::shared_ptr<const FlatVector> model_;
  std::int64_t version_ = 0;
  std::int64_t steps_taken_ = 0;  // by this engine (f_i's denominator)
  std::int64_t next_task_id_ = 1;
  Tick time_offset_ = 0;
  Tick last_now_ = 0;
  std::vector<ClientTask> current_;
  std::map<std::int64_t, std::int64_t> open_ids_;  // task id -> client, while computing
  std::vector<std::int64_t> last_accepted_;  // per client: its previous aggregated task id
  std::vector<double> duration_sum_;          // per client: observed task ticks
  std::vector<std::int64_t> durations_;       // per client: how many
  std::vector<std::int64_t> steps_with_;      // per client: steps that included it
  std::vector<Task> new_tasks_;
  std::vector<WallStepReport> steps_;
  std::int64_t issued_since_last_step_ = 0;
  Tick next_eval_time_ = 0;
  bool done_ = false;
  Tally tally_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_WALL_ENGINE_H_
