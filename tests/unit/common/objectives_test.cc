// Tests of common/objectives: gradients against central finite differences,
// per-example gradients against batch gradients, losses and predictions at
// hand-computed points, spec validation and initialisation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/vectors.h"

namespace fedsim {
namespace objectives_test {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Objective> MakeOrDie(const ObjectiveSpec& spec) {
  absl::StatusOr<std::unique_ptr<Objective>> objective = MakeObjective(spec);
  EXPECT_TRUE(objective.ok()) << objective.status();
  return objective.ok() ? *std::move(objective) : nullptr;
}

ObjectiveSpec Spec(ObjectiveKind kind, std::int64_t d, int num_classes = 0,
                   int hidden_units = 0, double l2 = 0.0) {
  ObjectiveSpec spec;
  spec.kind = kind;
  spec.num_features = d;
  spec.num_classes = num_classes;
  spec.hidden_units = hidden_units;
  spec.l2 = l2;
  return spec;
}

// A batch of b examples with N(0, 1) features and labels that fit `spec`.
Batch RandomBatch(const ObjectiveSpec& spec, std::int64_t b, RngStream& rng) {
  Batch batch;
  batch.x.resize(b, spec.num_features);
  batch.y.resize(b);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < spec.num_features; ++j) {
      batch.x(i, j) = rng.Gaussian();
    }
    switch (spec.kind) {
      case ObjectiveKind::kLeastSquares:
        batch.y[i] = rng.Gaussian();
        break;
      case ObjectiveKind::kLogistic:
        batch.y[i] = static_cast<double>(rng.UniformInt(2));
        break;
      case ObjectiveKind::kSoftmax:
      case ObjectiveKind::kMlp:
        batch.y[i] = static_cast<double>(rng.UniformInt(spec.num_classes));
        break;
    }
  }
  return batch;
}

FlatVector RandomParams(std::int64_t n, double scale, RngStream& rng) {
  FlatVector params(n);
  for (std::int64_t k = 0; k < n; ++k) params[k] = scale * rng.Gaussian();
  return params;
}

Batch SingleExample(const Batch& batch, std::int64_t i) {
  Batch single;
  single.x = batch.x.row(i);
  single.y = batch.y.segment(i, 1);
  return single;
}

// Central differences (f(p + s e_k) - f(p - s e_k)) / 2s for every k.
FlatVector CentralDifferences(const Objective& objective,
                              const FlatVector& params, const Batch& batch,
                              double step) {
  FlatVector gradient(params.size());
  FlatVector shifted = params;
  for (Eigen::Index k = 0; k < params.size(); ++k) {
    shifted[k] = params[k] + step;
    const double up = objective.Evaluate(shifted, batch, nullptr);
    shifted[k] = params[k] - step;
    const double down = objective.Evaluate(shifted, batch, nullptr);
    shifted[k] = params[k];
    gradient[k] = (up - down) / (2.0 * step);
  }
  return gradient;
}

// Smallest |pre-activation| of the MLP's hidden layer on `batch`. The
// finite-difference check is only meaningful away from the ReLU kink.
double SmallestPreActivation(const ObjectiveSpec& spec,
                             const FlatVector& params, const Batch& batch) {
  const std::int64_t d = spec.num_features;
  const std::int64_t h = spec.hidden_units;
  const Eigen::Map<const Eigen::MatrixXd> w1(params.data(), d, h);
  const ConstVectorRef b1(params.data() + d * h, h);
  RowMajorMatrixD z = batch.x * w1;
  z.rowwise() += b1.transpose();
  return z.cwiseAbs().minCoeff();
}

struct Case {
  const char* name;
  ObjectiveSpec spec;
  double param_scale;
};

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (double l2 : {0.0, 0.3}) {
    cases.push_back({l2 == 0.0 ? "LeastSquares" : "LeastSquaresL2",
                     Spec(ObjectiveKind::kLeastSquares, 6, 0, 0, l2), 1.0});
    cases.push_back({l2 == 0.0 ? "Logistic" : "LogisticL2",
                     Spec(ObjectiveKind::kLogistic, 6, 2, 0, l2), 0.7});
    cases.push_back({l2 == 0.0 ? "Softmax" : "SoftmaxL2",
                     Spec(ObjectiveKind::kSoftmax, 5, 4, 0, l2), 0.7});
    cases.push_back({l2 == 0.0 ? "Mlp" : "MlpL2",
                     Spec(ObjectiveKind::kMlp, 5, 3, 6, l2), 0.7});
  }
  return cases;
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ObjectiveCaseTest : public ::testing::TestWithParam<Case> {};

