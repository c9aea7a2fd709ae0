// File: common/nn/network.h
//
// Neural networks as a sequence of layers (../shared/MODELS.md): Conv2d,
// MaxPool2d, ReLU, Dropout, Flatten, Linear, Embedding and a multi-layer
// LSTM, with softmax cross-entropy on the last layer's outputs. Pure
// compute, no I/O; the Objective adapter is common/objectives.
//
// Parameters: one flat vector in the order of PyTorch's state_dict() for
// the same module, each tensor in PyTorch's memory layout (Conv2d weight
// out x in x kh x kw, Linear weight out x in, Embedding vocab x dim, LSTM
// weight_ih_l0 (4H x in), weight_hh_l0 (4H x H), bias_ih_l0, bias_hh_l0,
// then layer 1; gates in PyTorch's order i, f, g, o). tensors() names them
// as PyTorch does (docs/networks.md).
//
// Compute (docs/networks.md "Kernels"): a batch's activations live in one
// Workspace per thread, in a layout chosen for the layers' matrix products:
// images channel-major over the batch (C x N x H x W: a convolution is one
// GEMM of its weights by the batch's im2col matrix), flat activations N x F
// row-major, sequences time-major (T x N x F: an LSTM step is one GEMM). The
// input rows (one example a row, PyTorch's C x H x W order, or T token ids)
// are copied into that layout once per batch. Every product is Eigen's
// GEMM, single-threaded: fedsim runs clients in parallel, never both, so a
// result is the same bits for any number of threads.
//
// Thread safety: Network is immutable after Create; a Workspace belongs to
// one thread at a time.
#ifndef FEDSIM_COMMON_NN_NETWORK_H_
#define FEDSIM_COMMON_NN_NETWORK_H_

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "absl/status/statusor.h"
#include "common/random/stream.h"

namespace fedsim::nn {

enum class LayerKind {
  kConv2d,
  kMaxPool2d,
  kRelu,
  kDropout,
  kFlatten,
  kLinear,
  kEmbedding,
  kLstm,
};

// How a layer's weights are drawn (MODELS.md, "Initialisation").
enum class Init {
  // PyTorch's default: weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming
  // uniform with a = sqrt(5)), biases likewise; Embedding N(0, 1); LSTM
  // every tensor U(-1/sqrt(H), 1/sqrt(H)).
  kTorchDefault,
  // Kaiming normal with the ReLU gain: weights N(0, 2 / fan_in), biases 0
  // (FedAU's CNNs, conv and hidden linear layers).
  kKaimingNormal,
};

struct LayerSpec {
  LayerKind kind = LayerKind::kRelu;
  // conv2d: out_channels; linear: out_features; embedding: dim; lstm: hidden.
  int out = 0;
  int kernel = 0;       // conv2d, maxpool2d
  int stride = 0;       // conv2d (0: 1), maxpool2d (0: kernel)
  int padding = 0;      // conv2d, on every side
  bool same = false;    // conv2d: padding (kernel - 1) / 2 (odd kernel, stride 1)
  double p = 0.0;       // dropout: the probability of zeroing an activation
  int vocab = 0;        // embedding: number of token ids
  int num_layers = 1;   // lstm
  Init init = Init::kTorchDefault;

  // "conv2d(32, k=3, p=1)" and the like: how errors name a layer.
  std::string ToString() const;
};

// One example's activation. image: c x h x w; flat: c values (h = w = 1);
// sequence: h steps of c values (w = 1).
struct Shape {
  enum class Kind { kImage, kFlat, kSequence };
  Kind kind = Kind::kFlat;
  int c = 0;
  int h = 1;
  int w = 1;
  std::int64_t size() const { return std::int64_t{c} * h * w; }
  std::string ToString() const;  // "1x28x28", "784", "80x8 (sequence)"
};

struct NetworkSpec {
  Shape input;
  std::vector<LayerSpec> layers;
};

// A parameter tensor, as PyTorch's state_dict() names it ("conv1.weight"
// for presets, "<index>.weight" for a user's sequence, as nn.Sequential).
struct TensorInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  std::int64_t offset = 0;
  std::int64_t size = 0;
};

