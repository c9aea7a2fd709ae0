#include "server/coordinator/coordinator.h"

#include <algorithm>
#include <cmath>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/status_macros.h"
#include "server/coordinator/validate_update.h"

namespace fedsim {
namespace {

absl::Status StoppedError(std::int64_t round) {
  return absl::CancelledError(absl::StrCat(
      "stopped by request before round ", round, " completed"));
}

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options, CoordinatorRun* run,
                         ProgressFn progress)
    : options_(options), clock_(options.clock), run_(run), progress_(std::move(progress)),
      wall_(run->engine->kind() == EngineKind::kWallClock),
      stateful_(ClientsKeepState(run->config)),
      layout_(ClientStateLayoutOf(run->config, run->experiment->num_parameters())),
      next_worker_id_(std::max<std::int64_t>(options.first_worker_id, 1)) {}

Coordinator::~Coordinator() {
  Shutdown();
}

bool Coordinator::IsRegistered(WorkerId worker) const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_.count(worker.value) > 0;
}

int Coordinator::num_workers() const {
  std::unique_lock<std::mutex> lock(mu_);
  return static_cast<int>(workers_.size());
}

double Coordinator::WorkerSlowdown(WorkerId worker) const {
  std::unique_lock<std::mutex> lock(mu_);
  const auto it = workers_.find(worker.value);
  return it == workers_.end() ? 1.0 : it->second.slowdown;
}

Tick Coordinator::WallTicksLocked() const {
  if (!wall_ || !wall_start_.has_value()) return -1;
  // Exact integer arithmetic (floor(ns * ticks_per_unit / 1e9)): a result
  // received 1 us after a window's end must not round back onto it.
  const absl::int128 ns = absl::ToInt64Nanoseconds(clock_->Now() - *wall_start_);
  return static_cast<Tick>(ns * absl::int128(run_->config.async().ticks_per_unit()) / 1000000000);
}

void Coordinator::SyncWallTasksLocked() {
  Engine& engine = *run_->engine;
  std::vector<Task> tasks = engine.TakeTasks();
  // Forget what is no longer open: answered, dropped or superseded tasks.
  for (auto it = assigned_.begin(); it != assigned_.end();) {
    it = engine.TaskOpen(TaskId(it->first)) ? std::next(it) : assigned_.erase(it);
  }
  for (auto it = issued_.begin(); it != issued_.end();) {
    it = engine.TaskOpen(TaskId(it->first)) ? std::next(it) : issued_.erase(it);
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = engine.TaskOpen(it->id) ? std::next(it) : pending_.erase(it);
  }
  for (Task& t : tasks) {
    if (!engine.TaskOpen(t.id)) continue;  // already superseded
    issued_[t.id.value] = t;
    last_issued_task_ = std::max(last_issued_task_, t.id.value);
    pending_.push_back(std::move(t));
  }
}

void Coordinator::RunCompletions(std::vector<Completion>& completions) {
  for (auto& [done, reply] : completions) std::move(done)(std::move(reply));
  completions.clear();
}

