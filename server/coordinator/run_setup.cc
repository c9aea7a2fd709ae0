#include "server/coordinator/run_setup.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/message_differencer.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "common/config/config.h"
#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"
#include "server/coordinator/checkpoint.h"
#include "server/clock/schedule.h"
#include "server/clock/time_model.h"
#include "server/participation/availability.h"
#include "server/participation/probabilities.h"
#include "server/strategy/async_fl.h"
#include "server/strategy/fedau.h"
#include "server/strategy/byzantine.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/robust_aggregation.h"
#include "server/strategy/fedlsa.h"
#include "server/strategy/scaffold.h"

namespace fedsim {
namespace {

// The participation model of the config and the true p_n of every client
// (for the known_prob baseline and the run log).
struct ParticipationSetup {
  std::unique_ptr<ParticipationModel> model;
  std::vector<double> probabilities;
};

absl::StatusOr<std::vector<double>> ClientProbabilities(
    const v1::ExperimentConfig& config, const Experiment& exp) {
  const auto& p = config.participation();
  const auto n = static_cast<std::size_t>(exp.num_clients());
  switch (p.probabilities()) {
    case v1::ParticipationConfig::PROBABILITIES_LIST:
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
    out.model = std::make_unique<LateJoin>(
        std::move(out.model),
        std::vector<Round>(p.join_rounds().begin(), p.join_rounds().end()));
  }
  return out;
}

LocalTrainingSpec LocalSpec(const v1::ExperimentConfig& config) {
  LocalTrainingSpec local;
  local.epochs = config.local().epochs();
  local.batch_size = config.local().batch_size();
  local.lr = config.local().lr();
  local.max_steps = config.local().max_steps();
  local.prox_mu = config.algorithm().prox_mu();
  local.momentum = config.local().momentum();
  local.fresh_batches = config.local().fresh_batches();
  local.grad_clip_norm = config.local().grad_clip_norm();
  return local;
}

RobustOptions RobustOf(const v1::ExperimentConfig& config) {
  const v1::AggregationConfig& a = config.aggregation();
  RobustOptions o;
  switch (a.rule()) {
    case v1::AggregationConfig::RULE_COORDINATE_MEDIAN:
      o.rule = RobustRule::kCoordinateMedian;
      break;
    case v1::AggregationConfig::RULE_TRIMMED_MEAN:
      o.rule = RobustRule::kTrimmedMean;
      break;
    case v1::AggregationConfig::RULE_KRUM:
      o.rule = RobustRule::kKrum;
      break;
    case v1::AggregationConfig::RULE_MULTI_KRUM:
      o.rule = RobustRule::kMultiKrum;
      break;
    case v1::AggregationConfig::RULE_BULYAN:
      o.rule = RobustRule::kBulyan;
      break;
    default:
      o.rule = RobustRule::kMean;
  }
  o.trim_fraction = a.trim_fraction();
  o.byzantine = a.byzantine();
  o.multi_krum_m = a.multi_krum_m();
  return o;
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

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeStrategy(
    const v1::ExperimentConfig& config, const Experiment& exp,
    const std::vector<double>& probabilities) {
  const LocalTrainingSpec local = LocalSpec(config);
  StragglerOptions stragglers;
  stragglers.fraction = config.clients().straggler_fraction();
  stragglers.keep = config.algorithm().keep_stragglers();
  stragglers.seed = config.seed();
  const v1::ServerOptimizerConfig& opt = config.algorithm().server_optimizer();
  ServerOptimizerOptions server_optimizer;
  switch (opt.kind()) {
    case v1::ServerOptimizerConfig::KIND_MOMENTUM:
      server_optimizer.kind = ServerOptimizerKind::kMomentum;
      break;
    case v1::ServerOptimizerConfig::KIND_ADAM:
      server_optimizer.kind = ServerOptimizerKind::kAdam;
      break;
    case v1::ServerOptimizerConfig::KIND_YOGI:
      server_optimizer.kind = ServerOptimizerKind::kYogi;
      break;
    case v1::ServerOptimizerConfig::KIND_ADAGRAD:
      server_optimizer.kind = ServerOptimizerKind::kAdagrad;
      break;
    default:
      server_optimizer.kind = ServerOptimizerKind::kSgd;
  }
  server_optimizer.lr = config.algorithm().server_lr();
  server_optimizer.momentum = opt.momentum();
  server_optimizer.beta1 = opt.beta1();
  server_optimizer.beta2 = opt.beta2();
  server_optimizer.tau = opt.tau();
  switch (config.algorithm().name()) {
    case v1::AlgorithmConfig::NAME_FEDAVG:
    case v1::AlgorithmConfig::NAME_FEDPROX: {
      FedAvgOptions options;
      options.server_lr = config.algorithm().server_lr();
      options.local = local;
      options.fedprox =
          config.algorithm().name() == v1::AlgorithmConfig::NAME_FEDPROX;
      options.stragglers = stragglers;
      options.server_optimizer = server_optimizer;
      options.robust = RobustOf(config);
      return std::make_unique<FedAvg>(options, exp.client_sizes);
    }
    case v1::AlgorithmConfig::NAME_SCAFFOLD: {
      ScaffoldOptions options;
      options.server_lr = config.algorithm().server_lr();
      options.local = local;
      options.option =
          config.algorithm().scaffold_option() == v1::AlgorithmConfig::SCAFFOLD_OPTION_I
              ? ScaffoldOption::kOptionI
              : ScaffoldOption::kOptionII;
      options.stragglers = stragglers;
      return std::make_unique<Scaffold>(options, exp.num_clients(),
                                        exp.num_parameters());
    }
    case v1::AlgorithmConfig::NAME_FEDLSA:
    case v1::AlgorithmConfig::NAME_SCAFFLSA: {
      FedLsaOptions options;
      options.control_variates =
          config.algorithm().name() == v1::AlgorithmConfig::NAME_SCAFFLSA;
      options.eta = config.local().lr();
      options.local_steps = config.local().max_steps();
      options.communication_probability =
          config.algorithm().communication_probability();
      options.seed = config.seed();
      options.num_clients = exp.num_clients();
      return std::make_unique<FedLsa>(options);
    }
    case v1::AlgorithmConfig::NAME_FEDAU:
    case v1::AlgorithmConfig::NAME_KNOWN_PROB:
    case v1::AlgorithmConfig::NAME_AVERAGE_PARTICIPATING:
    case v1::AlgorithmConfig::NAME_AVERAGE_ALL: {
      FedAuOptions options;
      switch (config.algorithm().name()) {
        case v1::AlgorithmConfig::NAME_KNOWN_PROB:
          options.weighting = FedAuWeighting::kKnownProbabilities;
          break;
        case v1::AlgorithmConfig::NAME_AVERAGE_PARTICIPATING:
          options.weighting = FedAuWeighting::kAverageParticipating;
          break;
        case v1::AlgorithmConfig::NAME_AVERAGE_ALL:
          options.weighting = FedAuWeighting::kAverageAll;
          break;
        default:
          options.weighting = FedAuWeighting::kFedAu;
      }
      options.server_lr = config.algorithm().server_lr();
      options.local = local;
      options.cutoff = config.algorithm().fedau_cutoff();
      options.probabilities = probabilities;
      const auto& join = config.participation().join_rounds();
      options.join_rounds.assign(join.begin(), join.end());
      options.count_from_join = config.algorithm().fedau_count_from_join();
      options.stragglers = stragglers;
      options.server_optimizer = server_optimizer;
      return std::make_unique<FedAu>(options, exp.num_clients());
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "config: algorithm.name = ", config.algorithm().name(),
          " is not implemented"));
  }
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

AsyncScheme SchemeOf(v1::AlgorithmConfig::Name name) {
  switch (name) {
    case v1::AlgorithmConfig::NAME_CLOCK_FEDAVG:
      return AsyncScheme::kSyncFedAvg;
    case v1::AlgorithmConfig::NAME_FEDFIX:
      return AsyncScheme::kFedFix;
    case v1::AlgorithmConfig::NAME_FEDBUFF:
      return AsyncScheme::kFedBuff;
    default:
      return AsyncScheme::kAsyncFedAvg;
  }
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

// What both clocks' engines take from the config.
void FillAsyncEngineOptions(const v1::ExperimentConfig& config, AsyncEngineOptions& eo) {
  const v1::AsyncConfig& a = config.async();
  const std::int64_t tpu = a.ticks_per_unit();
  eo.max_steps = config.rounds();
  eo.eval_every = config.eval().every();
  eo.eval_interval = a.eval_interval() > 0.0 ? ToTicks(a.eval_interval(), tpu) : 0;
  eo.eval_train_loss = config.eval().train_loss();
  eo.eval_threads = config.runtime().threads();
  eo.ticks_per_unit = tpu;
  eo.local = LocalSpec(config);
  eo.max_staleness = a.max_staleness();
  eo.name = std::string(AsyncSchemeName(SchemeOf(config.algorithm().name())));
}

// The asynchronous part of PrepareRun: time model, schedule, weights,
// engine; adds the `async` block to run_start.
absl::Status PrepareAsync(const v1::ExperimentConfig& config, CoordinatorRun& run,
                          EngineInputs inputs, FlatVector initial,
                          nlohmann::json& start_event) {
  const Experiment& e = *run.experiment;
  const std::int64_t n = e.num_clients();
  const v1::AsyncConfig& a = config.async();
  const std::int64_t tpu = a.ticks_per_unit();
  FEDSIM_ASSIGN_OR_RETURN(TimeModelSpec spec, MakeTimeModelSpec(config, n));
  std::shared_ptr<const TimeModel> model =
      std::make_shared<const TimeModel>(std::move(spec));
  AsyncSchedulerOptions so;
  so.scheme = SchemeOf(config.algorithm().name());
  so.num_clients = n;
  so.window_ticks = ToTicks(config.algorithm().window(), tpu);
  so.buffer_size = so.scheme == AsyncScheme::kFedBuff ? config.algorithm().buffer_size() : 1;
  if (so.buffer_size > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: algorithm.buffer_size = ", so.buffer_size,
        "; must be <= the number of clients (", n, ")"));
  }
  const Tick horizon = a.horizon() > 0.0 ? std::llround(a.horizon() * static_cast<double>(tpu)) : -1;

  AsyncWeightOptions wo;
  wo.scheme = so.scheme;
  wo.weight_variant =
      config.algorithm().async_weights() == v1::AlgorithmConfig::ASYNC_WEIGHTS_WEIGHT;
  wo.importance_mass = ImportanceMass(config, e);
  for (std::int64_t k = 0; k < n; ++k) wo.mean_ticks.push_back(model->MeanTicks(k));
  wo.window_ticks = so.window_ticks;
  wo.buffer_size = so.buffer_size;
  if (so.scheme == AsyncScheme::kFedBuff && wo.weight_variant) {
    // f_i from the schedule itself, as the official code computes it.
    wo.step_fraction = StepFractions(MakeAsyncScheduler(so), model, horizon,
                                     config.rounds());
  }
  AsyncAggregatorOptions ao;
  ao.scheme = so.scheme;
  ao.weights = AsyncWeights(wo);
  ao.importance_mass = wo.importance_mass;
  ao.staleness_scaling = config.algorithm().staleness_scaling();
  ao.server_lr = config.algorithm().server_lr();

  std::vector<double> tau_units;
  for (double t : wo.mean_ticks) tau_units.push_back(t / static_cast<double>(tpu));
  nlohmann::json info = {
      {"scheme", std::string(AsyncSchemeName(so.scheme))},
      {"weights", wo.weight_variant ? "weight" : "identical"},
      {"importance", config.algorithm().importance() == v1::AlgorithmConfig::IMPORTANCE_RATIO
                         ? "ratio" : "uniform"},
      {"ticks_per_unit", tpu},
      {"horizon", a.horizon()},
      {"mean_task_time", tau_units},
      {"aggregation_weights", ao.weights}};
  if (so.scheme == AsyncScheme::kFedFix) info["window"] = config.algorithm().window();
  if (so.scheme == AsyncScheme::kFedBuff) {
    info["buffer_size"] = so.buffer_size;
    info["staleness_scaling"] = ao.staleness_scaling;
    if (!wo.step_fraction.empty()) info["step_fraction"] = wo.step_fraction;
  }
  start_event["async"] = info;

  AsyncEngineOptions eo;
  FillAsyncEngineOptions(config, eo);
  eo.incarnation = run.incarnation;
  auto runner = std::make_unique<ScheduleRunner>(MakeAsyncScheduler(so),
                                                 std::move(model), horizon);
  run.engine = std::make_unique<AsyncEngine>(
      eo, std::move(inputs), std::move(runner),
      std::make_unique<AsyncAggregator>(std::move(ao)), std::move(initial));
  return absl::OkStatus();
}

// The wall clock's counterpart of PrepareAsync (docs/async.md, "The wall
// clock"): no time model (times are real), weights estimated online.
absl::Status PrepareWall(const v1::ExperimentConfig& config, CoordinatorRun& run,
                         EngineInputs inputs, FlatVector initial, nlohmann::json& start_event) {
  const Experiment& e = *run.experiment;
  const std::int64_t n = e.num_clients();
  const v1::AsyncConfig& a = config.async();
  const std::int64_t tpu = a.ticks_per_unit();
  WallEngineOptions wo;
  wo.scheme = SchemeOf(config.algorithm().name());
  wo.weight_variant =
      config.algorithm().async_weights() == v1::AlgorithmConfig::ASYNC_WEIGHTS_WEIGHT;
  wo.importance_mass = ImportanceMass(config, e);
  wo.window_ticks = ToTicks(config.algorithm().window(), tpu);
  wo.buffer_size = wo.scheme == AsyncScheme::kFedBuff ? config.algorithm().buffer_size() : 1;
  if (wo.buffer_size > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: algorithm.buffer_size = ", wo.buffer_size,
        "; must be <= the number of clients (", n, ")"));
  }
  wo.staleness_scaling = config.algorithm().staleness_scaling();
  wo.server_lr = config.algorithm().server_lr();
  wo.horizon = a.horizon() > 0.0 ? std::llround(a.horizon() * static_cast<double>(tpu)) : -1;
  FillAsyncEngineOptions(config, wo);
  wo.incarnation = run.incarnation;

