#!/usr/bin/env bash
# The whole benchmark suite (docs/performance.md): runs every benchmark and
# its baselines, then prints the table of ratios (also written to
# RESULTS/table.md, next to the raw results).
#
#   BUILD_BENCHMARKS=ON scripts/build.sh   # once: fedsim and bench/ binaries
#   bench/setup.sh                         # once, optional: PyTorch, Flower
#   bench/run.sh [--build-dir build] [--out DIR] [--only LIST] [--smoke]
#
# LIST is a comma-separated subset of floors,aggregation,training,networks,
# e2e,scale,wire (default: all; e2e and training need floors for their floor rows). Results go to bench/results/<UTC time>/ unless --out.
# --smoke: tiny sizes and few rounds, every binary and script once except
# the Flower baseline (the ctest test bench_smoke); its numbers mean nothing.
# Baselines that are not installed are skipped with a line saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
out=""
only="floors,aggregation,training,networks,e2e,scale,wire"
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    *) echo "bench/run.sh: unknown argument '$1' (see the header of bench/run.sh)" >&2; exit 2 ;;
  esac
done
bin=$build/bin
for b in bench_aggregation bench_training bench_network bench_export_partition fedsim fedsim-client; do
  if [ ! -x "$bin/$b" ]; then
    echo "bench/run.sh: $bin/$b is missing; build with BUILD_BENCHMARKS=ON scripts/build.sh (or pass --build-dir)" >&2
    exit 1
  fi
done
if [ -z "$out" ]; then
  if [ $smoke = 1 ]; then out=$(mktemp -d /tmp/fedsim-bench-smoke.XXXXXX); else out=bench/results/$(date -u +%Y%m%dT%H%M%SZ); fi
fi
mkdir -p "$out"
[ $smoke = 1 ] && touch "$out/SMOKE"
py=bench/.venv/bin/python3
# numpy for the floors and the plain loop: bench/.venv's (PyPI wheel, with
# OpenBLAS), else the system's.
nppy=""
for p in "$py" python3 /usr/bin/python3; do
  if command -v "$p" > /dev/null && "$p" -c "import numpy" > /dev/null 2>&1; then nppy=$p; break; fi
done
want() { [[ ",$only," == *",$1,"* ]]; }
say() { echo "bench: $*" >&2; }
metrics() { python3 bench/report.py metrics "$1" "${2:-on}"; }
has_py_module() { [ -x "$py" ] && "$py" -c "import $1" > /dev/null 2>&1; }

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

if [ $smoke = 1 ]; then
  gb=(--smoke --benchmark_min_time=0.001 --benchmark_repetitions=1)
else
  # Repetitions randomly interleaved: a burst of load from elsewhere hits
  # fedsim and its baseline alike; the table takes the best repetition.
  gb=(--benchmark_min_time=0.3 --benchmark_repetitions=3
      --benchmark_enable_random_interleaving=true)
fi

if want floors; then
  say "0 floors: GEMM rate (numpy's BLAS), STREAM copy and triad bandwidth"
  if [ -n "$nppy" ]; then
    fargs=()
    [ $smoke = 1 ] && fargs=(--n 256 --repeats 1)
    "$nppy" bench/floors.py "${fargs[@]}" > "$out/gemm.jsonl"
    # Measured again at the end (bench/report.py takes the best of the two):
    # a burst of load from elsewhere must not lower the floor.
    floors_again=1
  else
    echo "skipped: no python3 with numpy (bench/setup.sh, or apt-get install python3-numpy)" > "$out/gemm.skipped"
    say "0 GEMM rate $(cat "$out/gemm.skipped")"
  fi
  "$bin/bench_aggregation" "${gb[@]}" --benchmark_filter='^stream_' \
    --benchmark_out="$out/stream.json" --benchmark_out_format=json > "$out/stream.txt"
fi

if want aggregation; then
  say "1 aggregation (K = 100 updates of d = 10^6, STREAM copy and triad)"
  "$bin/bench_aggregation" "${gb[@]}" --benchmark_out="$out/aggregation.json" \
    --benchmark_out_format=json > "$out/aggregation.txt"
fi

if want training; then
  say "2, 3 local SGD, DP-SGD (Fashion-MNIST, softmax)"
  "$bin/bench_training" "${gb[@]}" --benchmark_out="$out/training.json" \
    --benchmark_out_format=json > "$out/training.txt"
  if has_py_module torch; then
    say "2 PyTorch baseline"
    targs=(--repeats 3)
    [ $smoke = 1 ] && targs=(--repeats 1 --rows 200 --test-set --batch 10)
    for dtype in float64 float32; do
      "$py" bench/torch_sgd.py "${targs[@]}" --dtype $dtype >> "$out/torch.jsonl"
    done
  else
    echo "skipped: bench/.venv has no torch (run bench/setup.sh; it needs PyPI)" > "$out/torch.skipped"
    say "2 PyTorch baseline $(cat "$out/torch.skipped")"
  fi