TEST_P(ObjectiveCaseTest, GradientMatchesCentralDifferences) {
  const ObjectiveSpec& spec = GetParam().spec;
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  RngStream rng(17, RngPurpose::kTest, -1, 0);
  for (int trial = 0; trial < 3; ++trial) {
    SCOPED_TRACE(testing::Message() << "trial " << trial);
    const Batch batch = RandomBatch(spec, 9, rng);
    const FlatVector params = RandomParams(objective->NumParameters(),
                                           GetParam().param_scale, rng);
    if (spec.kind == ObjectiveKind::kMlp) {
      // A step of 1e-6 on W1 moves a pre-activation by about 1e-6 |x|.
      ASSERT_GT(SmallestPreActivation(spec, params, batch), 1e-4);
    }
    FlatVector gradient;
    const double loss = objective->Evaluate(params, batch, &gradient);
    ASSERT_EQ(gradient.size(), objective->NumParameters());
    EXPECT_EQ(loss, objective->Evaluate(params, batch, nullptr));

    const FlatVector numerical =
        CentralDifferences(*objective, params, batch, 1e-6);
    // Truncation error is O(step^2) and rounding error about
    // 1e-16 * |loss| / step = 1e-10, both far below the 1e-6 tolerance.
    EXPECT_LE((numerical - gradient).norm(), 1e-6 * gradient.norm());
    for (Eigen::Index k = 0; k < gradient.size(); ++k) {
      EXPECT_NEAR(numerical[k], gradient[k],
                  1e-6 * std::max(1.0, std::abs(gradient[k])))
          << "parameter " << k;
    }
  }
}

TEST_P(ObjectiveCaseTest, PerExampleRowsAverageToBatchGradient) {
  const ObjectiveSpec& spec = GetParam().spec;
  const auto objective = MakeOrDie(spec);
  ObjectiveSpec unregularised_spec = spec;
  unregularised_spec.l2 = 0.0;
  const auto unregularised = MakeOrDie(unregularised_spec);
  ASSERT_NE(objective, nullptr);
  ASSERT_NE(unregularised, nullptr);
  RngStream rng(23, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 11, rng);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);

  RowMajorMatrixD rows(1, 1);  // resized by the call
  objective->PerExampleGradients(params, batch, rows);
  ASSERT_EQ(rows.rows(), batch.size());
  ASSERT_EQ(rows.cols(), objective->NumParameters());

  // Without the L2 term, whatever the objective's l2.
  RowMajorMatrixD unregularised_rows;
  unregularised->PerExampleGradients(params, batch, unregularised_rows);
  EXPECT_EQ(rows, unregularised_rows);

  FlatVector gradient;
  unregularised->Evaluate(params, batch, &gradient);
  const FlatVector mean = rows.colwise().mean().transpose();
  EXPECT_LE((mean - gradient).cwiseAbs().maxCoeff(), 1e-12);

  for (std::int64_t i = 0; i < batch.size(); ++i) {
    FlatVector single;
    unregularised->Evaluate(params, SingleExample(batch, i), &single);
    EXPECT_LE((rows.row(i).transpose() - single).cwiseAbs().maxCoeff(), 1e-12)
        << "example " << i;
  }
}

TEST_P(ObjectiveCaseTest, OuterProductFactorsMatchPerExampleRows) {
  // Ghost clipping's inputs: ||g_i||^2 and sum_i w_i g_i from the factors
  // equal those of the materialised rows (to rounding), and the loss is
  // Evaluate's, bit for bit. The MLP has no such form.
  const ObjectiveSpec& spec = GetParam().spec;
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  RngStream rng(31, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 7, rng);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);
  RowMajorMatrixD delta;
  Eigen::VectorXd squared_norms;
  double loss = -1.0;
  const bool linear = objective->OuterProductFactors(params, batch, delta, squared_norms, loss);
  if (spec.kind == ObjectiveKind::kMlp) {
    EXPECT_FALSE(linear);
    EXPECT_EQ(loss, -1.0);
    return;
  }
  ASSERT_TRUE(linear);
  EXPECT_EQ(loss, objective->Evaluate(params, batch, nullptr));
  RowMajorMatrixD rows;
  objective->PerExampleGradients(params, batch, rows);
  ASSERT_EQ(squared_norms.size(), batch.size());
  ASSERT_EQ(delta.rows(), batch.size());
  for (std::int64_t i = 0; i < batch.size(); ++i) {
    const double expected = rows.row(i).squaredNorm();
    EXPECT_NEAR(squared_norms[i], expected, 1e-13 * std::max(1.0, expected)) << "example " << i;
  }
  Eigen::VectorXd weights(batch.size());
  for (std::int64_t i = 0; i < batch.size(); ++i) weights[i] = 0.25 + 0.5 * static_cast<double>(i % 3);
  FlatVector sum;
  objective->WeightedOuterProductSum(batch, delta, weights, sum);
  const FlatVector expected = rows.transpose() * weights;
  ASSERT_EQ(sum.size(), objective->NumParameters());
  EXPECT_LE((sum - expected).cwiseAbs().maxCoeff(),
            1e-13 * std::max(1.0, expected.cwiseAbs().maxCoeff()));
}

// The evaluator's one-pass loss and accuracy are Evaluate's and
// NumCorrect's values bit for bit.
TEST_P(ObjectiveCaseTest, EvaluateWithCorrectIsEvaluateAndNumCorrect) {
  const ObjectiveSpec& spec = GetParam().spec;
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  RngStream rng(31, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 64, rng);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);
  std::int64_t correct = -1;
  const double loss = objective->EvaluateWithCorrect(params, batch, correct);
  EXPECT_EQ(loss, objective->Evaluate(params, batch, nullptr));
  EXPECT_EQ(correct, objective->NumCorrect(params, batch));
}

