#include "server/strategy/scaffold.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/check.h"

namespace fedsim {

Scaffold::Scaffold(const ScaffoldOptions& options, std::int64_t num_clients,
                   std::int64_t num_parameters)
    : options_(options),
      n_(num_clients),
      control_(std::make_shared<const FlatVector>(
          FlatVector::Zero(num_parameters))) {
  FEDSIM_CHECK(n_ >= 1 && num_parameters >= 1 && options_.server_lr > 0.0 &&
               (options_.option == ScaffoldOption::kOptionI ||
                options_.option == ScaffoldOption::kOptionII));
}

std::vector<TaskSpec> Scaffold::Plan(Round round,
                                     std::span<const ClientId> participants) {
  planned_ = PlanWithStragglers(options_.stragglers, round, participants,
                                options_.local);
  for (TaskSpec& t : planned_) t.scaffold = ScaffoldTaskFields{control_, options_.option};
  return planned_;
}

absl::Status Scaffold::CheckResult(const ClientResult& r) const {
  if (r.control_delta.size() == 0) {
    return absl::InvalidArgumentError("the result has no control_delta (SCAFFOLD needs one)");
  }
  if (r.control_delta.size() != control_->size()) {
    return absl::InvalidArgumentError(absl::StrCat("control_delta has ", r.control_delta.size(),
                                                   " values, expected ", control_->size()));
  }
  if (!r.control_delta.allFinite()) {
    return absl::InvalidArgumentError("control_delta has NaN or infinite values");
  }
  return absl::OkStatus();
}

absl::StatusOr<AggregationReport> Scaffold::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  const Eigen::Index d = control_->size();
  for (const ClientResult& r : results) {
    const bool planned = std::any_of(
        planned_.begin(), planned_.end(),
        [&](const TaskSpec& t) { return t.client == r.client; });
    if (!planned || r.client.value < 0 || r.client.value >= n_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": result from client ", r.client.value,
          ", which was not selected"));
    }
    if (r.control_delta.size() != d || r.update.size() != d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ", client ", r.client.value, ": SCAFFOLD needs an "
          "update and a control_delta of ", d, " values, got ",
          r.update.size(), " and ", r.control_delta.size()));
    }
  }
  AggregationReport report;
  if (results.empty()) return report;  // nobody returned: x and c unchanged
  const double w = 1.0 / static_cast<double>(results.size());
  std::vector<double> weights(results.size(), w);
  std::vector<double> control_weights(results.size(),
                                      1.0 / static_cast<double>(n_));
  std::vector<const Eigen::VectorXd*> updates, deltas;
  for (const ClientResult& r : results) {
    updates.push_back(&r.update);
    deltas.push_back(&r.control_delta);
    report.weights.emplace_back(r.client, w);
  }
  step_.resize(d);
  // x <- x + eta_g (1/|S|) sum Delta y_i, summed in client order.
  WeightedSum(weights, updates, step_, options_.kernel);
  Axpy(options_.server_lr, step_, global, options_.kernel);
  // c <- c + (1/N) sum Delta c_i: a fresh vector, the old one may still be
  // held by this round's tasks.
  WeightedSum(control_weights, deltas, step_, options_.kernel);
  auto next = std::make_shared<FlatVector>(*control_);
  *next += step_;
  control_ = std::move(next);
  return report;
}

std::string Scaffold::EncodeState() const {
  ByteWriter w;
  w.F64s(std::vector<double>(control_->data(), control_->data() + control_->size()));
  return w.bytes();
}

absl::Status Scaffold::DecodeState(std::string_view bytes) {
  ByteReader r(bytes);
  const std::vector<double> c = r.F64s();
  if (!r.done() || static_cast<Eigen::Index>(c.size()) != control_->size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: SCAFFOLD state of ", bytes.size(), " bytes does not hold c of ",
        control_->size(), " values"));
  }
  FlatVector next(control_->size());
  for (Eigen::Index i = 0; i < next.size(); ++i) next[i] = c[static_cast<std::size_t>(i)];
  control_ = std::make_shared<const FlatVector>(std::move(next));
  return absl::OkStatus();
}

}  // namespace fedsim
