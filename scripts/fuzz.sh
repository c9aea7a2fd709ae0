#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (docs/reliability.md, "Fuzzing").
# Optional: not part of scripts/setup.sh or scripts/test.sh (CI time). CI
# replays the checked-in corpora instead (ctest -R fuzz_replay_test).
#
#   scripts/fuzz.sh                 every target for 60 s
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh Join UploadChunk
#   MERGE=1 scripts/fuzz.sh         then merge new inputs into tests/fuzz/corpus
#
# Targets: Config Join PullTask PushResult Leave FetchChunk UploadChunk.
# Builds with clang -fsanitize=fuzzer,address,undefined into build-fuzz/;
# findings (crash-*, leak-*, timeout-*) land in build-fuzz/findings/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian 12: clang 14; libFuzzer and the sanitizer runtimes are in
# libclang-rt-14-dev, OpenMP for clang in libomp-14-dev.
need=()
command -v clang++ > /dev/null || need+=(clang)
[ -n "$(find /usr/lib/llvm-14 -name 'libclang_rt.fuzzer-x86_64.a' 2>/dev/null)" ] ||
  need+=(libclang-rt-14-dev)
[ -e /usr/lib/llvm-14/lib/libomp.so ] || need+=(libomp-14-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "fuzz.sh: installing ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}"
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(Config Join PullTask PushResult Leave FetchChunk UploadChunk)
dir=${BUILD_DIR:-build-fuzz}
seconds=${SECONDS_PER_TARGET:-60}
jobs=${JOBS:-$(nproc)}
corpus_name() {  # Join -> join, PullTask -> pull_task
  echo "$1" | sed -E 's/([a-z])([A-Z])/\1_\2/g' | tr 'A-Z' 'a-z'
}

mkdir -p "$dir"
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFEDSIM_SANITIZER='address;undefined' -DFEDSIM_FUZZ=ON -DFEDSIM_WERROR=OFF \
  -DFEDSIM_BUILD_TESTS=ON -DFEDSIM_DEBUG_INFO=OFF > "$dir/cmake.log" 2>&1 ||
  { cat "$dir/cmake.log"; exit 1; }
cmake --build "$dir" -j "$jobs" --target $(printf 'fuzz_%s ' "${targets[@]}")

status=0
for t in "${targets[@]}"; do
  seeds=tests/fuzz/corpus/$(corpus_name "$t")
  work=$dir/corpus/$t
  findings=$dir/findings/$t
  mkdir -p "$work" "$findings"
  echo "== fuzz_$t: ${seconds}s, seeds $seeds"
  # The checked-in seeds are read, new inputs go to $work.
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
      "$dir/bin/fuzz_$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
      -rss_limit_mb=4096 -artifact_prefix="$findings/" -print_final_stats=1 \
      "$work" "$seeds" 2>&1 | tail -n 25; then
    status=1
  fi
  if [ "${MERGE:-0}" = 1 ]; then
    # Keep a minimised set: only inputs that add coverage.
    "$dir/bin/fuzz_$t" -merge=1 "$seeds" "$work" > /dev/null 2>&1 || true
    echo "   corpus $seeds: $(ls "$seeds" | wc -l) files"
  fi
done
exit $status
