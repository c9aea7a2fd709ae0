// FedVARP and MIFA as the FedAU code runs them (server/strategy/fedvarp.h,
// mifa.h; docs/fedvarp_mifa.md): the first two rounds against the
// closed forms of §3 on isotropic quadratics, the N = 4 worked example of
// §3.3 bit for bit, the unbiased fixed point under heterogeneous Bernoulli
// participation (§4.1, where a FedAvg-like average is biased), full
// participation against fedsim's FedAvg with equal client sizes (§5), empty
// rounds, checkpoint state round trips and the refusals.
//
// The quadratics: F_n(x) = 1/2 ||x - a_n||^2, I local full-gradient steps of
// size gamma, so Delta_n(x) = c (a_n - x) with c = 1 - (1 - gamma)^I. The
// tests run the I steps (Delta is computed, not taken from the formula) and
// compare with the closed forms written with c.
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/base/byte_io.h"
#include "common/random/stream.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/fedvarp.h"
#include "server/strategy/mifa.h"

namespace fedsim {
namespace fedvarp_mifa_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::ElementsAre;

FlatVector V(std::initializer_list<double> values) {
  FlatVector v(static_cast<Eigen::Index>(values.size()));
  Eigen::Index i = 0;
  for (double x : values) v[i++] = x;
  return v;
}

// The problem: client optima a_n, gamma, I.
struct Quadratics {
  std::vector<FlatVector> a;
  double gamma = 0.1;
  int steps = 5;

  std::int64_t n() const { return static_cast<std::int64_t>(a.size()); }
  double c() const { return 1.0 - std::pow(1.0 - gamma, steps); }
  // I local gradient steps from x: y <- y - gamma (y - a_n); Delta = y - x.
  FlatVector Delta(std::int64_t k, const FlatVector& x) const {
    FlatVector y = x;
    for (int i = 0; i < steps; ++i) y = y - gamma * (y - a[k]);
    return y - x;
  }
  FlatVector Mean() const {
    FlatVector m = FlatVector::Zero(a[0].size());
    for (const FlatVector& v : a) m += v;
    return m / static_cast<double>(a.size());
  }
};

LocalTrainingSpec Local(const Quadratics& q) {
  LocalTrainingSpec local;
  local.max_steps = q.steps;
  local.batch_size = 0;
  local.lr = q.gamma;
  return local;
}

FedVarpOptions VarpOptions(const Quadratics& q, double eta) {
  FedVarpOptions o;
  o.server_lr = eta;
  o.local = Local(q);
  return o;
}

MifaOptions MifaOpts(const Quadratics& q, double eta) {
  MifaOptions o;
  o.server_lr = eta;
  o.local = Local(q);
  return o;
}

// One round: plan `who`, let each participant train from x, aggregate.
AggregationReport RunRound(SyncStrategy& s, Round t, const std::vector<std::int64_t>& who,
                           const Quadratics& q, FlatVector& x) {
  std::vector<ClientId> ids;
  for (std::int64_t k : who) ids.push_back(ClientId(k));
  const std::vector<TaskSpec> tasks = s.Plan(t, ids);
  EXPECT_EQ(tasks.size(), who.size());
  std::vector<ClientResult> results;
  for (std::int64_t k : who) {
    ClientResult r;
    r.task = TaskId(t * 1000 + k + 1);
    r.client = ClientId(k);
    r.num_examples = 1;
    r.num_steps = q.steps;
    r.update = q.Delta(k, x);
    results.push_back(std::move(r));
  }
  absl::StatusOr<AggregationReport> report = s.Aggregate(t, results, x);
  EXPECT_TRUE(report.ok()) << report.status();
  return report.ok() ? *report : AggregationReport{};
}

void ExpectNear(const FlatVector& got, const FlatVector& want, double tol,
                const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (Eigen::Index i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol) << what << " [" << i << "]";
  }
}

void ExpectBitEqual(const FlatVector& got, const FlatVector& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (Eigen::Index i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << what << " [" << i << "]";
  }
}

// N = 5, d = 3, optima spread out, x_0 off all of them.
Quadratics FiveClients() {
  Quadratics q;
  q.a = {V({0.0, 1.0, -2.0}), V({3.0, -1.0, 0.5}), V({-2.0, 4.0, 1.0}),
         V({1.5, 0.0, 2.5}), V({-0.5, -3.0, 0.0})};
  q.gamma = 0.07;
  q.steps = 3;
  return q;
}

FlatVector SumOver(const Quadratics& q, const std::vector<std::int64_t>& set,
                   const FlatVector& x) {
  FlatVector s = FlatVector::Zero(x.size());
  for (std::int64_t k : set) s += q.a[k] - x;
  return s;
}

// ---------------------------------------------------------------------------
// Plan, names, weights.

