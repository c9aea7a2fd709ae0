#!/usr/bin/env bash
# Load (issue 8, RELIABILITY 21 and 25): 256 virtual clients over 16
# fedsim-client processes for 100 rounds of a small model (least squares,
# d = 10). Asserts that no update is lost (every issued task aggregated; the
# run_end reconciliation balances) and that the resident memory of the
# coordinator and of the workers does not grow with the rounds after
# warm-up (slope of a least-squares line through /proc/PID/status VmRSS
# samples, bound generous: 64 KiB per round). Prints the numbers, and the
# "Load held" figures of docs/reliability.md (RELIABILITY 7): per RPC type
# requests/s, bytes/s, latency p50/p95/p99/max and status codes from the
# run's rpc_stats record, rounds per minute, and the coordinator's CPU time
# and peak RSS (also per 1000 virtual clients); asserts the rpc_stats counts
# (16 joins, PushResult OK = tasks aggregated + duplicates).
# FEDSIM_LOAD_CLIENTS overrides the 256 virtual clients (the figures at a
# second size give the marginal CPU and RSS per 1000 virtual clients);
# FEDSIM_LOAD_DIM (default 10) and FEDSIM_LOAD_CHUNK_BYTES (default: the
# config default, 1 MiB) make the parameters travel in chunks, for the
# FetchChunk and UploadChunk figures. FEDSIM_LOAD_WORKERS (default 16) and
# FEDSIM_LOAD_ROUNDS (default 100) size the run for capacity measurements
# (docs/reliability.md, "Load held"); the RSS slope is then fitted after
# the first fifth of the rounds.
set -u
bin=${1:?usage: load_test.sh BIN_DIR SOURCE_DIR}
# shellcheck source=tests/e2e/server_lib.sh
. "${2:?usage: load_test.sh BIN_DIR SOURCE_DIR}/tests/e2e/server_lib.sh"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
workers=${FEDSIM_LOAD_WORKERS:-16}
rounds=${FEDSIM_LOAD_ROUNDS:-100}
clients=${FEDSIM_LOAD_CLIENTS:-256}
dim=${FEDSIM_LOAD_DIM:-10}
chunk=${FEDSIM_LOAD_CHUNK_BYTES:+, chunk_bytes: $FEDSIM_LOAD_CHUNK_BYTES}

cat > "$work/exp.yaml" <<YAML
name: load-e2e
seed: 3
rounds: $rounds
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 20, dim: $dim, heterogeneity: 1}}
clients: {count: $clients}
model: {objective: least_squares}
algorithm: {name: fedavg}
participation: {client_fraction: 0.5}
local: {epochs: 1, batch_size: 10, lr: 0.05}
eval: {every: 10}
checkpoint: {every: 10}
distributed: {min_workers: $workers, round_deadline_s: 60, long_poll_s: 2, heartbeat_interval_s: 1, heartbeat_patience: 3$chunk}
YAML

# The embedded baseline of the same experiment (RELIABILITY 7 reports the
# distributed rounds/min as a ratio to it).
"$bin/fedsim" run "$work/exp.yaml" --out "$work/embedded" --quiet > /dev/null 2>&1 ||
  { echo "FAIL load: the embedded baseline run failed"; exit 1; }

start=$SECONDS
# A port the kernel picks: no collision with the tests running beside this.
"$bin/fedsim-server" --config "$work/exp.yaml" --out "$work/run" \
  --listen "127.0.0.1:0" --quiet > "$work/server.log" 2>&1 &
server=$!; pids+=($server)
port=$(server_port "$work/server.log") ||
  { echo "FAIL load: the server did not say its port"; cat "$work/server.log"; exit 1; }
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
cpu_ticks() {  # utime + stime of PID $1 in clock ticks (fields 14, 15)
  local f
  { read -r -a f < "/proc/$1/stat"; } 2>/dev/null || return
  echo $(( f[13] + f[14] ))
}
hwm() {  # VmHWM (peak RSS) of PID $1 in KiB
  local k v rest
  { while read -r k v rest; do
      [ "$k" = VmHWM: ] && { echo "$v"; return; }
    done < "/proc/$1/status"; } 2>/dev/null
}
server_cpu=0; server_hwm=0
while kill -0 $server 2>/dev/null; do
  rows=$(rows_so_far)
  t=$(cpu_ticks $server); [ -n "$t" ] && server_cpu=$t
  h=$(hwm $server); [ -n "$h" ] && server_hwm=$h
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
python3 - "$work/run/events.jsonl" "$work/run/metrics.csv" "$work/rss" "$((SECONDS - start))" \
  "$server_cpu" "$(getconf CLK_TCK)" "$server_hwm" "$work/embedded/events.jsonl" "$clients" \
  "$workers" "$rounds" <<'PY' || fail=1
import json, sys
events, metrics, rss, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
cpu_ticks, clk_tck, hwm_kb = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
embedded_end = [ev for ev in map(json.loads, open(sys.argv[8])) if ev.get("event") == "run_end"][-1]
clients, workers, want_rounds = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
warm_after = want_rounds // 5
all_events = [json.loads(l) for l in open(events)]
end = [e for e in all_events if e.get("event") == "run_end"]
ok = True
if not end:
    print("FAIL load: no run_end"); sys.exit(1)
