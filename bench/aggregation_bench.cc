// File: bench/aggregation_bench.cc
//
// Benchmark 1 (docs/performance.md): the server's aggregation against the
// memory bandwidth the machine offers, measured in the same process.
//
//   stream_copy/T     c = a                      2 x 8 bytes per element
//   stream_triad/T    a = b + s c                3 x 8 bytes per element
//   weighted_sum/T    fedsim::WeightedSum of K updates of d values,
//                     (K + 1) x 8 bytes per element of the output
//   fedavg_aggregate/T  FedAvg::Aggregate (the weights, WeightedSum into its
//                     step, the server step global += eta step):
//                     (K + 4) x 8 bytes per element
//
// T is the number of threads (KernelContext::num_threads for fedsim's
// kernels, an OpenMP team of T for STREAM). Bytes are counted as STREAM
// does: what the loop must read and write, without write-allocate traffic.
// The counter `flop` is the floating-point operations per second: 2 K d
// for a weighted sum (a multiply and an add per input value), 2 d more for
// FedAvg's server step, 2 n for triad.
// K = 100, d = 10^6 (--smoke: K = 4, d = 2^17); the STREAM arrays have
// 2^24 elements (128 MiB each), far beyond any cache.
#include <cstdint>
#include <numeric>
#include <vector>

#include "bench/bench_main.h"
#include "common/base/task.h"
#include "common/kernels/vector_ops.h"
#include "common/random/stream.h"
#include "server/strategy/fedavg.h"

namespace fedsim::bench {
namespace {

struct Sizes {
  std::int64_t k, d, stream_n;
};

Sizes GetSizes() {
  if (Smoke()) return {4, 1 << 17, 1 << 17};
  return {100, 1000000, 1 << 24};
}

std::vector<double> Filled(std::int64_t n, double value) {
  return std::vector<double>(static_cast<std::size_t>(n), value);
}

void StreamCopy(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const std::int64_t n = GetSizes().stream_n;
  std::vector<double> a = Filled(n, 1.0), c = Filled(n, 0.0);
  const double* pa = a.data();
  double* pc = c.data();
  for (auto _ : state) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < n; ++i) pc[i] = pa[i];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 2 * 8);
}

void StreamTriad(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const std::int64_t n = GetSizes().stream_n;
  std::vector<double> a = Filled(n, 0.0), b = Filled(n, 1.0), c = Filled(n, 2.0);
  double* pa = a.data();
  const double* pb = b.data();
  const double* pc = c.data();
  const double s = 3.0;
  for (auto _ : state) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 3 * 8);
  SetFlops(state, 2.0 * static_cast<double>(n));
}

// K client results with distinct updates and sizes, the same for every
// benchmark of the process (built once: K x d doubles is 800 MB).
const std::vector<ClientResult>& Results() {
  static const std::vector<ClientResult>* results = [] {
    const Sizes s = GetSizes();
    auto* r = new std::vector<ClientResult>(static_cast<std::size_t>(s.k));
    RngStream rng(1, RngPurpose::kTest, -1, -1);
    for (std::int64_t k = 0; k < s.k; ++k) {
      ClientResult& cr = (*r)[static_cast<std::size_t>(k)];
      cr.client = ClientId(k);
      cr.update.resize(s.d);
      const double base = rng.Uniform01();
      for (std::int64_t i = 0; i < s.d; ++i) {
        cr.update[i] = base + 1e-6 * static_cast<double>(i % 1000);
      }
      cr.num_examples = 100 + k;
    }
    return r;
  }();
  return *results;
}

void WeightedSumBench(benchmark::State& state) {
  const Sizes s = GetSizes();
  const KernelContext ctx{static_cast<int>(state.range(0))};
  const std::vector<ClientResult>& results = Results();
  std::vector<double> weights;
  std::vector<const Eigen::VectorXd*> inputs;
  for (const ClientResult& r : results) {
    weights.push_back(1.0 / static_cast<double>(s.k));
    inputs.push_back(&r.update);
  }
  FlatVector out(s.d);
  for (auto _ : state) {
    WeightedSum(weights, inputs, out, ctx);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * s.d * (s.k + 1) * 8);
  SetFlops(state, 2.0 * static_cast<double>(s.k * s.d));
}

void FedAvgAggregate(benchmark::State& state) {
  const Sizes s = GetSizes();
  const std::vector<ClientResult>& results = Results();
  FedAvgOptions options;
  options.kernel.num_threads = static_cast<int>(state.range(0));
  std::vector<std::int64_t> sizes;
  std::vector<ClientId> participants;
  for (const ClientResult& r : results) {
    sizes.push_back(r.num_examples);
    participants.push_back(r.client);
  }
  FedAvg fedavg(options, sizes);
  fedavg.Plan(0, participants);
  FlatVector global = FlatVector::Zero(s.d);
  for (auto _ : state) {
    auto report = fedavg.Aggregate(0, results, global);
    if (!report.ok()) {
      state.SkipWithError(std::string(report.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(global.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * s.d * (s.k + 4) * 8);
  SetFlops(state, 2.0 * static_cast<double>((s.k + 1) * s.d));
}

}  // namespace

void RegisterBenchmarks() {
  for (auto* b : {benchmark::RegisterBenchmark("stream_copy", StreamCopy),
                  benchmark::RegisterBenchmark("stream_triad", StreamTriad),
                  benchmark::RegisterBenchmark("weighted_sum", WeightedSumBench),
                  benchmark::RegisterBenchmark("fedavg_aggregate",
                                               FedAvgAggregate)}) {
    b->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(
        benchmark::kMillisecond);
  }
}

}  // namespace fedsim::bench

FEDSIM_BENCH_MAIN()
