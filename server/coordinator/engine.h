// File: server/coordinator/engine.h
//
// The one interface of the run's state machine, implemented by the round
// engine (synchronous rounds), the virtual-clock engine (asynchronous steps
// on a simulated schedule) and the wall-clock engine (asynchronous steps
// driven by real arrivals). The embedded runtime and the distributed
// coordinator drive any of them the same way:
//
//   while (!engine.done()) {
//     tasks = engine.TakeTasks();        // hand them to clients
//     ... engine.Submit(result, now) / engine.Drop(task, reason, now) ...
//     ... until engine.ReadyToClose() (or a deadline) ...
//     for (report : engine.Close()) engine.Publish(report, wall_time_s);
//   }
//
// What every engine shares lives here: the task tally, the snapshot a
// checkpoint holds, the intake of a result (the checks after an engine's
// own classification of the task: Byzantine attack, size, finiteness, n_k,
// the algorithm's extra check, the norm bound) with its rejection events,
// and the evaluation and logging of a closed round or step (Publish).
//
// Thread safety: not thread-safe; callers serialise all calls, except
// Publish, which is const and touches only the report and the engine's
// constant inputs, so it may run concurrently with the others (the
// distributed coordinator evaluates without its lock).
#ifndef FEDSIM_SERVER_COORDINATOR_ENGINE_H_
#define FEDSIM_SERVER_COORDINATOR_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/dp/privacy_ledger.h"
#include "common/objectives/objective.h"
#include "common/runlog/run_log.h"
#include "nlohmann/json.hpp"
#include "server/clock/virtual_clock.h"
#include "server/coordinator/validate_update.h"
#include "server/participation/participation.h"
#include "server/strategy/byzantine.h"