TEST(FedVarpMifaTest, PlanHandsEveryParticipantTheLocalSpec) {
  const Quadratics q = FiveClients();
  FedVarp varp(VarpOptions(q, 1.0), 5, 3);
  Mifa mifa(MifaOpts(q, 1.0), 5, 3);
  EXPECT_EQ(varp.name(), "FedVARP");
  EXPECT_EQ(mifa.name(), "MIFA");
  const std::vector<ClientId> who = {ClientId(1), ClientId(3), ClientId(4)};
  for (SyncStrategy* s : {static_cast<SyncStrategy*>(&varp), static_cast<SyncStrategy*>(&mifa)}) {
    const std::vector<TaskSpec> tasks = s->Plan(0, who);
    ASSERT_EQ(tasks.size(), 3u);
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      EXPECT_EQ(tasks[i].client, who[i]);
      EXPECT_EQ(tasks[i].local.max_steps, 3);
      EXPECT_EQ(tasks[i].local.lr, 0.07);
      EXPECT_EQ(tasks[i].local.batch_size, 0);
      EXPECT_FALSE(tasks[i].scaffold.has_value());
      EXPECT_FALSE(tasks[i].scafflsa.has_value());
    }
  }
}

TEST(FedVarpMifaTest, ReportedWeightsAreOneOverParticipantsAndOneOverN) {
  const Quadratics q = FiveClients();
  FedVarp varp(VarpOptions(q, 1.0), 5, 3);
  Mifa mifa(MifaOpts(q, 1.0), 5, 3);
  FlatVector x = V({1.0, 1.0, 1.0}), z = x;
  EXPECT_THAT(RunRound(varp, 0, {0, 2, 4}, q, x).weights,
              ElementsAre(Pair(ClientId(0), 1.0 / 3), Pair(ClientId(2), 1.0 / 3),
                          Pair(ClientId(4), 1.0 / 3)));
  EXPECT_THAT(RunRound(mifa, 0, {0, 2, 4}, q, z).weights,
              ElementsAre(Pair(ClientId(0), 0.2), Pair(ClientId(2), 0.2),
                          Pair(ClientId(4), 0.2)));
}

// ---------------------------------------------------------------------------
// §3.1 and §3.2: rounds 0 and 1 against the closed forms.

struct TwoRounds {
  std::vector<std::int64_t> s0, s1;
};

const std::vector<TwoRounds>& TwoRoundCases() {
  static const std::vector<TwoRounds> cases = {
      {{0, 1}, {1, 2}},          // overlap {1}
      {{0, 2, 3}, {1, 2, 4}},    // overlap {2}
      {{1}, {0, 2, 3, 4}},       // disjoint
      {{0, 1, 2, 3, 4}, {3}},    // everybody, then a returning client alone
      {{2, 4}, {2, 4}},          // the same set twice
  };
  return cases;
}

TEST(FedVarpClosedFormTest, FirstTwoRounds) {
  const Quadratics q = FiveClients();
  const double eta = 0.8, c = q.c(), n = 5.0;
  for (const TwoRounds& tc : TwoRoundCases()) {
    FedVarp s(VarpOptions(q, eta), 5, 3);
    const FlatVector x0 = V({1.0, -0.5, 2.0});
    FlatVector x = x0;
    RunRound(s, 0, tc.s0, q, x);
    // x_1 = x_0 + eta c (abar_{S0} - x_0); ybar_1 = (c/N) sum_{S0} (a_n - x_0).
    const double m0 = static_cast<double>(tc.s0.size());
    const FlatVector x1 = x0 + eta * c * SumOver(q, tc.s0, x0) / m0;
    ExpectNear(x, x1, 1e-12, "x_1");
    ExpectNear(s.stored_mean(), c / n * SumOver(q, tc.s0, x0), 1e-12, "ybar_1");
    for (std::int64_t k = 0; k < 5; ++k) {
      const bool in = std::find(tc.s0.begin(), tc.s0.end(), k) != tc.s0.end();
      ExpectNear(s.stored_update(ClientId(k)),
                 in ? FlatVector(c * (q.a[k] - x0)) : FlatVector(FlatVector::Zero(3)), 1e-12,
                 "y after round 0");
    }
    RunRound(s, 1, tc.s1, q, x);
    // x_2 = x_1 + eta c [ (1/|S1|) ( sum_{S1 \ S0} (a_n - x_1)
    //        - |S1 & S0| (x_1 - x_0) ) + (1/N) sum_{S0} (a_n - x_0) ].
    FlatVector corr = FlatVector::Zero(3);
    for (std::int64_t k : tc.s1) {
      const bool seen = std::find(tc.s0.begin(), tc.s0.end(), k) != tc.s0.end();
      corr += seen ? FlatVector(-(x1 - x0)) : FlatVector(q.a[k] - x1);
    }
    const double m1 = static_cast<double>(tc.s1.size());
    const FlatVector x2 = x1 + eta * c * (corr / m1 + SumOver(q, tc.s0, x0) / n);
    ExpectNear(x, x2, 1e-12, "x_2");
  }
}

