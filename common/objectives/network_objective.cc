// File: common/objectives/network_objective.cc
//
// The Objective of a neural network (common/nn/network.h): mean softmax
// cross-entropy of the network's logits, plus the L2 term. The network
// computes in the model's precision; the softmax, the loss and the
// accuracy are taken in double in both (a few values an example), as the
// linear models do.
#include "common/objectives/network_objective.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/check.h"

namespace fedsim {
namespace {

using Eigen::Index;
template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows per forward pass: a batch larger than this (full-batch training, the
// evaluation of a test set) runs in chunks of it, so that the im2col buffers
// stay a few tens of MB a thread; gradients of the chunks add up.
constexpr std::int64_t kChunkRows = 128;

// One thread's buffers, per precision, shared by every network the thread
// runs (vectors resize to the network at hand; a steady state of equal
// batches allocates nothing).
template <typename T>
struct ThreadBuffers {
  nn::Workspace<T> ws;
  std::vector<T> params;
  std::vector<T> grad;
  std::vector<T> chunk_grad;
  std::vector<T> dlogits;
  std::vector<T> rest;      // ghost clipping: sum of (1 - f_i) g_i
  // A chunk's row addresses, for rows stored as float (the data set's) or
  // as double (a float64 batch).
  std::vector<const float*> float_rows;
  std::vector<const double*> double_rows;

  template <typename Src>
  std::vector<const Src*>& rows() {
    if constexpr (std::is_same_v<Src, float>) {
      return float_rows;
    } else {
      return double_rows;
    }
  }
};

template <typename T>
ThreadBuffers<T>& Buffers() {
  thread_local ThreadBuffers<T> buffers;
  return buffers;
}

// The class index stored in a label (loaders validate labels; a bad one
// here is a broken invariant).
Index ClassOf(double label, Index num_classes) {
  FEDSIM_CHECK(label >= 0.0 && label < static_cast<double>(num_classes) &&
               label == std::trunc(label))
      << "label " << label << " is not a class index in [0, " << num_classes << ")";
  return static_cast<Index>(label);
}

// For logits (n x c) and labels(i): the summed cross-entropy, the number of
// rows whose arg max (lowest index on ties) is the label, and, if dlogits
// is not null, (softmax - onehot) * scale per row.
template <typename T, typename Labels>
double CrossEntropy(const T* logits, std::int64_t n, Index c, const Labels& labels,
                    double scale, T* dlogits, std::int64_t* correct) {
  double total = 0.0;
  std::int64_t hits = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * c;
    const Index label = ClassOf(labels(i), c);
    Index best = 0;
    for (Index k = 1; k < c; ++k) {
      if (z[k] > z[best]) best = k;
    }
    if (best == label) ++hits;
    const double max = static_cast<double>(z[best]);
    double sum = 0.0;
    for (Index k = 0; k < c; ++k) sum += std::exp(static_cast<double>(z[k]) - max);
    total += std::log(sum) - (static_cast<double>(z[label]) - max);
    if (dlogits != nullptr) {
      T* d = dlogits + i * c;
      for (Index k = 0; k < c; ++k) {
        const double pk = std::exp(static_cast<double>(z[k]) - max) / sum;
        d[k] = static_cast<T>((pk - (k == label ? 1.0 : 0.0)) * scale);
      }
    }
  }
  if (correct != nullptr) *correct += hits;
  return total;
}

class NetworkObjective final : public Objective {
 public:
  NetworkObjective(std::shared_ptr<const nn::Network> net, double l2, Precision precision)
      : net_(std::move(net)), l2_(l2), precision_(precision) {}

  Precision precision() const override { return precision_; }
  std::int64_t NumParameters() const override { return net_->NumParameters(); }
  bool IsClassifier() const override { return true; }
  const nn::Network* network() const override { return net_.get(); }

  void Initialize(FlatVector& params, RngStream& rng) const override {
    params.resize(NumParameters());
    net_->Initialize(std::span<double>(params.data(), static_cast<std::size_t>(params.size())),
                     rng);
  }

  double Evaluate(const FlatVector& params, const Batch& batch,
                  FlatVector* gradient) const override {
    return Dispatch(params, batch, gradient, nullptr, nullptr);
  }
  double Evaluate(const FlatVector& params, const BatchF& batch,
                  FlatVector* gradient) const override {
    return Dispatch(params, batch, gradient, nullptr, nullptr);
  }
  double EvaluateWithCorrect(const FlatVector& params, const Batch& batch,
                             std::int64_t& num_correct) const override {
    num_correct = 0;
    return Dispatch(params, batch, nullptr, nullptr, &num_correct);
  }
  std::int64_t NumCorrect(const FlatVector& params, const Batch& batch) const override {
    std::int64_t correct = 0;
    Dispatch(params, batch, nullptr, nullptr, &correct);
    return correct;
  }

