#include "server/coordinator/config_adapters.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/random/stream.h"
#include "server/participation/availability.h"
#include "server/participation/probabilities.h"

namespace fedsim {

namespace {

absl::StatusOr<std::vector<double>> ClientProbabilities(
    const v1::ExperimentConfig& config, const Experiment& exp) {
  const auto& p = config.participation();
  const auto n = static_cast<std::size_t>(exp.num_clients());
  switch (p.probabilities()) {
    case v1::ParticipationConfig::PROBABILITIES_LIST:
      // Checked here too: with clients named by the data files (clients.count
      // unset) N is known only now.
      if (static_cast<std::size_t>(p.p_size()) != n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config: participation.p lists ", p.p_size(),
            " probabilities; participation.probabilities = list needs one per client (the "
            "data has ", n, " clients)"));
      }
      return std::vector<double>(p.p().begin(), p.p().end());
    case v1::ParticipationConfig::PROBABILITIES_DATA_CORRELATED: {
      if (exp.lsa != nullptr || exp.data.train.num_classes < 2 ||
          exp.data.client_rows.size() != n) {
        return absl::InvalidArgumentError(
            "config: participation.probabilities = data_correlated; it needs a "
            "classification data set (class labels) split among the clients");
      }
      absl::StatusOr<std::vector<std::vector<double>>> pi = LabelHistograms(
          exp.data.train.labels, exp.data.train.num_classes, exp.data.client_rows);
      if (!pi.ok()) return AnnotateStatus(pi.status(), "participation.probabilities");
      DataCorrelatedSpec spec;
      spec.p_mean = p.p_mean();
      spec.p_min = p.p_min();
      spec.label_alpha = p.label_alpha();
      RngStream rng(config.seed(), RngPurpose::kParticipation, -1, -1);
      return DataCorrelatedProbabilities(*pi, spec, rng);
    }
    default:
      return std::vector<double>(n, p.p_mean());
  }
}

}  // namespace

absl::StatusOr<ParticipationSetup> MakeParticipation(
    const v1::ExperimentConfig& config, const Experiment& exp) {
  const auto& p = config.participation();
  ParticipationSetup out;
  const std::int64_t n = exp.num_clients();
  switch (p.model()) {
    case v1::ParticipationConfig::MODEL_UNIFORM: {
      auto cohort = std::make_unique<UniformCohort>(config.seed(), n,
                                                    p.client_fraction());
      out.probabilities.assign(
          n, static_cast<double>(cohort->cohort_size()) / static_cast<double>(n));
      out.model = std::move(cohort);
      break;
    }
    case v1::ParticipationConfig::MODEL_TRACE: {
      std::ifstream in(p.trace_file());
      if (!in) {
        return absl::NotFoundError(absl::StrCat(
            "config: participation.trace_file = '", p.trace_file(),
            "'; cannot open it"));
      }
      std::stringstream text;
      text << in.rdbuf();
      absl::StatusOr<Trace> trace = ParseTrace(text.str(), n);
      if (!trace.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config: participation.trace_file = '", p.trace_file(), "'; ",
            trace.status().message()));
      }
      out.probabilities = TraceFrequencies(*trace, n, config.rounds());
      out.model = std::make_unique<TraceAvailability>(*std::move(trace));
      break;
    }
    case v1::ParticipationConfig::MODEL_BERNOULLI:
    case v1::ParticipationConfig::MODEL_MARKOV:
    case v1::ParticipationConfig::MODEL_CYCLIC: {
      FEDSIM_ASSIGN_OR_RETURN(out.probabilities, ClientProbabilities(config, exp));
      if (static_cast<std::int64_t>(out.probabilities.size()) != n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config: participation.p lists ", out.probabilities.size(),
            " probabilities for ", n, " clients"));
      }
      if (p.model() == v1::ParticipationConfig::MODEL_MARKOV) {
        for (std::size_t k = 0; k < out.probabilities.size(); ++k) {
          if (!(out.probabilities[k] > 0.0)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "config: participation.model = markov; client ", k,
                " has p_n = 0 (raise participation.p_min above 0), and the "
                "Markov chain needs p_n > 0"));
          }
        }
      }
      if (p.model() == v1::ParticipationConfig::MODEL_BERNOULLI) {
        out.model = std::make_unique<BernoulliAvailability>(config.seed(),
                                                            out.probabilities);
      } else if (p.model() == v1::ParticipationConfig::MODEL_MARKOV) {
        out.model = std::make_unique<MarkovAvailability>(
            config.seed(), out.probabilities, p.markov_a());
      } else {
        out.model = std::make_unique<CyclicAvailability>(
            config.seed(), out.probabilities, p.cycle_period());
      }
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "config: participation.model = ", p.model(), " is not implemented"));
  }
  if (!p.join_rounds().empty()) {
    if (p.join_rounds_size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config: participation.join_rounds lists ", p.join_rounds_size(),
          " rounds; it needs none or one per client (the data has ", n, " clients)"));
    }
    out.model = std::make_unique<LateJoin>(
        std::move(out.model),
        std::vector<Round>(p.join_rounds().begin(), p.join_rounds().end()));
  }
  return out;
}

UpdateValidation ValidationOf(const v1::ExperimentConfig& config) {
  const v1::AggregationConfig& a = config.aggregation();
  UpdateValidation v;
  v.max_update_norm = a.max_update_norm();
  switch (a.norm_bound_action()) {
    case v1::AggregationConfig::NORM_BOUND_ACTION_CLIP:
      v.action = NormBoundAction::kClip;
      break;
    case v1::AggregationConfig::NORM_BOUND_ACTION_ZERO:
      v.action = NormBoundAction::kZero;
      break;
    default:
      v.action = NormBoundAction::kReject;
  }
  return v;
}

