// File: bench/training_bench.cc
//
// Benchmarks 2 and 3 (docs/performance.md): one client's local training,
// softmax regression on Fashion-MNIST (d = 784, C = 10, 7850 parameters),
// one epoch over n = 6000 rows (--smoke: 200 rows of the test set), on one
// thread. Every iteration starts from zero parameters.
//
//   local_sgd/B    fedsim's RunLocalSgd (client/trainer/local_trainer.h):
//                  shuffle, gather, Objective::Evaluate, step
//   dp_sgd/B       fedsim's RunLocalDpSgd (client/trainer/dp_trainer.h),
//                  DP-SGD with per-example clipping: Poisson lots of
//                  expected size B, per-example gradients, clipping, noise
//                  (C = 1, z = 1); the same number of steps, ceil(n / B)
//   dp_sgd_ghost/B the same with local.dp.ghost_clipping: norms and the
//                  clipped sum from the outer-product factors, no B x d
//                  matrix of per-example gradients
//   *_f32/B        the same three in model.precision float32 (the default
//                  for softmax): float32 batches and products
//   noise_polar/d  one step's DP noise the old way, x[i] += s * Gaussian()
//                  for d = 7850 values (Marsaglia's polar method)
//   noise_ziggurat/d  the same with AddGaussianNoise, the DP noise since
//                  the ziggurat sampler (RngStream::AddScaledGaussian)
//
// Throughput is reported as items_per_second = examples per second
// (expected examples for dp_sgd; normal values for noise_*), and as the
// counter `flop` for local_sgd: 4 d C per example (the logits X W and the
// gradient X^T G, 2 d C each), against which bench/report.py sets the
// machine's GEMM rate (bench/floors.py). The hand-written Eigen loop that
// used to be this benchmark's floor is gone: built like fedsim, it measured
// Eigen's code generation, not the hardware (issue 20).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "bench/bench_main.h"
#include "client/trainer/dp_trainer.h"
#include "client/trainer/local_trainer.h"
#include "common/dp/mechanisms.h"
#include "common/data/dataset.h"
#include "common/data/loaders.h"
#include "common/objectives/objective.h"
#include "common/random/stream.h"