  std::optional<double> EvaluateRowsWithCorrect(const FlatVector& params, const Dataset& data,
                                                std::int64_t begin, std::int64_t end,
                                                std::int64_t& num_correct) const override {
    FEDSIM_CHECK(0 <= begin && begin < end && end <= data.size())
        << "rows [" << begin << ", " << end << ") of " << data.size();
    std::vector<std::int64_t> rows(static_cast<std::size_t>(end - begin));
    for (std::int64_t r = begin; r < end; ++r) rows[static_cast<std::size_t>(r - begin)] = r;
    num_correct = 0;
    return OnRows(params, data, rows, nullptr, nullptr, &num_correct);
  }

  std::optional<double> EvaluateOnRows(const FlatVector& params, const Dataset& data,
                                       std::span<const std::int64_t> rows,
                                       FlatVector* gradient) const override {
    return OnRows(params, data, rows, gradient, nullptr, nullptr);
  }
  std::optional<double> TrainOnRows(const FlatVector& params, const Dataset& data,
                                    std::span<const std::int64_t> rows, FlatVector* gradient,
                                    RngStream& rng) const override {
    return OnRows(params, data, rows, gradient, net_->HasDropout() ? &rng : nullptr, nullptr);
  }

  bool GhostClippedSums(const FlatVector& params, const Batch& batch, FactorsOf factors_of,
                        FlatVector& clipped, FlatVector* rest, Eigen::VectorXd& factors,
                        double& loss) const override {
    loss = Ghost(params, batch, factors_of, clipped, rest, factors);
    return true;
  }
  bool GhostClippedSums(const FlatVector& params, const BatchF& batch, FactorsOf factors_of,
                        FlatVector& clipped, FlatVector* rest, Eigen::VectorXd& factors,
                        double& loss) const override {
    loss = Ghost(params, batch, factors_of, clipped, rest, factors);
    return true;
  }

  void PerExampleGradients(const FlatVector& params, const Batch& batch,
                           RowMajorMatrixD& gradients) const override {
    PerExample(params, batch, gradients);
  }
  void PerExampleGradients(const FlatVector& params, const BatchF& batch,
                           RowMajorMatrixF& gradients) const override {
    PerExample(params, batch, gradients);
  }

 private:
  template <typename U>
  double Dispatch(const FlatVector& params, const BatchT<U>& batch, FlatVector* gradient,
                  RngStream* dropout, std::int64_t* correct) const {
    CheckBatch(params, batch.x.cols(), batch.size(), batch.y.size());
    const auto labels = [&](std::int64_t i) { return batch.y[i]; };
    const auto row = [&](std::int64_t i) { return batch.x.row(i).data(); };
    // The batch's precision is the arithmetic's (objective.h): a float32
    // batch computes in float32, a float64 one in float64.
    return Run<U>(params, batch.size(), row, labels, gradient, dropout, correct);
  }

  double OnRows(const FlatVector& params, const Dataset& data,
                std::span<const std::int64_t> rows, FlatVector* gradient, RngStream* dropout,
                std::int64_t* correct) const {
    const auto n = static_cast<std::int64_t>(rows.size());
    CheckBatch(params, data.dim(), n, n);
    for (std::int64_t r : rows) {
      FEDSIM_CHECK(r >= 0 && r < data.size()) << "row " << r << " of " << data.size();
    }
    const auto labels = [&](std::int64_t i) { return data.labels[rows[i]]; };
    const auto row = [&](std::int64_t i) { return data.row(rows[i]); };
    if (precision_ == Precision::kFloat32) {
      return Run<float>(params, n, row, labels, gradient, dropout, correct);
    }
    return Run<double>(params, n, row, labels, gradient, dropout, correct);
  }

  void CheckBatch(const FlatVector& params, std::int64_t dim, std::int64_t n,
                  std::int64_t labels) const {
    FEDSIM_CHECK(params.size() == NumParameters())
        << "params has " << params.size() << " values, expected " << NumParameters();
    FEDSIM_CHECK(n > 0) << "empty batch";
    FEDSIM_CHECK(dim == net_->shapes().front().size())
        << "rows have " << dim << " features, the network's input has "
        << net_->shapes().front().size();
    FEDSIM_CHECK(labels == n) << labels << " labels for " << n << " examples";
  }