  AsyncSchedulerOptions so;
  so.scheme = wo.scheme;
  so.num_clients = n;
  so.window_ticks = wo.window_ticks;
  so.buffer_size = wo.buffer_size;
  nlohmann::json info = {
      {"scheme", std::string(AsyncSchemeName(so.scheme))},
      {"clock", "wall"},
      {"weights", wo.weight_variant ? "weight" : "identical"},
      {"importance", config.algorithm().importance() == v1::AlgorithmConfig::IMPORTANCE_RATIO
                         ? "ratio" : "uniform"},
      {"ticks_per_unit", tpu},
      {"horizon", a.horizon()},
      {"worker_slowdown", std::vector<double>(config.distributed().worker_slowdown().begin(),
                                              config.distributed().worker_slowdown().end())}};
  if (so.scheme == AsyncScheme::kFedFix) info["window"] = config.algorithm().window();
  if (so.scheme == AsyncScheme::kFedBuff) {
    info["buffer_size"] = so.buffer_size;
    info["staleness_scaling"] = wo.staleness_scaling;
  }
  start_event["async"] = info;
  run.engine = std::make_unique<WallEngine>(wo, std::move(inputs), MakeAsyncScheduler(so),
                                            std::move(initial));
  return absl::OkStatus();
}

// Builds the run. `resume` null: a fresh run directory (config.json,
// run_start); otherwise the directory is reopened at the checkpoint's round
// and the engine continues from it.
// The bookkeeping of a run restored from `resume`: its earlier run time and
// best accuracy, and the checkpoint_skipped and run_resumed events.
absl::Status MarkResumed(CoordinatorRun& run, const LoadedCheckpoint& resume,
                         const std::string& runtime) {
  const CheckpointData& d = resume.data;
  run.resumed_wall_time_s = d.wall_time_s;
  run.resumed_best_accuracy = d.best_accuracy;
  run.resumed = true;
  for (const std::string& reason : resume.skipped) {
    FEDSIM_RETURN_IF_ERROR(
        run.log->Event({{"event", "checkpoint_skipped"}, {"reason", reason}}));
  }
  return run.log->Event({{"event", "run_resumed"},
                         {"runtime", runtime},
                         {"incarnation", run.incarnation},
                         {"checkpoint", resume.path},
                         {"round", d.engine.next_round},
                         {"model_hash", ModelHash(d.engine.model)},
                         {"wall_time_s", d.wall_time_s}});
}

