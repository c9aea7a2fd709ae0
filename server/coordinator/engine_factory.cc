#include "server/coordinator/engine_factory.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "algorithms/registry.h"
#include "common/config/config.h"
#include "server/clock/schedule.h"
#include "server/clock/time_model.h"
#include "server/coordinator/async_engine.h"
#include "server/coordinator/config_adapters.h"
#include "server/coordinator/round_engine.h"
#include "server/coordinator/wall_engine.h"
#include "server/strategy/async_fl.h"

namespace fedsim {
namespace {

// inputs.train: the training set, or the sample of eval.train_rows copied
// out of it (in the data files' order).
std::int64_t TrainLossRows(const Experiment& e) {
  return e.data.eval_rows.empty() ? e.data.train.size()
                                  : static_cast<std::int64_t>(e.data.eval_rows.size());
}

void SetTrainLossRows(const v1::ExperimentConfig& config, const Experiment& e,
                      EngineInputs& inputs) {
  if (e.data.eval_rows.empty() || !config.eval().train_loss()) {
    inputs.train = &e.data.train;
    return;
  }
  inputs.train_sample =
      std::make_shared<const Dataset>(SelectRows(e.data.train, e.data.eval_rows));
  inputs.train = inputs.train_sample.get();
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
  eo.name = std::string(AsyncSchemeName(AsyncSchemeOf(config.algorithm().name())));
}

// The virtual clock: time model, schedule, weights, engine; adds the
// `async` block to run_start.
absl::StatusOr<std::unique_ptr<Engine>> MakeAsyncEngine(
    const v1::ExperimentConfig& config, const Experiment& e, std::int64_t incarnation,
    EngineInputs inputs, FlatVector initial, nlohmann::json& start_event) {
  const std::int64_t n = e.num_clients();
  const v1::AsyncConfig& a = config.async();
  const std::int64_t tpu = a.ticks_per_unit();
  FEDSIM_ASSIGN_OR_RETURN(TimeModelSpec spec, MakeTimeModelSpec(config, n));
  std::shared_ptr<const TimeModel> model =
      std::make_shared<const TimeModel>(std::move(spec));
  AsyncSchedulerOptions so;
  so.scheme = AsyncSchemeOf(config.algorithm().name());
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
  eo.incarnation = incarnation;
  auto runner = std::make_unique<ScheduleRunner>(MakeAsyncScheduler(so),
                                                 std::move(model), horizon);
  return std::make_unique<AsyncEngine>(eo, std::move(inputs), std::move(runner),
                                       std::make_unique<AsyncAggregator>(std::move(ao)),
                                       std::move(initial));
}

// The wall clock's counterpart of MakeAsyncEngine (docs/async.md, "The wall
// clock"): no time model (times are real), weights estimated online.
absl::StatusOr<std::unique_ptr<Engine>> MakeWallEngine(
    const v1::ExperimentConfig& config, const Experiment& e, std::int64_t incarnation,
    EngineInputs inputs, FlatVector initial, nlohmann::json& start_event) {
  const std::int64_t n = e.num_clients();
  const v1::AsyncConfig& a = config.async();
  const std::int64_t tpu = a.ticks_per_unit();
  WallEngineOptions wo;
  wo.scheme = AsyncSchemeOf(config.algorithm().name());
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
  wo.incarnation = incarnation;

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
  return std::make_unique<WallEngine>(wo, std::move(inputs), MakeAsyncScheduler(so),
                                      std::move(initial));
}

}  // namespace

absl::StatusOr<EngineSetup> MakeEngine(const v1::ExperimentConfig& config, const Experiment& e,
                                       const std::string& runtime, std::int64_t incarnation,
                                       RunLog* log, FlatVector initial) {
  const bool async = IsAsyncAlgorithm(config.algorithm().name());
  const bool wall = async && config.async().clock() == v1::AsyncConfig::CLOCK_WALL;
  if (async) {
    nlohmann::json start_event = {{"event", "run_start"},
                                  {"name", config.name()},
                                  {"runtime", runtime},
                                  {"clients", e.num_clients()},
                                  {"parameters", e.num_parameters()},
                                  {"train_rows", e.data.train.size()},
                                  {"train_loss_rows", TrainLossRows(e)},
                                  {"test_rows", e.data.test.size()},
                                  {"rounds", config.rounds()},
                                  {"seed", config.seed()},
                                  {"model_hash", ModelHash(initial)}};
    EngineInputs inputs;
    inputs.objective = e.objective.get();
    SetTrainLossRows(config, e, inputs);
    inputs.test = &e.data.test;
    inputs.client_sizes = e.client_sizes;
    inputs.optimum = e.data.optimum;
    inputs.log = log;
    inputs.validation = ValidationOf(config);
    if (nlohmann::json robust = RobustInfo(config, inputs.validation, nullptr);
        !robust.is_null()) {
      start_event["aggregation"] = robust;
    }
    EngineSetup setup;
    if (wall) {
      FEDSIM_ASSIGN_OR_RETURN(setup.engine,
                              MakeWallEngine(config, e, incarnation, std::move(inputs),
                                             std::move(initial), start_event));
    } else {
      FEDSIM_ASSIGN_OR_RETURN(setup.engine,
                              MakeAsyncEngine(config, e, incarnation, std::move(inputs),
                                              std::move(initial), start_event));
    }
    start_event["algorithm"] = setup.engine->name();
    setup.run_start = std::move(start_event);
    return setup;
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
       {"train_loss_rows", TrainLossRows(e)},
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

  RoundEngineOptions options;
  options.seed = config.seed();
  options.rounds = config.rounds();
  options.eval_every = config.eval().every();
  options.eval_train_loss = config.eval().train_loss();
  options.eval_threads = config.runtime().threads();
  // Quorum applies to worker processes only: embedded tasks cannot be lost.
  if (runtime == "distributed") options.min_quorum = config.distributed().min_quorum();
  options.incarnation = incarnation;
  const auto& local = config.local();
  switch (local.lr_schedule()) {
    case v1::LocalConfig::LR_SCHEDULE_STEP:
      options.lr_schedule.kind = LrSchedule::Kind::kStep;
      break;
    case v1::LocalConfig::LR_SCHEDULE_COSINE:
      options.lr_schedule.kind = LrSchedule::Kind::kCosine;
      break;
    default:
      break;
  }
  options.lr_schedule.step_rounds = local.lr_step_rounds();
  options.lr_schedule.gamma = local.lr_gamma();
  options.lr_schedule.lr_min = local.lr_min();
  EngineInputs inputs;
  inputs.objective = e.objective.get();
  SetTrainLossRows(config, e, inputs);
  inputs.test = &e.data.test;
  inputs.client_sizes = e.client_sizes;
  inputs.optimum = e.data.optimum;
  inputs.log = log;
  inputs.privacy = std::move(ledger);
  if (e.dp.has_value()) inputs.epsilon_budget = e.dp->epsilon_budget;
  inputs.validation = validation;
  inputs.adversary = std::move(adversary);
  EngineSetup setup;
  setup.engine = std::make_unique<RoundEngine>(options, std::move(inputs),
                                               std::move(participation.model),
                                               std::move(strategy), std::move(initial));
  setup.run_start = std::move(start_event);
  return setup;
}

}  // namespace fedsim