TEST(MifaClosedFormTest, FirstTwoRounds) {
  const Quadratics q = FiveClients();
  const double eta = 0.8, c = q.c(), n = 5.0;
  for (const TwoRounds& tc : TwoRoundCases()) {
    Mifa s(MifaOpts(q, eta), 5, 3);
    const FlatVector x0 = V({1.0, -0.5, 2.0});
    FlatVector x = x0;
    RunRound(s, 0, tc.s0, q, x);
    // x_1 = x_0 + (eta c / N) sum_{S0} (a_n - x_0).
    const FlatVector x1 = x0 + eta * c / n * SumOver(q, tc.s0, x0);
    ExpectNear(x, x1, 1e-12, "x_1");
    RunRound(s, 1, tc.s1, q, x);
    // x_2 = x_1 + (eta c / N) [ sum_{S1} (a_n - x_1) + sum_{S0 \ S1} (a_n - x_0) ].
    std::vector<std::int64_t> stale;
    for (std::int64_t k : tc.s0) {
      if (std::find(tc.s1.begin(), tc.s1.end(), k) == tc.s1.end()) stale.push_back(k);
    }
    const FlatVector x2 =
        x1 + eta * c / n * (SumOver(q, tc.s1, x1) + SumOver(q, stale, x0));
    ExpectNear(x, x2, 1e-12, "x_2");
  }
}

// ---------------------------------------------------------------------------
// §3.3: N = 4, d = 2, a = (0,0), (1,2), (5,-1), (2,4), x_0 = (1,1),
// gamma = 0.1, I = 5 (c = 0.40951), eta = 1, S_0 = {0,1}, S_1 = {1,2}.
// The float64 values are those of a literal port of main.py's arithmetic
// in the same operation order (Python floats); the decimals of §3.3's table
// table are within 1e-15 of them.

Quadratics WorkedExample() {
  Quadratics q;
  q.a = {V({0, 0}), V({1, 2}), V({5, -1}), V({2, 4})};
  q.gamma = 0.1;
  q.steps = 5;
  return q;
}

TEST(FedVarpMifaWorkedExampleTest, NotesTableBitForBit) {
  const Quadratics q = WorkedExample();
  EXPECT_NEAR(q.c(), 0.40951, 1e-15);
  {
    FedVarp s(VarpOptions(q, 1.0), 4, 2);
    FlatVector x = V({1, 1});
    RunRound(s, 0, {0, 1}, q, x);
    ExpectBitEqual(x, V({0.79524499999999998, 1.0}), "FedVARP x_1");
    ExpectNear(x, V({0.795245, 1.0}), 1e-15, "FedVARP x_1 (table)");
    ExpectBitEqual(s.stored_mean(), V({-0.10237749999999998, 2.7755575615628914e-17}),
                   "FedVARP ybar_1");
    ExpectNear(s.stored_mean(), V({-0.1023775, 0.0}), 1e-15, "FedVARP ybar_1 (§3.3)");
    ExpectBitEqual(s.stored_update(ClientId(0)),
                   V({-0.40950999999999993, -0.40950999999999993}), "y_0");
    ExpectBitEqual(s.stored_update(ClientId(1)), V({0.0, 0.40951000000000004}), "y_1");
    ExpectBitEqual(s.stored_update(ClientId(2)), V({0.0, 0.0}), "y_2");
    ExpectBitEqual(s.stored_update(ClientId(3)), V({0.0, 0.0}), "y_3");
    RunRound(s, 1, {1, 2}, q, x);
    ExpectBitEqual(x, V({1.5957367200500001, 0.59048999999999996}), "FedVARP x_2");
    ExpectNear(x, V({1.59573672005, 0.59049}), 1e-15, "FedVARP x_2 (table)");
    ExpectBitEqual(s.stored_mean(), V({0.34905711002500012, -0.20475499999999999}),
                   "FedVARP ybar_2");
  }
  {
    Mifa s(MifaOpts(q, 1.0), 4, 2);
    FlatVector x = V({1, 1});
    RunRound(s, 0, {0, 1}, q, x);
    ExpectBitEqual(x, V({0.89762249999999999, 1.0}), "MIFA x_1");
    ExpectNear(x, V({0.8976225, 1.0}), 1e-15, "MIFA x_1 (table)");
    RunRound(s, 1, {1, 2}, q, x);
    ExpectBitEqual(x, V({1.2257173050125001, 0.79524499999999998}), "MIFA x_2");
    ExpectNear(x, V({1.2257173050125, 0.795245}), 1e-15, "MIFA x_2 (table)");
  }
}

// ---------------------------------------------------------------------------
// §4.1: the fixed point under heterogeneous Bernoulli(p_n) participation is
// the plain mean of the a_n, exactly, whatever the p_n.

