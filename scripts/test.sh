#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/setup.sh):
#   1. release build (build/, with bench/) and every ctest test: unit,
#      integration (embedded vs gRPC with real worker processes), e2e (CLI,
#      faults on real processes, load, auth, compose, network namespaces)
#      and a tiny run of every benchmark (bench_smoke);
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/),
#      compiled while the release tests of step 1 run, and the unit and
#      integration tests under it;
#   3. ThreadSanitizer build (build-tsan/) of the coordinator and its tests.
# FEDSIM_SKIP_SANITIZERS=1 skips 2 and 3 (a quick local loop).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - start )) s)"; }

# No debug info in the test builds: a fifth of the compile time (the
# sanitizer builds keep line tables, see CMakeLists.txt).
export DEBUG_INFO=OFF
# Test binaries and libraries compiled in unity batches of 8 files: about a
# third of the tests' compile time (docs/testing.md).
export UNITY_BUILD=ON
step "release build"
TARGETS=all BUILD_BENCHMARKS=ON scripts/build.sh

if [ "${FEDSIM_SKIP_SANITIZERS:-0}" = 1 ]; then
  step "tests (release)"
  ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900
else
  # The release tests spend much of their time waiting (containers, worker
  # processes, network namespaces): they run while the ASan build compiles.
  step "tests (release), in the background, and ASan+UBSan build"
  release_log=$(mktemp)
  ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900 > "$release_log" 2>&1 &
  release_pid=$!
  trap 'kill "$release_pid" 2>/dev/null || true' EXIT
  BUILD_DIR=build-asan SANITIZER='address;undefined' TARGETS=sanitizer_tests scripts/build.sh
  release_status=0
  wait "$release_pid" || release_status=$?
  step "tests (release): results"
  cat "$release_log"
  rm -f "$release_log"
  [ "$release_status" = 0 ] || { echo "release tests failed"; exit "$release_status"; }
  step "tests (ASan+UBSan)"
  # gRPC and protobuf keep process-lifetime singletons; LSan stays on.
  # Left out here (they run in the release tests): the statistical claims of
  # the papers, seconds of the same code paths as smaller tests, and the
  # largest preset's PyTorch parity, whose layers the other presets' parity
  # runs under ASan too (docs/testing.md).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900 -L 'unit|integration' \
      -E 'FedProxPaperTest|FedAuIntegrationTest.BeatsBoth|GarnetTest.ScaffLsaHasLinearSpeedUp|leaf_cnn_femnist'

  step "TSan build (coordinator)"
  BUILD_DIR=build-tsan SANITIZER=thread TARGETS=server_test scripts/build.sh
  step "tests (TSan)"
  # libgomp is not TSan-instrumented: one OpenMP thread in these tests.
  OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure --timeout 900 -R '^(Coordinator|RoundEngine|RpcStats)'
fi
step "all tests passed"
