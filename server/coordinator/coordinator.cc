#include "server/coordinator/coordinator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "algorithms/registry.h"
#include "common/base/status_macros.h"
#include "server/coordinator/validate_update.h"

namespace fedsim {
namespace {

WorkerRegistry::Options RegistryOptions(const CoordinatorOptions& o) {
  WorkerRegistry::Options r;
  r.first_id = o.first_worker_id;
  r.max_workers = o.max_workers;
  r.slowdown = o.worker_slowdown;
  r.pin_clients = o.pin_clients;
  return r;
}

absl::Status NotRegistered(WorkerId worker) {
  return absl::NotFoundError(
      absl::StrCat("worker ", worker.value, " is not registered; join again"));
}

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options, CoordinatorRun* run,
                         ProgressFn progress)
    : options_(options),
      clock_(options.clock),
      run_(run),
      progress_(std::move(progress)),
      wall_(run->engine->kind() == EngineKind::kWallClock),
      stateful_(ClientsKeepState(run->config)),
      layout_(ClientStateLayoutOf(run->config, run->experiment->num_parameters())),
      workers_(RegistryOptions(options)) {}

Coordinator::~Coordinator() { Shutdown(); }

bool Coordinator::IsRegistered(WorkerId worker) const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_.Find(worker.value) != nullptr;
}

int Coordinator::num_workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(workers_.size());
}

double Coordinator::WorkerSlowdown(WorkerId worker) const {
  std::lock_guard<std::mutex> lock(mu_);
  const WorkerRegistry::Worker* w = workers_.Find(worker.value);
  return w == nullptr ? 1.0 : w->slowdown;
}

bool Coordinator::OpenLocked(TaskId task) const {
  return accepting_ && run_->engine->TaskOpen(task);
}

void Coordinator::DispatchLocked(std::vector<Completion>& out) {
  // A finished wall-clock run hands out nothing more.
  if (wall_ && run_->engine->done()) return;
  queue_.Dispatch(
      [this](std::int64_t worker, ClientId client) { return workers_.Eligible(worker, client); },
      [this](std::int64_t worker) {
        // The worker's silence is measured from the hand-out, not from when
        // its poll started waiting.
        if (WorkerRegistry::Worker* w = workers_.Find(worker)) w->last_seen = clock_->Now();
      },
      out);
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
    FEDSIM_ASSIGN_OR_RETURN(const WorkerRegistry::Joined j,
                            workers_.Join(name, worker_name, clock_->Now()));
    std::size_t requeued = 0;
    if (j.previous != 0) {
      // The same worker again (a restarted process): its earlier
      // registration ended, and the tasks it held go back to the queue, to
      // be handed out once more (to it or another worker) and counted once.
      queue_.FinishWorker(j.previous,
                          absl::NotFoundError(absl::StrCat(
                              "worker ", j.previous, " joined again under a new id; join again")),
                          completions);
      requeued = ReleaseTasksLocked(j.previous, /*drop_if_alone=*/false, "",
                                    /*reassign=*/false)
                     .first;
    }
    joined = j.id;
    nlohmann::json event = {{"event", j.previous != 0 ? "worker_rejoined" : "worker_joined"},
                            {"worker", j.id.value},
                            {"name", name},
                            {"workers", workers_.size()}};
    if (!options_.worker_slowdown.empty()) event["slowdown"] = j.slowdown;
    if (j.previous != 0) {
      event["previous_worker"] = j.previous;
      event["requeued_tasks"] = requeued;
    }
    (void)run_->log->Event(event);
    workers_.PinWaiting();
    DispatchLocked(completions);
    cv_.notify_all();
  }
  RunCompletions(completions);
  return joined;
}

std::int64_t Coordinator::PullTask(WorkerId worker, absl::Time deadline, PullCallback done) {
  std::vector<Completion> completions;
  std::int64_t pull_id = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    WorkerRegistry::Worker* w = workers_.Find(worker.value);
    if (w == nullptr) {
      pull_id = queue_.NextPullId();
      completions.emplace_back(std::move(done), NotRegistered(worker));
    } else if (shutdown_ || stop_requested_) {
      pull_id = queue_.NextPullId();
      completions.emplace_back(std::move(done),
                               absl::UnavailableError("coordinator shutting down"));
    } else if (finished_) {
      pull_id = queue_.NextPullId();
      PullReply reply;
      reply.run_finished = true;
      completions.emplace_back(std::move(done), reply);
    } else {
      w->last_seen = clock_->Now();
      if (!w->polled) {
        w->polled = true;
        cv_.notify_all();
      }
      // Never hold a poll past the coordinator's own limit.
      pull_id = queue_.Park(worker, std::min(deadline, clock_->Now() + options_.long_poll),
                            std::move(done));
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
    queue_.Cancel(pull_id, completions);
  }
  RunCompletions(completions);
}

