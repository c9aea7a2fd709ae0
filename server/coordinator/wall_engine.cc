#include "server/coordinator/wall_engine.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "common/kernels/vector_ops.h"
#include "server/coordinator/evaluator.h"
#include "server/coordinator/validate_update.h"

namespace fedsim {
namespace {

AsyncAggregatorOptions AggregatorOptions(const WallEngineOptions& o) {
  AsyncAggregatorOptions a;
  a.scheme = o.scheme;
  // Replaced before every step (Weights()); any valid vector will do here.
  a.weights.assign(o.importance_mass.size(), 1.0);
  a.importance_mass = o.importance_mass;
  a.staleness_scaling = o.staleness_scaling;
  a.server_lr = o.server_lr;
  return a;
}

}  // namespace

WallEngine::WallEngine(const WallEngineOptions& options, EngineInputs inputs,
                       std::unique_ptr<AsyncScheduler> scheduler, FlatVector initial)
    : Engine(std::move(inputs), EvalOptions{options.eval_train_loss, options.eval_threads},
             options.incarnation),
      options_(options),
      scheduler_(std::move(scheduler)),
      aggregator_(AggregatorOptions(options)),
      model_(std::make_shared<const FlatVector>(std::move(initial))),
      eval_schedule_(options.eval_every, options.eval_interval) {
  const auto n = static_cast<std::int64_t>(in_.client_sizes.size());
  FEDSIM_CHECK(in_.train != nullptr && in_.test != nullptr && scheduler_ != nullptr &&
               in_.privacy == nullptr && options_.ticks_per_unit >= 1 && n >= 1 &&
               static_cast<std::int64_t>(options_.importance_mass.size()) == n);
  current_.resize(static_cast<std::size_t>(n));
  last_accepted_.assign(static_cast<std::size_t>(n), 0);
  duration_sum_.assign(static_cast<std::size_t>(n), 0.0);
  durations_.assign(static_cast<std::size_t>(n), 0);
  steps_with_.assign(static_cast<std::size_t>(n), 0);
  IssueAll(0, 0);
  done_ = version_ >= options_.max_steps;
}

void WallEngine::IssueAll(std::int64_t task_index, Tick now) {
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(current_.size()); ++k) {
    Issue(k, task_index, now);
  }
}

absl::Status WallEngine::Restore(const EngineSnapshot& s) {
  FEDSIM_CHECK(version_ == 0 && steps_.empty());
  if (s.kind != EngineKind::kWallClock) {
    return absl::InvalidArgumentError(
        "checkpoint: it is not of a wall-clock asynchronous run; the config's is");
  }
  if (s.model.size() != model_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: model has ", s.model.size(), " parameters; the config's model has ",
        model_->size()));
  }
  if (s.next_round < 0 || s.next_task_id < 1 || s.wall_tick < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: step ", s.next_round, ", next_task_id ", s.next_task_id, ", tick ",
        s.wall_tick, "; none may be negative"));
  }
  // The tasks the constructor issued are replaced: every client restarts
  // from the checkpointed model. The tasks in flight at the restart were
  // lost with it: counted as dropped.
  for (const ClientTask& t : current_) open_ids_.erase(t.id.value);
  new_tasks_.clear();
  issued_since_last_step_ = 0;
  model_ = std::make_shared<const FlatVector>(s.model);
  version_ = s.next_round;
  next_task_id_ = s.next_task_id;
  time_offset_ = s.wall_tick;
  tally_ = s.tally;
  tally_.dropped = tally_.issued - tally_.aggregated;
  eval_schedule_ = AsyncEvalSchedule(options_.eval_every, options_.eval_interval, time_offset_);
  // A client takes part in at most one step per version, so its task index
  // never exceeds the version: the resumed clients start at the version,
  // past every index whose result was aggregated, and draw fresh batches.
  IssueAll(version_, 0);
  done_ = version_ >= options_.max_steps;
  return absl::OkStatus();
}

EngineSnapshot WallEngine::Snapshot() const {
  EngineSnapshot s;
  s.kind = EngineKind::kWallClock;
  s.next_round = version_;
  s.model = *model_;
  s.next_task_id = next_task_id_;
  s.tally = tally_;
  s.wall_tick = RunTime(last_now_);
  return s;
}

