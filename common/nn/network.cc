#include "common/nn/network.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/check.h"

namespace fedsim::nn {
namespace {

using Eigen::Index;
template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using Mat = Eigen::Map<RowMat<T>>;
template <typename T>
using CMat = Eigen::Map<const RowMat<T>>;
template <typename T>
using CVec = Eigen::Map<const Vec<T>>;

// Rows of a time-major sequence that belong to one example: T rows of
// `cols` values, `batch` rows apart.
template <typename T>
using CStrided = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// Limits of Create: values of one example's activation (and each of its
// dimensions), and parameters (2^31 doubles: 16 GiB). Sizes beyond them are
// one-line errors, not overflows or failed allocations.
constexpr std::int64_t kMaxDimension = std::int64_t{1} << 30;
constexpr std::int64_t kMaxParameters = std::int64_t{1} << 31;
constexpr int kMaxWindow = 1 << 20;  // kernel, stride, padding

bool Parametrised(LayerKind kind) {
  return kind == LayerKind::kConv2d || kind == LayerKind::kLinear ||
         kind == LayerKind::kEmbedding || kind == LayerKind::kLstm;
}

int Stride(const LayerSpec& l) {
  if (l.stride > 0) return l.stride;
  return l.kind == LayerKind::kMaxPool2d ? l.kernel : 1;
}

int Padding(const LayerSpec& l) { return l.same ? (l.kernel - 1) / 2 : l.padding; }

template <typename T>
void Resize(std::vector<T>& v, std::int64_t n) {
  v.resize(static_cast<std::size_t>(n));
}

// The output columns ow in [lo, hi) whose input column ow * stride - pad +
// kw lies in [0, width): the rest read the zero padding.
std::pair<int, int> ValidColumns(int out_width, int width, int stride, int pad, int kw) {
  int lo = 0;
  while (lo < out_width && lo * stride - pad + kw < 0) ++lo;
  int hi = out_width;
  while (hi > lo && (hi - 1) * stride - pad + kw >= width) --hi;
  return {lo, hi};
}

// take ? a : b without a branch (bit masks): max-pooling's comparisons
// are data-dependent coin flips that a branch predictor cannot learn.
template <typename V>
V Select(bool take, V a, V b) {
  using Bits = std::conditional_t<sizeof(V) == 8, std::uint64_t, std::uint32_t>;
  static_assert(sizeof(V) == sizeof(Bits));
  const Bits mask = Bits{0} - static_cast<Bits>(take);
  const Bits out = (std::bit_cast<Bits>(a) & mask) | (std::bit_cast<Bits>(b) & ~mask);
  return std::bit_cast<V>(out);
}

// Sigmoid and tanh over n values in place. float: Eigen's vectorised exp
// and tanh (8 lanes on x86-64-v3) applied to every element alike, in full
// packets and a last padded one, so that an element's value depends on
// neither its address nor its position (Eigen's array expressions compute
// a misaligned head with the scalar functions: bits that would depend on
// where the buffer lies). double (gradient checks, parity tests): the
// scalar functions.
enum class Activation { kSigmoid, kTanh };

template <Activation A>
void Activate(float* x, std::int64_t n) {
  using P = Eigen::internal::packet_traits<float>::type;
  constexpr int kLanes = Eigen::internal::packet_traits<float>::size;
  const auto op = [](P v) {
    if constexpr (A == Activation::kTanh) {
      return Eigen::internal::ptanh(v);
    } else {
      const P one = Eigen::internal::pset1<P>(1.0f);
      return Eigen::internal::pdiv(
          one, Eigen::internal::padd(one, Eigen::internal::pexp(Eigen::internal::pnegate(v))));
    }
  };
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Eigen::internal::pstoreu(x + i, op(Eigen::internal::ploadu<P>(x + i)));
  }
  if (i < n) {
    alignas(64) float tail[kLanes] = {};
    std::copy(x + i, x + n, tail);
    Eigen::internal::pstoreu(tail, op(Eigen::internal::ploadu<P>(tail)));
    std::copy(tail, tail + (n - i), x + i);
  }
}

template <Activation A>
void Activate(double* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = A == Activation::kTanh ? std::tanh(x[i]) : 1.0 / (1.0 + std::exp(-x[i]));
  }
}


// dst = lhs * rhs (or dst += lhs * rhs): Eigen's GEMM (GEMV for a vector
// result), whose results do not depend on where the operands lie in
// memory. Products so small that Eigen would evaluate them coefficient by
// coefficient (a lazy product, whose vectorised dot products peel the
// first elements by alignment, so that two copies of the same data at
// different addresses can sum in different orders) are summed here in
// index order instead. Every product of the network goes through this:
// the same bits on any thread, in any worker process.
template <typename Dst, typename Lhs, typename Rhs>
void Product(Dst&& dst, const Lhs& lhs, const Rhs& rhs, bool add = false) {
  using S = typename std::decay_t<Dst>::Scalar;
  if (lhs.cols() + dst.rows() + dst.cols() < 20) {
    for (Index i = 0; i < dst.rows(); ++i) {
      for (Index j = 0; j < dst.cols(); ++j) {
        S sum = add ? dst(i, j) : S(0);
        for (Index k = 0; k < lhs.cols(); ++k) sum += lhs(i, k) * rhs(k, j);
        dst(i, j) = sum;
      }
    }
    return;
  }
  if (add) {
    dst.noalias() += lhs * rhs;
  } else {
    dst.noalias() = lhs * rhs;
  }
}

// out[c] = sum over j of m[c * stride + offset + j], j < count, in order (a
// bias gradient: a plain loop, never an Eigen reduction, whose order
// depends on alignment).
// Eight running sums (lane j % 8), added up in a fixed order at the end:
// the same order whatever the address, and eight independent additions a
// step instead of one chain.
template <typename T>
void SumRows(const T* m, std::int64_t rows, std::int64_t stride, std::int64_t offset,
             std::int64_t count, T* out) {
  constexpr int kLanes = 8;
  for (std::int64_t c = 0; c < rows; ++c) {
    const T* row = m + c * stride + offset;
    T lane[kLanes] = {};
    std::int64_t j = 0;
    for (; j + kLanes <= count; j += kLanes) {
      for (int q = 0; q < kLanes; ++q) lane[q] += row[j + q];
    }
    for (; j < count; ++j) lane[j % kLanes] += row[j];
    out[c] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
}

// out[k] = sum over rows r of m[r * stride + k], k < cols, rows in order.
template <typename T>
void SumColumns(const T* m, std::int64_t rows, std::int64_t cols, std::int64_t stride, T* out) {
  std::fill_n(out, cols, T(0));
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* row = m + r * stride;
    for (std::int64_t k = 0; k < cols; ++k) out[k] += row[k];
  }
}

// sum of x[j]^2, j < n, in double, in index order.
template <typename T>
double SquaredSum(const T* x, std::int64_t n) {
  double sum = 0.0;
  for (std::int64_t j = 0; j < n; ++j) sum += static_cast<double>(x[j]) * x[j];
  return sum;
}

// ||G^T A||_F^2 for G (t x p) and A (t x k): the squared norm of the weight
// gradient sum_t g_t a_t^T, by Gram matrices (t^2 (p + k) multiplications)
// or by forming it (t p k), as `method` says (NormMethod). s1, s2: scratch.
template <typename T, typename GM, typename AM>
double OuterSumSquaredNorm(const GM& g, const AM& a, NormMethod method, std::vector<T>& s1,
                           std::vector<T>& s2) {
  const Index t = g.rows(), p = g.cols(), k = a.cols();
  const bool ghost = method == NormMethod::kGhost ||
                     (method == NormMethod::kCheapest && t * (p + k) < p * k);
  if (ghost) {
    Resize(s1, t * t);
    Resize(s2, t * t);
    Product(Mat<T>(s1.data(), t, t), g, g.transpose());
    Product(Mat<T>(s2.data(), t, t), a, a.transpose());
    double sum = 0.0;
    for (Index j = 0; j < t * t; ++j) sum += static_cast<double>(s1[j]) * s2[j];
    return sum;
  }
  Resize(s1, p * k);
  Product(Mat<T>(s1.data(), p, k), g.transpose(), a);
  return SquaredSum(s1.data(), p * k);
}

