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

}  // namespace fedsim

#endif  // FEDSIM_CLIENT_TRAINER_LSA_TRAINER_H_