void WallEngine::AddRunEndFields(nlohmann::json& end) const {
  end["tasks_stale_dropped"] = tally_.stale;
  end["tasks_in_flight"] = tally_.in_flight();
  nlohmann::json tau = nlohmann::json::array();
  for (double v : MeanTaskSeconds()) {
    tau.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json());
  }
  // The estimates behind the `weight` variants.
  end["mean_task_time"] = tau;
  end["step_fraction"] = StepFractions();
}

void WallEngine::Issue(std::int64_t client, std::int64_t task_index, Tick now) {
  ClientTask& t = current_[static_cast<std::size_t>(client)];
  open_ids_.erase(t.id.value);
  t.id = MakeTaskId(incarnation_, next_task_id_++);
  open_ids_[t.id.value] = client;
  t.task_index = task_index;
  t.base_version = version_;
  t.start = now;
  t.arrival = 0;
  t.state = State::kComputing;
  t.params = model_;
  t.result.reset();
  ++tally_.issued;
  ++issued_since_last_step_;
  Task task;
  task.id = t.id;
  // The task index keys the client's streams (seed, kShuffle, k, index), as
  // on the virtual clock; only which index runs when depends on real time.
  task.round = task_index;
  task.client = ClientId(client);
  task.params = t.params;
  task.local = options_.local;
  new_tasks_.push_back(std::move(task));
}

std::vector<Task> WallEngine::TakeTasks() {
  std::vector<Task> out;
  out.swap(new_tasks_);
  return out;
}

absl::StatusOr<std::vector<StepReport>> WallEngine::Close() {
  std::vector<StepReport> out;
  out.swap(steps_);
  return out;
}

std::optional<Tick> WallEngine::NextDeadline() const {
  if (done_) return std::nullopt;
  return scheduler_->NextDeadline();
}

void WallEngine::AdvanceThrough(Tick now) { Advance(now, /*inclusive=*/true); }
void WallEngine::AdvanceBefore(Tick now) { Advance(now, /*inclusive=*/false); }

void WallEngine::AdvanceTo(Tick now, Tick overdue_after) {
  AdvanceBefore(now);
  DropOverdue(now, overdue_after);
}

void WallEngine::Advance(Tick now, bool inclusive) {
  if (now > last_now_) last_now_ = now;
  while (!done_) {
    const std::optional<Tick> deadline = scheduler_->NextDeadline();
    if (!deadline.has_value() || *deadline > last_now_ ||
        (!inclusive && *deadline == last_now_)) {
      break;
    }
    if (options_.horizon >= 0 && RunTime(*deadline) > options_.horizon) break;
    TakeStep(*deadline, scheduler_->OnDeadline(*deadline));
  }
  if (!done_ && options_.horizon >= 0 && RunTime(last_now_) > options_.horizon) {
    done_ = true;  // no step after the horizon
  }
}

bool WallEngine::TaskOpen(TaskId task) const {
  return open_ids_.count(task.value) > 0;
}

absl::Status WallEngine::Submit(ClientResult r, Tick now) {
  // Windows that ended before `now` close first; one ending at `now`
  // includes this arrival (as on the virtual clock).
  Advance(now, /*inclusive=*/false);
  now = last_now_;
  const std::int64_t id = r.task.value;
  FEDSIM_RETURN_IF_ERROR(CheckIssued(r, "step", version_));
  const std::int64_t k = r.client.value;
  if (k < 0 || k >= static_cast<std::int64_t>(current_.size())) {
    return Reject(r,
                  absl::FailedPreconditionError(absl::StrCat(
                      "task ", id, ": client ", k, " is not a client of this run")),
                  /*task_open=*/false, "step", version_);
  }
  ClientTask& t = current_[static_cast<std::size_t>(k)];
  if (done_) {
    return Reject(r,
                  absl::FailedPreconditionError(
                      absl::StrCat("task ", id, ": the run has ended at step ", version_)),
                  /*task_open=*/false, "step", version_);
  }
  if ((t.id == r.task && t.state == State::kArrived) || last_accepted_[k] == id) {
    ++tally_.duplicate_pushes;
    return absl::AlreadyExistsError(absl::StrCat("task ", id, ": result already accepted"));
  }
  if (t.id != r.task) {
    return Reject(r,
                  absl::FailedPreconditionError(absl::StrCat(
                      "task ", id, " is not client ", k, "'s task in flight (stale)")),
                  /*task_open=*/false, "step", version_);
  }
  if (t.state == State::kDropped) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat("task ", id, " was given up on")),
                  /*task_open=*/false, "step", version_);
  }
  FEDSIM_RETURN_IF_ERROR(Admit(r, "step", version_, now, nullptr));
  t.state = State::kArrived;
  open_ids_.erase(id);
  t.result = std::move(r);
  Arrive(k, now);
  return absl::OkStatus();
}

