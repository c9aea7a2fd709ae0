// File: bench/network_bench.cc
//
// Networks (issue 21, docs/performance.md): one client's local epoch of a
// preset (docs/networks.md) by fedsim's RunLocalSgd, float32, one thread,
// on n rows (600 and 6,000; --smoke: 40) at batch B (10, 32, 128):
//
//   net_epoch/<preset>/rows:n/batch:B
//   dp_epoch/<preset>/rows:600/batch:32   DP-SGD (per-example
//                  clipping, C = 1, z = 1, Poisson lots of expected size B),
//                  against net_epoch at the same size; fedau_cnn_mnist and
//                  fedfix_lstm_shakespeare
//   dp_ghost_epoch/<preset>/rows:600/batch:32   the same with
//                  local.dp.ghost_clipping (norms layer by layer, then a
//                  weighted backward pass; no per-example gradients)
//   conv_layer/32x14x14_to_32/batch:128   two 3x3 convolutions of 32
//                  channels alone, forward and backward, against the
//                  machine's sgemm rate (bench/floors.py)
//
// The rows are synthetic in the preset's shape (uniform [0, 1) pixels;
// token ids uniform in [0, 100) for the LSTM; labels uniform): the work of
// a dense network does not depend on the values. bench/torch_network.py
// runs PyTorch on the same sizes. items_per_second is examples per second;
// the counter `flop` counts 3 x the forward pass's multiply-adds x 2 per
// example (forward, and the two products of the backward pass).
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_main.h"
#include "client/trainer/dp_trainer.h"
#include "client/trainer/local_trainer.h"
#include "common/data/dataset.h"
#include "common/nn/network.h"
#include "common/objectives/network_objective.h"
#include "common/random/stream.h"

namespace fedsim::bench {
namespace {

struct Setup {
  std::shared_ptr<const nn::Network> net;
  std::unique_ptr<Objective> objective;
  Dataset train;
  FlatVector start;
  double forward_flop = 0;  // per example
};

double ForwardFlop(const nn::Network& net) {
  double flop = 0;
  for (std::size_t i = 0; i < net.spec().layers.size(); ++i) {
    const nn::LayerSpec& l = net.spec().layers[i];
    const nn::Shape& in = net.shapes()[i];
    const nn::Shape& out = net.shapes()[i + 1];
    switch (l.kind) {
      case nn::LayerKind::kConv2d:
        flop += 2.0 * out.size() * in.c * l.kernel * l.kernel;
        break;
      case nn::LayerKind::kLinear:
        flop += 2.0 * in.c * out.c;
        break;
      case nn::LayerKind::kLstm:
        for (int k = 0; k < l.num_layers; ++k) {
          flop += 2.0 * in.h * ((k == 0 ? in.c : l.out) + l.out) * 4.0 * l.out;
        }
        break;
      default:
        break;
    }
  }
  return flop;
}

const Setup& GetSetup(const std::string& preset, std::int64_t rows) {
  static std::map<std::pair<std::string, std::int64_t>, std::unique_ptr<Setup>> cache;
  std::unique_ptr<Setup>& s = cache[{preset, rows}];
  if (s != nullptr) return *s;
  s = std::make_unique<Setup>();
  s->net = std::make_shared<const nn::Network>(*nn::MakePreset(preset));
  s->objective = *MakeNetworkObjective(s->net, 0.0, Precision::kFloat32);
  s->forward_flop = ForwardFlop(*s->net);
  const std::int64_t d = s->net->shapes().front().size();
  const int vocab = s->net->TokenVocabulary();
  RngStream rng(1, RngPurpose::kTest, -1, -1);
  s->train.features.resize(rows, d);
  s->train.labels.resize(rows);
  s->train.num_classes = s->net->NumOutputs();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t k = 0; k < d; ++k) {
      s->train.features(r, k) = vocab > 0 ? static_cast<float>(rng.UniformInt(vocab))
                                          : static_cast<float>(rng.Uniform01());
    }
    s->train.labels[r] = static_cast<double>(rng.UniformInt(s->train.num_classes));
  }
  RngStream init(1, RngPurpose::kModelInit, -1, -1);
  s->objective->Initialize(s->start, init);
  return *s;
}

enum class Kind { kPlain, kDp, kDpGhost };

