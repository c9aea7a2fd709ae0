#include "client/trainer/scaffold_trainer.h"

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/kernels/vector_ops.h"

namespace fedsim {

absl::StatusOr<ScaffoldClientOutput> RunScaffoldClient(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& x,
    const FlatVector& server_control, FlatVector& client_control,
    const LocalTrainingSpec& spec, ScaffoldOption option, RngStream& rng,
    Augmenter* augment) {
  const std::int64_t d = objective.NumParameters();
  if (client_control.size() == 0) client_control = FlatVector::Zero(d);
  if (x.size() != d || server_control.size() != d || client_control.size() != d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SCAFFOLD client: x, c and c_i have ", x.size(), ", ",
        server_control.size(), " and ", client_control.size(),
        " values, expected ", d));
  }
  if (option != ScaffoldOption::kOptionI && option != ScaffoldOption::kOptionII) {
    return absl::InvalidArgumentError(
        "SCAFFOLD client: the control-variate option must be I or II");
  }
  // The correction added to every local gradient: c - c_i.
  const FlatVector offset = server_control - client_control;
  ScaffoldClientOutput out;
  FEDSIM_ASSIGN_OR_RETURN(out.local, RunLocalSgd(objective, train, rows, x,
                                                 spec, rng, &offset, augment));
  FlatVector next(d);
  if (option == ScaffoldOption::kOptionI) {
    // The full gradient at x, in the objective's precision.
    if (objective.precision() == Precision::kFloat32) {
      BatchF batch;
      GatherBatch(train, rows, batch);
      objective.Evaluate(x, batch, &next);
    } else {
      Batch batch;
      GatherBatch(train, rows, batch);
      objective.Evaluate(x, batch, &next);
    }
  } else {
    // c_i - c + (x - y) / (K eta_l), with x - y = -Delta y.
    const double k_eta =
        static_cast<double>(out.local.num_steps) * spec.lr;
    next = client_control - server_control - out.local.update / k_eta;
  }
  if (!AllFinite(next)) {
    return absl::OutOfRangeError(
        "SCAFFOLD client: non-finite control variate (lower local.lr)");
  }
  out.control_delta = next - client_control;
  client_control = std::move(next);
  return out;
}

absl::StatusOr<ClientResult> RunScaffoldTask(const Objective& objective, const Dataset& train,
                                             std::span<const std::int64_t> rows,
                                             std::int64_t num_examples, std::uint64_t seed,
                                             const Task& task, ClientState* state,
                                             const AugmentSpec* augment) {
  if (!task.scaffold.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.id.value, ": no server control variate; SCAFFOLD sends c with every task"));
  }
  if (state == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task.id.value, ": SCAFFOLD keeps client state, but none was given"));
  }
  FlatVector c_i;
  if (state->Has(kScaffoldControl)) c_i = state->vectors.at(kScaffoldControl);
  RngStream rng(seed, RngPurpose::kShuffle, task.client.value, task.round);
  std::optional<Augmenter> augmenter;
  if (augment != nullptr && augment->enabled()) {
    augmenter.emplace(*augment, RngStream(seed, RngPurpose::kAugment, task.client.value,
                                          task.round));
  }
  FEDSIM_ASSIGN_OR_RETURN(
      ScaffoldClientOutput out,
      RunScaffoldClient(objective, train, rows, *task.params, *task.scaffold->server_control, c_i,
                        task.local, task.scaffold->option, rng,
                        augmenter.has_value() ? &*augmenter : nullptr));
  state->vectors[kScaffoldControl] = std::move(c_i);
  ClientResult r;
  r.task = task.id;
  r.client = task.client;
  r.update = std::move(out.local.update);
  r.num_examples = num_examples;
  r.num_steps = out.local.num_steps;
  r.train_loss = out.local.mean_loss;
  r.control_delta = std::move(out.control_delta);
  return r;
}

}  // namespace fedsim