fi

if want networks; then
  say "7 networks: one client's local epoch of fedau_cnn_mnist, fedfix_cnn_cifar, fedfix_lstm_shakespeare (1 thread, float32)"
  "$bin/bench_network" "${gb[@]}" --benchmark_out="$out/network.json" \
    --benchmark_out_format=json > "$out/network.txt"
  if has_py_module torch; then
    say "7 PyTorch baseline of the same epochs"
    nargs=(--repeats 3)
    [ $smoke = 1 ] && nargs=(--repeats 1 --rows 40)
    "$py" bench/torch_network.py "${nargs[@]}" > "$out/torch_network.jsonl"
  fi
  # The FedAU CNN experiment (configs/fedau_cnn_fmnist.yaml) without
  # evaluation, fedsim on 2 threads against the plain PyTorch FedAvg loop
  # on the same split and 2 threads.
  crounds=20; [ $smoke = 1 ] && crounds=3
  ccfg=$out/cnn_fedavg.yaml
  sed -e "s/^rounds: .*/rounds: $crounds/" -e "s/^name: .*/name: bench_cnn_fedavg/" \
    -e "s/^  every: .*/  every: 1000000\n  train_loss: false/" configs/fedau_cnn_fmnist.yaml > "$ccfg"
  say "7 FedAU CNN FedAvg, $crounds rounds, evaluation off: fedsim, then the plain PyTorch loop"
  "$bin/fedsim" run "$ccfg" --out "$out/cnn_fedavg" --quiet > /dev/null
  echo "{\"fedsim\": $(metrics "$out/cnn_fedavg" off)}" > "$out/cnn_fedavg.json"
  if has_py_module torch; then
    "$bin/bench_export_partition" "$ccfg" "$out/cnn_partition.txt"
    pargs=(--partition "$out/cnn_partition.txt" --rounds $crounds --threads 2 --no-eval
           --model fedau_cnn_mnist --max-steps 5 --dtype float32)
    [ $smoke = 1 ] && pargs+=(--train-rows 2000)
    "$py" bench/plain_quickstart.py --backend torch "${pargs[@]}" > "$out/cnn_torch_loop.json"
    # The same rounds as a Flower simulation (not in --smoke runs: starting
    # Ray alone takes most of a minute).
    if [ $smoke = 0 ] && has_py_module flwr; then
      say "7 FedAU CNN FedAvg, $crounds rounds, evaluation off: Flower simulation"
      if ! "$py" bench/flower_quickstart.py --partition "$out/cnn_partition.txt" \
           --rounds $crounds --no-eval --model fedau_cnn_mnist --max-steps 5 --dtype float32 \
           --out "$out/cnn_flower.json" > "$out/cnn_flower.log" 2>&1; then
        say "7 Flower failed: $(tail -1 "$out/cnn_flower.log")"
      fi
    fi
  else
    echo "skipped: bench/.venv has no torch (run bench/setup.sh; it needs PyPI)" > "$out/torch_network.skipped"
    say "7 PyTorch baseline $(cat "$out/torch_network.skipped")"
  fi
fi

# A quickstart config with fewer rounds (configs/quickstart.yaml otherwise),
# THREADS runtime threads (default 2), evaluation on (default) or off (only
# after the last round, which bench/report.py then leaves out). With
# evaluation on, train_loss reads every training row, as the plain loops
# and Flower do (the default config samples 10,000: eval.train_rows).
quickstart_config() {  # ROUNDS FILE [THREADS] [on|off]
  local ev=(-e "s/^  every: .*/  every: 1/" -e "s/^  train_loss: .*/  train_loss: true\n  train_rows: 0/")
  [ "${4:-on}" = off ] && ev=(-e "s/^  every: .*/  every: 1000000/" -e "s/^  train_loss: .*/  train_loss: false/")
  sed -e "s/^rounds: .*/rounds: $1/" -e "s/^name: .*/name: bench_quickstart/" \
    -e "s/^  threads: .*/  threads: ${3:-2}/" "${ev[@]}" configs/quickstart.yaml > "$2"
}

# Network namespaces give the wire benchmark a loopback of its own.
netns=""
if want wire && [ "$(id -u)" = 0 ] && command -v ip > /dev/null; then
  ns=fedsim-bench-$$
  if ip netns add "$ns" 2> /dev/null; then
    netns=$ns
    trap 'ip netns del "$netns" 2> /dev/null || true' EXIT
    ip netns exec "$netns" ip link set lo up
  fi
