// SCAFFOLD (Karimireddy et al., ICML 2020; ALGORITHMS.md §6.1): the server
// keeps c (server/strategy/scaffold.h), each client c_i in its state
// (client/trainer/scaffold_trainer.h).
#include "absl/strings/str_cat.h"
#include "algorithms/algorithm.h"
#include "algorithms/strategy_options.h"
#include "client/trainer/scaffold_trainer.h"
#include "server/strategy/scaffold.h"

namespace fedsim {
namespace {

absl::StatusOr<std::unique_ptr<SyncStrategy>> MakeScaffold(const StrategyInputs& in) {
  ScaffoldOptions options;
  options.server_lr = in.config.algorithm().server_lr();
  options.local = LocalSpec(in.config);
  options.option =
      in.config.algorithm().scaffold_option() == v1::AlgorithmConfig::SCAFFOLD_OPTION_I
          ? ScaffoldOption::kOptionI
          : ScaffoldOption::kOptionII;
  options.stragglers = StragglersOf(in.config);
  return std::make_unique<Scaffold>(options, in.experiment.num_clients(),
                                    in.experiment.num_parameters());
}

absl::StatusOr<ClientResult> ScaffoldStep(const Experiment& e, std::uint64_t seed,
                                          const Task& task, ClientState* state) {
  if (e.dp.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.id.value, ": SCAFFOLD with local DP is not supported"));
  }
  if (task.scafflsa.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.id.value, " carries SCAFFLSA's fields; SCAFFOLD takes none"));
  }
  const auto k = static_cast<std::size_t>(task.client.value);
  return RunScaffoldTask(*e.objective, e.data.train, e.data.client_rows[k], e.client_sizes[k],
                         seed, task, state, e.augment.has_value() ? &*e.augment : nullptr);
}

void ScaffoldState(const v1::ExperimentConfig&, std::int64_t dim, ClientStateLayout& layout) {
  layout[kScaffoldControl] = dim;  // c_i
}

}  // namespace

namespace registered {

constinit const Algorithm kScaffold{
    .name = v1::AlgorithmConfig::NAME_SCAFFOLD,
    .make_strategy = MakeScaffold,
    .client_step = ScaffoldStep,
    .client_state = ScaffoldState,
};

}  // namespace registered

}  // namespace fedsim
