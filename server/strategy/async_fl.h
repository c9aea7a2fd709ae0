// File: server/strategy/async_fl.h
//
// Asynchronous FL: synchronous FedAvg on the clock ("FL"), asynchronous
// FedAvg, FedFix-dt and FedBuff-c exactly as ALGORITHMS.md §4.2-4.3 and
// Decision 4 (the official code of Fraboni et al., JMLR 2023).
//
// Two pure pieces, no clock, no threads, no transport:
//   * an AsyncScheduler decides WHEN the server aggregates and WHO is in a
//     step, from nothing but "client k's result arrived at time t" and "the
//     deadline you asked for has come";
//   * an AsyncAggregator applies the general rule of §4.2,
//       theta^{n+1} = theta^n + eta_g sum_{i in S_n} d_i Delta_i,
//     with the fixed weights d_i of §4.3, summed in client-id order.
// The runtime owns the clock (server/clock), dispatches tasks and keeps the
// model versions the clients started from.
//
// Every scheme follows one rule for restarts: a client that finished waits
// until a step includes it, then immediately starts new work from the model
// that step produced. (Async: at its own arrival; FedFix: at the window's
// end; FedBuff: when the buffer fills; FL: when the slowest arrives.)
//
// Thread safety: not thread-safe; the runtime serialises calls.
#ifndef FEDSIM_SERVER_STRATEGY_ASYNC_FL_H_
#define FEDSIM_SERVER_STRATEGY_ASYNC_FL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/types.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {

enum class AsyncScheme {
  kSyncFedAvg,   // "FL": every client in every step
  kAsyncFedAvg,  // one step per arriving client
  kFedFix,       // a step at every multiple of the window
  kFedBuff,      // a step when `buffer_size` results have arrived
};

std::string_view AsyncSchemeName(AsyncScheme scheme);

class AsyncScheduler {
 public:
  virtual ~AsyncScheduler() = default;

  // Client `client`'s result arrived at `now` (arrivals come in time order,
  // ties by client id). Returns the clients of a step to take now (sorted
  // by id), or nullopt.
  virtual std::optional<std::vector<ClientId>> OnArrival(ClientId client,
                                                         std::int64_t now) = 0;

  // The time of the next time-triggered step, if the scheme has one
  // (FedFix's next window end).
  virtual std::optional<std::int64_t> NextDeadline() const = 0;

  // NextDeadline() has come (after every arrival at the same time). Returns
  // the clients of the step (sorted, possibly none: an empty window is
  // still a step).
  virtual std::vector<ClientId> OnDeadline(std::int64_t now) = 0;
};

struct AsyncSchedulerOptions {
  AsyncScheme scheme = AsyncScheme::kAsyncFedAvg;
  std::int64_t num_clients = 1;
  std::int64_t window_ticks = 1;  // FedFix: dt in ticks, >= 1
  std::int64_t buffer_size = 1;   // FedBuff: c in [1, num_clients]
};

std::unique_ptr<AsyncScheduler> MakeAsyncScheduler(
    const AsyncSchedulerOptions& options);

struct AsyncWeightOptions {
  AsyncScheme scheme = AsyncScheme::kAsyncFedAvg;
  bool weight_variant = true;  // `weight` (true) or `identical`
  // The unnormalised importance of every client: 1 (uniform) or n_i
  // (ratio); p_i = mass_i / sum_j mass_j.
  std::vector<double> importance_mass;
  // tau_i: every client's expected task duration in ticks.
  std::vector<double> mean_ticks;
  std::int64_t window_ticks = 1;  // FedFix
  std::int64_t buffer_size = 1;   // FedBuff
  // FedBuff `weight`: f_i, the fraction of steps that include client i
  // (from the schedule, as the official code computes it).
  std::vector<double> step_fraction;
};

// The fixed weights d_i of §4.3 (clock_fedavg: p_i; its renormalisation
// over the clients that returned happens in Aggregate).
std::vector<double> AsyncWeights(const AsyncWeightOptions& options);

// One client's update in a step.
struct AsyncUpdate {
  ClientId client;
  std::int64_t base_version = 0;       // rho_i(n)
  const FlatVector* update = nullptr;  // theta_i^local - theta^{rho}
};

struct AsyncContribution {
  ClientId client;
  std::int64_t base_version = 0;
  std::int64_t staleness = 0;  // n - rho_i(n)
  double weight = 0.0;         // the factor its update was multiplied by (without eta_g)
};

struct AsyncAggregatorOptions {
  AsyncScheme scheme = AsyncScheme::kAsyncFedAvg;
  std::vector<double> weights;           // d_i (AsyncWeights)
  std::vector<double> importance_mass;   // clock_fedavg renormalisation
  bool staleness_scaling = false;        // FedBuff: times 1/sqrt(1 + s)
  double server_lr = 1.0;                // eta_g
  KernelContext kernel;
};

class AsyncAggregator {
 public:
  explicit AsyncAggregator(AsyncAggregatorOptions options);

  // Step `version` (n): folds `updates` (sorted by client id, each of the
  // model's size and finite, base_version <= version) into `global`.
  // clock_fedavg weighs by mass_i / sum over the updates (FedAvg's
  // renormalisation, n_i / m_t with ratio importance, bit-identical to
  // FedAvg); the others use d_i as they are. No updates: unchanged.
  absl::StatusOr<std::vector<AsyncContribution>> Aggregate(
      std::int64_t version, std::span<const AsyncUpdate> updates,
      FlatVector& global);

  const std::vector<double>& weights() const { return options_.weights; }
  // Replaces d_i (the wall clock re-estimates them before every step).
  // REQUIRES: one weight per client.
  void set_weights(std::vector<double> weights);

 private:
  AsyncAggregatorOptions options_;
  FlatVector step_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_ASYNC_FL_H_
