// File: server/coordinator/round_engine.h
//
// The synchronous round state machine shared by both runtimes. It owns the
// global model and the strategy, issues tasks, validates and collects
// results, aggregates them in client-id order, evaluates the model and
// writes the run log. It knows nothing of transports, threads or clocks:
// the embedded runtime drives it directly, the distributed coordinator
// drives it from its round thread, and the caller passes the wall time in.
//
// A round: BeginRound() -> SubmitResult()* / DropTask()* -> FinishRound().
//
// Thread safety: not thread-safe; callers serialise all calls.
#ifndef FEDSIM_SERVER_COORDINATOR_ROUND_ENGINE_H_
#define FEDSIM_SERVER_COORDINATOR_ROUND_ENGINE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/dp/privacy_ledger.h"
#include "common/objectives/objective.h"
#include "common/runlog/run_log.h"
#include "server/coordinator/validate_update.h"
#include "server/participation/participation.h"
#include "server/strategy/byzantine.h"
#include "server/strategy/strategy.h"

namespace fedsim {

struct RoundEngineOptions {
  std::uint64_t seed = 1;
  std::int64_t rounds = 1;
  int eval_every = 1;          // evaluate every k rounds and after the last
  bool eval_train_loss = true; // also evaluate on the whole training set
  int eval_threads = 1;
  // Fewer valid results than min(min_quorum, tasks issued) fail the round:
  // round_failed, the model and the strategy state are left unchanged, the
  // accepted results are cancelled (dropped), and the run moves on to the
  // next round. 0 disables the check (the embedded runtime).
  int min_quorum = 0;
  // The run's incarnation (types.h, MakeTaskId): 0 for a fresh run, the
  // checkpoint's plus one for a resumed one. Task ids carry it.
  std::int64_t incarnation = 0;
};

// What the engine needs from the experiment; all pointers must outlive it.
struct RoundEngineInputs {
  const Objective* objective = nullptr;         // null: no loss evaluation
  const Dataset* train = nullptr;
  const Dataset* test = nullptr;
  std::vector<std::int64_t> client_sizes;       // n_k
  std::optional<FlatVector> optimum;            // for dist_to_opt
  RunLog* log = nullptr;                        // may be null (tests)
  // Local DP (§5.5): per-client accounting, null without DP. Every accepted
  // result charges its client num_steps local steps; a task that never
  // returned charges its planned steps (the client may have run them).
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

class RoundEngine {
 public:
  RoundEngine(const RoundEngineOptions& options, RoundEngineInputs inputs,
              std::unique_ptr<ParticipationModel> participation,
              std::unique_ptr<SyncStrategy> strategy, FlatVector initial);

  RoundEngine(const RoundEngine&) = delete;
  RoundEngine& operator=(const RoundEngine&) = delete;

  // True once `rounds` rounds have finished, or the privacy budget stopped
  // the run.
  bool done() const { return round_ >= options_.rounds || budget_spent_; }
  // True when the run stopped early because of local.dp.epsilon_budget.
  bool budget_spent() const { return budget_spent_; }
  // Null without DP.
  const PrivacyLedger* privacy() const { return in_.privacy.get(); }
  // The current (or next) round.
  Round round() const { return round_; }
  bool round_open() const { return round_open_; }
  const FlatVector& model() const { return *model_; }
  const SyncStrategy& strategy() const { return *strategy_; }

  // Plans round round() and returns its tasks, sorted by client id, with
  // fresh task ids. REQUIRES: !done() && !round_open().
  std::vector<Task> BeginRound();

  // Accepts the result of an open task after validating it. Errors:
  //   kAborted            the task id is of another incarnation of the run
  //                       (issued before the coordinator restarted)
  //   kNotFound           the task id was never issued
  //   kFailedPrecondition the task belongs to a closed round (stale), or was
  //                       dropped or timed out
  //   kAlreadyExists      a result for this task was already accepted
  //   kInvalidArgument    wrong client, wrong update size, NaN/Inf values,
  //                       num_examples different from the client's n_k, an
  //                       update norm above aggregation.max_update_norm
  //                       (norm_bound_action = reject), or
  //                       a control_delta (SCAFFOLD) missing where the task
  //                       sent a server control variate, present where it
  //                       did not, of the wrong size or not finite
  // Every rejection is also written to events.jsonl with its reason. A
  // Byzantine client's update (inputs.adversary) is attacked first; an
  // accepted update over the norm bound is clipped or zeroed (logged as
  // update_clipped / update_zeroed).
  absl::Status SubmitResult(ClientResult result);