// One row of max-pooling outputs: out[ow] = the maximum of the k x k
// window at input row `row0`, column ow * stride, and at[ow] its index in
// the plane (w_in columns). PyTorch's rule: the first maximum in row-major
// window order wins, a NaN wins over every number (`take`: v > best, or v
// is NaN while best is not). The window's elements are the outer loop and
// the row's outputs the inner one, independent lanes that the compiler
// vectorises (kStride 2, the presets' pooling: a constant stride it
// de-interleaves) or the CPU overlaps; each output's comparisons still run
// in window order, and a maximum is exact, so the result is the same bits
// either way. kStride 0: the stride `st` at run time.
template <int kStride, typename T>
void MaxPoolRow(const T* src, int w_in, int row0, int k, int st, int n_out, T* out,
                std::int32_t* at) {
  const int stride = kStride > 0 ? kStride : st;
  const std::int32_t first = row0 * w_in;
  for (int ow = 0; ow < n_out; ++ow) {
    out[ow] = src[first + ow * stride];
    at[ow] = first + ow * stride;
  }
  for (int kh = 0; kh < k; ++kh) {
    for (int kw = kh == 0 ? 1 : 0; kw < k; ++kw) {
      const std::int32_t base = (row0 + kh) * w_in + kw;
      const T* r = src + base;
      for (int ow = 0; ow < n_out; ++ow) {
        const T v = r[ow * stride];
        const T b = out[ow];
        const bool take = !(v <= b) & (b == b);
        out[ow] = take ? v : b;
        at[ow] = take ? base + ow * stride : at[ow];
      }
    }
  }
}

// The summed weight gradients of the parametrised layers, from the
// gradient of their outputs (Backward's summed mode, and WeightedGradient
// from output gradients scaled per example).
// Conv2d: dy (out x m, m = batch x output pixels) by the im2col matrix col
// (kk x m): g = [dy col^T (out x kk), bias sum of dy's rows].
template <typename T>
void ConvWeightGradient(const T* dy, const T* col, int out, std::int64_t kk, std::int64_t m,
                        T* g) {
  Product(Mat<T>(g, out, kk), CMat<T>(dy, out, m), CMat<T>(col, kk, m).transpose());
  SumRows(dy, out, m, 0, m, g + out * kk);
}

// Linear: dy (n x out) by x (n x in): g = [dy^T x (out x in), sum of dy's rows].
template <typename T>
void LinearWeightGradient(const T* dy, const T* x, std::int64_t n, int in, int out, T* g) {
  Product(Mat<T>(g, out, in), CMat<T>(dy, n, out).transpose(), CMat<T>(x, n, in));
  SumColumns(dy, n, out, out, g + std::int64_t{out} * in);
}

// Embedding: dy (steps x n x dim, time-major) added into the rows of the
// examples' token ids (tokens: n x steps, row-major).
template <typename T>
void EmbeddingWeightGradient(const T* dy, const T* tokens, std::int64_t n, int steps, int dim,
                             std::int64_t size, T* g) {
  std::fill_n(g, size, T(0));
  for (int t = 0; t < steps; ++t) {
    for (std::int64_t b = 0; b < n; ++b) {
      T* row = g + static_cast<std::int64_t>(tokens[b * steps + t]) * dim;
      const T* d = dy + (t * n + b) * dim;
      for (int e = 0; e < dim; ++e) row[e] += d[e];
    }
  }
}

// One LSTM layer: the gates' gradient dgates (steps x n rows of 4H,
// time-major) by the layer's inputs (steps x n rows of `in`) and by its
// previous outputs hs (h_{t-1}: rows of steps 0 .. steps - 2): W_ih, W_hh,
// and both biases (each the sum of dgates' rows).
template <typename T>
void LstmWeightGradient(const T* dgates, const T* layer_in, const T* hs, int steps,
                        std::int64_t n, int in, int hid, T* g) {
  const int g4 = 4 * hid;
  const std::int64_t tn = std::int64_t{steps} * n;
  const std::int64_t w_ih_size = std::int64_t{g4} * in;
  const std::int64_t w_hh_size = std::int64_t{g4} * hid;
  Product(Mat<T>(g, g4, in), CMat<T>(dgates, tn, g4).transpose(), CMat<T>(layer_in, tn, in));
  Mat<T> g_hh(g + w_ih_size, g4, hid);
  if (steps > 1) {
    Product(g_hh, CMat<T>(dgates + n * g4, tn - n, g4).transpose(), CMat<T>(hs, tn - n, hid));
  } else {
    g_hh.setZero();
  }
  T* b_ih = g + w_ih_size + w_hh_size;
  SumColumns(dgates, tn, g4, g4, b_ih);
  std::copy_n(b_ih, g4, b_ih + g4);
}

}  // namespace

std::string LayerSpec::ToString() const {
  switch (kind) {
    case LayerKind::kConv2d:
      return absl::StrCat("conv2d(", out, ", kernel ", kernel, ", stride ", Stride(*this),
                          same ? ", padding same" : absl::StrCat(", padding ", padding), ")");
    case LayerKind::kMaxPool2d:
      return absl::StrCat("maxpool2d(kernel ", kernel, ", stride ", Stride(*this), ")");
    case LayerKind::kRelu:
      return "relu";
    case LayerKind::kDropout:
      return absl::StrCat("dropout(p ", p, ")");
    case LayerKind::kFlatten:
      return "flatten";
    case LayerKind::kLinear:
      return absl::StrCat("linear(", out, ")");
    case LayerKind::kEmbedding:
      return absl::StrCat("embedding(vocab ", vocab, ", dim ", out, ")");
    case LayerKind::kLstm:
      return absl::StrCat("lstm(hidden ", out, ", layers ", num_layers, ")");
  }
  return "?";
}

std::string Shape::ToString() const {
  switch (kind) {
    case Kind::kImage:
      return absl::StrCat(c, "x", h, "x", w);
    case Kind::kFlat:
      return absl::StrCat(c);
    case Kind::kSequence:
      return absl::StrCat(h, "x", c, " (sequence)");
  }
  return "?";
}

