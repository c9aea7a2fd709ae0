#include "client/trainer/lsa_trainer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/random/stream.h"

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

namespace {

// RunLsaTask after its checks. (Returning a ClientResult, not a StatusOr:
// GCC 12 sees a false maybe-uninitialized in a StatusOr<ClientResult>
// built here.)
ClientResult RunAgent(const LsaSetup& lsa, std::uint64_t seed, const Task& task,
                      ClientState* state) {
  const std::int64_t k = task.client.value;
  const Eigen::VectorXd& theta_t = *task.params;
  const Eigen::Index p = theta_t.size();
  const Eigen::VectorXd* xi = nullptr;
  if (lsa.control_variates) {
    Eigen::VectorXd& xi_c = state->Vector(kScaffLsaControl, p);
    // SCAFFLSA step 3 of the agent's last round t_c, now that the model
    // that closed it is here: xi_c <- xi_c + (theta_{t_c+1} -
    // theta_c^{t_c,H}) / (eta H), with theta_{t_c+1} the anchor the server
    // sent. With every agent in every round the anchor is theta_t, this
    // task's parameters (the paper's algorithm). An iterate the server did
    // not aggregate (a rejected or lost result, or a round the agent was
    // not aggregated in under partial participation) has no anchor of its
    // round and is dropped without updating xi_c, which keeps
    // sum_c xi_c = 0. A task whose result never came back leaves the state
    // as it was (the coordinator commits it with the result), and the
    // anchor it carried comes again with the next task.
    auto last = state->vectors.find(kScaffLsaLastIterate);
    auto last_round = state->vectors.find(kScaffLsaLastRound);
    if (last != state->vectors.end()) {
      if (task.scafflsa.has_value() && last_round != state->vectors.end() &&
          static_cast<double>(task.scafflsa->anchor_round) == last_round->second[0]) {
        UpdateControlVariate(*task.scafflsa->anchor, last->second, lsa.cv_divisor, xi_c);
      }
      state->vectors.erase(last);
    }
    if (last_round != state->vectors.end()) state->vectors.erase(kScaffLsaLastRound);
    xi = &xi_c;
  }
  std::int64_t markov_state = -1;
  if (lsa.oracle == LsaOracle::kMarkov && state != nullptr && state->Has(kLsaMarkovState)) {
    markov_state = static_cast<std::int64_t>(state->vectors.at(kLsaMarkovState)[0]);
  }
  LsaSampler sampler(lsa.problem.agents[static_cast<std::size_t>(k)], lsa.oracle,
                     RngStream(seed, RngPurpose::kLsaOracle, k, task.round), markov_state);
  Eigen::VectorXd theta = RunLsaSteps(sampler, theta_t, task.local.lr, task.local.max_steps, xi);
  if (lsa.control_variates) {
    state->vectors[kScaffLsaLastIterate] = theta;
    state->vectors[kScaffLsaLastRound] =
        Eigen::VectorXd::Constant(1, static_cast<double>(task.round));
  }
  if (lsa.oracle == LsaOracle::kMarkov && state != nullptr) {
    state->vectors[kLsaMarkovState] =
        Eigen::VectorXd::Constant(1, static_cast<double>(sampler.markov_state()));
  }
  ClientResult r;
  r.task = task.id;
  r.client = task.client;
  r.update = theta - theta_t;
  r.num_examples = 1;  // agents have equal weight
  r.num_steps = task.local.max_steps;
  r.train_loss = std::nan("");  // LSA has no loss; metrics leave it empty
  return r;
}

}  // namespace

absl::StatusOr<ClientResult> RunLsaTask(const LsaSetup& lsa, std::uint64_t seed,
                                        const Task& task, ClientState* state) {
  const std::int64_t k = task.client.value;
  if (k < 0 || k >= static_cast<std::int64_t>(lsa.problem.agents.size())) {
    return absl::InvalidArgumentError(absl::StrCat("task ", task.id.value, " names agent ", k,
                                                   "; the problem has ",
                                                   lsa.problem.agents.size(), " agents"));
  }
  if (task.local.max_steps < 1 || !(task.local.lr > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.id.value, ": LSA needs max_steps >= 1 and lr > 0"));
  }
  if ((lsa.control_variates || lsa.oracle == LsaOracle::kMarkov) && state == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", task.id.value, ": this LSA algorithm keeps client state, but none was given"));
  }
  if (task.scaffold.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.id.value, " carries SCAFFOLD's fields; LSA takes none"));
  }
  const Eigen::VectorXd& theta_t = *task.params;
  const Eigen::Index p = theta_t.size();
  if (task.scafflsa.has_value() &&
      (!lsa.control_variates || task.scafflsa->anchor->size() != p)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.id.value, ": an anchor of ", task.scafflsa->anchor->size(),
        " values; only SCAFFLSA takes one, of ", p, " values"));
  }
  return RunAgent(lsa, seed, task, state);
}

}  // namespace fedsim
