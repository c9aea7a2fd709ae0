// FedLSA / SCAFFLSA server side (ALGORITHMS.md §3.2-3.3): H local steps for
// everyone, equal-weight averaging of the final local iterates; the
// Scaffnew-style extension draws H_t ~ Geometric(p) once per round.
#include "server/strategy/fedlsa.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedsim {
namespace {

TEST(FedLsaTest, NamesFollowTheControlVariateFlag) {
  EXPECT_EQ(FedLsa(FedLsaOptions{}).name(), "FedLSA");
  FedLsaOptions o;
  o.control_variates = true;
  EXPECT_EQ(FedLsa(o).name(), "SCAFFLSA");
}

TEST(FedLsaTest, PlanHandsOutEtaAndExactlyHSteps) {
  FedLsaOptions o;
  o.eta = 0.1;
  o.local_steps = 7;
  FedLsa fedlsa(o);
  const std::vector<ClientId> who = {ClientId(0), ClientId(1), ClientId(4)};
  const std::vector<TaskSpec> plan = fedlsa.Plan(5, who);
  ASSERT_EQ(plan.size(), 3u);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].client, who[i]);
    EXPECT_EQ(plan[i].local.max_steps, 7);
    EXPECT_EQ(plan[i].local.lr, 0.1);
  }
}

TEST(FedLsaTest, AggregationIsTheEqualWeightMeanOfLocalIterates) {
  FedLsa fedlsa(FedLsaOptions{});
  std::vector<ClientResult> results(4);
  for (int c = 0; c < 4; ++c) {
    results[c].client = ClientId(c);
    results[c].num_examples = 1;
    results[c].update = FlatVector::Constant(2, c + 1.0);  // 1, 2, 3, 4
  }
  FlatVector global(2);
  global << 10.0, 20.0;
  const absl::StatusOr<AggregationReport> report =
      fedlsa.Aggregate(0, results, global);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->weights.size(), 4u);
  for (const auto& [client, w] : report->weights) EXPECT_EQ(w, 0.25);
  EXPECT_DOUBLE_EQ(global[0], 12.5);
  EXPECT_DOUBLE_EQ(global[1], 22.5);
}

TEST(FedLsaTest, RandomCommunicationDrawsGeometricLocalSteps) {
  FedLsaOptions o;
  o.communication_probability = 0.2;
  o.seed = 11;
  FedLsa fedlsa(o);
  FedLsa again(o);
  const int rounds = 20000;
  double sum = 0.0, sum_sq = 0.0;
  int ones = 0;
  for (int t = 0; t < rounds; ++t) {
    const std::int64_t h = fedlsa.LocalSteps(t);
    ASSERT_GE(h, 1);
    ASSERT_EQ(h, again.LocalSteps(t)) << "round " << t;  // keyed, replayable
    sum += h;
    sum_sq += static_cast<double>(h) * h;
    ones += h == 1;
  }
  // Geometric(p) on {1, 2, ...}: mean 1/p = 5, variance (1-p)/p^2 = 20,
  // P(H = 1) = p. Tolerances are about 5 standard errors.
  const double mean = sum / rounds;
  EXPECT_NEAR(mean, 5.0, 5 * std::sqrt(20.0 / rounds));
  EXPECT_NEAR(sum_sq / rounds - mean * mean, 20.0, 2.0);
  EXPECT_NEAR(static_cast<double>(ones) / rounds, 0.2,
              5 * std::sqrt(0.2 * 0.8 / rounds));
}

TEST(FedLsaTest, CommunicationProbabilityOneMeansOneStep) {
  FedLsaOptions o;
  o.communication_probability = 1.0;
  o.local_steps = 50;
  EXPECT_EQ(FedLsa(o).LocalSteps(3), 1);
}

}  // namespace
}  // namespace fedsim
