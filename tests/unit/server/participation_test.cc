// The participation models of ALGORITHMS.md §2.4: the cyclic example
// exactly, the Markov chain's transition rule and long-run active fraction,
// Bernoulli frequencies, traces, late joiners, the data-correlated p_n, and
// that every stateful model saves and restores its state.
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/participation/availability.h"
#include "server/participation/participation.h"
#include "server/participation/probabilities.h"

namespace fedsim {
namespace participation_test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// q_0^t for t = 0..rounds-1 of a one-client model.
std::vector<int> Sequence(ParticipationModel& model, int rounds) {
  std::vector<int> out;
  for (int t = 0; t < rounds; ++t) {
    out.push_back(model.Participants(t).empty() ? 0 : 1);
  }
  return out;
}

TEST(CyclicTest, LengthsRoundHalfToEvenLikeNumPy) {
  EXPECT_EQ(CyclicLengths(0.3, 10), std::make_pair(int64_t{3}, int64_t{7}));
  EXPECT_EQ(CyclicLengths(0.25, 10), std::make_pair(int64_t{2}, int64_t{8}));  // 2.5 -> 2
  EXPECT_EQ(CyclicLengths(0.75, 10), std::make_pair(int64_t{8}, int64_t{2}));  // 7.5 -> 8
  EXPECT_EQ(CyclicLengths(0.02, 10), std::make_pair(int64_t{1}, int64_t{9}));  // max(1, 0)
  EXPECT_EQ(CyclicLengths(1.0, 10), std::make_pair(int64_t{10}, int64_t{1}));  // max(1, 0)
  EXPECT_EQ(CyclicLengths(0.1, 100), std::make_pair(int64_t{10}, int64_t{90}));
}

TEST(CyclicTest, ExampleOfTheSpecExactly) {
  // P = 10, p = 0.3, r0 = 2 -> 0 0 1 1 1 0 0 0 0 0 0 0 1 1 1 0 0.
  CyclicAvailability model(1, {0.3}, 10);
  ParticipationState start;
  start.active = {0};
  start.countdown = {2};
  ASSERT_TRUE(model.RestoreState(start).ok());
  EXPECT_THAT(Sequence(model, 17),
              ElementsAre(0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0));
}

TEST(CyclicTest, RandomPhaseStartsInactiveAndCoversEveryOffset) {
  // U = 7 for p = 0.3, P = 10: r0 uniform on {0..6}; the first active
  // round is r0 (0-based), and each offset occurs.
  const int clients = 700;
  CyclicAvailability model(3, std::vector<double>(clients, 0.3), 10);
  const ParticipationState s = model.SaveState();
  std::vector<int> hist(7, 0);
  for (int n = 0; n < clients; ++n) {
    EXPECT_EQ(s.active[n], 0);
    ASSERT_GE(s.countdown[n], 0);
    ASSERT_LT(s.countdown[n], 7);
    ++hist[s.countdown[n]];
  }
  for (int h : hist) EXPECT_GT(h, 60) << "offset histogram far from uniform";
  // Over whole periods each client is active exactly A = 3 of every 10 rounds.
  std::vector<int> active(clients, 0);
  for (int t = 0; t < 1000; ++t) {
    for (ClientId c : model.Participants(t)) ++active[c.value];
  }
  for (int n = 0; n < clients; ++n) {
    EXPECT_EQ(active[n], 300) << n;
  }
}

TEST(CyclicTest, RejectsBadStateAndChangesNothing) {
  CyclicAvailability model(1, {0.3, 0.5}, 10);
  const ParticipationState before = model.SaveState();
  ParticipationState bad = before;
  bad.countdown = {1};
  EXPECT_EQ(model.RestoreState(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = before;
  bad.countdown[1] = 11;
  EXPECT_EQ(model.RestoreState(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = before;
  bad.active[0] = 2;
  EXPECT_EQ(model.RestoreState(bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model.SaveState(), before);
}

TEST(MarkovTest, TransitionProbabilitiesAndRescaling) {
  auto [up, down] = MarkovTransition(0.1, 0.05);
  EXPECT_DOUBLE_EQ(up, 0.05);
  EXPECT_DOUBLE_EQ(down, 0.05 * 9.0);
  // a (1/p - 1) = 0.05 * 49 = 2.45 > 1: both divided by 2.45.
  std::tie(up, down) = MarkovTransition(0.02, 0.05);
  EXPECT_DOUBLE_EQ(up, 0.05 / (0.05 * (1.0 / 0.02 - 1.0)));
  EXPECT_DOUBLE_EQ(down, 1.0);
  std::tie(up, down) = MarkovTransition(1.0, 0.05);
  EXPECT_DOUBLE_EQ(up, 0.05);
  EXPECT_DOUBLE_EQ(down, 0.0);
}

TEST(MarkovTest, LongRunActiveFractionIsWithinOnePercentOfP) {
  // 20 clients per p, 500,000 rounds: with lag-one correlation
  // rho = 1 - up - down, the pooled fraction's standard error is
  // sqrt(p (1 - p) (1 + rho) / (1 - rho) / 1e7), at most 0.23% of p here,
  // so 1% is more than 4 standard errors.
  const std::vector<double> levels = {0.02, 0.1, 0.5};
  const int per_level = 20;
  std::vector<double> p;
  for (double level : levels) p.insert(p.end(), per_level, level);
  MarkovAvailability model(11, p, 0.05);
  const int rounds = 500000;
  std::vector<double> active(p.size(), 0.0);
  for (int t = 0; t < rounds; ++t) {
    for (ClientId c : model.Participants(t)) active[c.value] += 1.0;
  }
  for (std::size_t l = 0; l < levels.size(); ++l) {
    double total = 0.0;
    for (int k = 0; k < per_level; ++k) total += active[l * per_level + k];
    const double fraction = total / (static_cast<double>(rounds) * per_level);
    EXPECT_NEAR(fraction, levels[l], 0.01 * levels[l]) << "p = " << levels[l];
  }
}

TEST(MarkovTest, SaveAndRestoreContinueTheSameChain) {
  const std::vector<double> p = {0.1, 0.4, 0.9};
  MarkovAvailability a(5, p, 0.05);
  for (int t = 0; t < 40; ++t) a.Participants(t);
  const ParticipationState saved = a.SaveState();
  EXPECT_EQ(saved.next_round, 40);
  std::vector<std::vector<ClientId>> expected;
  for (int t = 40; t < 80; ++t) expected.push_back(a.Participants(t));

  MarkovAvailability b(5, p, 0.05);
  ASSERT_TRUE(b.RestoreState(saved).ok());
  for (int t = 40; t < 80; ++t) EXPECT_EQ(b.Participants(t), expected[t - 40]);

  ParticipationState wrong = saved;
  wrong.active.pop_back();
  EXPECT_EQ(b.RestoreState(wrong).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MarkovTest, InitialStateIsActiveWithProbabilityP) {
  const int clients = 20000;
  MarkovAvailability model(2, std::vector<double>(clients, 0.3), 0.05);
  const ParticipationState s = model.SaveState();
  const double on = std::accumulate(s.active.begin(), s.active.end(), 0.0);
  // Binomial(20000, 0.3): standard deviation 65.
  EXPECT_NEAR(on, 6000.0, 300.0);
}

TEST(BernoulliTest, FrequenciesMatchPAndRoundsArePure) {
  const std::vector<double> p = {0.0, 0.05, 0.5, 1.0};
  BernoulliAvailability model(9, p);
  const int rounds = 200000;
  std::vector<double> count(p.size(), 0.0);
  for (int t = 0; t < rounds; ++t) {
    for (ClientId c : model.Participants(t)) count[c.value] += 1.0;
  }
  EXPECT_EQ(count[0], 0.0);
  EXPECT_EQ(count[3], rounds);
  // Standard errors 0.00049 and 0.0011.
  EXPECT_NEAR(count[1] / rounds, 0.05, 0.0025);
  EXPECT_NEAR(count[2] / rounds, 0.5, 0.005);
  // A round's draw depends on (seed, client, round) only.
  EXPECT_EQ(model.Participants(123), BernoulliAvailability(9, p).Participants(123));
  EXPECT_NE(model.Participants(123), BernoulliAvailability(10, p).Participants(123));
}

TEST(TraceTest, ParsesLinesCommentsEmptyRoundsAndWraps) {
  absl::StatusOr<Trace> trace = ParseTrace("# header\n2 0\n\n1,2\n", 3);
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->size(), 3u);
  EXPECT_THAT((*trace)[0], ElementsAre(ClientId(0), ClientId(2)));
  EXPECT_TRUE((*trace)[1].empty());
  EXPECT_THAT((*trace)[2], ElementsAre(ClientId(1), ClientId(2)));
  TraceAvailability model(*trace);
  EXPECT_EQ(model.Participants(4), (*trace)[1]);  // 4 mod 3 = 1
  // Over rounds 0..3: rounds 0, 1, 2, 0 -> client 0: 2, client 1: 1, client 2: 3.
  EXPECT_THAT(TraceFrequencies(*trace, 3, 4), ElementsAre(0.5, 0.25, 0.75));
}

TEST(TraceTest, RejectsBadIdsRepeatsAndEmptyTraces) {
  EXPECT_THAT(ParseTrace("0 1\n3\n", 3).status().message(), HasSubstr("line 2"));
  EXPECT_THAT(ParseTrace("0 x\n", 3).status().message(), HasSubstr("'x'"));
  EXPECT_THAT(ParseTrace("-1\n", 3).status().message(), HasSubstr("'-1'"));
  EXPECT_THAT(ParseTrace("1 1\n", 3).status().message(), HasSubstr("twice"));
  EXPECT_FALSE(ParseTrace("# only a comment\n", 3).ok());
  EXPECT_FALSE(ParseTrace("", 3).ok());
}

TEST(LateJoinTest, ClientsNeverParticipateBeforeTheirJoinRound) {
  LateJoin model(std::make_unique<BernoulliAvailability>(1, std::vector<double>{1, 1, 1}),
                 {0, 2, 5});
  EXPECT_THAT(model.Participants(0), ElementsAre(ClientId(0)));
  EXPECT_THAT(model.Participants(2), ElementsAre(ClientId(0), ClientId(1)));
  EXPECT_THAT(model.Participants(5), ElementsAre(ClientId(0), ClientId(1), ClientId(2)));
}

TEST(ProbabilitiesTest, LabelHistogramsAreNormalisedCounts) {
  Eigen::VectorXd labels(6);
  labels << 0, 1, 1, 2, 2, 2;
  absl::StatusOr<std::vector<std::vector<double>>> pi =
      LabelHistograms(labels, 3, {{0, 1, 2, 3}, {4, 5}, {}});
  ASSERT_TRUE(pi.ok()) << pi.status();
  EXPECT_THAT((*pi)[0], ElementsAre(0.25, 0.5, 0.25));
  EXPECT_THAT((*pi)[1], ElementsAre(0.0, 0.0, 1.0));
  EXPECT_THAT((*pi)[2], ElementsAre(0.0, 0.0, 0.0));
  labels[0] = 3;
  EXPECT_FALSE(LabelHistograms(labels, 3, {{0}}).ok());
  labels[0] = 0.5;
  EXPECT_FALSE(LabelHistograms(labels, 3, {{0}}).ok());
}

TEST(ProbabilitiesTest, DataCorrelatedFollowsThePaperFormula) {
  const std::vector<std::vector<double>> pi = {
      {1.0, 0.0, 0.0, 0.0}, {0.0, 0.5, 0.5, 0.0}, {0.25, 0.25, 0.25, 0.25}};
  DataCorrelatedSpec spec;
  spec.p_mean = 0.2;
  spec.p_min = 0.02;
  spec.label_alpha = 0.5;
  RngStream rng(4, RngPurpose::kTest, -1, -1);
  RngStream same = rng;
  const std::vector<double> m = same.Dirichlet(4, 0.5);
  const std::vector<double> p = DataCorrelatedProbabilities(pi, spec, rng);
  ASSERT_EQ(p.size(), 3u);
  const double scale = 0.2 * 4;
  EXPECT_DOUBLE_EQ(p[0], std::min(1.0, std::max(0.02, m[0] * scale)));
  EXPECT_DOUBLE_EQ(p[1], std::min(1.0, std::max(0.02, (0.5 * m[1] + 0.5 * m[2]) * scale)));
  // The uniform histogram gets exactly p_mean (sum of m is 1).
  EXPECT_NEAR(p[2], 0.2, 1e-15);
  // p_min floors and 1 caps.
  spec.p_mean = 1.0;
  spec.p_min = 0.3;
  RngStream again(4, RngPurpose::kTest, -1, -1);
  for (double v : DataCorrelatedProbabilities(pi, spec, again)) {
    EXPECT_GE(v, 0.3);
    EXPECT_LE(v, 1.0);
  }
}

}  // namespace
}  // namespace participation_test
}  // namespace fedsim