// The evaluator's in-place path (float32 rows, no float64 copy), which
// every objective has, agrees with EvaluateWithCorrect on the gathered rows
// to rounding.
// Both precisions: float64 reads the rows in place to rounding (1e-13);
// float32 (the single-precision kernel) to float32's.
TEST_P(ObjectiveCaseTest, EvaluateRowsInPlaceAgreesWithTheGatheredBatch) {
 for (const Precision precision : {Precision::kFloat64, Precision::kFloat32}) {
  SCOPED_TRACE(precision == Precision::kFloat32 ? "float32" : "float64");
  const double tol = precision == Precision::kFloat32 ? 2e-5 : 1e-13;
  ObjectiveSpec spec = GetParam().spec;
  spec.precision = precision;
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  RngStream rng(37, RngPurpose::kTest, -1, 0);
  const Batch random = RandomBatch(spec, 70, rng);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);
  Dataset data;
  data.features = random.x.cast<float>();
  data.labels = random.y;
  data.num_classes = spec.num_classes;
  for (auto [begin, end] : {std::pair<std::int64_t, std::int64_t>{0, 70}, {5, 66}, {69, 70}}) {
    std::int64_t in_place_correct = -1;
    const std::optional<double> in_place =
        objective->EvaluateRowsWithCorrect(params, data, begin, end, in_place_correct);
    ASSERT_TRUE(in_place.has_value());
    Batch gathered;
    GatherRange(data, begin, end, gathered);
    std::int64_t correct = -1;
    const double loss = objective->EvaluateWithCorrect(params, gathered, correct);
    EXPECT_NEAR(*in_place, loss, tol * std::max(1.0, std::abs(loss)))
        << "rows [" << begin << ", " << end << ")";
    if (precision == Precision::kFloat32) {
      EXPECT_NE(*in_place, loss) << "the float32 rows were evaluated in double";
    }
    EXPECT_EQ(in_place_correct, correct) << "rows [" << begin << ", " << end << ")";
  }
 }
}

TEST_P(ObjectiveCaseTest, L2TermIsAddedOnce) {
  const ObjectiveSpec& spec = GetParam().spec;
  ObjectiveSpec unregularised_spec = spec;
  unregularised_spec.l2 = 0.0;
  const auto objective = MakeOrDie(spec);
  const auto unregularised = MakeOrDie(unregularised_spec);
  ASSERT_NE(objective, nullptr);
  ASSERT_NE(unregularised, nullptr);
  RngStream rng(29, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 5, rng);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);
  FlatVector gradient;
  FlatVector unregularised_gradient;
  const double loss = objective->Evaluate(params, batch, &gradient);
  const double base =
      unregularised->Evaluate(params, batch, &unregularised_gradient);
  EXPECT_NEAR(loss, base + 0.5 * spec.l2 * params.squaredNorm(), 1e-12);
  EXPECT_LE((gradient - unregularised_gradient - spec.l2 * params)
                .cwiseAbs()
                .maxCoeff(),
            1e-12);
}

TEST_P(ObjectiveCaseTest, ConcurrentCallsAgreeWithSerialOnes) {
  const ObjectiveSpec& spec = GetParam().spec;
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  RngStream rng(31, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 16, rng);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);
  FlatVector expected;
  const double expected_loss = objective->Evaluate(params, batch, &expected);

  std::vector<FlatVector> gradients(2);
  std::vector<double> losses(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 20; ++repeat) {
        losses[t] = objective->Evaluate(params, batch, &gradients[t]);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(losses[t], expected_loss);
    EXPECT_EQ(gradients[t], expected);
  }
}

// model.precision float32: the BatchF overloads compute the products in
// float32 from the same rows. On a batch whose values are floats (as the
// stored data always is), every value agrees with the float64 overload to
// float32's rounding, and at least one gradient value differs from it (the
// products really ran in single precision).
BatchF ToFloat(const Batch& batch) {
  BatchF f;
  f.x = batch.x.cast<float>();
  f.y = batch.y;
  return f;
}

Batch ToDouble(const BatchF& batch) {
  Batch d;
  d.x = batch.x.cast<double>();
  d.y = batch.y;
  return d;
}

// |a - b| <= tol * max(1, |b|) elementwise.
testing::AssertionResult CloseTo(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b, double tol) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) {
    return testing::AssertionFailure() << a.rows() << "x" << a.cols() << " against " << b.rows()
                                       << "x" << b.cols();
  }
  for (Eigen::Index i = 0; i < a.rows(); ++i) {
    for (Eigen::Index j = 0; j < a.cols(); ++j) {
      if (!(std::abs(a(i, j) - b(i, j)) <= tol * std::max(1.0, std::abs(b(i, j))))) {
        return testing::AssertionFailure() << "(" << i << ", " << j << "): " << a(i, j)
                                           << " against " << b(i, j);
      }
    }
  }
  return testing::AssertionSuccess();
}

