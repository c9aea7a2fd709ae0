// Robust aggregation rules (server/strategy/robust_aggregation.h) on small
// hand-computed examples, including ties and even n; their preconditions;
// FedAvg with a robust rule; the Byzantine attacks (byzantine.h); update
// validation and the norm bound (validate_update.h); and requirement 15's
// test: one bad client leaves the aggregate equal to the honest-only one.
#include "server/strategy/robust_aggregation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_harness.h"
#include "common/random/stream.h"
#include "server/coordinator/round_engine.h"
#include "server/coordinator/validate_update.h"
#include "server/participation/participation.h"
#include "server/strategy/byzantine.h"
#include "server/strategy/fedavg.h"

namespace fedsim {
namespace robust_aggregation_test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<FlatVector> Vectors(const std::vector<std::vector<double>>& rows) {
  std::vector<FlatVector> out;
  for (const auto& r : rows) {
    out.push_back(Eigen::Map<const FlatVector>(r.data(), static_cast<Eigen::Index>(r.size())));
  }
  return out;
}

std::vector<const FlatVector*> Pointers(const std::vector<FlatVector>& v) {
  std::vector<const FlatVector*> out;
  for (const FlatVector& x : v) out.push_back(&x);
  return out;
}

RobustAggregate Aggregate(const RobustOptions& o, const std::vector<FlatVector>& v) {
  absl::StatusOr<RobustAggregate> a = AggregateRobust(o, Pointers(v));
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *std::move(a) : RobustAggregate{};
}

std::vector<double> Values(const FlatVector& x) {
  return std::vector<double>(x.data(), x.data() + x.size());
}

TEST(RobustAggregationTest, CoordinateMedianOddEvenAndTies) {
  RobustOptions o;
  o.rule = RobustRule::kCoordinateMedian;
  // n = 3: per coordinate the middle value.
  EXPECT_THAT(Values(Aggregate(o, Vectors({{1, 5}, {3, -1}, {2, 2}})).value),
              ElementsAre(2.0, 2.0));
  // n = 4: (1, 4, 2, 10) -> (2 + 4) / 2 = 3; ties (5, 5, 5, 1) -> 5.
  const RobustAggregate even =
      Aggregate(o, Vectors({{1, 5}, {4, 5}, {2, 5}, {10, 1}}));
  EXPECT_THAT(Values(even.value), ElementsAre(3.0, 5.0));
  EXPECT_THAT(even.weights, ElementsAre(0.25, 0.25, 0.25, 0.25));
  // n = 2: the mean of the two; n = 1: the update itself.
  EXPECT_THAT(Values(Aggregate(o, Vectors({{0}, {7}})).value), ElementsAre(3.5));
  EXPECT_THAT(Values(Aggregate(o, Vectors({{-3}})).value), ElementsAre(-3.0));
}

TEST(RobustAggregationTest, TrimmedMeanDropsFloorBetaNAtEachEnd) {
  RobustOptions o;
  o.rule = RobustRule::kTrimmedMean;
  const auto v = Vectors({{1, 2}, {2, 2}, {3, 2}, {4, 9}, {100, -9}});
  o.trim_fraction = 0.2;  // k = floor(1.0) = 1: (2 + 3 + 4) / 3; (2 + 2 + 2) / 3
  EXPECT_THAT(Values(Aggregate(o, v).value), ElementsAre(3.0, 2.0));
  o.trim_fraction = 0.3;  // k = floor(1.5) = 1: the same
  EXPECT_THAT(Values(Aggregate(o, v).value), ElementsAre(3.0, 2.0));
  o.trim_fraction = 0.1;  // k = floor(0.5) = 0: the plain mean
  EXPECT_THAT(Values(Aggregate(o, v).value), ElementsAre(110.0 / 5.0, 6.0 / 5.0));
  o.trim_fraction = 0.4;  // k = 2: the median
  EXPECT_THAT(Values(Aggregate(o, v).value), ElementsAre(3.0, 2.0));
  // n = 4, beta = 0.25: k = 1, the mean of the middle two.
  EXPECT_THAT(Values(Aggregate(o = {RobustRule::kTrimmedMean, 0.25},
                               Vectors({{1}, {4}, {2}, {10}}))
                         .value),
              ElementsAre(3.0));
}

TEST(RobustAggregationTest, KrumScoresAreSumsOfSquaredDistancesToNearest) {
  // 1-D updates 0, 1, 2, 3, 100 with f = 1: n - f - 2 = 2 neighbours.
  const auto v = Vectors({{0}, {1}, {2}, {3}, {100}});
  // 0: 1 + 4; 1: 1 + 1; 2: 1 + 1; 3: 1 + 4; 100: 97^2 + 98^2.
  EXPECT_THAT(KrumScores(Pointers(v), 1),
              ElementsAre(5.0, 2.0, 2.0, 5.0, 9409.0 + 9604.0));
  RobustOptions o;
  o.rule = RobustRule::kKrum;
  o.byzantine = 1;
  // Tie between clients 1 and 2 (score 2): the lower id wins.
  const RobustAggregate krum = Aggregate(o, v);
  EXPECT_THAT(Values(krum.value), ElementsAre(1.0));
  EXPECT_THAT(krum.weights, ElementsAre(0.0, 1.0, 0.0, 0.0, 0.0));
  // Multi-Krum m = 3: clients 1, 2 and (tie 0 vs 3 at score 5) 0.
  o.rule = RobustRule::kMultiKrum;
  o.multi_krum_m = 3;
  const RobustAggregate multi = Aggregate(o, v);
  EXPECT_THAT(Values(multi.value), ElementsAre(1.0));
  EXPECT_THAT(multi.weights, ElementsAre(1.0 / 3, 1.0 / 3, 1.0 / 3, 0.0, 0.0));
  // m = 0 means n - f = 4: clients 0..3, mean 1.5.
  o.multi_krum_m = 0;
  EXPECT_THAT(Values(Aggregate(o, v).value), ElementsAre(1.5));
}

TEST(RobustAggregationTest, KrumInTwoDimensions) {
  // f = 0, n = 3: one neighbour each. d2(a,b) = 2, d2(a,c) = 8, d2(b,c) = 2.
  // Scores: a 2, b 2, c 2 -> all tie -> client 0.
  RobustOptions o;
  o.rule = RobustRule::kKrum;
  const auto v = Vectors({{0, 0}, {1, 1}, {2, 2}});
  EXPECT_THAT(KrumScores(Pointers(v), 0), ElementsAre(2.0, 2.0, 2.0));
  EXPECT_THAT(Values(Aggregate(o, v).value), ElementsAre(0.0, 0.0));
  // Move c away: scores a 2, b 2, c 50 (d2(b,c) = 2 * 5^2)... b ties a.
  const auto w = Vectors({{0, 0}, {1, 1}, {6, 6}});
  EXPECT_THAT(KrumScores(Pointers(w), 0), ElementsAre(2.0, 2.0, 50.0));
}

TEST(RobustAggregationTest, BulyanSelectsByRepeatedKrumThenTrimsAroundTheMedian) {
  // n = 7, f = 1: theta = 5, beta = 3. 1-D updates 0, 1, 2, 4, 8, 30, 1000.
  // Selection (Krum with f = 1 on the remaining updates, n - f - 2 nearest):
  //   n=7, 4 nearest: scores 0:85 1:60 2:45 4:45 ... tie 2 vs 4 -> client 2
  //   n=6, 3 nearest: 0:81 1:59 4:41 8:129 ... -> client 3 (value 4)
  //   n=5, 2 nearest: 0:65 1:50 8:113 ... -> client 1
  //   n=4, 1 nearest: 0:64 8:64 (tie) -> client 0
  //   n=3, 0 nearest: all 0 -> client 4 (value 8)
  // Selected values 0, 1, 2, 4, 8; median 2; distances 2, 1, 0, 2, 6: the
  // three closest are 2, 1 and (tie 0 vs 4 at distance 2) 0 -> mean 1.
  RobustOptions o;
  o.rule = RobustRule::kBulyan;
  o.byzantine = 1;
  const RobustAggregate b =
      Aggregate(o, Vectors({{0}, {1}, {2}, {4}, {8}, {30}, {1000}}));
  EXPECT_THAT(Values(b.value), ElementsAre(1.0));
  EXPECT_THAT(b.weights, ElementsAre(0.2, 0.2, 0.2, 0.2, 0.2, 0.0, 0.0));
  // 2-D: the same selection; second coordinate of the selected 6, -2, 0, 1,
  // 3 has median 1 and closest 0, 1, 3 -> 4/3.
  const RobustAggregate b2 = Aggregate(
      o, Vectors({{0, 6}, {1, -2}, {2, 0}, {4, 1}, {8, 3}, {30, -40}, {1000, 1000}}));
  EXPECT_THAT(Values(b2.value), ElementsAre(1.0, 4.0 / 3.0));
}

TEST(RobustAggregationTest, PreconditionsNameTheRuleAndTheCount) {
  RobustOptions o;
  o.rule = RobustRule::kKrum;
  o.byzantine = 2;
  EXPECT_EQ(MinimumUpdates(o), 7);
  const auto six = Vectors({{0}, {1}, {2}, {3}, {4}, {5}});
  absl::StatusOr<RobustAggregate> a = AggregateRobust(o, Pointers(six));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.status().message(), "krum needs n >= 2f + 3 = 7 (f = 2) updates; n = 6");
  o.rule = RobustRule::kBulyan;
  o.byzantine = 1;
  EXPECT_EQ(MinimumUpdates(o), 7);
  EXPECT_THAT(CheckRobustPreconditions(o, 6).message(), HasSubstr("n >= 4f + 3 = 7"));
  EXPECT_TRUE(CheckRobustPreconditions(o, 7).ok());
  o.rule = RobustRule::kMultiKrum;
  o.byzantine = 0;
  o.multi_krum_m = 5;
  EXPECT_EQ(MinimumUpdates(o), 5);
  o.rule = RobustRule::kCoordinateMedian;
  EXPECT_EQ(CheckRobustPreconditions(o, 0).code(), absl::StatusCode::kFailedPrecondition);
}

