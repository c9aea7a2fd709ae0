// File: server/strategy/fedau.h
//
// FedAU (Shiqiang Wang and Mingyue Ji, ICLR 2024) exactly as ALGORITHMS.md
// §2.2 and Decision 2, and the three baselines of its official code (§2.3).
// All four share plain local SGD on the clients (I = local.max_steps steps
// of size gamma on minibatches of b) and differ only in the server's weights
// omega_n and divisor D:
//
//   x_{t+1} = x_t + eta * (1/D) * sum_{n in S_t} omega_n^t Delta_n^t
//
//   kFedAu                  omega_n^t = S_n / M_n (1 if M_n = 0), D = N
//   kKnownProbabilities     omega_n = 1 / p_n (true p_n; an oracle), D = N
//   kAverageParticipating   omega = 1, D = |S_t|
//   kAverageAll             omega = 1, D = N
//
// FedAU's estimator keeps three integers per client on the server: c_n, the
// rounds elapsed in the open interval, M_n, the number of recorded
// intervals, and S_n, their sum. omega_n^t uses the history strictly before
// round t; then, for every client, a participant records L = c_n + 1 and
// resets c_n = 0, a non-participant increments c_n and, with a finite
// cutoff K, records L = K when c_n reaches K. Counting starts at round 0 as
// if everyone had participated at round -1; a client joining at round
// J > 0 starts counting at J (count_from_join, default) or at round 0.
//
// S_t, "who participated", is the set of clients whose result is
// aggregated: a client that was available but failed or missed the deadline
// counts as absent, so the estimate tracks the effective participation rate.
// If nobody participates, x is unchanged (the counters still advance).
//
// The counters are settled lazily: a round touches only its participants'
// (a non-participant's counters move by a closed form of the rounds it
// missed, applied when it next participates or its state is read), so a
// round costs O(cohort), not O(N). SaveState and EncodeState give the
// settled state, identical to advancing every client every round.
//
// The aggregation weight reported for each participant (events.jsonl) is its
// coefficient omega_n / D, like FedAvg's n_k / m_t (eta is not included).
#ifndef FEDSIM_SERVER_STRATEGY_FEDAU_H_
#define FEDSIM_SERVER_STRATEGY_FEDAU_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/kernels/vector_ops.h"
#include "server/strategy/server_optimizer.h"
#include "server/strategy/stragglers.h"
#include "server/strategy/strategy.h"

namespace fedsim {

enum class FedAuWeighting {
  kFedAu,
  kKnownProbabilities,
  kAverageParticipating,
  kAverageAll,
};

struct FedAuOptions {
  FedAuWeighting weighting = FedAuWeighting::kFedAu;
  double server_lr = 1.0;    // eta > 0
  LocalTrainingSpec local;   // I, b, gamma handed to every client
  KernelContext kernel;      // threads for the aggregation kernels
  std::int64_t cutoff = 0;   // K >= 1; 0 = infinite
  // kKnownProbabilities: the true p_n of every client (p_n = 0 is allowed
  // for a client that never participates; it then never needs a weight).
  std::vector<double> probabilities;
  // Empty: every client exists from round 0. Else one join round per client.
  std::vector<Round> join_rounds;
  bool count_from_join = true;
  // Stragglers (stragglers.h); a dropped straggler counts as absent.
  StragglerOptions stragglers;
  // The server step (server_optimizer.h) applied to
  // (1/D) sum omega_n Delta_n; its lr is server_lr (the field here is ignored).
  ServerOptimizerOptions server_optimizer;
};

// FedAU's estimator state, the part of a coordinator checkpoint that
// belongs to the strategy (three integers per client).
struct FedAuState {
  Round next_round = 0;                // the round Aggregate expects next
  std::vector<std::int64_t> open;      // c_n
  std::vector<std::int64_t> count;     // M_n
  std::vector<std::int64_t> sum;       // S_n

  friend bool operator==(const FedAuState&, const FedAuState&) = default;
};

class FedAu : public SyncStrategy {
 public:
  // REQUIRES: num_clients >= 1; options valid (server_lr > 0, cutoff >= 0,
  // probabilities of size num_clients for kKnownProbabilities, join_rounds
  // empty or of size num_clients).
  FedAu(const FedAuOptions& options, std::int64_t num_clients);

  std::string_view name() const override;
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  // Also fails with kFailedPrecondition if `round` is not the round after
  // the previous Aggregate (the estimator needs every round, in order).
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

  // omega_n as FedAU would use it in the next round (history so far).
  double EstimatedWeight(ClientId client) const;

  // The settled state (O(N)).
  FedAuState SaveState() const;
  // Fails with kInvalidArgument (changing nothing) if the vectors do not
  // have one entry per client or hold negative values.
  absl::Status RestoreState(const FedAuState& state);

  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;

 private:
  struct Counters {
    std::int64_t open = 0, count = 0, sum = 0;
  };
  double Coefficient(ClientId client, std::size_t num_results) const;
  // Client k's counters settled through round `through` - 1, from its
  // stored ones (settled through settled_[k] - 1) and the rounds in
  // between, which it missed.
  Counters Settled(std::int64_t k, Round through) const;
  void RecordRound(Round round, std::span<const ClientResult> results);

  FedAuOptions options_;
  ServerOptimizer optimizer_;
  std::string name_;
  std::int64_t n_;
  // Counters settled through round settled_[k] - 1 (see Settled), and
  // next_round.
  FedAuState state_;
  std::vector<Round> settled_;
  std::vector<TaskSpec> planned_;  // this round's plan, for checking results
  FlatVector step_;                // scratch: the weighted update
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_FEDAU_H_
