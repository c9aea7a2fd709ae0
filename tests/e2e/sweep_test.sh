#!/usr/bin/env bash
# `fedsim run --set` and `fedsim sweep` end to end (docs/sweeps.md):
#  - --set overrides land in config.json; bad ones exit 2 with one line;
#  - a 2 x 3 sweep (learning rates x seeds) with 2 jobs makes 6 run
#    directories with the right resolved configs and a sweep.json;
#  - the same sweep killed midway (SIGKILL) and resumed reruns only the
#    unfinished points and ends with the same model_hash columns;
#  - linked keys (rounds,local.lr=[[..], [..]]) change together;
#  - a bad grid value exits 2 before anything runs; a point that fails at
#    run time is reported and the others finish;
#  - fedsim report groups the seeds of each point.
set -u
bin=${1:?usage: sweep_test.sh BIN_DIR SOURCE_DIR}
src=${2:?}
work=$(mktemp -d)
sweep_pid=
trap '[ -n "$sweep_pid" ] && kill -9 "$sweep_pid" 2>/dev/null; rm -rf "$work"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

cat > "$work/base.yaml" <<'EOF'
rounds: 120
data: {source: synthetic_least_squares, least_squares: {dim: 300, examples_per_client: 300}}
clients: {count: 16}
participation: {client_fraction: 0.5}
local: {epochs: 2, batch_size: 10, lr: 0.001}
checkpoint: {every: 1, min_interval_s: 0}
EOF

# --- --set -------------------------------------------------------------------
"$bin/fedsim" run "$work/base.yaml" --set local.lr=0.003 --set 'algorithm={name: fedprox, prox_mu: 0.1}' \
    --set rounds=2 --out "$work/set" --quiet > /dev/null 2> "$work/set.err"
if python3 - "$work/set/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
assert c["local"]["lr"] == 0.003, c["local"]
assert c["algorithm"]["name"] == "NAME_FEDPROX" and c["algorithm"]["prox_mu"] == 0.1, c["algorithm"]
assert c["rounds"] == 2
EOF
then ok "--set: config.json records the overrides"; else bad "--set: config.json"; cat "$work/set.err"; fi
expect_2() {  # NAME WANT ARGS...
  local name=$1 want=$2; shift 2
  "$@" > "$work/$name.out" 2> "$work/$name.err"
  local code=$? lines
  lines=$(wc -l < "$work/$name.err")
  if [ "$code" = 2 ] && [ "$lines" = 1 ] && grep -qF -- "$want" "$work/$name.err"; then
    ok "$name: $(cat "$work/$name.err")"
  else
    bad "$name: exit $code, $lines lines, expected 2, 1 and '$want':"; cat "$work/$name.err"
  fi
}
expect_2 set_unknown "local.lrr: unknown key" \
  "$bin/fedsim" run "$work/base.yaml" --set local.lrr=1 --out "$work/x" --quiet
expect_2 set_value "local.lr = -1; must be > 0" \
  "$bin/fedsim" run "$work/base.yaml" --set local.lr=-1 --out "$work/x" --quiet
expect_2 server_set "config: rounds = 'ten'; must be an integer" \
  "$bin/fedsim-server" --config "$work/base.yaml" --set rounds=ten --out "$work/x"

# --- an uninterrupted sweep ---------------------------------------------------
grid=(--grid local.lr=0.001,0.002 --seeds 1-3 --jobs 2 --threads 1)
if "$bin/fedsim" sweep "$work/base.yaml" "${grid[@]}" --out "$work/full" > "$work/full.out" 2> "$work/full.err"; then
  ok "sweep: $(tail -1 "$work/full.out")"
else
  bad "sweep failed"; cat "$work/full.out" "$work/full.err"