fi
lo_tx() { ip netns exec "$netns" cat /sys/class/net/lo/statistics/tx_bytes; }
in_ns() { if [ -n "$netns" ]; then ip netns exec "$netns" "$@"; else "$@"; fi; }

if want e2e || want wire; then
  rounds=30 workers=8 flower_rounds=5
  [ $smoke = 1 ] && rounds=3 workers=2 flower_rounds=2
  cfg=$out/quickstart_$rounds.yaml
  quickstart_config $rounds "$cfg"
fi

if want e2e; then
  say "4 quickstart, $rounds rounds: embedded (2 and 1 threads, evaluation on and off), then launch --workers $workers"
  : > "$out/quickstart.jsonl"
  for threads in 2 1; do
    for ev in on off; do
      qcfg=$out/quickstart_${rounds}_t${threads}_$ev.yaml
      quickstart_config $rounds "$qcfg" $threads $ev
      "$bin/fedsim" run "$qcfg" --out "$out/e2e_t${threads}_$ev" --quiet > /dev/null
      echo "{\"threads\": $threads, \"eval\": \"$ev\", \"metrics\": $(metrics "$out/e2e_t${threads}_$ev" $ev)}" >> "$out/quickstart.jsonl"
    done
  done
  emb=$(metrics "$out/e2e_t2_on")
  [ -n "$netns" ] && tx0=$(lo_tx)
  in_ns "$bin/fedsim" launch "$cfg" --workers $workers --out "$out/e2e_launch" --quiet > /dev/null
  [ -n "$netns" ] && tx1=$(lo_tx)
  lau=$(metrics "$out/e2e_launch")
  # The plain loops on fedsim's own split.
  "$bin/bench_export_partition" "$cfg" "$out/partition.txt"
  pargs=(--partition "$out/partition.txt" --rounds $rounds --threads 2)
  [ $smoke = 1 ] && pargs+=(--train-rows 2000)
  : > "$out/plain.jsonl"
  backends=()
  if [ -n "$nppy" ]; then backends+=(numpy); else
    echo "skipped: no python3 with numpy (bench/setup.sh, or apt-get install python3-numpy)" > "$out/numpy.skipped"
    say "4 numpy loop $(cat "$out/numpy.skipped")"
  fi
  if has_py_module torch; then backends+=(torch); else
    echo "skipped: bench/.venv has no torch (run bench/setup.sh; it needs PyPI)" > "$out/torch_loop.skipped"
    say "4 PyTorch loop $(cat "$out/torch_loop.skipped")"
  fi
  for backend in "${backends[@]}"; do
    p=$nppy; [ "$backend" = torch ] && p=$py
    for dtype in float64 float32; do
      for ev in on off; do
        say "4 plain $backend loop, $dtype, evaluation $ev"
        extra=(); [ $ev = off ] && extra=(--no-eval)
        "$p" bench/plain_quickstart.py --backend "$backend" --dtype $dtype "${pargs[@]}" "${extra[@]}" >> "$out/plain.jsonl"
      done
    done
  done
  flw=null flw_off=null
  flower_skipped=null
  if [ $smoke = 1 ]; then
    flower_skipped='"skipped in --smoke runs (starting Ray alone takes most of a minute)"'
  elif has_py_module flwr && has_py_module torch; then
    for ev in on off; do
      say "4 Flower simulation, $flower_rounds rounds, evaluation $ev (same split, model, hyper-parameters)"
      extra=(); [ $ev = off ] && extra=(--no-eval)
      if "$py" bench/flower_quickstart.py --partition "$out/partition.txt" \
           --rounds $flower_rounds --out "$out/flower_$ev.json" "${extra[@]}" \
           > "$out/flower_$ev.log" 2>&1; then
        if [ $ev = on ]; then flw=$(cat "$out/flower_on.json"); else flw_off=$(cat "$out/flower_off.json"); fi
      else
        flower_skipped="\"failed: see $out/flower_$ev.log\""
        say "4 Flower failed: $(tail -1 "$out/flower_$ev.log")"
      fi
    done
  else
    flower_skipped='"skipped: bench/.venv has no flwr or torch (run bench/setup.sh; it needs PyPI)"'
    say "4 Flower $flower_skipped"
  fi
  echo "{\"workers\": $workers, \"embedded\": $emb, \"launch\": $lau, \"flower\": $flw, \"flower_off\": $flw_off, \"flower_skipped\": $flower_skipped}" > "$out/e2e.json"