TEST_P(ObjectiveCaseTest, Float32OverloadsAgreeWithFloat64ToSinglePrecision) {
  ObjectiveSpec spec = GetParam().spec;
  spec.precision = Precision::kFloat32;
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  EXPECT_EQ(objective->precision(), Precision::kFloat32);
  RngStream rng(47, RngPurpose::kTest, -1, 0);
  const BatchF batch_f = ToFloat(RandomBatch(spec, 40, rng));
  const Batch batch = ToDouble(batch_f);
  const FlatVector params =
      RandomParams(objective->NumParameters(), GetParam().param_scale, rng);
  constexpr double kTol = 2e-5;  // a few float32 ulps of sums of 40 x 6 terms

  FlatVector grad64, grad32;
  const double loss64 = objective->Evaluate(params, batch, &grad64);
  const double loss32 = objective->Evaluate(params, batch_f, &grad32);
  EXPECT_NEAR(loss32, loss64, kTol * std::max(1.0, std::abs(loss64)));
  EXPECT_TRUE(CloseTo(grad32, grad64, kTol));
  EXPECT_NE(grad32, grad64) << "the float32 overload computed in double";
  EXPECT_EQ(objective->Evaluate(params, batch_f, nullptr), loss32);

  RowMajorMatrixD rows64;
  RowMajorMatrixF rows32;
  objective->PerExampleGradients(params, batch, rows64);
  objective->PerExampleGradients(params, batch_f, rows32);
  EXPECT_TRUE(CloseTo(rows32.cast<double>(), rows64, kTol));

  RowMajorMatrixD delta64;
  RowMajorMatrixF delta32;
  Eigen::VectorXd norms64, norms32;
  double factors_loss64 = 0.0, factors_loss32 = 0.0;
  const bool linear64 =
      objective->OuterProductFactors(params, batch, delta64, norms64, factors_loss64);
  const bool linear32 =
      objective->OuterProductFactors(params, batch_f, delta32, norms32, factors_loss32);
  ASSERT_EQ(linear32, linear64);
  ASSERT_EQ(linear32, spec.kind != ObjectiveKind::kMlp);
  if (!linear32) return;
  EXPECT_EQ(factors_loss32, loss32);
  EXPECT_TRUE(CloseTo(delta32.cast<double>(), delta64, kTol));
  EXPECT_TRUE(CloseTo(norms32, norms64, kTol));
  Eigen::VectorXd weights(batch.size());
  for (std::int64_t i = 0; i < batch.size(); ++i) weights[i] = 0.2 + 0.3 * static_cast<double>(i % 4);
  FlatVector sum64, sum32;
  objective->WeightedOuterProductSum(batch, delta64, weights, sum64);
  objective->WeightedOuterProductSum(batch_f, delta32, weights, sum32);
  EXPECT_TRUE(CloseTo(sum32, sum64, kTol));
}

TEST(ObjectivePrecisionTest, Float64IsTheSpecDefault) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kSoftmax, 3, 2));
  ASSERT_NE(objective, nullptr);
  EXPECT_EQ(objective->precision(), Precision::kFloat64);
}

// An objective of the case's kind in `precision`, random parameters, and
// `n` random examples stored as float32 rows (as loaded data is), for the
// in-place paths.
struct StoredRows {
  std::unique_ptr<Objective> objective;
  FlatVector params;
  Dataset data;
  // Whether the objective has the in-place training paths (the float32
  // linear models).
  bool in_place = false;
};

StoredRows MakeStoredRows(const Case& c, Precision precision, std::uint64_t seed,
                          std::int64_t n) {
  StoredRows out;
  ObjectiveSpec spec = c.spec;
  spec.precision = precision;
  out.objective = MakeOrDie(spec);
  RngStream rng(seed, RngPurpose::kTest, -1, 0);
  const Batch random = RandomBatch(spec, n, rng);
  out.params = RandomParams(out.objective->NumParameters(), c.param_scale, rng);
  out.data.features = random.x.cast<float>();
  out.data.labels = random.y;
  out.data.num_classes = spec.num_classes;
  out.in_place = precision == Precision::kFloat32 &&
                 (spec.kind == ObjectiveKind::kSoftmax || spec.kind == ObjectiveKind::kLogistic);
  return out;
}

// The training step on rows read in place (float32 linear models): the
// loss and gradient of the gathered batch in float64 to float32's
// rounding, for rows in any order (repeats included), and really computed
// in single precision. Other models and float64 have no such path.
TEST_P(ObjectiveCaseTest, EvaluateOnRowsAgreesWithTheGatheredBatch) {
  for (const Precision precision : {Precision::kFloat64, Precision::kFloat32}) {
    SCOPED_TRACE(precision == Precision::kFloat32 ? "float32" : "float64");
    const StoredRows c = MakeStoredRows(GetParam(), precision, 41, 50);
    const Objective* objective = c.objective.get();
    const FlatVector& params = c.params;
    const Dataset& data = c.data;
    const std::vector<std::int64_t> rows = {7, 3, 49, 3, 0, 21, 22, 23, 11, 40, 5, 5, 18};
    FlatVector grad_in_place;
    const std::optional<double> in_place =
        objective->EvaluateOnRows(params, data, rows, &grad_in_place);
    // The MLP (a common/nn network) reads rows in place in both
    // precisions; in float64 it is the gathered batch's arithmetic.
    const bool mlp = GetParam().spec.kind == ObjectiveKind::kMlp;
    if (!c.in_place && !mlp) {
      EXPECT_FALSE(in_place.has_value());
      continue;
    }
    ASSERT_TRUE(in_place.has_value());
    Batch gathered;
    GatherBatch(data, rows, gathered);
    FlatVector grad;
    const double loss = objective->Evaluate(params, gathered, &grad);
    constexpr double kTol = 2e-5;
    EXPECT_NEAR(*in_place, loss, kTol * std::max(1.0, std::abs(loss)));
    EXPECT_TRUE(CloseTo(grad_in_place, grad, kTol));
    if (precision == Precision::kFloat32) {
      EXPECT_NE(grad_in_place, grad) << "the float32 step computed in double";
    } else {
      EXPECT_EQ(grad_in_place, grad);
    }
    // Without a gradient: the same loss.
    EXPECT_EQ(objective->EvaluateOnRows(params, data, rows, nullptr), in_place);
  }
}

