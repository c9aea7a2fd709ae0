// File: bench/bench_main.h
//
// The main() of every bench/ binary: Google Benchmark's, plus `--smoke`,
// which shrinks the problem sizes (CI's tiny run) and is removed from argv
// before Google Benchmark parses it.
#ifndef FEDSIM_BENCH_BENCH_MAIN_H_
#define FEDSIM_BENCH_BENCH_MAIN_H_

#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"

namespace fedsim::bench {

// True when the binary runs with --smoke.
inline bool& Smoke() {
  static bool smoke = false;
  return smoke;
}

// Counts `per_iteration` floating-point operations per benchmark iteration
// into the counter "flop", a rate (per second of the benchmark's time: real
// time with UseRealTime, CPU time otherwise); bench/report.py reads it.
inline void SetFlops(benchmark::State& state, double per_iteration) {
  state.counters["flop"] = benchmark::Counter(
      per_iteration * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

// Registers the binary's benchmarks (each binary defines it); called after
// --smoke is known, so sizes can depend on it.
void RegisterBenchmarks();

inline int BenchMain(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      Smoke() = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  RegisterBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace fedsim::bench

#define FEDSIM_BENCH_MAIN()                          \
  int main(int argc, char** argv) {                  \
    return ::fedsim::bench::BenchMain(argc, argv);   \
  }

#endif  // FEDSIM_BENCH_BENCH_MAIN_H_
