#include "client/trainer/lsa_trainer.h"

namespace fedsim {

Eigen::VectorXd RunLsaSteps(LsaSampler& sampler, const Eigen::VectorXd& start,
                            double eta, std::int64_t h, const Eigen::VectorXd* xi) {
  Eigen::VectorXd theta = start;
  Eigen::VectorXd direction(start.size());
  for (std::int64_t step = 0; step < h; ++step) {
    sampler.Direction(theta, direction);
    if (xi != nullptr) direction -= *xi;  // Alg. SCAFFLSA: corrected field
    theta -= eta * direction;
  }
  return theta;
}

void UpdateControlVariate(const Eigen::VectorXd& new_global,
                          const Eigen::VectorXd& last_local, double divisor,
                          Eigen::VectorXd& xi) {
  xi += (new_global - last_local) / divisor;
}

}  // namespace fedsim