fi

if want wire; then
  if [ -z "$netns" ]; then
    echo '{"skipped": "needs root and network namespaces (ip netns) for a loopback of its own"}' > "$out/wire.json"
    say "6 wire skipped: needs root and ip netns"
  else
    say "6 wire: bytes on a loopback of its own"
    if ! want e2e; then
      tx0=$(lo_tx)
      in_ns "$bin/fedsim" launch "$cfg" --workers $workers --out "$out/e2e_launch" --quiet > /dev/null
      tx1=$(lo_tx)
    fi
    short=$(( rounds / 3 )); [ $short -lt 1 ] && short=1
    scfg=$out/quickstart_$short.yaml
    quickstart_config $short "$scfg"
    tx2=$(lo_tx)
    in_ns "$bin/fedsim" launch "$scfg" --workers $workers --out "$out/wire_short" --quiet > /dev/null
    tx3=$(lo_tx)
    python3 - "$out" $rounds $short $((tx1 - tx0)) $((tx3 - tx2)) <<'EOF' > "$out/wire.json"
import json, sys
sys.path.insert(0, "bench")
import report
out, rl, rs, bl, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
long_m = report.run_metrics(out + "/e2e_launch")
short_m = report.run_metrics(out + "/wire_short")
per_round = (bl - bs) / (rl - rs) if rl > rs else bl / rl
payload = (long_m["payload_bytes"] - short_m["payload_bytes"]) / (rl - rs) if rl > rs else long_m["payload_bytes_per_round"]
print(json.dumps({"rounds_long": rl, "rounds_short": rs, "bytes_long": bl, "bytes_short": bs,
                  "per_round_bytes": per_round, "payload_per_round": payload,
                  "total_ratio": bl / long_m["payload_bytes"]}))
EOF
  fi
fi

if want scale; then
  rows_per_client=20 dim=20 srounds=2000
  sizes="1000 10000 100000 1000000"
  [ $smoke = 1 ] && sizes="100 1000" srounds=5
  : > "$out/scale.jsonl"
  for n in $sizes; do
    data=$out/scale_data_$n
    python3 bench/scale_data.py "$data" $((n * rows_per_client)) $dim
    frac=$(python3 -c "print(100 / $n)")
    # Three times: as configured by default (checkpoint.every 1 with
    # min_interval_s 1: at most one fsynced checkpoint a second), with at
    # most one in 10 s and with checkpoints off (the round's computation
    # alone).
    for ckpt in 1 10s 0; do
      case $ckpt in
        10s) ckpt_yaml="{every: 1, min_interval_s: 10}" ;;
        *) ckpt_yaml="{every: $ckpt}" ;;
      esac
      say "5 scale: FedAU, logistic regression, N = $n clients, cohort 100, $srounds rounds, checkpoint $ckpt_yaml"
      scfg=$out/scale_${n}_ckpt$ckpt.yaml
      cat > "$scfg" <<EOF
name: bench_scale_$n
seed: 1
rounds: $srounds
data: {source: idx, path: $data}
clients: {count: $n, partition: iid}
model: {objective: logistic}
participation: {model: uniform, client_fraction: $frac}
algorithm: {name: fedau, server_lr: 1.0}
local: {max_steps: 5, batch_size: 16, lr: 0.05}
eval: {every: $srounds, train_loss: false}
runtime: {threads: 2}
checkpoint: $ckpt_yaml
EOF
      run=$out/scale_run_${n}_ckpt$ckpt
      /usr/bin/time -f "%M" -o "$run.rss" "$bin/fedsim" run "$scfg" --out "$run" --quiet > /dev/null
      python3 -c "
import json, sys
sys.path.insert(0, 'bench')
import report
m = report.run_metrics(sys.argv[1])
rss = int(open(sys.argv[1] + '.rss').read().split()[-1])
# float32 features, float64 label, int64 row index
data = $rows_per_client * ($dim * 4 + 8 + 8)
print(json.dumps({'clients': $n, 'checkpoint': '$ckpt', 'rounds': m['rounds'],
                  'per_round_s': m['per_round_s'], 'max_rss_kb': rss,
                  'data_bytes_per_client': data}))
" "$run" >> "$out/scale.jsonl"
    done
    rm -rf "$data"
  done
fi

if [ "${floors_again:-0}" = 1 ]; then
  say "0 floors again: GEMM rate"
  "$nppy" bench/floors.py "${fargs[@]}" >> "$out/gemm.jsonl"
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
echo
cat "$out/machine.txt"
echo "results: $out"
echo
python3 bench/report.py table "$out"
[ $smoke = 1 ] && rm -rf "$out"
exit 0
