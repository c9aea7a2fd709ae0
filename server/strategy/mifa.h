// File: server/strategy/mifa.h
//
// MIFA (Gu, Huang, Zhang, Huang, NeurIPS 2021, "Fast Federated Learning in
// the Presence of Arbitrary Device Unavailability") exactly as the FedAU
// paper's official code runs it (IBM/fedau 6e9cce9, main.py L99-222,
// `-weighting mifa`; ALGORITHMS.md §2.3, docs/fedvarp_mifa.md §1).
// Clients run plain local SGD (I = local.max_steps steps of size gamma on
// minibatches of b, the same spec for every participant) and return
// Delta_n^t, their model after training minus x_t. The server keeps the last
// update y_n of each of the N clients, 0 at first:
//
//   y_n <- Delta_n^t for n in S_t;   x_{t+1} = x_t + eta (1/N) sum_{n=1..N} y_n
//
// Stale entries are included, a client never seen contributes 0, and the
// step is taken in EVERY round, also when nobody participates (S_t = {}):
// the stored mean is applied again. This is the one strategy for which an
// empty `results` moves the model (strategy.h says so). eta = server_lr
// multiplies the whole mean; client weights are equal (n_k plays no part);
// the stored value is the raw Delta. S_t is the set of results passed to
// Aggregate: a client that failed or missed the deadline keeps its y_n. A
// round the coordinator fails (quorum not reached) calls no Aggregate and
// therefore takes no step.
//
// Differences from the MIFA paper's own code (hmgxr128/MIFA_code, fdu.py),
// which the FedAU code does not follow: (1) fdu.py waits until every client
// has been available once, then fills the memory with every client's update
// at x_0 (no zero entries); here y_n = 0 and training starts at once (as
// its fdu_no_wait.py); (2) fdu.py stores Delta / gamma_t and multiplies the
// mean by the current gamma_t, so stale entries are rescaled when the step
// size decays (its runs use gamma_t = gamma_0 / (t + 1)); here the raw Delta
// is stored and eta is a fixed global step. The two agree for a constant
// local step size and eta = 1. With every client participating every round
// MIFA is FedAvg with equal weights 1/N and server step eta. With
// deterministic local training its fixed point is the zero of
// sum_n Delta_n(x), whatever the participation probabilities.
//
// Arithmetic (fixed order, bit-reproducible for any kernel.num_threads):
// after a non-empty round the mean is recomputed from scratch as
// (sum_{n=0..N-1} y_n) / N, summed in client-id order (no running sum, so
// it is always exactly the mean of the stored y_n); an empty round reuses
// the mean of the last non-empty one (the same y_n, hence the same bits).
// Then x += eta * mean (Axpy). Cost: N d additions per non-empty round
// (N = 250, d = 551,786: 1.1 GB read, on the order of 0.1 s on one core).
//
// Memory: y is one contiguous N x d buffer of doubles (client-major), plus
// the mean (d): (N + 1) d doubles. The checkpoint state (EncodeState) is the
// y_n only (the mean is recomputed on decode, bit for bit): N d doubles with
// N, d and a length, 8 N d + 24 bytes.
//
// The server optimiser (server_optimizer.h) is NOT supported: the options
// have no field for it and eta is a plain step size, as in the official
// code; the config refuses another optimiser (and stragglers, also
// unsupported) for mifa (the traits of its enum value).
//
// The aggregation weight reported for each participant (events.jsonl) is
// its coefficient 1/N (eta is not included; the stale entries of the other
// clients are not reported, and an empty round reports no weight although
// x moves).
//
// Thread safety: not thread-safe; the coordinator serialises calls.
#ifndef FEDSIM_SERVER_STRATEGY_MIFA_H_
#define FEDSIM_SERVER_STRATEGY_MIFA_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/kernels/vector_ops.h"
#include "server/strategy/strategy.h"

namespace fedsim {

struct MifaOptions {
  double server_lr = 1.0;   // eta > 0
  LocalTrainingSpec local;  // I, b, gamma handed to every participant
  KernelContext kernel;     // threads for the aggregation kernels
};

class Mifa : public SyncStrategy {
 public:
  // REQUIRES: num_clients >= 1, dim >= 1, options.server_lr > 0 (checked).
  // Allocates the N x d memory, zero.
  Mifa(const MifaOptions& options, std::int64_t num_clients, std::int64_t dim);

  std::string_view name() const override { return "MIFA"; }
  // One task per participant, each with options.local.
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  // Steps also when `results` is empty (see above). Fails with
  // kInvalidArgument, changing nothing, if a result names a client not
  // planned this round, the results are not sorted by distinct client ids,
  // or an update or `global` does not have d elements.
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

  // Every y_n. DecodeState fails with kInvalidArgument, changing nothing,
  // if N or d differ from this strategy's, the bytes are malformed or a
  // value is not finite.
  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;

  // The stored update of `client` (d values) and their mean, the direction
  // of the next empty round.
  ConstVectorRef stored_update(ClientId client) const;
  ConstVectorRef stored_mean() const;

 private:
  // out = (sum_{n=0..N-1} y[n]) / N, summed in client order.
  void MeanOf(const std::vector<double>& y, FlatVector& out) const;

  MifaOptions options_;
  std::int64_t n_;
  std::int64_t d_;
  std::vector<double> y_;  // N x d, client n at [n d, (n + 1) d)
  FlatVector mean_;        // (1/N) sum_n y_n, derived from y_
  std::vector<TaskSpec> planned_;  // this round's plan, for checking results
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_MIFA_H_