absl::StatusOr<WorkerId> Coordinator::Join(const std::string& name,
                                           const std::string& worker_name) {
  std::vector<Completion> completions;
  WorkerId joined;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (finished_ || shutdown_) {
      return absl::UnavailableError("the run has ended; not accepting workers");
    }
    if (stop_requested_) {
      return absl::UnavailableError("coordinator shutting down; not accepting workers");
    }
    // The identity: the registered name (the certificate identity under
    // mTLS) and the name the worker asked for, if different.
    const std::string key =
        worker_name.empty() || worker_name == name ? name : absl::StrCat(name, "/", worker_name);
    std::int64_t previous = 0;
    for (const auto& [id, w] : workers_) {
      if (w.key == key) previous = id;
    }
    if (previous == 0 &&
        static_cast<std::int64_t>(workers_.size()) >= options_.max_workers) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "Join: ", workers_.size(), " workers are registered; distributed.max_workers = ",
          options_.max_workers));
    }
    std::size_t requeued = 0;
    if (previous != 0) {
      // The same worker again (a restarted process): its earlier
      // registration ends, and the tasks it held go back to the queue, to
      // be handed out once more (to it or another worker) and counted once.
      workers_.erase(previous);
      for (auto p = parked_.begin(); p != parked_.end();) {
        if (p->worker.value == previous) {
          completions.emplace_back(
              std::move(p->done),
              absl::NotFoundError(absl::StrCat("worker ", previous,
                                               " joined again under a new id; join again")));
          p = parked_.erase(p);
        } else {
          ++p;
        }
      }
      requeued = ReleaseTasksLocked(previous, /*drop_if_alone=*/false, "",
                                    /*reassign=*/false)
                     .first;
    }
    auto known = slowdown_of_.find(key);
    if (known == slowdown_of_.end()) {
      double factor = 1.0;
      if (!options_.worker_slowdown.empty()) {
        factor = options_.worker_slowdown[static_cast<std::size_t>(
            joins_ % static_cast<std::int64_t>(options_.worker_slowdown.size()))];
      }
      ++joins_;
      known = slowdown_of_.emplace(key, factor).first;
    }
    const double slowdown = known->second;
    const std::int64_t id = next_worker_id_++;
    workers_[id] = WorkerInfo{name, key, clock_->Now()};
    workers_[id].slowdown = slowdown;
    if (previous != 0 && options_.pin_clients) {
      // The restarted worker keeps its clients (their speed is its speed).
      for (auto& [client, owner] : owner_) {
        if (owner == previous) owner = id;
      }
    }
    joined = WorkerId(id);
    nlohmann::json event = {{"event", previous != 0 ? "worker_rejoined" : "worker_joined"},
                            {"worker", id},
                            {"name", name},
                            {"workers", workers_.size()}};
    // Under mTLS the certificate names the worker in the logs; the name it
    // asked for only tells apart workers that share a certificate.
    if (!options_.worker_slowdown.empty()) event["slowdown"] = slowdown;
    if (previous != 0) {
      event["previous_worker"] = previous;
      event["requeued_tasks"] = requeued;
    }
    (void)run_->log->Event(event);
    if (options_.pin_clients && !unowned_.empty()) {
      std::vector<std::int64_t> clients;
      clients.swap(unowned_);
      AssignLocked(clients);
    }
    DispatchLocked(completions);
    cv_.notify_all();
  }
  RunCompletions(completions);
  return joined;
}

std::int64_t Coordinator::PullTask(WorkerId worker, absl::Time deadline,
                                   PullCallback done) {
  std::vector<Completion> completions;
  std::int64_t pull_id = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    pull_id = next_pull_id_++;
    auto it = workers_.find(worker.value);
    if (it == workers_.end()) {
      completions.emplace_back(
          std::move(done),
          absl::NotFoundError(absl::StrCat("worker ", worker.value,
                                           " is not registered; join again")));
    } else if (shutdown_ || stop_requested_) {
      completions.emplace_back(std::move(done),
                               absl::UnavailableError("coordinator shutting down"));
    } else if (finished_) {
      PullReply reply;
      reply.run_finished = true;
      completions.emplace_back(std::move(done), reply);
    } else {
      it->second.last_seen = clock_->Now();
      if (!it->second.polled) {
        it->second.polled = true;
        cv_.notify_all();
      }
      // Never hold a poll past the coordinator's own limit.
      const absl::Time limit = clock_->Now() + options_.long_poll;
      parked_.push_back(
          Parked{pull_id, worker, std::min(deadline, limit), std::move(done)});
      DispatchLocked(completions);
    }
  }
  RunCompletions(completions);
  return pull_id;
}

void Coordinator::CancelPull(std::int64_t pull_id) {
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = std::find_if(parked_.begin(), parked_.end(),
                           [&](const Parked& p) { return p.id == pull_id; });
    if (it == parked_.end()) return;
    completions.emplace_back(std::move(it->done),
                             absl::CancelledError("poll cancelled"));
    parked_.erase(it);
  }
  RunCompletions(completions);
}

