#include "common/lsa/lsa_problem.h"

#include <cmath>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "common/base/check.h"

namespace fedsim {
namespace {

// Sub-stream ids (the round slot of the key) of the Garnet generator.
constexpr std::int64_t kKernelStream = -10;
constexpr std::int64_t kRewardStream = -11;
constexpr std::int64_t kFeatureStream = -12;
constexpr std::int64_t kPolicyStream = -13;

Eigen::MatrixXd MatrixPower(Eigen::MatrixXd m, std::int64_t e) {
  Eigen::MatrixXd result = Eigen::MatrixXd::Identity(m.rows(), m.cols());
  while (e > 0) {
    if (e & 1) result = result * m;
    m = m * m;
    e >>= 1;
  }
  return result;
}

// mu with mu^T P = mu^T, sum mu = 1: replace one equation of (P^T - I) mu = 0
// by the normalisation and solve exactly.
absl::StatusOr<Eigen::VectorXd> Stationary(const Eigen::MatrixXd& p,
                                           std::size_t agent) {
  const Eigen::Index s = p.rows();
  Eigen::MatrixXd m = p.transpose() - Eigen::MatrixXd::Identity(s, s);
  m.row(0).setOnes();
  Eigen::VectorXd rhs = Eigen::VectorXd::Zero(s);
  rhs[0] = 1.0;
  Eigen::FullPivLU<Eigen::MatrixXd> lu(m);
  if (!lu.isInvertible()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "agent ", agent, ": the chain has no unique stationary distribution"));
  }
  Eigen::VectorXd mu = lu.solve(rhs).cwiseAbs();
  return mu / mu.sum();
}

absl::Status FinishAgent(LsaAgent& agent, std::size_t index) {
  Eigen::FullPivLU<Eigen::MatrixXd> lu(agent.a_bar);
  if (!lu.isInvertible()) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent ", index, ": Abar_c is singular"));
  }
  agent.theta_star = lu.solve(agent.b_bar);
  return absl::OkStatus();
}

absl::StatusOr<LsaProblem> Finish(std::vector<LsaAgent> agents) {
  if (agents.empty()) return absl::InvalidArgumentError("lsa: no agents");
  LsaProblem problem;
  const Eigen::Index p = agents[0].b_bar.size();
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(p, p);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(p);
  for (std::size_t c = 0; c < agents.size(); ++c) {
    if (agents[c].a_bar.rows() != p || agents[c].a_bar.cols() != p ||
        agents[c].b_bar.size() != p) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lsa: agent ", c, " has dimension ", agents[c].b_bar.size(),
          ", agent 0 has ", p));
    }
    if (absl::Status s = FinishAgent(agents[c], c); !s.ok()) return s;
    a += agents[c].a_bar;
    b += agents[c].b_bar;
  }
  const double n = static_cast<double>(agents.size());
  Eigen::FullPivLU<Eigen::MatrixXd> lu(a / n);
  if (!lu.isInvertible()) {
    return absl::InvalidArgumentError("lsa: the mean matrix Abar is singular");
  }
  problem.theta_star = lu.solve(b / n);
  problem.agents = std::move(agents);
  return problem;
}

}  // namespace

absl::StatusOr<LsaProblem> MakeTdProblem(std::vector<TdChain> chains) {
  std::vector<LsaAgent> agents;
  for (std::size_t c = 0; c < chains.size(); ++c) {
    TdChain& chain = chains[c];
    const Eigen::Index s = chain.transition.rows();
    if (s < 1 || chain.transition.cols() != s || chain.reward.size() != s ||
        chain.features.rows() != s || chain.features.cols() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lsa.mdps[", c, "]: transition must be |S| x |S|, reward |S| and "
          "features |S| x p; got ", chain.transition.rows(), "x",
          chain.transition.cols(), ", ", chain.reward.size(), " and ",
          chain.features.rows(), "x", chain.features.cols()));
    }
    for (Eigen::Index i = 0; i < s; ++i) {
      const double row = chain.transition.row(i).sum();
      if ((chain.transition.row(i).array() < 0.0).any() ||
          std::abs(row - 1.0) > 1e-9) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lsa.mdps[", c, "].transition row ", i, " sums to ", row,
            "; rows must be probability distributions"));
      }
    }
    if (!(chain.gamma >= 0.0 && chain.gamma < 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lsa.mdps[", c, "].gamma = ", chain.gamma, "; must be in [0, 1)"));
    }
    auto mu = Stationary(chain.transition, c);
    if (!mu.ok()) return mu.status();
    chain.stationary = *mu;
    LsaAgent agent;
    const Eigen::MatrixXd d = chain.stationary.asDiagonal();
    const Eigen::MatrixXd& phi = chain.features;
    agent.a_bar = phi.transpose() * d *
                  (Eigen::MatrixXd::Identity(s, s) - chain.gamma * chain.transition) * phi;
    agent.b_bar = phi.transpose() * d * chain.reward;
    agent.td = std::move(chain);
    agents.push_back(std::move(agent));
  }
  return Finish(std::move(agents));
}

