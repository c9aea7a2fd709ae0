#!/usr/bin/env bash
# Command-line behaviour of `fedsim`: bad configs exit 2 with exactly one
# line on stderr that names the problem; a good tiny config exits 0.
set -u
bin=${1:?usage: cli_test.sh BIN_DIR SOURCE_DIR}
src=${2:?}
# shellcheck source=tests/e2e/server_lib.sh
. "$src/tests/e2e/server_lib.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

# expect_error NAME EXPECTED_SUBSTRING YAML
expect_error() {
  local name=$1 want=$2 yaml=$3
  printf '%s\n' "$yaml" > "$work/$name.yaml"
  "$bin/fedsim" run "$work/$name.yaml" --out "$work/out-$name" --quiet \
      > "$work/$name.stdout" 2> "$work/$name.stderr"
  local code=$?
  local lines
  lines=$(wc -l < "$work/$name.stderr")
  if [ "$code" -ne 2 ]; then
    echo "FAIL $name: exit code $code, expected 2"; cat "$work/$name.stderr"; fail=1
  elif [ "$lines" -ne 1 ]; then
    echo "FAIL $name: $lines lines on stderr, expected 1"; cat "$work/$name.stderr"; fail=1
  elif ! grep -qF -- "$want" "$work/$name.stderr"; then
    echo "FAIL $name: stderr lacks '$want':"; cat "$work/$name.stderr"; fail=1
  else
    echo "ok   $name: $(cat "$work/$name.stderr")"
  fi
}

base='data: {source: synthetic_least_squares}
clients: {count: 4}
rounds: 2'

expect_error unknown_key "algorithm.learning_rate: unknown key" "$base
algorithm: {learning_rate: 0.1}"
expect_error unknown_top_key "roundz: unknown key" "$base
roundz: 3"
expect_error negative_lr "local.lr = -0.5; must be > 0" "$base
local: {lr: -0.5}"
expect_error wrong_type "rounds = 'ten'; must be an integer" "data: {source: synthetic_least_squares}
rounds: ten"
expect_error bad_enum "model.objective = 'svm'; must be one of" "$base
model: {objective: svm}"
expect_error zero_fraction "participation.client_fraction = 0; must be > 0" "$base
participation: {client_fraction: 0}"
expect_error missing_data_file "no train-images-idx3-ubyte" "data: {source: idx, path: $work/nowhere}"
expect_error too_many_clients "exceeds" "data: {source: csv, has_header: true, train_file: $src/tests/fixtures/tiny.csv, test_file: $src/tests/fixtures/tiny.csv}
clients: {count: 1000}"
expect_error not_yaml "not valid YAML" "rounds: [1, 2"
expect_error dp_delta "local.dp.delta = 1; must be < 1" "$base
local: {dp: {mode: clip, delta: 1}}"
expect_error dp_negative_noise "local.dp.noise_multiplier = -1; must be >= 0" "$base
local: {dp: {mode: dicesgd, noise_multiplier: -1}}"
expect_error dp_unreachable_target "local.dp.target_epsilon = 0.001; target epsilon" "$base
local: {dp: {mode: clip, target_epsilon: 0.001}}"
expect_error dp_budget_too_small "local.dp.epsilon_budget = 0.01; one round already" "$base
local: {dp: {mode: clip, noise_multiplier: 1, epsilon_budget: 0.01}}"
expect_error fedbuff_buffer "algorithm.buffer_size = 5; must be <= clients.count = 4" "$base
algorithm: {name: fedbuff}"
expect_error async_trace_missing "async.trace_file = '$work/none.txt'; cannot open it" "$base
algorithm: {name: fedfix}
async: {compute_time: trace, trace_file: $work/none.txt}"
# The wall clock (async.clock: wall) needs worker processes: `fedsim run`
# refuses it in one line; `fedsim launch` runs it.
printf '%s\nalgorithm: {name: fedfix, window: 0.05}\nasync: {clock: wall}\n' "$base" \
    > "$work/async_wall.yaml"
"$bin/fedsim" run "$work/async_wall.yaml" --out "$work/out-async-wall-run" \
    > /dev/null 2> "$work/async_wall.stderr"
