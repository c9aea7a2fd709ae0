// File: client/trainer/lsa_trainer.h
//
// An agent's local steps of federated LSA (ALGORITHMS.md §3.2-3.3):
//   theta <- theta - eta (A(Z_h) theta - b(Z_h) - xi)     h = 1..H
// with xi = 0 for FedLSA and the agent's control variate for SCAFFLSA.
// Pure: the oracle (and its random stream) is handed in.
#ifndef FEDSIM_CLIENT_TRAINER_LSA_TRAINER_H_
#define FEDSIM_CLIENT_TRAINER_LSA_TRAINER_H_

#include <cstdint>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "common/base/client_state.h"
#include "common/base/task.h"
#include "common/lsa/lsa_problem.h"

namespace fedsim {

// Returns theta after `h` steps from `start`. `xi` may be null (FedLSA).
Eigen::VectorXd RunLsaSteps(LsaSampler& sampler, const Eigen::VectorXd& start,
                            double eta, std::int64_t h, const Eigen::VectorXd* xi);

// SCAFFLSA's control-variate update (§3.3 step 3), applied by the agent when
// it receives theta_{t+1}: xi <- xi + (theta_{t+1} - theta_c^{t,H}) / divisor,
// with divisor = eta H (deterministic communication every H steps) or
// eta / p (Scaffnew-style communication with probability p).
void UpdateControlVariate(const Eigen::VectorXd& new_global,
                          const Eigen::VectorXd& last_local, double divisor,
                          Eigen::VectorXd& xi);

// One agent's FedLSA or SCAFFLSA task, the whole client protocol
// (ALGORITHMS.md §3.2-3.3, docs/lsa.md): SCAFFLSA first folds its pending
// iterate into xi_c with the anchor the task carries (if the anchor closes
// the iterate's round), then runs H = task.local.max_steps steps from the
// task's parameters and keeps the last iterate and its round in `state`; a
// Markovian oracle keeps its chain's state there. The oracle's stream is
// (seed, kLsaOracle, client, round). Agents have equal weight
// (num_examples 1) and no loss (train_loss NaN).
// `state`: the agent's; null only when neither SCAFFLSA nor a Markovian
// oracle keeps one. Fails with kInvalidArgument for max_steps < 1, lr <= 0,
// or an anchor where the algorithm takes none or of the wrong size, and
// kFailedPrecondition when a state is needed and none is given.
absl::StatusOr<ClientResult> RunLsaTask(const LsaSetup& lsa, std::uint64_t seed,
                                        const Task& task, ClientState* state);

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_TRAINER_LSA_TRAINER_H_