std::string EngineKindDescription(EngineKind kind) {
  switch (kind) {
    case EngineKind::kRounds:
      return "a synchronous run";
    case EngineKind::kVirtualClock:
      return "an asynchronous run on the virtual clock";
    case EngineKind::kWallClock:
      return "a wall-clock asynchronous run";
  }
  return "an unknown run";
}

// Continues the freshly built `run` from `resume`: the engine's snapshot,
// the clients' states (the coordinator owns them in both runtimes), the
// bookkeeping of MarkResumed.
absl::Status RestoreRun(CoordinatorRun& run, const LoadedCheckpoint& resume,
                        const std::string& runtime) {
  const CheckpointData& d = resume.data;
  if (absl::Status s = run.engine->Restore(d.engine); !s.ok()) {
    return AnnotateStatus(s, resume.path);
  }
  const Experiment& e = *run.experiment;
  const ClientStateLayout layout = ClientStateLayoutOf(run.config, e.num_parameters());
  for (const auto& [client, state] : d.clients) {
    if (client < 0 || client >= e.num_clients()) {
      return absl::InvalidArgumentError(absl::StrCat(
          resume.path, ": checkpoint: state of client ", client, "; the run has ",
          e.num_clients(), " clients"));
    }
    FEDSIM_RETURN_IF_ERROR(CheckClientState(
        state, layout, absl::StrCat(resume.path, ": checkpoint: client ", client)));
  }
  run.client_states = d.clients;
  run.steps_logged = d.engine.next_round;
  return MarkResumed(run, resume, runtime);
}

