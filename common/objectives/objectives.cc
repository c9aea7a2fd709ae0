// File: common/objectives/objectives.cc
//
// The objectives of objective.h (the MLP through common/nn/network.h). Notation: B = batch size, d = number of
// features, C = number of classes, h = hidden units, X = batch.x (B x d, row
// major), y = batch.y.
//
// Parameter layouts (part of the numerical contract: checkpoints, synthetic
// optima and every strategy index the flat vector this way):
//
//   kLeastSquares  [w (d)]                                         d values
//   kLogistic      [w (d), b (1)]                                  d + 1
//   kSoftmax       [W (d x C), b (C)]                              d*C + C
//   kMlp           [W1 (d x h), b1 (h), W2 (h x C), b2 (C)]        d*h + h +
//                                                                  h*C + C
//                  (computed by common/nn as the network linear(h), relu,
//                  linear(C): W1 column-major d x h is PyTorch's h x d
//                  row-major Linear weight, the same memory)
//
// Every matrix is stored column-major: W(j, c) is at offset c * d + j of its
// block, so column c (the weights of class c, or of hidden unit c) is
// contiguous. The matrices are viewed in place through Eigen::Map.
//
// Per-example losses (the objective is their mean plus (l2 / 2) ||params||^2):
//
//   kLeastSquares  (1/2) (x_i . w - y_i)^2; regression, NumCorrect is 0.
//   kLogistic      softplus(z_i) - y_i z_i, z_i = x_i . w + b, y_i in {0, 1};
//                  predicts class 1 iff z_i > 0.
//   kSoftmax       -log softmax(x_i W + b)[y_i]; predicts the arg max of the
//                  logits, the lowest class index on ties.
//   kMlp           softmax cross-entropy of the logits relu(x_i W1 + b1) W2 +
//                  b2, with relu'(0) = 0; predicts as kSoftmax.
//
// A per-example gradient row follows the same layout. For a linear layer
// with input a_i and output gradient g_i its weight block is the outer
// product a_i g_i^T in column-major order, that is the row a_i ⊗ g_i (block
// c holds g_ic * a_i), computed for all examples at once as
// diag(G.col(c)) * A.
//
// Numerics. Softplus and log-sum-exp are evaluated in their stable forms.
// Transcendental functions are called per element through std:: (not
// Eigen's packet versions), so an example's loss does not depend on its
// position in the batch or on the SIMD width. Scratch matrices are allocated
// per call (a few B x C and B x h blocks, small next to the B x d products);
// keeping them in the objective would break concurrent const calls.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "Eigen/Core"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/check.h"
#include "common/base/types.h"
#include "common/data/dataset.h"
#include "common/kernels/linear_rows.h"
#include "common/kernels/vector_ops.h"
#include "common/objectives/objective.h"
#include "common/nn/network.h"
#include "common/objectives/network_objective.h"
#include "common/random/stream.h"

namespace fedsim {
namespace {

using Eigen::Index;
using ConstMatrixMap = Eigen::Map<const Eigen::MatrixXd>;
using MatrixMap = Eigen::Map<Eigen::MatrixXd>;

// Types in the compute precision T (double or float).
template <typename T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMatMap = Eigen::Map<const ColMat<T>>;
template <typename T>
using MatMap = Eigen::Map<ColMat<T>>;
template <typename T>
using ConstVecMap = Eigen::Map<const Vec<T>>;

// The parameters in precision T: `params` itself for double (a reference,
// so that the float64 path is the very expression it always was), a float
// copy otherwise (converted once per call, P values).
template <typename T>
decltype(auto) ParamsIn(const FlatVector& params) {
  if constexpr (std::is_same_v<T, double>) {
    return (params);
  } else {
    return Vec<T>(params.template cast<T>());
  }
}

// Where a gradient computed in precision T goes: the caller's vector for
// double, a float buffer converted into it by Finish() otherwise.
template <typename T>
class GradientIn {
 public:
  GradientIn(FlatVector& out, Index n) : out_(out) {
    if constexpr (std::is_same_v<T, double>) {
      out_.resize(n);
    } else {
      buffer_.resize(n);
    }
  }
  Vec<T>& vec() {
    if constexpr (std::is_same_v<T, double>) {
      return out_;
    } else {
      return buffer_;
    }
  }
  void Finish() {
    if constexpr (!std::is_same_v<T, double>) out_ = buffer_.template cast<double>();
  }

 private:
  FlatVector& out_;
  Vec<T> buffer_;  // float only
};

// ||x_i||^2 of every row, in double: Eigen's own row norms for double
// rows (the float64 path as it always was), 8-lane double sums for float32
// rows, so that ghost clipping's norms (and its clipping decisions) are as
// exact in float32 as the per-example path's (dp/mechanisms.h).
template <typename T>
Eigen::VectorXd RowSquaredNorms(const RowMat<T>& x) {
  if constexpr (std::is_same_v<T, double>) {
    return x.rowwise().squaredNorm();
  } else {
    Eigen::VectorXd norms(x.rows());
    for (Index i = 0; i < x.rows(); ++i) norms[i] = SquaredNormInDouble(x.row(i).data(), x.cols());
    return norms;
  }
}

// Limit on the parameter count accepted by MakeObjective: 2^40 doubles is
// 8 TiB, far beyond any model fedsim runs, and keeps the count products
// clear of int64 overflow.
constexpr double kMaxParameters = 1099511627776.0;  // 2^40

// softplus(z) = log(1 + e^z) without overflow for large |z| and without
// losing the small tail for very negative z.
inline double Softplus(double z) {
  return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z)));
}

