#include "server/strategy/async_fl.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"

namespace fedsim {

std::string_view AsyncSchemeName(AsyncScheme scheme) {
  switch (scheme) {
    case AsyncScheme::kSyncFedAvg:
      return "FedAvg (clock)";
    case AsyncScheme::kAsyncFedAvg:
      return "AsyncFedAvg";
    case AsyncScheme::kFedFix:
      return "FedFix";
    case AsyncScheme::kFedBuff:
      return "FedBuff";
  }
  return "?";
}

namespace {

// Results wait in a buffer until a step takes them. A client has at most
// one result in flight, so the buffer holds each client at most once.
class BufferingScheduler : public AsyncScheduler {
 public:
  explicit BufferingScheduler(const AsyncSchedulerOptions& o) : o_(o) {}

  std::optional<std::vector<ClientId>> OnArrival(ClientId client,
                                                 std::int64_t now) override {
    (void)now;
    buffer_.push_back(client);
    std::int64_t needed = 0;
    switch (o_.scheme) {
      case AsyncScheme::kSyncFedAvg:
        needed = o_.num_clients;
        break;
      case AsyncScheme::kAsyncFedAvg:
        needed = 1;
        break;
      case AsyncScheme::kFedBuff:
        needed = o_.buffer_size;
        break;
      case AsyncScheme::kFedFix:
        return std::nullopt;  // only window ends aggregate
    }
    if (static_cast<std::int64_t>(buffer_.size()) < needed) return std::nullopt;
    return Take();
  }

  std::optional<std::int64_t> NextDeadline() const override {
    if (o_.scheme != AsyncScheme::kFedFix) return std::nullopt;
    return (windows_ + 1) * o_.window_ticks;
  }

  std::vector<ClientId> OnDeadline(std::int64_t now) override {
    FEDSIM_CHECK(o_.scheme == AsyncScheme::kFedFix &&
                 now == (windows_ + 1) * o_.window_ticks);
    ++windows_;
    return Take();
  }

 private:
  std::vector<ClientId> Take() {
    std::vector<ClientId> step = std::move(buffer_);
    buffer_.clear();
    std::sort(step.begin(), step.end());
    return step;
  }

  AsyncSchedulerOptions o_;
  std::vector<ClientId> buffer_;  // arrival order
  std::int64_t windows_ = 0;      // FedFix windows closed
};

}  // namespace

std::unique_ptr<AsyncScheduler> MakeAsyncScheduler(
    const AsyncSchedulerOptions& options) {
  FEDSIM_CHECK(options.num_clients >= 1 && options.window_ticks >= 1 &&
               options.buffer_size >= 1 &&
               options.buffer_size <= options.num_clients);
  return std::make_unique<BufferingScheduler>(options);
}

std::vector<double> AsyncWeights(const AsyncWeightOptions& o) {
  const std::size_t m = o.importance_mass.size();
  FEDSIM_CHECK(m >= 1);
  double total_mass = 0.0;
  for (double v : o.importance_mass) total_mass += v;
  std::vector<double> p(m);
  for (std::size_t i = 0; i < m; ++i) p[i] = o.importance_mass[i] / total_mass;
  std::vector<double> d(m, 0.0);
  switch (o.scheme) {
    case AsyncScheme::kSyncFedAvg:
      return p;  // FL: d_i = p_i for both variants (the official code)
    case AsyncScheme::kAsyncFedAvg:
      if (!o.weight_variant) return std::vector<double>(m, 1.0);
      {
        FEDSIM_CHECK(o.mean_ticks.size() == m);
        double inv_sum = 0.0;
        for (double tau : o.mean_ticks) inv_sum += 1.0 / tau;
        for (std::size_t i = 0; i < m; ++i) d[i] = inv_sum * o.mean_ticks[i] * p[i];
      }
      return d;
    case AsyncScheme::kFedFix:
      // `identical` is not defined by the official code; fedsim uses d_i =
      // p_i (no correction for how often a client contributes).
      if (!o.weight_variant) return p;
      FEDSIM_CHECK(o.mean_ticks.size() == m && o.window_ticks >= 1);
      for (std::size_t i = 0; i < m; ++i) {
        d[i] = std::ceil(o.mean_ticks[i] / static_cast<double>(o.window_ticks)) * p[i];
      }
      return d;
    case AsyncScheme::kFedBuff:
      if (!o.weight_variant) {
        return std::vector<double>(m, 1.0 / static_cast<double>(o.buffer_size));
      }
      FEDSIM_CHECK(o.step_fraction.size() == m);
      // A client that never contributes never needs a weight.
      for (std::size_t i = 0; i < m; ++i) {
        d[i] = o.step_fraction[i] > 0.0 ? p[i] / o.step_fraction[i] : 0.0;
      }
      return d;
  }
  return d;
}

AsyncAggregator::AsyncAggregator(AsyncAggregatorOptions options)
    : options_(std::move(options)) {
  FEDSIM_CHECK(!options_.weights.empty() &&
               options_.importance_mass.size() == options_.weights.size());
}

void AsyncAggregator::set_weights(std::vector<double> weights) {
  FEDSIM_CHECK(weights.size() == options_.weights.size());
  options_.weights = std::move(weights);
}

absl::StatusOr<std::vector<AsyncContribution>> AsyncAggregator::Aggregate(
    std::int64_t version, std::span<const AsyncUpdate> updates,
    FlatVector& global) {
  std::vector<AsyncContribution> report;
  if (updates.empty()) return report;  // an empty step: theta unchanged
  const auto num_clients = static_cast<std::int64_t>(options_.weights.size());
  double mass = 0.0;
  for (std::size_t j = 0; j < updates.size(); ++j) {
    const AsyncUpdate& u = updates[j];
    if (u.client.value < 0 || u.client.value >= num_clients ||
        u.update == nullptr || u.update->size() != global.size() ||
        u.base_version < 0 || u.base_version > version ||
        (j > 0 && !(updates[j - 1].client < u.client))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", version, ": bad update from client ", u.client.value,
          " (base version ", u.base_version, "); updates must be sorted by "
          "client, of the model's size, from a version <= the current one"));
    }
    mass += options_.importance_mass[u.client.value];
  }
  std::vector<double> weights;
  std::vector<const Eigen::VectorXd*> inputs;
  for (const AsyncUpdate& u : updates) {
    const std::int64_t staleness = version - u.base_version;
    double w = options_.weights[u.client.value];
    if (options_.scheme == AsyncScheme::kSyncFedAvg) {
      // FedAvg's n_k / m_t (ratio) or 1 / |S| (uniform) over the returned.
      w = options_.importance_mass[u.client.value] / mass;
    }
    if (options_.staleness_scaling) {
      w *= 1.0 / std::sqrt(1.0 + static_cast<double>(staleness));
    }
    weights.push_back(w);
    inputs.push_back(u.update);
    report.push_back(AsyncContribution{u.client, u.base_version, staleness, w});
  }
  step_.resize(global.size());
  WeightedSum(weights, inputs, step_, options_.kernel);
  Axpy(options_.server_lr, step_, global, options_.kernel);
  return report;
}

}  // namespace fedsim