absl::StatusOr<LsaProblem> MakeLinearProblem(std::vector<Eigen::MatrixXd> a_bars,
                                             std::vector<Eigen::VectorXd> b_bars,
                                             double noise_std) {
  if (a_bars.size() != b_bars.size()) {
    return absl::InvalidArgumentError("lsa: as many matrices as vectors needed");
  }
  std::vector<LsaAgent> agents(a_bars.size());
  for (std::size_t c = 0; c < a_bars.size(); ++c) {
    agents[c].a_bar = std::move(a_bars[c]);
    agents[c].b_bar = std::move(b_bars[c]);
    agents[c].noise_std = noise_std;
  }
  return Finish(std::move(agents));
}

absl::StatusOr<LsaProblem> MakeGarnet(const GarnetSpec& g, std::uint64_t seed) {
  if (g.num_agents < 1 || g.states < 2 || g.actions < 2 || g.branching < 1 ||
      g.branching > g.states || g.features < 1 || !(g.gamma >= 0 && g.gamma < 1) ||
      !(g.kernel_heterogeneity >= 0) || !(g.reward_heterogeneity >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lsa.garnet: need agents >= 1, states >= 2, actions >= 2, 1 <= "
        "branching <= states, features >= 1, gamma in [0, 1), heterogeneity "
        ">= 0; got agents ", g.num_agents, ", states ", g.states, ", actions ",
        g.actions, ", branching ", g.branching, ", features ", g.features,
        ", gamma ", g.gamma));
  }
  const int s_n = g.states, a_n = g.actions;
  const bool high = g.kernel_heterogeneity >= 1.0;
  // Base kernels: every (s, a) reaches exactly `branching` next states.
  auto base_kernel = [&](std::int64_t which) {
    RngStream rng(seed, RngPurpose::kDataGeneration, which, kKernelStream);
    std::vector<Eigen::MatrixXd> kernel(a_n, Eigen::MatrixXd::Zero(s_n, s_n));
    for (int s = 0; s < s_n; ++s) {
      for (int a = 0; a < a_n; ++a) {
        for (std::int64_t t : rng.SampleWithoutReplacement(s_n, g.branching)) {
          kernel[a](s, t) = 1.0;
        }
      }
    }
    return kernel;
  };
  const std::vector<Eigen::MatrixXd> kernel0 = base_kernel(-1);
  const std::vector<Eigen::MatrixXd> kernel1 = high ? base_kernel(-2) : kernel0;

  // The policy: uniform over actions - 1 randomly chosen actions per state.
  Eigen::MatrixXd policy = Eigen::MatrixXd::Zero(s_n, a_n);
  {
    RngStream rng(seed, RngPurpose::kDataGeneration, -1, kPolicyStream);
    for (int s = 0; s < s_n; ++s) {
      const auto excluded = static_cast<int>(rng.UniformInt(a_n));
      for (int a = 0; a < a_n; ++a) {
        if (a != excluded) policy(s, a) = 1.0 / (a_n - 1);
      }
    }
  }
  // Features: Uniform(0, 1)^p per state, normalised to sum 1.
  Eigen::MatrixXd features(s_n, g.features);
  {
    RngStream rng(seed, RngPurpose::kDataGeneration, -1, kFeatureStream);
    for (int s = 0; s < s_n; ++s) {
      for (int j = 0; j < g.features; ++j) features(s, j) = rng.Uniform01();
      features.row(s) /= features.row(s).sum();
    }
  }
  Eigen::VectorXd base_reward(s_n);
  {
    RngStream rng(seed, RngPurpose::kDataGeneration, -1, kRewardStream);
    for (int s = 0; s < s_n; ++s) base_reward[s] = rng.Uniform01();
  }

  std::vector<TdChain> chains;
  const double kernel_noise = high ? 0.02 : g.kernel_heterogeneity;
  for (int c = 0; c < g.num_agents; ++c) {
    const std::vector<Eigen::MatrixXd>& base = (c % 2 == 0) ? kernel0 : kernel1;
    RngStream krng(seed, RngPurpose::kDataGeneration, c, kKernelStream);
    TdChain chain;
    chain.gamma = g.gamma;
    chain.features = features;
    chain.transition = Eigen::MatrixXd::Zero(s_n, s_n);
    for (int a = 0; a < a_n; ++a) {
      Eigen::MatrixXd k = base[a];
      for (int s = 0; s < s_n; ++s) {
        for (int t = 0; t < s_n; ++t) {
          if (k(s, t) != 0.0) k(s, t) += kernel_noise * krng.Uniform01();
        }
        k.row(s) /= k.row(s).sum();
      }
      // P^pi(s, s') = sum_a pi(a | s) P(s, a, s').
      chain.transition += policy.col(a).asDiagonal() * k;
    }
    if (high) {
      chain.reward = (c % 2 == 0 ? 1.0 : -1.0) * base_reward;
    } else {
      RngStream rrng(seed, RngPurpose::kDataGeneration, c, kRewardStream);
      chain.reward = base_reward;
      for (int s = 0; s < s_n; ++s) {
        chain.reward[s] += g.reward_heterogeneity * rrng.Uniform01();
      }
    }
    chains.push_back(std::move(chain));
  }
  return MakeTdProblem(std::move(chains));
}

