// Tests of FedProx's proximal term in client/trainer/local_trainer and of
// SCAFFOLD's client (client/trainer/scaffold_trainer) against closed forms
// on least squares, where full-batch local steps are linear maps.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "Eigen/Dense"
#include "client/trainer/local_trainer.h"
#include "client/trainer/scaffold_trainer.h"
#include "common/base/task.h"
#include "common/data/dataset.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "tests/testing/datasets.h"

namespace fedsim {
namespace fedprox_scaffold_trainer_test {
namespace {

constexpr std::int64_t kDim = 3;
constexpr std::int64_t kRows = 12;

bool SameBits(const FlatVector& a, const FlatVector& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

Dataset MakeData() {
  RngStream rng(5, RngPurpose::kTest, -1, -1);
  return test::GaussianRows(kRows, kDim, 0, rng);
}

std::unique_ptr<Objective> LeastSquares() {
  ObjectiveSpec spec;
  spec.kind = ObjectiveKind::kLeastSquares;
  spec.num_features = kDim;
  auto objective = MakeObjective(spec);
  EXPECT_TRUE(objective.ok()) << objective.status();
  return *std::move(objective);
}

std::vector<std::int64_t> AllRows() {
  std::vector<std::int64_t> rows(kRows);
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

// F(w) = (1/2n) ||X w - y||^2: gradient A w - b with A = X^T X / n,
// b = X^T y / n (the least-squares objective's convention, checked below).
struct Quadratic {
  Eigen::MatrixXd a;
  Eigen::VectorXd b;
};

Quadratic Of(const Dataset& data) {
  const Eigen::MatrixXd x = data.features.cast<double>();
  const double n = static_cast<double>(x.rows());
  return {x.transpose() * x / n, x.transpose() * data.labels / n};
}

FlatVector Start() {
  FlatVector w(kDim);
  w << 0.5, -1.0, 0.25;
  return w;
}

TEST(FedProxTrainerTest, ObjectiveConventionIsHalfMeanSquaredError) {
  const Dataset data = MakeData();
  const Quadratic q = Of(data);
  Batch batch;
  GatherBatch(data, AllRows(), batch);
  FlatVector g;
  LeastSquares()->Evaluate(Start(), batch, &g);
  EXPECT_LT((g - (q.a * Start() - q.b)).norm(), 1e-12);
}

TEST(FedProxTrainerTest, MuZeroIsPlainLocalSgdBitForBit) {
  const Dataset data = MakeData();
  auto objective = LeastSquares();
  LocalTrainingSpec spec;
  spec.epochs = 3;
  spec.batch_size = 5;
  spec.lr = 0.1;
  LocalTrainingSpec prox = spec;
  prox.prox_mu = 0.0;
  RngStream r1(1, RngPurpose::kShuffle, 0, 0), r2(1, RngPurpose::kShuffle, 0, 0);
  auto a = RunLocalSgd(*objective, data, AllRows(), Start(), spec, r1);
  auto b = RunLocalSgd(*objective, data, AllRows(), Start(), prox, r2);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameBits(a->update, b->update));
  // A positive mu changes the trajectory.
  prox.prox_mu = 0.5;
  RngStream r3(1, RngPurpose::kShuffle, 0, 0);
  auto c = RunLocalSgd(*objective, data, AllRows(), Start(), prox, r3);
  ASSERT_TRUE(c.ok());
  EXPECT_GT((c->update - a->update).norm(), 1e-3);
}

// Full-batch local GD on F(w) + (mu/2)||w - w0||^2 is the linear map
//   w_{k+1} - w* = (I - lr H)(w_k - w*),  H = A + mu I,
//   w* = H^{-1} (b + mu w0)   (the local proximal solution),
// so after K steps w_K = w* + (I - lr H)^K (w0 - w*).
TEST(FedProxTrainerTest, FullBatchStepsMatchTheClosedForm) {
  const Dataset data = MakeData();
  const Quadratic q = Of(data);
  auto objective = LeastSquares();
  for (double mu : {0.1, 1.0, 3.0}) {
    const Eigen::MatrixXd h = q.a + mu * Eigen::MatrixXd::Identity(kDim, kDim);
    const Eigen::VectorXd w_star = h.ldlt().solve(q.b + mu * Start());
    for (std::int64_t k : {1, 7, 40}) {
      LocalTrainingSpec spec;
      spec.batch_size = 0;
      spec.max_steps = k;
      spec.lr = 0.2;
      spec.prox_mu = mu;
      RngStream rng(1, RngPurpose::kShuffle, 0, 0);
      auto out = RunLocalSgd(*objective, data, AllRows(), Start(), spec, rng);
      ASSERT_TRUE(out.ok()) << out.status();
      Eigen::MatrixXd m = Eigen::MatrixXd::Identity(kDim, kDim);
      const Eigen::MatrixXd step = Eigen::MatrixXd::Identity(kDim, kDim) - 0.2 * h;
      for (std::int64_t i = 0; i < k; ++i) m = step * m;
      const Eigen::VectorXd expected = w_star + m * (Start() - w_star);
      EXPECT_LT((Start() + out->update - expected).norm(), 1e-12)
          << "mu " << mu << " K " << k;
    }
    // Many steps: the local solution itself, which is pulled towards w0
    // (closer to w0 than the unregularised optimum A^{-1} b).
    LocalTrainingSpec spec;
    spec.batch_size = 0;
    spec.max_steps = 3000;
    spec.lr = 0.2;
    spec.prox_mu = mu;
    RngStream rng(1, RngPurpose::kShuffle, 0, 0);
    auto out = RunLocalSgd(*objective, data, AllRows(), Start(), spec, rng);
    ASSERT_TRUE(out.ok());
    EXPECT_LT((Start() + out->update - w_star).norm(), 1e-12) << "mu " << mu;
    const Eigen::VectorXd unregularised = q.a.ldlt().solve(q.b);
    EXPECT_LT((w_star - Start()).norm(), (unregularised - Start()).norm());
  }
}

TEST(FedProxTrainerTest, NegativeMuIsRejected) {
  const Dataset data = MakeData();
  LocalTrainingSpec spec;
  spec.prox_mu = -1.0;
  RngStream rng(1, RngPurpose::kShuffle, 0, 0);
  auto out = RunLocalSgd(*LeastSquares(), data, AllRows(), Start(), spec, rng);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
}

// SCAFFOLD's client: K full-batch steps of y <- y - lr (A y - b + c - c_i),
// option I and II control variates, Delta c = c_i+ - c_i.
TEST(ScaffoldTrainerTest, OneRoundMatchesAHandRolledClient) {
  const Dataset data = MakeData();
  const Quadratic q = Of(data);
  auto objective = LeastSquares();
  FlatVector c(kDim), c_i0(kDim);
  c << 0.3, -0.2, 0.1;
  c_i0 << -0.1, 0.4, 0.05;
  const FlatVector x = Start();
  const double lr = 0.15;
  const std::int64_t k = 6;
  Eigen::VectorXd y = x;
  for (std::int64_t s = 0; s < k; ++s) y -= lr * (q.a * y - q.b + c - c_i0);
  for (ScaffoldOption option : {ScaffoldOption::kOptionI, ScaffoldOption::kOptionII}) {
    LocalTrainingSpec spec;
    spec.batch_size = 0;
    spec.max_steps = k;
    spec.lr = lr;
    FlatVector c_i = c_i0;
    RngStream rng(1, RngPurpose::kShuffle, 0, 0);
    auto out = RunScaffoldClient(*objective, data, AllRows(), x, c, c_i, spec,
                                 option, rng);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->local.num_steps, k);
    EXPECT_LT((out->local.update - (y - x)).norm(), 1e-13);
    const Eigen::VectorXd expected_ci =
        option == ScaffoldOption::kOptionI
            ? Eigen::VectorXd(q.a * x - q.b)
            : Eigen::VectorXd(c_i0 - c + (x - y) / (k * lr));
    EXPECT_LT((c_i - expected_ci).norm(), 1e-12);
    EXPECT_LT((out->control_delta - (expected_ci - c_i0)).norm(), 1e-12);
  }
}

TEST(ScaffoldTrainerTest, EmptyClientControlStartsAtZero) {
  const Dataset data = MakeData();
  auto objective = LeastSquares();
  LocalTrainingSpec spec;
  spec.batch_size = 4;
  spec.epochs = 2;
  spec.lr = 0.1;
  const FlatVector zero = FlatVector::Zero(kDim);
  FlatVector c_i;  // never set: c_i = 0
  RngStream r1(1, RngPurpose::kShuffle, 2, 3), r2(1, RngPurpose::kShuffle, 2, 3);
  auto out = RunScaffoldClient(*objective, data, AllRows(), Start(), zero, c_i,
                               spec, ScaffoldOption::kOptionII, r1);
  ASSERT_TRUE(out.ok());
  // c = c_i = 0: the local steps are plain SGD, bit for bit.
  auto plain = RunLocalSgd(*objective, data, AllRows(), Start(), spec, r2);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(SameBits(out->local.update, plain->update));
  EXPECT_EQ(out->local.num_steps, 6);  // 2 epochs of ceil(12 / 4)
  EXPECT_LT((c_i + plain->update / (6 * 0.1)).norm(), 1e-15);
  EXPECT_TRUE(SameBits(out->control_delta, c_i));
}

}  // namespace
}  // namespace fedprox_scaffold_trainer_test
}  // namespace fedsim
