#!/usr/bin/env bash
# Load (issue 8, RELIABILITY 21 and 25): 256 virtual clients over 16
# fedsim-client processes for 100 rounds of a small model (least squares,
# d = 10). Asserts that no update is lost (every issued task aggregated; the
# run_end reconciliation balances) and that the resident memory of the
# coordinator and of the workers does not grow with the rounds after
# warm-up (slope of a least-squares line through /proc/PID/status VmRSS
# samples, bound generous: 64 KiB per round). Prints the numbers.
set -u
bin=${1:?usage: load_test.sh BIN_DIR SOURCE_DIR}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
workers=16

cat > "$work/exp.yaml" <<YAML
name: load-e2e
seed: 3
rounds: 100
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 20, dim: 10, heterogeneity: 1}}
clients: {count: 256}
model: {objective: least_squares}
algorithm: {name: fedavg}
participation: {client_fraction: 0.5}
local: {epochs: 1, batch_size: 10, lr: 0.05}
eval: {every: 10}
checkpoint: {every: 10}
distributed: {min_workers: $workers, round_deadline_s: 60, long_poll_s: 2, heartbeat_interval_s: 1, heartbeat_patience: 3}
YAML

port=$((20000 + RANDOM % 20000))
start=$SECONDS
"$bin/fedsim-server" --config "$work/exp.yaml" --out "$work/run" \
  --listen "127.0.0.1:$port" --quiet > "$work/server.log" 2>&1 &
server=$!; pids+=($server)
wpids=()
for i in $(seq 1 $workers); do
  "$bin/fedsim-client" --server "127.0.0.1:$port" --name "w$i" \
    > "$work/w$i.log" 2>&1 &
  wpids+=($!); pids+=($!)
done

# Samples: ROUND COORDINATOR_RSS_KB WORKER_RSS_KB (sum over workers), while
# the server runs; the round is the number of metrics rows so far.
# Shell builtins only: sampling must not load the 2 cores it measures.
rss() {  # VmRSS of PID $1 in KiB, 0 once it has exited
  local k v rest
  { while read -r k v rest; do
      [ "$k" = VmRSS: ] && { echo "$v"; return; }
    done < "/proc/$1/status"; } 2>/dev/null
  echo 0
}
rows_so_far() {
  local n=0 line
  { while read -r line; do n=$((n + 1)); done < "$work/run/metrics.csv"; } 2>/dev/null
  echo $((n > 0 ? n - 1 : -1))
}
while kill -0 $server 2>/dev/null; do
  rows=$(rows_so_far)
  c=$(rss $server)
  w=0; for p in "${wpids[@]}"; do w=$((w + $(rss $p))); done
  [ "$rows" -ge 0 ] && [ "$c" -gt 0 ] && echo "$rows $c $w" >> "$work/rss"
  sleep 0.05
done
wait $server; code=$?
fail=0
[ $code -eq 0 ] || { echo "FAIL load: server exited $code"; tail -5 "$work/server.log"; fail=1; }
for p in "${wpids[@]}"; do
  wait "$p" || { echo "FAIL load: a worker exited $?"; fail=1; }
done
python3 - "$work/run/events.jsonl" "$work/run/metrics.csv" "$work/rss" "$((SECONDS - start))" <<'PY' || fail=1
import json, sys
events, metrics, rss, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
end = [e for e in map(json.loads, open(events)) if e.get("event") == "run_end"]
ok = True
if not end:
    print("FAIL load: no run_end"); sys.exit(1)
e = end[-1]
rows = sum(1 for _ in open(metrics)) - 1
lost = e["tasks_issued"] - e["tasks_aggregated"]
print(f"load: {rows} rounds, tasks issued {e['tasks_issued']}, aggregated {e['tasks_aggregated']}, "
      f"timed out {e['tasks_timed_out']}, dropped {e['tasks_dropped']}, unreconciled "
      f"{e['tasks_unreconciled']}, rejected pushes {e['pushes_rejected']}; {secs} s")
if rows != 100 or lost != 0 or e["tasks_unreconciled"] != 0 or e["tasks_issued"] != 100 * 128:
    print("FAIL load: updates lost or rounds missing"); ok = False
samples = [tuple(map(int, l.split())) for l in open(rss)]
warm = [s for s in samples if s[0] >= 20]
def slope(points):
    n = len(points)
    if n < 3: return 0.0
    mx = sum(p[0] for p in points) / n; my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if sxx == 0 else sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
bound_kb = 64
for name, idx, per in (("coordinator", 1, 1), ("workers (per process)", 2, 16)):
    pts = [(s[0], s[idx] / per) for s in warm]
    peak = max(s[idx] / per for s in samples)
    peak_round = next(s[0] for s in samples if s[idx] / per == peak)
    sl = slope(pts)
    print(f"load: {name}: RSS slope after round 20 {sl:+.2f} KiB/round "
          f"({len(pts)} samples), peak {peak/1024:.1f} MiB at round {peak_round}")
    if len(pts) >= 3 and sl > bound_kb:
        print(f"FAIL load: {name} RSS grows {sl:.1f} KiB/round > {bound_kb}"); ok = False
sys.exit(0 if ok else 1)
PY
[ $fail = 0 ] && echo "ok   load"
exit $fail
