// Tests of client/trainer/local_trainer: the exact update of full-batch and
// mini-batch SGD (against a step-by-step re-implementation of ALGORITHMS.md
// §1.2's ClientUpdate), the step counts of E epochs with the last partial
// batch kept and of max_steps, determinism in the shuffling key, and the
// errors.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "client/trainer/local_trainer.h"
#include "common/base/task.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/kernels/vector_ops.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "tests/testing/datasets.h"

namespace fedsim {
namespace local_trainer_test {
namespace {

constexpr std::int64_t kDim = 3;

bool SameBits(const FlatVector& a, const FlatVector& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * a.size()) == 0;
}

// A regression data set of `n` rows with N(0, 1) features.
Dataset MakeData(std::int64_t n) {
  RngStream rng(11, RngPurpose::kTest, -1, -1);
  return test::GaussianRows(n, kDim, 0, rng);
}

std::unique_ptr<Objective> LeastSquares(double l2 = 0.0) {
  ObjectiveSpec spec;
  spec.kind = ObjectiveKind::kLeastSquares;
  spec.num_features = kDim;
  spec.l2 = l2;
  auto objective = MakeObjective(spec);
  EXPECT_TRUE(objective.ok()) << objective.status();
  return *std::move(objective);
}

std::vector<std::int64_t> Rows(std::int64_t begin, std::int64_t end) {
  std::vector<std::int64_t> rows(end - begin);
  std::iota(rows.begin(), rows.end(), begin);
  return rows;
}

FlatVector Start() {
  FlatVector w(kDim);
  w << 0.5, -1.0, 0.25;
  return w;
}

RngStream ShuffleStream(std::int64_t client, std::int64_t round) {
  return RngStream(7, RngPurpose::kShuffle, client, round);
}

// ClientUpdate written out step by step: every pass shuffles the rows with
// `rng` and walks them in batches of b, the last partial batch included;
// stops after `total_steps` steps. Returns the final parameters.
FlatVector ReferenceSgd(const Objective& objective, const Dataset& data,
                        std::vector<std::int64_t> order, FlatVector w,
                        std::int64_t b, double lr, std::int64_t total_steps,
                        RngStream& rng, std::int64_t* steps_taken) {
  FlatVector grad;
  Batch batch;
  std::int64_t steps = 0;
  const auto n = static_cast<std::int64_t>(order.size());
  while (steps < total_steps) {
    rng.Shuffle(std::span<std::int64_t>(order));
    for (std::int64_t begin = 0; begin < n && steps < total_steps; begin += b) {
      const std::int64_t end = std::min(n, begin + b);
      GatherBatch(data,
                  std::span<const std::int64_t>(order).subspan(begin, end - begin),
                  batch);
      objective.Evaluate(w, batch, &grad);
      w -= lr * grad;
      ++steps;
    }
  }
  *steps_taken = steps;
  return w;
}

TEST(LocalTrainerTest, OneFullBatchStepIsExactlyGradientDescent) {
  const Dataset data = MakeData(10);
  const auto objective = LeastSquares(0.01);
  const std::vector<std::int64_t> rows = Rows(2, 9);
  LocalTrainingSpec spec;
  spec.epochs = 1;
  spec.batch_size = 0;
  spec.lr = 0.3;
  RngStream rng = ShuffleStream(0, 0);
  absl::StatusOr<LocalTrainingOutput> out =
      RunLocalSgd(*objective, data, rows, Start(), spec, rng);
  ASSERT_TRUE(out.ok()) << out.status();

  Batch batch;
  GatherBatch(data, rows, batch);
  FlatVector grad;
  const double loss = objective->Evaluate(Start(), batch, &grad);
  const FlatVector expected = Start() - 0.3 * grad;
  EXPECT_TRUE(SameBits(out->update, expected - Start()));
  EXPECT_EQ(out->num_steps, 1);
  EXPECT_DOUBLE_EQ(out->mean_loss, loss);
}

TEST(LocalTrainerTest, FullBatchEpochsAreGradientStepsWithoutShuffling) {
  const Dataset data = MakeData(10);
  const auto objective = LeastSquares();
  const std::vector<std::int64_t> rows = Rows(0, 10);
  LocalTrainingSpec spec;
  spec.epochs = 4;
  spec.batch_size = 0;
  spec.lr = 0.1;
  RngStream rng = ShuffleStream(0, 0);
  absl::StatusOr<LocalTrainingOutput> out =
      RunLocalSgd(*objective, data, rows, Start(), spec, rng);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->num_steps, 4);

