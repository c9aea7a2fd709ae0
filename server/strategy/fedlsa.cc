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
  if (options_.control_variates) {
    FEDSIM_CHECK(options_.num_clients >= 1);
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
    if (options_.control_variates) {
      FEDSIM_CHECK(c.value >= 0 && c.value < options_.num_clients);
      // The anchor stays until a newer aggregation replaces it: a task whose
      // result never comes back leaves the agent's state as it was, and its
      // next task must bring the same anchor.
      const Anchor& a = anchors_[static_cast<std::size_t>(c.value)];
      if (a.model != nullptr) spec.scafflsa = ScaffLsaTaskFields{a.model, a.round};
    }
    tasks.push_back(std::move(spec));
  }
  return tasks;
}

absl::StatusOr<AggregationReport> FedLsa::Aggregate(
    Round round, std::span<const ClientResult> results, FlatVector& global) {
  AggregationReport report;
  if (options_.control_variates) {
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
  if (options_.control_variates) {
    // theta_{t+1} is the anchor of every agent aggregated in this round.
    auto anchor = std::make_shared<const FlatVector>(global);
    for (const ClientResult& r : results) {
      anchors_[static_cast<std::size_t>(r.client.value)] = {round, anchor};
    }
  }
  return report;
}

// The state's format: a marker, the agent count, then per agent its
// anchor's round (-1: none) and, with one, the model. Earlier fedsim
// versions wrote anchors without rounds (partial participation only).
constexpr std::uint64_t kAnchorsMagic = 0x3273726f68636e61;  // "anchors2"

std::string FedLsa::EncodeState() const {
  if (!options_.control_variates) return {};
  ByteWriter w;
  w.U64(kAnchorsMagic);
  w.I64(options_.num_clients);
  for (const Anchor& a : anchors_) {
    w.I64(a.round);
    if (a.model != nullptr) {
      w.F64s(std::vector<double>(a.model->data(), a.model->data() + a.model->size()));
    }
  }
  return w.bytes();
}

absl::Status FedLsa::DecodeState(std::string_view bytes) {
  if (!options_.control_variates) return SyncStrategy::DecodeState(bytes);
  const std::string bad = absl::StrCat(
      "checkpoint: SCAFFLSA state of ", bytes.size(),
      " bytes does not hold the anchors of ", options_.num_clients,
      " agents (a checkpoint of fedsim before 2026-12-06 cannot be resumed; rerun it)");
  ByteReader r(bytes);
  if (r.U64() != kAnchorsMagic) return absl::InvalidArgumentError(bad);
  if (r.I64() != options_.num_clients) return absl::InvalidArgumentError(bad);
  std::vector<Anchor> anchors(anchors_.size());
  for (Anchor& a : anchors) {
    a.round = r.I64();
    if (a.round < -1) return absl::InvalidArgumentError(bad);
    if (a.round >= 0) {
      const std::vector<double> v = r.F64s();
      // Agents aggregated in the same round share their anchor again.
      for (const Anchor& earlier : anchors) {
        if (&earlier == &a) break;
        if (earlier.round == a.round && earlier.model != nullptr &&
            static_cast<std::size_t>(earlier.model->size()) == v.size() &&
            std::equal(v.begin(), v.end(), earlier.model->data())) {
          a.model = earlier.model;
          break;
        }
      }
      if (a.model == nullptr) {
        a.model = std::make_shared<const FlatVector>(
            Eigen::Map<const FlatVector>(v.data(), static_cast<Eigen::Index>(v.size())));
      }
    }
  }
  if (!r.ok() || !r.done()) return absl::InvalidArgumentError(bad);
  anchors_ = std::move(anchors);
  return absl::OkStatus();
}

}  // namespace fedsim
