#include "server/strategy/fedavg.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/check.h"

namespace fedsim {

FedAvg::FedAvg(const FedAvgOptions& options,
               std::vector<std::int64_t> client_sizes)
    : options_(options),
      optimizer_(WithServerLr(options.server_optimizer, options.server_lr)),
      name_(optimizer_.DisplayName(options.fedprox ? "FedProx" : "FedAvg")),
      client_sizes_(std::move(client_sizes)) {
  FEDSIM_CHECK(!client_sizes_.empty());
}

std::vector<TaskSpec> FedAvg::Plan(Round round,
                                   std::span<const ClientId> participants) {
  planned_ = PlanWithStragglers(options_.stragglers, round, participants,
                                options_.local);
  return planned_;
}

absl::StatusOr<AggregationReport> FedAvg::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  AggregationReport report;
  if (results.empty() && options_.robust.rule == RobustRule::kMean) {
    return report;  // nobody returned: w unchanged
  }
  // m_t: the data of the clients that returned (renormalised weights).
  double m_t = 0.0;
  for (const ClientResult& r : results) {
    const bool planned = std::any_of(
        planned_.begin(), planned_.end(),
        [&](const TaskSpec& t) { return t.client == r.client; });
    if (!planned) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": result from client ", r.client.value,
          ", which was not selected"));
    }
    m_t += static_cast<double>(client_sizes_[r.client.value]);
  }
  if (options_.robust.rule != RobustRule::kMean) {
    std::vector<const FlatVector*> updates;
    for (const ClientResult& r : results) updates.push_back(&r.update);
    absl::StatusOr<RobustAggregate> robust =
        AggregateRobust(options_.robust, updates);
    if (!robust.ok()) {
      // Too few results for the rule: the round leaves x (and the server
      // optimiser's state) unchanged, and says so (no silent fallback).
      report.failure = absl::StrCat("round ", round, ": ", robust.status().message());
      return report;
    }
    for (std::size_t i = 0; i < results.size(); ++i) {
      report.weights.emplace_back(results[i].client, robust->weights[i]);
    }
    step_ = std::move(robust->value);
    optimizer_.Step(step_, global, options_.kernel);
    return report;
  }
  std::vector<double> weights;
  std::vector<const Eigen::VectorXd*> updates;
  for (const ClientResult& r : results) {
    const double w = static_cast<double>(client_sizes_[r.client.value]) / m_t;
    weights.push_back(w);
    updates.push_back(&r.update);
    report.weights.emplace_back(r.client, w);
  }
  step_.resize(global.size());
  // Summed in client-id order (results are sorted), element by element.
  WeightedSum(weights, updates, step_, options_.kernel);
  optimizer_.Step(step_, global, options_.kernel);
  return report;
}

std::string FedAvg::EncodeState() const {
  ByteWriter w;
  optimizer_.Encode(w);
  return w.bytes();
}

absl::Status FedAvg::DecodeState(std::string_view bytes) {
  ByteReader r(bytes);
  ServerOptimizer optimizer = optimizer_;
  if (!optimizer.Decode(r) || !r.done()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: ", name_, " state of ", bytes.size(), " bytes is malformed"));
  }
  optimizer_ = std::move(optimizer);
  return absl::OkStatus();
}

}  // namespace fedsim
