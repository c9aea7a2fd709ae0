#include "server/coordinator/round_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "common/kernels/vector_ops.h"
#include "server/coordinator/evaluator.h"

namespace fedsim {

RoundEngine::RoundEngine(const RoundEngineOptions& options, EngineInputs inputs,
                         std::unique_ptr<ParticipationModel> participation,
                         std::unique_ptr<SyncStrategy> strategy, FlatVector initial)
    : Engine(std::move(inputs), EvalOptions{options.eval_train_loss, options.eval_threads},
             options.incarnation),
      options_(options),
      participation_(std::move(participation)),
      strategy_(std::move(strategy)),
      model_(std::make_shared<FlatVector>(std::move(initial))) {
  FEDSIM_CHECK(in_.train != nullptr && in_.test != nullptr && strategy_ != nullptr &&
               participation_ != nullptr);
}

std::vector<Task> RoundEngine::TakeTasks() {
  FEDSIM_CHECK(!done() && !round_open_);
  const std::vector<ClientId> participants = participation_->Participants(round_);
  std::vector<TaskSpec> specs = strategy_->Plan(round_, participants);
  // Tasks share one immutable copy of the round's parameters.
  auto params = std::make_shared<const FlatVector>(*model_);
  open_.clear();
  results_.clear();
  first_task_of_round_ = next_task_id_;
  std::vector<Task> tasks;
  tasks.reserve(specs.size());
  for (const TaskSpec& spec : specs) {
    Task t;
    t.id = MakeTaskId(incarnation_, next_task_id_++);
    t.round = round_;
    t.client = spec.client;
    t.params = params;
    t.local = spec.local;
    t.local.lr = options_.lr_schedule.LrAt(spec.local.lr, round_, options_.rounds);
    t.scaffold = spec.scaffold;
    t.scafflsa = spec.scafflsa;
    open_[t.id.value] = OpenTask{t.client, TaskState::kOpen, ExtraVectors(t)};
    tasks.push_back(std::move(t));
  }
  tally_.issued += static_cast<std::int64_t>(tasks.size());
  round_open_ = true;
  return tasks;
}

absl::Status RoundEngine::Submit(ClientResult r, Tick now) {
  const std::int64_t id = r.task.value;
  FEDSIM_RETURN_IF_ERROR(CheckIssued(r, "round", round_));
  if (!round_open_ || TaskSequence(r.task) < first_task_of_round_) {
    return Reject(r,
                  absl::FailedPreconditionError(
                      absl::StrCat("task ", id, " belongs to a closed round (stale)")),
                  /*task_open=*/false, "round", round_);
  }
  OpenTask& task = open_.at(id);
  if (task.state == TaskState::kDone) {
    ++tally_.duplicate_pushes;
    return absl::AlreadyExistsError(absl::StrCat("task ", id, ": result already accepted"));
  }
  if (task.state == TaskState::kDropped) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat("task ", id, " was given up on")),
                  /*task_open=*/false, "round", round_);
  }
  if (r.client != task.client) {
    return Reject(r,
                  absl::InvalidArgumentError(absl::StrCat("task ", id, " was issued to client ",
                                                          task.client.value, ", not client ",
                                                          r.client.value)),
                  /*task_open=*/true, "round", round_);
  }
  FEDSIM_RETURN_IF_ERROR(Admit(r, "round", round_, now, [&](const ClientResult& result) {
    absl::Status s = strategy_->CheckResult(result);
    if (s.ok()) return s;
    return absl::Status(s.code(), absl::StrCat("round ", round_, ", client ",
                                               result.client.value, ": ", s.message()));
  }));
  task.state = TaskState::kDone;
  results_[r.client.value] = std::move(r);
  return absl::OkStatus();
}

void RoundEngine::Drop(TaskId id, const std::string& reason, Tick /*now*/) {
  auto it = open_.find(id.value);
  if (!round_open_ || it == open_.end() || it->second.state != TaskState::kOpen) return;
  it->second.state = TaskState::kDropped;
  ++tally_.dropped;
  LogEvent({{"event", "task_dropped"},
            {"round", round_},
            {"task", id.value},
            {"client", it->second.client.value},
            {"reason", reason}});
}

bool RoundEngine::AllTasksResolved() const {
  for (const auto& [id, task] : open_) {
    if (task.state == TaskState::kOpen) return false;
  }
  return true;
}

bool RoundEngine::TaskOpen(TaskId id) const {
  auto it = open_.find(id.value);
  return round_open_ && it != open_.end() && it->second.state == TaskState::kOpen;
}

std::int64_t RoundEngine::RoundQuorum() const {
  if (options_.min_quorum <= 0) return 0;
  return std::min<std::int64_t>(options_.min_quorum, static_cast<std::int64_t>(open_.size()));
}

bool RoundEngine::QuorumReachable() const {
  std::int64_t possible = 0;
  for (const auto& [id, task] : open_) {
    if (task.state != TaskState::kDropped) ++possible;
  }
  return possible >= RoundQuorum();
}

