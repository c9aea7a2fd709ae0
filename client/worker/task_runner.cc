#include "client/worker/task_runner.h"

#include "absl/strings/str_cat.h"
#include <cmath>

#include "client/trainer/dp_trainer.h"
#include "client/trainer/local_trainer.h"
#include "client/trainer/lsa_trainer.h"
#include "client/trainer/scaffold_trainer.h"
#include "common/base/status_macros.h"
#include "common/random/stream.h"

namespace fedsim {

namespace {

// One agent's FedLSA / SCAFFLSA round (ALGORITHMS.md §3.2-3.3).
ClientResult RunLsaTask(const LsaSetup& lsa, std::uint64_t seed,
                        const Task& task, ClientState* state) {
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
      if (task.server_control != nullptr && last_round != state->vectors.end() &&
          static_cast<double>(task.anchor_round) == last_round->second[0]) {
        UpdateControlVariate(*task.server_control, last->second, lsa.cv_divisor, xi_c);
      }
      state->vectors.erase(last);
    }
    if (last_round != state->vectors.end()) state->vectors.erase(kScaffLsaLastRound);
    xi = &xi_c;
  }
  std::int64_t markov_state = -1;
  if (lsa.oracle == LsaOracle::kMarkov && state != nullptr &&
      state->Has(kLsaMarkovState)) {
    markov_state = static_cast<std::int64_t>(state->vectors.at(kLsaMarkovState)[0]);
  }
  LsaSampler sampler(lsa.problem.agents[k], lsa.oracle,
                     RngStream(seed, RngPurpose::kLsaOracle, k, task.round),
                     markov_state);
  Eigen::VectorXd theta =
      RunLsaSteps(sampler, theta_t, task.local.lr, task.local.max_steps, xi);
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

absl::StatusOr<ClientResult> RunTask(const Experiment& experiment,
                                     std::uint64_t seed, const Task& task,
                                     ClientState* state) {
  const std::int64_t k = task.client.value;
  if (k < 0 || k >= experiment.num_clients()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.id.value, " names client ", k, "; the experiment has ",
        experiment.num_clients(), " clients"));
  }
  if (task.params == nullptr ||
      task.params->size() != experiment.num_parameters()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", task.id.value, " has ",
        task.params ? task.params->size() : 0, " parameters, expected ",
        experiment.num_parameters()));
  }
  if (experiment.lsa != nullptr) {
    if (task.local.max_steps < 1 || !(task.local.lr > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", task.id.value, ": LSA needs max_steps >= 1 and lr > 0"));
    }
    if ((experiment.lsa->control_variates ||
         experiment.lsa->oracle == LsaOracle::kMarkov) && state == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", task.id.value, ": this LSA algorithm keeps client state, "
          "but none was given"));
    }
    if (task.server_control != nullptr &&
        (!experiment.lsa->control_variates ||
         task.server_control->size() != experiment.num_parameters())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", task.id.value, ": server_control of ",
          task.server_control->size(), " values; only SCAFFLSA takes one (its "
          "anchor), of ", experiment.num_parameters(), " values"));
    }
    return RunLsaTask(*experiment.lsa, seed, task, state);
  }
  LocalTrainingOutput out;
  FlatVector control_delta;
  if (task.server_control != nullptr) {
    // SCAFFOLD (§6.1): c_i lives in the client's state; it is updated on a
    // copy and kept only if the round's local work succeeded.
    if (state == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "task ", task.id.value, ": SCAFFOLD keeps client state, but none "
          "was given"));
    }
    if (experiment.dp.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", task.id.value, ": SCAFFOLD with local DP is not supported"));
    }
    FlatVector c_i;
    if (state->Has(kScaffoldControl)) c_i = state->vectors.at(kScaffoldControl);
    RngStream rng(seed, RngPurpose::kShuffle, k, task.round);
    FEDSIM_ASSIGN_OR_RETURN(
        ScaffoldClientOutput sc,
        RunScaffoldClient(*experiment.objective, experiment.data.train,
                          experiment.data.client_rows[k], *task.params,
                          *task.server_control, c_i, task.local,
                          task.scaffold_option, rng));
    state->vectors[kScaffoldControl] = std::move(c_i);
    out = std::move(sc.local);
    control_delta = std::move(sc.control_delta);
  } else if (experiment.dp.has_value()) {
    if (task.local.prox_mu != 0.0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task ", task.id.value, ": FedProx's proximal term with local DP is "
          "not supported"));
    }
    // Example-level DP (§5): fresh sampling and noise streams per client and
    // round, consumed step after step.
    const DpSpec& dp = experiment.dp->spec;
    RngStream sampling(seed, RngPurpose::kDpSampling, k, task.round);
    RngStream noise(seed, RngPurpose::kDpNoise, k, task.round);
    FlatVector error;  // DiceSGD's buffer: updated on a copy, kept on success
    if (dp.mode == DpMode::kDiceSgd) {
      if (state == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "task ", task.id.value, ": DiceSGD keeps client state, but none "
            "was given"));
      }
      if (state->Has(kDiceSgdErrorBuffer)) {
        error = state->vectors.at(kDiceSgdErrorBuffer);
      }
    }
    FEDSIM_ASSIGN_OR_RETURN(
        out, RunLocalDpSgd(*experiment.objective, experiment.data.train,
                           experiment.data.client_rows[k], *task.params,
                           task.local, dp, sampling, noise,
                           dp.mode == DpMode::kDiceSgd ? &error : nullptr));
    if (dp.mode == DpMode::kDiceSgd) {
      state->vectors[kDiceSgdErrorBuffer] = std::move(error);
    }
  } else {
    RngStream rng(seed, RngPurpose::kShuffle, k, task.round);
    FEDSIM_ASSIGN_OR_RETURN(
        out, RunLocalSgd(*experiment.objective, experiment.data.train,
                         experiment.data.client_rows[k], *task.params,
                         task.local, rng));
  }
  ClientResult r;
  r.task = task.id;
  r.client = task.client;
  r.update = std::move(out.update);
  r.num_examples = experiment.client_sizes[k];
  r.num_steps = out.num_steps;
  r.train_loss = out.mean_loss;
  r.control_delta = std::move(control_delta);
  return r;
}

}  // namespace fedsim