bool Coordinator::EligibleLocked(std::int64_t worker, ClientId client) const {
  if (!options_.pin_clients) return true;
  auto it = owner_.find(client.value);
  return it != owner_.end() && it->second == worker;
}

void Coordinator::AssignLocked(const std::vector<std::int64_t>& clients) {
  if (workers_.empty()) {
    unowned_.insert(unowned_.end(), clients.begin(), clients.end());
    return;
  }
  std::vector<std::int64_t> ids;
  for (const auto& [id, info] : workers_) ids.push_back(id);
  for (std::size_t i = 0; i < clients.size(); ++i) {
    owner_[clients[i]] = ids[i % ids.size()];
  }
}

void Coordinator::DispatchLocked(std::vector<Completion>& out) {
  // A finished wall-clock run hands out nothing more.
  if (wall_ && run_->engine->done()) return;
  // Polls in arrival order; each takes the first pending task it may run
  // (pending tasks are in client order).
  for (auto p = parked_.begin(); p != parked_.end() && !pending_.empty();) {
    auto t = std::find_if(pending_.begin(), pending_.end(), [&](const Task& task) {
      return EligibleLocked(p->worker.value, task.client);
    });
    if (t == pending_.end()) {
      ++p;
      continue;
    }
    Task task = std::move(*t);
    pending_.erase(t);
    assigned_[task.id.value] = p->worker.value;
    // The worker's silence is measured from the hand-out, not from when
    // its poll started waiting.
    if (auto w = workers_.find(p->worker.value); w != workers_.end()) {
      w->second.last_seen = clock_->Now();
    }
    PullReply reply;
    reply.task = std::move(task);
    out.emplace_back(std::move(p->done), std::move(reply));
    p = parked_.erase(p);
  }
}

void Coordinator::ExpireLocked(absl::Time now, std::vector<Completion>& out) {
  for (auto it = parked_.begin(); it != parked_.end();) {
    if (it->deadline <= now) {
      PullReply reply;
      reply.retry_after_ms = 0;  // poll again at once: the poll itself waits
      out.emplace_back(std::move(it->done), reply);
      it = parked_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<bool> Coordinator::PushResult(WorkerId worker,
                                             ClientResult result) {
  std::unique_lock<std::mutex> lock(mu_);
  auto w = workers_.find(worker.value);
  if (w == workers_.end()) {
    absl::Status s = absl::NotFoundError(absl::StrCat(
        "worker ", worker.value, " is not registered; join again"));
    LogRejectedLocked(worker.value, result.task.value, result.client.value, s, true);
    return s;
  }
  w->second.last_seen = clock_->Now();
  if (stop_requested_) {
    // Not stale: a resumed coordinator issues the task again.
    return absl::UnavailableError("coordinator shutting down");
  }
  if (!accepting_) {
    // Between rounds the round thread owns the engine; classify here.
    const std::int64_t id = result.task.value;
    absl::Status s = CheckTaskIssued(result.task, run_->incarnation,
                                     TaskSequence(TaskId(last_issued_task_)) + 1);
    if (s.ok()) {
      s = wall_ && run_->engine->done()
              ? absl::FailedPreconditionError(absl::StrCat("task ", id, ": the run has ended"))
              : absl::FailedPreconditionError(
                    absl::StrCat("task ", id, " belongs to a closed round (stale)"));
    }
    LogRejectedLocked(worker.value, id, result.client.value, s, true);
    return s;
  }
  auto a = assigned_.find(result.task.value);
  if (a != assigned_.end() && a->second != worker.value) {
    absl::Status s = absl::PermissionDeniedError(absl::StrCat(
        "task ", result.task.value, " was issued to worker ", a->second,
        ", not to worker ", worker.value));
    LogRejectedLocked(worker.value, result.task.value, result.client.value, s, true);
    return s;
  }
  const std::int64_t task_id = result.task.value;
  const std::int64_t client_id = result.client.value;
  if (absl::Status bad = CommitClientStateLocked(result); !bad.ok()) {
    // Like a malformed update: logged, and the task ends.
    LogRejectedLocked(worker.value, task_id, client_id, bad, false);
    FailRejectedTaskLocked(worker.value, task_id, bad);
    return bad;
  }
  absl::Status s = run_->engine->Submit(std::move(result), WallTicksLocked());
  if (absl::IsAlreadyExists(s)) {
    (void)run_->log->LimitedEvent(absl::StrCat("duplicate_dropped worker ", worker.value),
                                  {{"event", "duplicate_dropped"},
                            {"round", CompletedRounds(*run_)},
                            {"task", task_id},
                            {"client", client_id},
                            {"worker", worker.value}});
    return true;
  }
  if (absl::IsInvalidArgument(s)) FailRejectedTaskLocked(worker.value, task_id, s);
  if (!s.ok()) return s;
  // Which worker delivered each update: round_end names clients only, and
  // deployments need to see which workers (hosts) took part in a round.
  (void)run_->log->Event({{"event", "result_accepted"},
                          {"round", CompletedRounds(*run_)},
                          {"task", task_id},
                          {"client", client_id},
                          {"worker", worker.value}});
  cv_.notify_all();
  return false;
}

absl::Status Coordinator::CommitClientStateLocked(const ClientResult& result) {
  const std::int64_t task = result.task.value;
  const std::string where =
      absl::StrCat("result of task ", task, ", client ", result.client.value);
  if (!stateful_) {
    if (result.client_state.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": has a client_state; this algorithm keeps no client state"));
    }
    return absl::OkStatus();
  }
  // Only the first result of a task that is still open commits: a
  // duplicate, a stale result or one for a dropped task changes nothing
  // (the engine classifies it next).
  auto issued = issued_.find(task);
  if (issued == issued_.end() || !run_->engine->TaskOpen(TaskId(task)) ||
      issued->second.client != result.client) {
    return absl::OkStatus();
  }
  if (!result.client_state.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": has no client_state; this algorithm keeps client state and every "
        "result carries it"));
  }
  FEDSIM_RETURN_IF_ERROR(CheckClientState(*result.client_state, layout_, where));
  // Committed as the embedded runtime does when the client's local work
  // ran, whatever the engine then decides about the update (docs/reliability.md,
  // "Where client state lives").
  run_->client_states[result.client.value] = *result.client_state;
  return absl::OkStatus();
}