e = end[-1]
rows = sum(1 for _ in open(metrics)) - 1
lost = e["tasks_issued"] - e["tasks_aggregated"]
print(f"load: {rows} rounds, tasks issued {e['tasks_issued']}, aggregated {e['tasks_aggregated']}, "
      f"timed out {e['tasks_timed_out']}, dropped {e['tasks_dropped']}, unreconciled "
      f"{e['tasks_unreconciled']}, rejected pushes {e['pushes_rejected']}; {secs} s")
if (rows != want_rounds or lost != 0 or e["tasks_unreconciled"] != 0
        or e["tasks_issued"] != want_rounds * (clients // 2)):
    print("FAIL load: updates lost or rounds missing"); ok = False
samples = [tuple(map(int, l.split())) for l in open(rss)]
warm = [s for s in samples if s[0] >= warm_after]
def slope(points):
    n = len(points)
    if n < 3: return 0.0
    mx = sum(p[0] for p in points) / n; my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if sxx == 0 else sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
bound_kb = 64
for name, idx, per in (("coordinator", 1, 1), ("workers (per process)", 2, workers)):
    pts = [(s[0], s[idx] / per) for s in warm]
    peak = max(s[idx] / per for s in samples)
    peak_round = next(s[0] for s in samples if s[idx] / per == peak)
    sl = slope(pts)
    print(f"load: {name}: RSS slope after round {warm_after} {sl:+.2f} KiB/round "
          f"({len(pts)} samples), peak {peak/1024:.1f} MiB at round {peak_round}")
    if len(pts) >= 3 and sl > bound_kb:
        print(f"FAIL load: {name} RSS grows {sl:.1f} KiB/round > {bound_kb}"); ok = False

# Load held (RELIABILITY 7): the rpc_stats record, rounds/min, coordinator
# CPU and peak RSS.
stats = [ev for ev in all_events if ev.get("event") == "rpc_stats"]
if len(stats) != 1:
    print(f"FAIL load: {len(stats)} rpc_stats records, expected 1"); sys.exit(1)
m = stats[0]["methods"]
codes = lambda name: m[name]["codes"]
if m["Join"]["calls"] != workers or codes("Join").get("OK") != workers:
    print(f"FAIL load: rpc_stats Join {m['Join']}"); ok = False
if codes("PushResult").get("OK", 0) != e["tasks_aggregated"] + e["pushes_duplicate"]:
    print(f"FAIL load: rpc_stats PushResult OK {codes('PushResult')} != aggregated "
          f"{e['tasks_aggregated']} + duplicates {e['pushes_duplicate']}"); ok = False
rpm = rows / e["wall_time_s"] * 60
embedded_rpm = embedded_end["rounds"] / embedded_end["wall_time_s"] * 60
import csv
walls = [float(r["wall_time_s"]) for r in csv.DictReader(open(metrics))]
round_s = [b - a for a, b in zip([0.0] + walls, walls)]
print(f"load held: {rpm:.1f} rounds/min ({rows} rounds in {e['wall_time_s']:.1f} s, {clients} "
      f"virtual clients, {workers} workers, {clients // 2} tasks/round) = {rpm / embedded_rpm:.3f} x the embedded "
      f"run's {embedded_rpm:.1f}; round wall time mean {1000 * sum(round_s) / len(round_s):.0f} ms, "
      f"max {1000 * max(round_s):.0f} ms (deadline 60 s); rpc_stats over "
      f"{stats[0]['elapsed_s']:.1f} s")
print(f"{'load held: rpc':<27} {'calls':>7} {'req/s':>8} {'KiB/s':>8} {'p50 ms':>8} "
      f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  codes")
for name in ("Join", "PullTask", "PushResult", "FetchChunk", "UploadChunk", "Heartbeat", "Leave"):
    s = m[name]; l = s["latency_ms"]
    print(f"load held: {name:<16} {s['calls']:>7} {s['requests_per_s']:>8.1f} "
          f"{s['bytes_per_s'] / 1024:>8.1f} {l['p50']:>8.3f} {l['p95']:>8.3f} {l['p99']:>8.3f} "
          f"{l['max']:>8.3f}  {' '.join(f'{k}={v}' for k, v in sorted(s['codes'].items())) or '-'}")
cpu_s = cpu_ticks / clk_tck
print(f"load held: coordinator CPU {cpu_s:.2f} s ({100 * cpu_s / e['wall_time_s']:.1f} % of one core, "
      f"{1000 * cpu_s / rows:.1f} ms/round; per 1000 virtual clients "
      f"{1000 * cpu_s / rows * 1000 / clients:.1f} ms/round), peak RSS {hwm_kb / 1024:.1f} MiB "
      f"({hwm_kb / 1024 * 1000 / clients:.1f} MiB per 1000 virtual clients if it all scaled)")
sys.exit(0 if ok else 1)
PY
[ $fail = 0 ] && echo "ok   load"
exit $fail