// Ghost clipping on rows read in place (float32 linear models): delta, the
// per-example squared norms, the loss and weighted sums of the gathered
// float64 batch, to float32's rounding. Other models and float64: false.
TEST_P(ObjectiveCaseTest, OuterProductFactorsOnRowsAgreeWithTheGatheredBatch) {
  for (const Precision precision : {Precision::kFloat64, Precision::kFloat32}) {
    SCOPED_TRACE(precision == Precision::kFloat32 ? "float32" : "float64");
    const StoredRows c = MakeStoredRows(GetParam(), precision, 43, 30);
    const Objective* objective = c.objective.get();
    const FlatVector& params = c.params;
    const Dataset& data = c.data;
    const std::vector<std::int64_t> rows = {4, 29, 0, 4, 17, 8, 9, 10, 2};
    RowMajorMatrixD delta;
    Eigen::VectorXd norms;
    double loss = 0.0;
    const bool in_place =
        objective->OuterProductFactorsOnRows(params, data, rows, delta, norms, loss);
    if (!c.in_place) {
      EXPECT_FALSE(in_place);
      continue;
    }
    ASSERT_TRUE(in_place);
    Batch gathered;
    GatherBatch(data, rows, gathered);
    RowMajorMatrixD delta64;
    Eigen::VectorXd norms64;
    double loss64 = 0.0;
    ASSERT_TRUE(objective->OuterProductFactors(params, gathered, delta64, norms64, loss64));
    constexpr double kTol = 2e-5;
    EXPECT_NEAR(loss, loss64, kTol * std::max(1.0, std::abs(loss64)));
    EXPECT_TRUE(CloseTo(delta, delta64, kTol));
    EXPECT_TRUE(CloseTo(norms, norms64, kTol));
    Eigen::VectorXd weights(static_cast<Eigen::Index>(rows.size()));
    for (Eigen::Index i = 0; i < weights.size(); ++i) weights[i] = 0.1 + 0.2 * (i % 5);
    FlatVector sum, sum64;
    objective->WeightedOuterProductSumOnRows(data, rows, delta, weights, sum);
    objective->WeightedOuterProductSum(gathered, delta64, weights, sum64);
    EXPECT_TRUE(CloseTo(sum, sum64, kTol));
    EXPECT_NE(sum, sum64) << "the weighted sum ran in double";
    // The factors' loss is the in-place training step's.
    EXPECT_EQ(objective->EvaluateOnRows(params, data, rows, nullptr), loss);
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, ObjectiveCaseTest, ::testing::ValuesIn(AllCases()),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      return param_info.param.name;
    });

// ---------------------------------------------------------------------------
// Losses and gradients at hand-computed points.

TEST(ObjectiveLossTest, LeastSquaresByHand) {
  const auto objective =
      MakeOrDie(Spec(ObjectiveKind::kLeastSquares, 2, 0, 0, 0.5));
  ASSERT_NE(objective, nullptr);
  Batch batch;
  batch.x.resize(3, 2);
  batch.x << 1, 0,  //
      0, 1,         //
      1, 1;
  batch.y.resize(3);
  batch.y << 0.0, 1.0, -1.0;
  const FlatVector w = test::Vec({1.0, 2.0});
  // Residuals x.w - y = (1, 1, 4): loss (1 + 1 + 16) / 6 = 3, plus
  // (0.5 / 2) (1 + 4) = 1.25. Gradient X^T r / 3 + 0.5 w = (5/3, 5/3) +
  // (0.5, 1).
  FlatVector gradient;
  EXPECT_NEAR(objective->Evaluate(w, batch, &gradient), 4.25, 1e-15);
  EXPECT_NEAR(gradient[0], 5.0 / 3.0 + 0.5, 1e-15);
  EXPECT_NEAR(gradient[1], 5.0 / 3.0 + 1.0, 1e-15);

  RowMajorMatrixD rows;
  objective->PerExampleGradients(w, batch, rows);
  RowMajorMatrixD expected(3, 2);
  expected << 1, 0,  //
      0, 1,          //
      4, 4;
  EXPECT_EQ(rows, expected);
}