void Coordinator::RecordRejectedPush(WorkerId worker, std::int64_t task,
                                     std::int64_t client,
                                     const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  // A malformed result for a task the worker holds ends the task (logged
  // in full); for any other task it changes nothing (rate limited).
  const auto a = assigned_.find(task);
  const bool holds = accepting_ && a != assigned_.end() && a->second == worker.value;
  LogRejectedLocked(worker.value, task, client, status, !holds);
  if (workers_.count(worker.value) > 0) {
    FailRejectedTaskLocked(worker.value, task, status);
  }
}

void Coordinator::LogRejectedLocked(std::int64_t worker, std::int64_t task,
                                    std::int64_t client, const absl::Status& status,
                                    bool limited) {
  const nlohmann::json event = {{"event", "result_rejected"},
                                {"task", task},
                                {"client", client},
                                {"worker", worker},
                                {"code", absl::StatusCodeToString(status.code())},
                                {"reason", std::string(status.message())}};
  // A worker can push results for tasks it does not hold at will: those
  // are rate limited per worker.
  if (limited) {
    (void)run_->log->LimitedEvent(absl::StrCat("result_rejected worker ", worker), event);
  } else {
    (void)run_->log->Event(event);
  }
}

void Coordinator::FailRejectedTaskLocked(std::int64_t worker, std::int64_t task,
                                         const absl::Status& status) {
  if (!accepting_) return;
  auto a = assigned_.find(task);
  if (a == assigned_.end() || a->second != worker) return;
  run_->engine->Drop(TaskId(task),
             absl::StrCat("result rejected (", absl::StatusCodeToString(status.code()),
                          "): ", std::string(status.message())),
             WallTicksLocked());
  cv_.notify_all();  // the quorum may have become unreachable
}