void Epoch(benchmark::State& state, const std::string& preset, Kind kind) {
  const std::int64_t rows = state.range(0);
  const Setup& s = GetSetup(preset, rows);
  std::vector<std::int64_t> all(static_cast<std::size_t>(rows));
  std::iota(all.begin(), all.end(), 0);
  LocalTrainingSpec spec;
  spec.epochs = 1;
  spec.batch_size = state.range(1);
  spec.lr = 0.01;
  DpSpec dp_spec;
  dp_spec.mode = DpMode::kClip;
  dp_spec.clip = 1.0;
  dp_spec.noise_multiplier = 1.0;
  dp_spec.ghost_clipping = kind == Kind::kDpGhost;
  Round round = 0;
  for (auto _ : state) {
    RngStream rng(1, RngPurpose::kShuffle, 0, round);
    absl::StatusOr<LocalTrainingOutput> out;
    if (kind != Kind::kPlain) {
      RngStream sampling(1, RngPurpose::kDpSampling, 0, round);
      RngStream noise(1, RngPurpose::kDpNoise, 0, round);
      out = RunLocalDpSgd(*s.objective, s.train, all, s.start, spec, dp_spec, sampling, noise,
                          nullptr);
    } else {
      out = RunLocalSgd(*s.objective, s.train, all, s.start, spec, rng);
    }
    ++round;
    if (!out.ok()) return state.SkipWithError(std::string(out.status().message()).c_str());
    benchmark::DoNotOptimize(out->update.data());
  }
  state.SetItemsProcessed(state.iterations() * rows);
  SetFlops(state, 3.0 * s.forward_flop * static_cast<double>(rows));
}

// Convolution layers alone, forward and backward, on one thread: two of
// fedau_cnn_mnist's second convolution (32 -> 32 channels, 3x3, padding
// 1, on 14x14 maps) with a ReLU between, batch B, then a linear layer of 2
// outputs that gives the backward pass its gradient (0.2 % of the work).
// `flop` counts the five products of the two convolutions (forward and
// weight gradient of both, input gradient of the second), 2 x 32 x 288 x
// 196 x B each.
void ConvLayer(benchmark::State& state) {
  const std::int64_t batch = state.range(0);
  const nn::LayerSpec conv{.kind = nn::LayerKind::kConv2d, .out = 32, .kernel = 3, .padding = 1};
  const nn::LayerSpec relu{.kind = nn::LayerKind::kRelu};
  const nn::LayerSpec flat{.kind = nn::LayerKind::kFlatten};
  const nn::LayerSpec lin{.kind = nn::LayerKind::kLinear, .out = 2};
  // Two convolutions with a ReLU between: the second computes its input
  // gradient, as fedau_cnn_mnist's does; the first does not.
  const nn::Network net = *nn::Network::Create(
      {{nn::Shape::Kind::kImage, 32, 14, 14}, {conv, relu, conv, flat, lin}});
  RngStream rng(2, RngPurpose::kTest, -1, -1);
  std::vector<double> p64(static_cast<std::size_t>(net.NumParameters()));
  net.Initialize(p64, rng);
  std::vector<float> params(p64.begin(), p64.end());
  std::vector<float> x(static_cast<std::size_t>(batch * 32 * 196));
  for (float& v : x) v = static_cast<float>(rng.Uniform01());
  std::vector<const float*> rows;
  for (std::int64_t b = 0; b < batch; ++b) rows.push_back(x.data() + b * 32 * 196);
  std::vector<float> dlogits(static_cast<std::size_t>(batch * 2), 0.01f);
  std::vector<float> grad(static_cast<std::size_t>(net.NumParameters()));
  nn::Workspace<float> ws;
  for (auto _ : state) {
    net.Forward(params.data(), rows.data(), batch, ws, nullptr);
    net.Backward(params.data(), dlogits.data(), ws, grad.data(), nullptr);
    benchmark::DoNotOptimize(grad.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
  // The second convolution: forward, weight and input gradients; the first
  // (no input gradient): forward and weight gradient.
  SetFlops(state, 5.0 * 2.0 * 32 * 288 * 196 * static_cast<double>(batch));
}

}  // namespace

void RegisterBenchmarks() {
  const std::vector<std::int64_t> rows =
      Smoke() ? std::vector<std::int64_t>{40} : std::vector<std::int64_t>{600, 6000};
  for (const std::string preset :
       {"fedau_cnn_mnist", "fedfix_cnn_cifar", "fedfix_lstm_shakespeare"}) {
    auto* b = benchmark::RegisterBenchmark(
        ("net_epoch/" + preset).c_str(),
        [preset](benchmark::State& state) { Epoch(state, preset, Kind::kPlain); });
    b->ArgNames({"rows", "batch"})->Unit(benchmark::kMillisecond)->UseRealTime();
    for (std::int64_t n : rows) {
      for (std::int64_t batch : {10, 32, 128}) b->Args({n, batch});
    }
  }
  for (const std::string preset : {"fedau_cnn_mnist", "fedfix_lstm_shakespeare"}) {
    for (const auto& [name, kind] :
         {std::pair<std::string, Kind>{"dp_epoch/", Kind::kDp},
          {"dp_ghost_epoch/", Kind::kDpGhost}}) {
      auto* dp = benchmark::RegisterBenchmark(
          (name + preset).c_str(),
          [preset, kind](benchmark::State& state) { Epoch(state, preset, kind); });
      dp->ArgNames({"rows", "batch"})->Args({rows.front(), 32})->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  benchmark::RegisterBenchmark("conv_layer/32x14x14_to_32", ConvLayer)
      ->ArgName("batch")
      ->Arg(Smoke() ? 4 : 128)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

}  // namespace fedsim::bench

FEDSIM_BENCH_MAIN()