template <typename T>
class Workspace;

// How SquaredGradientNorms gets one layer's per-example norm. A weight
// gradient that is a sum of outer products over positions t (a
// convolution's output pixels, an LSTM's time steps), G_i = sum_t g_t a_t^T,
// has ||G_i||^2 = sum_{t,s} <g_t, g_s> <a_t, a_s>: two T x T Gram matrices
// (ghost norm, Li et al. 2022), T^2 (p + k) multiplications, against T p k
// to form G_i. kCheapest takes the smaller count layer by layer (mixed
// ghost clipping, Bu et al. 2023); the other two force one way (tests).
enum class NormMethod { kCheapest, kGhost, kMaterialise };

class Network {
 public:
  // Checks every layer against the shape it receives; the error is one
  // line naming the layer, its index and both shapes. `names`: one module
  // name per parametrised layer (presets); empty: the layers' indices.
  static absl::StatusOr<Network> Create(const NetworkSpec& spec,
                                        std::vector<std::string> names = {});

  const NetworkSpec& spec() const { return spec_; }
  std::int64_t NumParameters() const { return num_parameters_; }
  int NumOutputs() const { return static_cast<int>(shapes_.back().size()); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The shape after layer i (shapes()[0] is the input).
  const std::vector<Shape>& shapes() const { return shapes_; }
  // True if some Dropout layer has p > 0 (training then draws masks).
  bool HasDropout() const;
  // True if the first layer is an Embedding: the inputs are token ids,
  // which must be integers in [0, vocab).
  int TokenVocabulary() const;

  // Draws the parameters layer by layer in state_dict order (Init).
  void Initialize(std::span<double> params, RngStream& rng) const;

  // The forward pass of `n` examples, rows[i] pointing at example i's
  // input().size() features (float or double). `params` in T. With
  // `dropout` (training), Dropout layers zero activations drawn from it
  // (Uniform01() < p, in the activation buffer's order) and scale the rest
  // by 1 / (1 - p); without, they pass activations through (evaluation).
  // The logits are ws.logits() (n x NumOutputs(), row-major).
  template <typename T, typename Src>
  void Forward(const T* params, const Src* const* rows, std::int64_t n, Workspace<T>& ws,
               RngStream* dropout) const;

  // Back-propagates `dlogits` (n x NumOutputs(), row-major, the gradient of
  // the loss with respect to the logits of the last Forward in `ws`).
  // Summed mode (per_example == nullptr): writes the parameter gradient
  // into `grad` (NumParameters() values, overwritten). Per-example mode:
  // writes example i's gradient into row first_row + i of `per_example`
  // (NumParameters() columns, row-major, at least first_row + n rows: the
  // caller sizes it, so that a large batch can run in chunks), where
  // example i's loss has gradient row i of dlogits.
  template <typename T>
  void Backward(const T* params, std::type_identity_t<const T*> dlogits, Workspace<T>& ws,
                std::type_identity_t<T*> grad,
                std::type_identity_t<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic,
                                                   Eigen::RowMajor>>* per_example,
                std::int64_t first_row = 0) const;

  // Ghost clipping (docs/dp.md, "Ghost clipping"): ||g_i||^2, the squared
  // norm of example i's gradient (the one Backward's per-example mode
  // writes for the same dlogits) into sq_norms[i], i < batch(), summed in
  // double, without forming the batch x NumParameters() matrix: a linear
  // layer's ||g||^2 is (||x||^2 + 1) ||dy||^2; conv and LSTM weights by
  // `method`; an embedding's from the rows an example's tokens touch.
  // Memory: one example's layer gradient or two T x T Gram matrices.
  // It also keeps each parametrised layer's output gradient (an LSTM's
  // gates' gradient) in `ws`, for WeightedGradient.
  template <typename T>
  void SquaredGradientNorms(const T* params, std::type_identity_t<const T*> dlogits,
                            Workspace<T>& ws, double* sq_norms,
                            NormMethod method = NormMethod::kCheapest) const;

  // After SquaredGradientNorms on the same forward pass: sum_i weights[i]
  // g_i into `grad` (NumParameters() values, overwritten), layer by layer
  // from the output gradients it kept, each example's scaled by its weight
  // (a layer's output gradient is linear in the example's dlogits). No
  // second backward pass through the network: the book-keeping of Bu et
  // al. 2023, one weight-gradient product a layer.
  template <typename T>
  void WeightedGradient(Workspace<T>& ws, const double* weights,
                        std::type_identity_t<T*> grad) const;

 private:
  Network() = default;

  template <typename T>
  void BackwardImpl(const T* params, const T* dlogits, Workspace<T>& ws, T* grad,
                    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>* per_example,
                    std::int64_t first_row, double* sq_norms, NormMethod method) const;

  NetworkSpec spec_;
  std::vector<Shape> shapes_;                   // input, then after each layer
  std::vector<std::int64_t> param_offset_;      // per layer
  std::vector<std::int64_t> param_count_;       // per layer
  std::vector<TensorInfo> tensors_;
  std::int64_t num_parameters_ = 0;
};

// The buffers of one batch's forward and backward passes. Reused across
// calls: a steady state of equal batch sizes allocates nothing.
template <typename T>
class Workspace {
 public:
  std::int64_t batch() const { return n_; }
  // Logits of the last Forward: batch() x outputs, row-major.
  const T* logits() const { return act_.back().data(); }
  T* mutable_logits() { return act_.back().data(); }