code=$?
if [ "$code" -ne 2 ] || [ "$(wc -l < "$work/async_wall.stderr")" -ne 1 ] ||
   ! grep -qF "async.clock = wall" "$work/async_wall.stderr"; then
  echo "FAIL wall clock embedded: exit $code"; cat "$work/async_wall.stderr"; fail=1
else
  echo "ok   wall clock embedded: $(cat "$work/async_wall.stderr")"
fi
if "$bin/fedsim" launch "$work/async_wall.yaml" --workers 1 --quiet \
      --out "$work/out-async-wall" > /dev/null 2> "$work/async_wall_launch.stderr" &&
   grep -q '"clock":"wall"' "$work/out-async-wall/events.jsonl" &&
   grep -q '"event":"run_end"' "$work/out-async-wall/events.jsonl"; then
  echo "ok   wall clock launch"
else
  echo "FAIL wall clock launch"; cat "$work/async_wall_launch.stderr"; fail=1
fi

# fedsim privacy: bad values exit 2 with one line; good ones print epsilon.
expect_privacy_error() {
  local name=$1 want=$2; shift 2
  "$bin/fedsim" privacy "$@" > "$work/$name.stdout" 2> "$work/$name.stderr"
  local code=$?
  if [ "$code" -ne 2 ] || [ "$(wc -l < "$work/$name.stderr")" -ne 1 ] ||
     ! grep -qF -- "$want" "$work/$name.stderr"; then
    echo "FAIL privacy $name: exit $code"; cat "$work/$name.stderr"; fail=1
  else
    echo "ok   privacy $name: $(cat "$work/$name.stderr")"
  fi
}
expect_privacy_error q_zero "--sampling-rate = '0'; must be in (0, 1]" \
  --sampling-rate 0 --noise-multiplier 1 --steps 10
expect_privacy_error q_above_one "--sampling-rate = '1.5'; must be in (0, 1]" \
  --sampling-rate 1.5 --noise-multiplier 1 --steps 10
expect_privacy_error negative_noise "--noise-multiplier = '-0.5'; must be >= 0" \
  --sampling-rate 0.1 --noise-multiplier=-0.5 --steps 10
expect_privacy_error delta_one "--delta = '1'; must be in (0, 1)" \
  --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1
expect_privacy_error unreachable "cannot be met" \
  --sampling-rate 0.1 --target-epsilon 0.001 --steps 10
expect_privacy_error both "exactly one of" \
  --sampling-rate 0.1 --target-epsilon 1 --noise-multiplier 1 --steps 10
expect_privacy_error unknown_flag "unknown flag --sigma" \
  --sampling-rate 0.1 --sigma 1 --steps 10
out=$("$bin/fedsim" privacy --sampling-rate 0.04 --noise-multiplier 1.5 --steps 2250 --json)
if [ $? -eq 0 ] && echo "$out" | grep -q '"epsilon":7.3291111'; then
  echo "ok   privacy epsilon: $out"
else
  echo "FAIL privacy epsilon: $out"; fail=1
fi
out=$("$bin/fedsim" privacy --sampling-rate 0.04 --target-epsilon 8 --steps 2250 --json)
if [ $? -eq 0 ] && echo "$out" | grep -q '"noise_multiplier":1.41578'; then
  echo "ok   privacy calibration: $out"
else
  echo "FAIL privacy calibration: $out"; fail=1
fi
"$bin/fedsim" run "$work/missing_config_file.yaml" --quiet > /dev/null 2> "$work/mc.stderr"
code=$?
if [ "$code" -ne 2 ] || ! grep -q "cannot open" "$work/mc.stderr"; then
  echo "FAIL missing config file: exit $code"; cat "$work/mc.stderr"; fail=1
else
  echo "ok   missing config file: $(cat "$work/mc.stderr")"
fi

# A good config runs and writes the run directory.
printf '%s\n' "$base" > "$work/good.yaml"
if "$bin/fedsim" run "$work/good.yaml" --out "$work/good" --quiet > "$work/good.stdout" 2>&1 &&
   [ -s "$work/good/metrics.csv" ] && [ -s "$work/good/events.jsonl" ] &&
   [ -s "$work/good/model.bin" ] && [ -s "$work/good/config.json" ] &&
   [ "$(wc -l < "$work/good/metrics.csv")" -eq 3 ]; then
  echo "ok   good config runs"
