#include "server/coordinator/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace fedsim {

WorkerRegistry::WorkerRegistry(Options options)
    : options_(std::move(options)), next_id_(std::max<std::int64_t>(options_.first_id, 1)) {}

absl::StatusOr<WorkerRegistry::Joined> WorkerRegistry::Join(const std::string& name,
                                                            const std::string& worker_name,
                                                            absl::Time now) {
  // The identity: the registered name (the certificate identity under
  // mTLS) and the name the worker asked for, if different.
  const std::string key =
      worker_name.empty() || worker_name == name ? name : absl::StrCat(name, "/", worker_name);
  Joined out;
  for (const auto& [id, w] : workers_) {
    if (w.key == key) out.previous = id;
  }
  if (out.previous == 0 && static_cast<std::int64_t>(workers_.size()) >= options_.max_workers) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Join: ", workers_.size(), " workers are registered; distributed.max_workers = ",
        options_.max_workers));
  }
  if (out.previous != 0) workers_.erase(out.previous);
  auto known = slowdown_of_.find(key);
  if (known == slowdown_of_.end()) {
    double factor = 1.0;
    if (!options_.slowdown.empty()) {
      factor = options_.slowdown[static_cast<std::size_t>(
          identities_ % static_cast<std::int64_t>(options_.slowdown.size()))];
    }
    ++identities_;
    known = slowdown_of_.emplace(key, factor).first;
  }
  out.slowdown = known->second;
  out.id = WorkerId(next_id_++);
  Worker& w = workers_[out.id.value];
  w.name = name;
  w.key = key;
  w.last_seen = now;
  w.slowdown = out.slowdown;
  if (out.previous != 0 && options_.pin_clients) {
    // The restarted worker keeps its clients (their speed is its speed).
    for (auto& [client, owner] : owner_) {
      if (owner == out.previous) owner = out.id.value;
    }
  }
  return out;
}

WorkerRegistry::Worker* WorkerRegistry::Find(std::int64_t id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

const WorkerRegistry::Worker* WorkerRegistry::Find(std::int64_t id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

bool WorkerRegistry::Remove(std::int64_t id) { return workers_.erase(id) > 0; }

int WorkerRegistry::polled() const {
  int n = 0;
  for (const auto& [id, w] : workers_) n += w.polled ? 1 : 0;
  return n;
}

void WorkerRegistry::Pin(const std::vector<std::int64_t>& clients) {
  if (workers_.empty()) {
    unowned_.insert(unowned_.end(), clients.begin(), clients.end());
    return;
  }
  std::vector<std::int64_t> ids;
  for (const auto& [id, info] : workers_) ids.push_back(id);
  for (std::size_t i = 0; i < clients.size(); ++i) owner_[clients[i]] = ids[i % ids.size()];
}

void WorkerRegistry::PinWaiting() {
  if (unowned_.empty() || workers_.empty()) return;
  std::vector<std::int64_t> clients;
  clients.swap(unowned_);
  Pin(clients);
}

bool WorkerRegistry::Eligible(std::int64_t worker, ClientId client) const {
  if (!options_.pin_clients) return true;
  auto it = owner_.find(client.value);
  return it != owner_.end() && it->second == worker;
}

std::vector<std::int64_t> WorkerRegistry::Reassign(std::int64_t worker) {
  std::vector<std::int64_t> orphans;
  for (const auto& [client, owner] : owner_) {
    if (owner == worker) orphans.push_back(client);
  }
  if (!orphans.empty()) Pin(orphans);
  return orphans;
}

}  // namespace fedsim
