#include "server/strategy/fedlsa.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/byte_io.h"
#include "common/base/check.h"
#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"

namespace fedsim {

FedLsa::FedLsa(const FedLsaOptions& options) : options_(options) {
  if (options_.anchors) {
    FEDSIM_CHECK(options_.control_variates && options_.num_clients >= 1);
    anchors_.resize(static_cast<std::size_t>(options_.num_clients));
  }
}

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
  for (ClientId c : participants) {
    TaskSpec spec{c, local};
    if (options_.anchors) {
      FEDSIM_CHECK(c.value >= 0 && c.value < options_.num_clients);
      // The agent consumes its pending iterate with this anchor (or drops
      // it, without one); only an aggregated result gives it a new anchor.
      spec.server_control = std::move(anchors_[static_cast<std::size_t>(c.value)]);
      anchors_[static_cast<std::size_t>(c.value)] = nullptr;
    }
    tasks.push_back(std::move(spec));
  }
  return tasks;
}

absl::StatusOr<AggregationReport> FedLsa::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  AggregationReport report;
  if (options_.anchors) {
    for (const ClientResult& r : results) {
      if (r.client.value < 0 || r.client.value >= options_.num_clients) {
        return absl::InvalidArgumentError(absl::StrCat(
            "round ", round, ": result from client ", r.client.value,
            "; SCAFFLSA has ", options_.num_clients, " agents"));
      }
    }
  }
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
  if (options_.anchors) {
    // theta_{t+1} is the anchor of every agent aggregated in this round.
    auto anchor = std::make_shared<const FlatVector>(global);
    for (const ClientResult& r : results) {
      anchors_[static_cast<std::size_t>(r.client.value)] = anchor;
    }
  }
  return report;
}

std::string FedLsa::EncodeState() const {
  if (!options_.anchors) return {};
  ByteWriter w;
  w.I64(options_.num_clients);
  for (const auto& a : anchors_) {
    w.U64(a != nullptr ? 1 : 0);
    if (a != nullptr) w.F64s(std::vector<double>(a->data(), a->data() + a->size()));
  }
  return w.bytes();
}

absl::Status FedLsa::DecodeState(std::string_view bytes) {
  if (!options_.anchors) return SyncStrategy::DecodeState(bytes);
  const std::string bad = absl::StrCat(
      "checkpoint: SCAFFLSA state of ", bytes.size(),
      " bytes does not hold the anchors of ", options_.num_clients, " agents");
  ByteReader r(bytes);
  if (r.I64() != options_.num_clients) return absl::InvalidArgumentError(bad);
  std::vector<std::shared_ptr<const FlatVector>> anchors(anchors_.size());
  for (auto& a : anchors) {
    const std::uint64_t present = r.U64();
    if (present > 1) return absl::InvalidArgumentError(bad);
    if (present == 1) {
      const std::vector<double> v = r.F64s();
      a = std::make_shared<const FlatVector>(
          Eigen::Map<const FlatVector>(v.data(), static_cast<Eigen::Index>(v.size())));
    }
  }
  if (!r.done()) return absl::InvalidArgumentError(bad);
  anchors_ = std::move(anchors);
  return absl::OkStatus();
}

}  // namespace fedsim