  // The loss (mean cross-entropy plus the L2 term) of n examples, row(i)
  // pointing at example i's features and labels(i) its class; the gradient
  // if asked, in chunks of kChunkRows.
  template <typename T, typename Row, typename Labels>
  double Run(const FlatVector& params, std::int64_t n, const Row& row, const Labels& labels,
             FlatVector* gradient, RngStream* dropout, std::int64_t* correct) const {
    using Src = std::remove_cv_t<std::remove_pointer_t<decltype(row(0))>>;
    ThreadBuffers<T>& tb = Buffers<T>();
    const T* p = ConvertParams<T>(params, tb);
    const std::int64_t num_params = NumParameters();
    const Index c = net_->NumOutputs();
    const double inv_n = 1.0 / static_cast<double>(n);
    double loss = 0.0;
    std::vector<const Src*>& ptrs = tb.template rows<Src>();
    if (gradient != nullptr) {
      FEDSIM_CHECK(gradient != &params) << "gradient aliases params";
      tb.grad.assign(static_cast<std::size_t>(num_params), T(0));
    }
    for (std::int64_t begin = 0; begin < n; begin += kChunkRows) {
      const std::int64_t m = std::min(kChunkRows, n - begin);
      ptrs.resize(static_cast<std::size_t>(m));
      for (std::int64_t i = 0; i < m; ++i) ptrs[static_cast<std::size_t>(i)] = row(begin + i);
      net_->Forward(p, ptrs.data(), m, tb.ws, dropout);
      const auto chunk_labels = [&](std::int64_t i) { return labels(begin + i); };
      T* dl = nullptr;
      if (gradient != nullptr) {
        tb.dlogits.resize(static_cast<std::size_t>(m * c));
        dl = tb.dlogits.data();
      }
      loss += CrossEntropy(tb.ws.logits(), m, c, chunk_labels, inv_n, dl, correct);
      if (gradient != nullptr) {
        if (begin == 0) {
          net_->Backward(p, dl, tb.ws, tb.grad.data(), nullptr);
        } else {
          tb.chunk_grad.resize(static_cast<std::size_t>(num_params));
          net_->Backward(p, dl, tb.ws, tb.chunk_grad.data(), nullptr);
          for (std::int64_t k = 0; k < num_params; ++k) {
            tb.grad[static_cast<std::size_t>(k)] += tb.chunk_grad[static_cast<std::size_t>(k)];
          }
        }
      }
    }
    loss *= inv_n;
    if (gradient != nullptr) {
      gradient->resize(num_params);
      for (std::int64_t k = 0; k < num_params; ++k) {
        (*gradient)[k] = static_cast<double>(tb.grad[static_cast<std::size_t>(k)]);
      }
    }
    if (l2_ == 0.0) return loss;
    if (gradient != nullptr) *gradient += l2_ * params;
    return loss + 0.5 * l2_ * params.squaredNorm();
  }

  template <typename T>
  const T* ConvertParams(const FlatVector& params, ThreadBuffers<T>& tb) const {
    if constexpr (std::is_same_v<T, double>) {
      return params.data();
    } else {
      tb.params.resize(static_cast<std::size_t>(params.size()));
      for (Index k = 0; k < params.size(); ++k) {
        tb.params[static_cast<std::size_t>(k)] = static_cast<float>(params[k]);
      }
      return tb.params.data();
    }
  }

  // The forward pass of rows [begin, begin + m) of `batch` (no Dropout)
  // into tb.ws, and tb.dlogits = each row's gradient of its own
  // cross-entropy (softmax - onehot); returns their summed loss.
  template <typename U>
  double ForwardChunk(const U* p, const BatchT<U>& batch, std::int64_t begin, std::int64_t m,
                      ThreadBuffers<U>& tb) const {
    std::vector<const U*>& ptrs = tb.template rows<U>();
    ptrs.resize(static_cast<std::size_t>(m));
    for (std::int64_t i = 0; i < m; ++i) {
      ptrs[static_cast<std::size_t>(i)] = batch.x.row(begin + i).data();
    }
    net_->Forward(p, ptrs.data(), m, tb.ws, nullptr);
    const Index c = net_->NumOutputs();
    tb.dlogits.resize(static_cast<std::size_t>(m * c));
    return CrossEntropy(tb.ws.logits(), m, c, [&](std::int64_t i) { return batch.y[begin + i]; },
                        1.0, tb.dlogits.data(), nullptr);
  }