// Client n participates in round t with probability p[n]; one stream per
// (client, round), so the pattern is the same for every strategy run on it.
bool Participates(const std::vector<double>& p, std::int64_t k, Round t) {
  RngStream rng(2024, RngPurpose::kTest, k, t);
  return rng.Uniform01() < p[k];
}

std::vector<std::int64_t> Who(const std::vector<double>& p, Round t) {
  std::vector<std::int64_t> who;
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(p.size()); ++k) {
    if (Participates(p, k, t)) who.push_back(k);
  }
  return who;
}

TEST(FedVarpMifaFixedPointTest, BernoulliParticipationConvergesToThePlainMean) {
  // The optima are correlated with p (the rarely seen clients sit on one
  // side), so a participation-weighted average is far from the plain mean.
  Quadratics q;
  q.a = {V({-4.0, 3.0}), V({-2.0, 1.0}), V({0.5, 0.0}), V({2.0, -1.0}), V({3.0, -2.5})};
  q.gamma = 0.05;
  q.steps = 5;  // c = 0.2262, eta c = 0.2262 with eta = 1 (§4.1: eta c <= 0.3)
  const std::vector<double> p = {0.05, 0.1, 0.3, 0.6, 0.9};
  const FlatVector mean = q.Mean();  // (-0.1, 0.1)
  const Round rounds = 4000;

  FedVarp varp(VarpOptions(q, 1.0), 5, 2);
  Mifa mifa(MifaOpts(q, 1.0), 5, 2);
  // FedAvg with equal client sizes averages its participants with weights
  // 1/|S_t| (the FedAU code's average_participating).
  FedAvgOptions fo;
  fo.server_lr = 1.0;
  fo.local = Local(q);
  FedAvg fedavg(fo, std::vector<std::int64_t>(5, 100));

  FlatVector xv = V({5.0, 5.0}), xm = xv, xf = xv;
  FlatVector fedavg_sum = FlatVector::Zero(2);
  std::vector<int> seen(5, 0);
  int empty_rounds = 0;
  const Round burn_in = 500;
  for (Round t = 0; t < rounds; ++t) {
    const std::vector<std::int64_t> who = Who(p, t);
    for (std::int64_t k : who) ++seen[k];
    if (who.empty()) ++empty_rounds;
    RunRound(varp, t, who, q, xv);
    RunRound(mifa, t, who, q, xm);
    RunRound(fedavg, t, who, q, xf);
    if (t >= burn_in) fedavg_sum += xf;
  }
  const FlatVector fedavg_avg = fedavg_sum / static_cast<double>(rounds - burn_in);
  std::printf("seen %d %d %d %d %d, %d empty rounds; |FedVARP - mean| = %.3g, "
              "|MIFA - mean| = %.3g, FedAvg time average (%.4f, %.4f), mean (%.4f, %.4f)\n",
              seen[0], seen[1], seen[2], seen[3], seen[4], empty_rounds,
              (xv - mean).norm(), (xm - mean).norm(), fedavg_avg[0], fedavg_avg[1],
              mean[0], mean[1]);
  // Every client was seen often (p_min = 0.05: ~200 times), and the trace
  // has empty rounds (prob. 0.95 0.9 0.7 0.4 0.1 = 2.4 % per round).
  for (int k = 0; k < 5; ++k) EXPECT_GE(seen[k], 100) << k;
  EXPECT_GT(empty_rounds, 0);
  // Tolerance: with deterministic local steps the mean is an exact fixed
  // point (every S_t, the empty one included, leaves the state (x*, y_n =
  // Delta_n(x*)) unchanged, §4.1), so the error has no noise floor: it
  // decays geometrically, at a rate set by how often the rarest client
  // refreshes its y_n (every ~1/p_min = 20 rounds; eta c = 0.23 <= 0.3, the
  // stable range of §4.1), down to rounding (~1e-16 on values of order 1;
  // a Python port of main.py reached <= 1e-12 after 4000 rounds on a similar
  // setting). 1e-9 leaves room for a slower decay should the trace (seed)
  // change and is 9 orders of magnitude below the bias of the
  // participation-weighted average checked at the end.
  EXPECT_LT((xv - mean).norm(), 1e-9);
  EXPECT_LT((xm - mean).norm(), 1e-9);
  // At the fixed point every y_n is Delta_n(mean) and FedVARP's ybar is ~0.
  for (std::int64_t k = 0; k < 5; ++k) {
    ExpectNear(varp.stored_update(ClientId(k)), q.Delta(k, mean), 1e-9, "y_n at x*");
    ExpectNear(mifa.stored_update(ClientId(k)), q.Delta(k, mean), 1e-9, "y_n at x*");
  }
  ExpectNear(varp.stored_mean(), FlatVector::Zero(2), 1e-9, "ybar at x*");
  // FedAvg over the participants is pulled towards the frequent clients:
  // its time average stays far from the mean (here by more than 1).
  EXPECT_GT((fedavg_avg - mean).norm(), 1.0);
}

