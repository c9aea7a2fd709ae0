#!/usr/bin/env bash
# Faults on real processes (RELIABILITY 1, 3, 5, 10, 12; §7 "Faults
# survived"), fast timings (heartbeat 0.2 s x 2). Each case asserts the
# outcome against an uninterrupted embedded run of the same config (which
# the distributed runtime reproduces bit for bit):
#   sigkill    SIGKILL of 1 of 3 workers mid-run: worker_dead, its task
#              re-issued, final model_hash identical, nothing lost;
#   sigstop    SIGSTOP of a worker: declared dead within patience x interval
#              + slack, task re-issued, run completes identical; after
#              SIGCONT its stale push is rejected with a status and an
#              events.jsonl reason;
#   sigterm    SIGTERM of fedsim-server mid-run: exit 0, a checkpoint of the
#              last completed round, --resume ends bit-identical;
#   launch     SIGTERM of `fedsim launch`: forwarded to the workers (they
#              leave, exit 0), exit 0, --resume ends bit-identical;
#   duplicate  every push sent twice and delayed (reordered): identical model,
#              duplicates dropped = duplicates that reached an open round;
#   wall       SIGKILL of a worker on the wall clock (async FedAvg): worker_dead,
#              its pinned clients reassigned and contributing again, every
#              task accounted for;
#   rejoin     a stateful run (SCAFFOLD: c_i travels with the tasks): SIGKILL
#              of a worker holding a task, restarted at once under the same
#              --worker_name: worker_rejoined, its task re-issued with the
#              client's state, identical to the embedded run.
# Prints the measured numbers (docs/reliability.md, "Faults").
set -u
bin=${1:?usage: faults_test.sh BIN_DIR SOURCE_DIR}
# shellcheck source=tests/e2e/server_lib.sh
. "${2:?usage: faults_test.sh BIN_DIR SOURCE_DIR}/tests/e2e/server_lib.sh"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
say_fail() { echo "FAIL $*"; fail=1; }

cat > "$work/exp.yaml" <<'YAML'
name: faults-e2e
seed: 11
rounds: 10
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 40, dim: 10, heterogeneity: 1}}
clients: {count: 9}
model: {objective: least_squares}
algorithm: {name: fedavg}
participation: {client_fraction: 1}
local: {epochs: 2, batch_size: 10, lr: 0.05}
distributed: {min_workers: 3, round_deadline_s: 30, long_poll_s: 1, heartbeat_interval_s: 0.2, heartbeat_patience: 2}
YAML
sed 's/^distributed: {/checkpoint: {every: 4, min_interval_s: 0}\ndistributed: {/' "$work/exp.yaml" > "$work/exp-ckpt.yaml"

column() {
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
                        { print $c }' "$1/metrics.csv"
}
event_count() { grep -c "\"event\":\"$2\"" "$1/events.jsonl"; }
json_field() {  # json_field FILE EVENT FIELD: FIELD of the last EVENT line
  python3 -c 'import json,sys
v=None
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e.get("event")==sys.argv[2]: v=e.get(sys.argv[3])
print(v)' "$@"
}
wait_for() {  # wait_for SECONDS COMMAND...: polls until COMMAND succeeds
  local until=$((SECONDS + $1)); shift
  while ! "$@" 2>/dev/null; do
    [ $SECONDS -ge $until ] && return 1
    sleep 0.05
  done
}
same_as_ref() {  # same_as_ref LABEL DIR [REFERENCE_DIR]
  local ref=${3:-$work/ref}
  if ! diff <(column "$ref" model_hash) <(column "$2" model_hash) > "$work/diff"; then
    say_fail "$1: model_hash differs from the uninterrupted run:"; head "$work/diff"; return 1
  fi
  cmp -s "$ref/model.bin" "$2/model.bin" || { say_fail "$1: model.bin differs"; return 1; }
  local unrec
  unrec=$(json_field "$2/events.jsonl" run_end tasks_unreconciled)
  [ "$unrec" = 0 ] || { say_fail "$1: tasks_unreconciled = $unrec"; return 1; }
  return 0
}