TEST(ObjectiveLossTest, LogisticAtZeroIsLogTwo) {
  const ObjectiveSpec spec = Spec(ObjectiveKind::kLogistic, 4, 2);
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  RngStream rng(3, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 6, rng);
  const FlatVector zero = FlatVector::Zero(5);
  FlatVector gradient;
  EXPECT_DOUBLE_EQ(objective->Evaluate(zero, batch, &gradient), std::log(2.0));
  // sigmoid(0) = 1/2: the gradient is X^T (1/2 - y) / B, and (1/2 - mean y).
  const Eigen::VectorXd s = (0.5 - batch.y.array()).matrix() / 6.0;
  const Eigen::VectorXd expected_w = batch.x.transpose() * s;
  EXPECT_LE((gradient.head(4) - expected_w).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_NEAR(gradient[4], s.sum(), 1e-15);
}

TEST(ObjectiveLossTest, LogisticIsStableForLargeMargins) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kLogistic, 1, 0));
  ASSERT_NE(objective, nullptr);
  Batch batch;
  batch.x.resize(3, 1);
  batch.x << 1000, -1000, 1000;
  batch.y = test::Vec({1.0, 0.0, 0.0});
  const FlatVector params = test::Vec({1.0, 0.0});
  // Losses 0, 0 and 1000 (a confidently wrong prediction); dL/dz = 0, 0, 1.
  FlatVector gradient;
  EXPECT_DOUBLE_EQ(objective->Evaluate(params, batch, &gradient),
                   1000.0 / 3.0);
  EXPECT_DOUBLE_EQ(gradient[0], 1000.0 / 3.0);
  EXPECT_DOUBLE_EQ(gradient[1], 1.0 / 3.0);
}

TEST(ObjectiveLossTest, SoftmaxAndMlpAtZeroAreLogC) {
  for (const ObjectiveSpec& spec :
       {Spec(ObjectiveKind::kSoftmax, 7, 10),
        Spec(ObjectiveKind::kMlp, 7, 10, 3),
        Spec(ObjectiveKind::kSoftmax, 3, 2)}) {
    const auto objective = MakeOrDie(spec);
    ASSERT_NE(objective, nullptr);
    RngStream rng(5, RngPurpose::kTest, -1, 0);
    const Batch batch = RandomBatch(spec, 4, rng);
    const FlatVector zero = FlatVector::Zero(objective->NumParameters());
    // Every logit is 0, so each example contributes exactly log C; four equal
    // terms sum and divide exactly.
    EXPECT_EQ(objective->Evaluate(zero, batch, nullptr),
              std::log(static_cast<double>(spec.num_classes)));
  }
}

TEST(ObjectiveLossTest, SoftmaxLayoutIsColumnMajorThenBias) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kSoftmax, 2, 3));
  ASSERT_NE(objective, nullptr);
  ASSERT_EQ(objective->NumParameters(), 9);
  // W(j, c) at c * 2 + j: W(0, c) = c, W(1, c) = 100 (multiplies x_1 = 0),
  // biases (0.25, 0, -0.25).
  FlatVector params(9);
  params << 0, 100, 1, 100, 2, 100, 0.25, 0, -0.25;
  Batch batch;
  batch.x.resize(1, 2);
  batch.x << 1, 0;
  batch.y = Eigen::VectorXd::Constant(1, 1.0);
  const Eigen::Vector3d logits(0.25, 1.0, 1.75);
  const double lse = std::log(logits.array().exp().sum());
  FlatVector gradient;
  EXPECT_NEAR(objective->Evaluate(params, batch, &gradient), lse - 1.0, 1e-15);
  Eigen::Vector3d g = (logits.array() - lse).exp();
  g[1] -= 1.0;
  FlatVector expected(9);
  expected << g[0], 0, g[1], 0, g[2], 0, g[0], g[1], g[2];
  EXPECT_LE((gradient - expected).cwiseAbs().maxCoeff(), 1e-15);

  RowMajorMatrixD rows;
  objective->PerExampleGradients(params, batch, rows);
  EXPECT_LE((rows.row(0).transpose() - expected).cwiseAbs().maxCoeff(), 1e-15);
}

TEST(ObjectiveLossTest, SoftmaxIsStableForHugeLogits) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kSoftmax, 1, 2));
  ASSERT_NE(objective, nullptr);
  const FlatVector params = test::Vec({1e4, 0.0, 0.0, 0.0});
  Batch batch;
  batch.x = RowMajorMatrixD::Constant(1, 1, 1.0);
  batch.y = Eigen::VectorXd::Constant(1, 1.0);
  // Logits (1e4, 0) with label 1: loss 1e4, P - Y = (1, -1).
  FlatVector gradient;
  EXPECT_EQ(objective->Evaluate(params, batch, &gradient), 1e4);
  EXPECT_EQ(gradient, test::Vec({1.0, -1.0, 1.0, -1.0}));
}

TEST(ObjectiveLossTest, MlpByHand) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kMlp, 1, 2, 1));
  ASSERT_NE(objective, nullptr);
  ASSERT_EQ(objective->NumParameters(), 6);
  // [W1, b1, W2(0,0), W2(0,1), b2(0), b2(1)].
  FlatVector params(6);
  params << 1.5, -1.0, 1.0, -1.0, 0.25, -0.25;
  Batch batch;
  batch.x = RowMajorMatrixD::Constant(1, 1, 2.0);
  batch.y = Eigen::VectorXd::Constant(1, 0.0);
  // Hidden a = relu(2 * 1.5 - 1) = 2; logits (2.25, -2.25); q = P(class 1).
  const double q = 1.0 / (1.0 + std::exp(4.5));
  FlatVector gradient;
  EXPECT_NEAR(objective->Evaluate(params, batch, &gradient),
              std::log1p(std::exp(-4.5)), 1e-15);
  // g = (-q, q); dW2 = a g; delta = g W2^T = -2q; dW1 = x delta; db1 = delta.
  FlatVector expected(6);
  expected << -4 * q, -2 * q, -2 * q, 2 * q, -q, q;
  EXPECT_LE((gradient - expected).cwiseAbs().maxCoeff(), 1e-15);
}

