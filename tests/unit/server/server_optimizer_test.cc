// Tests of server/strategy/server_optimizer (Reddi et al., ICLR 2021,
// Algorithm 2; FedAvgM) and its composition with FedAvg, FedProx and FedAU:
// three rounds with known aggregated updates against hand-computed values,
// and FedAvgM with momentum 0 against FedAvg bit for bit.
#include <cstring>
#include <vector>

#include "common/base/task.h"
#include "common/base/types.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "server/strategy/fedau.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/server_optimizer.h"

namespace fedsim {
namespace server_optimizer_test {
namespace {

FlatVector Vec(double a, double b, double c) {
  FlatVector v(3);
  v << a, b, c;
  return v;
}

bool SameBits(const FlatVector& a, const FlatVector& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

// The aggregated updates Delta_0, Delta_1, Delta_2 of three rounds.
const FlatVector kDeltas[3] = {Vec(0.2, -0.4, 0.05), Vec(0.1, 0.3, -0.05),
                               Vec(-0.2, 0.0, 0.5)};

ServerOptimizerOptions Options(ServerOptimizerKind kind) {
  ServerOptimizerOptions o;
  o.kind = kind;
  o.lr = 0.5;
  o.momentum = 0.9;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.tau = 0.1;
  return o;
}

struct Expected {
  ServerOptimizerKind kind;
  FlatVector x[3];  // after rounds 0, 1, 2
  FlatVector v[3];  // second moments (adaptive kinds)
};

// x_0 = (1, -1, 0.5), eta = 0.5, beta1 = 0.9, beta2 = 0.99, tau = 0.1,
// m_{-1} = 0, v_{-1} = tau^2 = 0.01. Worked by hand for round 0, first
// coordinate (Delta = 0.2, Delta^2 = 0.04):
//   m = 0.1 * 0.2 = 0.02
//   Adam:    v = 0.99 * 0.01 + 0.01 * 0.04 = 0.0103
//            x = 1 + 0.5 * 0.02 / (sqrt(0.0103) + 0.1) = 1.0496305216974064
//   Yogi:    v = 0.01 - 0.01 * 0.04 * sign(0.01 - 0.04) = 0.0104
//   Adagrad: v = 0.01 + 0.04 = 0.05
//   FedAvgM: m = 0.2, x = 1 + 0.5 * 0.2 = 1.1
// and the rest the same way (to 17 digits with IEEE doubles).
const Expected kExpected[] = {
    {ServerOptimizerKind::kMomentum,
     {Vec(1.1, -1.2, 0.525), Vec(1.2400000000000002, -1.23, 0.5225000000000001),
      Vec(1.2660000000000002, -1.2570000000000001, 0.7702500000000001)},
     {}},
    {ServerOptimizerKind::kAdam,
     {Vec(1.0496305216974064, -1.0965073726351477, 0.5125235258047874),
      Vec(1.1191183496279564, -1.1107363256480147, 0.5112688266086199),
      Vec(1.1319308196261681, -1.1235762179158935, 0.6288587352290929)},
     {Vec(0.0103, 0.0115, 0.009925), Vec(0.010297, 0.012285, 0.00985075),
      Vec(0.01059403, 0.01216215, 0.0122522425)}},
    // Yogi: in round 0 the first two coordinates have Delta^2 > v, so v
    // grows; the third has Delta^2 = 0.0025 < v, so v shrinks.
    {ServerOptimizerKind::kYogi,
     {Vec(1.0495097567963925, -1.096291201783626, 0.5125078222809105),
      Vec(1.1189924871727615, -1.1104552804336134, 0.5112562558624106),
      Vec(1.1317726175334808, -1.1232029512186021, 0.6283516835145333)},
     {Vec(0.0104, 0.0116, 0.009975), Vec(0.0103, 0.0125, 0.00995),
      Vec(0.0107, 0.0125, 0.01245)}},
    {ServerOptimizerKind::kAdagrad,
     {Vec(1.0309016994374947, -1.0390388203202208, 0.5118033988749895),
      Vec(1.0714874122354237, -1.043957643736532, 0.5106796745180315),
      Vec(1.0777339921425768, -1.0483845848112123, 0.5509785444676302)},
     {Vec(0.05, 0.17, 0.0125), Vec(0.06, 0.26, 0.015), Vec(0.1, 0.26, 0.265)}},
};

class ServerOptimizerTest : public ::testing::TestWithParam<Expected> {};

TEST_P(ServerOptimizerTest, ThreeRoundsMatchHandComputedValues) {
  const Expected& e = GetParam();
  ServerOptimizer opt(Options(e.kind));
  FlatVector x = Vec(1.0, -1.0, 0.5);
  for (int t = 0; t < 3; ++t) {
    opt.Step(kDeltas[t], x);
    for (int i = 0; i < 3; ++i) {
      EXPECT_NEAR(x[i], e.x[t][i], 1e-15) << "round " << t << " coordinate " << i;
      if (e.v[t].size() > 0) {
        EXPECT_NEAR(opt.second_moment()[i], e.v[t][i], 1e-16)
            << "round " << t << " coordinate " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Reddi2021, ServerOptimizerTest,
                         ::testing::ValuesIn(kExpected));

TEST(ServerOptimizerTest, SgdIsTheFedAvgStep) {
  ServerOptimizer opt(Options(ServerOptimizerKind::kSgd));
  FlatVector x = Vec(1.0, -1.0, 0.5);
  opt.Step(kDeltas[0], x);
  EXPECT_TRUE(SameBits(x, Vec(1.0 + 0.5 * 0.2, -1.0 + 0.5 * -0.4, 0.5 + 0.5 * 0.05)));
}

TEST(ServerOptimizerTest, DisplayNames) {
  const auto name = [](ServerOptimizerKind k, const char* base) {
    return ServerOptimizer(Options(k)).DisplayName(base);
  };
  EXPECT_EQ(name(ServerOptimizerKind::kSgd, "FedAvg"), "FedAvg");
  EXPECT_EQ(name(ServerOptimizerKind::kMomentum, "FedAvg"), "FedAvgM");
  EXPECT_EQ(name(ServerOptimizerKind::kAdam, "FedAvg"), "FedAdam");
  EXPECT_EQ(name(ServerOptimizerKind::kYogi, "FedAvg"), "FedYogi");
  EXPECT_EQ(name(ServerOptimizerKind::kAdagrad, "FedAvg"), "FedAdagrad");
  EXPECT_EQ(name(ServerOptimizerKind::kAdam, "FedAU"), "FedAU+Adam");
  EXPECT_EQ(name(ServerOptimizerKind::kMomentum, "FedProx"), "FedProx+Momentum");
}

// Random client updates for `clients` over `rounds` rounds.
std::vector<std::vector<ClientResult>> RandomRounds(int rounds, int clients,
                                                    int dim) {
  RngStream rng(3, RngPurpose::kTest, -1, -1);
  std::vector<std::vector<ClientResult>> out(rounds);
  for (int t = 0; t < rounds; ++t) {
    for (int k = 0; k < clients; ++k) {
      ClientResult r;
      r.client = ClientId(k);
      r.num_examples = 10 + k;
      r.update.resize(dim);
      for (int i = 0; i < dim; ++i) r.update[i] = rng.Gaussian();
      out[t].push_back(std::move(r));
    }
  }
  return out;
}

TEST(ServerOptimizerTest, FedAvgMWithMomentumZeroIsFedAvgBitForBit) {
  const std::vector<std::vector<ClientResult>> rounds = RandomRounds(8, 4, 7);
  for (double lr : {1.0, 0.7}) {
    FedAvgOptions plain;
    plain.server_lr = lr;
    FedAvgOptions heavy = plain;
    heavy.server_optimizer.kind = ServerOptimizerKind::kMomentum;
    heavy.server_optimizer.momentum = 0.0;
    FedAvg a(plain, {10, 11, 12, 13});
    FedAvg b(heavy, {10, 11, 12, 13});
    EXPECT_EQ(b.name(), "FedAvgM");
    FlatVector xa = FlatVector::Constant(7, 0.3), xb = xa;
    const std::vector<ClientId> all = {ClientId(0), ClientId(1), ClientId(2),
                                       ClientId(3)};
    for (Round t = 0; t < 8; ++t) {
      a.Plan(t, all);
      b.Plan(t, all);
      ASSERT_TRUE(a.Aggregate(t, rounds[t], xa).ok());
      ASSERT_TRUE(b.Aggregate(t, rounds[t], xb).ok());
      ASSERT_TRUE(SameBits(xa, xb)) << "round " << t << " lr " << lr;
    }
    EXPECT_GT((xa - FlatVector::Constant(7, 0.3)).norm(), 0.1);
  }
}

// FedAvg with an optimiser: the optimiser sees exactly FedAvg's weighted
// mean update sum_k (n_k / m_t) Delta_k.
TEST(ServerOptimizerTest, FedAdamStepsOnFedAvgsWeightedMean) {
  const std::vector<std::vector<ClientResult>> rounds = RandomRounds(3, 3, 5);
  FedAvgOptions options;
  options.server_lr = 0.3;
  options.server_optimizer.kind = ServerOptimizerKind::kAdam;
  options.server_optimizer.tau = 0.01;
  FedAvg fedadam(options, {10, 11, 12});
  EXPECT_EQ(fedadam.name(), "FedAdam");
  ServerOptimizerOptions ro = options.server_optimizer;
  ro.lr = 0.3;
  ServerOptimizer reference(ro);
  FlatVector x = FlatVector::Zero(5), y = x;
  const std::vector<ClientId> all = {ClientId(0), ClientId(1), ClientId(2)};
  for (Round t = 0; t < 3; ++t) {
    fedadam.Plan(t, all);
    ASSERT_TRUE(fedadam.Aggregate(t, rounds[t], x).ok());
    const FlatVector mean = (10.0 / 33) * rounds[t][0].update +
                            (11.0 / 33) * rounds[t][1].update +
                            (12.0 / 33) * rounds[t][2].update;
    reference.Step(mean, y);
    EXPECT_LT((x - y).cwiseAbs().maxCoeff(), 1e-13) << "round " << t;
  }
}

// FedAU's estimator still decides the weights; the optimiser then steps on
// (1/N) sum omega_n Delta_n. In round 0 every omega_n = 1.
TEST(ServerOptimizerTest, FedAuComposesWithYogi) {
  const std::vector<std::vector<ClientResult>> rounds = RandomRounds(1, 2, 4);
  FedAuOptions options;
  options.server_lr = 0.5;
  options.server_optimizer.kind = ServerOptimizerKind::kYogi;
  FedAu fedau(options, 4);
  EXPECT_EQ(fedau.name(), "FedAU+Yogi");
  const std::vector<ClientId> two = {ClientId(0), ClientId(1)};
  fedau.Plan(0, two);
  FlatVector x = FlatVector::Zero(4);
  ASSERT_TRUE(fedau.Aggregate(0, rounds[0], x).ok());
  ServerOptimizerOptions ro = options.server_optimizer;
  ro.lr = 0.5;
  ServerOptimizer reference(ro);
  FlatVector y = FlatVector::Zero(4);
  reference.Step(0.25 * rounds[0][0].update + 0.25 * rounds[0][1].update, y);
  EXPECT_LT((x - y).cwiseAbs().maxCoeff(), 1e-15);
}

TEST(ServerOptimizerTest, NobodyReturnedLeavesModelAndMomentsUnchanged) {
  FedAvgOptions options;
  options.server_optimizer.kind = ServerOptimizerKind::kMomentum;
  FedAvg fedavgm(options, {5, 5});
  const std::vector<ClientId> both = {ClientId(0), ClientId(1)};
  std::vector<ClientResult> one(1);
  one[0].client = ClientId(0);
  one[0].num_examples = 5;
  one[0].update = Vec(1, 2, 3);
  FlatVector x = Vec(0, 0, 0);
  fedavgm.Plan(0, both);
  ASSERT_TRUE(fedavgm.Aggregate(0, one, x).ok());
  EXPECT_EQ(x, Vec(1, 2, 3));
  fedavgm.Plan(1, both);
  ASSERT_TRUE(fedavgm.Aggregate(1, {}, x).ok());
  EXPECT_EQ(x, Vec(1, 2, 3));
  // Round 2: m = 0.9 (1, 2, 3) + (1, 2, 3), not 0.81 (...) + ...
  fedavgm.Plan(2, both);
  ASSERT_TRUE(fedavgm.Aggregate(2, one, x).ok());
  EXPECT_LT((x - Vec(1 + 1.9, 2 + 3.8, 3 + 5.7)).norm(), 1e-14);
}

}  // namespace
}  // namespace server_optimizer_test
}  // namespace fedsim
