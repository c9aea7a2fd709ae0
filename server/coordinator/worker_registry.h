// File: server/coordinator/worker_registry.h
//
// The worker processes a coordinator knows: who each is (a join under the
// identity of a registered worker is that worker restarted, and replaces
// its registration), when it was last seen, whether it asked for work yet,
// its slowdown factor (distributed.worker_slowdown, given in join order and
// kept by identity across rejoins), and, with pinned clients, which clients
// each owns.
//
// Thread safety: not thread-safe; the coordinator calls it under its lock.
#ifndef FEDSIM_SERVER_COORDINATOR_WORKER_REGISTRY_H_
#define FEDSIM_SERVER_COORDINATOR_WORKER_REGISTRY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/types.h"

namespace fedsim {

class WorkerRegistry {
 public:
  struct Options {
    // The id the first worker gets; later ones count up (a resumed
    // coordinator starts elsewhere, so a worker of the previous
    // incarnation is never mistaken for a new one).
    std::int64_t first_id = 1;
    int max_workers = 1000;
    // distributed.worker_slowdown; empty: every factor 1.
    std::vector<double> slowdown;
    // Clients are pinned to workers (Pin); otherwise any worker may run any
    // client's task.
    bool pin_clients = false;
  };
  struct Worker {
    std::string name;
    std::string key;  // the identity a rejoin is recognised by
    absl::Time last_seen;
    bool polled = false;  // has asked for a task at least once
    double slowdown = 1.0;
  };
  struct Joined {
    WorkerId id;
    // The id this join replaces (the same worker restarted); 0 if none.
    std::int64_t previous = 0;
    double slowdown = 1.0;
  };

  explicit WorkerRegistry(Options options);

  // Registers a worker under `name` (the certificate identity under mTLS,
  // else the name asked for) and `worker_name` (the name asked for; the
  // identity is both when they differ). A join under a registered identity
  // replaces that registration: its id is removed (Joined::previous) and,
  // with pinning, the new id owns its clients. kResourceExhausted when
  // max_workers are registered (a replacement is always allowed).
  absl::StatusOr<Joined> Join(const std::string& name, const std::string& worker_name,
                              absl::Time now);

  // Null for an unknown id.
  Worker* Find(std::int64_t id);
  const Worker* Find(std::int64_t id) const;
  // Unregisters `id`; false if it was not registered.
  bool Remove(std::int64_t id);
  std::size_t size() const { return workers_.size(); }
  bool empty() const { return workers_.empty(); }
  // The workers that asked for work at least once.
  int polled() const;
  const std::map<std::int64_t, Worker>& workers() const { return workers_; }

  bool pinning() const { return options_.pin_clients; }
  // Gives `clients` to the registered workers, round robin in id order; with
  // none registered they wait for the next to join (PinWaiting).
  void Pin(const std::vector<std::int64_t>& clients);
  // The clients waiting for a worker go to the registered ones.
  void PinWaiting();
  bool clients_waiting() const { return !unowned_.empty(); }
  // May `worker` run a task for `client`? (Always without pinning.)
  bool Eligible(std::int64_t worker, ClientId client) const;
  // The clients `worker` owns go to the other registered workers, round
  // robin (none left: they wait). Returns them.
  std::vector<std::int64_t> Reassign(std::int64_t worker);
  // client -> owning worker.
  const std::map<std::int64_t, std::int64_t>& owners() const { return owner_; }

 private:
  const Options options_;
  std::map<std::int64_t, Worker> workers_;
  std::int64_t next_id_;
  // Distinct identities that joined (worker_slowdown's index), and each
  // identity's factor: a worker that comes back keeps it.
  std::int64_t identities_ = 0;
  std::map<std::string, double> slowdown_of_;
  std::map<std::int64_t, std::int64_t> owner_;
  std::vector<std::int64_t> unowned_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_COORDINATOR_WORKER_REGISTRY_H_
