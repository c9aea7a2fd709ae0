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

RoundEngine::RoundEngine(const RoundEngineOptions& options,
                         RoundEngineInputs inputs,
                         std::unique_ptr<ParticipationModel> participation,
                         std::unique_ptr<SyncStrategy> strategy,
                         FlatVector initial)
    : options_(options),
      in_(std::move(inputs)),
      participation_(std::move(participation)),
      strategy_(std::move(strategy)),
      model_(std::make_shared<FlatVector>(std::move(initial))) {
  FEDSIM_CHECK(in_.train != nullptr &&
               in_.test != nullptr && strategy_ != nullptr &&
               participation_ != nullptr);
}

void RoundEngine::LogEvent(nlohmann::json event) {
  if (in_.log == nullptr) return;
  // A lost event line is reported but does not stop the run: the metrics
  // and the model are what the run is for.
  if (absl::Status s = in_.log->Event(event); !s.ok()) {
    std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
  }
}

std::vector<Task> RoundEngine::BeginRound() {
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
    t.id = MakeTaskId(options_.incarnation, next_task_id_++);
    t.round = round_;
    t.client = spec.client;
    t.params = params;
    t.local = spec.local;
    t.server_control = spec.server_control;
    t.scaffold_option = spec.scaffold_option;
    t.anchor_round = spec.anchor_round;
    open_[t.id.value] =
        OpenTask{t.client, TaskState::kOpen,
                 t.scaffold_option != ScaffoldOption::kNone,
                 t.server_control != nullptr};
    tasks.push_back(std::move(t));
  }
  tally_.issued += static_cast<std::int64_t>(tasks.size());
  round_open_ = true;
  return tasks;
}

absl::Status RoundEngine::Reject(const ClientResult& r, absl::Status status,
                                 bool task_open) {
  ++tally_.rejected_pushes;
  if (in_.log == nullptr) return status;
  const std::string code = absl::StatusCodeToString(status.code());
  const nlohmann::json event = {{"event", "result_rejected"},
                                {"round", round_},
                                {"task", r.task.value},
                                {"client", r.client.value},
                                {"code", code},
                                {"reason", std::string(status.message())}};
  // The rejection of an open task's result ends the task: at most one per
  // task, always written. Pushes for unknown, stale or given-up tasks can
  // come at will: rate limited per status code (RunLog::LimitedEvent); the
  // tally counts every one.
  absl::Status logged = task_open ? in_.log->Event(event)
                                  : in_.log->LimitedEvent(absl::StrCat("result_rejected ", code),
                                                          event);
  if (!logged.ok()) std::fprintf(stderr, "warning: %s\n", std::string(logged.message()).c_str());
  return status;
}

absl::Status RoundEngine::SubmitResult(ClientResult r) {
  const std::int64_t id = r.task.value;
  if (absl::Status s = CheckTaskIssued(r.task, options_.incarnation, next_task_id_); !s.ok()) {
    return Reject(r, std::move(s), /*task_open=*/false);
  }
  if (!round_open_ || TaskSequence(r.task) < first_task_of_round_) {
    return Reject(r,
                  absl::FailedPreconditionError(
                      absl::StrCat("task ", id, " belongs to a closed round (stale)")),
                  /*task_open=*/false);
  }
  OpenTask& task = open_.at(id);
  if (task.state == TaskState::kDone) {
    ++tally_.duplicate_pushes;
    return absl::AlreadyExistsError(
        absl::StrCat("task ", id, ": result already accepted"));
  }
  if (task.state == TaskState::kDropped) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat("task ", id, " was given up on")),
                  /*task_open=*/false);
  }
  if (r.client != task.client) {
    return Reject(r, absl::InvalidArgumentError(absl::StrCat(
                         "task ", id, " was issued to client ",
                         task.client.value, ", not client ", r.client.value)));
  }
  if (in_.adversary != nullptr) {
    in_.adversary->Apply(r.client.value, round_, r.update);
  }
  const std::int64_t n_k = in_.client_sizes[r.client.value];
  const std::string where = absl::StrCat("round ", round_);
  if (absl::Status s = CheckUpdate(where, r, static_cast<std::int64_t>(model_->size()), n_k);
      !s.ok()) {
    return Reject(r, std::move(s));
  }
  if (task.expects_control != (r.control_delta.size() > 0)) {
    return Reject(r, absl::InvalidArgumentError(absl::StrCat(
                         "round ", round_, ", client ", r.client.value,
                         task.expects_control
                             ? ": the result has no control_delta (SCAFFOLD needs one)"
                             : ": the result has a control_delta the task did not ask for")));
  }
  if (task.expects_control && r.control_delta.size() != model_->size()) {
    return Reject(r, absl::InvalidArgumentError(absl::StrCat(
                         "round ", round_, ", client ", r.client.value,
                         ": control_delta has ", r.control_delta.size(),
                         " values, expected ", model_->size())));
  }
  if (task.expects_control && !AllFinite(r.control_delta)) {
    return Reject(r, absl::InvalidArgumentError(absl::StrCat(
                         "round ", round_, ", client ", r.client.value,
                         ": control_delta has NaN or infinite values")));
  }
  if (absl::Status s = CheckNormBound(in_.validation, where, r); !s.ok()) {
    // Final (the same push would fail again): the task closes now, so the
    // round does not wait for its deadline.
    const TaskId task_id = r.task;
    absl::Status rejected = Reject(r, std::move(s));
    DropTask(task_id, std::string(rejected.message()));
    return rejected;
  }
  if (const NormBoundOutcome nb = ApplyNormBound(in_.validation, r.update); nb.changed) {
    LogEvent({{"event", in_.validation.action == NormBoundAction::kZero
                            ? "update_zeroed"
                            : "update_clipped"},
              {"round", round_},
              {"task", r.task.value},
              {"client", r.client.value},
              {"norm", nb.norm},
              {"max_update_norm", in_.validation.max_update_norm}});
  }
  task.state = TaskState::kDone;
  results_[r.client.value] = std::move(r);
  return absl::OkStatus();
}

