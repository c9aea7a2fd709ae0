#include "server/coordinator/strategy_factory.h"

#include "absl/strings/str_cat.h"
#include "server/coordinator/config_adapters.h"
#include "server/strategy/fedau.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/fedlsa.h"
#include "server/strategy/scaffold.h"

namespace fedsim {

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeStrategy(
    const v1::ExperimentConfig& config, const Experiment& exp,
    const std::vector<double>& probabilities) {
  const LocalTrainingSpec local = LocalSpec(config);
  const StragglerOptions stragglers = StragglersOf(config);
  const ServerOptimizerOptions server_optimizer = ServerOptimizerOf(config);
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

}  // namespace fedsim