absl::StatusOr<bool> Coordinator::PushResult(WorkerId worker, ClientResult result) {
  std::unique_lock<std::mutex> lock(mu_);
  WorkerRegistry::Worker* w = workers_.Find(worker.value);
  if (w == nullptr) {
    absl::Status s = NotRegistered(worker);
    LogRejectedLocked(worker.value, result.task.value, result.client.value, s, true);
    return s;
  }
  w->last_seen = clock_->Now();
  if (stop_requested_) {
    // Not stale: a resumed coordinator issues the task again.
    return absl::UnavailableError("coordinator shutting down");
  }
  const std::int64_t task_id = result.task.value;
  const std::int64_t client_id = result.client.value;
  if (!accepting_) {
    // Between rounds the drive loop owns the engine; classify here.
    absl::Status s = CheckTaskIssued(result.task, run_->incarnation,
                                     TaskSequence(TaskId(queue_.last_issued())) + 1);
    if (s.ok()) {
      s = wall_ && run_->engine->done()
              ? absl::FailedPreconditionError(absl::StrCat("task ", task_id, ": the run has ended"))
              : absl::FailedPreconditionError(
                    absl::StrCat("task ", task_id, " belongs to a closed round (stale)"));
    }
    LogRejectedLocked(worker.value, task_id, client_id, s, true);
    return s;
  }
  if (const std::optional<std::int64_t> holder = queue_.AssignedTo(task_id);
      holder.has_value() && *holder != worker.value) {
    absl::Status s = absl::PermissionDeniedError(absl::StrCat(
        "task ", task_id, " was issued to worker ", *holder, ", not to worker ", worker.value));
    LogRejectedLocked(worker.value, task_id, client_id, s, true);
    return s;
  }
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
  const std::string where = absl::StrCat("result of task ", task, ", client ", result.client.value);
  if (!stateful_) {
    if (result.client_state.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": has a client_state; this algorithm keeps no client state"));
    }
    return absl::OkStatus();
  }
  // Only the first result of a task that is still open commits: a
  // duplicate, a stale result or one for a dropped task changes nothing
  // (the engine classifies it next).
  const Task* issued = queue_.Issued(task);
  if (issued == nullptr || !run_->engine->TaskOpen(TaskId(task)) ||
      issued->client != result.client) {
    return absl::OkStatus();
  }
  if (!result.client_state.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": has no client_state; this algorithm keeps client state and every "
               "result carries it"));
  }
  FEDSIM_RETURN_IF_ERROR(CheckClientState(*result.client_state, layout_, where));
  // Committed as the embedded runtime does when the client's local work
  // ran, whatever the engine then decides about the update
  // (docs/reliability.md, "Where client state lives").
  run_->client_states[result.client.value] = *result.client_state;
  return absl::OkStatus();
}

void Coordinator::RecordRejectedPush(WorkerId worker, std::int64_t task, std::int64_t client,
                                     const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  // A malformed result for a task the worker holds ends the task (logged
  // in full); for any other task it changes nothing (rate limited).
  const std::optional<std::int64_t> holder = queue_.AssignedTo(task);
  const bool holds = accepting_ && holder.has_value() && *holder == worker.value;
  LogRejectedLocked(worker.value, task, client, status, !holds);
  if (workers_.Find(worker.value) != nullptr) FailRejectedTaskLocked(worker.value, task, status);
}

void Coordinator::LogRejectedLocked(std::int64_t worker, std::int64_t task, std::int64_t client,
                                    const absl::Status& status, bool limited) {
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
  const std::optional<std::int64_t> holder = queue_.AssignedTo(task);
  if (!holder.has_value() || *holder != worker) return;
  run_->engine->Drop(TaskId(task),
                     absl::StrCat("result rejected (", absl::StatusCodeToString(status.code()),
                                  "): ", std::string(status.message())),
                     WallTicksLocked());
  cv_.notify_all();  // the quorum may have become unreachable
}

absl::Status Coordinator::Heartbeat(WorkerId worker) {
  std::unique_lock<std::mutex> lock(mu_);
  WorkerRegistry::Worker* w = workers_.Find(worker.value);
  if (w == nullptr) return NotRegistered(worker);
  w->last_seen = clock_->Now();
  return absl::OkStatus();
}

