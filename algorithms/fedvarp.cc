// FedVARP (Jhunjhunwala et al., UAI 2022) as the FedAU paper's code runs it
// (docs/fedvarp_mifa.md): server/strategy/fedvarp.h keeps every client's
// last update; the clients train locally and keep nothing.
#include "algorithms/algorithm.h"
#include "algorithms/strategy_options.h"
#include "server/strategy/fedvarp.h"

namespace fedsim {
namespace {

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeFedVarp(const StrategyInputs& in) {
  FedVarpOptions options;
  options.server_lr = in.config.algorithm().server_lr();
  options.local = LocalSpec(in.config);
  return std::make_unique<FedVarp>(options, in.experiment.num_clients(),
                                   in.experiment.num_parameters());
}

}  // namespace

namespace registered {

constinit const Algorithm kFedVarp{
    .name = v1::AlgorithmConfig::NAME_FEDVARP,
    .make_strategy = MakeFedVarp,
    .client_step = LocalTrainingStep,
};

}  // namespace registered
}  // namespace fedsim