absl::Status Coordinator::Heartbeat(WorkerId worker) {
  std::unique_lock<std::mutex> lock(mu_);
  auto w = workers_.find(worker.value);
  if (w == workers_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "worker ", worker.value, " is not registered; join again"));
  }
  w->second.last_seen = clock_->Now();
  return absl::OkStatus();
}

std::pair<std::size_t, std::size_t> Coordinator::ReleaseTasksLocked(
    std::int64_t worker, bool drop_if_alone, const std::string& reason, bool reassign) {
  std::vector<Task> requeue;
  for (auto it = assigned_.begin(); it != assigned_.end();) {
    if (it->second == worker) {
      // Tasks whose result already arrived stay done.
      if (accepting_ && run_->engine->TaskOpen(TaskId(it->first))) {
        requeue.push_back(issued_.at(it->first));
      }
      it = assigned_.erase(it);
    } else {
      ++it;
    }
  }
  // Workers leaving after the end keep nothing to hand over.
  if (options_.pin_clients && reassign && !finished_) {
    std::vector<std::int64_t> orphans;
    for (const auto& [client, owner] : owner_) {
      if (owner == worker) orphans.push_back(client);
    }
    if (!orphans.empty()) {
      AssignLocked(orphans);
      (void)run_->log->Event({{"event", "clients_reassigned"},
                              {"worker", worker},
                              {"clients", orphans}});
    }
  }
  // On the wall clock tasks wait for a worker to come back instead: the
  // clients' work is the run.
  if (drop_if_alone && workers_.empty() && !wall_) {
    // No one to re-issue to: the tasks fail now (the quorum check may end
    // the round at once) rather than at the round deadline.
    if (accepting_) {
      for (const Task& t : requeue) run_->engine->Drop(t.id, reason, WallTicksLocked());
    }
    return {0, requeue.size()};
  }
  // Same tasks, same content: the results stay bit-identical.
  for (auto it = requeue.rbegin(); it != requeue.rend(); ++it) {
    pending_.push_front(*it);
  }
  return {requeue.size(), 0};
}

void Coordinator::DetectDeadWorkersLocked(absl::Time now,
                                          std::vector<Completion>& out) {
  const absl::Duration patience =
      options_.heartbeat_interval * options_.heartbeat_patience;
  std::vector<std::int64_t> holders;
  for (const auto& [task, worker] : assigned_) {
    // A worker that delivered its results holds nothing: its silence (a
    // long poll waiting for the next round) is not death.
    if (!accepting_ || !run_->engine->TaskOpen(TaskId(task))) continue;
    if (std::find(holders.begin(), holders.end(), worker) == holders.end()) {
      holders.push_back(worker);
    }
  }
  if (wall_ && options_.pin_clients && accepting_) {
    // On the wall clock a worker's pinned clients always have work for it:
    // an owner that neither holds a task nor waits in a poll must poll again
    // within the patience, or its clients would wait for it forever.
    for (const auto& [client, owner] : owner_) {
      if (std::find(holders.begin(), holders.end(), owner) != holders.end()) continue;
      const bool polling = std::any_of(parked_.begin(), parked_.end(),
                                       [&](const Parked& p) { return p.worker.value == owner; });
      if (!polling) holders.push_back(owner);
    }
  }
  for (std::int64_t id : holders) {
    auto w = workers_.find(id);
    if (w == workers_.end() || now - w->second.last_seen <= patience) continue;
    const double silent_s = absl::ToDoubleSeconds(now - w->second.last_seen);
    workers_.erase(w);
    for (auto p = parked_.begin(); p != parked_.end();) {
      if (p->worker.value == id) {
        out.emplace_back(std::move(p->done),
                         absl::NotFoundError(absl::StrCat(
                             "worker ", id, " was declared dead; join again")));
        p = parked_.erase(p);
      } else {
        ++p;
      }
    }
    const auto [requeued, dropped] = ReleaseTasksLocked(
        id, /*drop_if_alone=*/true,
        absl::StrCat("worker ", id, " dead; no live worker to re-issue to"));
    (void)run_->log->Event(
        {{"event", "worker_dead"},
         {"worker", id},
         {"round", CompletedRounds(*run_)},
         {"silent_s", silent_s},
         // Detection latency: how long past the last sign of life.
         {"detection_latency_s", silent_s},
         {"patience_s", absl::ToDoubleSeconds(patience)},
         {"requeued_tasks", requeued},
         {"dropped_tasks", dropped},
         {"workers", workers_.size()}});
  }
  if (!holders.empty()) DispatchLocked(out);
}

