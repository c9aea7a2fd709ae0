// The CPU check every binary runs first. This file is compiled for plain
// x86-64 whatever FEDSIM_ISA is (common/CMakeLists.txt), and uses only C:
// the code that runs before the check must not contain the instructions it
// checks for (inline C++ templates could come from another translation
// unit, compiled for the build's level).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/build_info.h"

#ifndef FEDSIM_BUILD_ISA
#error "FEDSIM_BUILD_ISA is set by common/CMakeLists.txt"
#endif

namespace fedsim {
namespace {

// What x86-64-v2, v3 and v4 add, in __builtin_cpu_supports' names (the
// x86-64 psABI's levels; cx16 and lahf_lm, which GCC 12 cannot query,
// left out).
const char* const kV2[] = {"cmov", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"};
const char* const kV3[] = {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe"};
const char* const kV4[] = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"};

void Append(const char* const* features, int n, bool (*cpu_has)(const char*), char* out,
            unsigned long size) {
  for (int i = 0; i < n; ++i) {
    if (cpu_has(features[i])) continue;
    if (out[0] != '\0') strncat(out, ", ", size - strlen(out) - 1);
    strncat(out, features[i], size - strlen(out) - 1);
  }
}

}  // namespace

void MissingCpuFeatures(const char* isa, bool (*cpu_has)(const char*), char* out,
                         unsigned long size) {
  if (size == 0) return;
  out[0] = '\0';
  const int level = strcmp(isa, "x86-64-v2") == 0   ? 2
                    : strcmp(isa, "x86-64-v3") == 0 ? 3
                    : strcmp(isa, "x86-64-v4") == 0 ? 4
                                                    : 1;
  if (level >= 2) Append(kV2, sizeof kV2 / sizeof *kV2, cpu_has, out, size);
  if (level >= 3) Append(kV3, sizeof kV3 / sizeof *kV3, cpu_has, out, size);
  if (level >= 4) Append(kV4, sizeof kV4 / sizeof *kV4, cpu_has, out, size);
}

#if defined(__x86_64__)
namespace {

bool CpuHas(const char* f) {
  // __builtin_cpu_supports takes a literal: one test per name above.
#define FEDSIM_CPU_CASE(name) \
  if (strcmp(f, name) == 0) return __builtin_cpu_supports(name);
  FEDSIM_CPU_CASE("cmov") FEDSIM_CPU_CASE("popcnt") FEDSIM_CPU_CASE("sse3")
  FEDSIM_CPU_CASE("sse4.1") FEDSIM_CPU_CASE("sse4.2") FEDSIM_CPU_CASE("ssse3")
  FEDSIM_CPU_CASE("avx") FEDSIM_CPU_CASE("avx2") FEDSIM_CPU_CASE("bmi")
  FEDSIM_CPU_CASE("bmi2") FEDSIM_CPU_CASE("f16c") FEDSIM_CPU_CASE("fma")
  FEDSIM_CPU_CASE("lzcnt") FEDSIM_CPU_CASE("movbe") FEDSIM_CPU_CASE("avx512f")
  FEDSIM_CPU_CASE("avx512bw") FEDSIM_CPU_CASE("avx512cd") FEDSIM_CPU_CASE("avx512dq")
  FEDSIM_CPU_CASE("avx512vl")
#undef FEDSIM_CPU_CASE
  return true;
}

// Priority 101: before every other static initialiser of the binary.
__attribute__((constructor(101))) void RefuseCpusWithoutTheBuildIsa() {
  __builtin_cpu_init();
  char missing[256];
  MissingCpuFeatures(FEDSIM_BUILD_ISA, CpuHas, missing, sizeof missing);
  if (missing[0] == '\0') return;
  fprintf(stderr,
          "fedsim: this build targets %s, but this CPU lacks %s; rebuild with cmake "
          "-DFEDSIM_ISA=x86-64 (docs/architecture.md, \"Vector ISA and determinism\")\n",
          FEDSIM_BUILD_ISA, missing);
  _Exit(2);
}

}  // namespace
#endif  // __x86_64__

}  // namespace fedsim
