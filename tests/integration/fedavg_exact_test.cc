// FedAvg against closed forms (ALGORITHMS.md §1, §8.1).
#include <memory>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "client/trainer/local_trainer.h"
#include "common/config/config.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"
#include "server/strategy/fedavg.h"
#include "tests/testing/vectors.h"

namespace fedsim {
namespace fedavg_exact_test {
namespace {

CoordinatorRun Prepare(const std::string& yaml, const std::string& name) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, ::testing::TempDir() + "/" + name, "embedded");
  EXPECT_TRUE(run.ok()) << run.status();
  return *std::move(run);
}

std::string LeastSquaresConfig(int rounds) {
  return absl::StrCat(R"(
seed: 5
rounds: )", rounds, R"(
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 40, dim: 6, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
algorithm: {name: fedavg, server_lr: 1}
local: {epochs: 1, batch_size: 0, lr: 0.2}
runtime: {threads: 2}
)");
}

// Full participation, E = 1, B = all, equal n_k: each round is one step of
// gradient descent on the pooled data.
TEST(FedAvgExactTest, EqualsCentralisedGradientDescentOnPooledData) {
  CoordinatorRun run = Prepare(LeastSquaresConfig(25), "fedavg_gd");
  const FederatedData& data = run.experiment->data;
  for (const auto& rows : data.client_rows) ASSERT_EQ(rows.size(), 40u);

  const Eigen::MatrixXd x = data.train.features.cast<double>();
  const Eigen::VectorXd& y = data.train.labels;
  const double n = static_cast<double>(x.rows());
  Eigen::VectorXd w = Eigen::VectorXd::Zero(x.cols());
  for (int t = 0; t < 25; ++t) w -= 0.2 * x.transpose() * (x * w - y) / n;

  ASSERT_TRUE(RunEmbedded(run).ok());
  const FlatVector& fedavg = run.engine->model();
  EXPECT_LT((fedavg - w).cwiseAbs().maxCoeff(), 1e-10 * (1 + w.norm()))
      << "fedavg " << fedavg.transpose() << "\nGD     " << w.transpose();
}

TEST(FedAvgExactTest, ConvergesToTheClosedFormOptimum) {
  CoordinatorRun run = Prepare(LeastSquaresConfig(400), "fedavg_opt");
  const FederatedData& data = run.experiment->data;
  const Eigen::MatrixXd x = data.train.features.cast<double>();
  const Eigen::VectorXd opt =
      (x.transpose() * x).ldlt().solve(x.transpose() * data.train.labels);
  ASSERT_TRUE(data.optimum.has_value());
  EXPECT_LT((*data.optimum - opt).norm(), 1e-10);
  ASSERT_TRUE(RunEmbedded(run).ok());
  EXPECT_LT((run.engine->model() - opt).norm(), 1e-10);
}

// §8.1's two heterogeneous quadratics f_c = 1/2 w^T A_c w - b_c^T w, written
// as least squares on exactly representable rows: (1/8) X_c^T X_c = A_c,
// (1/8) X_c^T y_c = b_c, 8 rows each.
Dataset QuadraticClient(int c) {
  std::vector<std::array<float, 3>> rows;  // x1, x2, y
  if (c == 0) {  // A_1 = [[2, -1], [-1, 2]] / 4
    rows = {{1, -1, 0}, {1, -1, 0}, {1, 0, 2}, {1, 0, 2},
            {0, 1, 0},  {0, 1, 0},  {0, 0, 0}, {0, 0, 0}};
  } else {  // A_2 = [[3, -1], [-1, 3]] / 8
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

struct TableRow {
  int h;
  double beta;  // first component of the limit minus theta* (§8.1 table)
};

class FedAvgQuadraticTest : public ::testing::TestWithParam<TableRow> {};

TEST_P(FedAvgQuadraticTest, LocalStepsConvergeToTheBiasedLimit) {
  const TableRow row = GetParam();
  absl::StatusOr<std::unique_ptr<Objective>> ls =
      MakeObjective({ObjectiveKind::kLeastSquares, 2, 0, 0, 0.0});
  ASSERT_TRUE(ls.ok());
  const Dataset clients[2] = {QuadraticClient(0), QuadraticClient(1)};
  const std::vector<std::int64_t> all_rows = {0, 1, 2, 3, 4, 5, 6, 7};
  // Check the construction against §8.1's matrices.
  FlatVector g;
  Batch batch;
  GatherBatch(clients[0], all_rows, batch);
  (*ls)->Evaluate(test::Vec({0, 0}), batch, &g);
  EXPECT_EQ(g, test::Vec({-0.5, 0}));  // -b_1

  FedAvgOptions options;
  options.local.epochs = row.h;  // B = 0: H full-batch steps
  options.local.batch_size = 0;
  options.local.lr = 0.1;
  FedAvg fedavg(options, {8, 8});
  FlatVector w = test::Vec({2.4, 1.6});
  const std::vector<ClientId> both = {ClientId(0), ClientId(1)};
  for (Round t = 0; t < 3000; ++t) {
    std::vector<ClientResult> results;
    for (const TaskSpec& spec : fedavg.Plan(t, both)) {
      RngStream rng(1, RngPurpose::kShuffle, spec.client.value, t);
      absl::StatusOr<LocalTrainingOutput> out = RunLocalSgd(
          **ls, clients[spec.client.value], all_rows, w, spec.local, rng);
      ASSERT_TRUE(out.ok()) << out.status();
      ClientResult r;
      r.client = spec.client;
      r.num_examples = 8;
      r.update = out->update;
      results.push_back(std::move(r));
    }
    ASSERT_TRUE(fedavg.Aggregate(t, results, w).ok());
  }
  EXPECT_NEAR(w[0], 1.4 + row.beta, 1e-9);
  EXPECT_NEAR(w[1], 0.6 - row.beta, 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Section81, FedAvgQuadraticTest,
                         ::testing::Values(TableRow{1, 0.0},
                                           TableRow{2, 5.167959e-4},
                                           TableRow{10, 4.276947e-3}));

}  // namespace
}  // namespace fedavg_exact_test
}  // namespace fedsim