void WallEngine::Arrive(std::int64_t client, Tick now) {
  ClientTask& t = current_[static_cast<std::size_t>(client)];
  t.arrival = now;
  if (t.state == State::kArrived) {
    // tau_i: the real time from issue to arrival (training, queueing at
    // the worker, the worker's slowdown, the network).
    duration_sum_[client] += static_cast<double>(now - t.start);
    ++durations_[client];
  }
  if (std::optional<std::vector<ClientId>> step = scheduler_->OnArrival(ClientId(client), now);
      step.has_value()) {
    TakeStep(now, *step);
  }
}

void WallEngine::Drop(TaskId task, const std::string& reason, Tick now) {
  Advance(now, /*inclusive=*/false);
  now = last_now_;
  const auto open = open_ids_.find(task.value);
  if (open == open_ids_.end()) return;
  const auto k = static_cast<std::size_t>(open->second);
  open_ids_.erase(open);
  {
    ClientTask& t = current_[k];
    t.state = State::kDropped;
    ++tally_.dropped;
    LogEvent({{"event", "task_dropped"},
              {"step", version_},
              {"task", task.value},
              {"client", static_cast<std::int64_t>(k)},
              {"reason", reason}});
    if (!done_) Arrive(static_cast<std::int64_t>(k), now);
  }
}

void WallEngine::DropOverdue(Tick now, Tick limit) {
  std::vector<TaskId> overdue;
  for (const ClientTask& t : current_) {
    if (t.state == State::kComputing && now - t.start > limit) overdue.push_back(t.id);
  }
  for (TaskId id : overdue) {
    Drop(id,
             absl::StrCat("no result within distributed.round_deadline_s = ",
                          static_cast<double>(limit) /
                              static_cast<double>(options_.ticks_per_unit),
                          " s of its issue"),
             now);
  }
}

std::vector<double> WallEngine::MeanTaskSeconds() const {
  std::vector<double> out(current_.size(), std::numeric_limits<double>::quiet_NaN());
  for (std::size_t k = 0; k < current_.size(); ++k) {
    if (durations_[k] > 0) {
      out[k] = duration_sum_[k] / static_cast<double>(durations_[k]) /
               static_cast<double>(options_.ticks_per_unit);
    }
  }
  return out;
}

std::vector<double> WallEngine::StepFractions() const {
  std::vector<double> out(current_.size(), 0.0);
  if (steps_taken_ == 0) return out;
  for (std::size_t k = 0; k < current_.size(); ++k) {
    out[k] = static_cast<double>(steps_with_[k]) / static_cast<double>(steps_taken_);
  }
  return out;
}

std::vector<double> WallEngine::Weights() const {
  AsyncWeightOptions wo;
  wo.scheme = options_.scheme;
  wo.weight_variant = options_.weight_variant;
  wo.importance_mass = options_.importance_mass;
  wo.window_ticks = options_.window_ticks;
  wo.buffer_size = options_.buffer_size;
  const std::size_t n = current_.size();
  if (options_.weight_variant && (options_.scheme == AsyncScheme::kAsyncFedAvg ||
                                  options_.scheme == AsyncScheme::kFedFix)) {
    // tau_i online; a client with no finished task yet takes the mean of
    // the others' (it is in no step before it has one).
    double known = 0.0;
    std::int64_t count = 0;
    for (std::size_t k = 0; k < n; ++k) {
      if (durations_[k] > 0) {
        known += duration_sum_[k] / static_cast<double>(durations_[k]);
        ++count;
      }
    }
    const double fallback = count > 0 ? known / static_cast<double>(count) : 1.0;
    for (std::size_t k = 0; k < n; ++k) {
      const double tau = durations_[k] > 0
                             ? duration_sum_[k] / static_cast<double>(durations_[k])
                             : fallback;
      // An arrival in the tick of its issue: one tick, not zero.
      wo.mean_ticks.push_back(std::max(tau, 1.0));
    }
  }
  if (options_.weight_variant && options_.scheme == AsyncScheme::kFedBuff) {
    wo.step_fraction = StepFractions();
  }
  return AsyncWeights(wo);
}

