// File: server/coordinator/coordinator.h
//
// The distributed coordinator: a transport-agnostic, thread-safe front of
// the run's Engine (engine.h) for worker processes. gRPC handlers
// (server/grpc) call Join / PullTask / PushResult / Leave; none of them
// blocks. PullTask is a long poll: if no task is pending its callback is
// parked and invoked later from the run thread, when a task appears, when
// the poll's deadline passes (an empty reply with a retry hint), or when
// the run ends.
//
// The pieces: WorkerRegistry (worker_registry.h) knows the workers,
// PullQueue (pull_queue.h) hands tasks to polls, the drive loop (drive.h)
// steps the engine with this coordinator as its TaskExecutor
// (coordinator_drive.cc), and checkpoint_policy.h saves the run.
//
// Stateful algorithms (ClientsKeepState): the coordinator owns every
// client's state (CoordinatorRun::client_states, checkpointed with the
// run). A task carries its client's state as the round began; the result
// brings the updated state back, which is checked (known names, exact
// sizes, finite values) and committed when the result arrives for the open
// task, whatever the engine then decides about the update (the embedded
// runtime keeps a client's state once its local work ran). A task whose
// result never arrives (timed out, dropped, its round abandoned) leaves the
// state as it was. Any worker can serve any client.
//
// Workers are identified by the name they join under: a join under the
// name of a registered worker (a restarted process) replaces that
// registration; its open tasks are re-issued (worker_rejoined).
//
// Run() drives the run on the calling thread: wait (bounded) for
// min_workers, then for every step publish its tasks, wait until every
// task is resolved or the deadline passes, and close the step. The
// aggregation runs on that thread without the lock, so handlers stay fast.
//
// Thread safety: all public methods are thread-safe.
#ifndef FEDSIM_SERVER_COORDINATOR_COORDINATOR_H_
#define FEDSIM_SERVER_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/base/task.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/drive.h"
#include "server/coordinator/progress.h"
#include "server/coordinator/pull_queue.h"
#include "server/coordinator/run_builder.h"
#include "server/coordinator/worker_registry.h"

namespace fedsim {

struct CoordinatorOptions {
  // Every deadline, last-seen time and wall-clock tick is read from it;
  // tests pass a fake one (tests/testing/fake_clock.h). Must outlive the
  // coordinator.
  Clock* clock = Clock::Real();
  absl::Duration round_deadline = absl::Minutes(10);
  int min_workers = 1;
  absl::Duration start_timeout = absl::Minutes(2);
  absl::Duration long_poll = absl::Seconds(10);
  // How often the round thread wakes to expire polls and check deadlines.
  absl::Duration tick = absl::Milliseconds(50);
  // When the run starts, client k is pinned to the (k mod W)-th of the W
  // joined workers (by worker id) and its tasks go only there. A worker that
  // leaves hands its clients to the others, round robin. Not needed for
  // client state, which the coordinator owns (runtime/distributed.cc leaves
  // it off); kept for placement experiments.
  bool pin_clients = false;
  // The id the first worker to join gets; later ones count up. A resumed
  // coordinator starts elsewhere, so that a worker of the previous
  // incarnation is never mistaken for a new one: it gets kNotFound and
  // joins again.
  std::int64_t first_worker_id = 1;
  // Dead-worker detection (RELIABILITY 3): a worker that holds a task and
  // neither polls, pushes nor sends a Heartbeat for heartbeat_patience x
  // heartbeat_interval is declared dead (worker_dead): it is unregistered
  // (its next call gets kNotFound and it joins again) and its tasks are
  // re-issued unchanged to the live workers, or dropped if none is left.
  absl::Duration heartbeat_interval = absl::Seconds(30);
  int heartbeat_patience = 2;
  // Most workers registered at once (distributed.max_workers); a Join past
  // it fails with kResourceExhausted.
  int max_workers = 1000;
  // distributed.worker_slowdown: the i-th worker to join (0-based, counting
  // distinct workers; a rejoin keeps its factor) gets factor
  // worker_slowdown[i mod size] (empty: 1), sent in its JoinResponse.
  std::vector<double> worker_slowdown;
};

class Coordinator : private TaskExecutor {
 public:
  using PullCallback = PullQueue::Callback;

