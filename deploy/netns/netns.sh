#!/usr/bin/env bash
# Network namespaces as test hosts for fedsim on one machine: the
# coordinator and each worker get their own network stack and address on a
# private bridge, with optional netem delay and loss per worker. Nothing is
# added to the machine's own namespace: the bridge lives in a namespace of
# its own, so no traffic can leave the machine. Needs root and iproute2
# (ip, tc; netem needs the kernel's sch_netem).
#
#   netns.sh up N               coordinator + N workers (P-coord, P-w1..P-wN)
#   netns.sh netem I 'delay 50ms loss 1%'
#                               netem on worker I's interface (what it
#                               sends; its round trip grows by the delay);
#                               without sch_netem in the kernel, the same
#                               delay and loss in user space (delayline.py;
#                               FEDSIM_NETEM=tc|userspace forces one)
#   netns.sh addr coord|I       the address of the coordinator or worker I
#   netns.sh exec coord|I CMD...  runs CMD in that namespace
#   netns.sh list               the namespaces of this prefix
#   netns.sh down               deletes them (and with them every interface)
#
# Addresses: 10.250.0.1 the coordinator, 10.250.0.(10+I) worker I, /24,
# on bridge br0 inside P-br. Environment: FEDSIM_NETNS_PREFIX (P, default
# fedsim; at most 8 characters, so that interface names fit), and
# FEDSIM_NETNS_SUBNET (default 10.250.0, the first three octets).
set -euo pipefail

prefix=${FEDSIM_NETNS_PREFIX:-fedsim}
subnet=${FEDSIM_NETNS_SUBNET:-10.250.0}
if [ ${#prefix} -gt 8 ] || ! [[ $prefix =~ ^[a-z][a-z0-9]*$ ]]; then
  echo "netns.sh: FEDSIM_NETNS_PREFIX = '$prefix'; must be [a-z][a-z0-9]*, at most 8 characters" >&2
  exit 2
fi
br_ns=$prefix-br
here=$(cd "$(dirname "$0")" && pwd)
# Helper processes (delayline.py) and their logs.
state=/run/fedsim-netns/$prefix
mkdir -p "$state"

die() { echo "netns.sh: $*" >&2; exit 1; }
ns_of() {
  case $1 in
    coord) echo "$prefix-coord" ;;
    *[!0-9]* | '') die "'$1': expected 'coord' or a worker number" ;;
    *) echo "$prefix-w$1" ;;
  esac
}
addr_of() {
  case $1 in
    coord) echo "$subnet.1" ;;
    *) echo "$subnet.$((10 + $1))" ;;
  esac
}

# attach NAME INDEX: a namespace with one veth (eth0) on the bridge.
attach() {
  local name=$1 id=$2 ns host_if peer_if
  ns=$(ns_of "$name")
  host_if=$prefix-$id
  peer_if=$prefix-${id}b
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "$host_if" type veth peer name "$peer_if"
  ip link set "$host_if" netns "$ns"
  ip link set "$peer_if" netns "$br_ns"
  ip -n "$ns" link set "$host_if" name eth0
  ip -n "$ns" addr add "$(addr_of "$name")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$br_ns" link set "$peer_if" master br0
  ip -n "$br_ns" link set "$peer_if" up
}

cmd=${1:-}
shift || true
case $cmd in
  up)
    n=${1:?usage: netns.sh up N}
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] ||
      die "up $n: N must be in [1, 200]"
    [ "$(id -u)" -eq 0 ] || die "needs root"
    if ip netns list | grep -q "^$br_ns\b"; then
      die "namespaces with prefix '$prefix' exist; run 'netns.sh down' first"
    fi
    ip netns add "$br_ns"
    ip -n "$br_ns" link set lo up
    ip -n "$br_ns" link add br0 type bridge
    ip -n "$br_ns" link set br0 up
    attach coord c
    for i in $(seq 1 "$n"); do attach "$i" "w$i"; done
    echo "netns.sh: coordinator $(addr_of coord) in $(ns_of coord); workers 1..$n at $subnet.11..$subnet.$((10 + n))"
    ;;
  netem)
    i=${1:?usage: netns.sh netem I 'delay 50ms loss 1%'}
    shift
    [ $# -ge 1 ] || die "netem $i: give netem parameters, e.g. 'delay 50ms loss 1%'"
    ns=$(ns_of "$i")
    mode=${FEDSIM_NETEM:-auto}
    # shellcheck disable=SC2068  # the parameters are tc words
    if [ "$mode" != userspace ] &&
        ip netns exec "$ns" tc qdisc replace dev eth0 root netem $@ 2> "$state/tc.err"; then
      exit 0
    fi
    if [ "$mode" = tc ] || ! grep -q "qdisc kind is unknown" "$state/tc.err"; then
      cat "$state/tc.err" >&2
      die "netem $i: tc netem failed"
    fi
    # No sch_netem in this kernel: the same delay and loss in user space
    # (delayline.py), on a TAP link that replaces the worker's veth.
    delay_ms=0 loss=0
    set -- $@
    while [ $# -gt 0 ]; do
      case $1 in
        delay) delay_ms=$(awk -v d="$2" 'BEGIN {
                 v = d + 0; if (d ~ /us$/) v /= 1000; else if (d ~ /ms$/) v += 0;
                 else if (d ~ /s$/) v *= 1000; print v }'); shift 2 ;;
        loss) loss=$(awk -v l="${2%\%}" 'BEGIN { print l / 100 }'); shift 2 ;;
        *) die "netem $i: '$1' is not supported without sch_netem (delay D, loss P% only)" ;;
      esac
    done
    ip -n "$ns" link del eth0
    python3 "$here/delayline.py" --ns "$ns" --addr "$(addr_of "$i")/24" \
      --bridge-ns "$br_ns" --bridge br0 --port "$prefix-w${i}b" \
      --delay-ms "$delay_ms" --loss "$loss" > "$state/w$i.delayline.log" 2>&1 &
    echo $! > "$state/w$i.delayline.pid"
    for _ in $(seq 1 100); do
      grep -q ready "$state/w$i.delayline.log" && break
      kill -0 "$(cat "$state/w$i.delayline.pid")" 2> /dev/null ||
        { cat "$state/w$i.delayline.log" >&2; die "netem $i: delayline.py failed"; }
      sleep 0.05
    done
    echo "netns.sh: worker $i: no sch_netem in this kernel; user-space delay ${delay_ms} ms, loss $loss (delayline.py)"
    ;;
  addr)
    addr_of "${1:?usage: netns.sh addr coord|I}"
    ;;
  exec)
    target=${1:?usage: netns.sh exec coord|I CMD...}
    shift
    exec ip netns exec "$(ns_of "$target")" "$@"
    ;;
  list)
    ip netns list | awk '{print $1}' | grep "^$prefix-\(br\|coord\|w[0-9]*\)$" || true
    ;;
  down)
    for pidfile in "$state"/*.pid; do
      [ -f "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2> /dev/null || true
      rm -f "$pidfile"
    done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-\(br\|coord\|w[0-9]*\)$" || true); do
      # Processes left in a namespace would keep its interfaces alive.
      pids=$(ip netns pids "$ns" 2> /dev/null || true)
      [ -n "$pids" ] && kill $pids 2> /dev/null || true
      ip netns del "$ns"
    done
    rm -rf "$state"
    rmdir /run/fedsim-netns 2> /dev/null || true
    ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