absl::StatusOr<Network> Network::Create(const NetworkSpec& spec,
                                        std::vector<std::string> names) {
  Network net;
  net.spec_ = spec;
  const Shape& in = spec.input;
  if (in.c < 1 || in.h < 1 || in.w < 1 || in.size() > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model input shape ", in.ToString(),
        ": every dimension must be >= 1, and at most 2^30 values an example"));
  }
  if (spec.layers.empty()) {
    return absl::InvalidArgumentError("model.layers is empty; a network needs at least one layer");
  }
  net.shapes_.push_back(in);
  std::size_t named = 0;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const Shape s = net.shapes_.back();
    Shape o = s;
    std::int64_t count = 0;
    const auto bad = [&](const std::string& rule) {
      return absl::InvalidArgumentError(absl::StrCat("model layer ", i, " (", l.ToString(),
                                                     ") gets input shape ", s.ToString(),
                                                     ": ", rule));
    };
    if (l.kernel > kMaxWindow || l.stride > kMaxWindow || l.padding > kMaxWindow) {
      return bad(absl::StrCat("kernel ", l.kernel, ", stride ", l.stride, ", padding ", l.padding,
                              "; each at most 2^20"));
    }
    std::string prefix;
    if (Parametrised(l.kind)) {
      prefix = named < names.size() ? names[named] : absl::StrCat(i);
      ++named;
    }
    const auto add = [&](const std::string& suffix, std::vector<std::int64_t> shape) {
      std::int64_t size = 1;
      for (std::int64_t d : shape) size *= d;
      net.tensors_.push_back({absl::StrCat(prefix, suffix), std::move(shape),
                              net.num_parameters_ + count, size});
      count += size;
    };
    switch (l.kind) {
      case LayerKind::kConv2d: {
        if (s.kind != Shape::Kind::kImage) return bad("conv2d needs an image (C x H x W) input");
        if (l.out < 1 || l.kernel < 1 || l.stride < 0 || l.padding < 0) {
          return bad("needs out_channels >= 1, kernel >= 1, stride >= 1, padding >= 0");
        }
        if (l.same && (l.kernel % 2 == 0 || Stride(l) != 1)) {
          return bad("padding same needs an odd kernel and stride 1");
        }
        if (l.same && l.padding > 0) return bad("give padding or same, not both");
        const std::int64_t p = Padding(l), st = Stride(l);
        if (s.h + 2 * p < l.kernel || s.w + 2 * p < l.kernel) {
          return bad(absl::StrCat("the kernel ", l.kernel, " is larger than the padded input"));
        }
        o = Shape{Shape::Kind::kImage, l.out,
                  static_cast<int>((s.h + 2 * p - l.kernel) / st + 1),
                  static_cast<int>((s.w + 2 * p - l.kernel) / st + 1)};
        add(".weight", {l.out, s.c, l.kernel, l.kernel});
        add(".bias", {l.out});
        break;
      }
      case LayerKind::kMaxPool2d: {
        if (s.kind != Shape::Kind::kImage) return bad("maxpool2d needs an image input");
        if (l.kernel < 1 || l.stride < 0) return bad("needs kernel >= 1, stride >= 1");
        if (s.h < l.kernel || s.w < l.kernel) return bad("the window is larger than the input");
        o = Shape{Shape::Kind::kImage, s.c, (s.h - l.kernel) / Stride(l) + 1,
                  (s.w - l.kernel) / Stride(l) + 1};
        break;
      }
      case LayerKind::kRelu:
        break;
      case LayerKind::kDropout:
        if (!(l.p >= 0.0 && l.p < 1.0)) return bad(absl::StrCat("p = ", l.p, "; need 0 <= p < 1"));
        break;
      case LayerKind::kFlatten:
        if (s.kind == Shape::Kind::kSequence) {
          return bad("flatten of a sequence; an lstm already outputs its last step");
        }
        if (s.size() > kMaxDimension) {
          return bad(absl::StrCat(s.size(), " values an example; at most 2^30"));
        }
        o = Shape{Shape::Kind::kFlat, static_cast<int>(s.size()), 1, 1};
        break;
      case LayerKind::kLinear:
        if (s.kind != Shape::Kind::kFlat) {
          return bad("linear needs a flat input (add flatten before it)");
        }
        if (l.out < 1) return bad("needs out_features >= 1");
        o = Shape{Shape::Kind::kFlat, l.out, 1, 1};
        add(".weight", {l.out, s.c});
        add(".bias", {l.out});
        break;
      case LayerKind::kEmbedding:
        if (i != 0) return bad("embedding must be the first layer (its inputs are token ids)");
        if (s.kind != Shape::Kind::kFlat) return bad("embedding needs flat rows of token ids");
        if (l.vocab < 1 || l.out < 1) return bad("needs vocab >= 1 and dim >= 1");
        o = Shape{Shape::Kind::kSequence, l.out, s.c, 1};
        add(".weight", {l.vocab, l.out});
        break;
      case LayerKind::kLstm: {
        if (s.kind != Shape::Kind::kSequence) {
          return bad("lstm needs a sequence input (an embedding before it)");
        }
        if (l.out < 1 || l.num_layers < 1) return bad("needs hidden >= 1 and layers >= 1");
        for (int k = 0; k < l.num_layers; ++k) {
          const std::int64_t in_k = k == 0 ? s.c : l.out;
          add(absl::StrCat(".weight_ih_l", k), {4 * std::int64_t{l.out}, in_k});
          add(absl::StrCat(".weight_hh_l", k), {4 * std::int64_t{l.out}, l.out});
          add(absl::StrCat(".bias_ih_l", k), {4 * std::int64_t{l.out}});
          add(absl::StrCat(".bias_hh_l", k), {4 * std::int64_t{l.out}});
        }
        o = Shape{Shape::Kind::kFlat, l.out, 1, 1};
        break;
      }
    }
    if (o.size() > kMaxDimension) {
      return bad(absl::StrCat("its output has ", o.size(), " values an example (",
                              o.ToString(), "); at most 2^30"));
    }
    if (net.num_parameters_ + count > kMaxParameters) {
      return bad(absl::StrCat("the network would have ", net.num_parameters_ + count,
                              " parameters; at most 2^31"));
    }
    net.param_offset_.push_back(net.num_parameters_);
    net.param_count_.push_back(count);
    net.num_parameters_ += count;
    net.shapes_.push_back(o);
  }
  if (net.shapes_.back().kind != Shape::Kind::kFlat) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model layers end with shape ", net.shapes_.back().ToString(),
        "; the last layer must give flat logits (end with flatten and linear)"));
  }
  if (net.num_parameters_ == 0) {
    return absl::InvalidArgumentError("model layers have no parameters (add a linear layer)");
  }
  return net;
}

bool Network::HasDropout() const {
  for (const LayerSpec& l : spec_.layers) {
    if (l.kind == LayerKind::kDropout && l.p > 0.0) return true;
  }
  return false;
}

int Network::TokenVocabulary() const {
  return spec_.layers.front().kind == LayerKind::kEmbedding ? spec_.layers.front().vocab : 0;
}

void Network::Initialize(std::span<double> params, RngStream& rng) const {
  FEDSIM_CHECK(static_cast<std::int64_t>(params.size()) == num_parameters_);
  const auto uniform = [&](std::int64_t offset, std::int64_t count, double bound) {
    for (std::int64_t k = 0; k < count; ++k) {
      params[static_cast<std::size_t>(offset + k)] = bound * (2.0 * rng.Uniform01() - 1.0);
    }
  };
  const auto normal = [&](std::int64_t offset, std::int64_t count, double stddev) {
    for (std::int64_t k = 0; k < count; ++k) {
      params[static_cast<std::size_t>(offset + k)] = stddev * rng.Gaussian();
    }
  };
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    const Shape& s = shapes_[i];
    std::int64_t at = param_offset_[i];
    switch (l.kind) {
      case LayerKind::kConv2d:
      case LayerKind::kLinear: {
        const std::int64_t fan_in =
            l.kind == LayerKind::kConv2d ? std::int64_t{s.c} * l.kernel * l.kernel : s.c;
        const std::int64_t weights = fan_in * l.out;
        if (l.init == Init::kKaimingNormal) {
          normal(at, weights, std::sqrt(2.0 / static_cast<double>(fan_in)));
          std::fill_n(params.begin() + at + weights, l.out, 0.0);
        } else {
          const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
          uniform(at, weights + l.out, bound);
        }
        break;
      }
      case LayerKind::kEmbedding:
        normal(at, param_count_[i], 1.0);
        break;
      case LayerKind::kLstm:
        uniform(at, param_count_[i], 1.0 / std::sqrt(static_cast<double>(l.out)));
        break;
      default:
        break;
    }
  }
}