absl::StatusOr<CoordinatorRun> BuildRun(const v1::ExperimentConfig& config,
                                        const std::string& out_dir,
                                        const std::string& runtime,
                                        const LoadedCheckpoint* resume) {
  UseFixedEigenBlocking();
  const bool async = IsAsyncAlgorithm(config.algorithm().name());
  const bool wall = async && config.async().clock() == v1::AsyncConfig::CLOCK_WALL;
  if (wall && runtime != "distributed") {
    return absl::InvalidArgumentError(
        "config: async.clock = wall; the wall clock needs worker processes (fedsim "
        "launch or fedsim-server), fedsim run simulates time: use async.clock = virtual");
  }
  CoordinatorRun run;
  run.config = config;
  run.runtime = runtime;
  if (resume != nullptr) run.incarnation = resume->data.incarnation + 1;
  FEDSIM_ASSIGN_OR_RETURN(Experiment exp, BuildExperiment(config));
  run.experiment = std::make_unique<Experiment>(std::move(exp));
  const Experiment& e = *run.experiment;
  if (resume == nullptr) {
    // A fresh run never resumes from an earlier run's checkpoints.
    std::error_code ec;
    std::filesystem::remove_all(CheckpointDir(out_dir), ec);
    FEDSIM_ASSIGN_OR_RETURN(run.log, RunLog::Create(out_dir));
    FEDSIM_RETURN_IF_ERROR(run.log->WriteFile("config.json", ConfigToJson(config)));
  } else {
    FEDSIM_ASSIGN_OR_RETURN(
        run.log, RunLog::Reopen(out_dir, resume->data.engine.next_round));
  }
  run.log->SetEventLimit(config.distributed().rejection_events_per_minute(),
                         absl::Minutes(1));
  if (config.logging().tensorboard()) {
    // A resumed run writes its own event file, which makes TensorBoard
    // forget the redone rounds' earlier values.
    FEDSIM_RETURN_IF_ERROR(run.log->EnableTensorBoard(
        resume == nullptr ? std::nullopt
                          : std::optional<std::int64_t>(resume->data.engine.next_round)));
  }

  FlatVector initial(e.num_parameters());
  if (e.lsa != nullptr) {
    // theta_0 = theta* + offset * 1, as in the SCAFFLSA experiments.
    initial = e.lsa->problem.theta_star +
              FlatVector::Constant(initial.size(), config.lsa().theta0_offset());
  } else {
    RngStream init_rng(config.seed(), RngPurpose::kModelInit, -1, -1);
    e.objective->Initialize(initial, init_rng);
  }
  if (resume != nullptr) {
    const EngineKind want = !async ? EngineKind::kRounds
                            : wall ? EngineKind::kWallClock
                                   : EngineKind::kVirtualClock;
    if (resume->data.engine.kind != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--resume: checkpoint '", resume->path, "' is of ",
          EngineKindDescription(resume->data.engine.kind), "; the config's is ",
          EngineKindDescription(want)));
    }
  }
  if (async) {
    nlohmann::json start_event = {{"event", "run_start"},
                                  {"name", config.name()},
                                  {"runtime", runtime},
                                  {"clients", e.num_clients()},
                                  {"parameters", e.num_parameters()},
                                  {"train_rows", e.data.train.size()},
                                  {"test_rows", e.data.test.size()},
                                  {"rounds", config.rounds()},
                                  {"seed", config.seed()},
                                  {"model_hash", ModelHash(initial)}};
    EngineInputs inputs;
    inputs.objective = e.objective.get();
    inputs.train = &e.data.train;
    inputs.test = &e.data.test;
    inputs.client_sizes = e.client_sizes;
    inputs.optimum = e.data.optimum;
    inputs.log = run.log.get();
    inputs.validation = ValidationOf(config);
    if (nlohmann::json robust = RobustInfo(config, inputs.validation, nullptr);
        !robust.is_null()) {
      start_event["aggregation"] = robust;
    }
    if (wall) {
      FEDSIM_RETURN_IF_ERROR(
          PrepareWall(config, run, std::move(inputs), std::move(initial), start_event));
    } else {
      FEDSIM_RETURN_IF_ERROR(
          PrepareAsync(config, run, std::move(inputs), std::move(initial), start_event));
    }
    start_event["algorithm"] = run.engine->name();
    if (resume == nullptr) {
      FEDSIM_RETURN_IF_ERROR(run.log->Event(start_event));
      return run;
    }
    FEDSIM_RETURN_IF_ERROR(RestoreRun(run, *resume, runtime));
    return run;
  }

  FEDSIM_ASSIGN_OR_RETURN(ParticipationSetup participation,
                          MakeParticipation(config, e));
  FEDSIM_ASSIGN_OR_RETURN(std::unique_ptr<SyncStrategy> strategy,
                          MakeStrategy(config, e, participation.probabilities));
  nlohmann::json lsa_info;
  if (e.lsa != nullptr && config.algorithm().communication_probability() == 0.0) {
    // FedLSA's closed-form heterogeneity bias (§3.5), for reference lines.
    const FlatVector beta = FedLsaBias(e.lsa->problem, config.local().lr(),
                                       config.local().max_steps());
    lsa_info = {{"fedlsa_bias_sq", beta.squaredNorm()},
                {"theta_star", std::vector<double>(e.lsa->problem.theta_star.data(),
                                                   e.lsa->problem.theta_star.data() +
                                                       e.lsa->problem.dim())}};
  }
  std::shared_ptr<PrivacyLedger> ledger;
  nlohmann::json dp_info;
  if (e.dp.has_value()) {
    const DpSetup& dp = *e.dp;
    PrivacyLedgerOptions lo;
    lo.orders = dp.orders;
    lo.delta = dp.delta;
    lo.conversion = dp.conversion;
    lo.noise_multiplier = dp.spec.noise_multiplier;
    lo.sampling_rates = dp.sampling_rates;
    lo.steps_per_task = dp.steps_per_task;
    ledger = std::make_shared<PrivacyLedger>(std::move(lo));
    const double one_round = ledger->MaxEpsilonAfterOneMoreTask();
    if (dp.epsilon_budget > 0.0 && one_round > dp.epsilon_budget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config: local.dp.epsilon_budget = ", dp.epsilon_budget,
          "; one round already spends up to epsilon = ", one_round,
          " (raise the budget or the noise)"));
    }
    const auto [q_min, q_max] =
        std::minmax_element(dp.sampling_rates.begin(), dp.sampling_rates.end());
    dp_info = {{"mode", config.local().dp().mode() == v1::DpConfig::MODE_DICESGD
                            ? "dicesgd"
                            : "clip"},
               {"noise_multiplier", dp.spec.noise_multiplier},
               {"calibrated", dp.calibrated},
               {"clip", dp.spec.clip},
               {"error_clip", dp.spec.error_clip},
               {"summed_noise_std", SummedNoiseStd(dp.spec)},
               {"delta", dp.delta},
               {"conversion",
                dp.conversion == RdpConversion::kTight ? "tight" : "classical"},
               {"orders", dp.orders.size()},
               {"sampling_rate_min", *q_min},
               {"sampling_rate_max", *q_max},
               {"epsilon_one_round_max", one_round},
               {"epsilon_budget", dp.epsilon_budget}};
  }
  nlohmann::json start_event = {
       {"event", "run_start"},
       {"name", config.name()},
       {"algorithm", std::string(strategy->name())},
       {"runtime", runtime},
       {"clients", e.num_clients()},
       {"parameters", e.num_parameters()},
       {"train_rows", e.data.train.size()},
       {"test_rows", e.data.test.size()},
       {"rounds", config.rounds()},
       {"seed", config.seed()},
       {"model_hash", ModelHash(initial)},
       // The true p_n of every client (the participation model's; FedAU
       // itself never sees them).
       {"participation_probabilities", participation.probabilities}};
  if (!lsa_info.is_null()) start_event["lsa"] = lsa_info;
  if (!dp_info.is_null()) start_event["dp"] = dp_info;
  const UpdateValidation validation = ValidationOf(config);
  std::shared_ptr<const Adversary> adversary = AdversaryOf(config, e.num_clients());
  if (nlohmann::json robust = RobustInfo(config, validation, adversary.get());
      !robust.is_null()) {
    start_event["aggregation"] = robust;
  }
  if (resume == nullptr) FEDSIM_RETURN_IF_ERROR(run.log->Event(start_event));

  RoundEngineOptions options;
  options.seed = config.seed();
  options.rounds = config.rounds();
  options.eval_every = config.eval().every();
  options.eval_train_loss = config.eval().train_loss();
  options.eval_threads = config.runtime().threads();
  // Quorum applies to worker processes only: embedded tasks cannot be lost.
  if (runtime == "distributed") options.min_quorum = config.distributed().min_quorum();
  options.incarnation = run.incarnation;
  EngineInputs inputs;
  inputs.objective = e.objective.get();
  inputs.train = &e.data.train;
  inputs.test = &e.data.test;
  inputs.client_sizes = e.client_sizes;
  inputs.optimum = e.data.optimum;
  inputs.log = run.log.get();
  inputs.privacy = std::move(ledger);
  if (e.dp.has_value()) inputs.epsilon_budget = e.dp->epsilon_budget;
  inputs.validation = validation;
  inputs.adversary = std::move(adversary);
  run.engine = std::make_unique<RoundEngine>(options, std::move(inputs),
                                             std::move(participation.model),
                                             std::move(strategy),
                                             std::move(initial));
  if (resume != nullptr) FEDSIM_RETURN_IF_ERROR(RestoreRun(run, *resume, runtime));
  return run;
}

