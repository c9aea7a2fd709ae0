// Tests of common/nn/network.h: parameter counts and layouts of the
// presets, every layer's gradient against central finite differences in
// float64, per-example gradients, the initialisation laws, and the
// one-line errors of bad layer sequences.
#include "common/nn/network.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/objectives/network_objective.h"

namespace fedsim::nn_test {
namespace {

using nn::Init;
using nn::LayerKind;
using nn::LayerSpec;
using nn::Network;
using nn::NetworkSpec;
using nn::Shape;
using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

LayerSpec L(LayerKind kind, int out = 0, int kernel = 0, int stride = 0, int padding = 0) {
  return {.kind = kind, .out = out, .kernel = kernel, .stride = stride, .padding = padding};
}

TEST(NetworkPresetTest, ParameterCountsAreMODELSmd) {
  const std::vector<std::pair<std::string, std::int64_t>> want = {
      {"fedau_cnn_mnist", 211690},          {"fedau_cnn_svhn", 273706},
      {"fedau_cnn_cifar10", 551786},        {"fedfix_cnn_cifar", 122570},
      {"fedfix_lstm_shakespeare", 135700},  {"leaf_cnn_femnist", 6603710}};
  ASSERT_EQ(nn::PresetNames().size(), want.size());
  for (const auto& [name, count] : want) {
    absl::StatusOr<Network> net = nn::MakePreset(name);
    ASSERT_TRUE(net.ok()) << net.status();
    EXPECT_EQ(net->NumParameters(), count) << name;
    std::int64_t sum = 0;
    for (const nn::TensorInfo& t : net->tensors()) {
      EXPECT_EQ(t.offset, sum) << name << " " << t.name;
      sum += t.size;
    }
    EXPECT_EQ(sum, count) << name;
  }
}

TEST(NetworkPresetTest, StateDictNamesAndShapesArePyTorchs) {
  absl::StatusOr<Network> net = nn::MakePreset("fedau_cnn_mnist");
  ASSERT_TRUE(net.ok());
  std::vector<std::string> names;
  for (const auto& t : net->tensors()) names.push_back(t.name);
  EXPECT_THAT(names, testing::ElementsAre("conv.0.weight", "conv.0.bias", "conv.3.weight",
                                          "conv.3.bias", "fc1.0.weight", "fc1.0.bias",
                                          "fc2.weight", "fc2.bias"));
  EXPECT_THAT(net->tensors()[0].shape, testing::ElementsAre(32, 1, 3, 3));
  EXPECT_THAT(net->tensors()[4].shape, testing::ElementsAre(128, 1568));
  absl::StatusOr<Network> lstm = nn::MakePreset("fedfix_lstm_shakespeare");
  ASSERT_TRUE(lstm.ok());
  names.clear();
  for (const auto& t : lstm->tensors()) names.push_back(t.name);
  EXPECT_THAT(names, testing::ElementsAre("embed.weight", "lstm.weight_ih_l0",
                                          "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                                          "lstm.bias_hh_l0", "lstm.weight_ih_l1",
                                          "lstm.weight_hh_l1", "lstm.bias_ih_l1",
                                          "lstm.bias_hh_l1", "fc.weight", "fc.bias"));
  EXPECT_THAT(lstm->tensors()[1].shape, testing::ElementsAre(400, 8));
  EXPECT_EQ(lstm->shapes()[1].ToString(), "80x8 (sequence)");
  EXPECT_FALSE(nn::MakePreset("resnet").ok());
}

// The loss of a network on a fixed batch and its gradients, through the
// Objective (softmax cross-entropy, float64).
struct Problem {
  std::shared_ptr<const Network> net;
  std::unique_ptr<Objective> objective;
  Batch batch;
  FlatVector params;
};

Problem MakeProblem(const NetworkSpec& spec, int batch, int classes, std::uint64_t seed,
                    int vocab = 0) {
  Problem p;
  absl::StatusOr<Network> net = Network::Create(spec);
  FEDSIM_CHECK(net.ok()) << net.status();
  p.net = std::make_shared<const Network>(*std::move(net));
  FEDSIM_CHECK(p.net->NumOutputs() == classes);
  p.objective = *MakeNetworkObjective(p.net, 0.0, Precision::kFloat64);
  RngStream rng(seed, RngPurpose::kTest, -1, -1);
  const std::int64_t d = spec.input.size();
  p.batch.x.resize(batch, d);
  p.batch.y.resize(batch);
  for (int i = 0; i < batch; ++i) {
    for (std::int64_t k = 0; k < d; ++k) {
      p.batch.x(i, k) = vocab > 0 ? static_cast<double>(rng.UniformInt(vocab)) : rng.Gaussian();
    }
    p.batch.y[i] = static_cast<double>(rng.UniformInt(classes));
  }
  p.objective->Initialize(p.params, rng);
  // Biases off zero, so that their gradients are tested in general position.
  for (Eigen::Index k = 0; k < p.params.size(); ++k) p.params[k] += 0.05 * rng.Gaussian();
  return p;
}

// Central differences of the loss against the analytic gradient, on every
// parameter (or a stride of them), relative to the gradient's scale.
void ExpectGradientMatchesFiniteDifferences(const Problem& p, double tol = 1e-6) {
  FlatVector grad;
  p.objective->Evaluate(p.params, p.batch, &grad);
  const double scale = std::max(1e-3, grad.cwiseAbs().maxCoeff());
  const Eigen::Index step = std::max<Eigen::Index>(1, p.params.size() / 400);
  for (Eigen::Index k = 0; k < p.params.size(); k += step) {
    FlatVector w = p.params;
    const double h = 1e-5;
    w[k] += h;
    const double up = p.objective->Evaluate(w, p.batch, nullptr);
    w[k] -= 2 * h;
    const double down = p.objective->Evaluate(w, p.batch, nullptr);
    const double fd = (up - down) / (2 * h);
    EXPECT_NEAR(grad[k], fd, tol * scale) << "parameter " << k;
  }
}

// Each layer sits after a parametrised layer, so that its input gradient
// (what it passes down) is checked through that layer's parameters.
TEST(NetworkGradientTest, ConvPaddingStrideMaxPoolRelu) {
  NetworkSpec spec{{Shape::Kind::kImage, 2, 7, 6},
                   {L(LayerKind::kConv2d, 3, 3, 1, 1), L(LayerKind::kRelu),
                    L(LayerKind::kMaxPool2d, 0, 2), L(LayerKind::kConv2d, 4, 2, 2, 1),
                    L(LayerKind::kRelu), L(LayerKind::kFlatten), L(LayerKind::kLinear, 3)}};
  ExpectGradientMatchesFiniteDifferences(MakeProblem(spec, 5, 3, 1));
}

TEST(NetworkGradientTest, SamePaddingAndOverlappingPool) {
  LayerSpec same = L(LayerKind::kConv2d, 3, 5);
  same.same = true;
  NetworkSpec spec{{Shape::Kind::kImage, 1, 8, 8},
                   {same, L(LayerKind::kMaxPool2d, 0, 3, 2), L(LayerKind::kConv2d, 2, 1),
                    L(LayerKind::kFlatten), L(LayerKind::kLinear, 4), L(LayerKind::kRelu),
                    L(LayerKind::kLinear, 3)}};
  ExpectGradientMatchesFiniteDifferences(MakeProblem(spec, 3, 3, 2));
}

TEST(NetworkGradientTest, EmbeddingAndTwoLayerLstmThroughTime) {
  LayerSpec embed = L(LayerKind::kEmbedding, 3);
  embed.vocab = 6;
  LayerSpec lstm = L(LayerKind::kLstm, 4);
  lstm.num_layers = 2;
  NetworkSpec spec{{Shape::Kind::kFlat, 5, 1, 1}, {embed, lstm, L(LayerKind::kLinear, 6)}};
  ExpectGradientMatchesFiniteDifferences(MakeProblem(spec, 4, 6, 3, /*vocab=*/6));
}

TEST(NetworkGradientTest, SingleStepLstm) {
  LayerSpec embed = L(LayerKind::kEmbedding, 2);
  embed.vocab = 3;
  NetworkSpec spec{{Shape::Kind::kFlat, 1, 1, 1},
                   {embed, L(LayerKind::kLstm, 3), L(LayerKind::kLinear, 3)}};
  ExpectGradientMatchesFiniteDifferences(MakeProblem(spec, 3, 3, 4, /*vocab=*/3));
}

// Dropout with a fixed mask is a fixed linear map: its gradient is checked
// by differences with the same mask replayed.
TEST(NetworkGradientTest, DropoutWithAFixedMask) {
  LayerSpec drop = L(LayerKind::kDropout);
  drop.p = 0.5;
  NetworkSpec spec{{Shape::Kind::kFlat, 6, 1, 1},
                   {L(LayerKind::kLinear, 5), drop, L(LayerKind::kRelu), L(LayerKind::kLinear, 3)}};
  absl::StatusOr<Network> made = Network::Create(spec);
  ASSERT_TRUE(made.ok());
  const Network& net = *made;
  const int n = 4;
  RngStream rng(5, RngPurpose::kTest, -1, -1);
  std::vector<double> params(static_cast<std::size_t>(net.NumParameters()));
  net.Initialize(params, rng);
  std::vector<double> x(static_cast<std::size_t>(n * 6));
  for (double& v : x) v = rng.Gaussian();
  std::vector<const double*> rows;
  for (int i = 0; i < n; ++i) rows.push_back(x.data() + 6 * i);
  std::vector<double> mask(static_cast<std::size_t>(n * 5));
  for (double& m : mask) m = rng.Uniform01() < 0.5 ? 0.0 : 2.0;
  nn::Workspace<double> ws;
  ws.SetDropoutMask(1, mask);
  // Loss: sum of logits times fixed weights r (dlogits = r).
  std::vector<double> r(static_cast<std::size_t>(n * 3));
  for (double& v : r) v = rng.Gaussian();
  const auto loss = [&](const std::vector<double>& w) {
    net.Forward(w.data(), rows.data(), n, ws, nullptr);
    double total = 0.0;
    for (std::size_t k = 0; k < r.size(); ++k) total += r[k] * ws.logits()[k];
    return total;
  };
  loss(params);
  std::vector<double> grad(params.size());
  net.Backward(params.data(), r.data(), ws, grad.data(), nullptr);
  for (std::size_t k = 0; k < params.size(); ++k) {
    std::vector<double> w = params;
    w[k] += 1e-6;
    const double up = loss(w);
    w[k] -= 2e-6;
    const double down = loss(w);
    EXPECT_NEAR(grad[k], (up - down) / 2e-6, 1e-7) << k;
  }
  // A drawn mask is 0 or 1 / (1 - p), about half zeros.
  nn::Workspace<double> drawn;
  RngStream masks(6, RngPurpose::kTest, -1, -1);
  std::vector<double> ones(static_cast<std::size_t>(400 * 6), 1.0);
  std::vector<const double*> many;
  for (int i = 0; i < 400; ++i) many.push_back(ones.data() + 6 * i);
  net.Forward(params.data(), many.data(), 400, drawn, &masks);
  int zeros = 0;
  for (double m : drawn.dropout_mask(1)) {
    EXPECT_TRUE(m == 0.0 || m == 2.0) << m;
    zeros += m == 0.0;
  }
  EXPECT_NEAR(zeros, 1000, 5 * std::sqrt(500.0));  // 2000 draws, p = 0.5: 5 sigma
  net.Forward(params.data(), many.data(), 400, drawn, nullptr);
  EXPECT_TRUE(drawn.dropout_mask(1).empty()) << "evaluation applies no mask";
}

TEST(NetworkGradientTest, PerExampleGradientsSumToTheBatchGradient) {
  LayerSpec embed = L(LayerKind::kEmbedding, 3);
  embed.vocab = 4;
  const std::vector<std::pair<NetworkSpec, int>> specs = {
      {{{Shape::Kind::kImage, 2, 6, 6},
        {L(LayerKind::kConv2d, 3, 3, 1, 1), L(LayerKind::kRelu), L(LayerKind::kMaxPool2d, 0, 2),
         L(LayerKind::kFlatten), L(LayerKind::kLinear, 3)}},
       0},
      {{{Shape::Kind::kFlat, 4, 1, 1}, {embed, L(LayerKind::kLstm, 3), L(LayerKind::kLinear, 3)}},
       4}};
  for (const auto& [spec, vocab] : specs) {
    Problem p = MakeProblem(spec, 6, 3, 7, vocab);
    FlatVector grad;
    p.objective->Evaluate(p.params, p.batch, &grad);
    RowMatD per_example;
    p.objective->PerExampleGradients(p.params, p.batch, per_example);
    ASSERT_EQ(per_example.rows(), 6);
    const FlatVector mean = per_example.colwise().mean().transpose();
    EXPECT_LT((mean - grad).cwiseAbs().maxCoeff(), 1e-12 * (1 + grad.cwiseAbs().maxCoeff()));
    // Row i is example i's own gradient.
    Batch one;
    one.x = p.batch.x.row(2);
    one.y = p.batch.y.segment(2, 1);
    FlatVector g2;
    p.objective->Evaluate(p.params, one, &g2);
    EXPECT_LT((per_example.row(2).transpose() - g2).cwiseAbs().maxCoeff(), 1e-12);
  }
}

// A batch larger than the objective's chunk (128 rows) gives the gradient
// of the whole batch, and per-example gradients row by row.
TEST(NetworkGradientTest, ChunkedBatchesGiveTheWholeBatchGradient) {
  NetworkSpec spec{{Shape::Kind::kImage, 1, 4, 4},
                   {L(LayerKind::kConv2d, 2, 3), L(LayerKind::kRelu), L(LayerKind::kFlatten),
                    L(LayerKind::kLinear, 3)}};
  Problem p = MakeProblem(spec, 300, 3, 8);
  FlatVector grad;
  const double loss = p.objective->Evaluate(p.params, p.batch, &grad);
  RowMatD per_example;
  p.objective->PerExampleGradients(p.params, p.batch, per_example);
  const FlatVector mean = per_example.colwise().mean().transpose();
  EXPECT_LT((mean - grad).cwiseAbs().maxCoeff(), 1e-12);
  // A row of the third chunk is its own example's gradient.
  Batch one;
  one.x = p.batch.x.row(270);
  one.y = p.batch.y.segment(270, 1);
  FlatVector g270;
  p.objective->Evaluate(p.params, one, &g270);
  EXPECT_LT((per_example.row(270).transpose() - g270).cwiseAbs().maxCoeff(), 1e-12);
  std::int64_t correct = 0;
  EXPECT_DOUBLE_EQ(p.objective->EvaluateWithCorrect(p.params, p.batch, correct), loss);
}

// Networks whose layers take both ways of SquaredGradientNorms under
// kCheapest: convolutions with many output pixels (formed) and few (ghost),
// LSTM weights over 1 and 5 steps (both), an embedding whose examples
// repeat tokens, and the MLP's linear layers.
std::vector<std::pair<NetworkSpec, int>> GhostSpecs() {
  LayerSpec embed = L(LayerKind::kEmbedding, 3);
  embed.vocab = 4;
  LayerSpec lstm = L(LayerKind::kLstm, 8);
  lstm.num_layers = 2;
  LayerSpec embed1 = L(LayerKind::kEmbedding, 2);
  embed1.vocab = 3;
  return {
      {{{Shape::Kind::kImage, 2, 7, 6},
        {L(LayerKind::kConv2d, 3, 3, 1, 1), L(LayerKind::kRelu), L(LayerKind::kMaxPool2d, 0, 2),
         L(LayerKind::kConv2d, 4, 2, 2, 1), L(LayerKind::kRelu), L(LayerKind::kFlatten),
         L(LayerKind::kLinear, 3)}},
       0},
      {{{Shape::Kind::kImage, 16, 3, 3},
        {L(LayerKind::kConv2d, 32, 3, 1, 1), L(LayerKind::kRelu), L(LayerKind::kFlatten),
         L(LayerKind::kLinear, 3)}},
       0},
      {{{Shape::Kind::kFlat, 5, 1, 1}, {embed, lstm, L(LayerKind::kLinear, 3)}}, 4},
      {{{Shape::Kind::kFlat, 1, 1, 1}, {embed1, L(LayerKind::kLstm, 3), L(LayerKind::kLinear, 3)}},
       3},
      {{{Shape::Kind::kFlat, 6, 1, 1},
        {L(LayerKind::kLinear, 5), L(LayerKind::kRelu), L(LayerKind::kLinear, 3)}},
       0}};
}

// Ghost clipping's norms: SquaredGradientNorms gives ||g_i||^2 of the
// per-example gradients Backward forms, by each method.
TEST(NetworkGradientTest, SquaredGradientNormsAreThoseOfThePerExampleGradients) {
  int spec_index = 0;
  for (const auto& [spec, vocab] : GhostSpecs()) {
    SCOPED_TRACE(spec_index++);
    Problem p = MakeProblem(spec, 6, 3, 11, vocab);
    RowMatD per_example;
    p.objective->PerExampleGradients(p.params, p.batch, per_example);
    // dlogits of each example's own loss: softmax - onehot.
    const Network& net = *p.net;
    nn::Workspace<double> ws;
    std::vector<const double*> rows;
    for (int i = 0; i < 6; ++i) rows.push_back(p.batch.x.row(i).data());
    net.Forward(p.params.data(), rows.data(), 6, ws, nullptr);
    std::vector<double> dlogits(6 * 3);
    for (int i = 0; i < 6; ++i) {
      const double* z = ws.logits() + 3 * i;
      const double m = std::max({z[0], z[1], z[2]});
      const double sum = std::exp(z[0] - m) + std::exp(z[1] - m) + std::exp(z[2] - m);
      for (int k = 0; k < 3; ++k) {
        dlogits[3 * i + k] = std::exp(z[k] - m) / sum - (k == p.batch.y[i] ? 1.0 : 0.0);
      }
    }
    for (const nn::NormMethod method :
         {nn::NormMethod::kCheapest, nn::NormMethod::kGhost, nn::NormMethod::kMaterialise}) {
      std::vector<double> sq(6, -1.0);
      net.SquaredGradientNorms(p.params.data(), dlogits.data(), ws, sq.data(), method);
      for (int i = 0; i < 6; ++i) {
        const double want = per_example.row(i).squaredNorm();
        EXPECT_GT(want, 1e-6);
        EXPECT_NEAR(sq[i], want, 1e-12 * want) << "example " << i << ", method "
                                                 << static_cast<int>(method);
      }
    }
  }
}

// GhostClippedSums: the clip factors of the norms, sum_i f_i g_i and
// sum_i (1 - f_i) g_i as the per-example gradients give them, and
// Evaluate's loss bit for bit; over 300 rows (three chunks) too.
TEST(NetworkGradientTest, GhostClippedSumsAreTheWeightedPerExampleSums) {
  int spec_index = 0;
  for (const auto& [spec, vocab] : GhostSpecs()) {
    for (const int n : {6, 300}) {
      SCOPED_TRACE(testing::Message() << "spec " << spec_index << ", " << n << " rows");
      Problem p = MakeProblem(spec, n, 3, 12, vocab);
      RowMatD per_example;
      p.objective->PerExampleGradients(p.params, p.batch, per_example);
      const Eigen::VectorXd norms = per_example.rowwise().norm();
      // Clip at the median norm: about half the examples are clipped.
      std::vector<double> sorted(norms.data(), norms.data() + n);
      std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
      const double clip = sorted[static_cast<std::size_t>(n / 2)];
      FlatVector clipped, rest;
      Eigen::VectorXd factors;
      double loss = 0.0;
      ASSERT_TRUE(p.objective->GhostClippedSums(
          p.params, p.batch,
          [&](const Eigen::VectorXd& sq, Eigen::VectorXd& f) {
            f = (clip / sq.array().sqrt()).min(1.0).matrix();
          },
          clipped, &rest, factors, loss));
      ASSERT_EQ(factors.size(), n);
      const Eigen::VectorXd want_f = (clip / norms.array()).min(1.0).matrix();
      EXPECT_LT((factors - want_f).cwiseAbs().maxCoeff(), 1e-12);
      const FlatVector want_clipped = per_example.transpose() * want_f;
      const FlatVector want_rest =
          per_example.transpose() * (Eigen::VectorXd::Ones(n) - want_f);
      EXPECT_LT((clipped - want_clipped).cwiseAbs().maxCoeff(),
                1e-12 * want_clipped.cwiseAbs().maxCoeff());
      EXPECT_LT((rest - want_rest).cwiseAbs().maxCoeff(),
                1e-12 * want_rest.cwiseAbs().maxCoeff());
      EXPECT_EQ(loss, p.objective->Evaluate(p.params, p.batch, nullptr));
    }
    ++spec_index;
  }
}

// float32 agrees with float64 to float32's resolution.
TEST(NetworkGradientTest, Float32AgreesWithFloat64) {
  absl::StatusOr<Network> made = nn::MakePreset("fedau_cnn_mnist");
  ASSERT_TRUE(made.ok());
  auto net = std::make_shared<const Network>(*std::move(made));
  auto f64 = *MakeNetworkObjective(net, 0.0, Precision::kFloat64);
  auto f32 = *MakeNetworkObjective(net, 0.0, Precision::kFloat32);
  RngStream rng(9, RngPurpose::kTest, -1, -1);
  FlatVector params;
  f64->Initialize(params, rng);
  Batch batch;
  batch.x.resize(8, 784);
  batch.y.resize(8);
  for (int i = 0; i < 8; ++i) {
    for (int k = 0; k < 784; ++k) batch.x(i, k) = rng.Uniform01();
    batch.y[i] = static_cast<double>(rng.UniformInt(10));
  }
  FlatVector g64, g32;
  const double l64 = f64->Evaluate(params, batch, &g64);
  const double l32 = f32->Evaluate(params, batch, &g32);
  EXPECT_NEAR(l32, l64, 1e-5 * l64);
  EXPECT_LT((g32 - g64).norm(), 1e-4 * g64.norm());
}

// Max-pooling follows PyTorch's rule on both of its paths (stride 2, the
// presets', and any other stride): the first maximum in row-major window
// order wins a tie, and a NaN wins over every number. The input is two
// channels through a 1x1 convolution with weights (1, 1): a tie of the
// summed values between positions whose channels differ shows which one won
// in the convolution's weight gradient.
template <typename T>
void ExpectPyTorchsMaxPoolRule() {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (const int stride : {2, 1}) {
    SCOPED_TRACE(testing::Message() << "stride " << stride);
    // 2 x 2 x 4 input; the window at columns 0-1 of rows 0-1 holds a tie
    // of 3 between (row 0, col 1) = (1, 2) and (row 1, col 0) = (2, 1).
    NetworkSpec spec{{Shape::Kind::kImage, 2, 2, 4},
                     {L(LayerKind::kConv2d, 1, 1), L(LayerKind::kMaxPool2d, 0, 2, stride),
                      L(LayerKind::kFlatten), L(LayerKind::kLinear, 2)}};
    absl::StatusOr<Network> made = Network::Create(spec);
    ASSERT_TRUE(made.ok()) << made.status();
    const Network& net = *made;
    const int outs = stride == 2 ? 2 : 3;  // pooled columns
    // conv: w = (1, 1), b = 0; linear: logit 0 = the first pooled value,
    // logit 1 = the last.
    std::vector<T> params(static_cast<std::size_t>(net.NumParameters()), T(0));
    params[0] = params[1] = T(1);
    params[3] = T(1);
    params[3 + 2 * outs - 1] = T(1);
    // Channel 0, then channel 1, each 2 rows of 4.
    // Summed: row 0 (0, 3, 0, 1), row 1 (3, 0, 0, 6).
    std::vector<T> x = {0, 1, 0, 0,  2, 0, 0, 5,    // channel 0
                             0, 2, 0, 1,  1, 0, 0, 1};   // channel 1
    const T* rows[] = {x.data()};
    nn::Workspace<T> ws;
    net.Forward(params.data(), rows, 1, ws, nullptr);
    EXPECT_EQ(ws.logits()[0], T(3));
    EXPECT_EQ(ws.logits()[1], T(6));
    // d loss / d logit 0 = 1: the gradient reaches the winner of the first
    // window only; conv weight gradient = that position's channels.
    const T dlogits[] = {1, 0};
    std::vector<T> grad(params.size());
    net.Backward(params.data(), dlogits, ws, grad.data(), nullptr);
    EXPECT_EQ(grad[0], T(1)) << "the tie went to (row 0, col 1), first in window order";
    EXPECT_EQ(grad[1], T(2));
    // A NaN after a larger value in the first window wins: row 0 (5, NaN, ...).
    x[0] = T(5);
    x[1] = nan;
    net.Forward(params.data(), rows, 1, ws, nullptr);
    EXPECT_TRUE(std::isnan(ws.logits()[0])) << ws.logits()[0];
  }
}

TEST(NetworkPoolTest, MaxPoolTakesTheFirstMaximumAndNaNs) {
  ExpectPyTorchsMaxPoolRule<double>();
  ExpectPyTorchsMaxPoolRule<float>();
}

TEST(NetworkInitTest, LawsOfTheDrawnWeights) {
  absl::StatusOr<Network> net = nn::MakePreset("fedau_cnn_mnist");
  ASSERT_TRUE(net.ok());
  RngStream rng(10, RngPurpose::kTest, -1, -1);
  std::vector<double> w(static_cast<std::size_t>(net->NumParameters()));
  net->Initialize(w, rng);
  const auto moments = [&](const nn::TensorInfo& t) {
    double sum = 0, sq = 0, max_abs = 0;
    for (std::int64_t k = 0; k < t.size; ++k) {
      const double v = w[static_cast<std::size_t>(t.offset + k)];
      sum += v;
      sq += v * v;
      max_abs = std::max(max_abs, std::abs(v));
    }
    const double n = static_cast<double>(t.size);
    return std::tuple(sum / n, std::sqrt(sq / n), max_abs);
  };
  // fc1.0.weight: Kaiming normal, sd sqrt(2 / 1568); 200,704 draws: the
  // sample sd is within 1 % of it (its relative sd is 0.16 %).
  const auto [m_fc1, sd_fc1, max_fc1] = moments(net->tensors()[4]);
  EXPECT_NEAR(sd_fc1, std::sqrt(2.0 / 1568), 0.01 * std::sqrt(2.0 / 1568));
  EXPECT_NEAR(m_fc1, 0.0, 5 * std::sqrt(2.0 / 1568) / std::sqrt(200704.0));
  const auto [m_b, sd_b, max_b] = moments(net->tensors()[5]);
  EXPECT_EQ(max_b, 0.0) << "hidden biases start at zero";
  // fc2: PyTorch's default, U(+-1/sqrt(128)): sd bound / sqrt(3).
  const double bound = 1.0 / std::sqrt(128.0);
  const auto [m_fc2, sd_fc2, max_fc2] = moments(net->tensors()[6]);
  EXPECT_LE(max_fc2, bound);
  EXPECT_NEAR(sd_fc2, bound / std::sqrt(3.0), 0.05 * bound / std::sqrt(3.0));
  const auto [m_fb, sd_fb, max_fb] = moments(net->tensors()[7]);
  EXPECT_GT(max_fb, 0.0);
  EXPECT_LE(max_fb, bound);
  // LSTM: U(+-1/sqrt(100)) everywhere; embedding N(0, 1).
  absl::StatusOr<Network> lstm = nn::MakePreset("fedfix_lstm_shakespeare");
  ASSERT_TRUE(lstm.ok());
  std::vector<double> u(static_cast<std::size_t>(lstm->NumParameters()));
  lstm->Initialize(u, rng);
  double max_lstm = 0.0;
  for (std::int64_t k = 800; k < 800 + 44000 + 80800; ++k) {
    max_lstm = std::max(max_lstm, std::abs(u[static_cast<std::size_t>(k)]));
  }
  EXPECT_LE(max_lstm, 0.1);
  EXPECT_GT(max_lstm, 0.099);
  double sq = 0.0;
  for (std::int64_t k = 0; k < 800; ++k) sq += u[static_cast<std::size_t>(k)] * u[static_cast<std::size_t>(k)];
  EXPECT_NEAR(std::sqrt(sq / 800), 1.0, 0.1);
}

TEST(NetworkSpecTest, BadSequencesFailWithOneLineNamingTheLayer) {
  const auto error = [](const NetworkSpec& spec) {
    absl::StatusOr<Network> net = Network::Create(spec);
    EXPECT_FALSE(net.ok());
    const std::string message(net.status().message());
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  };
  const Shape image{Shape::Kind::kImage, 1, 28, 28};
  EXPECT_THAT(error({image, {L(LayerKind::kLinear, 10)}}),
              testing::HasSubstr("model layer 0 (linear(10)) gets input shape 1x28x28: linear "
                                 "needs a flat input (add flatten before it)"));
  EXPECT_THAT(error({image, {L(LayerKind::kConv2d, 4, 29)}}),
              testing::HasSubstr("the kernel 29 is larger than the padded input"));
  EXPECT_THAT(error({{Shape::Kind::kFlat, 10, 1, 1}, {L(LayerKind::kConv2d, 4, 3)}}),
              testing::HasSubstr("gets input shape 10: conv2d needs an image"));
  EXPECT_THAT(error({image, {L(LayerKind::kConv2d, 4, 3)}}),
              testing::HasSubstr("end with shape 4x26x26"));
  EXPECT_THAT(error({image, {L(LayerKind::kFlatten), L(LayerKind::kLstm, 3)}}),
              testing::HasSubstr("lstm needs a sequence input"));
  LayerSpec even = L(LayerKind::kConv2d, 4, 4);
  even.same = true;
  EXPECT_THAT(error({image, {even}}), testing::HasSubstr("padding same needs an odd kernel"));
  LayerSpec drop = L(LayerKind::kDropout);
  drop.p = 1.0;
  EXPECT_THAT(error({{Shape::Kind::kFlat, 3, 1, 1}, {drop, L(LayerKind::kLinear, 2)}}),
              testing::HasSubstr("p = 1; need 0 <= p < 1"));
}

}  // namespace
}  // namespace fedsim::nn_test
