// File: common/lsa/lsa_problem.h
//
// Federated linear stochastic approximation (ALGORITHMS.md §3): N agents,
// agent c observes random A_c(Z) in R^{p x p} and b_c(Z) in R^p with means
// Abar_c and bbar_c; the target theta* solves Abar theta = bbar with
// Abar = (1/N) sum_c Abar_c, bbar = (1/N) sum_c bbar_c.
//
// Problems come in three forms:
//   * TD(0) with linear features over one Markov reward process per agent
//     (§3.4): A(Z) = phi(s) (phi(s) - gamma phi(s'))^T, b(Z) = r(s) phi(s),
//     Abar_c = Phi^T D_c (I - gamma P_c) Phi, bbar_c = Phi^T D_c r_c;
//     generated as Garnet MDPs or given explicitly;
//   * a general linear system per agent with Gaussian noise:
//     A(Z) = Abar_c + sigma G, b(Z) = bbar_c + sigma g.
// theta*, every local theta*_c and the stationary distributions are
// computed exactly (dense solves; p and |S| are small).
//
// Oracles: i.i.d. samples (s ~ mu_c, s' ~ P_c(s, .)), as the official code
// draws them; Markovian trajectories (s' of one step is s of the next); or
// the expected direction Abar_c theta - bbar_c (noise-free analysis).
#ifndef FEDSIM_COMMON_LSA_LSA_PROBLEM_H_
#define FEDSIM_COMMON_LSA_LSA_PROBLEM_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "common/random/stream.h"

namespace fedsim {

// One agent's Markov reward process under the fixed policy.
struct TdChain {
  Eigen::MatrixXd features;    // Phi: |S| x p
  Eigen::MatrixXd transition;  // P_c: |S| x |S|, rows sum to 1
  Eigen::VectorXd reward;      // r_c: |S|
  Eigen::VectorXd stationary;  // mu_c: |S|
  double gamma = 0.95;
};

struct LsaAgent {
  Eigen::MatrixXd a_bar;        // Abar_c
  Eigen::VectorXd b_bar;        // bbar_c
  std::optional<TdChain> td;    // set for TD(0) problems
  double noise_std = 0.0;       // general linear systems
  Eigen::VectorXd theta_star;   // theta*_c = Abar_c^{-1} bbar_c
};

struct LsaProblem {
  std::vector<LsaAgent> agents;
  Eigen::VectorXd theta_star;   // solves Abar theta = bbar
  std::int64_t dim() const { return theta_star.size(); }
};

enum class LsaOracle { kIid, kMarkov, kExpected };

// Garnet environments as in the official SCAFFLSA code (GarnetEnv.py).
struct GarnetSpec {
  int num_agents = 10;
  int states = 30;
  int actions = 2;
  int branching = 2;      // next states reachable from each (s, a)
  int features = 8;
  double gamma = 0.95;
  // < 1: one base kernel shared by all agents, each agent adding
  // Uniform(0, kernel_heterogeneity) to its non-zero entries ("low", 0.02).
  // >= 1: two base kernels (even agents use the first, odd the second),
  // each perturbed by Uniform(0, 0.02), and rewards +r for even agents, -r
  // for odd ones ("high", 10).
  double kernel_heterogeneity = 0.02;
  double reward_heterogeneity = 0.02;  // Uniform(0, .) added to rewards (low)
};
absl::StatusOr<LsaProblem> MakeGarnet(const GarnetSpec& spec,
                                      std::uint64_t seed);

// TD(0) over explicit chains (transition, reward, features, gamma per
// agent). Fails with kInvalidArgument naming the agent if a matrix has the
// wrong shape, a row of P does not sum to 1, or Abar_c is singular.
absl::StatusOr<LsaProblem> MakeTdProblem(std::vector<TdChain> chains);

// General linear systems. Fails if a matrix is singular or shapes differ.
absl::StatusOr<LsaProblem> MakeLinearProblem(
    std::vector<Eigen::MatrixXd> a_bars, std::vector<Eigen::VectorXd> b_bars,
    double noise_std);

// FedLSA's heterogeneity bias (§3.5): theta_inf - theta* =
//   [ (1/N) sum_c (I - Gamma_c) ]^{-1} (1/N) sum_c (I - Gamma_c)(theta*_c - theta*)
// with Gamma_c = (I - eta Abar_c)^H.
Eigen::VectorXd FedLsaBias(const LsaProblem& problem, double eta, std::int64_t h);

// A federated LSA / TD(0) experiment (data.source = lsa), resolved from
// its config.
struct LsaSetup {
  LsaProblem problem;
  LsaOracle oracle = LsaOracle::kIid;
  bool control_variates = false;  // SCAFFLSA
  // SCAFFLSA's control-variate divisor: eta H, or eta / p (Scaffnew-style).
  // The agent updates xi_c with the anchor its task carries
  // (Task::scafflsa; docs/lsa.md), not with the task's parameters.
  double cv_divisor = 1.0;
};

// Draws oracle samples for one agent during one task.
class LsaSampler {
 public:
  // `markov_state`: the chain's state carried over from the agent's last
  // task (Markov oracle), or -1 to start from a draw of mu_c.
  LsaSampler(const LsaAgent& agent, LsaOracle oracle, RngStream rng,
             std::int64_t markov_state = -1);

  // direction = A(Z) theta - b(Z) for a fresh Z (O(p) for TD problems).
  void Direction(const Eigen::VectorXd& theta, Eigen::VectorXd& direction);

  // The Markov chain's current state (-1 for other oracles).
  std::int64_t markov_state() const { return state_; }

 private:
  std::int64_t DrawFrom(const Eigen::VectorXd& probabilities);
  const LsaAgent& agent_;
  LsaOracle oracle_;
  RngStream rng_;
  std::int64_t state_;
};

}  // namespace fedsim

#endif  // FEDSIM_COMMON_LSA_LSA_PROBLEM_H_