"$bin/fedsim" run "$work/exp.yaml" --out "$work/ref" --quiet > /dev/null || {
  echo "FAIL reference run"; exit 1; }
ref_hash=$(column "$work/ref" model_hash | tail -1)

# start_run NAME CONFIG [ENV...]: fedsim-server on a port the kernel picks
# (no collision with the other tests running beside this one), and 3
# workers once it says which.
start_run() {
  local name=$1 config=$2; shift 2
  "$bin/fedsim-server" --config "$config" --out "$work/$name" \
    --listen "127.0.0.1:0" --quiet > "$work/$name-server.log" 2>&1 &
  server=$!; pids+=($server)
  port=$(server_port "$work/$name-server.log") ||
    { say_fail "$name: the server did not say its port"; cat "$work/$name-server.log"; }
  for i in 1 2 3; do
    # slow_env (optional): extra environment for worker $slow_worker only.
    env "$@" ${slow_env:+$( [ "$i" = "${slow_worker:-}" ] && echo "$slow_env")} \
      "$bin/fedsim-client" --server "127.0.0.1:$port" --name "w$i" \
      --max_unreachable_s 30 > "$work/$name-w$i.log" 2>&1 &
    worker[$i]=$!; pids+=($!)
  done
}
# dump_run NAME: what a failed scenario left, on the test's output (the
# work directory is removed at exit): the run's last events and every log.
dump_run() {
  local name=$1 f
  echo "--- $name: last events"
  tail -n 40 "$work/$name/events.jsonl" 2>/dev/null | cut -c1-300
  for f in "$work/$name"-*.log; do
    [ -f "$f" ] && { echo "--- $(basename "$f")"; tail -n 15 "$f"; }
  done
}
finish_run() {  # finish_run NAME: the server and the workers exit 0
  local name=$1 code
  wait $server; code=$?
  [ $code -eq 0 ] || { say_fail "$name: server exited $code"; tail -5 "$work/$name-server.log"; dump_run "$name"; }
  for i in 1 2 3; do
    [ -z "${worker[$i]}" ] && continue
    wait "${worker[$i]}"; code=$?
    [ $code -eq 0 ] || { say_fail "$name: worker $i exited $code"; tail -3 "$work/$name-w$i.log"; }
  done
}
round_done() {  # round_done DIR R: round R's round_end is in events.jsonl
  python3 -c 'import json,sys
sys.exit(0 if any(e.get("event")=="round_end" and e.get("round")==int(sys.argv[2])
                  for e in map(json.loads, open(sys.argv[1]))) else 1)' "$1/events.jsonl" "$2"
}

patience=0.4   # heartbeat_patience x heartbeat_interval_s
slack=0.25     # one tick (50 ms) plus scheduling on a busy machine

# --- sigkill: kill -9 worker 1 while it holds a task. Its pushes are
# delayed 1.5 s (the others' 100 ms), so it is the last to finish a round
# and polls its next task at once: from just after a round's end it holds
# a task for at least 1.5 s, whatever the load on the machine.
start=$SECONDS
slow_worker=1 slow_env=FEDSIM_FAULT_DELAY_PUSH_MS=1500 start_run kill "$work/exp.yaml" FEDSIM_FAULT_DELAY_PUSH_MS=100
wait_for 30 round_done "$work/kill" 2 || say_fail "sigkill: round 2 never ended"
sleep 0.5
kill -9 "${worker[1]}"; wait "${worker[1]}" 2>/dev/null; worker[1]=""
finish_run kill
if same_as_ref sigkill "$work/kill"; then
  lat=$(json_field "$work/kill/events.jsonl" worker_dead detection_latency_s)
  requeued=$(json_field "$work/kill/events.jsonl" worker_dead requeued_tasks)
  if [ "$lat" = None ]; then
    say_fail "sigkill: no worker_dead event"
  elif ! python3 -c "import sys; sys.exit(0 if $lat <= $patience + $slack else 1)"; then
    say_fail "sigkill: detection latency $lat s > $patience + $slack"
  else
    echo "ok   sigkill: 1 of 3 workers killed, detection latency ${lat} s, re-issued $requeued task(s), $(column "$work/kill" round | wc -l) rounds, model_hash $ref_hash identical ($((SECONDS - start)) s)"
  fi
