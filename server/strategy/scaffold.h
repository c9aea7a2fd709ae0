// File: server/strategy/scaffold.h
//
// The server side of SCAFFOLD (Karimireddy, Kale, Mohri, Reddi, Stich,
// Suresh, ICML 2020), exactly as ALGORITHMS.md §6.1. The server keeps the
// model x and the server control variate c (d values, zero at the start);
// client i keeps c_i on the client (client/trainer/scaffold_trainer.h).
// Each round the participants S receive x and c, run K local steps
//   y <- y - eta_l (g_i(y) - c_i + c),
// update c_i (option I or II) and send Delta y_i = y_i - x and
// Delta c_i = c_i+ - c_i. The server then sets
//   x <- x + (eta_g / |S|) sum_{i in S} Delta y_i
//   c <- c + (1 / N) sum_{i in S} Delta c_i
// with S the clients whose results came back (partial participation: N is
// the number of clients, |S| those aggregated). Summing Delta c_i, not c_i
// (a known bug of some implementations), keeps c equal to the mean of the
// clients' c_i at every round.
//
// Stragglers (stragglers.h) are dropped by default; kept ones run fewer
// local steps, and option II divides by the K they actually took.
#ifndef FEDSIM_SERVER_STRATEGY_SCAFFOLD_H_
#define FEDSIM_SERVER_STRATEGY_SCAFFOLD_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "common/kernels/vector_ops.h"
#include "server/strategy/stragglers.h"
#include "server/strategy/strategy.h"

namespace fedsim {

struct ScaffoldOptions {
  double server_lr = 1.0;   // eta_g > 0
  LocalTrainingSpec local;  // K (E epochs or max_steps), B, eta_l
  ScaffoldOption option = ScaffoldOption::kOptionII;
  StragglerOptions stragglers;
  KernelContext kernel;
};

class Scaffold : public SyncStrategy {
 public:
  // REQUIRES: num_clients >= 1, num_parameters >= 1, option is I or II.
  Scaffold(const ScaffoldOptions& options, std::int64_t num_clients,
           std::int64_t num_parameters);

  std::string_view name() const override { return "SCAFFOLD"; }
  std::vector<TaskSpec> Plan(Round round,
                             std::span<const ClientId> participants) override;
  // Also fails with kInvalidArgument if a result lacks a control_delta of d
  // values (nothing is changed then).
  absl::StatusOr<AggregationReport> Aggregate(
      Round round, std::span<const ClientResult> results,
      FlatVector& global) override;

  // A result must bring Delta c_i: d finite values.
  absl::Status CheckResult(const ClientResult& result) const override;

  // The server control variate c.
  const FlatVector& control() const { return *control_; }

  // c, for a checkpoint (the clients' c_i are saved with the clients).
  std::string EncodeState() const override;
  absl::Status DecodeState(std::string_view bytes) override;

 private:
  ScaffoldOptions options_;
  std::int64_t n_;
  // Replaced (never modified in place) after each round: the round's tasks
  // share the old one.
  std::shared_ptr<const FlatVector> control_;
  std::vector<TaskSpec> planned_;
  FlatVector step_;
};

}  // namespace fedsim

#endif  // FEDSIM_SERVER_STRATEGY_SCAFFOLD_H_