TEST(ObjectiveLossTest, MlpReluDerivativeAtZeroIsZero) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kMlp, 1, 2, 1));
  ASSERT_NE(objective, nullptr);
  FlatVector params(6);
  params << 0.5, -1.0, 1.0, -1.0, 0.0, 0.0;  // pre-activation 2 * 0.5 - 1 = 0
  Batch batch;
  batch.x = RowMajorMatrixD::Constant(1, 1, 2.0);
  batch.y = Eigen::VectorXd::Constant(1, 1.0);
  FlatVector gradient;
  EXPECT_EQ(objective->Evaluate(params, batch, &gradient), std::log(2.0));
  EXPECT_EQ(gradient[0], 0.0);
  EXPECT_EQ(gradient[1], 0.0);
  RowMajorMatrixD rows;
  objective->PerExampleGradients(params, batch, rows);
  EXPECT_EQ(rows(0, 0), 0.0);
  EXPECT_EQ(rows(0, 1), 0.0);
}

// ---------------------------------------------------------------------------
// Predictions.

TEST(ObjectiveNumCorrectTest, SoftmaxArgMaxWithLowestIndexOnTies) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kSoftmax, 2, 3));
  ASSERT_NE(objective, nullptr);
  EXPECT_TRUE(objective->IsClassifier());
  // Logits (x_0, x_1, 0.5).
  FlatVector params = FlatVector::Zero(9);
  params[0] = 1.0;  // W(0, 0)
  params[3] = 1.0;  // W(1, 1)
  params[8] = 0.5;  // b(2)
  Batch batch;
  batch.x.resize(5, 2);
  batch.x << 2, 0,  // predicts 0
      0, 2,         // predicts 1
      0, 0,         // predicts 2
      1, 1,         // tie between 0 and 1: predicts 0
      3, 3;         // same
  batch.y.resize(5);
  batch.y << 0, 1, 0, 0, 0;
  EXPECT_EQ(objective->NumCorrect(params, batch), 4);
}

TEST(ObjectiveNumCorrectTest, LogisticPredictsOneOnlyForPositiveMargin) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kLogistic, 1, 2));
  ASSERT_NE(objective, nullptr);
  EXPECT_TRUE(objective->IsClassifier());
  const FlatVector params = test::Vec({1.0, 0.0});
  Batch batch;
  batch.x.resize(4, 1);
  batch.x << 1, -1, 0, 2;  // predictions 1, 0, 0 (z = 0), 1
  batch.y = test::Vec({1, 0, 1, 0});
  EXPECT_EQ(objective->NumCorrect(params, batch), 2);
}

TEST(ObjectiveNumCorrectTest, MlpAtZeroPredictsClassZero) {
  const ObjectiveSpec spec = Spec(ObjectiveKind::kMlp, 3, 4, 2);
  const auto objective = MakeOrDie(spec);
  ASSERT_NE(objective, nullptr);
  EXPECT_TRUE(objective->IsClassifier());
  RngStream rng(7, RngPurpose::kTest, -1, 0);
  const Batch batch = RandomBatch(spec, 40, rng);
  const auto zeros = (batch.y.array() == 0.0).count();
  ASSERT_GT(zeros, 0);
  EXPECT_EQ(objective->NumCorrect(FlatVector::Zero(objective->NumParameters()),
                                  batch),
            zeros);
}

TEST(ObjectiveNumCorrectTest, LeastSquaresIsRegression) {
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kLeastSquares, 2));
  ASSERT_NE(objective, nullptr);
  EXPECT_FALSE(objective->IsClassifier());
  Batch batch;
  batch.x = RowMajorMatrixD::Zero(2, 2);
  batch.y = FlatVector::Zero(2);
  EXPECT_EQ(objective->NumCorrect(FlatVector::Zero(2), batch), 0);
}

// ---------------------------------------------------------------------------
// MakeObjective.

TEST(MakeObjectiveTest, ParameterCounts) {
  struct Expected {
    ObjectiveSpec spec;
    std::int64_t count;
  };
  for (const Expected& e : {
           Expected{Spec(ObjectiveKind::kLeastSquares, 100), 100},
           Expected{Spec(ObjectiveKind::kLogistic, 784, 0), 785},
           Expected{Spec(ObjectiveKind::kLogistic, 784, 2), 785},
           Expected{Spec(ObjectiveKind::kSoftmax, 784, 10), 7850},
           Expected{Spec(ObjectiveKind::kMlp, 784, 10, 200), 159010},
       }) {
    const auto objective = MakeOrDie(e.spec);
    ASSERT_NE(objective, nullptr);
    EXPECT_EQ(objective->NumParameters(), e.count);
  }
}

