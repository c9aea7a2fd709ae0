// Parity with PyTorch (docs/networks.md): for every preset, parameters and
// inputs from the closed formulas of tools/nn_reference/make_fixtures.py
// give PyTorch's logits, mean cross-entropy and gradient, and twenty plain
// SGD steps end at PyTorch's parameters. The fixtures
// (tests/fixtures/nn/<preset>.json) were computed by PyTorch in float64;
// a tensor is recorded as its norm and 16 entries.
//
// Tolerances: float64 relative 1e-10 (the two sum in different orders:
// rounding is ~1e-15 a product). float32 against the same float64
// reference, which is stricter than against PyTorch's own float32 (both
// are float32 roundings of it): 2e-5 of the tensor's norm for one pass,
// 2e-4 after twenty steps (rounding errors of each step carry into the
// next); a single float32 product of 1568 terms already has a relative
// error near 1e-6.
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/nn/network.h"
#include "common/objectives/network_objective.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace fedsim::nn_parity_test {
namespace {

using nlohmann::json;

constexpr int kBatch = 4;

json Fixture(const std::string& preset) {
  std::ifstream in("tests/fixtures/nn/" + preset + ".json");
  EXPECT_TRUE(in.good()) << "tests/fixtures/nn/" << preset << ".json";
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

// The fixtures' parameters: 0.5 sin(0.37 k + 0.11 + 1.3 t) sqrt(3 / fan).
FlatVector Params(const nn::Network& net) {
  FlatVector p(net.NumParameters());
  int t = 0;
  for (const nn::TensorInfo& info : net.tensors()) {
    std::int64_t fan = 1;
    for (std::size_t i = 1; i < info.shape.size(); ++i) fan *= info.shape[i];
    if (info.shape.size() == 1) fan = info.shape[0];
    const double scale = std::sqrt(3.0 / static_cast<double>(fan));
    for (std::int64_t k = 0; k < info.size; ++k) {
      p[info.offset + k] = 0.5 * std::sin(0.37 * static_cast<double>(k) + 0.11 + 1.3 * t) * scale;
    }
    ++t;
  }
  return p;
}

// Batch `step` of the fixtures (example i is row r = step * 4 + i).
Batch MakeBatch(const nn::Network& net, int step) {
  const std::int64_t d = net.shapes().front().size();
  const int vocab = net.TokenVocabulary();
  const int classes = net.NumOutputs();
  Batch b;
  b.x.resize(kBatch, d);
  b.y.resize(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    const std::int64_t r = std::int64_t{step} * kBatch + i;
    for (std::int64_t j = 0; j < d; ++j) {
      b.x(i, j) = vocab > 0 ? static_cast<double>((7 * r + 3 * j + (j * j) % 11) % vocab)
                            : 0.5 + 0.5 * std::sin(0.013 * static_cast<double>(j) +
                                                   0.7 * static_cast<double>(r) + 0.3);
    }
    b.y[i] = static_cast<double>((3 * r + 1) % classes);
  }
  return b;
}

// Every tensor of `v` against its recorded norm and entries.
void ExpectTensors(const nn::Network& net, const FlatVector& v, const json& want, double tol,
                   const std::string& what) {
  for (const nn::TensorInfo& t : net.tensors()) {
    SCOPED_TRACE(absl::StrCat(what, " ", t.name));
    ASSERT_TRUE(want.contains(t.name));
    const json& w = want[t.name];
    const double norm = w["norm"].get<double>();
    EXPECT_NEAR(v.segment(t.offset, t.size).norm(), norm, tol * norm);
    for (std::size_t i = 0; i < w["at"].size(); ++i) {
      const std::int64_t at = w["at"][i].get<std::int64_t>();
      EXPECT_NEAR(v[t.offset + at], w["values"][i].get<double>(), tol * norm) << "entry " << at;
    }
  }
}

class PresetParityTest : public testing::TestWithParam<std::string> {};

void Check(const std::string& preset, Precision precision, double tol_pass, double tol_steps) {
  const json fx = Fixture(preset);
  absl::StatusOr<nn::Network> made = nn::MakePreset(preset);
  ASSERT_TRUE(made.ok()) << made.status();
  auto net = std::make_shared<const nn::Network>(*std::move(made));
  auto objective = *MakeNetworkObjective(net, 0.0, precision);
  FlatVector w = Params(*net);
  const Batch b0 = MakeBatch(*net, 0);
  FlatVector grad;
  const double loss = objective->Evaluate(w, b0, &grad);
  EXPECT_NEAR(loss, fx["loss"].get<double>(), tol_pass * fx["loss"].get<double>());
  ExpectTensors(*net, grad, fx["gradient"], tol_pass, "gradient");

  // Logits: through the network directly, in float64.
  if (precision == Precision::kFloat64) {
    nn::Workspace<double> ws;
    std::vector<const double*> rows;
    for (int i = 0; i < kBatch; ++i) rows.push_back(b0.x.row(i).data());
    net->Forward(w.data(), rows.data(), kBatch, ws, nullptr);
    const std::vector<double> want = fx["logits"].get<std::vector<double>>();
    ASSERT_EQ(static_cast<std::int64_t>(want.size()), std::int64_t{kBatch} * net->NumOutputs());
    double scale = 0.0;
    for (double v : want) scale = std::max(scale, std::abs(v));
    for (std::size_t k = 0; k < want.size(); ++k) {
      EXPECT_NEAR(ws.logits()[k], want[k], tol_pass * scale) << "logit " << k;
    }
  }

  const double lr = fx["lr"].get<double>();
  for (int step = 0; step < fx["steps"].get<int>(); ++step) {
    objective->Evaluate(w, MakeBatch(*net, step), &grad);
    w -= lr * grad;
  }
  ExpectTensors(*net, w, fx["after_sgd"], tol_steps, "after 20 SGD steps");
}

TEST_P(PresetParityTest, Float64MatchesPyTorch) {
  Check(GetParam(), Precision::kFloat64, 1e-10, 1e-10);
}

TEST_P(PresetParityTest, Float32MatchesPyTorchToFloat32Resolution) {
  Check(GetParam(), Precision::kFloat32, 2e-5, 2e-4);
}

INSTANTIATE_TEST_SUITE_P(Presets, PresetParityTest,
                         testing::Values("fedau_cnn_mnist", "fedau_cnn_svhn", "fedau_cnn_cifar10",
                                         "fedfix_cnn_cifar", "fedfix_lstm_shakespeare",
                                         "leaf_cnn_femnist"));

}  // namespace
}  // namespace fedsim::nn_parity_test
