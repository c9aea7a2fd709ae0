// File: common/base/task.h
//
// The plain C++ values that cross between the coordinator and the clients:
// what a client is asked to do (Task) and what it returns (ClientResult).
// Transports convert them to and from fedsim.v1 messages at the edge
// (server/grpc, client/grpc); strategies and trainers never see protobuf.
#ifndef FEDSIM_COMMON_BASE_TASK_H_
#define FEDSIM_COMMON_BASE_TASK_H_

#include <cstdint>
#include <memory>

#include <optional>

#include "common/base/client_state.h"
#include "common/base/types.h"

namespace fedsim {

// Hyper-parameters of one client's local training.
struct LocalTrainingSpec {
  int epochs = 1;              // E
  std::int64_t batch_size = 0; // B; 0 = the whole local data set
  double lr = 0.01;            // local step size
  std::int64_t max_steps = 0;  // > 0: exactly this many steps instead of E epochs
  // FedProx's mu: every local step adds mu (w - start) to the gradient, i.e.
  // minimises F_k(w) + (mu/2) ||w - start||^2. 0 = plain local SGD.
  double prox_mu = 0.0;
  double momentum = 0.0;       // heavy-ball momentum (PyTorch SGD), reset per task
  bool fresh_batches = false;  // each step: a fresh random batch (needs max_steps)
  double grad_clip_norm = 0.0; // > 0: clip every batch gradient to this norm
};

// SCAFFOLD's client control-variate update (ALGORITHMS.md §6.1).
enum class ScaffoldOption : int {
  kOptionI = 1,   // c_i+ = gradient of the client's objective at x
  kOptionII = 2,  // c_i+ = c_i - c + (x - y_i) / (K eta_l)
};

// Per-algorithm fields of a task. Each is set only by its algorithm's
// strategy and read only by its algorithm's client step; the transport
// carries them in fixed wire fields (task_codec.h).

// SCAFFOLD (ALGORITHMS.md §6.1): the server control variate c sent down
// with the model, shared by the round's tasks, and the client's update rule.
struct ScaffoldTaskFields {
  std::shared_ptr<const FlatVector> server_control;  // never null
  ScaffoldOption option = ScaffoldOption::kOptionII;
};

// SCAFFLSA (docs/lsa.md): the agent's anchor theta_{t_c+1}, the model that
// closed the last round t_c it was aggregated in. The agent updates xi_c
// with the anchor only if its pending iterate is from round t_c. Absent
// while the agent has no anchor yet.
struct ScaffLsaTaskFields {
  std::shared_ptr<const FlatVector> anchor;  // never null
  Round anchor_round = -1;                   // t_c >= 0
};

// What a strategy asks of one client in a round.
struct TaskSpec {
  ClientId client;
  LocalTrainingSpec local;
  std::optional<ScaffoldTaskFields> scaffold;
  std::optional<ScaffLsaTaskFields> scafflsa;
};

// A task issued by the coordinator.
struct Task {
  TaskId id;
  Round round = 0;
  ClientId client;
  // The global parameters the client starts from; shared, never copied per
  // task in the embedded runtime.
  std::shared_ptr<const FlatVector> params;
  LocalTrainingSpec local;
  std::optional<ScaffoldTaskFields> scaffold;  // see TaskSpec
  std::optional<ScaffLsaTaskFields> scafflsa;
  // Distributed runtime, algorithms whose clients keep state: the client's
  // state when the round began (the coordinator owns it). Null otherwise
  // (the embedded runtime passes the state to RunTask by pointer).
  std::shared_ptr<const ClientState> client_state;
};

// How many vectors of the model's size a task carries besides its
// parameters (bytes_down accounting).
inline int ExtraVectors(const Task& task) {
  return (task.scaffold.has_value() ? 1 : 0) + (task.scafflsa.has_value() ? 1 : 0);
}

// A client's answer to a task.
struct ClientResult {
  TaskId task;
  ClientId client;
  FlatVector update;               // local parameters minus task parameters
  std::int64_t num_examples = 0;   // n_k
  std::int64_t num_steps = 0;      // local steps taken
  double train_loss = 0.0;         // mean mini-batch loss during training
  // SCAFFOLD: Delta c_i = c_i+ - c_i (d values); empty for other algorithms.
  FlatVector control_delta;
  // Distributed runtime: the client's state after the task, for a task that
  // carried one; the coordinator checks and commits it.
  std::optional<ClientState> client_state;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_TASK_H_