fi

# --- sigstop: stall worker 2 until it is declared dead, then resume it.
start=$SECONDS
# Worker 2 holds each task for at least 1.5 s (as worker 1 above), so it
# is stopped while it holds one.
slow_worker=2 slow_env=FEDSIM_FAULT_DELAY_PUSH_MS=1500 start_run stop "$work/exp.yaml" FEDSIM_FAULT_DELAY_PUSH_MS=100
wait_for 30 round_done "$work/stop" 1 || say_fail "sigstop: round 1 never ended"
sleep 0.5
kill -STOP "${worker[2]}"
wait_for 20 grep -q '"event":"worker_dead"' "$work/stop/events.jsonl" ||
  say_fail "sigstop: the stalled worker was never declared dead"
dead=$(json_field "$work/stop/events.jsonl" worker_dead worker)
kill -CONT "${worker[2]}"
finish_run stop
if same_as_ref sigstop "$work/stop"; then
  lat=$(json_field "$work/stop/events.jsonl" worker_dead detection_latency_s)
  requeued=$(json_field "$work/stop/events.jsonl" worker_dead requeued_tasks)
  stale=$(python3 -c 'import json,sys
n=[e for e in map(json.loads, open(sys.argv[1])) if e.get("event")=="result_rejected" and e.get("worker")==int(sys.argv[2])]
print(",".join(e["code"] for e in n))' "$work/stop/events.jsonl" "$dead")
  if ! python3 -c "import sys; sys.exit(0 if $lat <= $patience + $slack else 1)"; then
    say_fail "sigstop: detection latency $lat s > $patience + $slack"
  elif [ "$requeued" -lt 1 ]; then
    say_fail "sigstop: nothing re-issued"
  elif [ -z "$stale" ]; then
    say_fail "sigstop: the stale push of worker $dead was not rejected in events.jsonl"
  elif ! grep -q "joined as worker" "$work/stop-w2.log" || [ "$(grep -c 'joined as worker' "$work/stop-w2.log")" -lt 2 ]; then
    say_fail "sigstop: the resumed worker did not join again"
  else
    echo "ok   sigstop: detection latency ${lat} s (<= $patience + $slack), re-issued $requeued task(s), stale push rejected ($stale), model_hash identical ($((SECONDS - start)) s)"
  fi
fi

# --- sigterm: graceful stop of fedsim-server mid-run, then --resume.
start=$SECONDS
start_run term "$work/exp-ckpt.yaml" FEDSIM_FAULT_DELAY_PUSH_MS=50
wait_for 30 round_done "$work/term" 4 || say_fail "sigterm: round 4 never ended"
kill -TERM $server
wait $server; code=$?
[ $code -eq 0 ] || { say_fail "sigterm: server exited $code after SIGTERM"; tail -5 "$work/term-server.log"; }
ckpt=$(json_field "$work/term/events.jsonl" shutdown checkpoint)
next=$(json_field "$work/term/events.jsonl" shutdown next_round)
[ -f "$ckpt" ] || say_fail "sigterm: no checkpoint ($ckpt)"
"$bin/fedsim-server" --config "$work/exp-ckpt.yaml" --out "$work/term" \
  --listen "127.0.0.1:$port" --resume=true --quiet > "$work/term-server2.log" 2>&1 &
server=$!; pids+=($server)
finish_run term
if same_as_ref sigterm "$work/term"; then
  grep -q "resuming .* at round $next" "$work/term-server2.log" ||
    say_fail "sigterm: did not resume at round $next"
  echo "ok   sigterm: exit 0, checkpoint $(basename "$ckpt") (written at stop: $(json_field "$work/term/events.jsonl" shutdown checkpoint_written)), drained in $(json_field "$work/term/events.jsonl" shutdown drain_s) s, resumed at round $next, model_hash identical ($((SECONDS - start)) s)"
fi

# --- SIGTERM of `fedsim launch`: forwarded to its workers, which leave and
# exit 0; the coordinator stops gracefully; --resume ends identical.
start=$SECONDS
FEDSIM_FAULT_DELAY_PUSH_MS=50 "$bin/fedsim" launch "$work/exp.yaml" --workers 3 \
  --out "$work/launch" --quiet > "$work/launch.log" 2>&1 &
launcher=$!; pids+=($launcher)
wait_for 30 round_done "$work/launch" 3 || say_fail "launch: round 3 never ended"
kill -TERM $launcher
wait $launcher; code=$?
[ $code -eq 0 ] || { say_fail "launch: exited $code after SIGTERM"; tail -5 "$work/launch.log"; }
stopped=$(cat "$work/launch/workers/"*.log | grep -c "fedsim-client: stopped by signal")
left=$(event_count "$work/launch" worker_left)
[ "$stopped" = 3 ] || say_fail "launch: $stopped of 3 workers stopped by the forwarded signal"
[ "$left" -ge 1 ] || say_fail "launch: no worker_left event"
next=$(json_field "$work/launch/events.jsonl" shutdown next_round)
FEDSIM_FAULT_DELAY_PUSH_MS=50 "$bin/fedsim" launch "$work/exp.yaml" --workers 3 \
  --out "$work/launch" --resume --quiet > "$work/launch2.log" 2>&1 ||
  { say_fail "launch: --resume exited $?"; tail -5 "$work/launch2.log"; }
if same_as_ref launch "$work/launch"; then
  echo "ok   launch: SIGTERM forwarded, $stopped workers left and exited 0 ($left worker_left events), stopped before round $next, --resume identical ($((SECONDS - start)) s)"
fi

# --- duplicate + delayed (reordered) pushes.
start=$SECONDS
start_run dup "$work/exp.yaml" FEDSIM_FAULT_DUPLICATE_PUSH=1 FEDSIM_FAULT_DELAY_PUSH_MS=20
finish_run dup
if same_as_ref duplicate "$work/dup"; then
  sent=$(cat "$work/dup"-w*.log | grep -c "fault: duplicate push sent")
  answered_dup=$(cat "$work/dup"-w*.log | grep -c "fault: duplicate push sent.*: duplicate$")
  dropped=$(event_count "$work/dup" duplicate_dropped)
  counted=$(json_field "$work/dup/events.jsonl" run_end pushes_duplicate)
  stale=$((sent - answered_dup))
  if [ "$sent" -lt 90 ]; then
    say_fail "duplicate: only $sent duplicates sent, expected one per task (90)"
  elif [ "$answered_dup" != "$dropped" ] || [ "$dropped" != "$counted" ]; then
    say_fail "duplicate: $answered_dup answered as duplicates, $dropped duplicate_dropped events, run_end counts $counted"
  else
    echo "ok   duplicate: $sent duplicates sent, $dropped dropped as duplicates + $stale refused as stale (round already closed), model_hash identical ($((SECONDS - start)) s)"
  fi
fi

# --- rejoin: SCAFFOLD's c_i lives in the coordinator and travels with the
# tasks. Worker 1 (pushes delayed 1.5 s, so it holds a task) is killed and
# restarted at once under its name, long before it could be declared dead
# (patience 2 s x 10): the coordinator takes it for the same worker.
start=$SECONDS
sed -e 's/algorithm: {name: fedavg}/algorithm: {name: scaffold, scaffold_option: ii}/' \
    -e 's/heartbeat_interval_s: 0.2, heartbeat_patience: 2/heartbeat_interval_s: 2, heartbeat_patience: 10/' \
    "$work/exp.yaml" > "$work/exp-state.yaml"
"$bin/fedsim" run "$work/exp-state.yaml" --out "$work/ref-state" --quiet > /dev/null ||
  say_fail "rejoin: reference run"
slow_worker=1 slow_env=FEDSIM_FAULT_DELAY_PUSH_MS=1500 start_run rejoin "$work/exp-state.yaml" FEDSIM_FAULT_DELAY_PUSH_MS=100
wait_for 30 round_done "$work/rejoin" 2 || say_fail "rejoin: round 2 never ended"
sleep 0.5
kill -9 "${worker[1]}"; wait "${worker[1]}" 2>/dev/null
"$bin/fedsim-client" --server "127.0.0.1:$port" --worker_name w1 --max_unreachable_s 30 \
  > "$work/rejoin-w1b.log" 2>&1 &
worker[1]=$!; pids+=($!)
finish_run rejoin
if same_as_ref rejoin "$work/rejoin" "$work/ref-state"; then
  rejoined=$(event_count "$work/rejoin" worker_rejoined)
  requeued=$(json_field "$work/rejoin/events.jsonl" worker_rejoined requeued_tasks)
  dead=$(event_count "$work/rejoin" worker_dead)
  if [ "$rejoined" != 1 ] || [ "$requeued" = None ] || [ "$requeued" -lt 1 ]; then
    say_fail "rejoin: $rejoined worker_rejoined events, requeued $requeued"
  elif [ "$dead" != 0 ]; then
    say_fail "rejoin: $dead worker_dead events (the restart should have been recognised)"
  else
    echo "ok   rejoin: SCAFFOLD worker killed and restarted as w1: worker_rejoined, re-issued $requeued task(s) with the client state, model_hash identical to embedded ($((SECONDS - start)) s)"
  fi
fi

# --- wall: asynchronous FedAvg on the wall clock (async.clock: wall), 9
# clients pinned to 3 workers; kill -9 of a worker mid-run. Not
# reproducible, so no reference: the dead worker is detected, its clients go
# to the others and keep contributing, and every task is accounted for.
start=$SECONDS
# An 8 s horizon, so the killed worker's clients can move and contribute
# again even on a busy machine; server_lr 0.1, because at 1 the thousands
# of one-client steps a second made the model blow up now and then, the
# clients' local training diverged (a failed task holds its client until
# the 30 s deadline), and whether the moved clients contributed again
# depended on when that happened.
sed -e 's/algorithm: {name: fedavg}/algorithm: {name: async_fedavg, server_lr: 0.1}\nasync: {clock: wall, horizon: 8}\neval: {every: 50}/' \
    -e '/^rounds: /d' -e '/^participation: /d' "$work/exp.yaml" > "$work/exp-wall.yaml"
start_run wall "$work/exp-wall.yaml"
# The first step's row (metrics.csv has its header from the start).
stepped() { [ "$(wc -l < "$work/wall/metrics.csv")" -ge 2 ]; }
wait_for 30 stepped || say_fail "wall: no step"
sleep 1
kill -9 "${worker[1]}"; wait "${worker[1]}" 2>/dev/null; worker[1]=""
finish_run wall
# No local training may have failed (a diverging model, see above).
if grep -h "failed: " "$work"/wall-w*.log > "$work/wall-failed.txt"; then
  say_fail "wall: $(wc -l < "$work/wall-failed.txt") task(s) failed, e.g. $(head -1 "$work/wall-failed.txt")"
fi
if python3 - "$work/wall/events.jsonl" > "$work/wall-check.txt" 2>&1 <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
dead = [e for e in events if e["event"] == "worker_dead"]
moved = [e for e in events
         if e["event"] == "clients_reassigned" and e["worker"] == dead[0]["worker"]]
end = [e for e in events if e["event"] == "run_end"][-1]
assert len(dead) == 1 and len(moved) == 1, (len(dead), len(moved))
clients = set(moved[0]["clients"])
after = set()
seen = False
for e in events:
    if e is dead[0]:
        seen = True
    elif seen and e["event"] == "async_step":
        after |= {c["client"] for c in e["contributors"]}
assert clients <= after, (clients, after)
assert end["tasks_issued"] == end["tasks_aggregated"] + end["tasks_dropped"] + end["tasks_in_flight"], end
assert end["tasks_in_flight"] == 9, end
print(f"{end['rounds']} steps, clients {sorted(clients)} moved after "
      f"{dead[0]['detection_latency_s']:.2f} s and contributed again")
PY
then
  echo "ok   wall: 1 of 3 workers killed on the wall clock: $(cat "$work/wall-check.txt") ($((SECONDS - start)) s)"
else
  say_fail "wall: $(tail -1 "$work/wall-check.txt")"
  dump_run wall
fi

exit $fail
