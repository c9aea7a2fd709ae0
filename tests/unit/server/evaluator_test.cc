// Tests of server/coordinator/evaluator.h: the global model's loss and
// accuracy over a data set, the same bits for any thread count, equal (to
// rounding) to the objective evaluated on all rows at once, on the in-place
// path (softmax, least squares) and on the float64 copies of an objective
// without one.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"
#include "gtest/gtest.h"
#include "server/coordinator/evaluator.h"
#include "tests/testing/datasets.h"

namespace fedsim {
namespace evaluator_test {
namespace {

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// n rows (more than two chunks, the last partial), d features.
Dataset RandomData(std::int64_t n, std::int64_t d, int classes) {
  RngStream rng(3, RngPurpose::kTest, -1, 0);
  return test::GaussianRows(n, d, classes, rng);
}

// An objective without the in-place evaluation path: `inner`'s values
// through the base class's defaults (the evaluator copies rows to float64).
class GatherOnly final : public Objective {
 public:
  explicit GatherOnly(std::unique_ptr<Objective> inner) : inner_(std::move(inner)) {}
  std::int64_t NumParameters() const override { return inner_->NumParameters(); }
  Precision precision() const override { return inner_->precision(); }
  double Evaluate(const FlatVector& params, const Batch& batch,
                  FlatVector* gradient) const override {
    return inner_->Evaluate(params, batch, gradient);
  }
  double Evaluate(const FlatVector& params, const BatchF& batch,
                  FlatVector* gradient) const override {
    return inner_->Evaluate(params, batch, gradient);
  }
  void PerExampleGradients(const FlatVector& params, const Batch& batch,
                           RowMajorMatrixD& gradients) const override {
    inner_->PerExampleGradients(params, batch, gradients);
  }
  void PerExampleGradients(const FlatVector& params, const BatchF& batch,
                           RowMajorMatrixF& gradients) const override {
    inner_->PerExampleGradients(params, batch, gradients);
  }
  std::int64_t NumCorrect(const FlatVector& params, const Batch& batch) const override {
    return inner_->NumCorrect(params, batch);
  }
  void Initialize(FlatVector& params, RngStream& rng) const override {
    inner_->Initialize(params, rng);
  }
  bool IsClassifier() const override { return inner_->IsClassifier(); }

 private:
  std::unique_ptr<Objective> inner_;
};

void ExpectEvaluatorContract(ObjectiveKind kind, int classes, bool gather_only) {
  const std::int64_t n = 2 * kEvalChunk + 300, d = 30;
  const Dataset data = RandomData(n, d, classes);
  ObjectiveSpec spec;
  spec.kind = kind;
  spec.num_features = d;
  spec.num_classes = classes;
  spec.l2 = 0.01;
  absl::StatusOr<std::unique_ptr<Objective>> objective = MakeObjective(spec);
  ASSERT_TRUE(objective.ok()) << objective.status();
  if (gather_only) *objective = std::make_unique<GatherOnly>(*std::move(objective));
  {
    std::int64_t ignored = 0;
    EXPECT_EQ((*objective)->EvaluateRowsWithCorrect(FlatVector::Zero((*objective)->NumParameters()),
                                                    data, 0, 1, ignored)
                  .has_value(),
              !gather_only);
  }
  RngStream rng(5, RngPurpose::kTest, -1, 0);
  FlatVector params((*objective)->NumParameters());
  for (Eigen::Index k = 0; k < params.size(); ++k) params[k] = 0.3 * rng.Gaussian();

  const Evaluation one = EvaluateModel(**objective, data, params, 1);
  for (int threads : {2, 3}) {
    const Evaluation many = EvaluateModel(**objective, data, params, threads);
    EXPECT_TRUE(SameBits(one.loss, many.loss)) << threads << " threads";
    EXPECT_TRUE(SameBits(one.accuracy, many.accuracy) ||
                (std::isnan(one.accuracy) && std::isnan(many.accuracy)))
        << threads << " threads";
  }
  // All rows as one batch: the same mean loss (the L2 term once) and hits.
  Batch all;
  GatherRange(data, 0, n, all);
  std::int64_t correct = 0;
  const double loss = (*objective)->EvaluateWithCorrect(params, all, correct);
  EXPECT_NEAR(one.loss, loss, 1e-13 * std::abs(loss));
  if (classes > 0) {
    EXPECT_EQ(one.accuracy, static_cast<double>(correct) / static_cast<double>(n));
  } else {
    EXPECT_TRUE(std::isnan(one.accuracy));
  }
}

TEST(EvaluatorTest, SoftmaxInPlaceIsThreadInvariantAndAgreesWithOneBatch) {
  ExpectEvaluatorContract(ObjectiveKind::kSoftmax, 7, /*gather_only=*/false);
}

TEST(EvaluatorTest, LeastSquaresInPlaceIsThreadInvariantAndAgreesWithOneBatch) {
  ExpectEvaluatorContract(ObjectiveKind::kLeastSquares, 0, /*gather_only=*/false);
}

TEST(EvaluatorTest, GatheredRowsAreThreadInvariantAndAgreeWithOneBatch) {
  ExpectEvaluatorContract(ObjectiveKind::kSoftmax, 7, /*gather_only=*/true);
}

TEST(EvaluatorTest, EmptyDataGivesNaN) {
  ObjectiveSpec spec;
  spec.kind = ObjectiveKind::kSoftmax;
  spec.num_features = 3;
  spec.num_classes = 2;
  const auto objective = MakeObjective(spec);
  ASSERT_TRUE(objective.ok());
  Dataset empty;
  empty.features.resize(0, 3);
  empty.num_classes = 2;
  const Evaluation e =
      EvaluateModel(**objective, empty, FlatVector::Zero((*objective)->NumParameters()), 2);
  EXPECT_TRUE(std::isnan(e.loss));
  EXPECT_TRUE(std::isnan(e.accuracy));
}

}  // namespace
}  // namespace evaluator_test
}  // namespace fedsim
