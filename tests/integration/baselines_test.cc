// FedProx, SCAFFOLD and the server optimisers end to end (docs/baselines.md):
// SCAFFOLD against a hand-rolled reference (ALGORITHMS.md §6.1) and the
// exact optimum of heterogeneous quadratics where FedAvg keeps its
// closed-form bias (§8.1); FedProx with mu = 0 and FedAvgM with momentum 0
// against FedAvg bit for bit; stragglers dropped by FedAvg and kept by
// FedProx.
#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/trainer/local_trainer.h"
#include "client/trainer/scaffold_trainer.h"
#include "common/config/config.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/scaffold.h"
#include "tests/testing/run_dir.h"
#include "tests/testing/vectors.h"

namespace fedsim {
namespace baselines_test {
namespace {

using test::ReadFile;
using test::Column;

// ---- SCAFFOLD against a hand-rolled reference -----------------------------

// Client i's least squares F_i(w) = (1/2n) ||X_i w - y_i||^2 with its own
// feature shift and model, so the clients disagree.
Dataset RandomClient(int i, int rows, int dim) {
  RngStream rng(21, RngPurpose::kTest, i, -1);
  Dataset d;
  d.features.resize(rows, dim);
  d.labels.resize(rows);
  for (int r = 0; r < rows; ++r) {
    double y = 0.0;
    for (int j = 0; j < dim; ++j) {
      const double x = rng.Gaussian() + 0.5 * i;
      d.features(r, j) = static_cast<float>(x);
      y += x * ((j + i) % 3 - 1.0);
    }
    d.labels[r] = y + rng.Gaussian();
  }
  return d;
}

std::unique_ptr<Objective> LeastSquares(int dim) {
  absl::StatusOr<std::unique_ptr<Objective>> ls =
      MakeObjective({ObjectiveKind::kLeastSquares, dim, 0, 0, 0.0});
  EXPECT_TRUE(ls.ok());
  return *std::move(ls);
}

std::vector<std::int64_t> AllRows(int n) {
  std::vector<std::int64_t> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = i;
  return rows;
}

// Partial participation: round t's participants (sorted).
std::vector<ClientId> Cohort(Round t) {
  static const std::vector<std::vector<int>> kCohorts = {
      {0, 2}, {1, 2, 3}, {0, 1, 3}, {3}, {0, 1, 2, 3}, {1, 3}};
  std::vector<ClientId> out;
  for (int k : kCohorts[t % kCohorts.size()]) out.push_back(ClientId(k));
  return out;
}

class ScaffoldReferenceTest : public ::testing::TestWithParam<ScaffoldOption> {};

TEST_P(ScaffoldReferenceTest, MatchesHandRolledScaffoldWithPartialParticipation) {
  const ScaffoldOption option = GetParam();
  constexpr int kN = 4, kDim = 3, kRows = 10, kSteps = 5;
  constexpr double kLr = 0.05, kServerLr = 0.8;
  auto objective = LeastSquares(kDim);
  std::vector<Dataset> data;
  std::vector<Eigen::MatrixXd> a;
  std::vector<Eigen::VectorXd> b;
  for (int i = 0; i < kN; ++i) {
    data.push_back(RandomClient(i, kRows, kDim));
    const Eigen::MatrixXd x = data[i].features.cast<double>();
    a.push_back(x.transpose() * x / kRows);
    b.push_back(x.transpose() * data[i].labels / kRows);
  }

  ScaffoldOptions options;
  options.server_lr = kServerLr;
  options.local.batch_size = 0;
  options.local.max_steps = kSteps;
  options.local.lr = kLr;
  options.option = option;
  Scaffold scaffold(options, kN, kDim);
  FlatVector x = FlatVector::Constant(kDim, 0.5);
  std::vector<FlatVector> client_c(kN);  // the clients' own state

  // The reference, written from ALGORITHMS.md §6.1 with plain Eigen.
  Eigen::VectorXd ref_x = x, ref_c = Eigen::VectorXd::Zero(kDim);
  std::vector<Eigen::VectorXd> ref_ci(kN, Eigen::VectorXd::Zero(kDim));
  // The known bug: the server adds the new c_i instead of Delta c_i.
  Eigen::VectorXd buggy_c = ref_c;
  std::vector<Eigen::VectorXd> buggy_ci = ref_ci;

  for (Round t = 0; t < 30; ++t) {
    const std::vector<ClientId> cohort = Cohort(t);
    std::vector<ClientResult> results;
    for (const TaskSpec& task : scaffold.Plan(t, cohort)) {
      ASSERT_TRUE(task.scaffold.has_value());
      EXPECT_EQ(task.scaffold->option, option);
      const int k = static_cast<int>(task.client.value);
      RngStream rng(1, RngPurpose::kShuffle, k, t);
      auto out = RunScaffoldClient(*objective, data[k], AllRows(kRows), x,
                                   *task.scaffold->server_control, client_c[k],
                                   task.local, option, rng);
      ASSERT_TRUE(out.ok()) << out.status();
      ClientResult r;
      r.client = task.client;
      r.num_examples = kRows;
      r.update = out->local.update;
      r.control_delta = out->control_delta;
      results.push_back(std::move(r));
    }
    ASSERT_TRUE(scaffold.Aggregate(t, results, x).ok());

    Eigen::VectorXd sum_dy = Eigen::VectorXd::Zero(kDim);
    Eigen::VectorXd sum_dc = Eigen::VectorXd::Zero(kDim);
    Eigen::VectorXd sum_new_ci = Eigen::VectorXd::Zero(kDim);
    for (ClientId id : cohort) {
      const int i = static_cast<int>(id.value);
      Eigen::VectorXd y = ref_x;
      for (int s = 0; s < kSteps; ++s) {
        y -= kLr * (a[i] * y - b[i] - ref_ci[i] + ref_c);
      }
      const Eigen::VectorXd next =
          option == ScaffoldOption::kOptionI
              ? Eigen::VectorXd(a[i] * ref_x - b[i])
              : Eigen::VectorXd(ref_ci[i] - ref_c + (ref_x - y) / (kSteps * kLr));
      sum_dy += y - ref_x;
      sum_dc += next - ref_ci[i];
      ref_ci[i] = next;
      sum_new_ci += next;
      buggy_ci[i] = next;
    }
    ref_x += kServerLr / static_cast<double>(cohort.size()) * sum_dy;
    ref_c += sum_dc / kN;
    buggy_c += sum_new_ci / kN;

    const double scale = 1.0 + ref_x.norm();
    ASSERT_LT((x - ref_x).norm(), 1e-12 * scale) << "round " << t;
    ASSERT_LT((scaffold.control() - ref_c).norm(), 1e-12 * scale) << "round " << t;
    // c is the mean of the clients' c_i (kept on the clients) at every round.
    Eigen::VectorXd mean = Eigen::VectorXd::Zero(kDim);
    for (int i = 0; i < kN; ++i) {
      if (client_c[i].size() > 0) mean += client_c[i];
    }
    mean /= kN;
    EXPECT_LT((scaffold.control() - mean).norm(), 1e-12) << "round " << t;
  }
  // The bug breaks that invariant (so the check above can fail).
  Eigen::VectorXd buggy_mean = Eigen::VectorXd::Zero(kDim);
  for (int i = 0; i < kN; ++i) buggy_mean += buggy_ci[i];
  buggy_mean /= kN;
  EXPECT_GT((buggy_c - buggy_mean).norm(), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Options, ScaffoldReferenceTest,
                         ::testing::Values(ScaffoldOption::kOptionI,
                                           ScaffoldOption::kOptionII));

// ---- SCAFFOLD removes FedAvg's heterogeneity bias (§8.1) ------------------

// §8.1's quadratics as least squares on exactly representable rows (as in
// fedavg_exact_test.cc): (1/8) X_c^T X_c = A_c, (1/8) X_c^T y_c = b_c.
Dataset SectionEightClient(int c) {
  std::vector<std::array<float, 3>> rows;  // x1, x2, y
  if (c == 0) {
    rows = {{1, -1, 0}, {1, -1, 0}, {1, 0, 2}, {1, 0, 2},
            {0, 1, 0},  {0, 1, 0},  {0, 0, 0}, {0, 0, 0}};
  } else {
    rows = {{1, -1, 0}, {1, 0, 2}, {1, 0, 2}, {0, 1, 0},
            {0, 1, 0},  {0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
  }
  Dataset d;
  d.features.resize(8, 2);
  d.labels.resize(8);
  for (int i = 0; i < 8; ++i) {
    d.features(i, 0) = rows[i][0];
    d.features(i, 1) = rows[i][1];
    d.labels[i] = rows[i][2];
  }
  return d;
}

class ScaffoldQuadraticTest : public ::testing::TestWithParam<ScaffoldOption> {};

TEST_P(ScaffoldQuadraticTest, ConvergesToTheExactOptimumWhereFedAvgIsBiased) {
  auto objective = LeastSquares(2);
  const Dataset clients[2] = {SectionEightClient(0), SectionEightClient(1)};
  const std::vector<std::int64_t> rows = AllRows(8);
  const std::vector<ClientId> both = {ClientId(0), ClientId(1)};
  LocalTrainingSpec local;
  local.batch_size = 0;
  local.max_steps = 10;  // H = 10: FedAvg's bias is 4.276947e-3
  local.lr = 0.1;

  ScaffoldOptions so;
  so.local = local;
  so.option = GetParam();
  Scaffold scaffold(so, 2, 2);
  FedAvgOptions fo;
  fo.local = local;
  FedAvg fedavg(fo, {8, 8});
  FlatVector xs = test::Vec({2.4, 1.6}), xf = xs;
  std::vector<FlatVector> c_i(2);
  for (Round t = 0; t < 3000; ++t) {
    std::vector<ClientResult> rs, rf;
    for (const TaskSpec& task : scaffold.Plan(t, both)) {
      const int k = static_cast<int>(task.client.value);
      RngStream rng(1, RngPurpose::kShuffle, k, t);
      auto out = RunScaffoldClient(*objective, clients[k], rows, xs,
                                   *task.scaffold->server_control, c_i[k], task.local,
                                   task.scaffold->option, rng);
      ASSERT_TRUE(out.ok()) << out.status();
      ClientResult r;
      r.client = task.client;
      r.num_examples = 8;
      r.update = out->local.update;
      r.control_delta = out->control_delta;
      rs.push_back(std::move(r));
    }
    for (const TaskSpec& task : fedavg.Plan(t, both)) {
      const int k = static_cast<int>(task.client.value);
      RngStream rng(1, RngPurpose::kShuffle, k, t);
      auto out = RunLocalSgd(*objective, clients[k], rows, xf, task.local, rng);
      ASSERT_TRUE(out.ok());
      ClientResult r;
      r.client = task.client;
      r.num_examples = 8;
      r.update = out->update;
      rf.push_back(std::move(r));
    }
    ASSERT_TRUE(scaffold.Aggregate(t, rs, xs).ok());
    ASSERT_TRUE(fedavg.Aggregate(t, rf, xf).ok());
    ASSERT_LT((scaffold.control() - 0.5 * (c_i[0] + c_i[1])).norm(), 1e-12);
  }
  // theta* = (1.4, 0.6).
  EXPECT_NEAR(xs[0], 1.4, 1e-12);
  EXPECT_NEAR(xs[1], 0.6, 1e-12);
  EXPECT_NEAR(xf[0], 1.4 + 4.276947e-3, 1e-9);
  EXPECT_NEAR(xf[1], 0.6 - 4.276947e-3, 1e-9);
  // At the optimum the client control variates are the client gradients
  // grad F_c(theta*) = A_c theta* - b_c, §8.1's xi*_1 = (0.05, -0.05) and
  // xi*_2 = (-0.05, 0.05), and c = their mean, 0.
  EXPECT_NEAR(c_i[0][0], 0.05, 1e-12);
  EXPECT_NEAR(c_i[0][1], -0.05, 1e-12);
  EXPECT_NEAR(c_i[1][0], -0.05, 1e-12);
  EXPECT_NEAR(c_i[1][1], 0.05, 1e-12);
  EXPECT_LT(scaffold.control().norm(), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Options, ScaffoldQuadraticTest,
                         ::testing::Values(ScaffoldOption::kOptionI,
                                           ScaffoldOption::kOptionII));

// ---- Whole runs from configs --------------------------------------------

CoordinatorRun Prepare(const std::string& yaml, const std::string& name) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, ::testing::TempDir() + "/baselines_" + name, "embedded");
  EXPECT_TRUE(run.ok()) << run.status();
  return *std::move(run);
}

// Runs `yaml` embedded and returns its run directory.
std::string RunIt(const std::string& yaml, const std::string& name) {
  CoordinatorRun run = Prepare(yaml, name);
  absl::StatusOr<RunSummary> summary = RunEmbedded(run);
  EXPECT_TRUE(summary.ok()) << summary.status();
  return run.log->dir();
}

std::string Synthetic(const std::string& algorithm, double stragglers) {
  return absl::StrCat(R"(
seed: 4
rounds: 5
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 1, beta: 1}}
clients: {count: 20, straggler_fraction: )", stragglers, R"(}
participation: {client_fraction: 0.5}
local: {epochs: 3, batch_size: 10, lr: 0.01}
runtime: {threads: 2}
algorithm: )", algorithm, "\n");
}

TEST(BaselinesRunTest, FedProxWithMuZeroAndNoStragglersIsFedAvgBitForBit) {
  const std::string fedavg = RunIt(Synthetic("{name: fedavg}", 0), "avg");
  const std::string fedprox =
      RunIt(Synthetic("{name: fedprox, prox_mu: 0}", 0), "prox0");
  const std::string fedprox1 =
      RunIt(Synthetic("{name: fedprox, prox_mu: 1}", 0), "prox1");
  const std::vector<std::string> h = Column(fedavg, "model_hash");
  ASSERT_EQ(h.size(), 5u);
  EXPECT_EQ(h, Column(fedprox, "model_hash"));
  EXPECT_EQ(ReadFile(fedavg + "/model.bin"), ReadFile(fedprox + "/model.bin"));
  EXPECT_NE(h.back(), Column(fedprox1, "model_hash").back());
}

TEST(BaselinesRunTest, FedAvgMWithMomentumZeroIsFedAvgBitForBit) {
  const std::string fedavg = RunIt(Synthetic("{name: fedavg}", 0), "avg_m");
  const std::string fedavgm = RunIt(
      Synthetic("{name: fedavg, server_optimizer: {kind: momentum, momentum: 0}}", 0),
      "avgm0");
  const std::string heavy = RunIt(
      Synthetic("{name: fedavg, server_optimizer: {kind: momentum, momentum: 0.9}}", 0),
      "avgm9");
  EXPECT_EQ(Column(fedavg, "model_hash"), Column(fedavgm, "model_hash"));
  EXPECT_NE(Column(fedavg, "model_hash").back(), Column(heavy, "model_hash").back());
}

TEST(BaselinesRunTest, FedAvgDropsStragglersAndFedProxKeepsThem) {
  const std::string fedavg = RunIt(Synthetic("{name: fedavg}", 0.5), "avg_s");
  const std::string fedprox = RunIt(Synthetic("{name: fedprox}", 0.5), "prox_s");
  const std::string kept = RunIt(
      Synthetic("{name: fedavg, keep_stragglers: true}", 0.5), "avg_keep");
  // 10 participants a round, 5 of them stragglers.
  for (const std::string& p : Column(fedavg, "participants")) EXPECT_EQ(p, "5");
  for (const std::string& p : Column(fedprox, "participants")) EXPECT_EQ(p, "10");
  // FedProx with mu = 0 is FedAvg that keeps its stragglers.
  EXPECT_EQ(Column(fedprox, "model_hash"), Column(kept, "model_hash"));
  EXPECT_NE(Column(fedprox, "model_hash").back(), Column(fedavg, "model_hash").back());
}

std::string LeastSquaresYaml(const std::string& algorithm, double fraction,
                             int rounds) {
  return absl::StrCat(R"(
seed: 5
rounds: )", rounds, R"(
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 40, dim: 6, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: )", fraction, R"(}
local: {batch_size: 0, max_steps: 10, lr: 0.05}
eval: {every: 1000}
algorithm: )", algorithm, "\n");
}

// Full participation, full-batch local steps, equal n_k: SCAFFOLD reaches
// the pooled optimum, FedAvg stops at a biased point.
TEST(BaselinesRunTest, ScaffoldRunReachesTheOptimumFedAvgDoesNot) {
  for (const char* option : {"i", "ii"}) {
    CoordinatorRun run = Prepare(
        LeastSquaresYaml(absl::StrCat("{name: scaffold, scaffold_option: ", option, "}"),
                         1.0, 300),
        absl::StrCat("scaffold_", option));
    ASSERT_TRUE(RunEmbedded(run).ok());
    const FlatVector& opt = *run.experiment->data.optimum;
    EXPECT_LT((run.engine->model() - opt).norm(), 1e-10) << option;
    EXPECT_EQ(run.engine->name(), "SCAFFOLD");
  }
  CoordinatorRun fedavg = Prepare(LeastSquaresYaml("{name: fedavg}", 1.0, 300),
                                  "scaffold_vs_fedavg");
  ASSERT_TRUE(RunEmbedded(fedavg).ok());
  EXPECT_GT((fedavg.engine->model() - *fedavg.experiment->data.optimum).norm(), 1e-3);
}

// Partial participation (2 of 4 clients a round): still the exact optimum.
TEST(BaselinesRunTest, ScaffoldWithPartialParticipationReachesTheOptimum) {
  CoordinatorRun run = Prepare(LeastSquaresYaml("{name: scaffold}", 0.5, 600),
                               "scaffold_partial");
  ASSERT_TRUE(RunEmbedded(run).ok());
  EXPECT_LT((run.engine->model() - *run.experiment->data.optimum).norm(), 1e-9);
  // The server sends c and receives Delta c: twice FedAvg's bytes.
  const std::vector<std::string> up = Column(run.log->dir(), "bytes_up");
  const std::vector<std::string> down = Column(run.log->dir(), "bytes_down");
  EXPECT_EQ(up.front(), absl::StrCat(2 * 2 * 6 * 8));
  EXPECT_EQ(down.front(), absl::StrCat(2 * 2 * 6 * 8));
}

// The FedProx paper's headline claim (Li et al. 2020, Fig. 1): on
// synthetic(1, 1) with 90% stragglers, FedProx with mu = 1 (keeping the
// stragglers' partial work) beats FedAvg (dropping them). FedProx's setup
// (30 devices, 10 a round, E = 20, B = 10, lr 0.01), 50 rounds, seeds 1-3
// (each seed also draws its own data). Measured: FedAvg 0.325 / 0.661 /
// 0.570, FedProx 0.719 / 0.744 / 0.727 (docs/experiments/baselines.md).
TEST(FedProxPaperTest, BeatsFedAvgOnSyntheticOneOneWithNinetyPercentStragglers) {
  double gap = 0.0;
  for (int seed = 1; seed <= 3; ++seed) {
    double accuracy[2];
    for (int prox = 0; prox < 2; ++prox) {
      const std::string yaml = absl::StrCat(R"(
seed: )", seed, R"(
rounds: 50
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 1, beta: 1}}
clients: {count: 30, partition: natural, straggler_fraction: 0.9}
participation: {client_fraction: 0.3333333333333333}
local: {epochs: 20, batch_size: 10, lr: 0.01}
eval: {every: 1000, train_loss: false}
runtime: {threads: 2}
algorithm: )", prox ? "{name: fedprox, prox_mu: 1}" : "{name: fedavg}", "\n");
      const std::string dir =
          RunIt(yaml, absl::StrCat("paper_", prox ? "fedprox" : "fedavg", seed));
      const std::vector<std::string> acc = Column(dir, "test_accuracy");
      ASSERT_EQ(acc.size(), 50u);
      accuracy[prox] = std::stod(acc.back());
    }
    EXPECT_GT(accuracy[1], accuracy[0] + 0.03) << "seed " << seed;
    gap += (accuracy[1] - accuracy[0]) / 3;
  }
  EXPECT_GT(gap, 0.1);
}

}  // namespace
}  // namespace baselines_test
}  // namespace fedsim