namespace fedsim {

enum class EngineKind {
  kRounds = 0,        // synchronous rounds (RoundEngine)
  kVirtualClock = 1,  // asynchronous steps on the virtual clock (AsyncEngine)
  kWallClock = 2,     // asynchronous steps on the wall clock (WallEngine)
};

// Counts over the whole run, for the reconciliation of run_end
// (RELIABILITY 25): every issued task ends exactly once, so
//   issued == aggregated + timed_out + dropped + cancelled + in_flight().
struct TaskTally {
  std::int64_t issued = 0;
  std::int64_t aggregated = 0;
  // Rounds: open at the round deadline.
  std::int64_t timed_out = 0;
  // Ended without an aggregated update: rejected, given up on, never
  // answered (virtual clock), staler than async.max_staleness (`stale`
  // counts these again).
  std::int64_t dropped = 0;
  // Rounds: a valid result of a round that then failed (quorum not
  // reached, a robust rule with too few results).
  std::int64_t cancelled = 0;
  std::int64_t stale = 0;
  std::int64_t rejected_pushes = 0;
  std::int64_t duplicate_pushes = 0;
  // Asynchronous engines: tasks still computing.
  std::int64_t in_flight() const {
    return issued - aggregated - timed_out - dropped - cancelled;
  }
};

// Everything a checkpoint needs to continue an engine bit-identically
// (RELIABILITY 8). Strategies, participation models and schedules are
// otherwise functions of (config, seed, round): nothing else is needed.
struct EngineSnapshot {
  EngineKind kind = EngineKind::kRounds;
  // Rounds (steps) completed: the next one's index.
  std::int64_t next_round = 0;
  FlatVector model;
  // The next task's sequence number (MakeTaskId).
  std::int64_t next_task_id = 1;
  TaskTally tally;
  // Rounds: the state of the strategy, the participation model and the
  // privacy ledger (local DP steps per client; empty without DP).
  bool budget_spent = false;
  std::string strategy_state;
  ParticipationState participation;
  std::vector<std::int64_t> privacy_steps;
  // Virtual clock: the older model versions tasks in flight started from.
  std::map<std::int64_t, FlatVector> versions;
  // Wall clock: the run time of the step in ticks.
  Tick wall_tick = 0;
};

// A round or step the engine closed: aggregated, not yet evaluated or
// logged (Engine::Publish does that).
struct StepReport {
  // Every field but the evaluation, wall_time_s and model_hash.
  MetricsRow row;
  // The model the round or step made.
  std::shared_ptr<const FlatVector> model;
  // Evaluate the model on the test (and training) set.
  bool evaluate = false;
  // The round_end / async_step record, without model_hash (and, with
  // event_wall_time, without wall_time_s).
  nlohmann::json event;
  bool event_wall_time = false;
  // Records written after `event` (privacy_budget_spent).
  std::vector<nlohmann::json> events_after;
  // Wall clock: the engine's snapshot at this step (it goes on taking
  // steps while earlier ones are published).
  std::optional<EngineSnapshot> snapshot;
};

// What an engine reads of the experiment; every pointer must outlive it.
struct EngineInputs {
  const Objective* objective = nullptr;         // null: no loss evaluation
  // The rows train_loss is computed on: the training set, or its sample
  // (eval.train_rows), then owned by train_sample.
  const Dataset* train = nullptr;
  std::shared_ptr<const Dataset> train_sample;
  const Dataset* test = nullptr;
  std::vector<std::int64_t> client_sizes;       // n_k
  std::optional<FlatVector> optimum;            // for dist_to_opt
  RunLog* log = nullptr;                        // may be null (tests)
  // Local DP (§5.5; rounds only): per-client accounting, null without DP.
  // Every accepted result charges its client num_steps local steps; a task
  // that never returned charges its planned steps (the client may have run
  // them).
  std::shared_ptr<PrivacyLedger> privacy;
  // > 0: the run ends cleanly before a round that could take some client
  // past this epsilon (PrivacyLedger::MaxEpsilonAfterOneMoreTask).
  double epsilon_budget = 0.0;
  // aggregation.max_update_norm / norm_bound_action (validate_update.h).
  UpdateValidation validation;
  // Simulated Byzantine clients (config `adversary`); null: none. Applied
  // to a result as it arrives, before validation.
  std::shared_ptr<const Adversary> adversary;
};

// How Publish evaluates.
struct EvalOptions {
  bool train_loss = true;  // also the loss on EngineInputs::train
  int threads = 1;
};

class Engine {
 public:
  virtual ~Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  virtual EngineKind kind() const = 0;
  // The algorithm's display name ("FedAvg", "FedFix").
  virtual std::string name() const = 0;
  // True once the run has no further round or step.
  virtual bool done() const = 0;
  // Rounds (steps) closed so far.
  virtual std::int64_t steps_done() const = 0;
  // The current global model.
  virtual const FlatVector& model() const = 0;
  const TaskTally& tally() const { return tally_; }

  // The tasks to hand out now, sorted by client id:
  //   rounds: opens the next round (REQUIRES: !done(), no round open);
  //   virtual clock: opens the next step and returns its contributors'
  //     tasks, issued when they started (REQUIRES: !done(), none open);
  //   wall clock: the tasks issued since the last call (restarts).
  virtual std::vector<Task> TakeTasks() = 0;

  // A result, arriving at `now` (ticks of the wall clock; ignored by the
  // others). Errors, each also written to events.jsonl:
  //   kAborted            the task id is of an earlier incarnation
  //   kNotFound           the task id was never issued
  //   kFailedPrecondition the task is not open (stale, given up on, or
  //                       the run has ended)
  //   kAlreadyExists      a result for this task was already accepted
  //                       (not logged: pushes are idempotent)
  //   kInvalidArgument    wrong client, size, NaN/Inf, n_k, an
  //                       algorithm-specific field, or over the norm bound
  //                       (norm_bound_action = reject: the task then ends)
  virtual absl::Status Submit(ClientResult result, Tick now) = 0;
  // Gives up on an open task (its client failed); logged with `reason`.
  // Nothing happens for a task that is not open.
  virtual void Drop(TaskId task, const std::string& reason, Tick now) = 0;
  // True while `task` may still take a result.
  virtual bool TaskOpen(TaskId task) const = 0;

