// FedAU (Wang and Ji, ICLR 2024; ALGORITHMS.md §2.2) and the baselines of
// its paper (known_prob, average_participating, average_all):
// server/strategy/fedau.h, local training on the clients.
#include "algorithms/algorithm.h"
#include "algorithms/strategy_options.h"
#include "server/strategy/fedau.h"

namespace fedsim {
namespace {

template <FedAuWeighting kWeighting>
absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeFedAu(const StrategyInputs& in) {
  const v1::ExperimentConfig& config = in.config;
  FedAuOptions options;
  options.weighting = kWeighting;
  options.server_lr = config.algorithm().server_lr();
  options.local = LocalSpec(config);
  options.cutoff = config.algorithm().fedau_cutoff();
  options.probabilities = in.probabilities;
  const auto& join = config.participation().join_rounds();
  options.join_rounds.assign(join.begin(), join.end());
  options.count_from_join = config.algorithm().fedau_count_from_join();
  options.stragglers = StragglersOf(config);
  options.server_optimizer = ServerOptimizerOf(config);
  return std::make_unique<FedAu>(options, in.experiment.num_clients());
}

}  // namespace

namespace registered {

constinit const Algorithm kFedAu{
    .name = v1::AlgorithmConfig::NAME_FEDAU,
    .make_strategy = MakeFedAu<FedAuWeighting::kFedAu>,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kKnownProb{
    .name = v1::AlgorithmConfig::NAME_KNOWN_PROB,
    .make_strategy = MakeFedAu<FedAuWeighting::kKnownProbabilities>,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kAverageParticipating{
    .name = v1::AlgorithmConfig::NAME_AVERAGE_PARTICIPATING,
    .make_strategy = MakeFedAu<FedAuWeighting::kAverageParticipating>,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kAverageAll{
    .name = v1::AlgorithmConfig::NAME_AVERAGE_ALL,
    .make_strategy = MakeFedAu<FedAuWeighting::kAverageAll>,
    .client_step = LocalTrainingStep,
};

}  // namespace registered

}  // namespace fedsim