  Batch batch;
  GatherBatch(data, rows, batch);
  FlatVector w = Start(), grad;
  for (int step = 0; step < 4; ++step) {
    objective->Evaluate(w, batch, &grad);
    w -= 0.1 * grad;
  }
  EXPECT_TRUE(SameBits(out->update, w - Start()));
  // Full-batch training draws nothing from the stream.
  RngStream fresh = ShuffleStream(0, 0);
  EXPECT_EQ(rng.NextU64(), fresh.NextU64());
}

TEST(LocalTrainerTest, MiniBatchEpochsKeepTheLastPartialBatch) {
  const Dataset data = MakeData(20);
  const auto objective = LeastSquares();
  const std::vector<std::int64_t> rows = Rows(5, 15);  // n = 10
  struct Case {
    int epochs;
    std::int64_t batch_size;
    std::int64_t expected_steps;  // E * ceil(n / B)
  };
  for (const Case& c : {Case{1, 3, 4}, Case{2, 3, 8}, Case{3, 4, 9},
                        Case{1, 10, 1}, Case{2, 25, 2}, Case{1, 1, 10}}) {
    LocalTrainingSpec spec;
    spec.epochs = c.epochs;
    spec.batch_size = c.batch_size;
    spec.lr = 0.05;
    RngStream rng = ShuffleStream(3, 1);
    absl::StatusOr<LocalTrainingOutput> out =
        RunLocalSgd(*objective, data, rows, Start(), spec, rng);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->num_steps, c.expected_steps)
        << "E = " << c.epochs << ", B = " << c.batch_size;

    RngStream ref_rng = ShuffleStream(3, 1);
    std::int64_t ref_steps = 0;
    const FlatVector w = ReferenceSgd(*objective, data, rows, Start(),
                                      std::min<std::int64_t>(c.batch_size, 10),
                                      0.05, c.expected_steps, ref_rng, &ref_steps);
    EXPECT_EQ(ref_steps, c.expected_steps);
    EXPECT_TRUE(SameBits(out->update, w - Start()))
        << "E = " << c.epochs << ", B = " << c.batch_size;
  }
}

TEST(LocalTrainerTest, MaxStepsTakesExactlyThatManyStepsAcrossPasses) {
  const Dataset data = MakeData(10);
  const auto objective = LeastSquares();
  const std::vector<std::int64_t> rows = Rows(0, 10);
  auto run = [&](int epochs, std::int64_t max_steps) {
    LocalTrainingSpec spec;
    spec.epochs = epochs;
    spec.batch_size = 3;  // 4 steps a pass
    spec.lr = 0.05;
    spec.max_steps = max_steps;
    RngStream rng = ShuffleStream(1, 2);
    absl::StatusOr<LocalTrainingOutput> out =
        RunLocalSgd(*objective, data, rows, Start(), spec, rng);
    EXPECT_TRUE(out.ok()) << out.status();
    return *std::move(out);
  };
  for (std::int64_t max_steps : {1, 3, 4, 5, 7, 9, 13}) {
    // max_steps replaces E: the same whatever the epochs.
    for (int epochs : {1, 5}) {
      const LocalTrainingOutput out = run(epochs, max_steps);
      EXPECT_EQ(out.num_steps, max_steps);
      RngStream ref_rng = ShuffleStream(1, 2);
      std::int64_t ref_steps = 0;
      const FlatVector w = ReferenceSgd(*objective, data, rows, Start(), 3, 0.05,
                                        max_steps, ref_rng, &ref_steps);
      EXPECT_TRUE(SameBits(out.update, w - Start()))
          << "max_steps = " << max_steps << ", epochs = " << epochs;
    }
  }
  // Whole passes: max_steps = E * ceil(n / B) is exactly E epochs.
  EXPECT_TRUE(SameBits(run(1, 8).update, run(2, 0).update));
  EXPECT_TRUE(SameBits(run(3, 4).update, run(1, 0).update));
}

