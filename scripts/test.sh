#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/setup.sh):
#   1. release build (build/) and every ctest test: unit, integration
#      (embedded vs gRPC with real worker processes), e2e (CLI, compose,
#      network namespaces);
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/) and
#      the unit and integration tests under it;
#   3. ThreadSanitizer build (build-tsan/) of the coordinator and its tests.
# FEDSIM_SKIP_SANITIZERS=1 skips 2 and 3 (a quick local loop).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - start )) s)"; }

step "release build"
scripts/build.sh
step "tests (release)"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900

if [ "${FEDSIM_SKIP_SANITIZERS:-0}" != 1 ]; then
  step "ASan+UBSan build"
  BUILD_DIR=build-asan SANITIZER='address;undefined' scripts/build.sh
  step "tests (ASan+UBSan)"
  # gRPC and protobuf keep process-lifetime singletons; LSan stays on.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900 -L 'unit|integration'

  step "TSan build (coordinator)"
  BUILD_DIR=build-tsan SANITIZER=thread TARGETS=server_test scripts/build.sh
  step "tests (TSan)"
  # libgomp is not TSan-instrumented: one OpenMP thread in these tests.
  OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure --timeout 900 -R '^(Coordinator|RoundEngine)'
fi
step "all tests passed"