template <typename T, typename Src>
void Network::Forward(const T* params, const Src* const* rows, std::int64_t n,
                      Workspace<T>& ws, RngStream* dropout) const {
  FEDSIM_CHECK(n > 0) << "empty batch";
  const std::size_t num_layers = spec_.layers.size();
  ws.n_ = n;
  ws.act_.resize(num_layers + 1);
  ws.aux_.resize(num_layers);
  ws.aux2_.resize(num_layers);
  ws.argmax_.resize(num_layers);
  ws.given_mask_.resize(num_layers, false);

  // The input in the layers' layout.
  const Shape& in = shapes_[0];
  std::vector<T>& x0 = ws.act_[0];
  Resize(x0, n * in.size());
  if (in.kind == Shape::Kind::kImage) {
    const std::int64_t hw = std::int64_t{in.h} * in.w;
    for (int c = 0; c < in.c; ++c) {
      for (std::int64_t b = 0; b < n; ++b) {
        const Src* src = rows[b] + c * hw;
        T* dst = x0.data() + (c * n + b) * hw;
        for (std::int64_t k = 0; k < hw; ++k) dst[k] = static_cast<T>(src[k]);
      }
    }
  } else {
    const std::int64_t f = in.size();
    for (std::int64_t b = 0; b < n; ++b) {
      for (std::int64_t k = 0; k < f; ++k) x0[b * f + k] = static_cast<T>(rows[b][k]);
    }
  }

  for (std::size_t i = 0; i < num_layers; ++i) {
    const LayerSpec& l = spec_.layers[i];
    const Shape& s = shapes_[i];
    const Shape& o = shapes_[i + 1];
    const T* x = ws.act_[i].data();
    std::vector<T>& out = ws.act_[i + 1];
    Resize(out, n * o.size());
    T* y = out.data();
    const T* p = params + param_offset_[i];
    switch (l.kind) {
      case LayerKind::kConv2d: {
        const int k = l.kernel, st = Stride(l), pad = Padding(l);
        const std::int64_t hw_in = std::int64_t{s.h} * s.w;
        const std::int64_t hw_out = std::int64_t{o.h} * o.w;
        const std::int64_t m = n * hw_out;
        const std::int64_t kk = std::int64_t{s.c} * k * k;
        std::vector<T>& col = ws.aux_[i];
        Resize(col, kk * m);
        for (int ci = 0; ci < s.c; ++ci) {
          for (int kh = 0; kh < k; ++kh) {
            for (int kw = 0; kw < k; ++kw) {
              T* dst = col.data() + ((std::int64_t{ci} * k + kh) * k + kw) * m;
              for (std::int64_t b = 0; b < n; ++b) {
                const T* plane = x + (ci * n + b) * hw_in;
                for (int oh = 0; oh < o.h; ++oh) {
                  T* d = dst + (b * o.h + oh) * o.w;
                  const int ih = oh * st - pad + kh;
                  if (ih < 0 || ih >= s.h) {
                    std::fill_n(d, o.w, T(0));
                    continue;
                  }
                  // Input column of output column ow: ow * st - pad + kw,
                  // in [0, s.w) for ow in [lo, hi).
                  const T* row = plane + std::int64_t{ih} * s.w;
                  const auto [lo, hi] = ValidColumns(o.w, s.w, st, pad, kw);
                  std::fill_n(d, lo, T(0));
                  if (st == 1) {
                    std::copy(row + (lo - pad + kw), row + (hi - pad + kw), d + lo);
                  } else {
                    for (int ow = lo; ow < hi; ++ow) d[ow] = row[ow * st - pad + kw];
                  }
                  std::fill(d + hi, d + o.w, T(0));
                }
              }
            }
          }
        }
        const CMat<T> w(p, l.out, kk);
        const CVec<T> bias(p + l.out * kk, l.out);
        Mat<T> ym(y, l.out, m);
        Product(ym, w, CMat<T>(col.data(), kk, m));
        ym.colwise() += bias;
        break;
      }
      case LayerKind::kMaxPool2d: {
        const int k = l.kernel, st = Stride(l);
        const std::int64_t hw_in = std::int64_t{s.h} * s.w;
        const std::int64_t hw_out = std::int64_t{o.h} * o.w;
        std::vector<std::int32_t>& arg = ws.argmax_[i];
        Resize(arg, n * o.size());
        for (std::int64_t plane = 0; plane < s.c * n; ++plane) {
          const T* src = x + plane * hw_in;
          for (int oh = 0; oh < o.h; ++oh) {
            const std::int64_t j0 = plane * hw_out + std::int64_t{oh} * o.w;
            if (st == 2) {
              MaxPoolRow<2>(src, s.w, oh * st, k, st, o.w, y + j0, arg.data() + j0);
            } else {
              MaxPoolRow<0>(src, s.w, oh * st, k, st, o.w, y + j0, arg.data() + j0);
            }
          }
        }
        break;
      }
      case LayerKind::kRelu: {
        // A select, not max: a NaN stays NaN.
        for (std::int64_t j = 0; j < n * o.size(); ++j) y[j] = Select(x[j] < T(0), T(0), x[j]);
        break;
      }
      case LayerKind::kDropout: {
        std::vector<T>& mask = ws.aux_[i];
        const std::int64_t size = n * o.size();
        if (ws.given_mask_[i]) {
          FEDSIM_CHECK(static_cast<std::int64_t>(mask.size()) == size);
        } else if (dropout != nullptr && l.p > 0.0) {
          Resize(mask, size);
          const T keep = static_cast<T>(1.0 / (1.0 - l.p));
          for (std::int64_t j = 0; j < size; ++j) {
            mask[static_cast<std::size_t>(j)] = dropout->Uniform01() < l.p ? T(0) : keep;
          }
        } else {
          mask.clear();
        }
        if (mask.empty()) {
          std::copy_n(x, size, y);
        } else {
          for (std::int64_t j = 0; j < size; ++j) y[j] = x[j] * mask[static_cast<std::size_t>(j)];
        }
        break;
      }
      case LayerKind::kFlatten:
        if (s.kind == Shape::Kind::kImage) {
          const std::int64_t hw = std::int64_t{s.h} * s.w;
          for (int c = 0; c < s.c; ++c) {
            for (std::int64_t b = 0; b < n; ++b) {
              std::copy_n(x + (c * n + b) * hw, hw, y + b * o.c + c * hw);
            }
          }
        } else {
          std::copy_n(x, n * o.size(), y);
        }
        break;
      case LayerKind::kLinear: {
        const CMat<T> w(p, l.out, s.c);
        const CVec<T> bias(p + std::int64_t{l.out} * s.c, l.out);
        Mat<T> ym(y, n, l.out);
        Product(ym, CMat<T>(x, n, s.c), w.transpose());
        ym.rowwise() += bias.transpose();
        break;
      }
      case LayerKind::kEmbedding: {
        const int steps = o.h, dim = o.c;
        for (std::int64_t b = 0; b < n; ++b) {
          for (int t = 0; t < steps; ++t) {
            const T v = x[b * steps + t];
            FEDSIM_CHECK(v >= T(0) && v < static_cast<T>(l.vocab))
                << "token id " << v << " is not an integer in [0, " << l.vocab << ")";
            const auto id = static_cast<std::int64_t>(v);
            FEDSIM_CHECK(static_cast<T>(id) == v)
                << "token id " << v << " is not an integer in [0, " << l.vocab << ")";
            std::copy_n(p + id * dim, dim, y + (t * n + b) * dim);
          }
        }
        break;
      }
      case LayerKind::kLstm: {
        const int steps = s.h, hid = l.out, g4 = 4 * l.out;
        const std::int64_t tn = std::int64_t{steps} * n;
        // Per LSTM layer k: gates (tn x 4H, after their activations), the
        // cell states and their tanh (tn x H each); the hidden states go to
        // aux2_.
        std::vector<T>& gates_cells = ws.aux_[i];
        std::vector<T>& hidden = ws.aux2_[i];
        Resize(gates_cells, l.num_layers * tn * (g4 + 2 * hid));
        Resize(hidden, l.num_layers * tn * hid);
        const T* layer_in = x;
        int in_k = s.c;
        const T* pk = p;
        for (int k = 0; k < l.num_layers; ++k) {
          const CMat<T> w_ih(pk, g4, in_k);
          const CMat<T> w_hh(pk + std::int64_t{g4} * in_k, g4, hid);
          const CVec<T> b_ih(pk + std::int64_t{g4} * (in_k + hid), g4);
          const CVec<T> b_hh(pk + std::int64_t{g4} * (in_k + hid + 1), g4);
          T* gates = gates_cells.data() + k * tn * (g4 + 2 * hid);
          T* cells = gates + tn * g4;
          T* tanh_cells = cells + tn * hid;
          T* hs = hidden.data() + k * tn * hid;
          Mat<T> gm(gates, tn, g4);
          Product(gm, CMat<T>(layer_in, tn, in_k), w_ih.transpose());
          gm.rowwise() += (b_ih + b_hh).transpose();
          for (int t = 0; t < steps; ++t) {
            T* gt = gates + t * n * g4;
            if (t > 0) {
              Product(Mat<T>(gt, n, g4), CMat<T>(hs + (t - 1) * n * hid, n, hid),
                      w_hh.transpose(), /*add=*/true);
            }
            for (std::int64_t b = 0; b < n; ++b) {
              T* g = gt + b * g4;  // i, f, g, o
              Activate<Activation::kSigmoid>(g, 2 * std::int64_t{hid});
              Activate<Activation::kTanh>(g + 2 * hid, hid);
              Activate<Activation::kSigmoid>(g + 3 * hid, hid);
              const T* c_prev = t > 0 ? cells + ((t - 1) * n + b) * hid : nullptr;
              T* c = cells + (t * n + b) * hid;
              T* tc = tanh_cells + (t * n + b) * hid;
              for (int j = 0; j < hid; ++j) {
                c[j] = (c_prev != nullptr ? g[hid + j] * c_prev[j] : T(0)) + g[j] * g[2 * hid + j];
              }
              std::copy_n(c, hid, tc);
              Activate<Activation::kTanh>(tc, hid);
              T* h = hs + (t * n + b) * hid;
              for (int j = 0; j < hid; ++j) h[j] = g[3 * hid + j] * tc[j];
            }
          }
          layer_in = hs;
          pk += std::int64_t{g4} * (in_k + hid + 2);
          in_k = hid;
        }
        std::copy_n(layer_in + (steps - 1) * n * hid, n * hid, y);
        break;
      }
    }
  }
}