// Sections of the config that do not change results: a resumed run may
// use other values (more threads, other deadlines).
v1::ExperimentConfig ResultRelevant(v1::ExperimentConfig c) {
  c.clear_runtime();
  c.clear_distributed();
  c.clear_checkpoint();
  c.clear_logging();
  return c;
}

}  // namespace

std::string AlgorithmName(const CoordinatorRun& run) { return run.engine->name(); }

const RoundEngine* RoundEngineOf(const CoordinatorRun& run) {
  return run.engine->kind() == EngineKind::kRounds
             ? static_cast<const RoundEngine*>(run.engine.get())
             : nullptr;
}

std::int64_t CompletedRounds(const CoordinatorRun& run) {
  // The wall-clock engine takes steps while earlier ones are published.
  return run.engine->kind() == EngineKind::kWallClock ? run.steps_logged
                                                      : run.engine->steps_done();
}

absl::StatusOr<CoordinatorRun> PrepareRun(const v1::ExperimentConfig& config,
                                          const std::string& out_dir,
                                          const std::string& runtime) {
  return BuildRun(config, out_dir, runtime, nullptr);
}

absl::StatusOr<CoordinatorRun> PrepareOrResumeRun(
    const v1::ExperimentConfig& config, const std::string& out_dir,
    const std::string& runtime) {
  absl::StatusOr<LoadedCheckpoint> loaded = LoadLatestCheckpoint(out_dir);
  if (absl::IsNotFound(loaded.status())) {
    return BuildRun(config, out_dir, runtime, nullptr);
  }
  if (!loaded.ok()) return loaded.status();
  const v1::ExperimentConfig& saved = loaded->data.config;
  if (!google::protobuf::util::MessageDifferencer::Equals(ResultRelevant(saved),
                                                          ResultRelevant(config))) {
    std::string difference;
    google::protobuf::util::MessageDifferencer differ;
    differ.ReportDifferencesToString(&difference);
    (void)differ.Compare(ResultRelevant(saved), ResultRelevant(config));
    const std::size_t eol = difference.find('\n');
    return absl::FailedPreconditionError(absl::StrCat(
        "--resume: the config differs from the one checkpointed in '",
        loaded->path, "' (", difference.substr(0, eol),
        "); resume with the same config or use another --out directory"));
  }
  return BuildRun(config, out_dir, runtime, &*loaded);
}