// 1 / (1 + e^-z), never evaluating e^t for t > 0.
inline double Sigmoid(double z) {
  if (z >= 0.0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

// The class index stored in a label. Loaders and generators validate labels,
// so a bad one here is a broken invariant (and would index out of bounds).
inline Index ClassOf(double label, int num_classes) {
  FEDSIM_CHECK(label >= 0.0 && label < num_classes &&
               label == std::trunc(label))
      << "label " << label << " is not a class index in [0, " << num_classes
      << ")";
  return static_cast<Index>(label);
}

// The arg max of a row of logits, the lowest index on ties.
template <typename T>
inline Index ArgMax(const T* row, Index num_classes) {
  Index best = 0;
  for (Index c = 1; c < num_classes; ++c) {
    if (row[c] > row[best]) best = c;
  }
  return best;
}

// Replaces each row of `logits` (B x C) by softmax(row) - onehot(y_i) and
// returns the summed cross-entropy sum_i -log softmax(row_i)[y_i]. The
// exponentials, their sum and the log are taken in double in both
// precisions (B x C values, next to the B x d x C of the products).
template <typename T>
double SoftmaxCrossEntropyInPlace(const Eigen::VectorXd& labels, RowMat<T>& logits) {
  const Index num_rows = logits.rows();
  const Index num_classes = logits.cols();
  double total = 0.0;
  for (Index i = 0; i < num_rows; ++i) {
    T* row = logits.row(i).data();
    const Index label = ClassOf(labels[i], static_cast<int>(num_classes));
    const double max = row[ArgMax(row, num_classes)];
    const double shifted_label_logit = static_cast<double>(row[label]) - max;
    double sum = 0.0;
    for (Index c = 0; c < num_classes; ++c) {
      const double e = std::exp(static_cast<double>(row[c]) - max);
      row[c] = static_cast<T>(e);
      sum += e;
    }
    // sum >= 1 (the max term is e^0), so the log is finite.
    total += std::log(sum) - shifted_label_logit;
    const double inv_sum = 1.0 / sum;
    for (Index c = 0; c < num_classes; ++c) {
      row[c] = static_cast<T>(static_cast<double>(row[c]) * inv_sum);
    }
    row[label] = static_cast<T>(static_cast<double>(row[label]) - 1.0);
  }
  return total;
}

// Counts rows whose arg max equals the label.
std::int64_t CountArgMaxHits(const RowMajorMatrixD& logits,
                             const Eigen::VectorXd& labels) {
  std::int64_t hits = 0;
  for (Index i = 0; i < logits.rows(); ++i) {
    const Index label = ClassOf(labels[i], static_cast<int>(logits.cols()));
    if (ArgMax(logits.row(i).data(), logits.cols()) == label) ++hits;
  }
  return hits;
}

// Writes the weight block of a linear layer's per-example gradients:
// columns [offset, offset + a.cols() * g.cols()) of `out` receive, for each
// output unit c, diag(g.col(c)) * a (row i: a_i scaled by g_ic).
// Written row by row, each block a contiguous scaled copy of a_i: the same
// products as the column-block form diag(G.col(c)) * A, which Eigen
// evaluated one strided coefficient at a time (several times slower; the
// largest cost of a DP-SGD step, docs/performance.md).
template <typename T>
void WriteOuterProductRows(const RowMat<T>& a, const RowMat<T>& g, Index offset,
                           RowMat<T>& out) {
  using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;
  const Index width = a.cols();
  for (Index i = 0; i < a.rows(); ++i) {
    T* row = out.row(i).data() + offset;
    for (Index c = 0; c < g.cols(); ++c) {
      Eigen::Map<RowVec>(row + c * width, width) = g(i, c) * a.row(i);
    }
  }
}

// Base class: stores the shared hyper-parameters and the L2 term.
class ObjectiveBase : public Objective {
 public:
  ObjectiveBase(std::int64_t num_features, std::int64_t num_parameters,
                double l2, Precision precision)
      : d_(num_features), num_parameters_(num_parameters), l2_(l2), precision_(precision) {}

  std::int64_t NumParameters() const final { return num_parameters_; }
  Precision precision() const final { return precision_; }

 protected:
  template <typename T>
  void CheckInputs(const FlatVector& params, const BatchT<T>& batch) const {
    FEDSIM_CHECK(params.size() == num_parameters_)
        << "params has " << params.size() << " values, expected "
        << num_parameters_;
    FEDSIM_CHECK(batch.size() > 0) << "empty batch";
    FEDSIM_CHECK(batch.x.cols() == d_)
        << "batch has " << batch.x.cols() << " features, expected " << d_;
    FEDSIM_CHECK(batch.y.size() == batch.size())
        << batch.y.size() << " labels for " << batch.size() << " examples";
  }

  // The checks of EvaluateRowsWithCorrect's inputs.
  void CheckRows(const FlatVector& params, const Dataset& data, std::int64_t begin,
                 std::int64_t end) const {
    FEDSIM_CHECK(params.size() == num_parameters_)
        << "params has " << params.size() << " values, expected " << num_parameters_;
    FEDSIM_CHECK(data.dim() == d_) << "rows have " << data.dim() << " features, expected " << d_;
    FEDSIM_CHECK(0 <= begin && begin < end && end <= data.size())
        << "rows [" << begin << ", " << end << ") of " << data.size();
  }

  // out = X W + 1 b^T (rows x c, row-major) for rows [begin, end) of
  // `data`, read in place (linear_rows.h), in the model's precision: the
  // float32 kernel for float32 models, the float64 one otherwise.
  void LinearRows(const double* w_colmajor, const double* bias, int c, const Dataset& data,
                  std::int64_t begin, std::int64_t end, double* out) const {
    const float* x = data.row(begin);
    if (precision_ == Precision::kFloat32) {
      LinearRowsF32Single(PackLinearF(w_colmajor, bias, d_, c), x, end - begin, out);
    } else {
      LinearRowsF32(PackLinear(w_colmajor, bias, d_, c), x, end - begin, out);
    }
  }

  // The checks of EvaluateOnRows's inputs, and the rows' addresses.
  std::vector<const float*> RowPointers(const FlatVector& params, const Dataset& data,
                                        std::span<const std::int64_t> rows) const {
    FEDSIM_CHECK(params.size() == num_parameters_)
        << "params has " << params.size() << " values, expected " << num_parameters_;
    FEDSIM_CHECK(data.dim() == d_) << "rows have " << data.dim() << " features, expected " << d_;
    FEDSIM_CHECK(!rows.empty()) << "empty batch";
    std::vector<const float*> at(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      FEDSIM_CHECK(rows[i] >= 0 && rows[i] < data.size()) << "row " << rows[i];
      at[i] = data.row(rows[i]);
    }
    return at;
  }

  // For a linear model of c outputs (W column-major, then the c biases),
  // on `rows` of `data` read in place: writes X W + 1 b^T (b x c,
  // row-major, double) into `out` with the float32 logits kernel and
  // returns the rows' addresses.
  std::vector<const float*> LinearOnRows(const FlatVector& params, const Dataset& data,
                                         std::span<const std::int64_t> rows, int c,
                                         double* out) const {
    std::vector<const float*> at = RowPointers(params, data, rows);
    LinearRowsF32SingleAt(PackLinearF(params.data(), params.data() + d_ * c, d_, c), at.data(),
                          static_cast<std::int64_t>(rows.size()), out);
    return at;
  }

  // sum_i weights_i delta_i (x) [x_i; 1] for a linear model of
  // delta.cols() outputs (weights in column-major order, then the biases):
  // the weight part by LinearGradF32 on the rows in place, from the
  // products weights_i delta_ik rounded to float32; the biases in double.
  // The models whose OuterProductFactorsOnRows returns true (softmax and
  // logistic regression in float32) have exactly this layout.
  void WeightedOuterProductSumOnRows(const Dataset& data, std::span<const std::int64_t> rows,
                                     const RowMajorMatrixD& delta,
                                     const Eigen::VectorXd& weights,
                                     FlatVector& out) const final {
    const auto b = static_cast<Index>(rows.size());
    const Index c = delta.cols();
    FEDSIM_CHECK(delta.rows() == b && weights.size() == b && b > 0)
        << delta.rows() << " deltas and " << weights.size() << " weights for " << b << " rows";
    std::vector<const float*> at(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) at[i] = data.row(rows[i]);
    out.resize(num_parameters_);
    std::vector<float> g(static_cast<std::size_t>(b * c));
    double* bias = out.data() + d_ * c;
    std::fill(bias, bias + c, 0.0);
    for (Index i = 0; i < b; ++i) {
      for (Index k = 0; k < c; ++k) {
        const double wd = weights[i] * delta(i, k);
        g[static_cast<std::size_t>(i * c + k)] = static_cast<float>(wd);
        bias[k] += wd;
      }
    }
    LinearGradF32(at.data(), b, d_, g.data(), static_cast<int>(c), out.data());
  }

  // X w + b for rows [begin, end) of `data`.
  Eigen::VectorXd LinearOfRows(const double* w, double bias, const Dataset& data,
                               std::int64_t begin, std::int64_t end) const {
    Eigen::VectorXd z(end - begin);
    LinearRows(w, &bias, 1, data, begin, end, z.data());
    return z;
  }

  // Adds (l2 / 2) ||params||^2 to the loss and l2 * params to the gradient.
  double AddL2(const FlatVector& params, double loss,
               FlatVector* gradient) const {
    if (l2_ == 0.0) return loss;
    if (gradient != nullptr) *gradient += l2_ * params;
    return loss + 0.5 * l2_ * params.squaredNorm();
  }

  const Index d_;

 private:
  const std::int64_t num_parameters_;
  const double l2_;
  const Precision precision_;
};

// The overrides of both precisions, forwarded to the model's templates
// (Derived::EvaluateT, PerExampleT and, for the outer-product models with
// kOuterProduct = true, FactorsT and WeightedSumT).
template <class Derived>
class ObjectiveImpl : public ObjectiveBase {
 public:
  using ObjectiveBase::ObjectiveBase;

  double Evaluate(const FlatVector& params, const Batch& batch,
                  FlatVector* gradient) const final {
    return self().EvaluateT(params, batch, gradient);
  }
  double Evaluate(const FlatVector& params, const BatchF& batch,
                  FlatVector* gradient) const final {
    return self().EvaluateT(params, batch, gradient);
  }
  void PerExampleGradients(const FlatVector& params, const Batch& batch,
                           RowMajorMatrixD& gradients) const final {
    self().PerExampleT(params, batch, gradients);
  }
  void PerExampleGradients(const FlatVector& params, const BatchF& batch,
                           RowMajorMatrixF& gradients) const final {
    self().PerExampleT(params, batch, gradients);
  }
  bool OuterProductFactors(const FlatVector& params, const Batch& batch, RowMajorMatrixD& delta,
                           Eigen::VectorXd& squared_norms, double& loss) const final {
    return Factors(params, batch, delta, squared_norms, loss);
  }
  bool OuterProductFactors(const FlatVector& params, const BatchF& batch, RowMajorMatrixF& delta,
                           Eigen::VectorXd& squared_norms, double& loss) const final {
    return Factors(params, batch, delta, squared_norms, loss);
  }
  void WeightedOuterProductSum(const Batch& batch, const RowMajorMatrixD& delta,
                               const Eigen::VectorXd& weights, FlatVector& out) const final {
    WeightedSum(batch, delta, weights, out);
  }
  void WeightedOuterProductSum(const BatchF& batch, const RowMajorMatrixF& delta,
                               const Eigen::VectorXd& weights, FlatVector& out) const final {
    WeightedSum(batch, delta, weights, out);
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }

  template <typename T>
  bool Factors(const FlatVector& params, const BatchT<T>& batch, RowMat<T>& delta,
               Eigen::VectorXd& squared_norms, double& loss) const {
    if constexpr (Derived::kOuterProduct) {
      self().FactorsT(params, batch, delta, squared_norms, loss);
      return true;
    } else {
      (void)params, (void)batch, (void)delta, (void)squared_norms, (void)loss;
      return false;
    }
  }

  template <typename T>
  void WeightedSum(const BatchT<T>& batch, const RowMat<T>& delta,
                   const Eigen::VectorXd& weights, FlatVector& out) const {
    if constexpr (Derived::kOuterProduct) {
      GradientIn<T> sum(out, NumParameters());
      self().WeightedSumT(batch, delta, weights, sum.vec());
      sum.Finish();
    } else {
      Objective::WeightedOuterProductSum(batch, delta, weights, out);
    }
  }
};

class LeastSquares final : public ObjectiveImpl<LeastSquares> {
 public:
  static constexpr bool kOuterProduct = true;

  LeastSquares(std::int64_t d, double l2, Precision precision)
      : ObjectiveImpl(d, d, l2, precision) {}

  template <typename T>
  double EvaluateT(const FlatVector& params, const BatchT<T>& batch,
                   FlatVector* gradient) const {
    CheckInputs(params, batch);
    Vec<T> r = Residuals(ParamsIn<T>(params), batch);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    const double loss = 0.5 * r.template cast<double>().squaredNorm() * inv_b;
    if (gradient != nullptr) {
      FEDSIM_CHECK(gradient != &params) << "gradient aliases params";
      GradientIn<T> grad(*gradient, NumParameters());
      r *= static_cast<T>(inv_b);
      grad.vec().noalias() = batch.x.transpose() * r;
      grad.Finish();
    }
    return AddL2(params, loss, gradient);
  }

  template <typename T>
  void PerExampleT(const FlatVector& params, const BatchT<T>& batch,
                   RowMat<T>& gradients) const {
    CheckInputs(params, batch);
    const Vec<T> r = Residuals(ParamsIn<T>(params), batch);
    gradients.resize(batch.size(), d_);
    gradients.noalias() = r.asDiagonal() * batch.x;
  }

  template <typename T>
  void FactorsT(const FlatVector& params, const BatchT<T>& batch, RowMat<T>& delta,
                Eigen::VectorXd& squared_norms, double& loss) const {
    CheckInputs(params, batch);
    const Vec<T> r = Residuals(ParamsIn<T>(params), batch);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    loss = AddL2(params, 0.5 * r.template cast<double>().squaredNorm() * inv_b, nullptr);
    delta = r;
    if constexpr (std::is_same_v<T, double>) {
      squared_norms = r.array().square() * batch.x.rowwise().squaredNorm().array();
    } else {
      squared_norms = r.template cast<double>().array().square() * RowSquaredNorms(batch.x).array();
    }
  }

  template <typename T>
  void WeightedSumT(const BatchT<T>& batch, const RowMat<T>& delta,
                    const Eigen::VectorXd& weights, Vec<T>& out) const {
    const Vec<T> wd = weights.template cast<T>().cwiseProduct(delta.col(0));
    out.noalias() = batch.x.transpose() * wd;
  }

  std::int64_t NumCorrect(const FlatVector&, const Batch&) const override {
    return 0;
  }

  std::optional<double> EvaluateRowsWithCorrect(const FlatVector& params, const Dataset& data,
                                                std::int64_t begin, std::int64_t end,
                                                std::int64_t& num_correct) const override {
    CheckRows(params, data, begin, end);
    Eigen::VectorXd r = LinearOfRows(params.data(), 0.0, data, begin, end);
    r -= data.labels.segment(begin, end - begin);
    num_correct = 0;
    return AddL2(params, 0.5 * r.squaredNorm() * (1.0 / static_cast<double>(end - begin)),
                 nullptr);
  }

  void Initialize(FlatVector& params, RngStream&) const override {
    params.setZero(NumParameters());
  }

  bool IsClassifier() const override { return false; }

 private:
  // r = X w - y.
  template <typename T>
  static Vec<T> Residuals(const Vec<T>& w, const BatchT<T>& batch) {
    Vec<T> r(batch.size());
    r.noalias() = batch.x * w;
    r -= batch.y.template cast<T>();
    return r;
  }
};

class Logistic final : public ObjectiveImpl<Logistic> {
 public:
  static constexpr bool kOuterProduct = true;

  Logistic(std::int64_t d, double l2, Precision precision)
      : ObjectiveImpl(d, d + 1, l2, precision) {}

  template <typename T>
  double EvaluateT(const FlatVector& params, const BatchT<T>& batch,
                   FlatVector* gradient) const {
    CheckInputs(params, batch);
    Vec<T> z = Margins(ParamsIn<T>(params), batch);
    const Index b = batch.size();
    const double inv_b = 1.0 / static_cast<double>(b);
    double total = 0.0;
    for (Index i = 0; i < b; ++i) {
      const double zi = z[i];
      total += Softplus(zi) - batch.y[i] * zi;
    }
    if (gradient != nullptr) {
      FEDSIM_CHECK(gradient != &params) << "gradient aliases params";
      GradientIn<T> grad(*gradient, NumParameters());
      // z becomes (sigmoid(z) - y) / B, the gradient with respect to z.
      for (Index i = 0; i < b; ++i) {
        z[i] = static_cast<T>((Sigmoid(z[i]) - batch.y[i]) * inv_b);
      }
      grad.vec().head(d_).noalias() = batch.x.transpose() * z;
      grad.vec()[d_] = z.sum();
      grad.Finish();
    }
    return AddL2(params, total * inv_b, gradient);
  }

  std::optional<double> EvaluateOnRows(const FlatVector& params, const Dataset& data,
                                       std::span<const std::int64_t> rows,
                                       FlatVector* gradient) const override {
    if (precision() != Precision::kFloat32) return std::nullopt;
    const auto b = static_cast<Index>(rows.size());
    Eigen::VectorXd z(b);
    const std::vector<const float*> at = LinearOnRows(params, data, rows, 1, z.data());
    const double inv_b = 1.0 / static_cast<double>(b);
    double total = 0.0;
    for (Index i = 0; i < b; ++i) total += Softplus(z[i]) - data.labels[rows[i]] * z[i];
    if (gradient != nullptr) {
      FEDSIM_CHECK(gradient != &params) << "gradient aliases params";
      gradient->resize(NumParameters());
      std::vector<float> s(static_cast<std::size_t>(b));
      double bias_grad = 0.0;
      for (Index i = 0; i < b; ++i) {
        const double si = (Sigmoid(z[i]) - data.labels[rows[i]]) * inv_b;
        s[static_cast<std::size_t>(i)] = static_cast<float>(si);
        bias_grad += si;
      }
      LinearGradF32(at.data(), b, d_, s.data(), 1, gradient->data());
      (*gradient)[d_] = bias_grad;
    }
    return AddL2(params, total * inv_b, gradient);
  }

  bool OuterProductFactorsOnRows(const FlatVector& params, const Dataset& data,
                                 std::span<const std::int64_t> rows, RowMajorMatrixD& delta,
                                 Eigen::VectorXd& squared_norms, double& loss) const override {
    if (precision() != Precision::kFloat32) return false;
    const auto b = static_cast<Index>(rows.size());
    Eigen::VectorXd z(b);
    const std::vector<const float*> at = LinearOnRows(params, data, rows, 1, z.data());
    double total = 0.0;  // as EvaluateOnRows sums it
    delta.resize(b, 1);
    squared_norms.resize(b);
    for (Index i = 0; i < b; ++i) {
      const double y = data.labels[rows[i]];
      total += Softplus(z[i]) - y * z[i];
      delta(i, 0) = Sigmoid(z[i]) - y;
      squared_norms[i] = delta(i, 0) * delta(i, 0) * (SquaredNormInDouble(at[i], d_) + 1.0);
    }
    loss = AddL2(params, total * (1.0 / static_cast<double>(b)), nullptr);
    return true;
  }

  template <typename T>
  void PerExampleT(const FlatVector& params, const BatchT<T>& batch,
                   RowMat<T>& gradients) const {
    CheckInputs(params, batch);
    Vec<T> s = Margins(ParamsIn<T>(params), batch);
    for (Index i = 0; i < s.size(); ++i) s[i] = static_cast<T>(Sigmoid(s[i]) - batch.y[i]);
    gradients.resize(batch.size(), d_ + 1);
    gradients.leftCols(d_).noalias() = s.asDiagonal() * batch.x;
    gradients.col(d_) = s;
  }

  template <typename T>
  void FactorsT(const FlatVector& params, const BatchT<T>& batch, RowMat<T>& delta,
                Eigen::VectorXd& squared_norms, double& loss) const {
    CheckInputs(params, batch);
    const Vec<T> z = Margins(ParamsIn<T>(params), batch);
    const Index b = batch.size();
    double total = 0.0;  // as Evaluate sums it
    for (Index i = 0; i < b; ++i) {
      const double zi = z[i];
      total += Softplus(zi) - batch.y[i] * zi;
    }
    loss = AddL2(params, total * (1.0 / static_cast<double>(b)), nullptr);
    delta.resize(b, 1);
    for (Index i = 0; i < b; ++i) delta(i, 0) = static_cast<T>(Sigmoid(z[i]) - batch.y[i]);
    if constexpr (std::is_same_v<T, double>) {
      squared_norms = delta.col(0).array().square() *
                      (batch.x.rowwise().squaredNorm().array() + 1.0);
    } else {
      squared_norms = delta.col(0).template cast<double>().array().square() *
                      (RowSquaredNorms(batch.x).array() + 1.0);
    }
  }

  template <typename T>
  void WeightedSumT(const BatchT<T>& batch, const RowMat<T>& delta,
                    const Eigen::VectorXd& weights, Vec<T>& out) const {
    const Vec<T> wd = weights.template cast<T>().cwiseProduct(delta.col(0));
    out.head(d_).noalias() = batch.x.transpose() * wd;
    out[d_] = wd.sum();
  }

  std::int64_t NumCorrect(const FlatVector& params,
                          const Batch& batch) const override {
    CheckInputs(params, batch);
    return Hits(Margins(params, batch), batch.y);
  }

  std::optional<double> EvaluateRowsWithCorrect(const FlatVector& params, const Dataset& data,
                                                std::int64_t begin, std::int64_t end,
                                                std::int64_t& num_correct) const override {
    CheckRows(params, data, begin, end);
    const Eigen::VectorXd z = LinearOfRows(params.data(), params[d_], data, begin, end);
    const auto y = data.labels.segment(begin, end - begin);
    num_correct = Hits(z, y);
    double total = 0.0;  // as Evaluate sums it
    for (Index i = 0; i < z.size(); ++i) total += Softplus(z[i]) - y[i] * z[i];
    return AddL2(params, total * (1.0 / static_cast<double>(z.size())), nullptr);
  }

  void Initialize(FlatVector& params, RngStream&) const override {
    params.setZero(NumParameters());
  }

  bool IsClassifier() const override { return true; }

 private:
  // Examples whose predicted class (1 where z > 0) is the label.
  template <typename Labels>
  static std::int64_t Hits(const Eigen::VectorXd& z, const Labels& y) {
    std::int64_t hits = 0;
    for (Index i = 0; i < z.size(); ++i) {
      const double predicted = z[i] > 0.0 ? 1.0 : 0.0;
      if (predicted == y[i]) ++hits;
    }
    return hits;
  }

  // z = X w + b.
  template <typename T>
  Vec<T> Margins(const Vec<T>& params, const BatchT<T>& batch) const {
    Vec<T> z(batch.size());
    z.noalias() = batch.x * params.head(d_);
    z.array() += params[d_];
    return z;
  }
};

class Softmax final : public ObjectiveImpl<Softmax> {
 public:
  static constexpr bool kOuterProduct = true;

  Softmax(std::int64_t d, int num_classes, double l2, Precision precision)
      : ObjectiveImpl(d, d * num_classes + num_classes, l2, precision), c_(num_classes) {}

  template <typename T>
  double EvaluateT(const FlatVector& params, const BatchT<T>& batch,
                   FlatVector* gradient) const {
    CheckInputs(params, batch);
    RowMat<T> g = Logits(ParamsIn<T>(params), batch);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    const double loss = SoftmaxCrossEntropyInPlace(batch.y, g) * inv_b;
    if (gradient != nullptr) {
      FEDSIM_CHECK(gradient != &params) << "gradient aliases params";
      GradientIn<T> grad(*gradient, NumParameters());
      g *= static_cast<T>(inv_b);  // (P - Y) / B
      MatMap<T> grad_w(grad.vec().data(), d_, c_);
      grad_w.noalias() = batch.x.transpose() * g;
      grad.vec().tail(c_) = g.colwise().sum().transpose();
      grad.Finish();
    }
    return AddL2(params, loss, gradient);
  }

  std::optional<double> EvaluateOnRows(const FlatVector& params, const Dataset& data,
                                       std::span<const std::int64_t> rows,
                                       FlatVector* gradient) const override {
    if (precision() != Precision::kFloat32) return std::nullopt;
    const auto b = static_cast<Index>(rows.size());
    RowMajorMatrixD g(b, c_);
    const std::vector<const float*> at =
        LinearOnRows(params, data, rows, static_cast<int>(c_), g.data());
    Eigen::VectorXd y(b);
    for (Index i = 0; i < b; ++i) y[i] = data.labels[rows[i]];
    const double inv_b = 1.0 / static_cast<double>(b);
    const double loss = SoftmaxCrossEntropyInPlace(y, g) * inv_b;  // g = P - Y
    if (gradient != nullptr) {
      FEDSIM_CHECK(gradient != &params) << "gradient aliases params";
      gradient->resize(NumParameters());
      std::vector<float> gf(static_cast<std::size_t>(b * c_));
      double* bias_grad = gradient->data() + d_ * c_;
      std::fill(bias_grad, bias_grad + c_, 0.0);
      for (Index i = 0; i < b; ++i) {
        for (Index k = 0; k < c_; ++k) {
          const double gik = g(i, k) * inv_b;  // (P - Y) / B
          gf[static_cast<std::size_t>(i * c_ + k)] = static_cast<float>(gik);
          bias_grad[k] += gik;
        }
      }
      LinearGradF32(at.data(), b, d_, gf.data(), static_cast<int>(c_), gradient->data());
    }
    return AddL2(params, loss, gradient);
  }

  bool OuterProductFactorsOnRows(const FlatVector& params, const Dataset& data,
                                 std::span<const std::int64_t> rows, RowMajorMatrixD& delta,
                                 Eigen::VectorXd& squared_norms, double& loss) const override {
    if (precision() != Precision::kFloat32) return false;
    const auto b = static_cast<Index>(rows.size());
    delta.resize(b, c_);
    const std::vector<const float*> at =
        LinearOnRows(params, data, rows, static_cast<int>(c_), delta.data());
    Eigen::VectorXd y(b);
    for (Index i = 0; i < b; ++i) y[i] = data.labels[rows[i]];
    loss = AddL2(params, SoftmaxCrossEntropyInPlace(y, delta) * (1.0 / static_cast<double>(b)),
                 nullptr);  // delta = P - Y
    // ||delta_i (x) [x_i; 1]||^2 = ||delta_i||^2 (||x_i||^2 + 1).
    squared_norms.resize(b);
    for (Index i = 0; i < b; ++i) {
      squared_norms[i] = delta.row(i).squaredNorm() * (SquaredNormInDouble(at[i], d_) + 1.0);
    }
    return true;
  }

  template <typename T>
  void PerExampleT(const FlatVector& params, const BatchT<T>& batch,
                   RowMat<T>& gradients) const {
    CheckInputs(params, batch);
    RowMat<T> g = Logits(ParamsIn<T>(params), batch);
    SoftmaxCrossEntropyInPlace(batch.y, g);  // g = P - Y
    gradients.resize(batch.size(), NumParameters());
    WriteOuterProductRows<T>(batch.x, g, 0, gradients);
    gradients.rightCols(c_) = g;
  }

  template <typename T>
  void FactorsT(const FlatVector& params, const BatchT<T>& batch, RowMat<T>& delta,
                Eigen::VectorXd& squared_norms, double& loss) const {
    CheckInputs(params, batch);
    delta = Logits(ParamsIn<T>(params), batch);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    loss = AddL2(params, SoftmaxCrossEntropyInPlace(batch.y, delta) * inv_b, nullptr);
    // delta = P - Y; ||delta_i (x) [x_i; 1]||^2 = ||delta_i||^2 (||x_i||^2 + 1).
    if constexpr (std::is_same_v<T, double>) {
      squared_norms = delta.rowwise().squaredNorm().array() *
                      (batch.x.rowwise().squaredNorm().array() + 1.0);
    } else {
      squared_norms =
          RowSquaredNorms(delta).array() * (RowSquaredNorms(batch.x).array() + 1.0);
    }
  }

  template <typename T>
  void WeightedSumT(const BatchT<T>& batch, const RowMat<T>& delta,
                    const Eigen::VectorXd& weights, Vec<T>& out) const {
    RowMat<T> wd = weights.template cast<T>().asDiagonal() * delta;
    MatMap<T> sum_w(out.data(), d_, c_);
    sum_w.noalias() = batch.x.transpose() * wd;
    out.tail(c_) = wd.colwise().sum().transpose();
  }

  std::int64_t NumCorrect(const FlatVector& params,
                          const Batch& batch) const override {
    CheckInputs(params, batch);
    return CountArgMaxHits(Logits(params, batch), batch.y);
  }

  double EvaluateWithCorrect(const FlatVector& params, const Batch& batch,
                             std::int64_t& num_correct) const override {
    CheckInputs(params, batch);
    RowMajorMatrixD g = Logits(params, batch);
    num_correct = CountArgMaxHits(g, batch.y);  // before g is overwritten
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    return AddL2(params, SoftmaxCrossEntropyInPlace(batch.y, g) * inv_b, nullptr);
  }

  std::optional<double> EvaluateRowsWithCorrect(const FlatVector& params, const Dataset& data,
                                                std::int64_t begin, std::int64_t end,
                                                std::int64_t& num_correct) const override {
    CheckRows(params, data, begin, end);
    const Index rows = end - begin;
    RowMajorMatrixD g(rows, c_);
    LinearRows(params.data(), params.data() + d_ * c_, static_cast<int>(c_), data, begin, end,
               g.data());
    const Eigen::VectorXd y = data.labels.segment(begin, rows);
    num_correct = CountArgMaxHits(g, y);  // before g is overwritten
    const double inv_b = 1.0 / static_cast<double>(rows);
    return AddL2(params, SoftmaxCrossEntropyInPlace(y, g) * inv_b, nullptr);
  }

  void Initialize(FlatVector& params, RngStream&) const override {
    params.setZero(NumParameters());
  }

  bool IsClassifier() const override { return true; }

 private:
  // X W + 1 b^T (B x C).
  template <typename T>
  RowMat<T> Logits(const Vec<T>& params, const BatchT<T>& batch) const {
    const ConstMatMap<T> w(params.data(), d_, c_);
    const ConstVecMap<T> bias(params.data() + d_ * c_, c_);
    RowMat<T> logits(batch.size(), c_);
    logits.noalias() = batch.x * w;
    logits.rowwise() += bias.transpose();
    return logits;
  }

  const Index c_;
};

// absl::string_view, not std::string_view: Debian's Abseil has its own
// string_view type, which absl::StrCat requires.
absl::Status Invalid(absl::string_view field, absl::string_view value,
                     absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrCat("model.", field, " = ", value, "; ", rule));
}

}  // namespace