template <typename T>
void Network::Backward(const T* params, std::type_identity_t<const T*> dlogits,
                       Workspace<T>& ws, std::type_identity_t<T*> grad,
                       std::type_identity_t<RowMat<T>>* per_example,
                       std::int64_t first_row) const {
  FEDSIM_CHECK((grad == nullptr) != (per_example == nullptr));
  BackwardImpl(params, dlogits, ws, grad, per_example, first_row, nullptr,
               NormMethod::kCheapest);
}

template <typename T>
void Network::SquaredGradientNorms(const T* params, std::type_identity_t<const T*> dlogits,
                                   Workspace<T>& ws, double* sq_norms,
                                   NormMethod method) const {
  FEDSIM_CHECK(sq_norms != nullptr);
  std::fill_n(sq_norms, ws.n_, 0.0);
  ws.saved_.resize(spec_.layers.size());
  for (std::vector<T>& v : ws.saved_) v.clear();
  BackwardImpl<T>(params, dlogits, ws, nullptr, nullptr, 0, sq_norms, method);
}

template <typename T>
void Network::WeightedGradient(Workspace<T>& ws, const double* weights,
                               std::type_identity_t<T*> grad) const {
  const std::int64_t n = ws.n_;
  FEDSIM_CHECK(n > 0 && ws.saved_.size() == spec_.layers.size())
      << "WeightedGradient before SquaredGradientNorms";
  std::vector<T>& scaled = ws.scaled_;
  // scaled = saved, each of `rows` rows of `cols` values times the weight
  // of its example (row r belongs to example r % n: batch-major rows are
  // r = b, time-major ones r = t n + b).
  const auto scale_rows = [&](const T* saved, std::int64_t rows, std::int64_t cols) {
    Resize(scaled, rows * cols);
    for (std::int64_t r = 0; r < rows; ++r) {
      const T w = static_cast<T>(weights[r % n]);
      for (std::int64_t j = 0; j < cols; ++j) scaled[r * cols + j] = saved[r * cols + j] * w;
    }
    return scaled.data();
  };
  for (std::size_t ii = 0; ii < spec_.layers.size(); ++ii) {
    if (param_count_[ii] == 0) continue;
    const LayerSpec& l = spec_.layers[ii];
    const Shape& s = shapes_[ii];
    const Shape& o = shapes_[ii + 1];
    const std::vector<T>& saved = ws.saved_[ii];
    FEDSIM_CHECK(!saved.empty()) << "no output gradient kept for layer " << ii;
    T* g = grad + param_offset_[ii];
    const T* x = ws.act_[ii].data();
    switch (l.kind) {
      case LayerKind::kConv2d: {
        // dy: out rows of n x hw_out columns, example b's the b-th block.
        const std::int64_t hw_out = std::int64_t{o.h} * o.w;
        const std::int64_t m = n * hw_out;
        Resize(scaled, l.out * m);
        for (int c = 0; c < l.out; ++c) {
          for (std::int64_t b = 0; b < n; ++b) {
            const T w = static_cast<T>(weights[b]);
            const T* src = saved.data() + c * m + b * hw_out;
            T* dst = scaled.data() + c * m + b * hw_out;
            for (std::int64_t j = 0; j < hw_out; ++j) dst[j] = src[j] * w;
          }
        }
        ConvWeightGradient(scaled.data(), ws.aux_[ii].data(), l.out,
                           std::int64_t{s.c} * l.kernel * l.kernel, m, g);
        break;
      }
      case LayerKind::kLinear:
        LinearWeightGradient(scale_rows(saved.data(), n, l.out), x, n, s.c, l.out, g);
        break;
      case LayerKind::kEmbedding:
        EmbeddingWeightGradient(scale_rows(saved.data(), std::int64_t{o.h} * n, o.c), x, n,
                                o.h, o.c, param_count_[ii], g);
        break;
      case LayerKind::kLstm: {
        const int steps = s.h, hid = l.out, g4 = 4 * l.out;
        const std::int64_t tn = std::int64_t{steps} * n;
        std::int64_t off = 0;
        for (int k = 0; k < l.num_layers; ++k) {
          const int in_k = k == 0 ? s.c : hid;
          const T* hs = ws.aux2_[ii].data() + k * tn * hid;
          const T* layer_in = k == 0 ? x : ws.aux2_[ii].data() + (k - 1) * tn * hid;
          LstmWeightGradient(scale_rows(saved.data() + k * tn * g4, tn, g4), layer_in, hs, steps,
                             n, in_k, hid, g + off);
          off += std::int64_t{g4} * (in_k + hid + 2);
        }
        break;
      }
      default:
        FEDSIM_CHECK(false) << "layer " << ii << " has parameters but no weight gradient";
    }
  }
}

