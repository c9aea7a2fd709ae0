#include "server/strategy/fedau.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/check.h"
#include "common/base/status_macros.h"

namespace fedsim {

namespace {
std::string_view BaseName(FedAuWeighting w) {
  switch (w) {
    case FedAuWeighting::kFedAu:
      return "FedAU";
    case FedAuWeighting::kKnownProbabilities:
      return "KnownProb";
    case FedAuWeighting::kAverageParticipating:
      return "AverageParticipating";
    case FedAuWeighting::kAverageAll:
      return "AverageAll";
  }
  return "FedAU";
}
}  // namespace

FedAu::FedAu(const FedAuOptions& options, std::int64_t num_clients)
    : options_(options),
      optimizer_(WithServerLr(options.server_optimizer, options.server_lr)),
      name_(optimizer_.DisplayName(BaseName(options.weighting))),
      n_(num_clients) {
  FEDSIM_CHECK(n_ >= 1 && options_.server_lr > 0.0 && options_.cutoff >= 0);
  FEDSIM_CHECK(options_.weighting != FedAuWeighting::kKnownProbabilities ||
               static_cast<std::int64_t>(options_.probabilities.size()) == n_);
  FEDSIM_CHECK(options_.join_rounds.empty() ||
               static_cast<std::int64_t>(options_.join_rounds.size()) == n_);
  state_.open.assign(n_, 0);
  state_.count.assign(n_, 0);
  state_.sum.assign(n_, 0);
  settled_.assign(n_, 0);
}

std::string_view FedAu::name() const { return name_; }

std::vector<TaskSpec> FedAu::Plan(Round round,
                                  std::span<const ClientId> participants) {
  planned_ = PlanWithStragglers(options_.stragglers, round, participants,
                                options_.local);
  return planned_;
}

FedAu::Counters FedAu::Settled(std::int64_t k, Round through) const {
  Counters c{state_.open[k], state_.count[k], state_.sum[k]};
  Round from = settled_[k];
  if (options_.count_from_join && !options_.join_rounds.empty()) {
    from = std::max(from, options_.join_rounds[k]);  // not yet in the system
  }
  const std::int64_t missed = std::max<std::int64_t>(through - from, 0);
  if (missed == 0) return c;
  // Every missed round increments c_n; with a cutoff K, each time c_n
  // reaches K an interval of length K is recorded and c_n restarts at 0.
  // Starting from c_n < K, that is floor((c_n + missed) / K) intervals.
  if (options_.cutoff > 0) {
    const std::int64_t total = c.open + missed;
    const std::int64_t intervals = total / options_.cutoff;
    c.count += intervals;
    c.sum += intervals * options_.cutoff;
    c.open = total % options_.cutoff;
  } else {
    c.open += missed;
  }
  return c;
}

double FedAu::EstimatedWeight(ClientId client) const {
  const Counters c = Settled(client.value, state_.next_round);
  return c.count > 0 ? static_cast<double>(c.sum) / static_cast<double>(c.count) : 1.0;
}

FedAuState FedAu::SaveState() const {
  FedAuState state;
  state.next_round = state_.next_round;
  state.open.resize(n_);
  state.count.resize(n_);
  state.sum.resize(n_);
  for (std::int64_t k = 0; k < n_; ++k) {
    const Counters c = Settled(k, state_.next_round);
    state.open[k] = c.open;
    state.count[k] = c.count;
    state.sum[k] = c.sum;
  }
  return state;
}

double FedAu::Coefficient(ClientId client, std::size_t num_results) const {
  const auto n = static_cast<double>(n_);
  switch (options_.weighting) {
    case FedAuWeighting::kFedAu:
      return EstimatedWeight(client) / n;
    case FedAuWeighting::kKnownProbabilities:
      return 1.0 / options_.probabilities[client.value] / n;
    case FedAuWeighting::kAverageParticipating:
      return 1.0 / static_cast<double>(num_results);
    case FedAuWeighting::kAverageAll:
      return 1.0 / n;
  }
  return 0.0;
}

void FedAu::RecordRound(Round round, std::span<const ClientResult> results) {
  // Only the participants: everybody else's missed rounds are settled when
  // they are next read (Settled).
  for (const ClientResult& r : results) {
    const std::int64_t k = r.client.value;
    Counters c = Settled(k, round);
    const bool counting = !(options_.count_from_join && !options_.join_rounds.empty() &&
                            round < options_.join_rounds[k]);
    if (counting) {
      c.sum += c.open + 1;
      ++c.count;
      c.open = 0;
    }
    state_.open[k] = c.open;
    state_.count[k] = c.count;
    state_.sum[k] = c.sum;
    settled_[k] = round + 1;
  }
}

absl::StatusOr<AggregationReport> FedAu::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  if (round != state_.next_round) {
    return absl::FailedPreconditionError(absl::StrCat(
        std::string(name()), ": asked to aggregate round ", round, ", expected round ",
        state_.next_round, " (the estimator needs every round in order)"));
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    const ClientResult& r = results[i];
    const bool planned = std::any_of(
        planned_.begin(), planned_.end(),
        [&](const TaskSpec& t) { return t.client == r.client; });
    if (!planned || r.client.value < 0 || r.client.value >= n_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": result from client ", r.client.value,
          ", which was not selected"));
    }
    if (i > 0 && !(results[i - 1].client < r.client)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", round, ": results are not sorted by distinct client ids"));
    }
  }
  AggregationReport report;
  if (!results.empty()) {
    // Weights from the history strictly before this round.
    std::vector<double> weights;
    std::vector<const Eigen::VectorXd*> updates;
    weights.reserve(results.size());
    updates.reserve(results.size());
    for (const ClientResult& r : results) {
      const double w = Coefficient(r.client, results.size());
      weights.push_back(w);
      updates.push_back(&r.update);
      report.weights.emplace_back(r.client, w);
    }
    step_.resize(global.size());
    WeightedSum(weights, updates, step_, options_.kernel);
    optimizer_.Step(step_, global, options_.kernel);
  }
  RecordRound(round, results);
  ++state_.next_round;
  return report;
}