TEST(FedVarpMifaFixedPointTest, ANeverSeenClientDropsOut) {
  // §4.1: a client that never participates keeps y_n = 0; the limit is the
  // mean over the clients that do participate (the divisor N only rescales
  // the step).
  Quadratics q;
  q.a = {V({1.0, 0.0}), V({0.0, 2.0}), V({-1.0, 1.0}), V({10.0, 10.0})};
  q.gamma = 0.1;
  q.steps = 2;  // c = 0.19
  const std::vector<double> p = {0.5, 0.3, 0.8, 0.0};
  FedVarp varp(VarpOptions(q, 1.0), 4, 2);
  Mifa mifa(MifaOpts(q, 1.0), 4, 2);
  FlatVector xv = V({0.0, 0.0}), xm = xv;
  for (Round t = 0; t < 3000; ++t) {
    const std::vector<std::int64_t> who = Who(p, t);
    RunRound(varp, t, who, q, xv);
    RunRound(mifa, t, who, q, xm);
  }
  const FlatVector mean3 = V({0.0, 1.0});
  ExpectNear(xv, mean3, 1e-9, "FedVARP");
  ExpectNear(xm, mean3, 1e-9, "MIFA");
  ExpectBitEqual(varp.stored_update(ClientId(3)), FlatVector::Zero(2), "never seen");
}

// ---------------------------------------------------------------------------
// §5: full participation.

// Runs `rounds` rounds with everybody on `s` and on fedsim's FedAvg with
// equal client sizes (weights n_k / m_t = 1/N), each from its own x.
// Returns the largest |x_s - x_fedavg| over the rounds.
double FullParticipationGap(SyncStrategy& s, const Quadratics& q, double eta, int rounds,
                            bool bitwise) {
  FedAvgOptions fo;
  fo.server_lr = eta;
  fo.local = Local(q);
  FedAvg fedavg(fo, std::vector<std::int64_t>(q.n(), 7));
  std::vector<std::int64_t> all;
  for (std::int64_t k = 0; k < q.n(); ++k) all.push_back(k);
  FlatVector x = FlatVector::Constant(q.a[0].size(), 3.0), y = x;
  double gap = 0.0;
  const double c = q.c();
  const FlatVector mean = q.Mean();
  FlatVector closed = x;
  for (Round t = 0; t < rounds; ++t) {
    RunRound(s, t, all, q, x);
    RunRound(fedavg, t, all, q, y);
    if (bitwise) ExpectBitEqual(x, y, "round " + std::to_string(t));
    gap = std::max(gap, (x - y).cwiseAbs().maxCoeff());
    // x_t = abar + (1 - eta c)^t (x_0 - abar).
    closed = mean + (1.0 - eta * c) * (closed - mean);
    ExpectNear(x, closed, 1e-12, "closed form, round " + std::to_string(t));
  }
  return gap;
}

TEST(FedVarpMifaFullParticipationTest, MifaIsFedAvgWithEqualWeights) {
  // N = 4: FedAvg's weights are 7/28 = 1/4, a power of two, so each of its
  // terms (1/4) Delta_n is exact and its client-order sum
  // ((w D0 + w D1) + w D2) + w D3 is (1/4) of MIFA's client-order sum
  // ((D0 + D1) + D2) + D3, which MIFA divides by 4, also exactly; both then
  // apply x += eta * step with Axpy. Bit-identical, every round.
  Quadratics q4 = WorkedExample();
  q4.gamma = 0.05;
  Mifa m4(MifaOpts(q4, 1.5), 4, 2);
  EXPECT_EQ(FullParticipationGap(m4, q4, 1.5, 60, /*bitwise=*/true), 0.0);
  // N = 5: the weights 1/5 are rounded, and sum_n (1/5) D_n is not
  // (sum_n D_n) / 5 bit for bit: equal to rounding (1e-12 absolute on
  // values of order 1; the observed gap is a few 1e-16).
  Quadratics q5 = FiveClients();
  Mifa m5(MifaOpts(q5, 1.5), 5, 3);
  const double gap = FullParticipationGap(m5, q5, 1.5, 60, /*bitwise=*/false);
  std::printf("MIFA vs FedAvg, N = 5: largest gap %.3g\n", gap);
  EXPECT_LT(gap, 1e-12);
}