ClientResult Result(std::int64_t client, std::int64_t n_k, std::vector<double> u) {
  ClientResult r;
  r.client = ClientId(client);
  r.num_examples = n_k;
  r.update = Vectors({u})[0];
  return r;
}

TEST(RobustFedAvgTest, ServerStepAppliesTheRobustAggregateUnweighted) {
  FedAvgOptions fo;
  fo.server_lr = 0.5;
  fo.robust.rule = RobustRule::kCoordinateMedian;
  const std::vector<std::int64_t> sizes = {1, 100, 1};
  FedAvg fedavg(fo, sizes);
  const std::vector<ClientId> all = {ClientId(0), ClientId(1), ClientId(2)};
  fedavg.Plan(0, all);
  std::vector<ClientResult> results = {Result(0, 1, {1, 0}), Result(1, 100, {100, 2}),
                                       Result(2, 1, {3, 4})};
  FlatVector global = FlatVector::Constant(2, 10.0);
  absl::StatusOr<AggregationReport> report = fedavg.Aggregate(0, results, global);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->failure.empty());
  // Median (3, 2), n_k ignored; x += 0.5 * (3, 2).
  EXPECT_THAT(Values(global), ElementsAre(11.5, 11.0));
  EXPECT_EQ(report->weights[1].second, 1.0 / 3.0);
}