namespace fedsim::bench {
namespace {

constexpr double kLr = 0.05;

struct Setup {
  Dataset train;
  std::unique_ptr<Objective> objective;    // float64
  std::unique_ptr<Objective> objective32;  // float32
  std::vector<std::int64_t> rows;
  std::string error;
};

// Fashion-MNIST from $FEDSIM_FASHION_MNIST, else the source tree's
// third_party/data/fashion-mnist (scripts/setup.sh fetches it).
const Setup& GetSetup() {
  static const Setup* setup = [] {
    auto* s = new Setup;
    const char* env = std::getenv("FEDSIM_FASHION_MNIST");
    const std::string dir =
        env != nullptr ? env
                       : std::string(FEDSIM_SOURCE_DIR) +
                             "/third_party/data/fashion-mnist";
    const std::string prefix = Smoke() ? "/t10k" : "/train";
    auto data = LoadIdx(dir + prefix + "-images-idx3-ubyte.gz",
                        dir + prefix + "-labels-idx1-ubyte.gz");
    if (!data.ok()) {
      s->error = std::string(data.status().message());
      return s;
    }
    s->train = *std::move(data);
    ObjectiveSpec spec;
    spec.kind = ObjectiveKind::kSoftmax;
    spec.num_features = s->train.dim();
    spec.num_classes = s->train.num_classes;
    s->objective = *MakeObjective(spec);
    spec.precision = Precision::kFloat32;
    s->objective32 = *MakeObjective(spec);
    const std::int64_t n = Smoke() ? 200 : 6000;
    s->rows.resize(static_cast<std::size_t>(n));
    std::iota(s->rows.begin(), s->rows.end(), 0);
    return s;
  }();
  return *setup;
}

std::int64_t NumRows() {
  return static_cast<std::int64_t>(GetSetup().rows.size());
}

LocalTrainingSpec Spec(std::int64_t batch) {
  LocalTrainingSpec spec;
  spec.epochs = 1;
  spec.batch_size = batch;
  spec.lr = kLr;
  return spec;
}

void LocalSgd(benchmark::State& state, bool float32) {
  const Setup& s = GetSetup();
  if (!s.error.empty()) return state.SkipWithError(s.error.c_str());
  const Objective& objective = float32 ? *s.objective32 : *s.objective;
  const LocalTrainingSpec spec = Spec(state.range(0));
  const FlatVector start = FlatVector::Zero(s.objective->NumParameters());
  Round round = 0;
  for (auto _ : state) {
    RngStream rng(1, RngPurpose::kShuffle, 0, round++);
    auto out = RunLocalSgd(objective, s.train, s.rows, start, spec, rng);
    if (!out.ok()) {
      return state.SkipWithError(std::string(out.status().message()).c_str());
    }
    benchmark::DoNotOptimize(out->update.data());
  }
  state.SetItemsProcessed(state.iterations() * NumRows());
  SetFlops(state, 4.0 * static_cast<double>(s.train.dim() * s.train.num_classes *
                                            NumRows()));
}

void DpSgdWith(benchmark::State& state, bool ghost, bool float32) {
  const Setup& s = GetSetup();
  if (!s.error.empty()) return state.SkipWithError(s.error.c_str());
  const Objective& objective = float32 ? *s.objective32 : *s.objective;
  const LocalTrainingSpec spec = Spec(state.range(0));
  DpSpec dp;
  dp.mode = DpMode::kClip;
  dp.clip = 1.0;
  dp.noise_multiplier = 1.0;
  dp.ghost_clipping = ghost;
  const FlatVector start = FlatVector::Zero(s.objective->NumParameters());
  Round round = 0;
  for (auto _ : state) {
    RngStream sampling(1, RngPurpose::kDpSampling, 0, round);
    RngStream noise(1, RngPurpose::kDpNoise, 0, round++);
    auto out = RunLocalDpSgd(objective, s.train, s.rows, start, spec, dp,
                             sampling, noise, nullptr);
    if (!out.ok()) {
      return state.SkipWithError(std::string(out.status().message()).c_str());
    }
    benchmark::DoNotOptimize(out->update.data());
  }
  state.SetItemsProcessed(state.iterations() * NumRows());
}

// One step's noise on d values, from a fresh kDpNoise stream per iteration
// (as RunLocalDpSgd's per task); `ziggurat` picks the sampler.
void NoiseWith(benchmark::State& state, bool ziggurat) {
  const auto d = static_cast<Eigen::Index>(state.range(0));
  Eigen::VectorXd x = Eigen::VectorXd::Zero(d);
  Round round = 0;
  for (auto _ : state) {
    RngStream rng(1, RngPurpose::kDpNoise, 0, round++);
    if (ziggurat) {
      AddGaussianNoise(0.1, rng, x);
    } else {
      for (Eigen::Index i = 0; i < d; ++i) x[i] += 0.1 * rng.Gaussian();
    }
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * d);
}

void NoisePolar(benchmark::State& state) { NoiseWith(state, false); }
void NoiseZiggurat(benchmark::State& state) { NoiseWith(state, true); }

void LocalSgd64(benchmark::State& state) { LocalSgd(state, false); }
void LocalSgd32(benchmark::State& state) { LocalSgd(state, true); }
void DpSgd(benchmark::State& state) { DpSgdWith(state, false, false); }
void DpSgdGhost(benchmark::State& state) { DpSgdWith(state, true, false); }
void DpSgd32(benchmark::State& state) { DpSgdWith(state, false, true); }
void DpSgdGhost32(benchmark::State& state) { DpSgdWith(state, true, true); }

}  // namespace

void RegisterBenchmarks() {
  GetSetup();  // loads the data before any timing
  for (auto* b : {benchmark::RegisterBenchmark("local_sgd", LocalSgd64),
                  benchmark::RegisterBenchmark("dp_sgd", DpSgd),
                  benchmark::RegisterBenchmark("dp_sgd_ghost", DpSgdGhost),
                  benchmark::RegisterBenchmark("local_sgd_f32", LocalSgd32),
                  benchmark::RegisterBenchmark("dp_sgd_f32", DpSgd32),
                  benchmark::RegisterBenchmark("dp_sgd_ghost_f32", DpSgdGhost32)}) {
    b->ArgName("batch")->Arg(10)->Arg(32)->Arg(128)->Unit(
        benchmark::kMillisecond);
  }
  for (auto* b : {benchmark::RegisterBenchmark("noise_polar", NoisePolar),
                  benchmark::RegisterBenchmark("noise_ziggurat", NoiseZiggurat)}) {
    b->ArgName("d")->Arg(7850)->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace fedsim::bench

FEDSIM_BENCH_MAIN()
