// FedAU and its baselines (ALGORITHMS.md §2.2-2.3, Decision 2, §8.3): the
// worked weight traces exactly, the cutoff limit (1 - (1 - p)^K) / p on long
// Bernoulli sequences, the divisors of the four weightings, join rounds,
// state save/restore, and the isotropic quadratics of §8.3, where FedAU and
// the known-probability oracle converge to the plain mean of the client
// optima and average-over-all to the participation-biased point.
#include "server/strategy/fedau.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/participation/availability.h"

namespace fedsim {
namespace fedau_test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

ClientResult Result(std::int64_t client, std::vector<double> update) {
  ClientResult r;
  r.task = TaskId(client + 1);
  r.client = ClientId(client);
  r.num_examples = 1;
  r.update = Eigen::Map<const FlatVector>(update.data(),
                                          static_cast<Eigen::Index>(update.size()));
  return r;
}

FlatVector V2(double a, double b) {
  FlatVector v(2);
  v << a, b;
  return v;
}

FedAuOptions Options(FedAuWeighting weighting, std::int64_t cutoff = 0) {
  FedAuOptions o;
  o.weighting = weighting;
  o.cutoff = cutoff;
  o.local.max_steps = 5;
  o.local.batch_size = 16;
  o.local.lr = 0.1;
  return o;
}

// Runs one round in which `who` participate with update `value` each.
AggregationReport RunRound(FedAu& s, Round t, const std::vector<std::int64_t>& who,
                        FlatVector& x, double value = 1.0) {
  std::vector<ClientId> ids;
  std::vector<ClientResult> results;
  for (std::int64_t k : who) {
    ids.push_back(ClientId(k));
    results.push_back(Result(k, std::vector<double>(x.size(), value)));
  }
  s.Plan(t, ids);
  absl::StatusOr<AggregationReport> report = s.Aggregate(t, results, x);
  EXPECT_TRUE(report.ok()) << report.status();
  return report.ok() ? *report : AggregationReport{};
}

struct TraceCase {
  std::string trace;  // rounds 0..9, 'P' = participates
  std::int64_t cutoff;
  std::vector<double> weights;  // omega at the participating rounds
  std::int64_t intervals;       // M
  std::int64_t interval_sum;    // S
};

TEST(FedAuTest, WeightTracesOfTheSpecExactly) {
  const std::vector<TraceCase> cases = {
      {"..P..P..P.", 0, {1.0, 3.0, 3.0}, 3, 9},                    // [3, 3, 3]
      {"..P..P..P.", 2, {2.0, 5.0 / 3.0, 8.0 / 5.0}, 6, 9},        // [2,1,2,1,2,1]
      {"PP.....P.P", 0, {1.0, 1.0, 1.0, 8.0 / 3.0}, 4, 10},        // [1, 1, 6, 2]
  };
  for (const TraceCase& c : cases) {
    // Two clients: client 0 follows the trace, client 1 never shows up.
    FedAu s(Options(FedAuWeighting::kFedAu, c.cutoff), 2);
    FlatVector x = FlatVector::Zero(1);
    std::vector<double> used;
    double expected_x = 0.0;
    for (Round t = 0; t < 10; ++t) {
      const bool in = c.trace[t] == 'P';
      const AggregationReport r = RunRound(s, t, in ? std::vector<std::int64_t>{0}
                                                 : std::vector<std::int64_t>{}, x);
      if (in) {
        ASSERT_EQ(r.weights.size(), 1u);
        // The reported coefficient is omega / N.
        used.push_back(r.weights[0].second * 2.0);
        expected_x += r.weights[0].second;
      } else {
        EXPECT_TRUE(r.weights.empty());
      }
    }
    ASSERT_EQ(used.size(), c.weights.size()) << c.trace;
    for (std::size_t i = 0; i < used.size(); ++i) {
      EXPECT_DOUBLE_EQ(used[i], c.weights[i]) << c.trace << " K=" << c.cutoff << " #" << i;
    }
    EXPECT_DOUBLE_EQ(x[0], expected_x);
    const FedAuState st = s.SaveState();
    EXPECT_EQ(st.count[0], c.intervals) << c.trace;
    EXPECT_EQ(st.sum[0], c.interval_sum) << c.trace;
    EXPECT_EQ(st.next_round, 10);
    // Client 1 never participated: with K = 2 it records 5 pieces of 2.
    EXPECT_EQ(st.count[1], c.cutoff == 2 ? 5 : 0);
    EXPECT_EQ(st.open[1], c.cutoff == 2 ? 0 : 10);
  }
}

TEST(FedAuTest, CutoffLimitOnLongBernoulliSequences) {
  // E[min(G, K)] = (1 - (1 - p)^K) / p for G ~ Geometric(p) on {1, 2, ...}.
  struct Case {
    double p;
    std::int64_t cutoff;
    double limit;
  };
  const std::vector<Case> cases = {{0.1, 5, 4.0951}, {0.3, 2, 1.7}, {0.1, 0, 10.0}};
  for (const Case& c : cases) {
    if (c.cutoff > 0) {
      EXPECT_NEAR((1.0 - std::pow(1.0 - c.p, c.cutoff)) / c.p, c.limit, 1e-12);
    }
    // 4 clients, 1,000,000 rounds each: for K = infinity the mean of
    // ~100,000 Geometric(0.1) intervals has a standard error of 0.3%.
    const int clients = 4;
    FedAu s(Options(FedAuWeighting::kFedAu, c.cutoff), clients);
    BernoulliAvailability env(21, std::vector<double>(clients, c.p));
    FlatVector x = FlatVector::Zero(1);
    std::vector<ClientResult> results;
    for (Round t = 0; t < 1000000; ++t) {
      const std::vector<ClientId> who = env.Participants(t);
      results.clear();
      for (ClientId k : who) results.push_back(Result(k.value, {0.0}));
      s.Plan(t, who);
      ASSERT_TRUE(s.Aggregate(t, results, x).ok());
    }
    for (int k = 0; k < clients; ++k) {
      const double w = s.EstimatedWeight(ClientId(k));
      EXPECT_NEAR(w, c.limit, 0.01 * c.limit)
          << "p = " << c.p << ", K = " << c.cutoff << ", client " << k;
      if (c.cutoff > 0) {
        EXPECT_LE(w, static_cast<double>(c.cutoff));
      }
    }
  }
}

TEST(FedAuTest, DivisorsAndWeightsOfTheFourWeightings) {
  // N = 4; clients 1 and 3 participate at round 0 with updates 1 and 1.
  struct Case {
    FedAuWeighting weighting;
    double w1, w3;  // reported coefficients
  };
  const std::vector<Case> cases = {
      {FedAuWeighting::kFedAu, 0.25, 0.25},  // no history: omega = 1, D = N
      {FedAuWeighting::kKnownProbabilities, 1.0 / 0.5 / 4, 1.0 / 0.2 / 4},
      {FedAuWeighting::kAverageParticipating, 0.5, 0.5},
      {FedAuWeighting::kAverageAll, 0.25, 0.25},
  };
  for (const Case& c : cases) {
    FedAuOptions o = Options(c.weighting);
    o.server_lr = 2.0;
    o.probabilities = {0.1, 0.5, 0.3, 0.2};
    FedAu s(o, 4);
    FlatVector x = FlatVector::Zero(2);
    const AggregationReport r = RunRound(s, 0, {1, 3}, x);
    EXPECT_THAT(r.weights, ElementsAre(Pair(ClientId(1), c.w1), Pair(ClientId(3), c.w3)));
    EXPECT_DOUBLE_EQ(x[0], 2.0 * (c.w1 + c.w3));
    // Nobody: x unchanged, nothing reported.
    const FlatVector before = x;
    EXPECT_TRUE(RunRound(s, 1, {}, x).weights.empty());
    EXPECT_EQ(x, before);
  }
}

TEST(FedAuTest, PlanHandsEveryParticipantTheLocalSpec) {
  FedAu s(Options(FedAuWeighting::kFedAu), 3);
  const std::vector<ClientId> who = {ClientId(0), ClientId(2)};
  const std::vector<TaskSpec> plan = s.Plan(0, who);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[1].client, ClientId(2));
  EXPECT_EQ(plan[1].local.max_steps, 5);
  EXPECT_EQ(plan[1].local.batch_size, 16);
  EXPECT_EQ(plan[1].local.lr, 0.1);
}

