// File: algorithms/registry.h
//
// The algorithms fedsim runs (algorithm.h; the list is algorithms/list.inc)
// and what the runtimes ask of them: the coordinator builds an algorithm's
// strategy and knows its clients' state, the workers and the embedded
// runtime run its client step. Nothing else in fedsim names an algorithm.
//
// Thread safety: everything here is immutable and may be used from any
// thread.
#ifndef FEDSIM_ALGORITHMS_REGISTRY_H_
#define FEDSIM_ALGORITHMS_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "algorithms/algorithm.h"
#include "common/base/client_state.h"
#include "common/base/task.h"
#include "common/config/experiment.h"
#include "fedsim/v1/config.pb.h"
#include "server/strategy/async_fl.h"
#include "server/strategy/strategy.h"

namespace fedsim {

// Every registration, in list order.
std::span<const Algorithm* const> Algorithms();

// The registration of `name`; kInvalidArgument "config: algorithm.name =
// X is not a registered algorithm" for a name without one.
absl::StatusOr<const Algorithm*> FindAlgorithm(v1::AlgorithmConfig::Name name);

// The algorithm's own config rules (Algorithm::validate), after
// ValidateConfig; kInvalidArgument for an unregistered name.
absl::Status ValidateAlgorithm(const v1::ExperimentConfig& config);

// The server strategy of a FAMILY_ROUNDS or FAMILY_LSA algorithm.
absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeStrategy(const v1::ExperimentConfig& config,
                                                           const Experiment& experiment,
                                                           const std::vector<double>& probabilities);

// The scheme of a FAMILY_ASYNC algorithm (kAsyncFedAvg for others).
AsyncScheme AsyncSchemeOf(v1::AlgorithmConfig::Name name);

// The state each client keeps between its tasks (name -> exact number of
// values) for a model of `dim` parameters: the algorithm's (SCAFFOLD's
// c_i, SCAFFLSA's xi_c, ...) and the experiment's (a Markovian LSA
// oracle's chain state, DiceSGD's error buffer). Empty when the clients
// keep none.
ClientStateLayout ClientStateLayoutOf(const v1::ExperimentConfig& config, std::int64_t dim);
// !ClientStateLayoutOf(config, dim).empty().
bool ClientsKeepState(const v1::ExperimentConfig& config);

// Runs one task for one client of `experiment` with `algorithm`'s client
// step: the piece of client work that the embedded runtime and the worker
// process share. `state`: the client's own (ClientsKeepState), else null.
// Fails with kInvalidArgument if the task names a client the experiment
// does not have or carries parameters of the wrong size; otherwise as the
// client step.
absl::StatusOr<ClientResult> RunTask(const Algorithm& algorithm, const Experiment& experiment,
                                     std::uint64_t seed, const Task& task, ClientState* state);

}  // namespace fedsim

#endif  // FEDSIM_ALGORITHMS_REGISTRY_H_