// Null without an adversary section.
std::shared_ptr<const Adversary> AdversaryOf(const v1::ExperimentConfig& config,
                                             std::int64_t num_clients) {
  const v1::AdversaryConfig& a = config.adversary();
  if (!(a.fraction() > 0.0) && a.clients_size() == 0) return nullptr;
  AdversaryOptions o;
  o.seed = config.seed();
  switch (a.attack()) {
    case v1::AdversaryConfig::ATTACK_GAUSSIAN:
      o.attack = ByzantineAttack::kGaussian;
      break;
    case v1::AdversaryConfig::ATTACK_SCALED:
      o.attack = ByzantineAttack::kScaled;
      break;
    case v1::AdversaryConfig::ATTACK_CONSTANT:
      o.attack = ByzantineAttack::kConstant;
      break;
    default:
      o.attack = ByzantineAttack::kSignFlip;
  }
  o.scale = a.scale();
  if (a.clients_size() > 0) {
    o.clients.assign(a.clients().begin(), a.clients().end());
  } else {
    o.clients = DrawByzantineClients(config.seed(), num_clients, a.fraction());
  }
  return std::make_shared<const Adversary>(std::move(o));
}

// The run_start block of a non-default aggregation or adversary; null for
// the defaults (default runs log exactly what they logged before).
nlohmann::json RobustInfo(const v1::ExperimentConfig& config,
                          const UpdateValidation& validation,
                          const Adversary* adversary) {
  const RobustOptions r = RobustOf(config);
  nlohmann::json info;
  if (r.rule != RobustRule::kMean) {
    info["rule"] = std::string(RobustRuleName(r.rule));
    if (r.rule == RobustRule::kTrimmedMean) info["trim_fraction"] = r.trim_fraction;
    if (r.rule == RobustRule::kKrum || r.rule == RobustRule::kMultiKrum ||
        r.rule == RobustRule::kBulyan) {
      info["byzantine"] = r.byzantine;
    }
    if (r.rule == RobustRule::kMultiKrum) info["multi_krum_m"] = r.multi_krum_m;
  }
  if (validation.max_update_norm > 0.0) {
    info["max_update_norm"] = validation.max_update_norm;
    info["norm_bound_action"] = std::string(NormBoundActionName(validation.action));
  }
  if (adversary != nullptr) {
    info["byzantine_clients"] = adversary->clients();
    info["attack"] = absl::AsciiStrToLower(
        v1::AdversaryConfig::Attack_Name(config.adversary().attack()).substr(7));
    info["attack_scale"] = config.adversary().scale();
  }
  return info;
}

absl::StatusOr<TimeModelSpec> MakeTimeModelSpec(const v1::ExperimentConfig& config,
                                                std::int64_t n) {
  const v1::AsyncConfig& a = config.async();
  TimeModelSpec spec;
  spec.seed = config.seed();
  spec.ticks_per_unit = a.ticks_per_unit();
  spec.mean = FxTimes(n, a.fx_percent());
  spec.sigma = a.log_normal_sigma();
  switch (a.compute_time()) {
    case v1::AsyncConfig::COMPUTE_TIME_EXPONENTIAL:
      spec.compute = TimeKind::kExponential;
      break;
    case v1::AsyncConfig::COMPUTE_TIME_LOG_NORMAL:
      spec.compute = TimeKind::kLogNormal;
      break;
    case v1::AsyncConfig::COMPUTE_TIME_TRACE: {
      spec.compute = TimeKind::kTrace;
      std::ifstream in(a.trace_file());
      if (!in) {
        return absl::NotFoundError(absl::StrCat(
            "config: async.trace_file = '", a.trace_file(), "'; cannot open it"));
      }
      std::stringstream text;
      text << in.rdbuf();
      absl::StatusOr<std::vector<std::vector<double>>> trace =
          ParseTimeTrace(text.str(), n);
      if (!trace.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config: async.trace_file = '", a.trace_file(), "'; ",
            trace.status().message()));
      }
      spec.trace = *std::move(trace);
      break;
    }
    default:
      spec.compute = TimeKind::kConstant;
  }
  const v1::TimeDistribution& net = a.network_delay();
  switch (net.kind()) {
    case v1::TimeDistribution::KIND_CONSTANT:
      spec.network = TimeKind::kConstant;
      break;
    case v1::TimeDistribution::KIND_EXPONENTIAL:
      spec.network = TimeKind::kExponential;
      break;
    case v1::TimeDistribution::KIND_LOG_NORMAL:
      spec.network = TimeKind::kLogNormal;
      break;
    default:
      spec.network = TimeKind::kNone;
  }
  spec.network_mean = net.mean();
  spec.network_sigma = net.sigma();
  return spec;
}

// The unnormalised importance of every client: 1 (uniform) or n_i (ratio).
std::vector<double> ImportanceMass(const v1::ExperimentConfig& config, const Experiment& e) {
  std::vector<double> mass;
  for (std::int64_t k = 0; k < e.num_clients(); ++k) {
    mass.push_back(config.algorithm().importance() == v1::AlgorithmConfig::IMPORTANCE_RATIO
                       ? static_cast<double>(e.client_sizes[k])
                       : 1.0);
  }
  return mass;
}

}  // namespace fedsim
