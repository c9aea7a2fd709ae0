#include "client/trainer/local_task.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/trainer/dp_trainer.h"
#include "client/trainer/local_trainer.h"
#include "common/base/status_macros.h"
#include "common/random/stream.h"

namespace fedsim {

absl::StatusOr<ClientResult> RunLocalTask(const LocalTaskInputs& in, std::uint64_t seed,
                                          const Task& task, ClientState* state) {
  const std::int64_t k = task.client.value;
  LocalTrainingOutput out;
  std::optional<Augmenter> augmenter;
  if (in.augment != nullptr && in.augment->enabled()) {
    augmenter.emplace(*in.augment, RngStream(seed, RngPurpose::kAugment, k, task.round));
  }
  Augmenter* augment = augmenter.has_value() ? &*augmenter : nullptr;
  if (in.dp != nullptr) {
    if (task.local.prox_mu != 0.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", task.id.value, ": FedProx's proximal term with local DP is not supported"));
    }
    // Example-level DP (§5): fresh sampling and noise streams per client and
    // round, consumed step after step.
    const DpSpec& dp = *in.dp;
    RngStream sampling(seed, RngPurpose::kDpSampling, k, task.round);
    RngStream noise(seed, RngPurpose::kDpNoise, k, task.round);
    FlatVector error;  // DiceSGD's buffer: updated on a copy, kept on success
    if (dp.mode == DpMode::kDiceSgd) {
      if (state == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "task ", task.id.value, ": DiceSGD keeps client state, but none was given"));
      }
      if (state->Has(kDiceSgdErrorBuffer)) error = state->vectors.at(kDiceSgdErrorBuffer);
    }
    FEDSIM_ASSIGN_OR_RETURN(
        out, RunLocalDpSgd(*in.objective, *in.train, in.rows, *task.params, task.local, dp,
                           sampling, noise, dp.mode == DpMode::kDiceSgd ? &error : nullptr,
                           augment));
    if (dp.mode == DpMode::kDiceSgd) state->vectors[kDiceSgdErrorBuffer] = std::move(error);
  } else {
    RngStream rng(seed, RngPurpose::kShuffle, k, task.round);
    FEDSIM_ASSIGN_OR_RETURN(
        out, RunLocalSgd(*in.objective, *in.train, in.rows, *task.params, task.local, rng,
                         nullptr, augment));
  }
  ClientResult r;
  r.task = task.id;
  r.client = task.client;
  r.update = std::move(out.update);
  r.num_examples = in.num_examples;
  r.num_steps = out.num_steps;
  r.train_loss = out.mean_loss;
  return r;
}

}  // namespace fedsim
