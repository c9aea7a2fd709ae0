#include "server/coordinator/wall_engine.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"
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

WallEngine::WallEngine(const WallEngineOptions& options, RoundEngineInputs inputs,
                       std::unique_ptr<AsyncScheduler> scheduler, FlatVector initial,
                       std::int64_t first_version, std::int64_t first_task_id,
                       Tick time_offset, const WallTally& resumed)
    : options_(options),
      in_(std::move(inputs)),
      scheduler_(std::move(scheduler)),
      aggregator_(AggregatorOptions(options)),
      model_(std::make_shared<const FlatVector>(std::move(initial))),
      version_(first_version),
      next_task_id_(first_task_id),
      time_offset_(time_offset),
      tally_(resumed) {
  const auto n = static_cast<std::int64_t>(in_.client_sizes.size());
  FEDSIM_CHECK(in_.train != nullptr && in_.test != nullptr && scheduler_ != nullptr &&
               in_.privacy == nullptr && options_.ticks_per_unit >= 1 && n >= 1 &&
               static_cast<std::int64_t>(options_.importance_mass.size()) == n &&
               first_version >= 0 && first_task_id >= 1 && time_offset >= 0);
  current_.resize(static_cast<std::size_t>(n));
  last_accepted_.assign(static_cast<std::size_t>(n), 0);
  duration_sum_.assign(static_cast<std::size_t>(n), 0.0);
  durations_.assign(static_cast<std::size_t>(n), 0);
  steps_with_.assign(static_cast<std::size_t>(n), 0);
  // A client takes part in at most one step per version, so its task
  // index never exceeds the version: a resumed run's clients start at
  // `first_version`, past every index whose result was aggregated, and
  // draw fresh batches.
  for (std::int64_t k = 0; k < n; ++k) Issue(k, first_version, 0);
  if (options_.eval_interval > 0) {
    next_eval_time_ = (time_offset_ / options_.eval_interval + 1) * options_.eval_interval;
  }
  done_ = version_ >= options_.max_steps;
}

void WallEngine::LogEvent(const nlohmann::json& event) const {
  if (in_.log == nullptr) return;
  if (absl::Status s = in_.log->Event(event); !s.ok()) {
    std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
  }
}

void WallEngine::Issue(std::int64_t client, std::int64_t task_index, Tick now) {
  ClientTask& t = current_[static_cast<std::size_t>(client)];
  open_ids_.erase(t.id.value);
  t.id = MakeTaskId(options_.incarnation, next_task_id_++);
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

std::vector<Task> WallEngine::TakeNewTasks() {
  std::vector<Task> out;
  out.swap(new_tasks_);
  return out;
}

std::vector<WallStepReport> WallEngine::TakeSteps() {
  std::vector<WallStepReport> out;
  out.swap(steps_);
  return out;
}

std::optional<Tick> WallEngine::NextDeadline() const {
  if (done_) return std::nullopt;
  return scheduler_->NextDeadline();
}

void WallEngine::AdvanceTo(Tick now) { Advance(now, /*inclusive=*/true); }
void WallEngine::AdvanceBefore(Tick now) { Advance(now, /*inclusive=*/false); }

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

absl::Status WallEngine::Reject(const ClientResult& r, absl::Status status,
                                bool task_open) {
  ++tally_.rejected_pushes;
  LogRejectedResult(in_.log, version_, r, status, task_open);
  return status;
}

absl::Status WallEngine::SubmitResult(ClientResult r, Tick now) {
  // Windows that ended before `now` close first; one ending at `now`
  // includes this arrival (as on the virtual clock).
  Advance(now, /*inclusive=*/false);
  now = last_now_;
  const std::int64_t id = r.task.value;
  if (absl::Status s = CheckTaskIssued(r.task, options_.incarnation, next_task_id_); !s.ok()) {
    return Reject(r, std::move(s), false);
  }
  const std::int64_t k = r.client.value;
  if (k < 0 || k >= static_cast<std::int64_t>(current_.size())) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat(
                         "task ", id, ": client ", k, " is not a client of this run")),
                  false);
  }
  ClientTask& t = current_[static_cast<std::size_t>(k)];
  if (done_) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat(
                         "task ", id, ": the run has ended at step ", version_)),
                  false);
  }
  if ((t.id == r.task && t.state == State::kArrived) || last_accepted_[k] == id) {
    ++tally_.duplicate_pushes;
    return absl::AlreadyExistsError(absl::StrCat("task ", id, ": result already accepted"));
  }
  if (t.id != r.task) {
    return Reject(r, absl::FailedPreconditionError(absl::StrCat(
                         "task ", id, " is not client ", k,
                         "'s task in flight (stale)")),
                  false);
  }
  if (t.state == State::kDropped) {
    return Reject(r, absl::FailedPreconditionError(
                         absl::StrCat("task ", id, " was given up on")),
                  false);
  }
  const std::string where = absl::StrCat("step ", version_);
  if (absl::Status s = CheckUpdate(where, r, static_cast<std::int64_t>(model_->size()),
                                   in_.client_sizes[static_cast<std::size_t>(k)]);
      !s.ok()) {
    return Reject(r, std::move(s), true);
  }
  if (absl::Status s = CheckNormBound(in_.validation, where, r); !s.ok()) {
    absl::Status rejected = Reject(r, std::move(s), true);
    DropTask(r.task, std::string(rejected.message()), now);
    return rejected;
  }
  if (const NormBoundOutcome nb = ApplyNormBound(in_.validation, r.update); nb.changed) {
    LogEvent({{"event", in_.validation.action == NormBoundAction::kZero ? "update_zeroed"
                                                                         : "update_clipped"},
              {"step", version_},
              {"task", id},
              {"client", k},
              {"norm", nb.norm},
              {"max_update_norm", in_.validation.max_update_norm}});
  }
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