TEST(FedVarpMifaFullParticipationTest, FedVarpIsFedAvgWithEqualWeights) {
  // Round 0: y = 0, ybar = 0, so the direction is (1/N) sum Delta_n; later,
  // (1/N) sum (Delta_n - y_n) + ybar with ybar = (1/N) sum y_n. Equal in real
  // arithmetic, not in floating point (mean of differences plus a mean),
  // so compared to 1e-12.
  Quadratics q4 = WorkedExample();
  q4.gamma = 0.05;
  FedVarp v4(VarpOptions(q4, 1.5), 4, 2);
  const double gap4 = FullParticipationGap(v4, q4, 1.5, 60, /*bitwise=*/false);
  Quadratics q5 = FiveClients();
  FedVarp v5(VarpOptions(q5, 1.5), 5, 3);
  const double gap5 = FullParticipationGap(v5, q5, 1.5, 60, /*bitwise=*/false);
  std::printf("FedVARP vs FedAvg: largest gap %.3g (N = 4), %.3g (N = 5)\n", gap4, gap5);
  EXPECT_LT(gap4, 1e-12);
  EXPECT_LT(gap5, 1e-12);
}

TEST(FedVarpMifaFullParticipationTest, AFullRoundIsTheFedAvgStepWhateverTheHistory) {
  // §5: ybar is the mean of the y_n at the start of every round, so a round
  // with every client takes the step eta (1/N) sum Delta_n, for FedVARP as
  // for MIFA (whose stale entries are all refreshed).
  const Quadratics q = FiveClients();
  const double eta = 0.9;
  FedVarp varp(VarpOptions(q, eta), 5, 3);
  Mifa mifa(MifaOpts(q, eta), 5, 3);
  FlatVector xv = V({2.0, -1.0, 0.0}), xm = xv;
  const std::vector<std::vector<std::int64_t>> history = {{0, 3}, {}, {1, 3, 4}, {2}};
  Round t = 0;
  for (const auto& who : history) {
    RunRound(varp, t, who, q, xv);
    RunRound(mifa, t, who, q, xm);
    ++t;
  }
  for (SyncStrategy* s : {static_cast<SyncStrategy*>(&varp), static_cast<SyncStrategy*>(&mifa)}) {
    FlatVector& x = s == &varp ? xv : xm;
    FlatVector want = x;
    FlatVector sum = FlatVector::Zero(3);
    for (std::int64_t k = 0; k < 5; ++k) sum += q.Delta(k, x);
    want += eta * sum / 5.0;
    RunRound(*s, t, {0, 1, 2, 3, 4}, q, x);
    ExpectNear(x, want, 1e-12, std::string(s->name()));
  }
}

// ---------------------------------------------------------------------------
// Empty rounds.

TEST(FedVarpMifaEmptyRoundTest, FedVarpHoldsAndKeepsItsState) {
  const Quadratics q = FiveClients();
  FedVarp s(VarpOptions(q, 0.8), 5, 3);
  FlatVector x = V({1.0, 2.0, 3.0});
  // Nobody in round 0: nothing moves, and round 1 then behaves as round 0.
  const std::string fresh = s.EncodeState();
  EXPECT_TRUE(RunRound(s, 0, {}, q, x).weights.empty());
  ExpectBitEqual(x, V({1.0, 2.0, 3.0}), "x after an empty round 0");
  EXPECT_EQ(s.EncodeState(), fresh);
  FedVarp ref(VarpOptions(q, 0.8), 5, 3);
  FlatVector xr = x;
  RunRound(s, 1, {1, 4}, q, x);
  RunRound(ref, 0, {1, 4}, q, xr);
  ExpectBitEqual(x, xr, "round 1 after an empty round 0");
  // Nobody in round 2: no ybar step, x, y and ybar unchanged.
  const FlatVector before = x;
  const std::string state = s.EncodeState();
  ASSERT_THAT(s.stored_mean().norm(), ::testing::Gt(0.0));
  EXPECT_TRUE(RunRound(s, 2, {}, q, x).weights.empty());
  ExpectBitEqual(x, before, "x after an empty round 2");
  EXPECT_EQ(s.EncodeState(), state);
}

TEST(FedVarpMifaEmptyRoundTest, MifaStepsWithItsStoredUpdates) {
  const Quadratics q = FiveClients();
  const double eta = 0.8;
  Mifa s(MifaOpts(q, eta), 5, 3);
  FlatVector x = V({1.0, 2.0, 3.0});
  // Round 0 empty: the stored mean is 0, x stays.
  EXPECT_TRUE(RunRound(s, 0, {}, q, x).weights.empty());
  ExpectBitEqual(x, V({1.0, 2.0, 3.0}), "x after an empty round 0");
  RunRound(s, 1, {0, 2}, q, x);
  // Rounds 2 and 3 empty: each applies eta (1/N) sum_n y_n again, with the
  // y_n stored in round 1, computed here in the strategy's order.
  FlatVector mean = FlatVector::Zero(3);
  for (std::int64_t k = 0; k < 5; ++k) mean += s.stored_update(ClientId(k));
  mean /= 5.0;
  ExpectBitEqual(s.stored_mean(), mean, "stored mean");
  const std::string state = s.EncodeState();
  for (Round t = 2; t < 4; ++t) {
    FlatVector want = x;
    want += eta * mean;
    EXPECT_TRUE(RunRound(s, t, {}, q, x).weights.empty());
    ExpectBitEqual(x, want, "x after empty round " + std::to_string(t));
  }
  EXPECT_EQ(s.EncodeState(), state);  // the memory is untouched
}

