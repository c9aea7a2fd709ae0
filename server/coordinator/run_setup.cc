#include "server/coordinator/run_setup.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/codec/flat_bytes.h"
#include "common/config/config.h"
#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/fedlsa.h"

namespace fedsim {
namespace {

absl::StatusOr<std::unique_ptr<ParticipationModel>> MakeParticipation(
    const v1::ExperimentConfig& config, const Experiment& exp) {
  const auto& p = config.participation();
  switch (p.model()) {
    case v1::ParticipationConfig::MODEL_UNIFORM:
      return std::make_unique<UniformCohort>(config.seed(), exp.num_clients(),
                                             p.client_fraction());
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "config: participation.model = ", p.model(), " is not implemented"));
  }
}

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeStrategy(
    const v1::ExperimentConfig& config, const Experiment& exp) {
  LocalTrainingSpec local;
  local.epochs = config.local().epochs();
  local.batch_size = config.local().batch_size();
  local.lr = config.local().lr();
  local.max_steps = config.local().max_steps();
  switch (config.algorithm().name()) {
    case v1::AlgorithmConfig::NAME_FEDAVG: {
      FedAvgOptions options;
      options.server_lr = config.algorithm().server_lr();
      options.local = local;
      return std::make_unique<FedAvg>(options, exp.client_sizes);
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
      return std::make_unique<FedLsa>(options);
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "config: algorithm.name = ", config.algorithm().name(),
          " is not implemented"));
  }
}

}  // namespace

absl::StatusOr<CoordinatorRun> PrepareRun(const v1::ExperimentConfig& config,
                                          const std::string& out_dir,
                                          const std::string& runtime) {
  UseFixedEigenBlocking();
  CoordinatorRun run;
  run.config = config;
  FEDSIM_ASSIGN_OR_RETURN(Experiment exp, BuildExperiment(config));
  run.experiment = std::make_unique<Experiment>(std::move(exp));
  const Experiment& e = *run.experiment;
  FEDSIM_ASSIGN_OR_RETURN(run.log, RunLog::Create(out_dir));
  FEDSIM_RETURN_IF_ERROR(run.log->WriteFile("config.json", ConfigToJson(config)));

  FlatVector initial(e.num_parameters());
  if (e.lsa != nullptr) {
    // theta_0 = theta* + offset * 1, as in the SCAFFLSA experiments.
    initial = e.lsa->problem.theta_star +
              FlatVector::Constant(initial.size(), config.lsa().theta0_offset());
  } else {
    RngStream init_rng(config.seed(), RngPurpose::kModelInit, -1, -1);
    e.objective->Initialize(initial, init_rng);
  }

  FEDSIM_ASSIGN_OR_RETURN(std::unique_ptr<SyncStrategy> strategy,
                          MakeStrategy(config, e));
  FEDSIM_ASSIGN_OR_RETURN(std::unique_ptr<ParticipationModel> participation,
                          MakeParticipation(config, e));
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
       {"lsa", lsa_info},
       {"name", config.name()},
       {"algorithm", std::string(strategy->name())},
       {"runtime", runtime},
       {"clients", e.num_clients()},
       {"parameters", e.num_parameters()},
       {"train_rows", e.data.train.size()},
       {"test_rows", e.data.test.size()},
       {"rounds", config.rounds()},
       {"seed", config.seed()},
       {"model_hash", ModelHash(initial)}};
  if (!dp_info.is_null()) start_event["dp"] = dp_info;
  FEDSIM_RETURN_IF_ERROR(run.log->Event(start_event));

  RoundEngineOptions options;
  options.seed = config.seed();
  options.rounds = config.rounds();
  options.eval_every = config.eval().every();
  options.eval_train_loss = config.eval().train_loss();
  options.eval_threads = config.runtime().threads();
  RoundEngineInputs inputs;
  inputs.objective = e.objective.get();
  inputs.train = &e.data.train;
  inputs.test = &e.data.test;
  inputs.client_sizes = e.client_sizes;
  inputs.optimum = e.data.optimum;
  inputs.log = run.log.get();
  inputs.privacy = std::move(ledger);
  if (e.dp.has_value()) inputs.epsilon_budget = e.dp->epsilon_budget;
  run.engine = std::make_unique<RoundEngine>(options, std::move(inputs),
                                             std::move(participation),
                                             std::move(strategy),
                                             std::move(initial));
  return run;
}

absl::Status CompleteRun(CoordinatorRun& run, double wall_time_s) {
  const std::string model_path =
      (std::filesystem::path(run.log->dir()) / "model.bin").string();
  FEDSIM_RETURN_IF_ERROR(WriteModelFile(model_path, run.engine->model()));
  const RoundEngine::Tally& t = run.engine->tally();
  nlohmann::json dp_info;
  if (const PrivacyLedger* ledger = run.engine->privacy(); ledger != nullptr) {
    const PrivacyLedger::Summary s = ledger->Summarize();
    std::vector<std::int64_t> steps;
    for (std::int64_t k = 0; k < ledger->num_clients(); ++k) {
      steps.push_back(ledger->steps(k));
    }
    dp_info = {{"epsilon_max", s.max},
               {"epsilon_mean", s.mean},
               {"delta", ledger->options().delta},
               {"epsilon_per_client", ledger->Epsilons()},
               {"steps_per_client", steps},
               {"stopped_by_budget", run.engine->budget_spent()}};
  }
  nlohmann::json end_event = {{"event", "run_end"},
                         {"rounds", run.engine->round()},
                         {"wall_time_s", wall_time_s},
                         {"model_hash", ModelHash(run.engine->model())},
                         {"tasks_issued", t.issued},
                         {"tasks_aggregated", t.aggregated},
                         {"tasks_timed_out", t.timed_out},
                         {"tasks_dropped", t.dropped},
                         {"pushes_rejected", t.rejected_pushes},
                         {"pushes_duplicate", t.duplicate_pushes}};
  if (!dp_info.is_null()) end_event["dp"] = dp_info;
  return run.log->Event(end_event);
}

}  // namespace fedsim
