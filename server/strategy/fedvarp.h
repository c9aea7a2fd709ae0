// File: server/strategy/fedvarp.h
//
// FedVARP (Jhunjhunwala, Sharma, Nagarkatti, Joshi, UAI 2022) exactly as the
// FedAU paper's official code runs it (IBM/fedau 6e9cce9, main.py L99-222,
// `-weighting fedvarp`; ALGORITHMS.md §2.3, docs/fedvarp_mifa.md
// §1). Clients run plain local SGD (I = local.max_steps steps of size
// gamma on minibatches of b, the same spec for every participant) and return
// Delta_n^t, their model after training minus x_t. The server keeps the last
// update y_n of each of the N clients and their mean ybar, both 0 at first:
//
//   S_t = {}:  x_{t+1} = x_t, y and ybar unchanged
//   else:      x_{t+1} = x_t + eta [ (1/|S_t|) sum_{n in S_t} (Delta_n^t - y_n)
//                                    + ybar ]
//              then y_n <- Delta_n^t for n in S_t, then
//              ybar <- (1/N) sum_{n=1..N} y_n
//
// so ybar is, at the start of every round, the mean of the y_n (the empty
// round changes neither). eta = server_lr multiplies the whole direction;
// client weights are equal (n_k plays no part), the stored value is the raw
// Delta (not divided by gamma or I), and a client never seen contributes
// y_n = 0 (no waiting phase). S_t is the set of results passed to
// Aggregate: a client that failed or missed the deadline is absent, keeps
// its y_n and lowers |S_t|.
//
// Differences from the paper (as recalled, not verified): the paper samples
// M clients uniformly, so it never meets S_t = {} (its formula would step
// x + eta ybar; the code, and fedsim, hold x); it stores lr-normalised
// updates (identical for a constant local step size). Under heterogeneous
// participation the correction term is not conditionally unbiased, but the
// fixed point is: with deterministic local training, x* is the zero of
// sum_n Delta_n(x), the fixed point of full-participation equal-weight
// FedAvg, whatever the participation probabilities. A round in which every
// client participates is exactly (in real arithmetic) the FedAvg step
// x + eta (1/N) sum_n Delta_n, whatever the history.
//
// Arithmetic (fixed order, bit-reproducible for any kernel.num_threads):
// per element, s = sum over S_t in client-id order of (Delta_n - y_n), then
// s / |S_t| + ybar, then x += eta * that (Axpy); ybar is recomputed from
// scratch after every non-empty round as (sum_{n=0..N-1} y_n) / N, summed
// in client-id order (as the official code's torch.mean over all clients,
// up to its float32 and reduction order). No running sum is kept: the
// recomputation costs N d additions per non-empty round (for N = 250 and
// d = 551,786 that is 1.1 GB read, on the order of 0.1 s per round on one
// core), but ybar is then always exactly the mean of the stored y_n.
//
// Memory: y is one contiguous N x d buffer of doubles (client-major), plus
// ybar (d) and a d-vector of scratch: (N + 2) d doubles, e.g. 1.1 GB for
// N = 250 clients of d = 551,786. The checkpoint state (EncodeState) is the
// same N d + d doubles with N, d and two lengths: 8 (N + 1) d + 32 bytes.
//
// The server optimiser (server_optimizer.h) is NOT supported: the options
// have no field for it and eta is a plain step size, as in the official
// code; the config refuses another optimiser (and stragglers, also
// unsupported) for fedvarp (the traits of its enum value).
//
// The aggregation weight reported for each participant (events.jsonl) is
// its coefficient 1/|S_t| in the correction term (eta is not included; the
// ybar term is not attributed to clients).
//
// Thread safety: not thread-safe; the coordinator serialises calls.
#ifndef FEDSIM_SERVER_STRATEGY_FEDVARP_H_
#define FEDSIM_SERVER_STRATEGY_FEDVARP_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/kernels/vector_ops.h"
#include "server/strategy/strategy.h"

namespace fedsim {

struct FedVarpOptions {
  double server_lr = 1.0;   // eta > 0
  LocalTrainingSpec local;  // I, b, gamma handed to every participant
  KernelContext kernel;     // threads for the aggregation kernels
};

class FedVarp : public SyncStrategy {
 public:
  // REQUIRES: num_clients >= 1, dim >= 1, options.server_lr > 0 (checked).
  // Allocates the N x d memory, zero.
  FedVarp(const FedVarpOptions& options, std::int64_t num_clients,
          std::int64_t dim);

  std::string_view name() const override { return "FedVARP"; }
  // One task per participant, each with options.local.
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  // Fails with kInvalidArgument, changing nothing, if a result names a
  // client not planned this round, the results are not sorted by distinct
  // client ids, or an update or `global` does not have d elements.
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

  // Every y_n and ybar. DecodeState fails with kInvalidArgument, changing
  // nothing, if N or d differ from this strategy's, the bytes are malformed,
  // a value is not finite, or ybar is not the mean of the y_n as this class
  // computes it.
  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;

  // The stored update of `client` (d values) and the stored mean.
  ConstVectorRef stored_update(ClientId client) const;
  ConstVectorRef stored_mean() const;

 private:
  // out = (sum_{n=0..N-1} y[n]) / N, summed in client order.
  void MeanOf(const std::vector<double>& y, std::vector<double>& out) const;

  FedVarpOptions options_;
  std::int64_t n_;
  std::int64_t d_;
  std::vector<double> y_;     // N x d, client n at [n d, (n + 1) d)
  std::vector<double> ybar_;  // d
  std::vector<TaskSpec> planned_;  // this round's plan, for checking results
  FlatVector step_;                // scratch: the direction
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_FEDVARP_H_