// Backward's three modes: the summed gradient (grad), per-example
// gradients (per_example), or their squared norms (sq_norms, added to).
template <typename T>
void Network::BackwardImpl(const T* params, const T* dlogits, Workspace<T>& ws, T* grad,
                           RowMat<T>* per_example, std::int64_t first_row, double* sq_norms,
                           NormMethod method) const {
  const std::int64_t n = ws.n_;
  FEDSIM_CHECK(n > 0 && ws.act_.size() == spec_.layers.size() + 1) << "Backward before Forward";
  FEDSIM_CHECK(per_example == nullptr ||
               (first_row >= 0 && per_example->rows() >= first_row + n &&
                per_example->cols() == num_parameters_))
      << "per-example gradients: rows " << first_row << " + " << n << " of a matrix of "
      << (per_example != nullptr ? per_example->rows() : 0) << " rows";
  // Where layer i's gradient for parameter offset `at` of example b goes.
  const auto target = [&](std::int64_t b, std::int64_t at) {
    return per_example != nullptr ? per_example->row(first_row + b).data() + at : grad + at;
  };
  // The first layer whose input gradient is needed: any parametrised
  // layer before layer i needs layer i to pass the gradient down.
  std::size_t first_param = spec_.layers.size();
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    if (param_count_[i] > 0) {
      first_param = i;
      break;
    }
  }
  Resize(ws.grad_in_, n * NumOutputs());
  std::copy_n(dlogits, n * NumOutputs(), ws.grad_in_.data());

  for (std::size_t ii = spec_.layers.size(); ii-- > first_param;) {
    const LayerSpec& l = spec_.layers[ii];
    const Shape& s = shapes_[ii];
    const Shape& o = shapes_[ii + 1];
    const bool need_dx = ii > first_param;
    const T* x = ws.act_[ii].data();
    const T* y = ws.act_[ii + 1].data();
    const T* dy = ws.grad_in_.data();
    if (need_dx) Resize(ws.grad_out_, n * s.size());
    T* dx = ws.grad_out_.data();
    const T* p = params + param_offset_[ii];
    const std::int64_t at = param_offset_[ii];
    switch (l.kind) {
      case LayerKind::kConv2d: {
        const int k = l.kernel, st = Stride(l), pad = Padding(l);
        const std::int64_t hw_in = std::int64_t{s.h} * s.w;
        const std::int64_t hw_out = std::int64_t{o.h} * o.w;
        const std::int64_t m = n * hw_out;
        const std::int64_t kk = std::int64_t{s.c} * k * k;
        const CMat<T> col(ws.aux_[ii].data(), kk, m);
        const CMat<T> dym(dy, l.out, m);
        if (sq_norms != nullptr) {
          // Example b's weight gradient: sum over its output pixels t of
          // dy_t (out) times col_t (kk); its bias gradient: sum of dy_t.
          Resize(ws.norm_c_, l.out);
          for (std::int64_t b = 0; b < n; ++b) {
            sq_norms[b] += OuterSumSquaredNorm<T>(
                dym.middleCols(b * hw_out, hw_out).transpose(),
                col.middleCols(b * hw_out, hw_out).transpose(), method, ws.norm_a_, ws.norm_b_);
            SumRows(dy, l.out, m, b * hw_out, hw_out, ws.norm_c_.data());
            sq_norms[b] += SquaredSum(ws.norm_c_.data(), l.out);
          }
          ws.saved_[ii].assign(dy, dy + l.out * m);
        } else if (per_example == nullptr) {
          ConvWeightGradient(dy, ws.aux_[ii].data(), l.out, kk, m, grad + at);
        } else {
          for (std::int64_t b = 0; b < n; ++b) {
            T* g = target(b, at);
            Product(Mat<T>(g, l.out, kk), dym.middleCols(b * hw_out, hw_out),
                    col.middleCols(b * hw_out, hw_out).transpose());
            SumRows(dy, l.out, m, b * hw_out, hw_out, g + l.out * kk);
          }
        }
        if (need_dx) {
          std::vector<T>& dcol = ws.scratch_;
          Resize(dcol, kk * m);
          Product(Mat<T>(dcol.data(), kk, m), CMat<T>(p, l.out, kk).transpose(), dym);
          std::fill_n(dx, n * s.size(), T(0));
          for (int ci = 0; ci < s.c; ++ci) {
            for (int kh = 0; kh < k; ++kh) {
              for (int kw = 0; kw < k; ++kw) {
                const T* src = dcol.data() + ((std::int64_t{ci} * k + kh) * k + kw) * m;
                for (std::int64_t b = 0; b < n; ++b) {
                  T* plane = dx + (ci * n + b) * hw_in;
                  for (int oh = 0; oh < o.h; ++oh) {
                    const int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= s.h) continue;
                    const T* d = src + (b * o.h + oh) * o.w;
                    T* row = plane + std::int64_t{ih} * s.w;
                    const auto [lo, hi] = ValidColumns(o.w, s.w, st, pad, kw);
                    if (st == 1) {
                      T* r = row + (lo - pad + kw);
                      for (int ow = lo; ow < hi; ++ow) r[ow - lo] += d[ow];
                    } else {
                      for (int ow = lo; ow < hi; ++ow) row[ow * st - pad + kw] += d[ow];
                    }
                  }
                }
              }
            }
          }
        }
        break;
      }
      case LayerKind::kMaxPool2d: {
        const std::int64_t hw_in = std::int64_t{s.h} * s.w;
        const std::int64_t hw_out = std::int64_t{o.h} * o.w;
        const std::vector<std::int32_t>& arg = ws.argmax_[ii];
        std::fill_n(dx, n * s.size(), T(0));
        for (std::int64_t plane = 0; plane < s.c * n; ++plane) {
          T* dplane = dx + plane * hw_in;
          const std::int32_t* a = arg.data() + plane * hw_out;
          const T* d = dy + plane * hw_out;
          for (std::int64_t j = 0; j < hw_out; ++j) dplane[a[j]] += d[j];
        }
        break;
      }
      case LayerKind::kRelu:
        for (std::int64_t j = 0; j < n * s.size(); ++j) dx[j] = Select(y[j] > T(0), dy[j], T(0));
        break;
      case LayerKind::kDropout: {
        const std::vector<T>& mask = ws.aux_[ii];
        if (mask.empty()) {
          std::copy_n(dy, n * s.size(), dx);
        } else {
          for (std::int64_t j = 0; j < n * s.size(); ++j) {
            dx[j] = dy[j] * mask[static_cast<std::size_t>(j)];
          }
        }
        break;
      }
      case LayerKind::kFlatten:
        if (s.kind == Shape::Kind::kImage) {
          const std::int64_t hw = std::int64_t{s.h} * s.w;
          for (int c = 0; c < s.c; ++c) {
            for (std::int64_t b = 0; b < n; ++b) {
              std::copy_n(dy + b * o.c + c * hw, hw, dx + (c * n + b) * hw);
            }
          }
        } else {
          std::copy_n(dy, n * s.size(), dx);
        }
        break;
      case LayerKind::kLinear: {
        const CMat<T> xm(x, n, s.c);
        const CMat<T> dym(dy, n, l.out);
        const std::int64_t wsize = std::int64_t{l.out} * s.c;
        if (sq_norms != nullptr) {
          // g = dy (x) [x; 1]: ||g||^2 = ||dy||^2 (||x||^2 + 1).
          for (std::int64_t b = 0; b < n; ++b) {
            sq_norms[b] +=
                SquaredSum(dy + b * l.out, l.out) * (SquaredSum(x + b * s.c, s.c) + 1.0);
          }
          ws.saved_[ii].assign(dy, dy + n * l.out);
        } else if (per_example == nullptr) {
          LinearWeightGradient(dy, x, n, s.c, l.out, grad + at);
        } else {
          for (std::int64_t b = 0; b < n; ++b) {
            T* g = target(b, at);
            Product(Mat<T>(g, l.out, s.c), dym.row(b).transpose(), xm.row(b));
            Eigen::Map<Vec<T>>(g + wsize, l.out) = dym.row(b).transpose();
          }
        }
        if (need_dx) Product(Mat<T>(dx, n, s.c), dym, CMat<T>(p, l.out, s.c));
        break;
      }
      case LayerKind::kEmbedding: {
        const int steps = o.h, dim = o.c;
        if (sq_norms != nullptr) {
          // Example b's gradient has a row per distinct token: add its
          // steps' dy into those rows of a zeroed vocab x dim buffer, sum
          // the squares of each touched row once (in order of first use),
          // zero them again. O(steps x dim) an example.
          std::vector<T>& touched = ws.norm_a_;
          std::vector<T>& seen = ws.norm_b_;
          Resize(touched, param_count_[ii]);
          Resize(seen, l.vocab);
          std::fill(touched.begin(), touched.end(), T(0));
          std::fill(seen.begin(), seen.end(), T(0));
          for (std::int64_t b = 0; b < n; ++b) {
            for (int t = 0; t < steps; ++t) {
              const auto id = static_cast<std::int64_t>(x[b * steps + t]);
              T* g = touched.data() + id * dim;
              const T* d = dy + (t * n + b) * dim;
              for (int e = 0; e < dim; ++e) g[e] += d[e];
            }
            for (int t = 0; t < steps; ++t) {
              const auto id = static_cast<std::int64_t>(x[b * steps + t]);
              if (seen[static_cast<std::size_t>(id)] != T(0)) continue;
              seen[static_cast<std::size_t>(id)] = T(1);
              sq_norms[b] += SquaredSum(touched.data() + id * dim, dim);
            }
            for (int t = 0; t < steps; ++t) {
              const auto id = static_cast<std::int64_t>(x[b * steps + t]);
              seen[static_cast<std::size_t>(id)] = T(0);
              std::fill_n(touched.data() + id * dim, dim, T(0));
            }
          }
          ws.saved_[ii].assign(dy, dy + std::int64_t{steps} * n * dim);
          break;
        }
        if (per_example == nullptr) {
          EmbeddingWeightGradient(dy, x, n, steps, dim, param_count_[ii], grad + at);
          break;
        }
        for (std::int64_t b = 0; b < n; ++b) {
          std::fill_n(target(b, at), param_count_[ii], T(0));
        }
        for (int t = 0; t < steps; ++t) {
          for (std::int64_t b = 0; b < n; ++b) {
            const auto id = static_cast<std::int64_t>(x[b * steps + t]);
            T* g = target(b, at) + id * dim;
            const T* d = dy + (t * n + b) * dim;
            for (int e = 0; e < dim; ++e) g[e] += d[e];
          }
        }
        break;
      }
      case LayerKind::kLstm: {
        const int steps = s.h, hid = l.out, g4 = 4 * l.out;
        const std::int64_t tn = std::int64_t{steps} * n;
        // dH of the current LSTM layer's outputs (tn x H): the top one only
        // has its last step's.
        std::vector<T>& dhs = ws.scratch_;
        Resize(dhs, tn * hid);
        std::fill(dhs.begin(), dhs.end(), T(0));
        std::copy_n(dy, n * hid, dhs.data() + (steps - 1) * n * hid);
        std::vector<T>& buf = ws.scratch2_;
        Resize(buf, tn * g4 + 2 * n * hid);
        T* dgates = buf.data();
        T* dh_next = dgates + tn * g4;
        T* dc_next = dh_next + n * hid;
        // Parameter offsets of LSTM layer k.
        std::vector<std::int64_t> offs(static_cast<std::size_t>(l.num_layers));
        {
          std::int64_t off = 0;
          for (int k = 0; k < l.num_layers; ++k) {
            offs[static_cast<std::size_t>(k)] = off;
            off += std::int64_t{g4} * ((k == 0 ? s.c : hid) + hid + 2);
          }
        }
        for (int k = l.num_layers; k-- > 0;) {
          const int in_k = k == 0 ? s.c : hid;
          const T* pk = p + offs[static_cast<std::size_t>(k)];
          const std::int64_t atk = at + offs[static_cast<std::size_t>(k)];
          const T* gates = ws.aux_[ii].data() + k * tn * (g4 + 2 * hid);
          const T* cells = gates + tn * g4;
          const T* tanh_cells = cells + tn * hid;
          const T* hs = ws.aux2_[ii].data() + k * tn * hid;
          const T* layer_in = k == 0 ? x : ws.aux2_[ii].data() + (k - 1) * tn * hid;
          const CMat<T> w_hh(pk + std::int64_t{g4} * in_k, g4, hid);
          std::fill_n(dh_next, 2 * n * hid, T(0));
          for (int t = steps; t-- > 0;) {
            for (std::int64_t b = 0; b < n; ++b) {
              const std::int64_t r = t * n + b;
              const T* g = gates + r * g4;
              const T* tcs = tanh_cells + r * hid;
              const T* c_prev = t > 0 ? cells + (r - n) * hid : nullptr;
              const T* dh_out = dhs.data() + r * hid;
              T* dg = dgates + r * g4;
              T* dhn = dh_next + b * hid;
              T* dcn = dc_next + b * hid;
              for (int j = 0; j < hid; ++j) {
                const T gi = g[j], gf = g[hid + j], gg = g[2 * hid + j], go = g[3 * hid + j];
                const T dh = dh_out[j] + dhn[j];
                const T tc = tcs[j];
                const T dc = dcn[j] + dh * go * (T(1) - tc * tc);
                dg[j] = dc * gg * gi * (T(1) - gi);
                dg[hid + j] = c_prev != nullptr ? dc * c_prev[j] * gf * (T(1) - gf) : T(0);
                dg[2 * hid + j] = dc * gi * (T(1) - gg * gg);
                dg[3 * hid + j] = dh * tc * go * (T(1) - go);
                dcn[j] = dc * gf;
              }
            }
            if (t > 0) {
              Product(Mat<T>(dh_next, n, hid), CMat<T>(dgates + t * n * g4, n, g4), w_hh);
            }
          }
          const CMat<T> dg_all(dgates, tn, g4);
          const std::int64_t w_ih_size = std::int64_t{g4} * in_k;
          const std::int64_t w_hh_size = std::int64_t{g4} * hid;
          if (sq_norms != nullptr) {
            // Example b: W_ih's gradient sums dgates_t x_t^T over its
            // steps, W_hh's dgates_t h_{t-1}^T over steps 1.., and both
            // biases are sum_t dgates_t.
            Resize(ws.norm_c_, std::int64_t{g4});
            for (std::int64_t b = 0; b < n; ++b) {
              const CStrided<T> dgb(dgates + b * g4, steps, g4, Eigen::OuterStride<>(n * g4));
              const CStrided<T> xb(layer_in + b * in_k, steps, in_k,
                                   Eigen::OuterStride<>(n * in_k));
              sq_norms[b] += OuterSumSquaredNorm<T>(dgb, xb, method, ws.norm_a_, ws.norm_b_);
              if (steps > 1) {
                const CStrided<T> dgb1(dgates + (n + b) * g4, steps - 1, g4,
                                       Eigen::OuterStride<>(n * g4));
                const CStrided<T> hb(hs + b * hid, steps - 1, hid,
                                     Eigen::OuterStride<>(n * hid));
                sq_norms[b] += OuterSumSquaredNorm<T>(dgb1, hb, method, ws.norm_a_, ws.norm_b_);
              }
              SumColumns(dgates + b * g4, steps, g4, n * g4, ws.norm_c_.data());
              sq_norms[b] += 2.0 * SquaredSum(ws.norm_c_.data(), g4);
            }
            // Kept for WeightedGradient: layer k's gates' gradient.
            ws.saved_[ii].resize(static_cast<std::size_t>(l.num_layers * tn * g4));
            std::copy_n(dgates, tn * g4, ws.saved_[ii].data() + k * tn * g4);
          } else if (per_example == nullptr) {
            LstmWeightGradient(dgates, layer_in, hs, steps, n, in_k, hid, grad + atk);
          } else {
            for (std::int64_t b = 0; b < n; ++b) {
              T* g = target(b, atk);
              const CStrided<T> dgb(dgates + b * g4, steps, g4, Eigen::OuterStride<>(n * g4));
              const CStrided<T> xb(layer_in + b * in_k, steps, in_k,
                                   Eigen::OuterStride<>(n * in_k));
              Product(Mat<T>(g, g4, in_k), dgb.transpose(), xb);
              Mat<T> g_hh(g + w_ih_size, g4, hid);
              if (steps > 1) {
                const CStrided<T> dgb1(dgates + (n + b) * g4, steps - 1, g4,
                                       Eigen::OuterStride<>(n * g4));
                const CStrided<T> hb(hs + b * hid, steps - 1, hid, Eigen::OuterStride<>(n * hid));
                Product(g_hh, dgb1.transpose(), hb);
              } else {
                g_hh.setZero();
              }
              T* b_ih = g + w_ih_size + w_hh_size;
              SumColumns(dgates + b * g4, steps, g4, n * g4, b_ih);
              std::copy_n(b_ih, g4, b_ih + g4);
            }
          }
          // The gradient of this layer's inputs: the next layer down's
          // outputs, or the embedding's.
          if (k > 0) {
            Product(Mat<T>(dhs.data(), tn, hid), dg_all, CMat<T>(pk, g4, in_k));
          } else if (need_dx) {
            Product(Mat<T>(dx, tn, in_k), dg_all, CMat<T>(pk, g4, in_k));
          }
        }
        break;
      }
    }
    if (need_dx) std::swap(ws.grad_in_, ws.grad_out_);
  }
}

