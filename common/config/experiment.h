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
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/client_state.h"
#include "common/data/augment.h"
#include "common/data/dataset.h"
#include "common/dp/mechanisms.h"
#include "common/dp/rdp_accountant.h"
#include "common/lsa/lsa_problem.h"
#include "common/objectives/objective.h"
#include "fedsim/v1/config.pb.h"

namespace fedsim {

// Example-level local DP (config local.dp with mode != none), resolved.
struct DpSetup {
  DpSpec spec;                 // what every client runs; z resolved
  bool calibrated = false;     // z was calibrated from target_epsilon
  std::vector<double> orders;  // RDP order grid of the accountant
  double delta = 1e-5;
  RdpConversion conversion = RdpConversion::kTight;
  double epsilon_budget = 0.0; // 0: none
  std::vector<double> sampling_rates;        // q_k per client
  std::vector<std::int64_t> steps_per_task;  // local steps of one task, per client
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
  // Set when local.dp.mode is not none.
  std::optional<DpSetup> dp;
  // Set when local.augment crops or flips (image rows only).
  std::optional<AugmentSpec> augment;
  // With a row cache: where the rows came from (for the process's log).
  std::string data_note;

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
//
// Unless `keep_row_order` is set or the training set has more than 2^21
// rows, the training rows are then reordered so that every client's rows
// are contiguous (MakeClientRowsContiguous: the same run, faster);
// client_rows index the reordered set. Tools that hand
// the split to code reading the data files themselves (bench/
// export_partition.cc) keep the files' row order.
//
// A non-empty `row_cache_dir` shares the prepared data between processes
// (common/data/row_cache.h): the first process to build it writes it there
// as one file, named by a key of the data files (names, sizes, modification
// times), the config keys that shape the data (data, clients, seed,
// eval.train_rows) and the build's ISA level; every process, this one
// included, then maps that file, so the rows are held once per host
// however many processes use them. A cache file that is not whole or not
// for this key is rebuilt. `data_note` says which happened.
absl::StatusOr<Experiment> BuildExperiment(const v1::ExperimentConfig& config,
                                           const std::string& data_dir = "",
                                           bool keep_row_order = false,
                                           const std::string& row_cache_dir = "");

// The data of BuildExperiment without the model: LoadExperimentData reads
// or generates it as the files give it (train_row_clients and the other
// fields of FederatedData filled, no partition); PrepareExperimentData also
// partitions it, draws train_loss's rows and reorders the rows as
// BuildExperiment does. `fedsim data inspect` shows either.
absl::StatusOr<FederatedData> LoadExperimentData(const v1::ExperimentConfig& config,
                                                 const std::string& data_dir = "");
absl::StatusOr<FederatedData> PrepareExperimentData(const v1::ExperimentConfig& config,
                                                    const std::string& data_dir = "");

// For an experiment `e` already built from `config` (and `data_dir`):
// writes its data to `cache_dir` unless a file for the same key is there,
// then moves e's rows onto the mapping of that file (e's own copy is
// freed). Processes started afterwards with BuildExperiment(...,
// cache_dir) map the same file. `durable`: fsync the file (a cache that
// must survive a crash). LSA experiments have no rows: nothing to do.
absl::Status ShareRowsThroughCache(Experiment& e, const v1::ExperimentConfig& config,
                                   const std::string& data_dir, const std::string& cache_dir,
                                   bool durable);

// The DP settings of a validated config for clients of sizes `client_sizes`.
// With local.dp.target_epsilon > 0 the noise multiplier is calibrated so that
// every client stays within the target even if it takes part in all
// config.rounds rounds. Fails with kInvalidArgument (one line naming
// local.dp.target_epsilon) when the target cannot be met.
absl::StatusOr<DpSetup> ResolveDp(const v1::ExperimentConfig& config,
                                  const std::vector<std::int64_t>& client_sizes);

// True for SCAFFLSA with partial participation (participation.model other
// than uniform, or client_fraction < 1): fedsim's EXTENSION, where the
// server sends each agent the model that closed its last aggregated round
// (docs/lsa.md, "Extension: partial participation"). Full participation
// keeps the paper's algorithm and its lazy update.
bool ScaffLsaPartialParticipation(const v1::ExperimentConfig& config);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_CONFIG_EXPERIMENT_H_
