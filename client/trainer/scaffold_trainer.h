// File: client/trainer/scaffold_trainer.h
//
// A SCAFFOLD client's round (ALGORITHMS.md §6.1): from the server model x
// and control variate c, with its own control variate c_i,
//   y <- y - eta_l (g_i(y) - c_i + c)     for K local steps (RunLocalSgd)
//   option I:  c_i+ = grad F_i(x), the full gradient of the client's
//              objective at x over all its rows (in their stored order)
//   option II: c_i+ = c_i - c + (x - y) / (K eta_l), K the steps taken
// and returns Delta y = y - x and Delta c = c_i+ - c_i; c_i is replaced by
// c_i+ in place (the caller keeps it with the client's state). Pure.
#ifndef FEDSIM_CLIENT_TRAINER_SCAFFOLD_TRAINER_H_
#define FEDSIM_CLIENT_TRAINER_SCAFFOLD_TRAINER_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "client/trainer/local_trainer.h"
#include "common/base/client_state.h"
#include "common/base/task.h"

namespace fedsim {

struct ScaffoldClientOutput {
  LocalTrainingOutput local;  // local.update = Delta y
  FlatVector control_delta;   // Delta c = c_i+ - c_i
};

// `client_control` is c_i: zeros of size d if empty (the initial c_i = 0),
// updated to c_i+ only on success. Errors as RunLocalSgd, plus
// kInvalidArgument for a c or c_i of the wrong size or option kNone.
absl::StatusOr<ScaffoldClientOutput> RunScaffoldClient(
    const Objective& objective, const Dataset& train,
    std::span<const std::int64_t> rows, const FlatVector& x,
    const FlatVector& server_control, FlatVector& client_control,
    const LocalTrainingSpec& spec, ScaffoldOption option, RngStream& rng,
    Augmenter* augment = nullptr);

// One client's SCAFFOLD task (§6.1), the whole client protocol: c_i comes
// from `state` (zero before the client's first task), is updated on a copy
// and stored back only if the local work succeeded; the result carries
// Delta y_i and Delta c_i. The shuffling stream is (seed, kShuffle, client,
// round); `num_examples` is the client's n_k. Fails with kInvalidArgument
// for a task without SCAFFOLD's fields, kFailedPrecondition without a
// state, and as RunScaffoldClient.
absl::StatusOr<ClientResult> RunScaffoldTask(const Objective& objective, const Dataset& train,
                                             std::span<const std::int64_t> rows,
                                             std::int64_t num_examples, std::uint64_t seed,
                                             const Task& task, ClientState* state,
                                             const AugmentSpec* augment = nullptr);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_TRAINER_SCAFFOLD_TRAINER_H_
