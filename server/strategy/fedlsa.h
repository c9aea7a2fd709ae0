// File: server/strategy/fedlsa.h
//
// The server side of FedLSA and SCAFFLSA (ALGORITHMS.md §3.2-3.3, Decision
// 3): every participating agent runs H local LSA steps from theta_t and the
// server averages the final local iterates with equal weights,
//   theta_{t+1} = theta_t + (1/|S_t|) sum_c (theta_c^{t,H} - theta_t).
// SCAFFLSA differs only on the agents (their control variates never leave
// them), so one server class serves both.
//
// EXTENSION (labelled so in config and docs): with communication
// probability p > 0 the number of local steps of round t is drawn once for
// all agents, H_t ~ Geometric(p) on {1, 2, ...} (Scaffnew's shared coin),
// from the stream (seed, kCommunication, -1, t).
//
// SCAFFLSA's xi update needs theta_{t+1}, the model that closed the
// agent's round t, which the agent learns only with its next task. The
// server keeps, per agent, the model that closed the last round t_c the
// agent was aggregated in (its "anchor") and sends it with every task of
// the agent (TaskSpec::scafflsa: the anchor and t_c). The agent
// updates xi_c with it only if its pending iterate is from round t_c, and
// otherwise drops the iterate: a result that was rejected, or lost at a
// deadline, never enters sum_c xi_c, which stays 0 (ALGORITHMS.md §3.3).
// With every agent aggregated in every round the anchor is the task's
// theta_t and this is the paper's algorithm, bit for bit.
//
// EXTENSION (not in the paper; docs/lsa.md "Extension: partial
// participation"): SCAFFLSA with partial participation. Only the round's
// participants S_t run (with their xi_c) and the server averages their
// final iterates, theta_{t+1} = (1/|S_t|) sum_{c in S_t} theta_c^{t,H}; an
// agent's next task, possibly rounds later, brings its anchor.
#ifndef FEDSIM_SERVER_STRATEGY_FEDLSA_H_
#define FEDSIM_SERVER_STRATEGY_FEDLSA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/strategy/strategy.h"

namespace fedsim {

struct FedLsaOptions {
  bool control_variates = false;   // display "SCAFFLSA" instead of "FedLSA"
  double eta = 0.01;               // local step size
  std::int64_t local_steps = 1;    // H (deterministic communication)
  double communication_probability = 0.0;  // p; 0 = every H steps
  std::uint64_t seed = 1;
  // SCAFFLSA: the number of agents (their anchors; see above).
  std::int64_t num_clients = 0;
};

class FedLsa : public SyncStrategy {
 public:
  explicit FedLsa(const FedLsaOptions& options);

  std::string_view name() const override {
    return options_.control_variates ? "SCAFFLSA" : "FedLSA";
  }
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

  // The number of local steps of `round` (H, or the Geometric(p) draw).
  std::int64_t LocalSteps(Round round) const;

  // SCAFFLSA: the agents' anchors, one per agent (with its round, or none).
  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;

 private:
  struct Anchor {
    Round round = -1;                        // t_c; -1: none yet
    std::shared_ptr<const FlatVector> model; // theta_{t_c+1}
  };

  FedLsaOptions options_;
  FlatVector step_;
  // SCAFFLSA: per agent, the model that closed the last round it was
  // aggregated in. Agents aggregated in the same round share one vector.
  std::vector<Anchor> anchors_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_FEDLSA_H_
