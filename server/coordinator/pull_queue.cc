#include "server/coordinator/pull_queue.h"

#include <algorithm>

namespace fedsim {

std::int64_t PullQueue::Park(WorkerId worker, absl::Time deadline, Callback done) {
  const std::int64_t id = next_pull_id_++;
  parked_.push_back(Parked{id, worker, deadline, std::move(done)});
  return id;
}

bool PullQueue::Cancel(std::int64_t pull_id, std::vector<Completion>& out) {
  auto it = std::find_if(parked_.begin(), parked_.end(),
                         [&](const Parked& p) { return p.id == pull_id; });
  if (it == parked_.end()) return false;
  out.emplace_back(std::move(it->done), absl::CancelledError("poll cancelled"));
  parked_.erase(it);
  return true;
}

void PullQueue::FinishAll(const absl::StatusOr<PullReply>& reply,
                          std::vector<Completion>& out) {
  for (Parked& p : parked_) out.emplace_back(std::move(p.done), reply);
  parked_.clear();
}

void PullQueue::FinishWorker(std::int64_t worker, const absl::Status& status,
                             std::vector<Completion>& out) {
  for (auto p = parked_.begin(); p != parked_.end();) {
    if (p->worker.value == worker) {
      out.emplace_back(std::move(p->done), status);
      p = parked_.erase(p);
    } else {
      ++p;
    }
  }
}

bool PullQueue::Polling(std::int64_t worker) const {
  return std::any_of(parked_.begin(), parked_.end(),
                     [&](const Parked& p) { return p.worker.value == worker; });
}

void PullQueue::Expire(absl::Time now, std::vector<Completion>& out) {
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

void PullQueue::Dispatch(const std::function<bool(std::int64_t, ClientId)>& eligible,
                         const std::function<void(std::int64_t)>& handed,
                         std::vector<Completion>& out) {
  // Polls in arrival order; each takes the first pending task it may run
  // (pending tasks are in client order).
  for (auto p = parked_.begin(); p != parked_.end() && !pending_.empty();) {
    auto t = std::find_if(pending_.begin(), pending_.end(), [&](const Task& task) {
      return eligible(p->worker.value, task.client);
    });
    if (t == pending_.end()) {
      ++p;
      continue;
    }
    Task task = std::move(*t);
    pending_.erase(t);
    assigned_[task.id.value] = p->worker.value;
    handed(p->worker.value);
    PullReply reply;
    reply.task = std::move(task);
    out.emplace_back(std::move(p->done), std::move(reply));
    p = parked_.erase(p);
  }
}

void PullQueue::Publish(const std::vector<Task>& tasks) {
  issued_.clear();
  assigned_.clear();
  for (const Task& t : tasks) {
    issued_[t.id.value] = t;
    last_issued_ = std::max(last_issued_, t.id.value);
  }
  pending_.assign(tasks.begin(), tasks.end());
}

void PullQueue::Add(Task task) {
  issued_[task.id.value] = task;
  last_issued_ = std::max(last_issued_, task.id.value);
  pending_.push_back(std::move(task));
}

void PullQueue::Forget(const std::function<bool(TaskId)>& open) {
  for (auto it = assigned_.begin(); it != assigned_.end();) {
    it = open(TaskId(it->first)) ? std::next(it) : assigned_.erase(it);
  }
  for (auto it = issued_.begin(); it != issued_.end();) {
    it = open(TaskId(it->first)) ? std::next(it) : issued_.erase(it);
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = open(it->id) ? std::next(it) : pending_.erase(it);
  }
}

std::optional<std::int64_t> PullQueue::AssignedTo(std::int64_t task) const {
  auto it = assigned_.find(task);
  if (it == assigned_.end()) return std::nullopt;
  return it->second;
}

const Task* PullQueue::Issued(std::int64_t task) const {
  auto it = issued_.find(task);
  return it == issued_.end() ? nullptr : &it->second;
}

std::vector<Task> PullQueue::Unassign(std::int64_t worker,
                                      const std::function<bool(TaskId)>& open) {
  std::vector<Task> out;
  for (auto it = assigned_.begin(); it != assigned_.end();) {
    if (it->second != worker) {
      ++it;
      continue;
    }
    // Tasks whose result already arrived stay done.
    if (open(TaskId(it->first))) out.push_back(issued_.at(it->first));
    it = assigned_.erase(it);
  }
  return out;
}

void PullQueue::Requeue(const std::vector<Task>& tasks) {
  for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) pending_.push_front(*it);
}

std::vector<std::int64_t> PullQueue::Holders(const std::function<bool(TaskId)>& open) const {
  std::vector<std::int64_t> holders;
  for (const auto& [task, worker] : assigned_) {
    if (!open(TaskId(task))) continue;
    if (std::find(holders.begin(), holders.end(), worker) == holders.end()) {
      holders.push_back(worker);
    }
  }
  return holders;
}

}  // namespace fedsim
