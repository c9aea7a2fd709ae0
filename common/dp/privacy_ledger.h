// File: common/dp/privacy_ledger.h
//
// Per-client privacy accounting of a federated run with example-level local
// DP (ALGORITHMS.md §5.5, Decision 5). Client k runs Poisson-subsampled
// Gaussian steps at its own rate q_k = L / n_k and the run's noise
// multiplier z; its RDP is composed over every local step it ran, across
// all rounds, and converted to epsilon at the run's delta. The ledger
// reports the maximum and the mean over all clients (clients that never
// trained have epsilon 0).
//
// Pure; not thread-safe (the round engine serialises calls).
#ifndef FEDSIM_COMMON_DP_PRIVACY_LEDGER_H_
#define FEDSIM_COMMON_DP_PRIVACY_LEDGER_H_

#include <cstdint>
#include <map>
#include <vector>

#include "common/dp/rdp_accountant.h"

namespace fedsim {

struct PrivacyLedgerOptions {
  std::vector<double> orders;            // the order grid
  double delta = 1e-5;                   // 0 < delta < 1
  RdpConversion conversion = RdpConversion::kTight;
  double noise_multiplier = 1.0;         // z, shared by every client
  std::vector<double> sampling_rates;    // q_k, one per client
  std::vector<std::int64_t> steps_per_task;  // local steps of one task, per client
};

class PrivacyLedger {
 public:
  explicit PrivacyLedger(PrivacyLedgerOptions options);

  // Records `steps` more local steps of client k.
  void Charge(std::int64_t client, std::int64_t steps);

  std::int64_t num_clients() const {
    return static_cast<std::int64_t>(steps_.size());
  }
  std::int64_t steps(std::int64_t client) const { return steps_[client]; }
  // Client k's epsilon after `extra_tasks` more tasks (0: now).
  double Epsilon(std::int64_t client, std::int64_t extra_tasks = 0) const;
  // Every client's epsilon now.
  std::vector<double> Epsilons() const;

  struct Summary {
    double max = 0.0;
    double mean = 0.0;
  };
  Summary Summarize() const;
  // The largest epsilon any client would reach if it ran one more task:
  // the run stops before a round that could push a client past its budget.
  double MaxEpsilonAfterOneMoreTask() const;

  const PrivacyLedgerOptions& options() const { return options_; }

 private:
  const std::vector<double>& Curve(double q) const;

  PrivacyLedgerOptions options_;
  std::vector<std::int64_t> steps_;
  // One-step RDP curves by sampling rate (clients of equal size share one).
  mutable std::map<double, std::vector<double>> curves_;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_DP_PRIVACY_LEDGER_H_
