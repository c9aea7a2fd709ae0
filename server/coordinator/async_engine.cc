#include "server/coordinator/async_engine.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "common/kernels/vector_ops.h"
#include "server/coordinator/evaluator.h"
#include "server/coordinator/validate_update.h"

namespace fedsim {

AsyncEvalSchedule::AsyncEvalSchedule(int every, Tick interval, Tick start)
    : every_(every), interval_(interval) {
  if (interval_ > 0) next_time_ = (start / interval_ + 1) * interval_;
}

bool AsyncEvalSchedule::Due(std::int64_t version, Tick time, bool last) {
  bool evaluate = last;
  if (interval_ > 0) {
    if (time >= next_time_) {
      evaluate = true;
      next_time_ = (time / interval_ + 1) * interval_;
    }
  } else if ((version + 1) % every_ == 0) {
    evaluate = true;
  }
  return evaluate;
}

nlohmann::json StaleUpdateEvent(std::int64_t step, TaskId task, std::int64_t client,
                                std::int64_t base_version, std::int64_t max_staleness) {
  return {{"event", "stale_update"},
          {"step", step},
          {"task", task.value},
          {"client", client},
          {"base_version", base_version},
          {"staleness", step - base_version},
          {"max_staleness", max_staleness}};
}

AsyncEngine::AsyncEngine(const AsyncEngineOptions& options, EngineInputs inputs,
                         std::unique_ptr<ScheduleRunner> schedule,
                         std::unique_ptr<AsyncAggregator> aggregator, FlatVector initial)
    : Engine(std::move(inputs), EvalOptions{options.eval_train_loss, options.eval_threads},
             options.incarnation),
      options_(options),
      schedule_(std::move(schedule)),
      aggregator_(std::move(aggregator)),
      model_(std::make_shared<const FlatVector>(std::move(initial))),
      eval_schedule_(options.eval_every, options.eval_interval) {
  FEDSIM_CHECK(in_.train != nullptr && in_.test != nullptr && schedule_ != nullptr &&
               aggregator_ != nullptr && in_.privacy == nullptr &&
               options_.ticks_per_unit >= 1);
  const auto n = static_cast<std::int64_t>(in_.client_sizes.size());
  current_.resize(static_cast<std::size_t>(n));
  // Every client starts task 0 from version 0 at time 0.
  for (std::int64_t k = 0; k < n; ++k) Issue(k, 0, model_);
  Prefetch();
}

void AsyncEngine::Issue(std::int64_t client, std::int64_t task_index,
                        std::shared_ptr<const FlatVector> params) {
  ClientTask& t = current_[client];
  t.id = MakeTaskId(incarnation_, next_task_id_++);
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

bool AsyncEngine::TaskOpen(TaskId id) const {
  if (!open_step_.has_value()) return false;
  for (const auto& [client, state] : open_) {
    if (current_[client].id == id) return state == State::kOpen;
  }
  return false;
}

bool AsyncEngine::ReadyToClose() const {
  for (const auto& [client, state] : open_) {
    if (state == State::kOpen) return false;
  }
  return true;
}

std::vector<Task> AsyncEngine::TakeTasks() {
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
    FEDSIM_CHECK(cur.task_index == c.task_index && cur.base_version == c.base_version);
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

absl::Status AsyncEngine::Submit(ClientResult r, Tick now) {
  const std::int64_t id = r.task.value;
  FEDSIM_RETURN_IF_ERROR(CheckIssued(r, "step", version_));
  const std::int64_t k = r.client.value;
  const auto it = open_.find(k);
  if (!open_step_.has_value() || k < 0 || k >= static_cast<std::int64_t>(current_.size()) ||
      it == open_.end() || current_[k].id != r.task) {
    return Reject(r,
                  absl::FailedPreconditionError(absl::StrCat(
                      "task ", id, " of client ", k, " is not part of the open step ", version_)),
                  /*task_open=*/false, "step", version_);
  }
  if (it->second == State::kDone) {
    ++tally_.duplicate_pushes;
    return absl::AlreadyExistsError(absl::StrCat("task ", id, ": result already accepted"));
  }
  if (it->second == State::kDropped) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat("task ", id, " was given up on")),
                  /*task_open=*/false, "step", version_);
  }
  FEDSIM_RETURN_IF_ERROR(Admit(r, "step", version_, now, nullptr));
  it->second = State::kDone;
  results_[k] = std::move(r);
  return absl::OkStatus();
}

void AsyncEngine::Drop(TaskId task, const std::string& reason, Tick /*now*/) {
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
  return eval_schedule_.Due(step.version, step.time, done());
}

