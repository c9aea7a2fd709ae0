// File: common/config/experiment.h
//
// Turns a validated ExperimentConfig into the objects both runtimes need: the
// federated data (loaded or generated, then partitioned) and the objective.
// The coordinator and every worker build the same Experiment from the same
// config and seed, so client k's rows are identical in every process.
#ifndef FEDSIM_COMMON_CONFIG_EXPERIMENT_H_
#define FEDSIM_COMMON_CONFIG_EXPERIMENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"
#include "common/lsa/lsa_problem.h"
#include "common/objectives/objective.h"
#include "fedsim/v1/config.pb.h"

namespace fedsim {

// A federated LSA / TD(0) experiment (data.source = lsa).
struct LsaSetup {
  LsaProblem problem;
  LsaOracle oracle = LsaOracle::kIid;
  bool control_variates = false;  // SCAFFLSA
  // SCAFFLSA's control-variate divisor: eta H, or eta / p (Scaffnew-style).
  double cv_divisor = 1.0;
};

struct Experiment {
  FederatedData data;
  // The model's objective; null for LSA experiments, whose "model" is theta.
  std::unique_ptr<Objective> objective;
  // Set for data.source = lsa; then `data` is empty and every agent has
  // unit weight (client_sizes all 1).
  std::unique_ptr<LsaSetup> lsa;
  // n_k for every client k, in client order.
  std::vector<std::int64_t> client_sizes;

  std::int64_t num_clients() const {
    return static_cast<std::int64_t>(client_sizes.size());
  }
  // Length of the global parameter vector.
  std::int64_t num_parameters() const {
    return lsa ? lsa->problem.dim() : objective->NumParameters();
  }
};

// Loads or generates the data named by `config.data`, partitions it among
// `config.clients`, and builds `config.model`. A non-empty `data_dir`
// replaces config.data.path (workers whose data lives elsewhere). Errors: a
// missing data file is kNotFound; a malformed file, a partition that does
// not fit (more clients than rows) or a model that does not fit the data is
// kInvalidArgument. Every message names the config key involved.
absl::StatusOr<Experiment> BuildExperiment(const v1::ExperimentConfig& config,
                                           const std::string& data_dir = "");

// True when the configured algorithm keeps per-client state between rounds
// on the client (common/base/client_state.h). The distributed coordinator
// then pins every client to one worker process.
bool ClientsKeepState(const v1::ExperimentConfig& config);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CONFIG_EXPERIMENT_H_
