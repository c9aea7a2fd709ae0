#include "server/coordinator/coordinator.h"

// The coordinator as the distributed runtime's TaskExecutor (drive.h):
// waiting for the workers, each round's (step's) hand-out and wait, and the
// wall clock's continuous steps.

#include <algorithm>
#include <cmath>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace fedsim {
namespace {

absl::Status StoppedError(std::int64_t round) {
  return absl::CancelledError(
      absl::StrCat("stopped by request before round ", round, " completed"));
}

}  // namespace

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
  queue_.Forget([&engine](TaskId t) { return engine.TaskOpen(t); });
  for (Task& t : tasks) {
    if (!engine.TaskOpen(t.id)) continue;  // already superseded
    queue_.Add(std::move(t));
  }
}

absl::StatusOr<RunSummary> Coordinator::Run() {
  const absl::Time start = clock_->Now();
  {
    std::unique_lock<std::mutex> lock(mu_);
    const absl::Time until = start + options_.start_timeout;
    // Round 0 starts once min_workers have joined *and* asked for work, so
    // that a slow worker's first poll is not beaten by the whole round.
    const auto ready = [&] { return workers_.polled(); };
    while (ready() < options_.min_workers && !shutdown_ && !stop_requested_) {
      if (clock_->Now() >= until) {
        return absl::DeadlineExceededError(absl::StrCat(
            "only ", workers_.size(), " of distributed.min_workers = ",
            options_.min_workers, " workers joined (", ready(),
            " polling) within ", absl::FormatDuration(options_.start_timeout)));
      }
      clock_->WaitUntil(cv_, lock, std::min(until, clock_->Now() + options_.tick));
    }
    if (workers_.pinning()) {
      std::vector<std::int64_t> clients(run_->experiment->num_clients());
      for (std::size_t k = 0; k < clients.size(); ++k) {
        clients[k] = static_cast<std::int64_t>(k);
      }
      workers_.Pin(clients);
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
    queue_.Publish(tasks);
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
    queue_.Expire(now, completions);
    DetectDeadWorkersLocked(now, completions);
    // Fail fast (RELIABILITY 1): a quorum that can no longer be reached
    // ends the round now, not at the deadline.
    if (engine.ReadyToClose() || now >= round_deadline) {
      accepting_ = false;
      queue_.ClearPending();
      queue_.ClearAssigned();
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
      queue_.Publish({});
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
      queue_.Expire(wall_now, completions);
      DetectDeadWorkersLocked(wall_now, completions);
      closed.done = engine.done();
      if (closed.done) {
        queue_.ClearPending();  // nothing more is handed out
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
    queue_.ClearPending();
    EndRunLocked(completions);
  }
  RunCompletions(completions);
}

void Coordinator::EndRunLocked(std::vector<Completion>& completions) {
  finished_ = true;
  PullReply reply;
  reply.run_finished = true;
  queue_.FinishAll(reply, completions);
}

absl::Status Coordinator::AbandonForStop(std::unique_lock<std::mutex>& lock,
                                         std::vector<Completion>& completions,
                                         std::int64_t round) {
  accepting_ = false;
  queue_.ClearPending();
  queue_.ClearAssigned();
  lock.unlock();
  RunCompletions(completions);
  return StoppedError(round);
}

}  // namespace fedsim