TEST(RobustFedAvgTest, TooFewResultsLeaveTheModelAndSayWhy) {
  FedAvgOptions fo;
  fo.robust.rule = RobustRule::kKrum;
  fo.robust.byzantine = 1;  // needs 5
  FedAvg fedavg(fo, {1, 1, 1, 1});
  const std::vector<ClientId> all = {ClientId(0), ClientId(1), ClientId(2), ClientId(3)};
  fedavg.Plan(3, all);
  std::vector<ClientResult> results = {Result(0, 1, {1}), Result(1, 1, {2}),
                                       Result(2, 1, {3}), Result(3, 1, {4})};
  FlatVector global = FlatVector::Constant(1, 7.0);
  absl::StatusOr<AggregationReport> report = fedavg.Aggregate(3, results, global);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->failure, "round 3: krum needs n >= 2f + 3 = 5 (f = 1) updates; n = 4");
  EXPECT_EQ(global[0], 7.0);
  // Nobody at all: a failure too (a robust rule never aggregates nothing silently).
  absl::StatusOr<AggregationReport> none = fedavg.Aggregate(3, {}, global);
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(none->failure, HasSubstr("n = 0"));
}

TEST(ByzantineTest, AttacksReplaceOnlyTheByzantineClientsUpdates) {
  AdversaryOptions o;
  o.clients = {2, 0};
  o.scale = 100.0;
  Adversary sign(o);
  EXPECT_THAT(sign.clients(), ElementsAre(0, 2));
  FlatVector u = Vectors({{1, -2}})[0];
  sign.Apply(1, 0, u);  // honest
  EXPECT_THAT(Values(u), ElementsAre(1.0, -2.0));
  sign.Apply(2, 0, u);
  EXPECT_THAT(Values(u), ElementsAre(-100.0, 200.0));
  o.attack = ByzantineAttack::kScaled;
  u = Vectors({{1, -2}})[0];
  Adversary(o).Apply(0, 0, u);
  EXPECT_THAT(Values(u), ElementsAre(100.0, -200.0));
  o.attack = ByzantineAttack::kConstant;
  o.scale = -3.0;
  Adversary(o).Apply(0, 0, u);
  EXPECT_THAT(Values(u), ElementsAre(-3.0, -3.0));
  o.attack = ByzantineAttack::kGaussian;
  o.scale = 2.0;
  FlatVector g1 = FlatVector::Zero(3), g2 = FlatVector::Zero(3), g3 = FlatVector::Zero(3);
  Adversary(o).Apply(0, 5, g1);
  Adversary(o).Apply(0, 5, g2);
  Adversary(o).Apply(0, 6, g3);
  EXPECT_EQ(g1, g2);  // (seed, kByzantineAttack, client, round)
  EXPECT_NE(g1, g3);
  RngStream rng(1, RngPurpose::kByzantineAttack, 0, 5);
  EXPECT_EQ(g1[0], 2.0 * rng.Gaussian());
}