std::int64_t ProgressTotal(const CoordinatorRun& run, const MetricsRow& row) {
  std::int64_t total = run.config.rounds();
  const EngineKind kind = run.engine->kind();
  if (kind == EngineKind::kRounds) return total;
  if (kind == EngineKind::kVirtualClock && run.engine->done()) return row.round + 1;
  const double horizon = run.config.async().horizon();
  if (horizon > 0.0 && row.virtual_time > 0.0) {
    total = std::min<std::int64_t>(
        total, std::max<std::int64_t>(
                   row.round + 1, std::llround(static_cast<double>(row.round + 1) * horizon /
                                               row.virtual_time)));
  }
  return total;
}

namespace {

// Fault injection for the crash tests (docs/checkpoint.md): die by SIGKILL
// after round r's metrics are written and before its checkpoint.
void MaybeInjectKill(std::int64_t completed) {
  if (const char* kill_after = std::getenv("FEDSIM_FAULT_KILL_AFTER_ROUND")) {
    std::int64_t r = -1;
    if (absl::SimpleAtoi(kill_after, &r) && completed == r + 1) {
      std::fflush(nullptr);
      std::raise(SIGKILL);
    }
  }
}

bool TooSoon(const CoordinatorRun& run) {
  const double min_interval = run.config.checkpoint().min_interval_s();
  return min_interval > 0 && run.last_checkpoint.has_value() &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       *run.last_checkpoint)
                 .count() < min_interval;
}

}  // namespace