TEST(FedAuTest, RejectsUnplannedResultsAndRoundsOutOfOrder) {
  FedAu s(Options(FedAuWeighting::kFedAu), 3);
  FlatVector x = FlatVector::Zero(1);
  const std::vector<ClientId> who = {ClientId(0)};
  s.Plan(0, who);
  const std::vector<ClientResult> foreign = {Result(1, {1.0})};
  EXPECT_THAT(s.Aggregate(0, foreign, x).status().message(),
              HasSubstr("was not selected"));
  EXPECT_EQ(x[0], 0.0);
  s.Plan(2, who);
  EXPECT_EQ(s.Aggregate(2, {}, x).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(FedAuTest, AvailableClientThatDoesNotReturnCountsAsAbsent) {
  FedAu s(Options(FedAuWeighting::kFedAu), 2);
  FlatVector x = FlatVector::Zero(1);
  const std::vector<ClientId> both = {ClientId(0), ClientId(1)};
  s.Plan(0, both);
  const std::vector<ClientResult> only0 = {Result(0, {1.0})};
  ASSERT_TRUE(s.Aggregate(0, only0, x).ok());
  const FedAuState st = s.SaveState();
  EXPECT_EQ(st.count[0], 1);
  EXPECT_EQ(st.count[1], 0);
  EXPECT_EQ(st.open[1], 1);
}

TEST(FedAuTest, LateJoinerCountsFromItsJoinRoundOrFromRoundZero) {
  // Client 1 joins at round 3 and first participates at round 5.
  for (bool from_join : {true, false}) {
    FedAuOptions o = Options(FedAuWeighting::kFedAu);
    o.join_rounds = {0, 3};
    o.count_from_join = from_join;
    FedAu s(o, 2);
    FlatVector x = FlatVector::Zero(1);
    for (Round t = 0; t < 5; ++t) RunRound(s, t, {}, x);
    RunRound(s, 5, {1}, x);
    const FedAuState st = s.SaveState();
    EXPECT_EQ(st.count[1], 1);
    // Rounds 3, 4, 5 (from the join round) or 0..5.
    EXPECT_EQ(st.sum[1], from_join ? 3 : 6);
    EXPECT_EQ(st.open[0], 6);  // client 0 counts from round 0 either way
  }
}

TEST(FedAuTest, SaveAndRestoreContinueIdentically) {
  FedAu a(Options(FedAuWeighting::kFedAu, 4), 3);
  BernoulliAvailability env(3, {0.2, 0.5, 0.9});
  FlatVector xa = FlatVector::Zero(1);
  auto step = [&](FedAu& s, Round t, FlatVector& x) {
    std::vector<std::int64_t> who;
    for (ClientId c : env.Participants(t)) who.push_back(c.value);
    RunRound(s, t, who, x, 0.01 * static_cast<double>(t));
  };
  for (Round t = 0; t < 30; ++t) step(a, t, xa);
  FedAu b(Options(FedAuWeighting::kFedAu, 4), 3);
  ASSERT_TRUE(b.RestoreState(a.SaveState()).ok());
  FlatVector xb = xa;
  for (Round t = 30; t < 60; ++t) {
    step(a, t, xa);
    step(b, t, xb);
  }
  EXPECT_EQ(xa, xb);
  EXPECT_EQ(a.SaveState(), b.SaveState());
  FedAuState bad = a.SaveState();
  bad.sum.pop_back();
  EXPECT_EQ(b.RestoreState(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = a.SaveState();
  bad.open[0] = -1;
  EXPECT_EQ(b.RestoreState(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b.SaveState(), a.SaveState());
}

// The estimator written eagerly, as ALGORITHMS.md §2.2 states it: every
// client's counters advance every round. FedAu settles them lazily; the two
// must agree on every counter after every round.
struct EagerEstimator {
  std::int64_t cutoff;
  std::vector<Round> join;  // empty: all from round 0
  std::vector<std::int64_t> open, count, sum;
  void Advance(Round t, const std::vector<bool>& participated) {
    for (std::size_t k = 0; k < open.size(); ++k) {
      if (!join.empty() && t < join[k]) continue;
      if (participated[k]) {
        sum[k] += open[k] + 1;
        ++count[k];
        open[k] = 0;
      } else if (++open[k], cutoff > 0 && open[k] >= cutoff) {
        sum[k] += open[k];
        ++count[k];
        open[k] = 0;
      }
    }
  }
};

TEST(FedAuTest, LazyCountersEqualTheEagerEstimatorEveryRound) {
  const std::int64_t n = 11;
  for (const std::int64_t cutoff : {0, 1, 2, 5, 40}) {
    for (const bool late_joiners : {false, true}) {
      SCOPED_TRACE(absl::StrCat("cutoff ", cutoff, late_joiners ? ", late joiners" : ""));
      FedAuOptions o = Options(FedAuWeighting::kFedAu, cutoff);
      EagerEstimator eager{cutoff, {}, std::vector<std::int64_t>(n, 0),
                           std::vector<std::int64_t>(n, 0), std::vector<std::int64_t>(n, 0)};
      if (late_joiners) {
        for (std::int64_t k = 0; k < n; ++k) o.join_rounds.push_back((k * 7) % 23);
        eager.join = o.join_rounds;
      }
      FedAu lazy(o, n);
      // Rates from almost never to always, so long absences cross the cutoff.
      std::vector<double> p;
      for (std::int64_t k = 0; k < n; ++k) p.push_back(0.02 + 0.098 * static_cast<double>(k));
      BernoulliAvailability env(5, p);
      FlatVector x = FlatVector::Zero(1);
      for (Round t = 0; t < 300; ++t) {
        std::vector<std::int64_t> who;
        std::vector<bool> participated(n, false);
        for (ClientId c : env.Participants(t)) {
          if (late_joiners && t < o.join_rounds[c.value]) continue;
          who.push_back(c.value);
          participated[c.value] = true;
        }
        // Weights come from the history before the round.
        for (std::int64_t k = 0; k < n; ++k) {
          EXPECT_EQ(lazy.EstimatedWeight(ClientId(k)),
                    eager.count[k] > 0 ? static_cast<double>(eager.sum[k]) /
                                             static_cast<double>(eager.count[k])
                                       : 1.0)
              << "round " << t << " client " << k;
        }
        RunRound(lazy, t, who, x);
        eager.Advance(t, participated);
        const FedAuState st = lazy.SaveState();
        ASSERT_EQ(st.open, eager.open) << "round " << t;
        ASSERT_EQ(st.count, eager.count) << "round " << t;
        ASSERT_EQ(st.sum, eager.sum) << "round " << t;
      }
    }
  }
}

// §8.3: F_n(x) = 1/2 ||x - a_n||^2, Bernoulli(p_n) participation, I local GD
// steps of size gamma, so a participant returns (1 - (1 - gamma)^I)(a_n - x).
// Weighted aggregation has the expected fixed point
// sum_n omega_n p_n a_n / sum_n omega_n p_n.
FlatVector AverageIterate(FedAuWeighting weighting, std::int64_t cutoff) {
  const std::vector<double> p = {0.1, 0.3, 0.6, 0.9};
  const std::vector<FlatVector> a = {V2(0, 4), V2(1, 0),
                                     V2(2, 1), V2(3, -1)};
  FedAuOptions o = Options(weighting, cutoff);
  o.server_lr = 0.1;
  o.probabilities = p;
  FedAu s(o, 4);
  BernoulliAvailability env(17, p);
  const double gamma = 0.1;
  const int local_steps = 5;
  FlatVector x = FlatVector::Zero(2);
  FlatVector sum = FlatVector::Zero(2);
  const int burn_in = 10000, rounds = 200000;
  std::vector<ClientResult> results;
  for (Round t = 0; t < rounds; ++t) {
    const std::vector<ClientId> who = env.Participants(t);
    s.Plan(t, who);
    results.clear();
    for (ClientId k : who) {
      FlatVector y = x;
      for (int i = 0; i < local_steps; ++i) y -= gamma * (y - a[k.value]);
      ClientResult r;
      r.client = k;
      r.update = y - x;
      results.push_back(std::move(r));
    }
    EXPECT_TRUE(s.Aggregate(t, results, x).ok());
    if (t >= burn_in) sum += x;
  }
  return sum / static_cast<double>(rounds - burn_in);
}

TEST(FedAuQuadraticTest, LimitsAreTheMeanOfOptimaOrTheBiasedPoint) {
  // Tolerance: the iterate's stationary standard deviation is about 0.4 with
  // a mixing time of ~25 rounds, so the average of 190,000 rounds has a
  // standard error below 0.01; FedAU's estimated weights add an error of
  // the same order. The points compared are more than 0.5 apart.
  const double tol = 0.025;
  const FlatVector mean = V2(1.5, 1.0);
  // average_all: sum p_n a_n / sum p_n with sum p_n = 1.9.
  const FlatVector biased = V2(4.2 / 1.9, 0.1 / 1.9);
  // FedAU with K = 2: weights 1 - (1 - p_n)^2 = 0.19, 0.51, 0.84, 0.99.
  const FlatVector cut = V2(5.16 / 2.53, 0.61 / 2.53);

  const FlatVector fedau = AverageIterate(FedAuWeighting::kFedAu, 0);
  const FlatVector known = AverageIterate(FedAuWeighting::kKnownProbabilities, 0);
  const FlatVector all = AverageIterate(FedAuWeighting::kAverageAll, 0);
  const FlatVector fedau_k2 = AverageIterate(FedAuWeighting::kFedAu, 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(fedau[i], mean[i], tol) << i;
    EXPECT_NEAR(known[i], mean[i], tol) << i;
    EXPECT_NEAR(all[i], biased[i], tol) << i;
    EXPECT_NEAR(fedau_k2[i], cut[i], tol) << i;
  }
  std::printf("fedau (%.4f, %.4f) known (%.4f, %.4f) all (%.4f, %.4f) fedau K=2 (%.4f, %.4f)\n",
              fedau[0], fedau[1], known[0], known[1], all[0], all[1], fedau_k2[0],
              fedau_k2[1]);
  // The two limits are told apart: each run is far from the other point.
  EXPECT_GT((fedau - biased).norm(), 10 * tol);
  EXPECT_GT((all - mean).norm(), 10 * tol);
}

}  // namespace
}  // namespace fedau_test
}  // namespace fedsim