void Objective::WeightedOuterProductSum(const Batch&, const RowMajorMatrixD&,
                                        const Eigen::VectorXd&, FlatVector&) const {
  FEDSIM_CHECK(false) << "WeightedOuterProductSum: this model has no outer-product "
                         "per-example gradients (OuterProductFactors returned false)";
}

void Objective::WeightedOuterProductSum(const BatchF&, const RowMajorMatrixF&,
                                        const Eigen::VectorXd&, FlatVector&) const {
  FEDSIM_CHECK(false) << "WeightedOuterProductSum: this model has no outer-product "
                         "per-example gradients (OuterProductFactors returned false)";
}

absl::StatusOr<std::unique_ptr<Objective>> MakeObjective(
    const ObjectiveSpec& spec) {
  const ObjectiveKind kind = spec.kind;
  if (kind != ObjectiveKind::kLeastSquares &&
      kind != ObjectiveKind::kLogistic && kind != ObjectiveKind::kSoftmax &&
      kind != ObjectiveKind::kMlp) {
    return Invalid("kind", absl::StrCat(static_cast<int>(kind)),
                   "unknown objective kind");
  }
  if (spec.num_features < 1) {
    return Invalid("num_features", absl::StrCat(spec.num_features),
                   "must be >= 1");
  }
  if ((kind == ObjectiveKind::kSoftmax || kind == ObjectiveKind::kMlp) &&
      spec.num_classes < 2) {
    return Invalid("num_classes", absl::StrCat(spec.num_classes),
                   "must be >= 2");
  }
  if (kind == ObjectiveKind::kLogistic && spec.num_classes != 0 &&
      spec.num_classes != 2) {
    return Invalid("num_classes", absl::StrCat(spec.num_classes),
                   "must be 2 (or 0) for a logistic objective");
  }
  if (kind == ObjectiveKind::kMlp && spec.hidden_units < 1) {
    return Invalid("hidden_units", absl::StrCat(spec.hidden_units),
                   "must be >= 1");
  }
  if (!(spec.l2 >= 0.0) || !std::isfinite(spec.l2)) {
    return Invalid("l2", absl::StrCat(spec.l2), "must be finite and >= 0");
  }

  // Counted in double so that sizes near int64's range cannot overflow.
  const double d = static_cast<double>(spec.num_features);
  const double c = spec.num_classes;
  const double h = spec.hidden_units;
  double count = d;
  if (kind == ObjectiveKind::kLogistic) count = d + 1;
  if (kind == ObjectiveKind::kSoftmax) count = d * c + c;
  if (kind == ObjectiveKind::kMlp) count = d * h + h + h * c + c;
  if (count > kMaxParameters) {
    return absl::InvalidArgumentError(
        absl::StrCat("model: ", count, " parameters (num_features = ",
                     spec.num_features, "); must be <= 2^40"));
  }

  switch (kind) {
    case ObjectiveKind::kLeastSquares:
      return std::make_unique<LeastSquares>(spec.num_features, spec.l2, spec.precision);
    case ObjectiveKind::kLogistic:
      return std::make_unique<Logistic>(spec.num_features, spec.l2, spec.precision);
    case ObjectiveKind::kSoftmax:
      return std::make_unique<Softmax>(spec.num_features, spec.num_classes, spec.l2,
                                       spec.precision);
    case ObjectiveKind::kMlp: {
      if (spec.num_features > std::numeric_limits<int>::max()) {
        return Invalid("num_features", absl::StrCat(spec.num_features),
                       "must be < 2^31 for the MLP");
      }
      // The MLP is the network [linear(h), relu, linear(C)] (common/nn):
      // Kaiming-normal weights (N(0, 2 / fan_in), drawn W1 then W2) and
      // zero biases, PyTorch's layout, which is the layout above.
      absl::StatusOr<nn::Network> net = nn::Network::Create(
          {{nn::Shape::Kind::kFlat, static_cast<int>(spec.num_features), 1, 1},
           {{.kind = nn::LayerKind::kLinear, .out = spec.hidden_units,
             .init = nn::Init::kKaimingNormal},
            {.kind = nn::LayerKind::kRelu},
            {.kind = nn::LayerKind::kLinear, .out = spec.num_classes,
             .init = nn::Init::kKaimingNormal}}});
      if (!net.ok()) return net.status();
      return MakeNetworkObjective(std::make_shared<const nn::Network>(*std::move(net)), spec.l2,
                                  spec.precision);
    }
  }
  return absl::InternalError("model: unreachable objective kind");
}

}  // namespace fedsim
