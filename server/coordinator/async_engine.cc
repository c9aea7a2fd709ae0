#include "server/coordinator/async_engine.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"
#include "common/codec/flat_bytes.h"
#include "common/kernels/vector_ops.h"
#include "server/coordinator/evaluator.h"
#include "server/coordinator/validate_update.h"

namespace fedsim {

AsyncEngine::AsyncEngine(const AsyncEngineOptions& options,
                         RoundEngineInputs inputs,
                         std::unique_ptr<ScheduleRunner> schedule,
                         std::unique_ptr<AsyncAggregator> aggregator,
                         FlatVector initial)
    : options_(options),
      in_(std::move(inputs)),
      schedule_(std::move(schedule)),
      aggregator_(std::move(aggregator)),
      model_(std::make_shared<const FlatVector>(std::move(initial))) {
  FEDSIM_CHECK(in_.train != nullptr && in_.test != nullptr &&
               schedule_ != nullptr && aggregator_ != nullptr &&
               in_.privacy == nullptr && options_.ticks_per_unit >= 1);
  const auto n = static_cast<std::int64_t>(in_.client_sizes.size());
  current_.resize(static_cast<std::size_t>(n));
  // Every client starts task 0 from version 0 at time 0.
  for (std::int64_t k = 0; k < n; ++k) Issue(k, 0, model_);
  next_eval_time_ = options_.eval_interval;
  Prefetch();
}

void AsyncEngine::Issue(std::int64_t client, std::int64_t task_index,
                        std::shared_ptr<const FlatVector> params) {
  ClientTask& t = current_[client];
  t.id = MakeTaskId(options_.incarnation, next_task_id_++);
  t.task_index = task_index;
  t.base_version = version_;
  t.params = std::move(params);
  ++tally_.issued;
  ++issued_since_last_step_;
}

void AsyncEngine::Prefetch() {
  next_.reset();
  if (version_ < options_.max_steps) next_ = schedule_->Next();
}

void AsyncEngine::LogEvent(const nlohmann::json& event) {
  if (in_.log == nullptr) return;
  if (absl::Status s = in_.log->Event(event); !s.ok()) {
    std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
  }
}

bool AsyncEngine::TaskOpen(TaskId id) const {
  if (!open_step_.has_value()) return false;
  for (const auto& [client, state] : open_) {
    if (current_[client].id == id) return state == State::kOpen;
  }
  return false;
}

bool AsyncEngine::AllTasksResolved() const {
  for (const auto& [client, state] : open_) {
    if (state == State::kOpen) return false;
  }
  return true;
}

std::vector<Task> AsyncEngine::BeginStep() {
  FEDSIM_CHECK(!done() && !open_step_.has_value());
  open_step_ = std::move(next_);
  next_.reset();
  FEDSIM_CHECK(open_step_->version == version_);
  open_.clear();
  results_.clear();
  std::vector<Task> tasks;
  for (const ScheduledContribution& c : open_step_->contributors) {
    const ClientTask& cur = current_[c.client.value];
    // The engine and the schedule agree on every task (same start rule).
    FEDSIM_CHECK(cur.task_index == c.task_index &&
                 cur.base_version == c.base_version);
    Task t;
    t.id = cur.id;
    // The task index keys the client's streams (seed, kShuffle, k, index):
    // for clock_fedavg it is the round, as in synchronous FedAvg.
    t.round = cur.task_index;
    t.client = c.client;
    t.params = cur.params;
    t.local = options_.local;
    open_[c.client.value] = State::kOpen;
    tasks.push_back(std::move(t));
  }
  return tasks;
}

absl::Status AsyncEngine::Reject(const ClientResult& r, absl::Status status,
                                 bool task_open) {
  ++tally_.rejected_pushes;
  LogRejectedResult(in_.log, version_, r, status, task_open);
  return status;
}

absl::Status AsyncEngine::SubmitResult(ClientResult r) {
  const std::int64_t id = r.task.value;
  if (absl::Status s = CheckTaskIssued(r.task, options_.incarnation, next_task_id_); !s.ok()) {
    return Reject(r, std::move(s), false);
  }
  const std::int64_t k = r.client.value;
  const auto it = open_.find(k);
  if (!open_step_.has_value() || k < 0 ||
      k >= static_cast<std::int64_t>(current_.size()) || it == open_.end() ||
      current_[k].id != r.task) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat(
                         "task ", id, " of client ", k,
                         " is not part of the open step ", version_)), false);
  }
  if (it->second == State::kDone) {
    ++tally_.duplicate_pushes;
    return absl::AlreadyExistsError(
        absl::StrCat("task ", id, ": result already accepted"));
  }
  if (it->second == State::kDropped) {
    return Reject(r, absl::FailedPreconditionError(
                         absl::StrCat("task ", id, " was given up on")), false);
  }
  const std::string where = absl::StrCat("step ", version_);
  if (absl::Status s = CheckUpdate(where, r, static_cast<std::int64_t>(model_->size()),
                                   in_.client_sizes[k]);
      !s.ok()) {
    return Reject(r, std::move(s));
  }
  if (absl::Status s = CheckNormBound(in_.validation, where, r); !s.ok()) {
    const TaskId task_id = r.task;
    absl::Status rejected = Reject(r, std::move(s));
    DropTask(task_id, std::string(rejected.message()));
    return rejected;
  }
  if (const NormBoundOutcome nb = ApplyNormBound(in_.validation, r.update); nb.changed) {
    LogEvent({{"event", in_.validation.action == NormBoundAction::kZero
                            ? "update_zeroed"
                            : "update_clipped"},
              {"step", version_},
              {"task", r.task.value},
              {"client", k},
              {"norm", nb.norm},
              {"max_update_norm", in_.validation.max_update_norm}});
  }
  it->second = State::kDone;
  results_[k] = std::move(r);
  return absl::OkStatus();
}