TEST(LocalTrainerTest, SameKeySameUpdateDifferentRoundDifferentUpdate) {
  const Dataset data = MakeData(12);
  const auto objective = LeastSquares();
  const std::vector<std::int64_t> rows = Rows(0, 12);
  LocalTrainingSpec spec;
  spec.epochs = 2;
  spec.batch_size = 5;
  spec.lr = 0.05;
  auto run = [&](RngStream rng) {
    absl::StatusOr<LocalTrainingOutput> out =
        RunLocalSgd(*objective, data, rows, Start(), spec, rng);
    EXPECT_TRUE(out.ok()) << out.status();
    return out->update;
  };
  const FlatVector a = run(ShuffleStream(4, 9));
  EXPECT_TRUE(SameBits(a, run(ShuffleStream(4, 9))));
  EXPECT_FALSE(SameBits(a, run(ShuffleStream(4, 10))));
  EXPECT_FALSE(SameBits(a, run(ShuffleStream(5, 9))));
}

TEST(LocalTrainerTest, MeanLossIsExampleWeighted) {
  // One pass with B = 3 over n = 4 rows: batches of 3 and 1. The reported
  // loss weights each batch loss by its size.
  const Dataset data = MakeData(4);
  const auto objective = LeastSquares();
  const std::vector<std::int64_t> rows = Rows(0, 4);
  LocalTrainingSpec spec;
  spec.epochs = 1;
  spec.batch_size = 3;
  spec.lr = 0.1;
  RngStream rng = ShuffleStream(0, 0);
  absl::StatusOr<LocalTrainingOutput> out =
      RunLocalSgd(*objective, data, rows, Start(), spec, rng);
  ASSERT_TRUE(out.ok());

  RngStream ref = ShuffleStream(0, 0);
  std::vector<std::int64_t> order = rows;
  ref.Shuffle(std::span<std::int64_t>(order));
  Batch first, second;
  GatherBatch(data, std::span<const std::int64_t>(order).subspan(0, 3), first);
  GatherBatch(data, std::span<const std::int64_t>(order).subspan(3, 1), second);
  FlatVector w = Start(), grad;
  const double loss1 = objective->Evaluate(w, first, &grad);
  w -= 0.1 * grad;
  const double loss2 = objective->Evaluate(w, second, nullptr);
  EXPECT_DOUBLE_EQ(out->mean_loss, (3.0 * loss1 + 1.0 * loss2) / 4.0);
}

TEST(LocalTrainerTest, DivergingStepSizeIsOutOfRange) {
  const Dataset data = MakeData(10);
  const auto objective = LeastSquares();
  LocalTrainingSpec spec;
  spec.batch_size = 2;
  spec.lr = 100.0;
  spec.max_steps = 2000;
  RngStream rng = ShuffleStream(0, 0);
  absl::StatusOr<LocalTrainingOutput> out =
      RunLocalSgd(*objective, data, Rows(0, 10), Start(), spec, rng);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kOutOfRange);
}

