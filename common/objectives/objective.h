// File: common/objectives/objective.h
//
// The pure numerical interface of a model: loss, gradient and accuracy of a
// flat parameter vector on a mini-batch (in the spirit of Ceres'
// FirstOrderFunction). No I/O, no threads, no allocation policy beyond
// resizing the outputs it is handed.
//
// Every objective is the mean of a per-example loss over the batch, plus an
// optional L2 term (l2 / 2) * ||params||^2 that is added once per batch.
//
// Precision (model.precision, docs/architecture.md "Precision"): the
// parameters, gradients and losses at this interface are double in both
// precisions. What a precision selects is the arithmetic of the local
// computation: every method taking a Batch computes in float64; every
// method taking a BatchF (float32 rows) converts the parameters to float32
// once, runs the matrix products in float32, and returns the gradient
// converted to double (per-example losses and the softmax are still
// evaluated in double, a few values per example). `precision()` tells the
// trainers which of the two to use; both work on every objective.
//
// Thread safety: Objective methods are const and may be called concurrently.
#ifndef FEDSIM_COMMON_OBJECTIVES_OBJECTIVE_H_
#define FEDSIM_COMMON_OBJECTIVES_OBJECTIVE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "common/base/types.h"
#include "common/base/check.h"
#include "common/data/dataset.h"
#include "common/random/stream.h"

namespace fedsim {
namespace nn {
class Network;
}  // namespace nn

enum class Precision { kFloat64, kFloat32 };

class Objective {
 public:
  virtual ~Objective() = default;

  // The precision local training computes in (ObjectiveSpec::precision).
  virtual Precision precision() const = 0;

  // Length of the flat parameter vector.
  virtual std::int64_t NumParameters() const = 0;

  // Returns the mean loss over `batch` (plus the L2 term). If `gradient` is
  // not null, resizes it to NumParameters() and writes the gradient of that
  // same quantity. REQUIRES: params.size() == NumParameters(), batch.size() > 0.
  virtual double Evaluate(const FlatVector& params, const Batch& batch,
                          FlatVector* gradient) const = 0;
  virtual double Evaluate(const FlatVector& params, const BatchF& batch,
                          FlatVector* gradient) const = 0;

  // Per-example gradients of the per-example loss (without the L2 term),
  // one row per example: gradients is resized to batch.size() x
  // NumParameters(). Computed in matrix form, not by looping Evaluate.
  virtual void PerExampleGradients(const FlatVector& params, const Batch& batch,
                                   RowMajorMatrixD& gradients) const = 0;
  virtual void PerExampleGradients(const FlatVector& params, const BatchF& batch,
                                   RowMajorMatrixF& gradients) const = 0;

  // Ghost clipping (docs/dp.md): for a model whose per-example gradient
  // (without the L2 term) is an outer product, g_i = delta_i (x) [x_i; 1]
  // (least squares: delta_i (x) x_i, no bias), writes delta (B x k; k =
  // the classes of softmax regression, 1 otherwise) and ||g_i||^2 per
  // example into `squared_norms`, sets `loss` to exactly what
  // Evaluate(params, batch, nullptr) returns, and returns true; the B x
  // NumParameters() matrix is never formed. Other models (the MLP) return
  // false and write nothing.
  virtual bool OuterProductFactors(const FlatVector& params, const Batch& batch,
                                   RowMajorMatrixD& delta,
                                   Eigen::VectorXd& squared_norms,
                                   double& loss) const {
    (void)params, (void)batch, (void)delta, (void)squared_norms, (void)loss;
    return false;
  }
  virtual bool OuterProductFactors(const FlatVector& params, const BatchF& batch,
                                   RowMajorMatrixF& delta,
                                   Eigen::VectorXd& squared_norms,
                                   double& loss) const {
    (void)params, (void)batch, (void)delta, (void)squared_norms, (void)loss;
    return false;
  }