template void Network::Forward<float, float>(const float*, const float* const*, std::int64_t,
                                             Workspace<float>&, RngStream*) const;
template void Network::Forward<double, float>(const double*, const float* const*,
                                              std::int64_t, Workspace<double>&,
                                              RngStream*) const;
template void Network::Forward<double, double>(const double*, const double* const*,
                                               std::int64_t, Workspace<double>&,
                                               RngStream*) const;
template void Network::Forward<float, double>(const float*, const double* const*,
                                              std::int64_t, Workspace<float>&,
                                              RngStream*) const;
template void Network::Backward<float>(const float*, const float*, Workspace<float>&, float*,
                                       RowMat<float>*, std::int64_t) const;
template void Network::Backward<double>(const double*, const double*, Workspace<double>&,
                                        double*, RowMat<double>*, std::int64_t) const;
template void Network::SquaredGradientNorms<float>(const float*, const float*,
                                                   Workspace<float>&, double*,
                                                   NormMethod) const;
template void Network::SquaredGradientNorms<double>(const double*, const double*,
                                                    Workspace<double>&, double*,
                                                    NormMethod) const;
template void Network::WeightedGradient<float>(Workspace<float>&, const double*, float*) const;
template void Network::WeightedGradient<double>(Workspace<double>&, const double*,
                                                double*) const;

