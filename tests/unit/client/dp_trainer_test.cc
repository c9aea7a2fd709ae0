// Tests of client/trainer/dp_trainer (ALGORITHMS.md §5.1-5.2, §8.5):
// DP-SGD with zero noise and no clipping is plain SGD bit for bit; the
// noise added is exactly the spec's (DP-SGD z C / L, DiceSGD
// z C1 sqrt(1 + 2 C2/C1) / L, replayed from the kDpNoise stream), has the
// right mean and variance, and is fresh at every step and for every client;
// one DiceSGD step against a hand computation of the buffer rule; and the
// clipping bias on a §5.2 least-squares problem: DiceSGD (no noise, small
// C1) reaches the exact optimum while clipped DP-SGD stops away from it.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "Eigen/Dense"
#include "absl/status/status.h"
#include "client/trainer/dp_trainer.h"
#include "client/trainer/local_trainer.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/dp/mechanisms.h"
#include "common/nn/network.h"
#include "common/objectives/network_objective.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/datasets.h"

namespace fedsim {
namespace dp_trainer_test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool SameBits(const FlatVector& a, const FlatVector& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

std::unique_ptr<Objective> MakeLeastSquares(std::int64_t d) {
  ObjectiveSpec spec;
  spec.kind = ObjectiveKind::kLeastSquares;
  spec.num_features = d;
  auto objective = MakeObjective(spec);
  EXPECT_TRUE(objective.ok()) << objective.status();
  return *std::move(objective);
}

std::unique_ptr<Objective> MakeSoftmax(std::int64_t d, int classes) {
  ObjectiveSpec spec;
  spec.kind = ObjectiveKind::kSoftmax;
  spec.num_features = d;
  spec.num_classes = classes;
  auto objective = MakeObjective(spec);
  EXPECT_TRUE(objective.ok()) << objective.status();
  return *std::move(objective);
}

std::vector<std::int64_t> AllRows(std::int64_t n) {
  std::vector<std::int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

// A classification data set with N(0, 1) features.
Dataset Classification(std::int64_t n, std::int64_t d, int classes) {
  RngStream rng(21, RngPurpose::kTest, -1, -1);
  return test::GaussianRows(n, d, classes, rng);
}

// All-zero features and labels: every per-example least-squares gradient is
// exactly 0, so the update is the noise alone.
Dataset ZeroData(std::int64_t n, std::int64_t d) {
  Dataset data;
  data.features = decltype(data.features)::Zero(n, d);
  data.labels = Eigen::VectorXd::Zero(n);
  return data;
}

struct Streams {
  RngStream sampling, noise;
  Streams(std::uint64_t seed, std::int64_t client, std::int64_t round)
      : sampling(seed, RngPurpose::kDpSampling, client, round),
        noise(seed, RngPurpose::kDpNoise, client, round) {}
};

LocalTrainingOutput Train(const Objective& objective, const Dataset& data,
                          const FlatVector& start, const LocalTrainingSpec& spec,
                          const DpSpec& dp, Streams streams,
                          FlatVector* error = nullptr) {
  const std::vector<std::int64_t> rows = AllRows(data.size());
  absl::StatusOr<LocalTrainingOutput> out =
      RunLocalDpSgd(objective, data, rows, start, spec, dp, streams.sampling,
                    streams.noise, error);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *std::move(out) : LocalTrainingOutput{};
}

TEST(DpTrainerTest, ZeroNoiseAndNoClippingIsPlainSgdBitForBit) {
  // q = 1 (batch_size 0): every step takes all rows in their order, the
  // gradient is the objective's own mean scaled by |lot| / L = 1 exactly,
  // and z = 0 adds nothing.
  const Dataset data = Classification(50, 6, 3);
  const auto objective = MakeSoftmax(6, 3);
  FlatVector start(objective->NumParameters());
  RngStream init(2, RngPurpose::kTest, -1, -1);
  for (Eigen::Index i = 0; i < start.size(); ++i) start[i] = 0.1 * init.Gaussian();
  LocalTrainingSpec spec;
  spec.epochs = 7;
  spec.batch_size = 0;
  spec.lr = 0.3;
  const std::vector<std::int64_t> rows = AllRows(data.size());
  RngStream shuffle(4, RngPurpose::kShuffle, 0, 0);
  absl::StatusOr<LocalTrainingOutput> plain =
      RunLocalSgd(*objective, data, rows, start, spec, shuffle);
  ASSERT_TRUE(plain.ok()) << plain.status();
  DpSpec dp;
  dp.mode = DpMode::kClip;
  dp.clip = kInf;
  dp.noise_multiplier = 0.0;
  const LocalTrainingOutput dp_out = Train(*objective, data, start, spec, dp, {4, 0, 0});
  EXPECT_TRUE(SameBits(dp_out.update, plain->update));
  EXPECT_EQ(dp_out.num_steps, plain->num_steps);
  EXPECT_EQ(dp_out.mean_loss, plain->mean_loss);
  EXPECT_GT(dp_out.update.norm(), 1e-3);  // training did move

  // A finite clip above every per-example norm takes the per-example path:
  // the same update up to summation order.
  dp.clip = 1e6;
  const LocalTrainingOutput per_example =
      Train(*objective, data, start, spec, dp, {4, 0, 0});
  EXPECT_LE((per_example.update - plain->update).norm(),
            1e-12 * plain->update.norm());
}

// Replays the kDpNoise stream: the update of `steps` steps on zero
// gradients, with noise of std `std_on_mean` on the mean-scale gradient.
FlatVector ReplayNoiseOnly(std::uint64_t seed, std::int64_t client,
                           std::int64_t round, std::int64_t d,
                           std::int64_t steps, double lr, double std_on_mean) {
  RngStream noise(seed, RngPurpose::kDpNoise, client, round);
  FlatVector w = FlatVector::Zero(d);
  std::vector<double> z(static_cast<std::size_t>(d));
  for (std::int64_t t = 0; t < steps; ++t) {
    FlatVector v = FlatVector::Zero(d);
    noise.FillGaussian(z);  // d fresh ziggurat normals per step
    for (std::int64_t i = 0; i < d; ++i) v[i] += std_on_mean * z[i];
    w += -lr * v;
  }
  return w;
}

TEST(DpTrainerTest, NoiseIsExactlyTheSpecsAndFreshEveryStep) {
  const std::int64_t n = 40, d = 25;
  const Dataset data = ZeroData(n, d);
  const auto objective = MakeLeastSquares(d);
  const FlatVector start = FlatVector::Zero(d);
  LocalTrainingSpec spec;
  spec.batch_size = 10;  // L = 10, q = 1/4
  spec.lr = 0.5;
  spec.max_steps = 3;
  const double lot = 10.0;
  DpSpec dp;
  dp.clip = 0.7;
  dp.error_clip = 2.1;
  dp.noise_multiplier = 1.3;

  dp.mode = DpMode::kClip;
  const LocalTrainingOutput clip = Train(*objective, data, start, spec, dp, {8, 3, 5});
  // DP-SGD: std z C on the sum, z C / L on the mean.
  EXPECT_TRUE(SameBits(clip.update,
                       ReplayNoiseOnly(8, 3, 5, d, 3, 0.5, 1.3 * 0.7 / lot)));

  dp.mode = DpMode::kDiceSgd;
  FlatVector error;
  const LocalTrainingOutput dice =
      Train(*objective, data, start, spec, dp, {8, 3, 5}, &error);
  // DiceSGD: z C1 sqrt(1 + 2 C2/C1) on the sum (here sqrt(7)).
  EXPECT_TRUE(SameBits(
      dice.update,
      ReplayNoiseOnly(8, 3, 5, d, 3, 0.5,
                      1.3 * 0.7 * std::sqrt(1.0 + 2.0 * 2.1 / 0.7) / lot)));
  EXPECT_EQ(error, FlatVector::Zero(d));  // nothing was clipped away

  // Reusing one step's noise at every step would not match the replay.
  RngStream reuse(8, RngPurpose::kDpNoise, 3, 5);
  std::vector<double> z(static_cast<std::size_t>(d));
  reuse.FillGaussian(z);
  FlatVector once(d);
  for (std::int64_t i = 0; i < d; ++i) once[i] = 1.3 * 0.7 / lot * z[i];
  EXPECT_GT((clip.update - (-0.5 * 3.0) * once).norm(), 1e-3);
}

TEST(DpTrainerTest, NoiseHasTheRightMeanAndVarianceAndIsFreshPerClient) {
  // One step on zero gradients: update = -lr * noise / L. 100 clients of
  // 1,000 coordinates give 1e5 draws of the summed-gradient noise.
  const std::int64_t n = 8, d = 1000, clients = 100;
  const Dataset data = ZeroData(n, d);
  const auto objective = MakeLeastSquares(d);
  const FlatVector start = FlatVector::Zero(d);
  LocalTrainingSpec spec;
  spec.batch_size = 4;  // L = 4
  spec.lr = 0.25;
  spec.max_steps = 1;
  for (const DpMode mode : {DpMode::kClip, DpMode::kDiceSgd}) {
    DpSpec dp;
    dp.mode = mode;
    dp.clip = 0.5;
    dp.error_clip = 1.5;
    dp.noise_multiplier = 2.0;
    // Spec: z C = 1 (DP-SGD); z C1 sqrt(1 + 2 C2/C1) = sqrt(7) (DiceSGD).
    const double sigma = mode == DpMode::kClip ? 1.0 : std::sqrt(7.0);
    std::vector<double> draws;
    std::vector<FlatVector> per_client;
    for (std::int64_t k = 0; k < clients; ++k) {
      FlatVector error;
      const LocalTrainingOutput out =
          Train(*objective, data, start, spec, dp, {11, k, 0}, &error);
      const FlatVector summed_noise = out.update * (-4.0 / 0.25);
      draws.insert(draws.end(), summed_noise.data(), summed_noise.data() + d);
      per_client.push_back(summed_noise);
    }
    const double count = static_cast<double>(draws.size());
    const double mean = std::accumulate(draws.begin(), draws.end(), 0.0) / count;
    double ss = 0.0;
    for (double x : draws) ss += (x - mean) * (x - mean);
    const double std = std::sqrt(ss / (count - 1));
    EXPECT_LT(std::abs(mean), 4.0 * sigma / std::sqrt(count));
    // Standard error of the std is 0.22%: a 6% error in sigma fails.
    EXPECT_LT(std::abs(std / sigma - 1.0), 0.01) << std << " vs " << sigma;
    // Fresh per client: noise vectors of different clients are uncorrelated
    // (|corr| < 5 / sqrt(d)), never equal.
    for (std::int64_t k = 1; k < clients; ++k) {
      const double corr = per_client[0].dot(per_client[k]) /
                          (per_client[0].norm() * per_client[k].norm());
      EXPECT_LT(std::abs(corr), 5.0 / std::sqrt(static_cast<double>(d))) << k;
    }
  }
  // Fresh per round, too.
  DpSpec dp;
  dp.mode = DpMode::kClip;
  const LocalTrainingOutput r0 = Train(*objective, data, start, spec, dp, {11, 0, 0});
  const LocalTrainingOutput r1 = Train(*objective, data, start, spec, dp, {11, 0, 1});
  EXPECT_GT((r0.update - r1.update).norm(), 0.1 * r0.update.norm());
}

TEST(DpTrainerTest, OneDiceSgdStepFollowsThePapersBufferRule) {
  // Two examples, d = 2, full batch (L = 2), no noise, a non-zero buffer.
  // Per-example gradient of (1/2)(x.w - y)^2 at w = 0 is -y x.
  Dataset data;
  data.features.resize(2, 2);
  data.features << 1.0f, 0.0f, 0.0f, 1.0f;
  data.labels.resize(2);
  data.labels << -3.0, 0.5;  // g_1 = (3, 0), g_2 = (0, -0.5)
  const auto objective = MakeLeastSquares(2);
  LocalTrainingSpec spec;
  spec.batch_size = 0;
  spec.lr = 0.1;
  spec.max_steps = 1;
  DpSpec dp;
  dp.mode = DpMode::kDiceSgd;
  dp.clip = 1.0;        // g_1 clipped to (1, 0); g_2 kept
  dp.error_clip = 0.5;  // e = (0, 2) clipped to (0, 0.5)
  dp.noise_multiplier = 0.0;
  FlatVector error(2);
  error << 0.0, 2.0;
  const LocalTrainingOutput out =
      Train(*objective, data, FlatVector::Zero(2), spec, dp, {1, 0, 0}, &error);
  // v = mean(clip(g)) + clip(e, C2) = (0.5, -0.25) + (0, 0.5) = (0.5, 0.25)
  FlatVector expected_update(2);
  expected_update << -0.05, -0.025;
  EXPECT_LE((out.update - expected_update).norm(), 1e-15);
  // e <- e - clip(e, C2) + mean(g - clip(g)) = (0, 1.5) + (1, 0)
  FlatVector expected_error(2);
  expected_error << 1.0, 1.5;
  EXPECT_LE((error - expected_error).norm(), 1e-15);
}

// The synthetic least squares of §5.2 (DiceSGD/dataset.py, scaled down):
// X ~ N(0, I), y = X w + b + noise, noise = 0.1 N(0,1) + 0.1 UniformInt{1..9}
// (non-zero mean); the intercept is a constant feature column of ones.
struct LeastSquaresProblem {
  Dataset data;
  FlatVector optimum;
};

LeastSquaresProblem MakeProblem(std::int64_t n, std::int64_t d) {
  RngStream rng(31, RngPurpose::kTest, -1, -1);
  FlatVector w(d);
  for (std::int64_t j = 0; j < d; ++j) w[j] = rng.Gaussian();
  const double b = rng.Gaussian();
  LeastSquaresProblem p;
  p.data.features.resize(n, d + 1);
  p.data.labels.resize(n);
  for (std::int64_t i = 0; i < n; ++i) {
    double dot = 0.0;
    for (std::int64_t j = 0; j < d; ++j) {
      const float x = static_cast<float>(rng.Gaussian());
      p.data.features(i, j) = x;
      dot += static_cast<double>(x) * w[j];
    }
    p.data.features(i, d) = 1.0f;
    const double noise =
        0.1 * rng.Gaussian() + 0.1 * static_cast<double>(1 + rng.UniformInt(9));
    p.data.labels[i] = dot + b + noise;
  }
  const Eigen::MatrixXd x = p.data.features.cast<double>();
  p.optimum = (x.transpose() * x).ldlt().solve(x.transpose() * p.data.labels);
  return p;
}

TEST(DpTrainerTest, DiceSgdRemovesTheClippingBias) {
  const std::int64_t n = 200, d = 10;
  const LeastSquaresProblem p = MakeProblem(n, d);
  const auto objective = MakeLeastSquares(d + 1);
  // Per-example gradient norms at the optimum are residual * ||x_i||, about
  // 0.1-1: C1 = 0.05 clips nearly all of them, all the way down.
  LocalTrainingSpec spec;
  spec.batch_size = 0;  // full batch (q = 1): deterministic
  spec.lr = 0.5;
  spec.max_steps = 20000;
  DpSpec dp;
  dp.clip = 0.05;
  dp.error_clip = 0.05;
  dp.noise_multiplier = 0.0;
  const FlatVector start = FlatVector::Zero(d + 1);
  const double scale = p.optimum.norm();

  dp.mode = DpMode::kDiceSgd;
  FlatVector error;
  const LocalTrainingOutput dice =
      Train(*objective, p.data, start, spec, dp, {1, 0, 0}, &error);
  const double dice_error = (dice.update - p.optimum).norm() / scale;
  EXPECT_LE(dice_error, 1e-6);

  dp.mode = DpMode::kClip;
  const LocalTrainingOutput clip = Train(*objective, p.data, start, spec, dp, {1, 0, 0});
  const double clip_error = (clip.update - p.optimum).norm() / scale;
  EXPECT_GT(clip_error, 1e-2);
  // Clipped DP-SGD did converge, to the wrong point: its own fixed point,
  // where the mean clipped per-example gradient vanishes.
  const LocalTrainingOutput more =
      Train(*objective, p.data, clip.update, spec, dp, {1, 0, 0});
  EXPECT_LE(more.update.norm(), 1e-3 * scale);
  std::printf("relative distance to the optimum: DiceSGD %.3e, clipped DP-SGD %.3e\n",
              dice_error, clip_error);
}

// The ghost clipping tests' setting: 3 epochs of lots of 8, most examples
// clipped (C = 0.3), noise on.
LocalTrainingSpec GhostTestSpec() {
  LocalTrainingSpec spec;
  spec.batch_size = 8;
  spec.lr = 0.5;
  spec.epochs = 3;
  return spec;
}

DpSpec GhostTestDp(DpMode mode) {
  DpSpec dp;
  dp.mode = mode;
  dp.clip = 0.3;
  dp.error_clip = 0.2;
  dp.noise_multiplier = 0.5;
  return dp;
}

// Trains `materialised` with per-example gradients and `ghost` with ghost
// clipping from the same start, lots and noise draws, under DP-SGD and
// DiceSGD, and expects the updates, losses and DiceSGD error buffers to
// agree to `tol` relative.
// The linear tests' data and start: 60 rows of 5 features, 3 classes,
// softmax regression from zero (18 parameters).
void ExpectGhostMatchesMaterialised(const Objective& materialised, const Objective& ghost,
                                    double tol, const Dataset& data = Classification(60, 5, 3),
                                    const FlatVector& start = FlatVector::Zero(18)) {
  const LocalTrainingSpec spec = GhostTestSpec();
  const Eigen::Index d = start.size();
  for (const DpMode mode : {DpMode::kClip, DpMode::kDiceSgd}) {
    SCOPED_TRACE(mode == DpMode::kClip ? "clip" : "dicesgd");
    DpSpec dp = GhostTestDp(mode);
    FlatVector error_a, error_b;
    const LocalTrainingOutput a =
        Train(materialised, data, start, spec, dp, {4, 2, 1}, &error_a);
    dp.ghost_clipping = true;
    const LocalTrainingOutput b = Train(ghost, data, start, spec, dp, {4, 2, 1}, &error_b);
    ASSERT_EQ(a.update.size(), d);
    ASSERT_EQ(b.update.size(), d);
    EXPECT_EQ(a.num_steps, b.num_steps);
    EXPECT_GT(a.update.norm(), 0.1);
    EXPECT_LE((a.update - b.update).cwiseAbs().maxCoeff(), tol * a.update.norm());
    EXPECT_NEAR(a.mean_loss, b.mean_loss, tol * std::abs(a.mean_loss));
    if (mode == DpMode::kDiceSgd) {
      ASSERT_EQ(error_a.size(), d);
      EXPECT_GT(error_a.norm(), 0.01);
      EXPECT_LE((error_a - error_b).cwiseAbs().maxCoeff(), tol * error_a.norm());
    }
  }
}

// Ghost clipping computes the same clipped sums without the B x d matrix:
// softmax regression under DP-SGD and DiceSGD (with noise: the same draws,
// the same sampling) ends where the materialised step ends, to rounding.
TEST(DpTrainerTest, GhostClippingMatchesMaterialisedPerExampleGradients) {
  const auto objective = MakeSoftmax(5, 3);
  ExpectGhostMatchesMaterialised(*objective, *objective, 1e-12);
}

// In float32 the linear models' ghost clipping reads the rows in place
// (Objective::OuterProductFactorsOnRows): the same mechanism, the same
// draws, so it ends where the float64 materialised step ends, to float32's
// rounding, under DP-SGD and DiceSGD.
TEST(DpTrainerTest, Float32GhostClippingOnRowsMatchesFloat64) {
  ObjectiveSpec ospec;
  ospec.kind = ObjectiveKind::kSoftmax;
  ospec.num_features = 5;
  ospec.num_classes = 3;
  ospec.precision = Precision::kFloat32;
  absl::StatusOr<std::unique_ptr<Objective>> float32 = MakeObjective(ospec);
  ASSERT_TRUE(float32.ok()) << float32.status();
  const auto float64 = MakeSoftmax(5, 3);
  ExpectGhostMatchesMaterialised(*float64, **float32, 1e-5);
}

// Networks (the MLP, a CNN): norms layer by layer and weighted backward
// passes (Objective::GhostClippedSums) end where the per-example gradients
// end, under DP-SGD and DiceSGD, in float64 to rounding and in float32 to
// float32's resolution.
TEST(DpTrainerTest, GhostClippingOfNetworksMatchesPerExampleGradients) {
  ObjectiveSpec mlp_spec;
  mlp_spec.kind = ObjectiveKind::kMlp;
  mlp_spec.num_features = 5;
  mlp_spec.num_classes = 3;
  mlp_spec.hidden_units = 6;
  auto mlp = MakeObjective(mlp_spec);
  ASSERT_TRUE(mlp.ok()) << mlp.status();
  RngStream rng(3, RngPurpose::kTest, -1, -1);
  FlatVector mlp_start;
  (*mlp)->Initialize(mlp_start, rng);
  ExpectGhostMatchesMaterialised(**mlp, **mlp, 1e-10, Classification(60, 5, 3), mlp_start);

  // conv(4, 3x3, padding 1), relu, maxpool 2, flatten, linear(3) on 2x6x6
  // images (72 features).
  nn::NetworkSpec cnn_spec{
      {nn::Shape::Kind::kImage, 2, 6, 6},
      {{.kind = nn::LayerKind::kConv2d, .out = 4, .kernel = 3, .padding = 1},
       {.kind = nn::LayerKind::kRelu},
       {.kind = nn::LayerKind::kMaxPool2d, .kernel = 2},
       {.kind = nn::LayerKind::kFlatten},
       {.kind = nn::LayerKind::kLinear, .out = 3}}};
  auto net = std::make_shared<const nn::Network>(*nn::Network::Create(cnn_spec));
  auto cnn64 = *MakeNetworkObjective(net, 0.0, Precision::kFloat64);
  auto cnn32 = *MakeNetworkObjective(net, 0.0, Precision::kFloat32);
  FlatVector cnn_start;
  cnn64->Initialize(cnn_start, rng);
  const Dataset images = Classification(60, 72, 3);
  {
    SCOPED_TRACE("cnn, float64");
    ExpectGhostMatchesMaterialised(*cnn64, *cnn64, 1e-10, images, cnn_start);
  }
  {
    SCOPED_TRACE("cnn, float32");
    ExpectGhostMatchesMaterialised(*cnn32, *cnn32, 1e-4, images, cnn_start);
  }
}

TEST(DpTrainerTest, BadSettingsAreRejected) {
  const Dataset data = ZeroData(4, 2);
  const auto objective = MakeLeastSquares(2);
  const std::vector<std::int64_t> rows = AllRows(4);
  LocalTrainingSpec spec;
  auto run = [&](const DpSpec& dp, FlatVector* error) {
    Streams s(1, 0, 0);
    return RunLocalDpSgd(*objective, data, rows, FlatVector::Zero(2), spec, dp,
                         s.sampling, s.noise, error)
        .status();
  };
  DpSpec dp;
  dp.mode = DpMode::kClip;
  EXPECT_TRUE(run(dp, nullptr).ok());
  DpSpec bad = dp;
  bad.clip = 0.0;
  EXPECT_EQ(run(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = dp;
  bad.noise_multiplier = -1.0;
  EXPECT_EQ(run(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = dp;
  bad.clip = kInf;  // unbounded sensitivity with noise
  EXPECT_EQ(run(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = dp;
  bad.mode = DpMode::kNone;
  EXPECT_EQ(run(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  bad = dp;
  bad.mode = DpMode::kDiceSgd;
  EXPECT_EQ(run(bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  FlatVector wrong_size = FlatVector::Zero(3);
  EXPECT_EQ(run(bad, &wrong_size).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dp_trainer_test
}  // namespace fedsim