void AsyncEngine::DropTask(TaskId task, const std::string& reason) {
  for (auto& [client, state] : open_) {
    if (current_[client].id == task && state == State::kOpen) {
      state = State::kDropped;
      ++tally_.dropped;
      LogEvent({{"event", "task_dropped"},
                {"step", version_},
                {"task", task.value},
                {"client", client},
                {"reason", reason}});
      return;
    }
  }
}

bool AsyncEngine::AdvanceAfter(const ScheduledStep& step,
                               std::shared_ptr<const FlatVector> params) {
  // Every contributor (dropped ones too) restarts from the new model.
  for (const ScheduledContribution& c : step.contributors) {
    Issue(c.client.value, c.task_index + 1, params);
  }
  Prefetch();
  bool evaluate = done();
  if (options_.eval_interval > 0) {
    if (step.time >= next_eval_time_) {
      evaluate = true;
      next_eval_time_ = (step.time / options_.eval_interval + 1) * options_.eval_interval;
    }
  } else if ((step.version + 1) % options_.eval_every == 0) {
    evaluate = true;
  }
  return evaluate;
}

AsyncEngine::Snapshot AsyncEngine::TakeSnapshot() const {
  FEDSIM_CHECK(!open_step_.has_value());
  Snapshot s;
  s.version = version_;
  s.model = *model_;
  s.next_task_id = next_task_id_;
  s.tally = tally_;
  for (const ClientTask& t : current_) {
    if (t.base_version != version_ && s.versions.count(t.base_version) == 0) {
      s.versions[t.base_version] = *t.params;
    }
  }
  return s;
}

absl::Status AsyncEngine::RestoreSnapshot(const Snapshot& snapshot) {
  FEDSIM_CHECK(version_ == 0 && !open_step_.has_value());
  if (snapshot.model.size() != model_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: model has ", snapshot.model.size(),
        " parameters; the config's model has ", model_->size()));
  }
  // Replay the schedule to the checkpointed step: the same tasks, task
  // indices, base versions, ids and evaluation times, without training.
  while (version_ < snapshot.version) {
    if (!next_.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint: step ", snapshot.version, " is past the schedule's last step ",
          version_));
    }
    const ScheduledStep step = *std::move(next_);
    ++version_;
    issued_since_last_step_ = 0;
    (void)AdvanceAfter(step, nullptr);
  }
  if (next_task_id_ != snapshot.next_task_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: next_task_id = ", snapshot.next_task_id,
        "; replaying the schedule to step ", snapshot.version, " gives ",
        next_task_id_));
  }
  model_ = std::make_shared<const FlatVector>(snapshot.model);
  std::map<std::int64_t, std::shared_ptr<const FlatVector>> versions;
  for (const auto& [v, params] : snapshot.versions) {
    if (params.size() != model_->size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint: model version ", v, " has ", params.size(),
          " parameters, not ", model_->size()));
    }
    versions[v] = std::make_shared<const FlatVector>(params);
  }
  for (std::size_t k = 0; k < current_.size(); ++k) {
    ClientTask& t = current_[k];
    if (t.base_version == version_) {
      t.params = model_;
      continue;
    }
    const auto it = versions.find(t.base_version);
    if (it == versions.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint: client ", k, "'s task started from model version ",
          t.base_version, ", which the checkpoint does not hold"));
    }
    t.params = it->second;
  }
  tally_ = snapshot.tally;
  return absl::OkStatus();
}

