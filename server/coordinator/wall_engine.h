// File: server/coordinator/wall_engine.h
//
// Asynchronous FL on the wall clock (docs/async.md, "The wall clock"): the
// counterpart of AsyncEngine for `async.clock: wall`, driven by real
// arrivals instead of a simulated schedule. Every client always has one
// task in flight. A result accepted at time t (ticks of real time since the
// run started, async.ticks_per_unit per second) is an arrival for the
// scheme's AsyncScheduler (OnArrival); FedFix's window ends are its
// deadlines (NextDeadline / OnDeadline), taken before any arrival after
// them. Engine, kWallClock. A step aggregates its contributors' updates with the same
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
// Steps are taken inside Submit / Drop / AdvanceTo (cheap: one weighted sum
// of the contributors' updates); Close hands them out with the snapshot a
// checkpoint of each needs, and their evaluation and logging (Publish) may
// run without the caller's lock while results keep coming.
//
// Thread safety: not thread-safe (see engine.h).
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
#include "server/strategy/async_fl.h"

namespace fedsim {

// AsyncEngineOptions (max_steps, evaluation, ticks_per_unit, local work,
// max_staleness, name, incarnation) plus what the virtual clock's schedule
// and fixed weights held: ticks_per_unit is ticks per second here.
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

class WallEngine : public Engine {
 public:
  // `inputs.privacy` must be null. Every client's task 0 starts from
  // `initial` at time 0.
  WallEngine(const WallEngineOptions& options, EngineInputs inputs,
             std::unique_ptr<AsyncScheduler> scheduler, FlatVector initial);

  EngineKind kind() const override { return EngineKind::kWallClock; }
  std::string name() const override { return options_.name; }
  // True after max_steps steps or once the horizon has passed.
  bool done() const override { return done_; }
  std::int64_t steps_done() const override { return version_; }
  const FlatVector& model() const override { return *model_; }

  // The tasks issued since the last call (at first: every client's task 0),
  // in client order.
  std::vector<Task> TakeTasks() override;
  // A result arrived at `now` (ticks since this engine started; never
  // decreasing): validated (errors as Engine::Submit; kFailedPrecondition
  // also once the run has ended) and handed to the scheduler, which may
  // take a step at once. Windows that ended before `now` close first.
  absl::Status Submit(ClientResult result, Tick now) override;
  // Gives up on open task `task` (its result was rejected, or no worker can
  // run it): the client counts as arrived without an update and restarts
  // with the step that includes it.
  void Drop(TaskId task, const std::string& reason, Tick now) override;
  // True while `task` is a client's task in flight (no result yet).
  bool TaskOpen(TaskId task) const override;
  // A step was taken and not yet closed.
  bool ReadyToClose() const override { return !steps_.empty(); }
  // The steps taken since the last call, in order, each with its snapshot.
  absl::StatusOr<std::vector<StepReport>> Close() override;
  // Takes the steps due strictly before `now` (a window ending at `now`
  // stays open for results received at `now`) and gives up on the tasks
  // open longer than `overdue_after` ticks (a stalled client).
  void AdvanceTo(Tick now, Tick overdue_after) override;
  // The tick of the next time-triggered step, if any (FedFix).
  std::optional<Tick> NextDeadline() const override;

  // The engine now: version, model, task ids, tally, run time. A
  // checkpoint takes the snapshot of a step (StepReport::snapshot).
  EngineSnapshot Snapshot() const override;
  // Continues from a step's snapshot: its model, version, task ids, counts
  // (the tasks in flight at the restart counted as dropped) and run time;
  // every client restarts, with task index = the version (past every index
  // whose result was aggregated, so it draws fresh batches).
  absl::Status Restore(const EngineSnapshot& snapshot) override;
  // tasks_stale_dropped, tasks_in_flight and the estimates behind the
  // `weight` variants (mean_task_time, step_fraction).
  void AddRunEndFields(nlohmann::json& run_end) const override;

  std::int64_t version() const { return version_; }
  // The run's time in ticks at `now` ticks since this engine started.
  Tick RunTime(Tick now) const { return now + time_offset_; }
  // Takes every step due at or before `now` (inclusive: a window ending at
  // `now` closes).
  void AdvanceThrough(Tick now);
  // The same for the steps due strictly before `now`.
  void AdvanceBefore(Tick now);
  // Drops every task open for longer than `limit` ticks.
  void DropOverdue(Tick now, Tick limit);
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

  // Every client's next task from the current model at `now`.
  void IssueAll(std::int64_t task_index, Tick now);
  // Takes the steps due before `now` (and at `now` if `inclusive`).
  void Advance(Tick now, bool inclusive);
  void Issue(std::int64_t client, std::int64_t task_index, Tick now);
  void Arrive(std::int64_t client, Tick now);
  void TakeStep(Tick time, const std::vector<ClientId>& clients);
  std::vector<double> Weights() const;

  WallEngineOptions options_;
  std::unique_ptr<AsyncScheduler> scheduler_;
  AsyncAggregator aggregator_;
  std::shared_ptr<const FlatVector> model_;
  std::int64_t version_ = 0;
  std::int64_t steps_taken_ = 0;  // by this engine (f_i's denominator)
  Tick time_offset_ = 0;
  Tick last_now_ = 0;
  std::vector<ClientTask> current_;
  std::map<std::int64_t, std::int64_t> open_ids_;  // task id -> client, while computing
  std::vector<std::int64_t> last_accepted_;  // per client: its previous aggregated task id
  std::vector<double> duration_sum_;          // per client: observed task ticks
  std::vector<std::int64_t> durations_;       // per client: how many
  std::vector<std::int64_t> steps_with_;      // per client: steps that included it
  std::vector<Task> new_tasks_;
  std::vector<StepReport> steps_;
  std::int64_t issued_since_last_step_ = 0;
  AsyncEvalSchedule eval_schedule_;
  bool done_ = false;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_WALL_ENGINE_H_
