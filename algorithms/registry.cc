#include "algorithms/registry.h"

#include "absl/strings/str_cat.h"
#include "client/trainer/local_task.h"
#include "common/config/config.h"

namespace fedsim {
namespace {

constexpr const Algorithm* kRegistrations[] = {
#define FEDSIM_ALGORITHM(registration) &registered::registration,
#include "algorithms/list.inc"
#undef FEDSIM_ALGORITHM
};

}  // namespace

std::span<const Algorithm* const> Algorithms() { return kRegistrations; }

absl::StatusOr<const Algorithm*> FindAlgorithm(v1::AlgorithmConfig::Name name) {
  for (const Algorithm* a : kRegistrations) {
    if (a->name == name) return a;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "config: algorithm.name = ", AlgorithmConfigName(name), " is not a registered algorithm"));
}

absl::Status ValidateAlgorithm(const v1::ExperimentConfig& config) {
  absl::StatusOr<const Algorithm*> a = FindAlgorithm(config.algorithm().name());
  if (!a.ok()) return a.status();
  return (*a)->validate == nullptr ? absl::OkStatus() : (*a)->validate(config);
}

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeStrategy(
    const v1::ExperimentConfig& config, const Experiment& experiment,
    const std::vector<double>& probabilities) {
  absl::StatusOr<const Algorithm*> a = FindAlgorithm(config.algorithm().name());
  if (!a.ok()) return a.status();
  if ((*a)->make_strategy == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: algorithm.name = ", AlgorithmConfigName(config.algorithm().name()),
                     " runs asynchronous steps, not rounds"));
  }
  return (*a)->make_strategy(StrategyInputs{config, experiment, probabilities});
}

AsyncScheme AsyncSchemeOf(v1::AlgorithmConfig::Name name) {
  absl::StatusOr<const Algorithm*> a = FindAlgorithm(name);
  return a.ok() ? (*a)->async_scheme : AsyncScheme::kAsyncFedAvg;
}

ClientStateLayout ClientStateLayoutOf(const v1::ExperimentConfig& config, std::int64_t dim) {
  ClientStateLayout layout;
  if (absl::StatusOr<const Algorithm*> a = FindAlgorithm(config.algorithm().name());
      a.ok() && (*a)->client_state != nullptr) {
    (*a)->client_state(config, dim, layout);
  }
  // What the experiment keeps, whatever the algorithm: a Markovian oracle
  // continues its chain from the agent's last task; DiceSGD its error
  // buffer.
  if (config.data().source() == v1::DataConfig::SOURCE_LSA &&
      config.lsa().oracle() == v1::LsaConfig::ORACLE_MARKOV) {
    layout[kLsaMarkovState] = 1;
  }
  if (config.local().dp().mode() == v1::DpConfig::MODE_DICESGD) {
    layout[kDiceSgdErrorBuffer] = dim;
  }
  return layout;
}

bool ClientsKeepState(const v1::ExperimentConfig& config) {
  return !ClientStateLayoutOf(config, 1).empty();
}

absl::StatusOr<ClientResult> RunTask(const Algorithm& algorithm, const Experiment& experiment,
                                     std::uint64_t seed, const Task& task, ClientState* state) {
  const std::int64_t k = task.client.value;
  if (k < 0 || k >= experiment.num_clients()) {
    return absl::InvalidArgumentError(absl::StrCat("task ", task.id.value, " names client ", k,
                                                   "; the experiment has ",
                                                   experiment.num_clients(), " clients"));
  }
  if (task.params == nullptr || task.params->size() != experiment.num_parameters()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.id.value, " has ", task.params ? task.params->size() : 0,
        " parameters, expected ", experiment.num_parameters()));
  }
  return algorithm.client_step(experiment, seed, task, state);
}

absl::StatusOr<ClientResult> LocalTrainingStep(const Experiment& e, std::uint64_t seed,
                                               const Task& task, ClientState* state) {
  if (e.objective == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.id.value, ": local training needs a model (data.source = lsa "
                     "runs fedlsa or scafflsa)"));
  }
  if (task.scaffold.has_value() || task.scafflsa.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.id.value, " carries ", task.scaffold.has_value() ? "SCAFFOLD's" : "SCAFFLSA's",
        " fields; this algorithm trains locally and takes none"));
  }
  const auto k = static_cast<std::size_t>(task.client.value);
  LocalTaskInputs in;
  in.objective = e.objective.get();
  in.train = &e.data.train;
  in.rows = e.data.client_rows[k];
  in.num_examples = e.client_sizes[k];
  in.dp = e.dp.has_value() ? &e.dp->spec : nullptr;
  in.augment = e.augment.has_value() ? &*e.augment : nullptr;
  return RunLocalTask(in, seed, task, state);
}

}  // namespace fedsim