void Coordinator::RequestStop() {
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_requested_) return;
    stop_requested_ = true;
    for (Parked& p : parked_) {
      completions.emplace_back(std::move(p.done),
                               absl::UnavailableError("coordinator shutting down"));
    }
    parked_.clear();
    (void)run_->log->Event({{"event", "stop_requested"}});
    cv_.notify_all();
  }
  RunCompletions(completions);
}

bool Coordinator::stop_requested() const {
  std::unique_lock<std::mutex> lock(mu_);
  return stop_requested_;
}

absl::StatusOr<std::string> Coordinator::CheckpointLastCompletedRound() {
  std::unique_lock<std::mutex> lock(mu_);
  if (unsaved_ == nullptr) return std::string();
  absl::StatusOr<std::string> path = WriteCheckpoint(
      run_->log->dir(), *unsaved_, run_->config.checkpoint().keep());
  if (path.ok()) unsaved_.reset();
  return path;
}

void Coordinator::RecordChunkRejected(WorkerId worker, std::int64_t task,
                                      const std::string& rpc,
                                      const absl::Status& status) {
  (void)run_->log->LimitedEvent(absl::StrCat("chunk_rejected worker ", worker.value),
                                {{"event", "chunk_rejected"},
                                 {"rpc", rpc},
                                 {"task", task},
                                 {"worker", worker.value},
                                 {"code", absl::StatusCodeToString(status.code())},
                                 {"reason", std::string(status.message())}});
}

absl::StatusOr<Task> Coordinator::IssuedTask(WorkerId worker,
                                             std::int64_t task) const {
  std::unique_lock<std::mutex> lock(mu_);
  if (workers_.count(worker.value) == 0) {
    return absl::NotFoundError(absl::StrCat(
        "worker ", worker.value, " is not registered; join again"));
  }
  auto a = assigned_.find(task);
  if (a == assigned_.end()) {
    FEDSIM_RETURN_IF_ERROR(CheckTaskIssued(TaskId(task), run_->incarnation,
                                           TaskSequence(TaskId(last_issued_task_)) + 1));
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task, " is not open (its round is closed or it was not handed out)"));
  }
  if (a->second != worker.value) {
    return absl::PermissionDeniedError(absl::StrCat(
        "task ", task, " was issued to worker ", a->second, ", not to worker ",
        worker.value));
  }
  return issued_.at(task);
}

absl::Status Coordinator::Leave(WorkerId worker) {
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (workers_.erase(worker.value) == 0) {
      return absl::NotFoundError(
          absl::StrCat("worker ", worker.value, " is not registered"));
    }
    // Give the worker's unfinished tasks to others, in client order; they
    // wait for the next worker if none is left.
    const std::size_t requeued =
        ReleaseTasksLocked(worker.value, /*drop_if_alone=*/false, "").first;
    (void)run_->log->Event({{"event", "worker_left"},
                            {"worker", worker.value},
                            {"requeued_tasks", requeued}});
    DispatchLocked(completions);
    cv_.notify_all();
  }
  RunCompletions(completions);
  return absl::OkStatus();
}

void Coordinator::Shutdown() {
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    shutdown_ = true;
    for (Parked& p : parked_) {
      completions.emplace_back(std::move(p.done),
                               absl::UnavailableError("coordinator shutting down"));
    }
    parked_.clear();
    cv_.notify_all();
  }
  RunCompletions(completions);
}