// ---------------------------------------------------------------------------
// Presets (../shared/MODELS.md).

namespace {

LayerSpec Conv(int out, int kernel, int padding, Init init, bool same = false) {
  return {.kind = LayerKind::kConv2d, .out = out, .kernel = kernel, .padding = padding,
          .same = same, .init = init};
}
LayerSpec Pool(int kernel) { return {.kind = LayerKind::kMaxPool2d, .kernel = kernel}; }
LayerSpec Simple(LayerKind kind) { return {.kind = kind}; }
LayerSpec Drop(double p) { return {.kind = LayerKind::kDropout, .p = p}; }
LayerSpec Dense(int out, Init init) {
  return {.kind = LayerKind::kLinear, .out = out, .init = init};
}

struct Preset {
  const char* name;
  Shape input;
  std::vector<LayerSpec> layers;
  std::vector<std::string> names;  // module names, as the source's state_dict
};

std::vector<Preset> Presets(double dropout) {
  const Init kn = Init::kKaimingNormal;
  const Init pt = Init::kTorchDefault;
  const LayerSpec relu = Simple(LayerKind::kRelu);
  const LayerSpec flat = Simple(LayerKind::kFlatten);
  std::vector<Preset> out;
  // FedAU: model/cnn_*.py (nn.Sequential blocks "conv" and "fc"; the
  // state_dict names follow their indices).
  out.push_back({"fedau_cnn_mnist",
                 {Shape::Kind::kImage, 1, 28, 28},
                 {Conv(32, 3, 1, kn), relu, Pool(2), Conv(32, 3, 1, kn), relu, Pool(2), flat,
                  Dense(128, kn), relu, Dense(10, pt)},
                 {"conv.0", "conv.3", "fc1.0", "fc2"}});
  out.push_back({"fedau_cnn_svhn",
                 {Shape::Kind::kImage, 3, 32, 32},
                 {Conv(32, 3, 1, kn), relu, Pool(2), Conv(32, 3, 1, kn), relu, Pool(2), flat,
                  Dense(128, kn), relu, Dense(10, pt)},
                 {"conv.0", "conv.3", "fc1.0", "fc2"}});
  out.push_back({"fedau_cnn_cifar10",
                 {Shape::Kind::kImage, 3, 32, 32},
                 {Conv(32, 3, 1, kn), relu, Pool(2), Conv(32, 3, 1, kn), relu, Pool(2), flat,
                  Dense(256, kn), relu, Dense(64, kn), relu, Dense(10, pt)},
                 {"conv.0", "conv.3", "fc1.0", "fc1.2", "fc2"}});
  // FedFix: FL/create_model.py CNN_CIFAR_dropout (conv3 has no ReLU).
  out.push_back({"fedfix_cnn_cifar",
                 {Shape::Kind::kImage, 3, 32, 32},
                 {Conv(32, 3, 0, pt), relu, Pool(2), Drop(dropout), Conv(64, 3, 0, pt), relu,
                  Pool(2), Drop(dropout), Conv(64, 3, 0, pt), Drop(dropout), flat, Dense(64, pt),
                  relu, Dense(10, pt)},
                 {"conv1", "conv2", "conv3", "fc1", "fc2"}});
  // FedFix: LSTM_Shakespeare (embed, lstm, fc on the last step).
  out.push_back({"fedfix_lstm_shakespeare",
                 {Shape::Kind::kFlat, 80, 1, 1},
                 {{.kind = LayerKind::kEmbedding, .out = 8, .vocab = 100},
                  {.kind = LayerKind::kLstm, .out = 100, .num_layers = 2},
                  Dense(100, pt)},
                 {"embed", "lstm", "fc"}});
  // LEAF's FEMNIST CNN (TensorFlow; PyTorch's default initialisation here).
  out.push_back({"leaf_cnn_femnist",
                 {Shape::Kind::kImage, 1, 28, 28},
                 {Conv(32, 5, 0, pt, true), relu, Pool(2), Conv(64, 5, 0, pt, true), relu,
                  Pool(2), flat, Dense(2048, pt), relu, Dense(62, pt)},
                 {"conv1", "conv2", "fc1", "fc2"}});
  return out;
}

}  // namespace

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : Presets(0.0)) names.push_back(p.name);
  return names;
}

absl::StatusOr<Network> MakePreset(const std::string& name, double dropout) {
  for (Preset& p : Presets(dropout)) {
    if (name == p.name) return Network::Create({p.input, std::move(p.layers)}, std::move(p.names));
  }
  return absl::InvalidArgumentError(absl::StrCat("model.architecture = ", name,
                                                 ": not a preset; one of ",
                                                 absl::StrJoin(PresetNames(), ", ")));
}

}  // namespace fedsim::nn
