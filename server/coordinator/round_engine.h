// File: server/coordinator/round_engine.h
//
// The synchronous round engine (Engine, kRounds), shared by both runtimes.
// It owns the global model, the participation model and the strategy;
// each round it asks the participation model who takes part, has the
// strategy plan their tasks, validates and collects results, and
// aggregates them in client-id order. It knows nothing of transports,
// threads or clocks.
//
// A round: TakeTasks() -> Submit()* / Drop()* -> Close() -> Publish().
//
// Quorum (RELIABILITY 1; the distributed runtime): fewer valid results than
// min(min_quorum, tasks issued) fail the round: round_failed, the model and
// the strategy state unchanged, the accepted results cancelled. A robust
// rule with too few results fails the round the same way
// (aggregation_failed).
//
// Thread safety: not thread-safe (see engine.h).
#ifndef FEDSIM_SERVER_COORDINATOR_ROUND_ENGINE_H_
#define FEDSIM_SERVER_COORDINATOR_ROUND_ENGINE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/coordinator/engine.h"
#include "server/participation/participation.h"
#include "server/strategy/strategy.h"

namespace fedsim {

// local.lr_schedule (config.proto): the learning rate of round r of
// `rounds`, from the configured lr.
struct LrSchedule {
  enum class Kind { kConstant, kStep, kCosine };
  Kind kind = Kind::kConstant;
  std::int64_t step_rounds = 1;
  double gamma = 0.1;
  double lr_min = 0.0;
  double LrAt(double lr, Round r, std::int64_t rounds) const {
    switch (kind) {
      case Kind::kStep:
        return lr * std::pow(gamma, static_cast<double>(r / step_rounds));
      case Kind::kCosine:
        return lr_min + (lr - lr_min) * 0.5 *
                            (1.0 + std::cos(M_PI * static_cast<double>(r) /
                                            static_cast<double>(std::max<std::int64_t>(rounds, 1))));
      case Kind::kConstant:
        break;
    }
    return lr;
  }
};

struct RoundEngineOptions {
  std::uint64_t seed = 1;
  std::int64_t rounds = 1;
  int eval_every = 1;          // evaluate every k rounds and after the last
  bool eval_train_loss = true; // also evaluate on the whole training set
  int eval_threads = 1;
  // The quorum (see the file comment); 0 disables it (the embedded
  // runtime, where tasks cannot be lost).
  int min_quorum = 0;
  // The run's incarnation (types.h, MakeTaskId): 0 for a fresh run, the
  // checkpoint's plus one for a resumed one. Task ids carry it.
  std::int64_t incarnation = 0;
  // local.lr_schedule: the factor of every task's lr in round r.
  LrSchedule lr_schedule;
};

class RoundEngine : public Engine {
 public:
  RoundEngine(const RoundEngineOptions& options, EngineInputs inputs,
              std::unique_ptr<ParticipationModel> participation,
              std::unique_ptr<SyncStrategy> strategy, FlatVector initial);

  EngineKind kind() const override { return EngineKind::kRounds; }
  std::string name() const override { return std::string(strategy_->name()); }
  // True once `rounds` rounds have finished, or the privacy budget stopped
  // the run.
  bool done() const override { return round_ >= options_.rounds || budget_spent_; }
  std::int64_t steps_done() const override { return round_; }
  const FlatVector& model() const override { return *model_; }

  // Plans round round() and returns its tasks, sorted by client id, with
  // fresh task ids. REQUIRES: !done() && !round_open().
  std::vector<Task> TakeTasks() override;
  // Errors as Engine::Submit; kInvalidArgument also when the strategy's
  // CheckResult refuses the result (SCAFFOLD's control_delta missing, of
  // the wrong size or not finite; a control_delta sent to another
  // algorithm). A Byzantine client's update (inputs.adversary) is attacked
  // first.
  absl::Status Submit(ClientResult result, Tick now) override;
  void Drop(TaskId task, const std::string& reason, Tick now) override;
  bool TaskOpen(TaskId task) const override;
  // Every task resolved, or the quorum unreachable.
  bool ReadyToClose() const override { return AllTasksResolved() || !QuorumReachable(); }
  // Closes the open round: unresolved tasks time out, the privacy ledger is
  // charged, the quorum is checked, the accepted results are aggregated.
  // One report.
  absl::StatusOr<std::vector<StepReport>> Close() override;

  EngineSnapshot Snapshot() const override;
  absl::Status Restore(const EngineSnapshot& snapshot) override;
  // tasks_cancelled and the reconciliation; the `dp` block with local DP.
  void AddRunEndFields(nlohmann::json& run_end) const override;

  // The current (or next) round.
  Round round() const { return round_; }
  bool round_open() const { return round_open_; }
  const SyncStrategy& strategy() const { return *strategy_; }
  // True when the run stopped early because of local.dp.epsilon_budget.
  bool budget_spent() const { return budget_spent_; }
  // Null without DP.
  const PrivacyLedger* privacy() const { return in_.privacy.get(); }
  // True when every task of the open round has a result or was dropped.
  bool AllTasksResolved() const;
  // False once so many tasks of the open round were dropped (rejected
  // results, dead workers with no one to re-issue to) that even if every
  // open task returned, the round could not reach its quorum.
  bool QuorumReachable() const;
  // The quorum of the open round: min(min_quorum, tasks issued); 0 when
  // the check is disabled.
  std::int64_t RoundQuorum() const;

 private:
  enum class TaskState { kOpen, kDone, kDropped };
  struct OpenTask {
    ClientId client;
    TaskState state = TaskState::kOpen;
    int extra_vectors = 0;  // ExtraVectors(task): bytes_down
  };

  RoundEngineOptions options_;
  std::unique_ptr<ParticipationModel> participation_;
  std::unique_ptr<SyncStrategy> strategy_;
  std::shared_ptr<FlatVector> model_;
  Round round_ = 0;
  bool round_open_ = false;
  std::int64_t first_task_of_round_ = 1;
  bool budget_spent_ = false;
  std::map<std::int64_t, OpenTask> open_;       // this round's tasks by id
  std::map<std::int64_t, ClientResult> results_; // accepted, keyed by client id
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_ROUND_ENGINE_H_