CheckpointData MakeCheckpointData(const CoordinatorRun& run, const StepReport& report,
                                  const RunSummary& summary, double wall_time_s) {
  CheckpointData data;
  data.config = run.config;
  data.runtime = run.runtime;
  data.incarnation = run.incarnation;
  data.engine = report.snapshot.has_value() ? *report.snapshot : run.engine->Snapshot();
  data.clients = run.client_states;
  data.wall_time_s = wall_time_s;
  data.best_accuracy = summary.best_accuracy;
  return data;
}

absl::StatusOr<bool> MaybeCheckpoint(CoordinatorRun& run, const StepReport& report, bool last,
                                     const RunSummary& summary, double wall_time_s) {
  const int every = run.config.checkpoint().every();
  if (every <= 0) return false;
  // Rounds (steps) completed.
  const std::int64_t completed = report.row.round + 1;
  MaybeInjectKill(completed);
  // Too soon after the previous checkpoint (the last step always writes).
  if (!last && (completed % every != 0 || TooSoon(run))) return false;
  FEDSIM_ASSIGN_OR_RETURN(
      const std::string path,
      WriteCheckpoint(run.log->dir(), MakeCheckpointData(run, report, summary, wall_time_s),
                      run.config.checkpoint().keep()));
  (void)path;
  run.last_checkpoint = std::chrono::steady_clock::now();
  return true;
}

absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s) {
  const Engine& engine = *run.engine;
  const std::string model_path =
      (std::filesystem::path(run.log->dir()) / "model.bin").string();
  FEDSIM_RETURN_IF_ERROR(WriteModelFile(model_path, engine.model()));
  const TaskTally& t = engine.tally();
  nlohmann::json end = {{"event", "run_end"},
                        {"rounds", engine.steps_done()},
                        {"wall_time_s", wall_time_s},
                        {"model_hash", ModelHash(engine.model())},
                        {"tasks_issued", t.issued},
                        {"tasks_aggregated", t.aggregated},
                        {"tasks_timed_out", t.timed_out},
                        {"tasks_dropped", t.dropped},
                        {"pushes_rejected", t.rejected_pushes},
                        {"pushes_duplicate", t.duplicate_pushes}};
  engine.AddRunEndFields(end);
  return run.log->Event(end);
}

}  // namespace fedsim