TEST(LocalTrainerTest, BadInputsAreInvalidArgument) {
  const Dataset data = MakeData(10);
  const auto objective = LeastSquares();
  RngStream rng = ShuffleStream(0, 0);
  LocalTrainingSpec ok;
  EXPECT_EQ(RunLocalSgd(*objective, data, {}, Start(), ok, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<std::int64_t> rows = Rows(0, 10);
  LocalTrainingSpec bad_lr = ok;
  bad_lr.lr = 0.0;
  LocalTrainingSpec nan_lr = ok;
  nan_lr.lr = std::nan("");
  LocalTrainingSpec bad_epochs = ok;
  bad_epochs.epochs = 0;
  LocalTrainingSpec bad_batch = ok;
  bad_batch.batch_size = -1;
  LocalTrainingSpec bad_steps = ok;
  bad_steps.max_steps = -1;
  for (const LocalTrainingSpec& spec :
       {bad_lr, nan_lr, bad_epochs, bad_batch, bad_steps}) {
    EXPECT_EQ(RunLocalSgd(*objective, data, rows, Start(), spec, rng).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace local_trainer_test
}  // namespace fedsim

namespace fedsim {
namespace local_trainer_test {
namespace {

// Heavy-ball momentum as PyTorch's SGD (v_0 = g_0, v_t = mu v_{t-1} + g_t,
// w -= lr v_t), gradient clipping, and the FedFix code's fresh batches
// (every step: reshuffle, take the first B rows), against a step-by-step
// re-implementation with the same stream.
TEST(LocalTrainerAsyncOptionsTest, MomentumClippingAndFreshBatchesStepByStep) {
  const Dataset data = MakeData(20);
  const std::vector<std::int64_t> rows = Rows(0, 20);
  const auto objective = LeastSquares();
  LocalTrainingSpec spec;
  spec.batch_size = 6;
  spec.lr = 0.1;
  spec.max_steps = 5;
  spec.momentum = 0.9;
  spec.fresh_batches = true;
  spec.grad_clip_norm = 0.5;
  RngStream rng(3, RngPurpose::kShuffle, 2, 7);
  absl::StatusOr<LocalTrainingOutput> out =
      RunLocalSgd(*objective, data, rows, Start(), spec, rng);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->num_steps, 5);

  RngStream ref_rng(3, RngPurpose::kShuffle, 2, 7);
  std::vector<std::int64_t> order = rows;
  FlatVector w = Start(), v = FlatVector::Zero(kDim), g(kDim);
  Batch batch;
  for (int t = 0; t < 5; ++t) {
    ref_rng.Shuffle(std::span<std::int64_t>(order));
    GatherBatch(data, std::span<const std::int64_t>(order).subspan(0, 6), batch);
    objective->Evaluate(w, batch, &g);
    const double norm = std::sqrt(g.squaredNorm());
    if (norm > 0.5) g *= 0.5 / norm;
    v = t == 0 ? g : FlatVector(0.9 * v + g);
    w -= 0.1 * v;
  }
  EXPECT_LT((out->update - (w - Start())).cwiseAbs().maxCoeff(), 1e-14);

  // Momentum 0 and no clipping: plain SGD on the same fresh batches.
  spec.momentum = 0.0;
  spec.grad_clip_norm = 0.0;
  RngStream rng2(3, RngPurpose::kShuffle, 2, 7);
  RngStream ref2(3, RngPurpose::kShuffle, 2, 7);
  out = RunLocalSgd(*objective, data, rows, Start(), spec, rng2);
  ASSERT_TRUE(out.ok());
  order = rows;
  w = Start();
  for (int t = 0; t < 5; ++t) {
    ref2.Shuffle(std::span<std::int64_t>(order));
    GatherBatch(data, std::span<const std::int64_t>(order).subspan(0, 6), batch);
    objective->Evaluate(w, batch, &g);
    w -= 0.1 * g;
  }
  EXPECT_LT((out->update - (w - Start())).cwiseAbs().maxCoeff(), 1e-14);

  // Fresh batches need max_steps and a batch size; momentum must be < 1.
  spec.max_steps = 0;
  EXPECT_EQ(RunLocalSgd(*objective, data, rows, Start(), spec, rng2).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.max_steps = 5;
  spec.momentum = 1.0;
  EXPECT_EQ(RunLocalSgd(*objective, data, rows, Start(), spec, rng2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace local_trainer_test
}  // namespace fedsim
