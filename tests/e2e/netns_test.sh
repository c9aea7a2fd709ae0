#!/usr/bin/env bash
# deploy/netns end to end: the coordinator and two workers, each in its own
# network namespace with its own address, worker 1 behind a 50 ms delay
# (tc netem, or delayline.py where the kernel has no sch_netem):
#   - a TCP handshake from worker 1 to the coordinator's address takes at
#     least the 50 ms (the delay is really on the path);
#   - compose_quickstart.yaml (first 6 rounds) run across the namespaces
#     gives the embedded run's model_hash in every row;
#   - the delayed worker delivers results in every round: round 0 starts
#     only once both workers have joined and polled for work.
# Skips (exit 0, "SKIP: ...") only without root or network namespaces.
# usage: netns_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$(cd "$2" && pwd)
skip() { echo "SKIP: $*"; exit 0; }
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip > /dev/null || skip "iproute2 (ip) is not installed"
command -v python3 > /dev/null || fail "python3 is missing (scripts/setup.sh installs it)"

# Unique per run: namespace names, and the state folder under /run.
export FEDSIM_NETNS_PREFIX=fn$(( $$ % 100000 ))
netns=$src/deploy/netns/netns.sh
ip netns add "$FEDSIM_NETNS_PREFIX-probe" 2> /dev/null || skip "cannot create network namespaces here (ip netns add failed)"
ip netns del "$FEDSIM_NETNS_PREFIX-probe"
work=$(mktemp -d /tmp/fedsim-netns.XXXXXX)
trap '"$netns" down > /dev/null 2>&1 || true; rm -rf "$work"' EXIT

# 1. The delay is on the path: connect() to a closed port on the
#    coordinator's address is refused only after a SYN out and a RST back.
"$netns" up 1 > /dev/null
"$netns" netem 1 'delay 50ms' | tee "$work/netem.log"
coord=$("$netns" addr coord)
rtt=$("$netns" exec 1 python3 - "$coord" << 'EOF'
import socket, sys, time
best = None
for _ in range(3):
    s = socket.socket()
    t = time.monotonic()
    try:
        s.connect((sys.argv[1], 9))
    except ConnectionRefusedError:
        pass
    d = time.monotonic() - t
    best = d if best is None else min(best, d)
    s.close()
print(f"{best * 1000:.1f}")
EOF
)
echo "worker 1 -> coordinator handshake: $rtt ms"
python3 -c "import sys; sys.exit(0 if float('$rtt') >= 50 else 1)" ||
  fail "handshake took $rtt ms; the 50 ms delay is not applied"
"$netns" down > /dev/null

# 2. A run across the namespaces equals the embedded run.
sed 's/^rounds: .*/rounds: 6/' "$src/configs/compose_quickstart.yaml" > "$work/netns.yaml"
(cd "$src" && "$bin/fedsim" run "$work/netns.yaml" --out "$work/embedded" --quiet > /dev/null)
(cd "$src" && deploy/netns/run.sh "$work/netns.yaml" --workers 2 --out "$work/run" \
   --bin "$bin" --netem 1='delay 50ms') > "$work/run.log" 2>&1 ||
  { cat "$work/run.log"; fail "deploy/netns/run.sh failed"; }
grep "netem\|user-space" "$work/run.log" || true
hashes() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "model_hash") c = i; next } { print $c }' "$1"; }
[ "$(hashes "$work/run/metrics.csv" | wc -l)" = 6 ] || fail "expected 6 rows"
diff <(hashes "$work/run/metrics.csv") <(hashes "$work/embedded/metrics.csv") > /dev/null ||
  fail "model_hash columns differ from the embedded run"
# Worker 1 (w1, the delayed one) joined from its own address...
w1=$(grep '"event":"worker_joined"' "$work/run/events.jsonl" | grep '"name":"w1"' |
  sed 's/.*"worker":\([0-9]*\).*/\1/')
[ -n "$w1" ] || fail "w1 never joined"
# ...and delivered in round 0 (every worker polls before it starts) and in
# later rounds. Not necessarily in every round: a round (10 tasks of about
# a millisecond and one evaluation) can end before the delayed worker's
# next poll has crossed its 50 ms link, and the other worker then takes all
# of that round's tasks.
rounds=$(grep '"event":"result_accepted"' "$work/run/events.jsonl" | grep "\"worker\":$w1[,}]" |
  sed 's/.*"round":\([0-9]*\).*/\1/' | sort -un | tr '\n' ' ' || true)
case " $rounds" in
  " 0 "?*) ;;
  *) fail "the delayed worker delivered in rounds '$rounds', expected round 0 and at least one later round" ;;
esac
echo "netns run: 6 rows equal to the embedded run; delayed worker w1 delivered in rounds $rounds"
echo "PASS"