  // The mask Dropout layer `layer` applied in the last Forward (values 0 or
  // 1 / (1 - p); empty if it passed activations through).
  const std::vector<T>& dropout_mask(int layer) const {
    return aux_[static_cast<std::size_t>(layer)];
  }
  // Tests: makes every later Forward apply `mask` at Dropout layer `layer`
  // (n x the layer's size values, in the activation buffer's order)
  // instead of drawing one.
  void SetDropoutMask(int layer, std::vector<T> mask) {
    aux_.resize(static_cast<std::size_t>(layer) + 1);
    given_mask_.resize(static_cast<std::size_t>(layer) + 1, false);
    aux_[static_cast<std::size_t>(layer)] = std::move(mask);
    given_mask_[static_cast<std::size_t>(layer)] = true;
  }

 private:
  friend class Network;
  std::int64_t n_ = 0;
  std::vector<std::vector<T>> act_;   // act_[0] input, act_[i + 1] after layer i
  std::vector<std::vector<T>> aux_;   // per layer: im2col, dropout mask, LSTM gates
  std::vector<std::vector<T>> aux2_;  // per layer: LSTM cell states
  std::vector<std::vector<std::int32_t>> argmax_;  // per layer: max-pool winners
  std::vector<T> grad_in_;    // gradient flowing into the current layer's output
  std::vector<T> grad_out_;   // gradient the current layer writes for its input
  std::vector<T> scratch_;    // col2im / LSTM step buffers
  std::vector<T> scratch2_;
  std::vector<T> norm_a_;     // SquaredGradientNorms: a layer gradient or Gram matrices
  std::vector<T> norm_b_;
  std::vector<T> norm_c_;     // SquaredGradientNorms: a bias gradient
  // SquaredGradientNorms: per layer, the output gradient (LSTM: the gates'
  // gradient of each of its layers) that WeightedGradient scales.
  std::vector<std::vector<T>> saved_;
  std::vector<T> scaled_;     // WeightedGradient: a saved gradient, scaled
  std::vector<bool> given_mask_;  // per layer: SetDropoutMask
};

// The presets of MODELS.md: fedau_cnn_mnist, fedau_cnn_svhn,
// fedau_cnn_cifar10, fedfix_cnn_cifar, fedfix_lstm_shakespeare,
// leaf_cnn_femnist. `dropout` sets p of the preset's Dropout layers
// (fedfix_cnn_cifar; the FedFix code runs it with 0). A preset's input
// shape and classes are fixed (a data set of another shape is an error).
absl::StatusOr<Network> MakePreset(const std::string& name, double dropout = 0.0);
// The preset names, for errors and docs.
std::vector<std::string> PresetNames();

}  // namespace fedsim::nn

#endif  // FEDSIM_COMMON_NN_NETWORK_H_
