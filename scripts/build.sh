#!/usr/bin/env bash
# Configures and builds fedsim. Binaries land in build/bin (or BUILD_DIR/bin).
#   scripts/build.sh               release build with tests, in build/
#   BUILD_DIR=build-asan SANITIZER='address;undefined' scripts/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
type=${BUILD_TYPE:-RelWithDebInfo}
jobs=${JOBS:-$(nproc)}
mkdir -p "$dir"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" \
  -DFEDSIM_SANITIZER="${SANITIZER:-}" -DFEDSIM_BUILD_TESTS="${BUILD_TESTS:-ON}" \
  -DFEDSIM_BUILD_BENCHMARKS="${BUILD_BENCHMARKS:-OFF}" \
  -DFEDSIM_DEBUG_INFO="${DEBUG_INFO:-ON}" -DFEDSIM_UNITY_BUILD="${UNITY_BUILD:-OFF}" > "$dir/cmake.log" 2>&1 ||
  { cat "$dir/cmake.log"; exit 1; }
cmake --build "$dir" -j "$jobs" ${TARGETS:+--target $TARGETS}