  // `run` must outlive the coordinator.
  Coordinator(const CoordinatorOptions& options, CoordinatorRun* run,
              ProgressFn progress = nullptr);
  ~Coordinator();

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Registers a worker under `name` (the certificate identity under mTLS,
  // else the name asked for) and `worker_name` (the name the worker asked
  // for; empty or equal to `name` when the same). A join under the identity
  // of a registered worker is that worker restarted: the earlier id is
  // unregistered (its parked polls get kNotFound), its open tasks are
  // re-queued, and worker_rejoined is logged. Fails with kUnavailable once
  // the run has ended.
  absl::StatusOr<WorkerId> Join(const std::string& name,
                                const std::string& worker_name = "");

  // Long poll. `done` is called exactly once, possibly before PullTask
  // returns, with a task, an empty reply (retry later), run_finished, or an
  // error: kNotFound for an unknown worker, kCancelled after CancelPull,
  // kUnavailable on shutdown. Returns an id for CancelPull.
  std::int64_t PullTask(WorkerId worker, absl::Time deadline,
                        PullCallback done);
  // Finishes a parked poll with kCancelled (its caller went away). A poll
  // that already finished is left alone.
  void CancelPull(std::int64_t pull_id);

  // Delivers a result. Returns true if it duplicates an accepted one (the
  // push is then a no-op). Errors: kNotFound (unknown worker or task),
  // kPermissionDenied (task issued to another worker), kFailedPrecondition
  // (stale), kInvalidArgument (malformed update).
  absl::StatusOr<bool> PushResult(WorkerId worker, ClientResult result);

  // Records a push that the transport rejected before decoding it fully
  // (malformed bytes, NaN/Inf), so that every rejection is in events.jsonl.
  void RecordRejectedPush(WorkerId worker, std::int64_t task,
                          std::int64_t client, const absl::Status& status);

  // The task `task` if it was handed to `worker` in the open round (the
  // transport serves its large fields in chunks). Errors: kNotFound (unknown
  // worker or task), kPermissionDenied (handed to another worker),
  // kFailedPrecondition (not handed out, or its round is closed).
  absl::StatusOr<Task> IssuedTask(WorkerId worker, std::int64_t task) const;
  // Records a chunk the transport rejected (FetchChunk / UploadChunk) in
  // events.jsonl as chunk_rejected.
  void RecordChunkRejected(WorkerId worker, std::int64_t task,
                           const std::string& rpc, const absl::Status& status);
  // Unregisters a worker; its unfinished tasks go back to the queue.
  absl::Status Leave(WorkerId worker);

  // A sign of life from a worker training a long task. kNotFound for an
  // unknown (or declared dead) worker: it joins again.
  absl::Status Heartbeat(WorkerId worker);

  // Graceful stop (SIGTERM): refuses new joins and tasks, answers parked
  // polls with kUnavailable and makes Run() return kCancelled at its next
  // tick, abandoning the open round (a resumed run redoes it).
  void RequestStop();
  // After a stop: writes a checkpoint of the last completed round unless
  // the newest one on disk already is that round. Returns the path ("" if
  // nothing was written because it was already there).
  absl::StatusOr<std::string> CheckpointLastCompletedRound();
  bool stop_requested() const;

  // Drives the run to the end (see the file comment; the drive loop of
  // drive.h, with this coordinator as its TaskExecutor) and completes the
  // run directory. Fails with kDeadlineExceeded if min_workers do not join
  // in time, kCancelled after RequestStop or Shutdown, or with the
  // engine's error.
  absl::StatusOr<RunSummary> Run();

  // Ends the run early: parked polls get kUnavailable, Run() returns
  // kCancelled at the next tick.
  void Shutdown();

  // Waits until every worker has left or `timeout` passes; returns how many
  // are still registered.
  int WaitForWorkersToLeave(absl::Duration timeout);

  int num_workers() const;
  // Whether `worker` is registered (joined, not left, not declared dead,
  // not replaced by a rejoin under its name).
  bool IsRegistered(WorkerId worker) const;
  // The slowdown factor of a registered worker (1 if unknown).
  double WorkerSlowdown(WorkerId worker) const;
  // Length of the model's parameter vector (what every update must have).
  std::int64_t num_parameters() const { return run_->experiment->num_parameters(); }

 private:
  using Completion = PullQueue::Completion;

  // Hands pending tasks to parked polls; collects the callbacks to run
  // after the lock is released.
  void DispatchLocked(std::vector<Completion>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void RunCompletions(std::vector<Completion>& completions);
  // The run is over: no more joins, parked polls get run_finished.
  void EndRunLocked(std::vector<Completion>& completions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A graceful stop abandons the open round (step): nothing more is handed
  // out or accepted. Releases `lock`, runs `completions` and returns the
  // stop's status for `round`.
  absl::Status AbandonForStop(std::unique_lock<std::mutex>& lock,
                              std::vector<Completion>& completions, std::int64_t round);

  // TaskExecutor (drive.h): the workers execute the tasks.
  absl::StatusOr<ClosedSteps> Step(CoordinatorRun& run) override;
  void Published(CoordinatorRun& run, const StepReport& report,
                 std::shared_ptr<const CheckpointData> unsaved) override;
  void Finish(CoordinatorRun& run) override;
  // A round (virtual-clock step): publish its tasks, wait until every task
  // is resolved, the quorum is unreachable or the round deadline passes,
  // then close it without the lock.
  absl::StatusOr<ClosedSteps> StepRound(CoordinatorRun& run);
  // The wall clock: steps happen as results arrive and windows end; this
  // thread queues the tasks they issue and returns the steps taken.
  absl::StatusOr<ClosedSteps> StepWall(CoordinatorRun& run);
  // Ticks of real time since the wall-clock run started; -1 before (and on
  // the virtual clock).
  Tick WallTicksLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the wall engine's new tasks to the queue (replacing a queued task
  // of the same client) and forgets tasks that are no longer open.
  void SyncWallTasksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `task` is still open in the engine (not answered, dropped or
  // superseded).
  bool OpenLocked(TaskId task) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes back the tasks handed to `worker` (which is no longer
  // registered): re-queued in client order, or, with `drop_if_alone` and no
  // worker left, dropped with `reason`. Returns how many were re-queued and
  // dropped; pinned clients move to other workers.
  // `reassign`: false when the worker rejoins under a new id, which then
  // takes over its clients.
  std::pair<std::size_t, std::size_t> ReleaseTasksLocked(
      std::int64_t worker, bool drop_if_alone, const std::string& reason,
      bool reassign = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Declares silent task holders dead (see CoordinatorOptions).
  void DetectDeadWorkersLocked(absl::Time now, std::vector<Completion>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A result the engine or the transport rejected ends its task (counted as
  // dropped, with the reason), so that a round whose quorum can no longer
  // be reached ends at once. Only for the worker the task was issued to.
  void FailRejectedTaskLocked(std::int64_t worker, std::int64_t task,
                              const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stateful runs: checks the client state a result brings back and, if
  // the task is open, commits it. kInvalidArgument for a missing or
  // malformed state (or a state in a stateless run).
  absl::Status CommitClientStateLocked(const ClientResult& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `limited`: a push the worker could repeat at will (for a task it does
  // not hold): rate limited per worker (RunLog::LimitedEvent).
  void LogRejectedLocked(std::int64_t worker, std::int64_t task,
                         std::int64_t client, const absl::Status& status, bool limited)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  Clock* const clock_;
  CoordinatorRun* const run_;
  const ProgressFn progress_;
  const bool wall_;                  // the run is on the wall clock
  const bool stateful_;              // ClientsKeepState(config)
  const ClientStateLayout layout_;   // what a client's state may hold

  // std::mutex, not absl::Mutex: Debian's Abseil is not built with TSan, so
  // its Mutex is invisible to the TSan tests (docs/architecture.md).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  WorkerRegistry workers_ ABSL_GUARDED_BY(mu_);
  PullQueue queue_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  // The state after the last completed round when its checkpoint was not
  // written (checkpoint.every > 1), for CheckpointLastCompletedRound.
  std::shared_ptr<const CheckpointData> unsaved_ ABSL_GUARDED_BY(mu_);
  // When the wall-clock run started (time 0 of its ticks).
  std::optional<absl::Time> wall_start_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_COORDINATOR_H_