void RoundEngine::DropTask(TaskId id, const std::string& reason) {
  auto it = open_.find(id.value);
  if (!round_open_ || it == open_.end() ||
      it->second.state != TaskState::kOpen) {
    return;
  }
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
  return std::min<std::int64_t>(options_.min_quorum,
                                static_cast<std::int64_t>(open_.size()));
}

bool RoundEngine::QuorumReachable() const {
  std::int64_t possible = 0;
  for (const auto& [id, task] : open_) {
    if (task.state != TaskState::kDropped) ++possible;
  }
  return possible >= RoundQuorum();
}

absl::StatusOr<MetricsRow> RoundEngine::FinishRound(double wall_time_s) {
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
    for (const auto& [client, r] : results_) {
      in_.privacy->Charge(client, r.num_steps);
    }
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
              {"reason", absl::StrCat(results_.size(), " valid result(s) of ",
                                      open_.size(), " task(s); distributed.min_quorum = ",
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
  double loss_weighted = 0.0, examples = 0.0;
  for (auto& [client, r] : results_) {  // std::map: client-id order
    loss_weighted += r.train_loss * static_cast<double>(r.num_examples);
    examples += static_cast<double>(r.num_examples);
    results.push_back(std::move(r));
  }
  // Aggregate into a fresh vector: tasks of this round may still hold the
  // old parameters through their shared pointer.
  AggregationReport report_storage;
  if (!failed) {
    auto next = std::make_shared<FlatVector>(*model_);
    absl::StatusOr<AggregationReport> aggregated =
        strategy_->Aggregate(round_, results, *next);
    if (!aggregated.ok()) return aggregated.status();
    report_storage = *std::move(aggregated);
    if (!report_storage.failure.empty()) {
      // A robust rule had too few results: the model stays (next is a copy)
      // and, as when the quorum fails, the results are cancelled, not
      // counted as aggregated.
      std::fprintf(stderr, "warning: %s; the model is unchanged\n",
                   report_storage.failure.c_str());
      LogEvent({{"event", "aggregation_failed"},
                {"round", round_},
                {"results", results.size()},
                {"reason", report_storage.failure}});
      for (auto& [id, task] : open_) {
        if (task.state != TaskState::kDone) continue;
        task.state = TaskState::kDropped;
        ++tally_.cancelled;
        LogEvent({{"event", "task_cancelled"},
                  {"round", round_},
                  {"task", id},
                  {"client", task.client.value},
                  {"reason", absl::StrCat("aggregation_failed: ", report_storage.failure)}});
      }
      results.clear();
      loss_weighted = 0.0;
      examples = 0.0;
    }
    model_ = std::move(next);
  }
  const AggregationReport* report = &report_storage;
  tally_.aggregated += static_cast<std::int64_t>(results.size());

  MetricsRow row;
  row.round = round_;
  row.wall_time_s = wall_time_s;
  row.participants = static_cast<std::int64_t>(results.size());
  const auto payload = static_cast<std::int64_t>(model_->size() * sizeof(double));
  // SCAFFOLD sends c down and Delta c_i up with the model: twice the
  // payload; SCAFFLSA's partial-participation extension sends an anchor down.
  std::int64_t vectors_down = 0, vectors_up = 0;
  for (const auto& [id, task] : open_) vectors_down += task.sends_control ? 2 : 1;
  for (const ClientResult& r : results) vectors_up += r.control_delta.size() > 0 ? 2 : 1;
  row.bytes_down = payload * vectors_down;
  row.bytes_up = payload * vectors_up;
  if (examples > 0) row.client_loss = loss_weighted / examples;
  nlohmann::json budget_event;
  if (in_.privacy != nullptr) {
    const PrivacyLedger::Summary eps = in_.privacy->Summarize();
    row.epsilon_max = eps.max;
    row.epsilon_mean = eps.mean;
    if (in_.epsilon_budget > 0.0 && round_ + 1 < options_.rounds) {
      const double worst_next = in_.privacy->MaxEpsilonAfterOneMoreTask();
      if (worst_next > in_.epsilon_budget) {
        budget_spent_ = true;
        budget_event = {{"event", "privacy_budget_spent"},
                        {"round", round_},
                        {"epsilon_max", eps.max},
                        {"epsilon_max_after_next_round", worst_next},
                        {"epsilon_budget", in_.epsilon_budget}};
      }
    }
  }
  const bool last = round_ + 1 >= options_.rounds || budget_spent_;
  // LSA experiments have no objective: their metric is dist_to_opt.
  if (in_.objective != nullptr &&
      (last || (round_ + 1) % options_.eval_every == 0)) {
    const Evaluation test = EvaluateModel(*in_.objective, *in_.test, *model_,
                                          options_.eval_threads);
    row.test_loss = test.loss;
    row.test_accuracy = test.accuracy;
    if (options_.eval_train_loss) {
      row.train_loss = EvaluateModel(*in_.objective, *in_.train, *model_,
                                     options_.eval_threads)
                           .loss;
    }
  }
  if (in_.optimum.has_value()) {
    row.dist_to_opt = std::sqrt(SquaredNorm(*model_ - *in_.optimum));
  }
  row.model_hash = ModelHash(*model_);

  nlohmann::json weights = nlohmann::json::array();
  for (const auto& [client, w] : report->weights) {
    weights.push_back({{"client", client.value}, {"weight", w}});
  }
  LogEvent({{"event", "round_end"},
            {"round", round_},
            {"participants", weights},
            {"timed_out", timed_out},
            {"model_hash", row.model_hash}});

  if (!budget_event.is_null()) LogEvent(budget_event);
  if (in_.log != nullptr) {
    if (absl::Status s = in_.log->Metrics(row); !s.ok()) return s;
  }
  round_open_ = false;
  open_.clear();
  results_.clear();
  ++round_;
  return row;
}

RoundEngine::Snapshot RoundEngine::TakeSnapshot() const {
  FEDSIM_CHECK(!round_open_);
  Snapshot s;
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

absl::Status RoundEngine::RestoreSnapshot(const Snapshot& s) {
  FEDSIM_CHECK(!round_open_ && round_ == 0 && next_task_id_ == 1);
  if (s.model.size() != model_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: model has ", s.model.size(), " parameters; the run's has ",
        model_->size()));
  }
  if (s.next_round < 0 || s.next_round > options_.rounds || s.next_task_id < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: next_round = ", s.next_round, ", next_task_id = ",
        s.next_task_id, "; the run has ", options_.rounds, " rounds"));
  }
  const std::int64_t ledger_clients =
      in_.privacy == nullptr ? 0 : in_.privacy->num_clients();
  if (static_cast<std::int64_t>(s.privacy_steps.size()) != ledger_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: privacy steps for ", s.privacy_steps.size(),
        " clients; the run's ledger has ", ledger_clients));
  }
  for (std::int64_t steps : s.privacy_steps) {
    if (steps < 0) {
      return absl::InvalidArgumentError(
          "checkpoint: a client has a negative privacy step count");
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

}  // namespace fedsim
