// FedLSA and SCAFFLSA (ALGORITHMS.md §3.2-3.3, docs/lsa.md): one server
// class (server/strategy/fedlsa.h); the agents' protocol, with SCAFFLSA's
// control variates and anchors, in client/trainer/lsa_trainer.h.
#include "algorithms/algorithm.h"
#include "client/trainer/lsa_trainer.h"
#include "server/strategy/fedlsa.h"

namespace fedsim {
namespace {

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeFedLsa(const StrategyInputs& in) {
  FedLsaOptions options;
  options.control_variates =
      in.config.algorithm().name() == v1::AlgorithmConfig::NAME_SCAFFLSA;
  options.eta = in.config.local().lr();
  options.local_steps = in.config.local().max_steps();
  options.communication_probability = in.config.algorithm().communication_probability();
  options.seed = in.config.seed();
  options.num_clients = in.experiment.num_clients();
  return std::make_unique<FedLsa>(options);
}

absl::StatusOr<ClientResult> LsaStep(const Experiment& e, std::uint64_t seed, const Task& task,
                                     ClientState* state) {
  return RunLsaTask(*e.lsa, seed, task, state);
}

void ScaffLsaState(const v1::ExperimentConfig&, std::int64_t dim, ClientStateLayout& layout) {
  layout[kScaffLsaControl] = dim;      // xi_c
  layout[kScaffLsaLastIterate] = dim;  // theta_c^{t_c,H}, until its anchor comes
  layout[kScaffLsaLastRound] = 1;      // t_c
}

}  // namespace

namespace registered {

constinit const Algorithm kFedLsa{
    .name = v1::AlgorithmConfig::NAME_FEDLSA,
    .make_strategy = MakeFedLsa,
    .client_step = LsaStep,
};

constinit const Algorithm kScaffLsa{
    .name = v1::AlgorithmConfig::NAME_SCAFFLSA,
    .make_strategy = MakeFedLsa,
    .client_step = LsaStep,
    .client_state = ScaffLsaState,
};

}  // namespace registered

}  // namespace fedsim