Eigen::VectorXd FedLsaBias(const LsaProblem& problem, double eta, std::int64_t h) {
  const Eigen::Index p = problem.dim();
  const Eigen::MatrixXd id = Eigen::MatrixXd::Identity(p, p);
  Eigen::MatrixXd left = Eigen::MatrixXd::Zero(p, p);
  Eigen::VectorXd right = Eigen::VectorXd::Zero(p);
  for (const LsaAgent& agent : problem.agents) {
    const Eigen::MatrixXd m = id - MatrixPower(id - eta * agent.a_bar, h);
    left += m;
    right += m * (agent.theta_star - problem.theta_star);
  }
  // The 1/N factors cancel.
  return left.fullPivLu().solve(right);
}

LsaSampler::LsaSampler(const LsaAgent& agent, LsaOracle oracle, RngStream rng,
                       std::int64_t markov_state)
    : agent_(agent), oracle_(oracle), rng_(rng), state_(markov_state) {}

std::int64_t LsaSampler::DrawFrom(const Eigen::VectorXd& probabilities) {
  const double u = rng_.Uniform01();
  double cumulative = 0.0;
  for (Eigen::Index i = 0; i < probabilities.size(); ++i) {
    cumulative += probabilities[i];
    if (u < cumulative) return i;
  }
  return probabilities.size() - 1;  // rounding left a sliver above the sum
}

void LsaSampler::Direction(const Eigen::VectorXd& theta,
                           Eigen::VectorXd& direction) {
  if (oracle_ == LsaOracle::kExpected) {
    direction.noalias() = agent_.a_bar * theta;
    direction -= agent_.b_bar;
    return;
  }
  if (!agent_.td.has_value()) {
    // A(Z) theta - b(Z) = Abar theta - bbar + sigma (G theta - g): each
    // entry of G theta - g is N(0, ||theta||^2 + 1), independently.
    direction.noalias() = agent_.a_bar * theta;
    direction -= agent_.b_bar;
    const double scale = agent_.noise_std * std::sqrt(theta.squaredNorm() + 1.0);
    for (Eigen::Index i = 0; i < direction.size(); ++i) {
      direction[i] += scale * rng_.Gaussian();
    }
    return;
  }
  const TdChain& td = *agent_.td;
  std::int64_t s = state_;
  if (oracle_ == LsaOracle::kIid || s < 0) s = DrawFrom(td.stationary);
  const std::int64_t next = DrawFrom(td.transition.row(s).transpose());
  if (oracle_ == LsaOracle::kMarkov) state_ = next;
  // phi(s) (phi(s) - gamma phi(s'))^T theta - r(s) phi(s), in O(p).
  const double td_error = td.features.row(s).dot(theta) -
                          td.gamma * td.features.row(next).dot(theta) -
                          td.reward[s];
  direction = td.features.row(s).transpose() * td_error;
}

}  // namespace fedsim