  // Per-example gradients of the per-example loss (no L2 term), in the
  // batch's precision U; the network computes in U too.
  template <typename U>
  void PerExample(const FlatVector& params, const BatchT<U>& batch,
                  RowMat<U>& gradients) const {
    CheckBatch(params, batch.x.cols(), batch.size(), batch.y.size());
    ThreadBuffers<U>& tb = Buffers<U>();
    const U* p = ConvertParams<U>(params, tb);
    const std::int64_t n = batch.size();
    gradients.resize(n, NumParameters());
    // In chunks of kChunkRows, as Run: a row's gradient is its own, so the
    // chunking changes no value, only the size of the buffers.
    for (std::int64_t begin = 0; begin < n; begin += kChunkRows) {
      const std::int64_t m = std::min(kChunkRows, n - begin);
      ForwardChunk(p, batch, begin, m, tb);
      net_->Backward(p, tb.dlogits.data(), tb.ws, nullptr, &gradients, begin);
    }
  }

  // GhostClippedSums in the batch's precision U; returns the loss. Chunks
  // of kChunkRows as Run (the same forward passes, so the same loss bits);
  // per chunk: one forward pass, one backward pass for the norms, and the
  // weighted gradients from the output gradients it kept.
  template <typename U>
  double Ghost(const FlatVector& params, const BatchT<U>& batch, FactorsOf factors_of,
               FlatVector& clipped, FlatVector* rest, Eigen::VectorXd& factors) const {
    CheckBatch(params, batch.x.cols(), batch.size(), batch.y.size());
    ThreadBuffers<U>& tb = Buffers<U>();
    const U* p = ConvertParams<U>(params, tb);
    const std::int64_t n = batch.size();
    const std::int64_t num_params = NumParameters();
    const auto size = static_cast<std::size_t>(num_params);
    factors.resize(n);
    tb.grad.assign(size, U(0));
    if (rest != nullptr) tb.rest.assign(size, U(0));
    Eigen::VectorXd sq, f;
    double loss = 0.0;
    // dest += sum_i weight_i g_i over the chunk's examples.
    std::vector<double> weight;
    const auto add_weighted = [&](std::vector<U>& dest) {
      tb.chunk_grad.resize(size);
      net_->WeightedGradient(tb.ws, weight.data(), tb.chunk_grad.data());
      for (std::size_t k = 0; k < size; ++k) dest[k] += tb.chunk_grad[k];
    };
    for (std::int64_t begin = 0; begin < n; begin += kChunkRows) {
      const std::int64_t m = std::min(kChunkRows, n - begin);
      loss += ForwardChunk(p, batch, begin, m, tb);
      sq.resize(m);
      net_->SquaredGradientNorms(p, tb.dlogits.data(), tb.ws, sq.data());
      factors_of(sq, f);
      FEDSIM_CHECK(f.size() == m) << f.size() << " factors for " << m << " examples";
      factors.segment(begin, m) = f;
      weight.assign(f.data(), f.data() + m);
      add_weighted(tb.grad);
      if (rest != nullptr) {
        for (std::int64_t i = 0; i < m; ++i) weight[static_cast<std::size_t>(i)] = 1.0 - f[i];
        add_weighted(tb.rest);
      }
    }
    clipped.resize(num_params);
    for (std::int64_t k = 0; k < num_params; ++k) {
      clipped[k] = static_cast<double>(tb.grad[static_cast<std::size_t>(k)]);
    }
    if (rest != nullptr) {
      rest->resize(num_params);
      for (std::int64_t k = 0; k < num_params; ++k) {
        (*rest)[k] = static_cast<double>(tb.rest[static_cast<std::size_t>(k)]);
      }
    }
    loss *= 1.0 / static_cast<double>(n);
    if (l2_ == 0.0) return loss;
    return loss + 0.5 * l2_ * params.squaredNorm();
  }

  std::shared_ptr<const nn::Network> net_;
  double l2_;
  Precision precision_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Objective>> MakeNetworkObjective(
    std::shared_ptr<const nn::Network> network, double l2, Precision precision) {
  if (network == nullptr) return absl::InvalidArgumentError("model: no network");
  if (!(l2 >= 0.0) || !std::isfinite(l2)) {
    return absl::InvalidArgumentError(absl::StrCat("model.l2 = ", l2, "; must be finite and >= 0"));
  }
  if (network->NumOutputs() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model: the network has ", network->NumOutputs(),
        " outputs; a classifier needs at least 2 (its last layer gives the logits)"));
  }
  return std::make_unique<NetworkObjective>(std::move(network), l2, precision);
}

}  // namespace fedsim
