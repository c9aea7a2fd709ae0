// File: common/base/build_info.h
//
// What a build computes with, for the determinism promise
// (docs/architecture.md, "Vector ISA and determinism"): one build gives the
// same bits for any number of threads, worker processes and containers, on
// any CPU that runs it. Builds for different vector ISA levels (x86-64 and
// x86-64-v3, say) round differently: their GEMM kernels use fused
// multiply-adds and reduce in different vector widths. So the level is
// recorded in run_start and in checkpoints, a resumed run refuses a
// checkpoint of another level, and a coordinator refuses workers of
// another level.
#ifndef FEDSIM_COMMON_BASE_BUILD_INFO_H_
#define FEDSIM_COMMON_BASE_BUILD_INFO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace fedsim {

// The vector ISA level the build targets: the CMake option FEDSIM_ISA
// ("x86-64-v3" by default on x86-64, "x86-64" for a portable build), or
// the target processor's name when the option is empty (the compiler's
// default, arm64's for instance).
absl::string_view BuildIsa();

// The SIMD instruction sets Eigen's kernels were compiled for
// ("SSE2, SSE4.2, AVX, AVX2, FMA" for x86-64-v3, "SSE2" for x86-64).
std::string BuildSimd();

// OK if `peer_isa` (a checkpoint's or a worker's build level) is this
// build's. Otherwise kFailedPrecondition naming `what`, both levels and the
// way out. An empty `peer_isa` is a build from before fedsim recorded its
// level, which targeted plain x86-64.
absl::Status CheckSameBuildIsa(absl::string_view what, absl::string_view peer_isa);

// Writes into `out` (NUL-terminated, truncated to `size`) the features of
// the level `isa` that `cpu_has` (a predicate on GCC's
// __builtin_cpu_supports names) says are missing, comma-separated; empty
// when none are, or when `isa` is not an x86-64 level.
//
// Every binary and test links common/base/cpu_check.cc, which runs this
// on its CPU before any other static initialiser and exits 2 with one line
// naming what is missing instead of dying of SIGILL later. Defined there
// (compiled for plain x86-64, C only, so it runs on any CPU); declared
// here for its unit test.
void MissingCpuFeatures(const char* isa, bool (*cpu_has)(const char*), char* out,
                        unsigned long size);

}  // namespace fedsim

#endif  // FEDSIM_COMMON_BASE_BUILD_INFO_H_