std::pair<std::size_t, std::size_t> Coordinator::ReleaseTasksLocked(std::int64_t worker,
                                                                    bool drop_if_alone,
                                                                    const std::string& reason,
                                                                    bool reassign) {
  const std::vector<Task> requeue =
      queue_.Unassign(worker, [this](TaskId t) { return OpenLocked(t); });
  // Workers leaving after the end keep nothing to hand over.
  if (workers_.pinning() && reassign && !finished_) {
    const std::vector<std::int64_t> orphans = workers_.Reassign(worker);
    if (!orphans.empty()) {
      (void)run_->log->Event(
          {{"event", "clients_reassigned"}, {"worker", worker}, {"clients", orphans}});
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
  queue_.Requeue(requeue);
  return {requeue.size(), 0};
}

void Coordinator::DetectDeadWorkersLocked(absl::Time now, std::vector<Completion>& out) {
  const absl::Duration patience = options_.heartbeat_interval * options_.heartbeat_patience;
  // A worker that delivered its results holds nothing: its silence (a long
  // poll waiting for the next round) is not death.
  std::vector<std::int64_t> holders = queue_.Holders([this](TaskId t) { return OpenLocked(t); });
  if (wall_ && workers_.pinning() && accepting_) {
    // On the wall clock a worker's pinned clients always have work for it:
    // an owner that neither holds a task nor waits in a poll must poll again
    // within the patience, or its clients would wait for it forever.
    for (const auto& [client, owner] : workers_.owners()) {
      if (std::find(holders.begin(), holders.end(), owner) != holders.end()) continue;
      if (!queue_.Polling(owner)) holders.push_back(owner);
    }
  }
  for (std::int64_t id : holders) {
    const WorkerRegistry::Worker* w = workers_.Find(id);
    if (w == nullptr || now - w->last_seen <= patience) continue;
    const double silent_s = absl::ToDoubleSeconds(now - w->last_seen);
    workers_.Remove(id);
    queue_.FinishWorker(
        id, absl::NotFoundError(absl::StrCat("worker ", id, " was declared dead; join again")),
        out);
    const auto [requeued, dropped] = ReleaseTasksLocked(
        id, /*drop_if_alone=*/true,
        absl::StrCat("worker ", id, " dead; no live worker to re-issue to"));
    (void)run_->log->Event({{"event", "worker_dead"},
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
    queue_.FinishAll(absl::UnavailableError("coordinator shutting down"), completions);
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
  absl::StatusOr<std::string> path =
      WriteCheckpoint(run_->log->dir(), *unsaved_, run_->config.checkpoint().keep());
  if (path.ok()) unsaved_.reset();
  return path;
}

void Coordinator::RecordChunkRejected(WorkerId worker, std::int64_t task, const std::string& rpc,
                                      const absl::Status& status) {
  (void)run_->log->LimitedEvent(absl::StrCat("chunk_rejected worker ", worker.value),
                                {{"event", "chunk_rejected"},
                                 {"rpc", rpc},
                                 {"task", task},
                                 {"worker", worker.value},
                                 {"code", absl::StatusCodeToString(status.code())},
                                 {"reason", std::string(status.message())}});
}

absl::StatusOr<Task> Coordinator::IssuedTask(WorkerId worker, std::int64_t task) const {
  std::unique_lock<std::mutex> lock(mu_);
  if (workers_.Find(worker.value) == nullptr) return NotRegistered(worker);
  const std::optional<std::int64_t> holder = queue_.AssignedTo(task);
  if (!holder.has_value()) {
    FEDSIM_RETURN_IF_ERROR(CheckTaskIssued(TaskId(task), run_->incarnation,
                                           TaskSequence(TaskId(queue_.last_issued())) + 1));
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task, " is not open (its round is closed or it was not handed out)"));
  }
  if (*holder != worker.value) {
    return absl::PermissionDeniedError(absl::StrCat(
        "task ", task, " was issued to worker ", *holder, ", not to worker ", worker.value));
  }
  return *queue_.Issued(task);
}

absl::Status Coordinator::Leave(WorkerId worker) {
  std::vector<Completion> completions;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!workers_.Remove(worker.value)) {
      return absl::NotFoundError(absl::StrCat("worker ", worker.value, " is not registered"));
    }
    // Give the worker's unfinished tasks to others, in client order; they
    // wait for the next worker if none is left.
    const std::size_t requeued =
        ReleaseTasksLocked(worker.value, /*drop_if_alone=*/false, "").first;
    (void)run_->log->Event(
        {{"event", "worker_left"}, {"worker", worker.value}, {"requeued_tasks", requeued}});
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
    queue_.FinishAll(absl::UnavailableError("coordinator shutting down"), completions);
    cv_.notify_all();
  }
  RunCompletions(completions);
}

int Coordinator::WaitForWorkersToLeave(absl::Duration timeout) {
  const absl::Time until = clock_->Now() + timeout;
  std::vector<Completion> completions;
  std::unique_lock<std::mutex> lock(mu_);
  while (!workers_.empty() && clock_->Now() < until) {
    clock_->WaitUntil(cv_, lock, std::min(until, clock_->Now() + options_.tick));
    // Tell workers that are still polling that the run is over.
    PullReply reply;
    reply.run_finished = true;
    queue_.FinishAll(reply, completions);
    lock.unlock();
    RunCompletions(completions);
    lock.lock();
  }
  return static_cast<int>(workers_.size());
}

}  // namespace fedsim