  // sum_i weights_i g_i, from the `delta` OuterProductFactors wrote for
  // `batch`, into `out` (resized to NumParameters()).
  // REQUIRES: OuterProductFactors returned true for this model.
  virtual void WeightedOuterProductSum(const Batch& batch, const RowMajorMatrixD& delta,
                                       const Eigen::VectorXd& weights,
                                       FlatVector& out) const;
  virtual void WeightedOuterProductSum(const BatchF& batch, const RowMajorMatrixF& delta,
                                       const Eigen::VectorXd& weights,
                                       FlatVector& out) const;

  // OuterProductFactors and WeightedOuterProductSum for `rows` of `data`
  // read where they are stored (no gathered batch), for objectives with
  // such a path: the float32 linear models (softmax, logistic), on the
  // kernels of EvaluateOnRows; delta in float64. false otherwise (write
  // nothing; the caller gathers a batch). The values equal those of the
  // gathered batch up to float32 rounding.
  virtual bool OuterProductFactorsOnRows(const FlatVector& params, const Dataset& data,
                                         std::span<const std::int64_t> rows,
                                         RowMajorMatrixD& delta,
                                         Eigen::VectorXd& squared_norms, double& loss) const {
    (void)params, (void)data, (void)rows, (void)delta, (void)squared_norms, (void)loss;
    return false;
  }
  // REQUIRES: OuterProductFactorsOnRows returned true for these rows.
  virtual void WeightedOuterProductSumOnRows(const Dataset& data,
                                             std::span<const std::int64_t> rows,
                                             const RowMajorMatrixD& delta,
                                             const Eigen::VectorXd& weights,
                                             FlatVector& out) const {
    (void)data, (void)rows, (void)delta, (void)weights, (void)out;
    FEDSIM_CHECK(false) << "no in-place outer-product path";
  }
  // Ghost clipping for networks (docs/dp.md, "Ghost clipping"), with g_i
  // example i's gradient of its own loss (no L2 term, as
  // PerExampleGradients): computes ||g_i||^2 without forming g_i
  // (nn::Network::SquaredGradientNorms), lets `factors_of` turn a chunk of
  // them into clip factors f_i (element by element), and writes
  // clipped = sum_i f_i g_i and, if `rest` is not null, rest = sum_i (1 -
  // f_i) g_i (DiceSGD's residual), each from the layers' output gradients
  // that pass kept, scaled per example (nn::Network::WeightedGradient; no
  // second backward pass); `factors` gets every f_i and `loss`
  // what Evaluate(params, batch, nullptr) returns, bit for bit. Returns
  // true; models without this path (the linear ones, whose gradients are
  // outer products: OuterProductFactors) return false and write nothing.
  using FactorsOf =
      absl::FunctionRef<void(const Eigen::VectorXd& squared_norms, Eigen::VectorXd& factors)>;
  virtual bool GhostClippedSums(const FlatVector& params, const Batch& batch,
                                FactorsOf factors_of, FlatVector& clipped, FlatVector* rest,
                                Eigen::VectorXd& factors, double& loss) const {
    (void)params, (void)batch, (void)factors_of, (void)clipped, (void)rest, (void)factors,
        (void)loss;
    return false;
  }
  virtual bool GhostClippedSums(const FlatVector& params, const BatchF& batch,
                                FactorsOf factors_of, FlatVector& clipped, FlatVector* rest,
                                Eigen::VectorXd& factors, double& loss) const {
    (void)params, (void)batch, (void)factors_of, (void)clipped, (void)rest, (void)factors,
        (void)loss;
    return false;
  }

  // Number of examples of `batch` whose predicted class equals the label.
  // Regression objectives return 0.
  virtual std::int64_t NumCorrect(const FlatVector& params,
                                  const Batch& batch) const = 0;

  // Evaluate(params, batch, nullptr) and NumCorrect(params, batch) at once,
  // bit for bit the same values; a classifier computes its forward pass
  // once instead of twice (the evaluation of a round's global model).
  virtual double EvaluateWithCorrect(const FlatVector& params, const Batch& batch,
                                     std::int64_t& num_correct) const {
    num_correct = NumCorrect(params, batch);
    return Evaluate(params, batch, nullptr);
  }