int Coordinator::WaitForWorkersToLeave(absl::Duration timeout) {
  const absl::Time until = clock_->Now() + timeout;
  std::vector<Completion> completions;
  std::unique_lock<std::mutex> lock(mu_);
  while (!workers_.empty() && clock_->Now() < until) {
    clock_->WaitUntil(cv_, lock, clock_->Now() + options_.tick);
    // Tell workers that are still polling that the run is over.
    for (Parked& p : parked_) {
      PullReply reply;
      reply.run_finished = true;
      completions.emplace_back(std::move(p.done), reply);
    }
    parked_.clear();
    lock.unlock();
    RunCompletions(completions);
    lock.lock();
  }
  return static_cast<int>(workers_.size());
}

absl::StatusOr<RunSummary> Coordinator::Run() {
  const absl::Time start = clock_->Now();
  {
    std::unique_lock<std::mutex> lock(mu_);
    const absl::Time until = start + options_.start_timeout;
    // Round 0 starts once min_workers have joined *and* asked for work, so
    // that a slow worker's first poll is not beaten by the whole round.
    const auto ready = [&] {
      int n = 0;
      for (const auto& [id, w] : workers_) n += w.polled ? 1 : 0;
      return n;
    };
    while (ready() < options_.min_workers && !shutdown_ && !stop_requested_) {
      if (clock_->Now() >= until) {
        return absl::DeadlineExceededError(absl::StrCat(
            "only ", workers_.size(), " of distributed.min_workers = ",
            options_.min_workers, " workers joined (", ready(),
            " polling) within ", absl::FormatDuration(options_.start_timeout)));
      }
      clock_->WaitUntil(cv_, lock, std::min(until, clock_->Now() + options_.tick));
    }
    if (options_.pin_clients) {
      std::vector<std::int64_t> clients(run_->experiment->num_clients());
      for (std::size_t k = 0; k < clients.size(); ++k) {
        clients[k] = static_cast<std::int64_t>(k);
      }
      AssignLocked(clients);
    }
  }
  DriveOptions options;
  options.clock = clock_;
  options.start = start;
  options.progress = progress_;
  // A graceful stop saves the last completed round (step) if no checkpoint
  // holds it (CheckpointLastCompletedRound).
  options.keep_unsaved = true;
  return Drive(*run_, *this, options);
}

absl::StatusOr<ClosedSteps> Coordinator::Step(CoordinatorRun& run) {
  return wall_ ? StepWall(run) : StepRound(run);
}

absl::StatusOr<ClosedSteps> Coordinator::StepRound(CoordinatorRun& run) {
  Engine& engine = *run.engine;
  std::vector<Completion> completions;
  absl::Time round_deadline;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_) return absl::CancelledError("coordinator shut down");
    if (stop_requested_) return StoppedError(CompletedRounds(run));
    std::vector<Task> tasks = engine.TakeTasks();
    if (stateful_) {
      // Each task carries its client's state as the round begins (a round's
      // tasks have distinct clients); re-issued copies carry the same
      // state, so a re-run gives the same result.
      for (Task& t : tasks) {
        t.client_state = std::make_shared<const ClientState>(run.client_states[t.client.value]);
      }
    }
    issued_.clear();
    assigned_.clear();
    for (const Task& t : tasks) {
      issued_[t.id.value] = t;
      last_issued_task_ = std::max(last_issued_task_, t.id.value);
    }
    pending_.assign(tasks.begin(), tasks.end());
    accepting_ = true;
    round_deadline = clock_->Now() + options_.round_deadline;
    DispatchLocked(completions);
  }
  RunCompletions(completions);
  while (true) {
    std::unique_lock<std::mutex> lock(mu_);
    if (shutdown_) return absl::CancelledError("coordinator shut down");
    if (stop_requested_) {
      // The open round is abandoned: the last completed one is what a
      // checkpoint holds, and a resumed run redoes this one.
      return AbandonForStop(lock, completions, CompletedRounds(run));
    }
    const absl::Time now = clock_->Now();
    ExpireLocked(now, completions);
    DetectDeadWorkersLocked(now, completions);
    // Fail fast (RELIABILITY 1): a quorum that can no longer be reached
    // ends the round now, not at the deadline.
    if (engine.ReadyToClose() || now >= round_deadline) {
      accepting_ = false;
      pending_.clear();
      assigned_.clear();
      break;
    }
    if (completions.empty()) {
      clock_->WaitUntil(cv_, lock, std::min(round_deadline, now + options_.tick));
    }
    if (!completions.empty()) {
      lock.unlock();
      RunCompletions(completions);
      lock.lock();
    }
  }
  RunCompletions(completions);
  // No handler touches the engine while accepting_ is false: the
  // aggregation runs without the lock.
  ClosedSteps closed;
  FEDSIM_ASSIGN_OR_RETURN(closed.reports, engine.Close());
  closed.done = engine.done();
  return closed;
}