EngineSnapshot AsyncEngine::Snapshot() const {
  FEDSIM_CHECK(!open_step_.has_value());
  EngineSnapshot s;
  s.kind = EngineKind::kVirtualClock;
  s.next_round = version_;
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

absl::Status AsyncEngine::Restore(const EngineSnapshot& snapshot) {
  FEDSIM_CHECK(version_ == 0 && !open_step_.has_value());
  if (snapshot.kind != EngineKind::kVirtualClock) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: it is of a ",
        snapshot.kind == EngineKind::kRounds ? "synchronous run" : "wall-clock run",
        "; the config's run is asynchronous on the virtual clock"));
  }
  if (snapshot.model.size() != model_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: model has ", snapshot.model.size(),
        " parameters; the config's model has ", model_->size()));
  }
  // Replay the schedule to the checkpointed step: the same tasks, task
  // indices, base versions, ids and evaluation times, without training.
  while (version_ < snapshot.next_round) {
    if (!next_.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint: step ", snapshot.next_round, " is past the schedule's last step ",
          version_));
    }
    const ScheduledStep step = *std::move(next_);
    ++version_;
    issued_since_last_step_ = 0;
    (void)AdvanceAfter(step, nullptr);
  }
  if (next_task_id_ != snapshot.next_task_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: next_task_id = ", snapshot.next_task_id, "; replaying the schedule to step ",
        snapshot.next_round, " gives ", next_task_id_));
  }
  model_ = std::make_shared<const FlatVector>(snapshot.model);
  std::map<std::int64_t, std::shared_ptr<const FlatVector>> versions;
  for (const auto& [v, params] : snapshot.versions) {
    if (params.size() != model_->size()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint: model version ", v, " has ",
                                                     params.size(), " parameters, not ",
                                                     model_->size()));
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
          "checkpoint: client ", k, "'s task started from model version ", t.base_version,
          ", which the checkpoint does not hold"));
    }
    t.params = it->second;
  }
  tally_ = snapshot.tally;
  return absl::OkStatus();
}

void AsyncEngine::AddRunEndFields(nlohmann::json& end) const {
  end["tasks_stale_dropped"] = tally_.stale;
  end["tasks_in_flight"] = tally_.in_flight();
}

absl::StatusOr<std::vector<StepReport>> AsyncEngine::Close() {
  FEDSIM_CHECK(open_step_.has_value());
  const ScheduledStep step = *std::move(open_step_);
  open_step_.reset();
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
      LogEvent(StaleUpdateEvent(version_, current_[client].id, client,
                                current_[client].base_version, options_.max_staleness));
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
  ClientLossMean loss;
  for (const auto& [client, r] : results_) {  // std::map: client-id order
    updates.push_back(AsyncUpdate{r.client, current_[client].base_version, &r.update});
    if (std::isfinite(r.train_loss)) loss.Add(r);
  }
  // A fresh vector: tasks in flight keep the versions they started from.
  auto next = std::make_shared<FlatVector>(*model_);
  FEDSIM_ASSIGN_OR_RETURN(std::vector<AsyncContribution> contributions,
                          aggregator_->Aggregate(version_, updates, *next));
  tally_.aggregated += static_cast<std::int64_t>(updates.size());
  model_ = std::move(next);
  ++version_;

  StepReport report;
  MetricsRow& row = report.row;
  row.round = step.version;
  row.virtual_time =
      static_cast<double>(step.time) / static_cast<double>(options_.ticks_per_unit);
  row.participants = static_cast<std::int64_t>(updates.size());
  const auto payload = static_cast<std::int64_t>(model_->size() * sizeof(double));
  row.bytes_up = payload * row.participants;
  row.client_loss = loss.Mean();
  // Parameters sent since the previous step (the tasks this step's work
  // and later steps' work started from; as a synchronous round's tasks).
  row.bytes_down = payload * issued_since_last_step_;
  issued_since_last_step_ = 0;
  report.evaluate = AdvanceAfter(step, model_);
  report.model = model_;
  nlohmann::json contributors = nlohmann::json::array();
  for (const AsyncContribution& c : contributions) {
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
  report.event = {{"event", "async_step"},
                  {"step", step.version},
                  {"virtual_time", row.virtual_time},
                  {"tick", step.time},
                  {"contributors", contributors},
                  {"dropped", dropped}};
  open_.clear();
  results_.clear();
  std::vector<StepReport> out;
  out.push_back(std::move(report));
  return out;
}

}  // namespace fedsim