TEST(MakeObjectiveTest, RejectsBadSpecsNamingTheField) {
  const double nan = std::nan("");
  const double inf = std::numeric_limits<double>::infinity();
  struct Bad {
    ObjectiveSpec spec;
    const char* message;
  };
  for (const Bad& bad : {
           Bad{Spec(ObjectiveKind::kLeastSquares, 0),
               "model.num_features = 0; must be >= 1"},
           Bad{Spec(ObjectiveKind::kSoftmax, -3, 10),
               "model.num_features = -3; must be >= 1"},
           Bad{Spec(ObjectiveKind::kSoftmax, 10, 1),
               "model.num_classes = 1; must be >= 2"},
           Bad{Spec(ObjectiveKind::kMlp, 10, 0, 5),
               "model.num_classes = 0; must be >= 2"},
           Bad{Spec(ObjectiveKind::kLogistic, 10, 3), "model.num_classes = 3"},
           Bad{Spec(ObjectiveKind::kLogistic, 10, 1), "model.num_classes = 1"},
           Bad{Spec(ObjectiveKind::kMlp, 10, 10, 0),
               "model.hidden_units = 0; must be >= 1"},
           Bad{Spec(ObjectiveKind::kMlp, 10, 10, -2),
               "model.hidden_units = -2; must be >= 1"},
           Bad{Spec(ObjectiveKind::kSoftmax, 10, 10, 0, -0.1),
               "model.l2 = -0.1; must be finite and >= 0"},
           Bad{Spec(ObjectiveKind::kSoftmax, 10, 10, 0, nan), "model.l2 = nan"},
           Bad{Spec(ObjectiveKind::kSoftmax, 10, 10, 0, inf), "model.l2 = inf"},
           Bad{Spec(static_cast<ObjectiveKind>(42), 10, 10), "model.kind = 42"},
           Bad{Spec(ObjectiveKind::kSoftmax, std::int64_t{1} << 40, 10),
               "parameters"},
       }) {
    const auto objective = MakeObjective(bad.spec);
    ASSERT_FALSE(objective.ok()) << bad.message;
    EXPECT_EQ(objective.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(objective.status().message());
    EXPECT_THAT(message, HasSubstr(bad.message));
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(MakeObjectiveTest, IgnoresFieldsTheKindDoesNotUse) {
  // Linear kinds ignore hidden_units; least squares ignores num_classes.
  EXPECT_TRUE(MakeObjective(Spec(ObjectiveKind::kLeastSquares, 3, 7, -1)).ok());
  EXPECT_TRUE(MakeObjective(Spec(ObjectiveKind::kSoftmax, 3, 7, -1)).ok());
}

// ---------------------------------------------------------------------------
// Initialize.

TEST(ObjectiveInitializeTest, LinearModelsStartAtZero) {
  for (const ObjectiveSpec& spec : {Spec(ObjectiveKind::kLeastSquares, 5),
                                    Spec(ObjectiveKind::kLogistic, 5, 2),
                                    Spec(ObjectiveKind::kSoftmax, 5, 3)}) {
    const auto objective = MakeOrDie(spec);
    ASSERT_NE(objective, nullptr);
    RngStream rng(1, RngPurpose::kModelInit, -1, -1);
    FlatVector params = FlatVector::Constant(2, 7.0);  // resized
    objective->Initialize(params, rng);
    EXPECT_EQ(params, FlatVector::Zero(objective->NumParameters()));
  }
}

TEST(ObjectiveInitializeTest, MlpIsDeterministicHeInitInParameterOrder) {
  const std::int64_t d = 784;
  const int h = 64;
  const int c = 10;
  const auto objective = MakeOrDie(Spec(ObjectiveKind::kMlp, d, c, h));
  ASSERT_NE(objective, nullptr);
  RngStream rng_a(9, RngPurpose::kTest, -1, -1);
  RngStream rng_b(9, RngPurpose::kTest, -1, -1);
  RngStream rng_other(10, RngPurpose::kTest, -1, -1);
  FlatVector a;
  FlatVector b;
  FlatVector other;
  objective->Initialize(a, rng_a);
  objective->Initialize(b, rng_b);
  objective->Initialize(other, rng_other);
  ASSERT_EQ(a.size(), objective->NumParameters());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);

  // W1 then W2 from one stream, in index order; biases zero.
  RngStream replay(9, RngPurpose::kTest, -1, -1);
  const double scale1 = std::sqrt(2.0 / d);
  const double scale2 = std::sqrt(2.0 / h);
  const std::int64_t b1 = d * h;
  const std::int64_t w2 = b1 + h;
  const std::int64_t b2 = w2 + h * c;
  for (std::int64_t k = 0; k < b1; ++k) {
    ASSERT_EQ(a[k], scale1 * replay.Gaussian()) << k;
  }
  EXPECT_EQ(a.segment(b1, h), FlatVector::Zero(h));
  for (std::int64_t k = w2; k < b2; ++k) {
    ASSERT_EQ(a[k], scale2 * replay.Gaussian()) << k;
  }
  EXPECT_EQ(a.tail(c), FlatVector::Zero(c));

  // Sample variance of W1 (50,176 draws) near 2/d: its relative standard
  // error is sqrt(2/n), about 0.6%.
  const Eigen::VectorXd w1 = a.head(b1);
  const double variance = w1.squaredNorm() / static_cast<double>(b1);
  EXPECT_NEAR(variance, 2.0 / d, 0.05 * 2.0 / d);
}

}  // namespace
}  // namespace objectives_test
}  // namespace fedsim