  // EvaluateWithCorrect on rows [begin, end) of `data`, read where they
  // are stored (float32, no float64 copy), for objectives with such a path
  // (all built-in ones: the linear models' forward pass goes through
  // common/kernels/linear_rows.h, whose float32 kernel serves float32
  // models, and their losses and softmax are float64 in both precisions;
  // networks and the MLP copy each chunk of rows once into their first
  // layer's input, common/nn); nullopt by
  // default, and the caller then gathers a Batch. The values equal EvaluateWithCorrect's on the gathered
  // rows up to rounding, not bit for bit: the forward pass sums in feature
  // order, Eigen's GEMM in its own blocks.
  // REQUIRES: 0 <= begin < end <= data.size(), data.dim() features.
  virtual std::optional<double> EvaluateRowsWithCorrect(const FlatVector& params,
                                                        const Dataset& data,
                                                        std::int64_t begin, std::int64_t end,
                                                        std::int64_t& num_correct) const {
    (void)params, (void)data, (void)begin, (void)end, (void)num_correct;
    return std::nullopt;
  }

  // Evaluate(params, batch of `rows` of `data`, gradient) for a training
  // step, reading the rows where they are stored (no gathered batch, no
  // GEMM packing), for objectives with such a path: the float32 linear
  // models (softmax and logistic regression, common/kernels/linear_rows.h:
  // logits as the float32 evaluator computes them, the loss and softmax in
  // float64, the weight gradient summed in float32 in row order, the bias
  // gradient in float64). nullopt otherwise; the caller then gathers a
  // batch and calls Evaluate. The values equal Evaluate's on the gathered
  // rows up to float32 rounding, not bit for bit.
  // REQUIRES: rows non-empty, each in [0, data.size()).
  virtual std::optional<double> EvaluateOnRows(const FlatVector& params, const Dataset& data,
                                               std::span<const std::int64_t> rows,
                                               FlatVector* gradient) const {
    (void)params, (void)data, (void)rows, (void)gradient;
    return std::nullopt;
  }
  // EvaluateOnRows for a training step: a model with random layers
  // (a network's Dropout) draws them from `rng`, the task's stream; the
  // others ignore it and draw nothing (their runs keep their bits).
  virtual std::optional<double> TrainOnRows(const FlatVector& params, const Dataset& data,
                                            std::span<const std::int64_t> rows,
                                            FlatVector* gradient, RngStream& rng) const {
    (void)rng;
    return EvaluateOnRows(params, data, rows, gradient);
  }

  // The network of a neural-network model (common/nn/network.h), null for
  // the others.
  virtual const nn::Network* network() const { return nullptr; }

  // Writes the initial parameters. Linear models start at zero; the MLP uses
  // a scaled Gaussian (He) initialisation drawn from `rng`.
  virtual void Initialize(FlatVector& params, RngStream& rng) const = 0;

  // True for classification objectives (accuracy is meaningful).
  virtual bool IsClassifier() const = 0;
};

enum class ObjectiveKind { kLeastSquares, kLogistic, kSoftmax, kMlp };

struct ObjectiveSpec {
  ObjectiveKind kind = ObjectiveKind::kSoftmax;
  std::int64_t num_features = 0;  // d
  int num_classes = 0;            // C (softmax, mlp); 2 for logistic
  int hidden_units = 0;           // mlp only
  double l2 = 0.0;                // coefficient of (l2 / 2) ||params||^2
  Precision precision = Precision::kFloat64;  // of local training
};

// Builds the objective. Fails with kInvalidArgument if the spec does not fit
// the kind (for example a softmax with fewer than 2 classes).
absl::StatusOr<std::unique_ptr<Objective>> MakeObjective(
    const ObjectiveSpec& spec);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_OBJECTIVES_OBJECTIVE_H_
