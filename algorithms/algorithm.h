// File: algorithms/algorithm.h
//
// One algorithm's registration: everything fedsim needs to run it, named
// in one place. The pieces it names live with their layer:
//
//   what                     where
//   traits (family, what     its AlgorithmConfig.Name value in
//     composes with it)        proto/fedsim/v1/config.proto (options.proto)
//   its own config rules     `validate`
//   the server strategy      server/strategy/ (pure), built by `make_strategy`
//   the client step          client/trainer/ (pure), called by `client_step`
//   the client state         `client_state` (names and sizes; the coordinator
//                              checks and checkpoints what clients send back)
//
// A registration is a constant (no static constructors) listed once in
// algorithms/list.inc. docs/architecture.md, "Adding an algorithm", walks
// through one (FedVARP).
#ifndef FEDSIM_ALGORITHMS_ALGORITHM_H_
#define FEDSIM_ALGORITHMS_ALGORITHM_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/client_state.h"
#include "common/base/task.h"
#include "common/config/experiment.h"
#include "fedsim/v1/config.pb.h"
#include "server/strategy/async_fl.h"
#include "server/strategy/strategy.h"

namespace fedsim {

// What a strategy is built from.
struct StrategyInputs {
  const v1::ExperimentConfig& config;  // validated, defaults applied
  const Experiment& experiment;
  // The true p_n of every client under the participation model (the
  // known_prob oracle; the run log).
  const std::vector<double>& probabilities;
};

// The algorithm's server side, for FAMILY_ROUNDS and FAMILY_LSA.
using MakeStrategyFn = absl::StatusOr<std::unique_ptr<SyncStrategy>> (*)(const StrategyInputs&);

// The algorithm's client side: runs `task` for its client (already checked
// to be a client of `experiment`, with parameters of the right size).
// `state` is the client's state when the algorithm (or the experiment: a
// Markovian oracle, DiceSGD) keeps one, else null; the step updates it in
// place. The streams it draws from are keyed by (seed, purpose, client,
// round), so a task gives the same result in every process and thread.
using ClientStepFn = absl::StatusOr<ClientResult> (*)(const Experiment& experiment,
                                                      std::uint64_t seed, const Task& task,
                                                      ClientState* state);

// Adds the client state the algorithm keeps (name -> number of values) for
// a model of `dim` parameters.
using ClientStateFn = void (*)(const v1::ExperimentConfig& config, std::int64_t dim,
                               ClientStateLayout& layout);

// Rules of the algorithm's own that its traits cannot say; one-line
// kInvalidArgument "config: KEY = VALUE; RULE" as ValidateConfig.
using ValidateFn = absl::Status (*)(const v1::ExperimentConfig& config);

struct Algorithm {
  v1::AlgorithmConfig::Name name = v1::AlgorithmConfig::NAME_UNSPECIFIED;
  ValidateFn validate = nullptr;             // null: the traits say it all
  MakeStrategyFn make_strategy = nullptr;    // FAMILY_ROUNDS, FAMILY_LSA
  // FAMILY_ASYNC: the scheme the asynchronous engines run
  // (server/strategy/async_fl.h); ignored otherwise.
  AsyncScheme async_scheme = AsyncScheme::kAsyncFedAvg;
  ClientStepFn client_step = nullptr;        // never null
  ClientStateFn client_state = nullptr;      // null: the clients keep none
};

// Every registration (list.inc), each defined in its algorithm's own file
// (in a namespace of their own: kFedAu is also an enumerator of the
// strategy's).
namespace registered {
#define FEDSIM_ALGORITHM(registration) extern const Algorithm registration;
#include "algorithms/list.inc"
#undef FEDSIM_ALGORITHM
}  // namespace registered

// The client step of the local-training algorithms (FedAvg and most
// others): local SGD, or DP-SGD with the experiment's local DP
// (client/trainer/local_task.h).
absl::StatusOr<ClientResult> LocalTrainingStep(const Experiment& experiment, std::uint64_t seed,
                                               const Task& task, ClientState* state);

}  // namespace fedsim

#endif  // FEDSIM_ALGORITHMS_ALGORITHM_H_