  // Gives up on an open task (its client failed); logged with `reason`.
  void DropTask(TaskId task, const std::string& reason);

  // True when every task of the open round has a result or was dropped.
  bool AllTasksResolved() const;
  // True while task `id` of the open round has neither a result nor was
  // dropped.
  bool TaskOpen(TaskId id) const;

  // False once so many tasks of the open round were dropped (rejected
  // results, dead workers with no one to re-issue to) that even if every
  // open task returned, the round could not reach its quorum: the caller
  // should finish the round at once instead of waiting for the deadline.
  bool QuorumReachable() const;
  // The quorum of the open round: min(min_quorum, tasks issued); 0 when
  // the check is disabled.
  std::int64_t RoundQuorum() const;

  // Closes the round: unresolved tasks are marked timed out, accepted
  // results are aggregated in client-id order, the model is evaluated (on
  // evaluation rounds) and a metrics row and a round_end event are written.
  absl::StatusOr<MetricsRow> FinishRound(double wall_time_s);

  // Counts over the whole run, for the reconciliation check (RELIABILITY 25):
  // issued == aggregated + timed_out + dropped + cancelled. `dropped`: the
  // task ended without a valid result (rejected, given up on); `cancelled`:
  // a valid result accepted in a round that then failed (quorum not
  // reached, or a robust rule with too few results), so not aggregated.
  struct Tally {
    std::int64_t issued = 0, aggregated = 0, timed_out = 0, dropped = 0,
                 rejected_pushes = 0, duplicate_pushes = 0, cancelled = 0;
  };
  const Tally& tally() const { return tally_; }

  // Everything the engine carries from one round to the next, for a
  // coordinator checkpoint (RELIABILITY 8): the model, the round, task ids,
  // counts, and the state of the strategy, the participation model and the
  // privacy ledger. Strategies, participation models and ledgers are
  // otherwise functions of (config, seed, round): nothing else is needed to
  // continue bit-identically.
  struct Snapshot {
    Round next_round = 0;
    FlatVector model;
    std::int64_t next_task_id = 1;  // the next task's sequence number
    Tally tally;
    bool budget_spent = false;
    std::string strategy_state;
    ParticipationState participation;
    std::vector<std::int64_t> privacy_steps;  // empty without DP
  };
  // REQUIRES: !round_open().
  Snapshot TakeSnapshot() const;
  // Continues from `snapshot`, taken from an engine built from the same
  // config. REQUIRES: a fresh engine (round() == 0, no round opened yet).
  // Fails with kInvalidArgument, naming what does not fit, if the model
  // size, the strategy or participation state or the ledger do not match.
  absl::Status RestoreSnapshot(const Snapshot& snapshot);

 private:
  enum class TaskState { kOpen, kDone, kDropped };
  struct OpenTask {
    ClientId client;
    TaskState state = TaskState::kOpen;
    bool expects_control = false;  // SCAFFOLD: a control_delta must come back
    bool sends_control = false;    // server_control went down with the task
  };

  // Counts and logs a rejected push. `task_open`: the push was for an open
  // task, which the rejection ends (always logged); otherwise the event is
  // rate limited (RunLog::LimitedEvent).
  absl::Status Reject(const ClientResult& r, absl::Status status, bool task_open = true);
  void LogEvent(nlohmann::json event);

  RoundEngineOptions options_;
  RoundEngineInputs in_;
  std::unique_ptr<ParticipationModel> participation_;
  std::unique_ptr<SyncStrategy> strategy_;
  std::shared_ptr<FlatVector> model_;
  Round round_ = 0;
  bool round_open_ = false;
  std::int64_t next_task_id_ = 1;          // sequence numbers (MakeTaskId)
  std::int64_t first_task_of_round_ = 1;
  bool budget_spent_ = false;
  std::map<std::int64_t, OpenTask> open_;       // this round's tasks by id
  std::map<std::int64_t, ClientResult> results_; // accepted, keyed by client id
  Tally tally_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_ROUND_ENGINE_H_