  // True when Close would close something: every task of the open round
  // (step) resolved, a round's quorum unreachable, a wall-clock step taken.
  virtual bool ReadyToClose() const = 0;
  // Closes the open round (virtual-clock step): unresolved tasks time out
  // or are dropped, the results are aggregated in client-id order. The
  // wall clock: the steps taken since the last call. Returns them in order.
  virtual absl::StatusOr<std::vector<StepReport>> Close() = 0;

  // The wall clock: takes the steps due at `now` (FedFix windows ending
  // strictly before it; the horizon) and gives up on tasks open longer than
  // `overdue_after` ticks. The others ignore time.
  virtual void AdvanceTo(Tick /*now*/, Tick /*overdue_after*/) {}
  // The wall clock: the tick of the next time-triggered step (FedFix).
  virtual std::optional<Tick> NextDeadline() const { return std::nullopt; }

  // REQUIRES: no round or step open.
  virtual EngineSnapshot Snapshot() const = 0;
  // Continues from `snapshot`, taken from an engine built from the same
  // config. REQUIRES: a fresh engine. kInvalidArgument, naming what does
  // not fit (kind, model size, strategy state, schedule, versions).
  virtual absl::Status Restore(const EngineSnapshot& snapshot) = 0;

  // Adds the engine's own fields to the run_end record (the privacy
  // ledger's ε; the wall clock's estimated task times).
  virtual void AddRunEndFields(nlohmann::json& /*run_end*/) const {}

  // Evaluates the report's model if due, and writes its event, the events
  // after it and its metrics row. Returns the row. Thread safety: see the
  // file comment.
  absl::StatusOr<MetricsRow> Publish(const StepReport& report, double wall_time_s) const;

 protected:
  Engine(EngineInputs inputs, EvalOptions eval, std::int64_t incarnation);

  // Writes `event` (a lost line is reported on stderr; the run goes on).
  void LogEvent(const nlohmann::json& event) const;

  // Counts and logs a rejected push. `unit_key` is "round" or "step", the
  // key the record names `unit` under. `task_open`: the push was for an
  // open task, which the rejection ends (always logged); otherwise the
  // event is rate limited per status code (RunLog::LimitedEvent).
  absl::Status Reject(const ClientResult& r, absl::Status status, bool task_open,
                      const char* unit_key, std::int64_t unit);

  // The first check of every push (CheckTaskIssued): this incarnation's
  // task, with a sequence number issued so far.
  absl::Status CheckIssued(const ClientResult& r, const char* unit_key,
                           std::int64_t unit);

  // The intake of a result for an open task, after the engine's own
  // classification, in this order: the simulated attack (inputs.adversary),
  // CheckUpdate (size, finiteness, n_k), `extra` (an algorithm's own check;
  // may be null), the norm bound (a refusal also drops the task), then
  // clipping or zeroing under the norm bound (update_clipped /
  // update_zeroed). OK: the caller accepts `r`.
  absl::Status Admit(ClientResult& r, const char* unit_key, std::int64_t unit,
                     Tick now,
                     const std::function<absl::Status(const ClientResult&)>& extra);

  const EngineInputs in_;
  const EvalOptions eval_;
  const std::int64_t incarnation_;
  std::int64_t next_task_id_ = 1;  // the next task's sequence number
  TaskTally tally_;
};

// The wall-time-free part of evaluating `model`: the test loss and accuracy
// and the training loss (with options.train_loss) into `row` when
// `inputs.objective` is set, dist_to_opt when the optimum is known, and
// model_hash. Both runtimes and every engine evaluate through this.
void EvaluateInto(const EngineInputs& inputs, const EvalOptions& options,
                  const FlatVector& model, bool evaluate, MetricsRow& row);

// The clients' mean training loss of a round or step, weighted by n_k,
// accumulated in the order the results are added (client-id order).
struct ClientLossMean {
  double loss_weighted = 0.0, examples = 0.0;
  void Add(const ClientResult& r) {
    loss_weighted += r.train_loss * static_cast<double>(r.num_examples);
    examples += static_cast<double>(r.num_examples);
  }
  // NaN without any result.
  double Mean() const { return examples > 0 ? loss_weighted / examples : NAN; }
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_ENGINE_H_
