#!/usr/bin/env bash
# Crash and resume with real SIGKILLs (RELIABILITY 9): `fedsim run` and
# `fedsim-server` are killed by SIGKILL right after a round's metrics row is
# written and before its checkpoint (FEDSIM_FAULT_KILL_AFTER_ROUND), then
# restarted with --resume. The resumed runs end bit-identical to an
# uninterrupted run: the same model_hash and epsilon in every row, the same
# model.bin. In the distributed case the worker processes outlive the
# coordinator and rejoin the restarted one.
set -u
bin=${1:?usage: resume_test.sh BIN_DIR SOURCE_DIR}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail=0

cat > "$work/exp.yaml" <<'YAML'
name: resume-e2e
seed: 5
rounds: 12
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 20, dim: 4, heterogeneity: 1}}
clients: {count: 10}
model: {objective: least_squares}
algorithm: {name: fedau}
participation: {model: markov, probabilities: list, p: [0.2, 0.3, 0.5, 0.7, 0.9, 0.2, 0.3, 0.5, 0.7, 0.9], markov_a: 0.3}
local: {epochs: 1, batch_size: 5, lr: 0.05, dp: {mode: clip, clip: 1, noise_multiplier: 1.1}}
distributed: {min_workers: 2, round_deadline_s: 60, long_poll_s: 1}
checkpoint: {min_interval_s: 0}  # every round, so the kill lands where this test says
YAML

# column DIR NAME: one metrics.csv column, found by its header.
column() {
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
                        { print $c }' "$1/metrics.csv"
}
same_run() {  # same_run LABEL REFERENCE DIR
  local label=$1 ref=$2 dir=$3 ok=1
  for col in model_hash epsilon_max test_loss; do
    if ! diff <(column "$ref" $col) <(column "$dir" $col) > "$work/diff"; then
      echo "FAIL $label: column $col differs from the uninterrupted run:"; cat "$work/diff"
      ok=0
    fi
  done
  if ! cmp -s "$ref/model.bin" "$dir/model.bin"; then
    echo "FAIL $label: model.bin differs"; ok=0
  fi
  if ! grep -q '"event":"run_resumed"' "$dir/events.jsonl"; then
    echo "FAIL $label: no run_resumed event"; ok=0
  fi
  [ $ok = 1 ] && echo "ok   $label: $(column "$dir" model_hash | wc -l) rows, model_hash $(column "$dir" model_hash | tail -1)"
  [ $ok = 1 ] || fail=1
}

"$bin/fedsim" run "$work/exp.yaml" --out "$work/ref" --quiet > /dev/null || {
  echo "FAIL reference run"; exit 1; }

# --- embedded: kill -9 after round 5, resume.
FEDSIM_FAULT_KILL_AFTER_ROUND=5 "$bin/fedsim" run "$work/exp.yaml" --out "$work/emb" --quiet \
  > /dev/null 2>&1
code=$?
if [ $code -ne 137 ]; then echo "FAIL embedded: crash run exited $code, expected 137 (SIGKILL)"; fail=1; fi
rows=$(column "$work/emb" round | wc -l)
[ "$rows" -eq 6 ] || { echo "FAIL embedded: $rows rows before the resume, expected 6"; fail=1; }
[ -f "$work/emb/model.bin" ] && { echo "FAIL embedded: a killed run left model.bin"; fail=1; }
"$bin/fedsim" run "$work/exp.yaml" --out "$work/emb" --resume --quiet > "$work/emb.out" 2>&1 || {
  echo "FAIL embedded: resume exited $?"; cat "$work/emb.out"; fail=1; }
same_run "embedded resume after kill -9 at round 5" "$work/ref" "$work/emb"

# --- distributed: kill -9 the coordinator after round 4; the workers keep
# retrying and rejoin the restarted coordinator.
port=$((20000 + RANDOM % 20000))
FEDSIM_FAULT_KILL_AFTER_ROUND=4 "$bin/fedsim-server" --config "$work/exp.yaml" \
  --out "$work/dist" --listen "127.0.0.1:$port" --quiet > "$work/server1.log" 2>&1 &
server=$!
pids+=($server)
for i in 1 2; do
  "$bin/fedsim-client" --server "127.0.0.1:$port" --name "w$i" --max_unreachable_s 60 \
    > "$work/worker$i.log" 2>&1 &
  pids+=($!)
  workers[$i]=$!
done
wait $server
code=$?
if [ $code -ne 137 ]; then
  echo "FAIL distributed: coordinator exited $code, expected 137 (SIGKILL)"; cat "$work/server1.log"; fail=1
fi
"$bin/fedsim-server" --config "$work/exp.yaml" --out "$work/dist" \
  --listen "127.0.0.1:$port" --resume=true --quiet > "$work/server2.log" 2>&1
code=$?
if [ $code -ne 0 ]; then echo "FAIL distributed: resumed coordinator exited $code"; cat "$work/server2.log"; fail=1; fi
grep -q "resuming .* at round 4" "$work/server2.log" || {
  echo "FAIL distributed: the coordinator did not resume at round 4"; cat "$work/server2.log"; fail=1; }
for i in 1 2; do
  wait "${workers[$i]}"
  code=$?
  [ $code -eq 0 ] || { echo "FAIL distributed: worker $i exited $code"; cat "$work/worker$i.log"; fail=1; }
done
same_run "distributed resume after kill -9 of the coordinator at round 4" "$work/ref" "$work/dist"

exit $fail