fi
if python3 - "$work/full" <<'EOF'
import json, os, sys
d = sys.argv[1]
index = json.load(open(os.path.join(d, "sweep.json")))
dirs = [p["dir"] for p in index["points"]]
want = [f"local.lr={lr},seed={s}" for lr in ("0.001", "0.002") for s in (1, 2, 3)]
assert dirs == want, dirs
assert all(p["status"] == "done" and p["exit_code"] == 0 for p in index["points"]), index
for p in index["points"]:
    c = json.load(open(os.path.join(d, p["dir"], "config.json")))
    assert int(c["seed"]) == int(p["values"]["seed"]), (p, c["seed"])
    assert c["local"]["lr"] == float(p["values"]["local.lr"]), (p, c["local"])
    assert c["runtime"]["threads"] == 1
EOF
then ok "sweep: 6 run directories with their configs, sweep.json"; else bad "sweep: directories"; fi

# --- killed midway, resumed ----------------------------------------------------
"$bin/fedsim" sweep "$work/base.yaml" "${grid[@]}" --out "$work/part" > /dev/null 2> "$work/part.err" &
sweep_pid=$!
# Kill it once two points are done and the next two have started.
for _ in $(seq 1 600); do
  done_now=$(python3 -c "import json,sys
try: print(sum(p['status'] == 'done' for p in json.load(open(sys.argv[1]))['points']))
except Exception: print(0)" "$work/part/sweep.json")
  [ "$done_now" -ge 2 ] && break
  sleep 0.1
done
sleep 0.2
kill -9 "$sweep_pid" 2>/dev/null
wait "$sweep_pid" 2>/dev/null
sweep_pid=
sleep 0.5  # the runs die with it (SIGTERM from PR_SET_PDEATHSIG)
finished=$(python3 -c "import json,sys
print(' '.join(p['dir'] for p in json.load(open(sys.argv[1]))['points'] if p['status'] == 'done'))" "$work/part/sweep.json")
stamps_before=$(for f in $finished; do stat -c %Y.%N "$work/part/$f/metrics.csv" 2>/dev/null || stat -c %y "$work/part/$f/metrics.csv"; done)
n_finished=$(wc -w <<<"$finished")
if [ "$n_finished" -ge 2 ] && [ "$n_finished" -lt 6 ]; then
  ok "killed with $n_finished of 6 points done"
else
  bad "killed with $n_finished points done (expected 2 to 5)"
fi
expect_2 sweep_exists "holds a sweep (sweep.json); --resume continues it" \
  "$bin/fedsim" sweep "$work/base.yaml" "${grid[@]}" --out "$work/part"
"$bin/fedsim" sweep "$work/base.yaml" "${grid[@]}" --out "$work/part" --resume \
    > "$work/resume.out" 2> "$work/resume.err" || { bad "resume failed"; cat "$work/resume.err"; }
if grep -qF "($((6 - n_finished)) to run, $n_finished done)" "$work/resume.err"; then
  ok "resume ran only the $((6 - n_finished)) missing points"
else
  bad "resume: $(head -1 "$work/resume.err")"
fi
stamps_after=$(for f in $finished; do stat -c %Y.%N "$work/part/$f/metrics.csv" 2>/dev/null || stat -c %y "$work/part/$f/metrics.csv"; done)
[ "$stamps_before" = "$stamps_after" ] && ok "finished points untouched" || bad "finished points were rerun"
if python3 - "$work/full" "$work/part" <<'EOF'
import csv, sys, os
full, part = sys.argv[1:]
for d in sorted(os.listdir(full)):
    if not d.startswith("local.lr="):
        continue
    col = lambda root: [r["model_hash"] for r in csv.DictReader(open(os.path.join(root, d, "metrics.csv")))]
    a, b = col(full), col(part)
    assert len(a) == 120 and a == b, (d, len(a), len(b))
EOF
then ok "resumed sweep: the 6 model_hash columns equal the uninterrupted sweep's"; else bad "resumed sweep differs"; fi

# --- linked keys: values that change together ----------------------------------
if "$bin/fedsim" sweep "$work/base.yaml" \
    --grid 'rounds, local.lr=[[2, 0.001], [3, 0.002]]' --grid local.batch_size=10,20 \
    --jobs 2 --threads 1 --out "$work/linked" > "$work/linked.out" 2> "$work/linked.err" &&
   python3 - "$work/linked" <<'EOF'
import json, os, sys
d = sys.argv[1]
index = json.load(open(os.path.join(d, "sweep.json")))
dirs = [p["dir"] for p in index["points"]]
want = [f"rounds={r},local.lr={lr},local.batch_size={b}"
        for r, lr in ((2, "0.001"), (3, "0.002")) for b in (10, 20)]
assert dirs == want, dirs
assert index["grid"]["rounds,local.lr"] == [["2", "0.001"], ["3", "0.002"]], index["grid"]
for p in index["points"]:
    c = json.load(open(os.path.join(d, p["dir"], "config.json")))
    assert c["rounds"] == int(p["values"]["rounds"]) and \
        c["local"]["lr"] == float(p["values"]["local.lr"]), (p, c)
    rows = open(os.path.join(d, p["dir"], "metrics.csv")).read().splitlines()
    assert len(rows) == 1 + c["rounds"], (p["dir"], len(rows))
EOF
then ok "linked keys: rounds and lr change together, 2 x 2 points"
else bad "linked keys"; cat "$work/linked.out" "$work/linked.err"; fi
expect_2 sweep_linked_short "--grid rounds,local.lr: entry 2 ([3]) must be a list of 2 values, one per key" \
  "$bin/fedsim" sweep "$work/base.yaml" --grid 'rounds,local.lr=[[2, 0.1], [3]]' --out "$work/bad"
expect_2 sweep_linked_commas "linked keys take a YAML list of lists" \
  "$bin/fedsim" sweep "$work/base.yaml" --grid 'rounds,local.lr=2,3' --out "$work/bad"
expect_2 sweep_grid_newline '--grid local.lr\n: expected KEY=V1,V2' \
  "$bin/fedsim" sweep "$work/base.yaml" --grid $'local.lr\n' --out "$work/bad"
expect_2 sweep_linked_twice "--grid rounds given twice" \
  "$bin/fedsim" sweep "$work/base.yaml" --grid 'rounds,local.lr=[[2, 0.1]]' --grid rounds=4 --out "$work/bad"

# --- bad points, failed points, report -----------------------------------------
expect_2 sweep_bad_value "point local.lr=0.1,local.epochs=zero" \
  "$bin/fedsim" sweep "$work/base.yaml" --grid local.lr=0.1 --grid local.epochs=1,zero --out "$work/bad"
[ ! -e "$work/bad" ] && ok "nothing ran for a bad grid" || bad "a bad grid created $work/bad"
# A point whose data file is missing passes the config checks and fails
# when it runs.
printf 'rounds: 2\ndata: {source: csv, has_header: true, test_file: %s}\nclients: {count: 2}\n' \
    "$src/tests/fixtures/tiny.csv" > "$work/csv.yaml"
"$bin/fedsim" sweep "$work/csv.yaml" --grid "data.train_file=$src/tests/fixtures/tiny.csv,$work/missing.csv" \
    --jobs 2 --out "$work/failing" > "$work/failing.out" 2> "$work/failing.err"
code=$?
if [ "$code" = 1 ] && grep -q "1 of 2 points done, 1 failed" "$work/failing.out" &&
   grep -q "failed data.train_file=.*missing.csv: .*missing.csv" "$work/failing.out"; then
  ok "a failing point is reported, the other finishes: $(grep 'failed data' "$work/failing.out")"
else
  bad "failing point: exit $code"; cat "$work/failing.out" "$work/failing.err"
fi
if "$bin/fedsim" report "$work"/full/local.lr=* --out "$work/report" --no-plots > "$work/report.out" 2>&1 &&
   grep -q "^lr=0.001  3 " "$work/report.out" && grep -q "^lr=0.002  3 " "$work/report.out"; then
  ok "report: one row per learning rate, n = 3"
else
  bad "report"; cat "$work/report.out"
fi
exit $fail