absl::StatusOr<std::vector<StepReport>> RoundEngine::Close() {
  FEDSIM_CHECK(round_open_);
  nlohmann::json timed_out = nlohmann::json::array();
  for (auto& [id, task] : open_) {
    if (task.state == TaskState::kOpen) {
      task.state = TaskState::kDropped;
      ++tally_.timed_out;
      timed_out.push_back(task.client.value);
      LogEvent({{"event", "task_timed_out"},
                {"round", round_},
                {"task", id},
                {"client", task.client.value}});
    }
  }
  // Privacy accounting before the results are consumed: accepted results
  // charge the steps they report, unresolved tasks their planned steps.
  if (in_.privacy != nullptr) {
    for (const auto& [client, r] : results_) in_.privacy->Charge(client, r.num_steps);
    for (const auto& [id, task] : open_) {
      if (task.state == TaskState::kDropped) {
        const std::int64_t k = task.client.value;
        in_.privacy->Charge(k, in_.privacy->options().steps_per_task[k]);
      }
    }
  }
  // Quorum (RELIABILITY 1): too few valid results fail the round. The
  // accepted results are cancelled, not aggregated; the model and the
  // strategy state stay as they were, and the next round is a new one.
  const std::int64_t quorum = RoundQuorum();
  bool failed = false;
  if (static_cast<std::int64_t>(results_.size()) < quorum) {
    failed = true;
    std::int64_t cancelled = 0;
    for (auto& [id, task] : open_) {
      if (task.state != TaskState::kDone) continue;
      task.state = TaskState::kDropped;
      ++tally_.cancelled;
      ++cancelled;
      LogEvent({{"event", "task_cancelled"},
                {"round", round_},
                {"task", id},
                {"client", task.client.value},
                {"reason", "round_failed: quorum not reached"}});
    }
    LogEvent({{"event", "round_failed"},
              {"round", round_},
              {"reason", absl::StrCat(results_.size(), " valid result(s) of ", open_.size(),
                                      " task(s); distributed.min_quorum = ",
                                      options_.min_quorum, " needs ", quorum)},
              {"valid_results", results_.size()},
              {"tasks", open_.size()},
              {"quorum", quorum},
              {"results_cancelled", cancelled},
              {"policy", "move_on"}});
    results_.clear();
  }
  std::vector<ClientResult> results;
  results.reserve(results_.size());
  ClientLossMean loss;
  for (auto& [client, r] : results_) {  // std::map: client-id order
    loss.Add(r);
    results.push_back(std::move(r));
  }
  // Aggregate into a fresh vector: tasks of this round may still hold the
  // old parameters through their shared pointer.
  AggregationReport aggregation;
  if (!failed) {
    auto next = std::make_shared<FlatVector>(*model_);
    FEDSIM_ASSIGN_OR_RETURN(aggregation, strategy_->Aggregate(round_, results, *next));
    if (!aggregation.failure.empty()) {
      // A robust rule had too few results: the model stays (next is a copy)
      // and, as when the quorum fails, the results are cancelled.
      std::fprintf(stderr, "warning: %s; the model is unchanged\n",
                   aggregation.failure.c_str());
      LogEvent({{"event", "aggregation_failed"},
                {"round", round_},
                {"results", results.size()},
                {"reason", aggregation.failure}});
      for (auto& [id, task] : open_) {
        if (task.state != TaskState::kDone) continue;
        task.state = TaskState::kDropped;
        ++tally_.cancelled;
        LogEvent({{"event", "task_cancelled"},
                  {"round", round_},
                  {"task", id},
                  {"client", task.client.value},
                  {"reason", absl::StrCat("aggregation_failed: ", aggregation.failure)}});
      }
      results.clear();
      loss = ClientLossMean();
    }
    model_ = std::move(next);
  }
  tally_.aggregated += static_cast<std::int64_t>(results.size());

  StepReport report;
  MetricsRow& row = report.row;
  row.round = round_;
  row.participants = static_cast<std::int64_t>(results.size());
  const auto payload = static_cast<std::int64_t>(model_->size() * sizeof(double));
  // The model, and the algorithm's vectors (SCAFFOLD's c, SCAFFLSA's
  // anchor) down; the update, and SCAFFOLD's Delta c_i, up.
  std::int64_t vectors_down = 0, vectors_up = 0;
  for (const auto& [id, task] : open_) vectors_down += 1 + task.extra_vectors;
  for (const ClientResult& r : results) vectors_up += r.control_delta.size() > 0 ? 2 : 1;
  row.bytes_down = payload * vectors_down;
  row.bytes_up = payload * vectors_up;
  row.client_loss = loss.Mean();
  if (in_.privacy != nullptr) {
    const PrivacyLedger::Summary eps = in_.privacy->Summarize();
    row.epsilon_max = eps.max;
    row.epsilon_mean = eps.mean;
    if (in_.epsilon_budget > 0.0 && round_ + 1 < options_.rounds) {
      const double worst_next = in_.privacy->MaxEpsilonAfterOneMoreTask();
      if (worst_next > in_.epsilon_budget) {
        budget_spent_ = true;
        report.events_after.push_back({{"event", "privacy_budget_spent"},
                                       {"round", round_},
                                       {"epsilon_max", eps.max},
                                       {"epsilon_max_after_next_round", worst_next},
                                       {"epsilon_budget", in_.epsilon_budget}});
      }
    }
  }
  const bool last = round_ + 1 >= options_.rounds || budget_spent_;
  report.evaluate = last || (round_ + 1) % options_.eval_every == 0;
  report.model = model_;
  nlohmann::json weights = nlohmann::json::array();
  for (const auto& [client, w] : aggregation.weights) {
    weights.push_back({{"client", client.value}, {"weight", w}});
  }
  report.event = {{"event", "round_end"},
                  {"round", round_},
                  {"participants", weights},
                  {"timed_out", timed_out}};
  round_open_ = false;
  open_.clear();
  results_.clear();
  ++round_;
  std::vector<StepReport> out;
  out.push_back(std::move(report));
  return out;
}

