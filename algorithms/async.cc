// The asynchronous algorithms on the virtual or the wall clock
// (ALGORITHMS.md §4, docs/async.md): FedFix, with synchronous FedAvg on
// the clock, asynchronous FedAvg and FedBuff as baselines. The engines run
// their scheme (server/strategy/async_fl.h); clients train locally.
#include "algorithms/algorithm.h"

namespace fedsim {

namespace registered {

constinit const Algorithm kClockFedAvg{
    .name = v1::AlgorithmConfig::NAME_CLOCK_FEDAVG,
    .async_scheme = AsyncScheme::kSyncFedAvg,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kAsyncFedAvg{
    .name = v1::AlgorithmConfig::NAME_ASYNC_FEDAVG,
    .async_scheme = AsyncScheme::kAsyncFedAvg,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kFedFix{
    .name = v1::AlgorithmConfig::NAME_FEDFIX,
    .async_scheme = AsyncScheme::kFedFix,
    .client_step = LocalTrainingStep,
};

constinit const Algorithm kFedBuff{
    .name = v1::AlgorithmConfig::NAME_FEDBUFF,
    .async_scheme = AsyncScheme::kFedBuff,
    .client_step = LocalTrainingStep,
};

}  // namespace registered

}  // namespace fedsim
