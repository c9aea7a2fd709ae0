#include "server/strategy/fedlsa.h"

#include <cmath>
#include <vector>

#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"

namespace fedsim {

FedLsa::FedLsa(const FedLsaOptions& options) : options_(options) {}

std::int64_t FedLsa::LocalSteps(Round round) const {
  const double p = options_.communication_probability;
  if (p <= 0.0) return options_.local_steps;
  if (p >= 1.0) return 1;
  // Geometric(p) on {1, 2, ...} by inversion: the first heads of the
  // shared coin, flipped after every local step.
  RngStream rng(options_.seed, RngPurpose::kCommunication, -1, round);
  double u;
  do {
    u = rng.Uniform01();
  } while (u == 0.0);
  return 1 + static_cast<std::int64_t>(std::floor(std::log(u) / std::log1p(-p)));
}

std::vector<TaskSpec> FedLsa::Plan(Round round,
                                   std::span<const ClientId> participants) {
  LocalTrainingSpec local;
  local.lr = options_.eta;
  local.max_steps = LocalSteps(round);
  std::vector<TaskSpec> tasks;
  tasks.reserve(participants.size());
  for (ClientId c : participants) tasks.push_back(TaskSpec{c, local});
  return tasks;
}

absl::StatusOr<AggregationReport> FedLsa::Aggregate(
    Round /*round*/, std::span<const ClientResult> results, FlatVector& global) {
  AggregationReport report;
  if (results.empty()) return report;
  const double w = 1.0 / static_cast<double>(results.size());
  std::vector<double> weights(results.size(), w);
  std::vector<const Eigen::VectorXd*> updates;
  for (const ClientResult& r : results) {
    updates.push_back(&r.update);
    report.weights.emplace_back(r.client, w);
  }
  step_.resize(global.size());
  WeightedSum(weights, updates, step_);
  global += step_;
  return report;
}

}  // namespace fedsim
