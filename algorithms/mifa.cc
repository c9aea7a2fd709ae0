// MIFA (Gu et al., NeurIPS 2021) as the FedAU paper's code runs it
// (docs/fedvarp_mifa.md): server/strategy/mifa.h keeps every client's last
// update; the clients train locally and keep nothing.
#include "algorithms/algorithm.h"
#include "algorithms/strategy_options.h"
#include "server/strategy/mifa.h"

namespace fedsim {
namespace {

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeMifa(const StrategyInputs& in) {
  MifaOptions options;
  options.server_lr = in.config.algorithm().server_lr();
  options.local = LocalSpec(in.config);
  return std::make_unique<Mifa>(options, in.experiment.num_clients(),
                                in.experiment.num_parameters());
}

}  // namespace

namespace registered {

constinit const Algorithm kMifa{
    .name = v1::AlgorithmConfig::NAME_MIFA,
    .make_strategy = MakeMifa,
    .client_step = LocalTrainingStep,
};

}  // namespace registered
}  // namespace fedsim