absl::Status FedAu::RestoreState(const FedAuState& state) {
  const auto n = static_cast<std::size_t>(n_);
  if (state.open.size() != n || state.count.size() != n ||
      state.sum.size() != n || state.next_round < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FedAU state: ", state.open.size(), "/", state.count.size(), "/",
        state.sum.size(), " counters for ", n_,
        " clients, next_round = ", state.next_round));
  }
  for (std::size_t k = 0; k < n; ++k) {
    if (state.open[k] < 0 || state.count[k] < 0 || state.sum[k] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("FedAU state: client ", k, " has a negative counter"));
    }
  }
  state_ = state;
  settled_.assign(n_, state_.next_round);
  return absl::OkStatus();
}

std::string FedAu::EncodeState() const {
  const FedAuState state = SaveState();
  ByteWriter w;
  w.I64(state.next_round);
  w.I64s(state.open);
  w.I64s(state.count);
  w.I64s(state.sum);
  optimizer_.Encode(w);
  return w.bytes();
}

absl::Status FedAu::DecodeState(std::string_view bytes) {
  ByteReader r(bytes);
  FedAuState state;
  state.next_round = r.I64();
  state.open = r.I64s();
  state.count = r.I64s();
  state.sum = r.I64s();
  ServerOptimizer optimizer = optimizer_;
  if (!optimizer.Decode(r) || !r.done()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint: FedAU state of ", bytes.size(), " bytes is malformed"));
  }
  FEDSIM_RETURN_IF_ERROR(RestoreState(state));
  optimizer_ = std::move(optimizer);
  return absl::OkStatus();
}

}  // namespace fedsim
