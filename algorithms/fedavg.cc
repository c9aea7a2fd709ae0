// FedAvg (McMahan et al., AISTATS 2017; ALGORITHMS.md §2.1) and FedProx
// (Li et al., MLSys 2020; docs/baselines.md): server/strategy/fedavg.h,
// local training on the clients.
#include "algorithms/algorithm.h"
#include "algorithms/strategy_options.h"
#include "server/strategy/fedavg.h"

namespace fedsim {
namespace {

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeFedAvg(const StrategyInputs& in) {
  FedAvgOptions options;
  options.server_lr = in.config.algorithm().server_lr();
  options.local = LocalSpec(in.config);
  options.fedprox = in.config.algorithm().name() == v1::AlgorithmConfig::NAME_FEDPROX;
  options.stragglers = StragglersOf(in.config);
  options.server_optimizer = ServerOptimizerOf(in.config);
  options.robust = RobustOf(in.config);
  return std::make_unique<FedAvg>(options, in.experiment.client_sizes);
}

}  // namespace

namespace registered {

constinit const Algorithm kFedAvg{
    .name = v1::AlgorithmConfig::NAME_FEDAVG,
    .make_strategy = MakeFedAvg,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kFedProx{
    .name = v1::AlgorithmConfig::NAME_FEDPROX,
    .make_strategy = MakeFedAvg,
    .client_step = LocalTrainingStep,
};

}  // namespace registered

}  // namespace fedsim