else
  echo "FAIL good config"; cat "$work/good.stdout"; fail=1
fi
# The resolved config loads back and gives the same run.
if "$bin/fedsim" run "$work/good/config.json" --out "$work/again" --quiet > /dev/null 2>&1 &&
   cmp -s "$work/good/model.bin" "$work/again/model.bin"; then
  echo "ok   resolved config reproduces the run"
else
  echo "FAIL resolved config.json does not reproduce the run"; fail=1
fi

# Progress when stderr is not a terminal: plain lines, no escape codes; the
# good config has 2 rounds, both printed.
"$bin/fedsim" run "$work/good.yaml" --out "$work/plain" > /dev/null 2> "$work/plain.stderr"
if [ "$(grep -c '^round [12]/2  .* eta ' "$work/plain.stderr")" -eq 2 ] &&
   ! grep -q $'\r\|\033' "$work/plain.stderr"; then
  echo "ok   plain progress lines"
else
  echo "FAIL plain progress:"; cat -A "$work/plain.stderr"; fail=1
fi
# --json: one progress object per round, then the summary, on stdout only;
# its model_hash is metrics.csv's last one.
"$bin/fedsim" run "$work/good.yaml" --out "$work/json" --json > "$work/json.stdout" 2> "$work/json.stderr"
code=$?
last_hash=$(tail -1 "$work/json/metrics.csv" | cut -d, -f11)
if [ "$code" -eq 0 ] && [ ! -s "$work/json.stderr" ] &&
   [ "$(wc -l < "$work/json.stdout")" -eq 3 ] &&
   [ "$(grep -c '^{"bytes_down":.*"event":"progress"' "$work/json.stdout")" -eq 2 ] &&
   tail -1 "$work/json.stdout" | grep -q "\"event\":\"summary\".*\"model_hash\":\"$last_hash\""; then
  echo "ok   --json progress and summary"
else
  echo "FAIL --json (exit $code):"; cat "$work/json.stdout" "$work/json.stderr"; fail=1
fi
"$bin/fedsim" run "$work/good.yaml" --out "$work/both" --json --quiet > /dev/null 2> "$work/both.stderr"
code=$?
if [ "$code" -eq 2 ] && [ "$(wc -l < "$work/both.stderr")" -eq 1 ] &&
   grep -q -- "--quiet and --json" "$work/both.stderr"; then
  echo "ok   --quiet with --json refused"
else
  echo "FAIL --quiet --json: exit $code"; cat "$work/both.stderr"; fail=1
fi
# A second coordinator on a port in use fails with one line (gRPC's
# default SO_REUSEPORT would let it bind and split the workers between the
# two runs).
printf '%s\n' "$base" > "$work/port.yaml"
"$bin/fedsim-server" --config "$work/port.yaml" --out "$work/port1" --listen 127.0.0.1:0 \
  --quiet > "$work/port1.stdout" 2> "$work/port1.stderr" &
first=$!
port=$(server_port "$work/port1.stderr")
timeout 20 "$bin/fedsim-server" --config "$work/port.yaml" --out "$work/port2" \
  --listen "127.0.0.1:$port" --quiet > /dev/null 2> "$work/port2.stderr"
code=$?
kill "$first" 2> /dev/null; wait "$first" 2> /dev/null
if [ -n "$port" ] && [ "$code" -ne 0 ] && [ "$code" -ne 124 ] &&
   [ "$(wc -l < "$work/port2.stderr")" -eq 1 ] &&
   grep -q "^fedsim-server: cannot listen on '127.0.0.1:$port': the port is in use" "$work/port2.stderr"; then
  echo "ok   second coordinator on a busy port: exit $code, $(cat "$work/port2.stderr")"
else
  echo "FAIL second coordinator on port '$port': exit $code"; cat "$work/port1.stderr" "$work/port2.stderr"; fail=1
fi
exit $fail