// ---------------------------------------------------------------------------
// Checkpoint state.

// Runs rounds [from, to) of a Bernoulli trace on `s` (which may have been
// restored), with its own x.
void RunTrace(SyncStrategy& s, const Quadratics& q, const std::vector<double>& p, Round from,
              Round to, FlatVector& x) {
  for (Round t = from; t < to; ++t) RunRound(s, t, Who(p, t), q, x);
}

template <typename Strategy, typename Options>
void ExpectBitIdenticalResume(const Options& options, std::size_t expected_bytes) {
  const Quadratics q = FiveClients();
  const std::vector<double> p = {0.2, 0.5, 0.1, 0.7, 0.3};  // 12.6 % empty rounds
  Strategy straight(options, 5, 3);
  FlatVector x = V({1.0, -1.0, 0.5});
  RunTrace(straight, q, p, 0, 20, x);
  const std::string bytes = straight.EncodeState();
  EXPECT_EQ(bytes.size(), expected_bytes);
  const FlatVector x_at_20 = x;

  Strategy restored(options, 5, 3);
  ASSERT_TRUE(restored.DecodeState(bytes).ok());
  EXPECT_EQ(restored.EncodeState(), bytes);
  FlatVector xr = x_at_20;
  RunTrace(straight, q, p, 20, 60, x);
  RunTrace(restored, q, p, 20, 60, xr);
  ExpectBitEqual(xr, x, std::string(straight.name()) + " resumed at round 20");
  EXPECT_EQ(restored.EncodeState(), straight.EncodeState());
  int empty = 0;
  for (Round t = 20; t < 60; ++t) empty += Who(p, t).empty() ? 1 : 0;
  EXPECT_GT(empty, 0) << "the resumed stretch should include an empty round";
}

TEST(FedVarpMifaStateTest, ARestoredStrategyContinuesBitIdentically) {
  const Quadratics q = FiveClients();
  // N = 5, d = 3: FedVARP 8 (N + 1) d + 32, MIFA 8 N d + 24 bytes.
  ExpectBitIdenticalResume<FedVarp>(VarpOptions(q, 0.9), 8 * 6 * 3 + 32);
  ExpectBitIdenticalResume<Mifa>(MifaOpts(q, 0.9), 8 * 5 * 3 + 24);
}

// The FedVARP state layout (N, d, y, ybar) with values to corrupt.
struct VarpState {
  std::int64_t n = 5, d = 3;
  std::vector<double> y, ybar;
  std::string Encode() const {
    ByteWriter w;
    w.I64(n);
    w.I64(d);
    w.F64s(y);
    w.F64s(ybar);
    return w.bytes();
  }
};

VarpState Decoded(const std::string& bytes) {
  ByteReader r(bytes);
  VarpState s;
  s.n = r.I64();
  s.d = r.I64();
  s.y = r.F64s();
  s.ybar = r.F64s();
  EXPECT_TRUE(r.done());
  return s;
}

void ExpectRefused(SyncStrategy& s, const std::string& bytes, const std::string& what,
                   const std::string& message) {
  const std::string before = s.EncodeState();
  const absl::Status st = s.DecodeState(bytes);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << what << ": " << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(message)) << what;
  EXPECT_THAT(std::string(st.message()), Not(HasSubstr("\n"))) << what;
  EXPECT_EQ(s.EncodeState(), before) << what << " changed the state";
}