void WallEngine::DropTask(TaskId task, const std::string& reason, Tick now) {
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
    DropTask(id,
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
  double loss_weighted = 0.0, examples = 0.0;
  for (ClientId c : clients) {  // sorted by client id
    ClientTask& t = current_[static_cast<std::size_t>(c.value)];
    if (t.state == State::kArrived && options_.max_staleness > 0 &&
        version_ - t.base_version > options_.max_staleness) {
      t.state = State::kDropped;
      ++tally_.dropped;
      ++tally_.stale;
      LogEvent({{"event", "stale_update"},
                {"step", version_},
                {"task", t.id.value},
                {"client", c.value},
                {"base_version", t.base_version},
                {"staleness", version_ - t.base_version},
                {"max_staleness", options_.max_staleness}});
    }
    if (t.state != State::kArrived) {
      dropped.push_back(c.value);
      continue;
    }
    updates.push_back(AsyncUpdate{c, t.base_version, &t.result->update});
    if (std::isfinite(t.result->train_loss)) {
      loss_weighted += t.result->train_loss * static_cast<double>(t.result->num_examples);
      examples += static_cast<double>(t.result->num_examples);
    }
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
  WallStepReport out;
  MetricsRow& row = out.row;
  row.round = version_;
  row.virtual_time = static_cast<double>(RunTime(time)) / tpu;
  row.participants = static_cast<std::int64_t>(updates.size());
  const auto payload = static_cast<std::int64_t>(model_->size() * sizeof(double));
  row.bytes_up = payload * row.participants;
  if (examples > 0) row.client_loss = loss_weighted / examples;

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
  bool evaluate = done_;
  if (options_.eval_interval > 0) {
    if (RunTime(time) >= next_eval_time_) {
      evaluate = true;
      next_eval_time_ =
          (RunTime(time) / options_.eval_interval + 1) * options_.eval_interval;
    }
  } else if (version_ % options_.eval_every == 0) {
    evaluate = true;
  }
  out.model = model_;
  out.evaluate = evaluate;
  out.tick = RunTime(time);
  out.next_task_id = next_task_id_;
  out.tally = tally();
  out.event = {{"event", "async_step"},
               {"clock", "wall"},
               {"step", row.round},
               {"virtual_time", row.virtual_time},
               {"tick", RunTime(time)},
               {"contributors", contributors},
               {"dropped", dropped}};
  steps_.push_back(std::move(out));
}

absl::StatusOr<MetricsRow> WallEngine::FinishStepReport(const WallStepReport& report,
                                                        double wall_time_s) const {
  MetricsRow row = report.row;
  nlohmann::json event = report.event;
  row.wall_time_s = wall_time_s;
  const FlatVector& model = *report.model;
  if (in_.objective != nullptr && report.evaluate) {
    const Evaluation test =
        EvaluateModel(*in_.objective, *in_.test, model, options_.eval_threads);
    row.test_loss = test.loss;
    row.test_accuracy = test.accuracy;
    if (options_.eval_train_loss) {
      row.train_loss =
          EvaluateModel(*in_.objective, *in_.train, model, options_.eval_threads).loss;
    }
  }
  if (in_.optimum.has_value()) row.dist_to_opt = std::sqrt(SquaredNorm(model - *in_.optimum));
  row.model_hash = ModelHash(model);
  event["model_hash"] = row.model_hash;
  event["wall_time_s"] = wall_time_s;
  LogEvent(event);
  if (in_.log != nullptr) {
    if (absl::Status s = in_.log->Metrics(row); !s.ok()) return s;
  }
  return row;
}

}  // namespace fedsim
