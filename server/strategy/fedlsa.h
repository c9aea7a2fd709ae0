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
// EXTENSION (not in the paper; docs/lsa.md "Extension: partial
// participation"): SCAFFLSA with partial participation. Only the round's
// participants S_t run (with their xi_c) and the server averages their
// final iterates, theta_{t+1} = (1/|S_t|) sum_{c in S_t} theta_c^{t,H}.
// Each participant then needs theta_{t+1} for its xi update, but may not
// take part in round t+1, so the server keeps, per agent, the model that
// closed the last round the agent was aggregated in (its "anchor") and
// sends it down with the agent's next task (TaskSpec::server_control). An
// agent planned in a round whose result was not aggregated gets no anchor
// next time, and drops that round's iterate without updating xi.
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
  // SCAFFLSA partial-participation EXTENSION: send every task the anchor
  // theta_{t_c + 1} (see above); needs control_variates and num_clients.
  bool anchors = false;
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

  // With anchors: the agents' anchors, one per agent (null: none).
  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;

 private:
  FedLsaOptions options_;
  FlatVector step_;
  // With anchors: per agent, theta_{t+1} of the last round t it was
  // aggregated in, or null (never aggregated, or planned since then).
  // Agents aggregated in the same round share one vector.
  std::vector<std::shared_ptr<const FlatVector>> anchors_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_FEDLSA_H_