EngineSnapshot RoundEngine::Snapshot() const {
  FEDSIM_CHECK(!round_open_);
  EngineSnapshot s;
  s.kind = EngineKind::kRounds;
  s.next_round = round_;
  s.model = *model_;
  s.next_task_id = next_task_id_;
  s.tally = tally_;
  s.budget_spent = budget_spent_;
  s.strategy_state = strategy_->EncodeState();
  s.participation = participation_->SaveState();
  if (in_.privacy != nullptr) {
    for (std::int64_t k = 0; k < in_.privacy->num_clients(); ++k) {
      s.privacy_steps.push_back(in_.privacy->steps(k));
    }
  }
  return s;
}

absl::Status RoundEngine::Restore(const EngineSnapshot& s) {
  FEDSIM_CHECK(!round_open_ && round_ == 0 && next_task_id_ == 1);
  if (s.kind != EngineKind::kRounds) {
    return absl::InvalidArgumentError(
        "checkpoint: it is of an asynchronous run; the config's algorithm is synchronous");
  }
  if (s.model.size() != model_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: model has ", s.model.size(), " parameters; the run's has ",
        model_->size()));
  }
  if (s.next_round < 0 || s.next_round > options_.rounds || s.next_task_id < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: next_round = ", s.next_round, ", next_task_id = ", s.next_task_id,
        "; the run has ", options_.rounds, " rounds"));
  }
  const std::int64_t ledger_clients = in_.privacy == nullptr ? 0 : in_.privacy->num_clients();
  if (static_cast<std::int64_t>(s.privacy_steps.size()) != ledger_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: privacy steps for ", s.privacy_steps.size(),
        " clients; the run's ledger has ", ledger_clients));
  }
  for (std::int64_t steps : s.privacy_steps) {
    if (steps < 0) {
      return absl::InvalidArgumentError("checkpoint: a client has a negative privacy step count");
    }
  }
  FEDSIM_RETURN_IF_ERROR(strategy_->DecodeState(s.strategy_state));
  FEDSIM_RETURN_IF_ERROR(participation_->RestoreState(s.participation));
  for (std::size_t k = 0; k < s.privacy_steps.size(); ++k) {
    in_.privacy->Charge(static_cast<std::int64_t>(k), s.privacy_steps[k]);
  }
  model_ = std::make_shared<FlatVector>(s.model);
  round_ = s.next_round;
  next_task_id_ = s.next_task_id;
  first_task_of_round_ = s.next_task_id;
  tally_ = s.tally;
  budget_spent_ = s.budget_spent;
  return absl::OkStatus();
}

void RoundEngine::AddRunEndFields(nlohmann::json& end) const {
  const TaskTally& t = tally_;
  end["tasks_cancelled"] = t.cancelled;
  // RELIABILITY 25: every issued task ended exactly once: aggregated, timed
  // out, dropped (no valid result: rejected, worker dead, given up) or
  // cancelled (a valid result of a failed round).
  end["tasks_unreconciled"] = t.issued - t.aggregated - t.timed_out - t.dropped - t.cancelled;
  if (const PrivacyLedger* ledger = privacy(); ledger != nullptr) {
    const PrivacyLedger::Summary s = ledger->Summarize();
    std::vector<std::int64_t> steps;
    for (std::int64_t k = 0; k < ledger->num_clients(); ++k) steps.push_back(ledger->steps(k));
    end["dp"] = {{"epsilon_max", s.max},
                 {"epsilon_mean", s.mean},
                 {"delta", ledger->options().delta},
                 {"epsilon_per_client", ledger->Epsilons()},
                 {"steps_per_client", steps},
                 {"stopped_by_budget", budget_spent_}};
  }
}

}  // namespace fedsim