void WallEngine::TakeStep(Tick time, const std::vector<ClientId>& clients) {
  if (done_) return;
  if (options_.horizon >= 0 && RunTime(time) > options_.horizon) {
    done_ = true;
    return;
  }
  ++steps_taken_;
  for (ClientId c : clients) ++steps_with_[static_cast<std::size_t>(c.value)];
  nlohmann::json dropped = nlohmann::json::array();
  std::vector<AsyncUpdate> updates;
  ClientLossMean loss;
  for (ClientId c : clients) {  // sorted by client id
    ClientTask& t = current_[static_cast<std::size_t>(c.value)];
    if (t.state == State::kArrived && options_.max_staleness > 0 &&
        version_ - t.base_version > options_.max_staleness) {
      t.state = State::kDropped;
      ++tally_.dropped;
      ++tally_.stale;
      LogEvent(StaleUpdateEvent(version_, t.id, c.value, t.base_version, options_.max_staleness));
    }
    if (t.state != State::kArrived) {
      dropped.push_back(c.value);
      continue;
    }
    updates.push_back(AsyncUpdate{c, t.base_version, &t.result->update});
    if (std::isfinite(t.result->train_loss)) loss.Add(*t.result);
  }
  aggregator_.set_weights(Weights());
  auto next = std::make_shared<FlatVector>(*model_);
  absl::StatusOr<std::vector<AsyncContribution>> report =
      aggregator_.Aggregate(version_, updates, *next);
  // Every update was validated on arrival (size, finite, base version).
  FEDSIM_CHECK(report.ok());
  tally_.aggregated += static_cast<std::int64_t>(updates.size());
  model_ = std::move(next);

  const double tpu = static_cast<double>(options_.ticks_per_unit);
  StepReport out;
  MetricsRow& row = out.row;
  row.round = version_;
  row.virtual_time = static_cast<double>(RunTime(time)) / tpu;
  row.participants = static_cast<std::int64_t>(updates.size());
  const auto payload = static_cast<std::int64_t>(model_->size() * sizeof(double));
  row.bytes_up = payload * row.participants;
  row.client_loss = loss.Mean();

  nlohmann::json contributors = nlohmann::json::array();
  for (const AsyncContribution& c : *report) {
    const ClientTask& t = current_[static_cast<std::size_t>(c.client.value)];
    contributors.push_back({{"client", c.client.value},
                            {"base_version", c.base_version},
                            {"staleness", c.staleness},
                            {"weight", c.weight},
                            {"task_index", t.task_index},
                            {"arrival", static_cast<double>(RunTime(t.arrival)) / tpu},
                            {"task_time", static_cast<double>(t.arrival - t.start) / tpu}});
    last_accepted_[static_cast<std::size_t>(c.client.value)] = t.id.value;
  }
  ++version_;
  // Every contributor (dropped ones too) restarts from the new model now.
  for (ClientId c : clients) {
    Issue(c.value, current_[static_cast<std::size_t>(c.value)].task_index + 1, time);
  }
  row.bytes_down = payload * issued_since_last_step_;
  issued_since_last_step_ = 0;
  done_ = version_ >= options_.max_steps;
  out.evaluate = eval_schedule_.Due(version_ - 1, RunTime(time), done_);
  out.model = model_;
  EngineSnapshot snapshot;
  snapshot.kind = EngineKind::kWallClock;
  snapshot.next_round = version_;
  snapshot.model = *model_;
  snapshot.next_task_id = next_task_id_;
  snapshot.tally = tally_;
  snapshot.wall_tick = RunTime(time);
  out.snapshot = std::move(snapshot);
  out.event_wall_time = true;
  out.event = {{"event", "async_step"},
               {"clock", "wall"},
               {"step", row.round},
               {"virtual_time", row.virtual_time},
               {"tick", RunTime(time)},
               {"contributors", contributors},
               {"dropped", dropped}};
  steps_.push_back(std::move(out));
}

}  // namespace fedsim