TEST(ByzantineTest, FractionDrawsRoundHalfUpClientsFromTheirOwnStream) {
  const std::vector<std::int64_t> a = DrawByzantineClients(7, 10, 0.25);  // 2.5 -> 3
  ASSERT_EQ(a.size(), 3u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(a, DrawByzantineClients(7, 10, 0.25));
  RngStream rng(7, RngPurpose::kByzantineClients, -1, -1);
  EXPECT_EQ(a, rng.SampleWithoutReplacement(10, 3));
  EXPECT_TRUE(DrawByzantineClients(7, 10, 0.0).empty());
  EXPECT_EQ(DrawByzantineClients(7, 10, 1.0).size(), 10u);
}

TEST(ValidateUpdateTest, ChecksSizeFinitenessExamplesThenTheNormBound) {
  ClientResult r = Result(4, 10, {3, 4});
  EXPECT_TRUE(CheckUpdate("round 2", r, 2, 10).ok());
  EXPECT_EQ(CheckUpdate("round 2", r, 3, 10).message(),
            "round 2, client 4: update has 2 values, expected 3");
  EXPECT_EQ(CheckUpdate("step 2", r, 2, 11).message(),
            "step 2, client 4: num_examples = 10; the client has 11 rows");
  r.update[0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(CheckUpdate("round 2", r, 2, 10).message(),
            "round 2, client 4: update has NaN or infinite values");
  r.update[0] = -std::numeric_limits<double>::infinity();
  EXPECT_EQ(CheckUpdate("round 2", r, 2, 10).code(), absl::StatusCode::kInvalidArgument);

  r.update = Vectors({{3, 4}})[0];  // norm 5
  UpdateValidation v;
  EXPECT_TRUE(CheckNormBound(v, "round 2", r).ok());  // no bound
  v.max_update_norm = 5.0;
  EXPECT_TRUE(CheckNormBound(v, "round 2", r).ok());  // <= B is fine
  v.max_update_norm = 4.0;
  const absl::Status s = CheckNormBound(v, "round 2", r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "round 2, client 4: update norm = 5; must be <= aggregation.max_update_norm = 4");
  // Clip and zero pass the check and change the accepted update.
  v.action = NormBoundAction::kClip;
  EXPECT_TRUE(CheckNormBound(v, "round 2", r).ok());
  v.max_update_norm = 1.0;
  FlatVector clipped = r.update;
  NormBoundOutcome out = ApplyNormBound(v, clipped);
  EXPECT_TRUE(out.changed);
  EXPECT_EQ(out.norm, 5.0);
  EXPECT_THAT(Values(clipped), ElementsAre(3.0 * (1.0 / 5.0), 4.0 * (1.0 / 5.0)));
  v.action = NormBoundAction::kZero;
  FlatVector zeroed = r.update;
  EXPECT_TRUE(ApplyNormBound(v, zeroed).changed);
  EXPECT_THAT(Values(zeroed), ElementsAre(0.0, 0.0));
  v.max_update_norm = 5.0;
  FlatVector kept = r.update;
  EXPECT_FALSE(ApplyNormBound(v, kept).changed);
  EXPECT_EQ(kept, r.update);
  // No overflow for huge updates.
  EXPECT_DOUBLE_EQ(UpdateNorm(Vectors({{3e200, 4e200}})[0]), 5e200);
}

// Requirement 15's test: one client sends NaN, +-Inf, a wrong size or a
// 1e30-norm update; the aggregate equals the honest-only aggregate.
class BadUpdateTest : public ::testing::TestWithParam<int> {};

TEST_P(BadUpdateTest, OneBadClientLeavesTheHonestOnlyAggregate) {
  RoundEngineOptions options;
  options.rounds = 1;
  EngineInputs in;
  in.client_sizes = {3, 5, 8, 4};
  Dataset train, test;
  in.train = &train;
  in.test = &test;
  in.validation.max_update_norm = 1e3;  // reject
  FedAvgOptions fo;
  RoundEngine engine(options, in, std::make_unique<UniformCohort>(1, 4, 1.0),
                     std::make_unique<FedAvg>(fo, in.client_sizes), FlatVector::Zero(2));
  const std::vector<Task> tasks = engine.TakeTasks();
  ASSERT_EQ(tasks.size(), 4u);
  for (std::size_t i = 0; i < 3; ++i) {
    ClientResult r = Result(static_cast<std::int64_t>(i), in.client_sizes[i],
                            {i + 1.0, -(i + 1.0)});
    r.task = tasks[i].id;
    ASSERT_TRUE(engine.Submit(r, 0).ok());
  }
  ClientResult bad = Result(3, 4, {1, 1});
  bad.task = tasks[3].id;
  switch (GetParam()) {
    case 0: bad.update[0] = std::numeric_limits<double>::quiet_NaN(); break;
    case 1: bad.update[1] = std::numeric_limits<double>::infinity(); break;
    case 2: bad.update[0] = -std::numeric_limits<double>::infinity(); break;
    case 3: bad.update = FlatVector::Ones(3); break;
    case 4: bad.update = FlatVector::Constant(2, 1e30); break;
    case 5: bad.num_examples = 0; break;   // zero weight
    case 6: bad.num_examples = -4; break;  // negative weight
  }
  EXPECT_EQ(engine.Submit(bad, 0).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(test::FinishOne(engine, 0.0).ok());
  // (3*1 + 5*2 + 8*3) / 16, as without client 3.
  EXPECT_EQ(engine.model()[0], (3.0 * 1 + 5.0 * 2 + 8.0 * 3) / 16.0);
  EXPECT_EQ(engine.model()[1], -(3.0 * 1 + 5.0 * 2 + 8.0 * 3) / 16.0);
  EXPECT_EQ(engine.tally().rejected_pushes, 1);
  EXPECT_EQ(engine.tally().aggregated, 3);
  // The norm-bound rejection closes the task at once; the others wait.
  EXPECT_EQ(engine.tally().dropped + engine.tally().timed_out, 1);
  EXPECT_EQ(engine.tally().dropped, GetParam() == 4 ? 1 : 0);
}

INSTANTIATE_TEST_SUITE_P(NanInfSizeNormWeight, BadUpdateTest,
                         ::testing::Values(0, 1, 2, 3, 4, 5, 6));

TEST(NormBoundEngineTest, ZeroCountsTheClientAndClipScales) {
  for (NormBoundAction action : {NormBoundAction::kZero, NormBoundAction::kClip}) {
    RoundEngineOptions options;
    options.rounds = 1;
    EngineInputs in;
    in.client_sizes = {1, 3};
    Dataset train, test;
    in.train = &train;
    in.test = &test;
    in.validation.max_update_norm = 5.0;
    in.validation.action = action;
    FedAvgOptions fo;
    RoundEngine engine(options, in, std::make_unique<UniformCohort>(1, 2, 1.0),
                       std::make_unique<FedAvg>(fo, in.client_sizes), FlatVector::Zero(2));
    const std::vector<Task> tasks = engine.TakeTasks();
    ClientResult a = Result(0, 1, {4, 0});     // within the bound
    ClientResult b = Result(1, 3, {30, 40});   // norm 50
    a.task = tasks[0].id;
    b.task = tasks[1].id;
    ASSERT_TRUE(engine.Submit(a, 0).ok());
    ASSERT_TRUE(engine.Submit(b, 0).ok());
    ASSERT_TRUE(test::FinishOne(engine, 0.0).ok());
    if (action == NormBoundAction::kZero) {
      // (1 * (4, 0) + 3 * (0, 0)) / 4
      EXPECT_EQ(engine.model()[0], 1.0);
      EXPECT_EQ(engine.model()[1], 0.0);
    } else {
      // b clipped to (3, 4): (1 * (4, 0) + 3 * (3, 4)) / 4
      EXPECT_DOUBLE_EQ(engine.model()[0], 0.25 * 4.0 + 0.75 * 3.0);
      EXPECT_DOUBLE_EQ(engine.model()[1], 0.75 * 4.0);
    }
  }
}

}  // namespace
}  // namespace robust_aggregation_test
}  // namespace fedsim
