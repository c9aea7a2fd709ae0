// FedLSA / SCAFFLSA server side (ALGORITHMS.md §3.2-3.3): H local steps for
// everyone, equal-weight averaging of the final local iterates; the
// Scaffnew-style extension draws H_t ~ Geometric(p) once per round.
#include "server/strategy/fedlsa.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/vectors.h"

namespace fedsim {
namespace fedlsa_test {
namespace {

TEST(FedLsaTest, NamesFollowTheControlVariateFlag) {
  EXPECT_EQ(FedLsa(FedLsaOptions{}).name(), "FedLSA");
  FedLsaOptions o;
  o.control_variates = true;
  o.num_clients = 1;
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

TEST(FedLsaTest, FedLsaIsStatelessAndSendsNoVector) {
  FedLsaOptions o;  // FedLSA: no control variates
  FedLsa server(o);
  const std::vector<ClientId> who = {ClientId(0), ClientId(1)};
  for (const TaskSpec& t : server.Plan(0, who)) {
    EXPECT_FALSE(t.scafflsa.has_value());
    EXPECT_FALSE(t.scaffold.has_value());
  }
  EXPECT_TRUE(server.EncodeState().empty());
  EXPECT_FALSE(server.DecodeState("x").ok());
}

// SCAFFLSA: an agent's anchor is the model that closed the last round it
// was aggregated in, sent with that round; planning the agent again does
// not consume it (a task whose result never comes back leaves the agent's
// state as it was, and the next task must bring the same anchor). The
// anchors are the strategy's checkpointed state.
TEST(FedLsaTest, AnchorsFollowAggregatedRoundsAndRoundTripThroughState) {
  FedLsaOptions o;
  o.control_variates = true;
  o.eta = 0.1;
  o.local_steps = 2;
  o.num_clients = 3;
  FedLsa server(o);
  for (const TaskSpec& t : server.Plan(0, std::vector<ClientId>{ClientId(0), ClientId(2)})) {
    EXPECT_FALSE(t.scafflsa.has_value());
    EXPECT_FALSE(t.scaffold.has_value());
  }
  ClientResult r;
  r.client = ClientId(2);
  r.update = test::Vec({1.0, -2.0});
  FlatVector global = test::Vec({0.5, 0.25});
  ASSERT_TRUE(server.Aggregate(0, std::vector<ClientResult>{r}, global).ok());
  FedLsa restored(o);
  ASSERT_TRUE(restored.DecodeState(server.EncodeState()).ok());
  EXPECT_EQ(restored.EncodeState(), server.EncodeState());
  const std::vector<ClientId> all = {ClientId(0), ClientId(1), ClientId(2)};
  for (Round t : {1, 2}) {
    const std::vector<TaskSpec> plan = restored.Plan(t, all);
    ASSERT_EQ(plan.size(), 3u);
    EXPECT_FALSE(plan[0].scafflsa.has_value());  // planned, not aggregated
    EXPECT_FALSE(plan[1].scafflsa.has_value());  // never planned
    ASSERT_TRUE(plan[2].scafflsa.has_value());
    EXPECT_EQ(*plan[2].scafflsa->anchor, test::Vec({1.5, -1.75}));
    EXPECT_EQ(plan[2].scafflsa->anchor_round, 0);
  }
  // A newer aggregation replaces the anchor; agents of one round share it.
  r.client = ClientId(0);
  ClientResult r2 = r;
  r2.client = ClientId(2);
  ASSERT_TRUE(restored.Aggregate(2, std::vector<ClientResult>{r, r2}, global).ok());
  const std::vector<TaskSpec> plan = restored.Plan(3, all);
  ASSERT_TRUE(plan[0].scafflsa.has_value() && plan[2].scafflsa.has_value());
  EXPECT_EQ(plan[0].scafflsa->anchor_round, 2);
  EXPECT_EQ(plan[2].scafflsa->anchor_round, 2);
  EXPECT_EQ(plan[0].scafflsa->anchor, plan[2].scafflsa->anchor);
  FedLsa again(o);
  ASSERT_TRUE(again.DecodeState(restored.EncodeState()).ok());
  const std::vector<TaskSpec> plan_again = again.Plan(3, all);
  ASSERT_TRUE(plan_again[0].scafflsa.has_value() && plan_again[2].scafflsa.has_value());
  EXPECT_EQ(plan_again[0].scafflsa->anchor, plan_again[2].scafflsa->anchor);
  EXPECT_EQ(*plan_again[0].scafflsa->anchor, *plan[0].scafflsa->anchor);
  const absl::Status bad = FedLsa(o).DecodeState("garbage");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("anchors of 3 agents"), std::string::npos) << bad;
}

}  // namespace
}  // namespace fedlsa_test
}  // namespace fedsim