TEST(FedVarpMifaStateTest, BadStatesAreRefusedAndChangeNothing) {
  const Quadratics q = FiveClients();
  FedVarp varp(VarpOptions(q, 1.0), 5, 3);
  Mifa mifa(MifaOpts(q, 1.0), 5, 3);
  FlatVector xv = V({1.0, 1.0, 1.0}), xm = xv;
  RunRound(varp, 0, {0, 3}, q, xv);
  RunRound(mifa, 0, {0, 3}, q, xm);
  const std::string good_v = varp.EncodeState();
  const std::string good_m = mifa.EncodeState();
  const double nan = std::nan("");

  // FedVARP.
  ExpectRefused(varp, "", "empty", "FedVARP state of 0 bytes is malformed");
  ExpectRefused(varp, good_v.substr(0, good_v.size() - 8), "truncated", "malformed");
  ExpectRefused(varp, good_v + std::string(8, '\0'), "trailing bytes", "malformed");
  {
    FedVarp other(VarpOptions(q, 1.0), 4, 3);
    ExpectRefused(other, good_v, "N = 5 into N = 4", "N = 5, d = 3");
    FedVarp wider(VarpOptions(q, 1.0), 5, 4);
    ExpectRefused(wider, good_v, "d = 3 into d = 4", "N = 5, d = 3");
  }
  VarpState st = Decoded(good_v);
  {
    VarpState bad = st;
    bad.y.pop_back();
    ExpectRefused(varp, bad.Encode(), "y of N d - 1", "malformed");
    bad = st;
    bad.ybar.push_back(0.0);
    ExpectRefused(varp, bad.Encode(), "ybar of d + 1", "malformed");
    bad = st;
    bad.y[4] = nan;
    ExpectRefused(varp, bad.Encode(), "NaN in y", "not finite");
    bad = st;
    bad.ybar[1] = std::numeric_limits<double>::infinity();
    ExpectRefused(varp, bad.Encode(), "inf in ybar", "not finite");
    bad = st;
    bad.ybar[0] += 1e-3;
    ExpectRefused(varp, bad.Encode(), "ybar not the mean", "not the mean");
  }
  // A consistent state is taken (the same bytes back).
  FedVarp fresh(VarpOptions(q, 1.0), 5, 3);
  ASSERT_TRUE(fresh.DecodeState(st.Encode()).ok());
  EXPECT_EQ(fresh.EncodeState(), good_v);

  // MIFA.
  ExpectRefused(mifa, "", "empty", "MIFA state of 0 bytes is malformed");
  ExpectRefused(mifa, good_m.substr(0, good_m.size() - 8), "truncated", "malformed");
  ExpectRefused(mifa, good_m + std::string(8, '\0'), "trailing bytes", "malformed");
  ExpectRefused(mifa, good_v, "a FedVARP state", "malformed");
  {
    Mifa other(MifaOpts(q, 1.0), 6, 3);
    ExpectRefused(other, good_m, "N = 5 into N = 6", "N = 5, d = 3");
  }
  {
    ByteReader r(good_m);
    const std::int64_t n = r.I64(), d = r.I64();
    std::vector<double> y = r.F64s();
    y[7] = nan;
    ByteWriter w;
    w.I64(n);
    w.I64(d);
    w.F64s(y);
    ExpectRefused(mifa, w.bytes(), "NaN in y", "not finite");
  }
  EXPECT_EQ(varp.EncodeState(), good_v);
  EXPECT_EQ(mifa.EncodeState(), good_m);
}

// ---------------------------------------------------------------------------
// Refusals in Aggregate.

ClientResult Result(std::int64_t client, const FlatVector& update) {
  ClientResult r;
  r.task = TaskId(client + 1);
  r.client = ClientId(client);
  r.num_examples = 1;
  r.update = update;
  return r;
}

void ExpectAggregateRefused(SyncStrategy& s, const std::vector<ClientResult>& results,
                            const std::string& message) {
  FlatVector x = V({1.0, 2.0, 3.0});
  const std::string before = s.EncodeState();
  absl::StatusOr<AggregationReport> r = s.Aggregate(1, results, x);
  ASSERT_FALSE(r.ok()) << message;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(message));
  ExpectBitEqual(x, V({1.0, 2.0, 3.0}), "x after a refused aggregation");
  EXPECT_EQ(s.EncodeState(), before);
}

TEST(FedVarpMifaAggregateTest, RefusesUnplannedUnsortedAndMisSizedResults) {
  const Quadratics q = FiveClients();
  FedVarp varp(VarpOptions(q, 1.0), 5, 3);
  Mifa mifa(MifaOpts(q, 1.0), 5, 3);
  FlatVector xv = V({0.0, 0.0, 0.0}), xm = xv;
  RunRound(varp, 0, {0, 1, 2}, q, xv);  // non-zero memory to protect
  RunRound(mifa, 0, {0, 1, 2}, q, xm);
  const FlatVector u = V({0.1, 0.2, 0.3});
  for (SyncStrategy* s : {static_cast<SyncStrategy*>(&varp), static_cast<SyncStrategy*>(&mifa)}) {
    const std::vector<ClientId> planned = {ClientId(1), ClientId(3)};
    s->Plan(1, planned);
    ExpectAggregateRefused(*s, {Result(1, u), Result(2, u)}, "client 2, which was not selected");
    ExpectAggregateRefused(*s, {Result(3, u), Result(1, u)}, "not sorted");
    ExpectAggregateRefused(*s, {Result(1, u), Result(1, u)}, "not sorted");
    ExpectAggregateRefused(*s, {Result(1, V({1.0, 2.0}))}, "has 2 values, expected 3");
    FlatVector wrong = V({1.0, 2.0});
    const std::vector<ClientResult> ok = {Result(1, u)};
    EXPECT_EQ(s->Aggregate(1, ok, wrong).status().code(), absl::StatusCode::kInvalidArgument);
    // The plan of round 1 is still in force: a planned result goes through.
    FlatVector x = V({1.0, 2.0, 3.0});
    EXPECT_TRUE(s->Aggregate(1, ok, x).ok());
  }
}

}  // namespace
}  // namespace fedvarp_mifa_test
}  // namespace fedsim
