#!/usr/bin/env bash
# Runs one experiment with the coordinator and each worker in its own
# network namespace (netns.sh), then removes the namespaces.
#
#   deploy/netns/run.sh CONFIG --workers N [--out DIR] [--bin DIR]
#                       [--netem I='delay 50ms loss 1%']...
#
#   --workers N   worker processes, one namespace each (min_workers = N)
#   --out DIR     the run directory (default runs/netns); worker logs go to
#                 DIR/workers/wI.log, the coordinator's to DIR/coordinator.log
#   --bin DIR     where fedsim-server and fedsim-client are (default build/bin)
#   --netem I=ARGS  netem for worker I (repeatable), e.g. 2='delay 50ms loss 1%'
#
# Exit code: the coordinator's (0: the run finished), or 1 if a worker
# failed. Needs root. FEDSIM_NETNS_PREFIX names the namespaces (netns.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
netns=$here/netns.sh

config=""
workers=""
out=runs/netns
bin=build/bin
netem=()
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --workers=*) workers=${1#*=}; shift ;;
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --bin) bin=$2; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --netem) netem+=("$2"); shift 2 ;;
    --netem=*) netem+=("${1#*=}"); shift ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$config" ] || { echo "run.sh: one CONFIG only" >&2; exit 2; }
       config=$1; shift ;;
  esac
done
[ -n "$config" ] && [ -n "$workers" ] || {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
for b in fedsim-server fedsim-client; do
  [ -x "$bin/$b" ] || { echo "run.sh: $bin/$b not found (build it, or pass --bin)" >&2; exit 2; }
done
bin=$(cd "$bin" && pwd)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  "$netns" down
}
trap cleanup EXIT
"$netns" up "$workers"
for spec in "${netem[@]}"; do
  i=${spec%%=*}
  # shellcheck disable=SC2086  # netem parameters are separate words
  "$netns" netem "$i" ${spec#*=}
  echo "run.sh: worker $i: netem ${spec#*=}"
done

mkdir -p "$out/workers"
coord=$("$netns" addr coord)
"$netns" exec coord "$bin/fedsim-server" --config "$config" --out "$out" \
  --listen "$coord:50051" --min_workers "$workers" --quiet \
  > "$out/coordinator.log" 2>&1 &
server=$!
pids+=("$server")
workers_pids=()
for i in $(seq 1 "$workers"); do
  "$netns" exec "$i" "$bin/fedsim-client" --server "$coord:50051" --name "w$i" \
    > "$out/workers/w$i.log" 2>&1 &
  workers_pids+=($!)
  pids+=($!)
done

status=0
wait "$server" || status=$?
# A failed run leaves its workers polling nobody: stop them now.
if [ "$status" -ne 0 ]; then
  for p in "${workers_pids[@]}"; do kill "$p" 2> /dev/null || true; done
fi
for i in $(seq 1 "$workers"); do
  if ! wait "${workers_pids[$((i - 1))]}"; then
    echo "run.sh: worker w$i failed (see $out/workers/w$i.log)" >&2
    [ "$status" -eq 0 ] && status=1
  fi
done
pids=()
cat "$out/coordinator.log"
exit "$status"
