// File: server/coordinator/pull_queue.h
//
// The coordinator's hand-out of tasks: the tasks waiting for a worker (in
// client order), the long polls parked until one comes (a parked poll holds
// no thread: it is a callback), and the book of the tasks issued and whom
// each was handed to.
//
// Callbacks are never run here: every operation that finishes a poll
// appends (callback, reply) to `out`, for the caller to run once it has
// released its lock.
//
// Thread safety: not thread-safe; the coordinator calls it under its lock.
#ifndef FEDSIM_SERVER_COORDINATOR_PULL_QUEUE_H_
#define FEDSIM_SERVER_COORDINATOR_PULL_QUEUE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/task.h"

namespace fedsim {

// The answer to a long poll.
struct PullReply {
  std::optional<Task> task;
  bool run_finished = false;
  int retry_after_ms = 0;
};

class PullQueue {
 public:
  using Callback = absl::AnyInvocable<void(absl::StatusOr<PullReply>) &&>;
  using Completion = std::pair<Callback, absl::StatusOr<PullReply>>;

  // Parks a poll of `worker` until `deadline`; returns its id (Cancel).
  std::int64_t Park(WorkerId worker, absl::Time deadline, Callback done);
  // A new poll id for a poll answered at once.
  std::int64_t NextPullId() { return next_pull_id_++; }
  // Finishes parked poll `pull_id` with kCancelled; false if it is not
  // parked (already finished).
  bool Cancel(std::int64_t pull_id, std::vector<Completion>& out);
  // Finishes every parked poll with `reply` (run_finished, an error).
  void FinishAll(const absl::StatusOr<PullReply>& reply, std::vector<Completion>& out);
  // Finishes the parked polls of `worker` with `status`.
  void FinishWorker(std::int64_t worker, const absl::Status& status,
                    std::vector<Completion>& out);
  // Whether `worker` has a poll parked.
  bool Polling(std::int64_t worker) const;
  // Polls past their deadline get an empty reply (poll again at once).
  void Expire(absl::Time now, std::vector<Completion>& out);
  // Hands pending tasks to parked polls, polls in arrival order, each the
  // first pending task that `eligible(worker, client)` allows; records whom
  // each went to and calls `handed(worker)`.
  void Dispatch(const std::function<bool(std::int64_t, ClientId)>& eligible,
                const std::function<void(std::int64_t)>& handed,
                std::vector<Completion>& out);

  // A round's (step's) tasks: issued and pending; nothing assigned yet.
  void Publish(const std::vector<Task>& tasks);
  // One more issued task, pending at the back (the wall clock).
  void Add(Task task);
  void ClearPending() { pending_.clear(); }
  void ClearAssigned() { assigned_.clear(); }
  // Forgets every task, pending, assigned or issued, for which `open` is
  // false (answered, dropped, superseded).
  void Forget(const std::function<bool(TaskId)>& open);
  // The worker task `task` was handed to; nullopt if not handed out.
  std::optional<std::int64_t> AssignedTo(std::int64_t task) const;
  // The issued task `task`; null if not issued (or forgotten).
  const Task* Issued(std::int64_t task) const;
  // Takes back the tasks handed to `worker`: unassigns them and returns
  // those for which `open` holds, in client order (task id order).
  std::vector<Task> Unassign(std::int64_t worker, const std::function<bool(TaskId)>& open);
  // Puts `tasks` back at the front of the queue, in their order: the same
  // tasks, the same content, so results stay bit-identical.
  void Requeue(const std::vector<Task>& tasks);
  // The highest task id issued so far (0: none).
  std::int64_t last_issued() const { return last_issued_; }
  // Every worker that holds an assigned task.
  std::vector<std::int64_t> Holders(const std::function<bool(TaskId)>& open) const;

 private:
  struct Parked {
    std::int64_t id;
    WorkerId worker;
    absl::Time deadline;
    Callback done;
  };

  std::int64_t next_pull_id_ = 1;
  std::deque<Parked> parked_;
  std::deque<Task> pending_;
  // Task id -> the worker it was handed to.
  std::map<std::int64_t, std::int64_t> assigned_;
  std::map<std::int64_t, Task> issued_;
  std::int64_t last_issued_ = 0;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_PULL_QUEUE_H_