absl::StatusOr<MetricsRow> AsyncEngine::FinishStep(double wall_time_s) {
  FEDSIM_CHECK(open_step_.has_value());
  const ScheduledStep& step = *open_step_;
  nlohmann::json dropped = nlohmann::json::array();
  // Bounded staleness: an update from a version older than
  // version - max_staleness is dropped, not aggregated.
  if (options_.max_staleness > 0) {
    for (auto it = results_.begin(); it != results_.end();) {
      const std::int64_t client = it->first;
      const std::int64_t staleness = version_ - current_[client].base_version;
      if (staleness <= options_.max_staleness) {
        ++it;
        continue;
      }
      open_[client] = State::kDropped;
      ++tally_.dropped;
      ++tally_.stale;
      LogEvent({{"event", "stale_update"},
                {"step", version_},
                {"task", current_[client].id.value},
                {"client", client},
                {"base_version", current_[client].base_version},
                {"staleness", staleness},
                {"max_staleness", options_.max_staleness}});
      it = results_.erase(it);
    }
  }
  for (auto& [client, state] : open_) {
    if (state == State::kOpen) {  // never answered: as a dropped task
      state = State::kDropped;
      ++tally_.dropped;
      LogEvent({{"event", "task_dropped"},
                {"step", version_},
                {"task", current_[client].id.value},
                {"client", client},
                {"reason", "no result"}});
    }
    if (state == State::kDropped) dropped.push_back(client);
  }
  std::vector<AsyncUpdate> updates;
  double loss_weighted = 0.0, examples = 0.0;
  for (const auto& [client, r] : results_) {  // std::map: client-id order
    updates.push_back(AsyncUpdate{r.client, current_[client].base_version, &r.update});
    if (std::isfinite(r.train_loss)) {
      loss_weighted += r.train_loss * static_cast<double>(r.num_examples);
      examples += static_cast<double>(r.num_examples);
    }
  }
  // A fresh vector: tasks in flight keep the versions they started from.
  auto next = std::make_shared<FlatVector>(*model_);
  absl::StatusOr<std::vector<AsyncContribution>> report =
      aggregator_->Aggregate(version_, updates, *next);
  if (!report.ok()) return report.status();
  tally_.aggregated += static_cast<std::int64_t>(updates.size());
  model_ = std::move(next);
  ++version_;

  MetricsRow row;
  row.round = step.version;
  row.wall_time_s = wall_time_s;
  row.virtual_time = static_cast<double>(step.time) /
                     static_cast<double>(options_.ticks_per_unit);
  row.participants = static_cast<std::int64_t>(updates.size());
  const auto payload = static_cast<std::int64_t>(model_->size() * sizeof(double));
  row.bytes_up = payload * row.participants;
  if (examples > 0) row.client_loss = loss_weighted / examples;

  // Parameters sent since the previous step (the tasks this step's work
  // and later steps' work started from; as a synchronous round's tasks).
  row.bytes_down = payload * issued_since_last_step_;
  issued_since_last_step_ = 0;
  const bool evaluate = AdvanceAfter(step, model_);
  if (in_.objective != nullptr && evaluate) {
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

  nlohmann::json contributors = nlohmann::json::array();
  for (const AsyncContribution& c : *report) {
    for (const ScheduledContribution& s : step.contributors) {
      if (s.client == c.client) {
        contributors.push_back({{"client", c.client.value},
                                {"base_version", c.base_version},
                                {"staleness", c.staleness},
                                {"weight", c.weight},
                                {"task_index", s.task_index},
                                {"arrival", static_cast<double>(s.arrival) /
                                                static_cast<double>(options_.ticks_per_unit)}});
      }
    }
  }
  LogEvent({{"event", "async_step"},
            {"step", step.version},
            {"virtual_time", row.virtual_time},
            {"tick", step.time},
            {"contributors", contributors},
            {"dropped", dropped},
            {"model_hash", row.model_hash}});
  if (in_.log != nullptr) {
    if (absl::Status s = in_.log->Metrics(row); !s.ok()) return s;
  }
  open_step_.reset();
  open_.clear();
  results_.clear();
  return row;
}

}  // namespace fedsim
