// File: client/worker/task_runner.h
//
// Runs one task for one virtual client of an Experiment: the piece of client
// work that the embedded runtime and the worker process share. The
// shuffling stream is keyed by (seed, kShuffle, client, round), so a task
// gives the same result in every process and on every thread.
#ifndef FEDSIM_CLIENT_WORKER_TASK_RUNNER_H_
#define FEDSIM_CLIENT_WORKER_TASK_RUNNER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/base/client_state.h"
#include "common/base/task.h"
#include "common/config/experiment.h"

namespace fedsim {

// `state` is the client's own state (ClientsKeepState(config)); it may be
// null for algorithms whose clients keep none. Fails with kInvalidArgument
// if the task names a client the experiment does not have or carries
// parameters of the wrong size; passes on training failures (see
// RunLocalSgd).
absl::StatusOr<ClientResult> RunTask(const Experiment& experiment,
                                     std::uint64_t seed, const Task& task,
                                     ClientState* state);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_WORKER_TASK_RUNNER_H_