absl::StatusOr<ClosedSteps> Coordinator::StepWall(CoordinatorRun& run) {
  Engine& engine = *run.engine;
  const double tpu = static_cast<double>(run.config.async().ticks_per_unit());
  // A task open this long is given up on (a stalled client), as a round's
  // task at the round deadline.
  const auto task_limit = static_cast<Tick>(
      std::floor(absl::ToDoubleSeconds(options_.round_deadline) * tpu));
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!wall_start_.has_value()) {
      // The run's time 0: every client's first task goes out now.
      wall_start_ = clock_->Now();
      accepting_ = true;
      issued_.clear();
      assigned_.clear();
      pending_.clear();
      SyncWallTasksLocked();
      DispatchLocked(completions);
    }
  }
  RunCompletions(completions);
  while (true) {
    ClosedSteps closed;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (shutdown_) return absl::CancelledError("coordinator shut down");
      if (stop_requested_) return AbandonForStop(lock, completions, run.steps_logged);
      const Tick now = WallTicksLocked();
      // A window ending now still takes a result received now.
      engine.AdvanceTo(now, task_limit);
      const absl::Time wall_now = clock_->Now();
      ExpireLocked(wall_now, completions);
      DetectDeadWorkersLocked(wall_now, completions);
      closed.done = engine.done();
      if (closed.done) {
        pending_.clear();  // nothing more is handed out
      } else {
        SyncWallTasksLocked();
        DispatchLocked(completions);
      }
      // Cheap: the steps were taken as results came; their evaluation and
      // logging (Publish) run without the lock.
      FEDSIM_ASSIGN_OR_RETURN(closed.reports, engine.Close());
      if (closed.reports.empty() && !closed.done && completions.empty()) {
        // Sleep until woken (a push, a join), the next window's end or the
        // next tick, whichever comes first.
        absl::Time until = wall_now + options_.tick;
        if (const std::optional<Tick> deadline = engine.NextDeadline(); deadline.has_value()) {
          // Until one tick past the window's end (AdvanceTo closes windows
          // ending strictly before now).
          until = std::min(until, *wall_start_ + absl::Seconds(
                                                     static_cast<double>(*deadline + 1) / tpu));
        }
        clock_->WaitUntil(cv_, lock, until);
        continue;
      }
    }
    RunCompletions(completions);
    return closed;
  }
}

void Coordinator::Published(CoordinatorRun& run, const StepReport& report,
                            std::shared_ptr<const CheckpointData> unsaved) {
  std::unique_lock<std::mutex> lock(mu_);
  // What a graceful stop saves if no checkpoint holds this round or step.
  run.steps_logged = report.row.round + 1;
  unsaved_ = std::move(unsaved);
}

void Coordinator::Finish(CoordinatorRun& /*run*/) {
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    accepting_ = false;
    pending_.clear();
    EndRunLocked(completions);
  }
  RunCompletions(completions);
}

void Coordinator::EndRunLocked(std::vector<Completion>& completions) {
  finished_ = true;
  for (Parked& p : parked_) {
    PullReply reply;
    reply.run_finished = true;
    completions.emplace_back(std::move(p.done), reply);
  }
  parked_.clear();
}

absl::Status Coordinator::AbandonForStop(std::unique_lock<std::mutex>& lock,
                                         std::vector<Completion>& completions,
                                         std::int64_t round) {
  accepting_ = false;
  pending_.clear();
  assigned_.clear();
  lock.unlock();
  RunCompletions(completions);
  return StoppedError(round);
}

}  // namespace fedsim
