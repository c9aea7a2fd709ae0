#!/usr/bin/env bash
# Configures and builds fedsim. Binaries land in build/bin (or BUILD_DIR/bin).
#   scripts/build.sh               the programs only (fedsim, fedsim-server,
#                                  fedsim-client, fedsim-health), in build/
#   BUILD_BENCHMARKS=ON scripts/build.sh   the programs and bench/
#   TARGETS=all scripts/build.sh   everything, the tests included (scripts/test.sh)
#   BUILD_DIR=build-asan SANITIZER='address;undefined' TARGETS=all scripts/build.sh
#   ISA=x86-64 scripts/build.sh    a portable build for any x86-64 CPU (the
#                                  default is x86-64-v3: AVX2 and FMA;
#                                  docs/architecture.md, "Vector ISA")
# BUILD_ARGS: extra arguments for the build tool (ninja), e.g.
# BUILD_ARGS='-t commands' lists the commands without running them.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
type=${BUILD_TYPE:-RelWithDebInfo}
jobs=${JOBS:-$(nproc)}
targets=${TARGETS:-programs}
if [ -z "${TARGETS:-}" ] && [ "${BUILD_BENCHMARKS:-OFF}" = ON ]; then
  targets="programs benchmarks"
fi
# ccache, where installed, speeds up rebuilds (CI has none: no effect there).
launcher=$(command -v ccache || true)
mkdir -p "$dir"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" \
  -DCMAKE_CXX_COMPILER_LAUNCHER="$launcher" \
  -DFEDSIM_SANITIZER="${SANITIZER:-}" -DFEDSIM_BUILD_TESTS="${BUILD_TESTS:-ON}" \
  -DFEDSIM_BUILD_BENCHMARKS="${BUILD_BENCHMARKS:-OFF}" \
  -DFEDSIM_DEBUG_INFO="${DEBUG_INFO:-ON}" -DFEDSIM_UNITY_BUILD="${UNITY_BUILD:-OFF}" \
  ${ISA+"-DFEDSIM_ISA=$ISA"} > "$dir/cmake.log" 2>&1 ||
  { cat "$dir/cmake.log"; exit 1; }
# shellcheck disable=SC2086  # targets and BUILD_ARGS are word lists
cmake --build "$dir" -j "$jobs" --target $targets ${BUILD_ARGS:+-- $BUILD_ARGS}
