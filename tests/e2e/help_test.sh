#!/usr/bin/env bash
# Issue 18: every binary and subcommand answers --help (and -h) with its
# usage and flags on stdout, exit 0, and names no absolute path (no build
# machine's source folder, no container path).
set -u
bin=${1:?usage: help_test.sh BIN_DIR}
status=0
fail() { echo "FAIL: $*"; status=1; }

check() {  # check NAME EXPECTED_WORD COMMAND...
  local name=$1 word=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  [ "$rc" = 0 ] || fail "$name: exit $rc"
  grep -q '^usage' <<<"$out" || fail "$name: no usage line"
  grep -q -- "$word" <<<"$out" || fail "$name: does not mention $word"
  # An absolute path: a slash that starts a word (after a blank, a quote,
  # '=' or '(') and is followed by a name.
  if grep -nE "(^|[[:space:]\"'=(])/[[:alnum:]_.]" <<<"$out"; then
    fail "$name: names an absolute path"
  fi
  grep -q "No flags matched" <<<"$out" && fail "$name: abseil's 'No flags matched'"
  echo "ok: $name"
}

for h in --help -h; do
  check "fedsim $h" "fedsim run" "$bin/fedsim" $h
  check "fedsim run $h" "--threads" "$bin/fedsim" run $h
  check "fedsim launch $h" "--workers" "$bin/fedsim" launch $h
  check "fedsim privacy $h" "--sampling-rate" "$bin/fedsim" privacy $h
  check "fedsim report $h" "RUN_DIR" "$bin/fedsim" report $h
  check "fedsim config $h" "--fields" "$bin/fedsim" config $h
  check "fedsim data $h" "inspect" "$bin/fedsim" data $h
  check "fedsim sweep $h" "--grid" "$bin/fedsim" sweep $h
  check "fedsim-server $h" "--config" "$bin/fedsim-server" $h
  check "fedsim-client $h" "--server" "$bin/fedsim-client" $h
  check "fedsim-health $h" "--addr" "$bin/fedsim-health" $h
done
check "fedsim help launch" "--auth" "$bin/fedsim" help launch
check "fedsim help" "fedsim privacy" "$bin/fedsim" help
# Help wins over other arguments, and does not run anything.
check "fedsim run CONFIG --help" "--resume" "$bin/fedsim" run /nonexistent.yaml --help
check "fedsim-server --config X --help" "--listen" "$bin/fedsim-server" --config /nonexistent.yaml --help

# Every flag a binary defines is in its help.
for b in fedsim-server fedsim-client fedsim-health; do
  src=$(dirname "$0")/../../tools/${b//-/_}.cc
  for flag in $(grep -oE '^ABSL_FLAG\([^,]+, [a-z_0-9]+' "$src" | sed 's/.*, //'); do
    "$bin/$b" --help | grep -q -- "--$flag=" || fail "$b --help lacks --$flag"
  done
done
src=$(dirname "$0")/../../tools/fedsim.cc
for flag in $(grep -oE '^ABSL_FLAG\([^,]+, [a-z_0-9]+' "$src" | sed 's/.*, //'); do
  { "$bin/fedsim" run --help; "$bin/fedsim" launch --help; } | grep -q -- "--$flag=" ||
    fail "fedsim run/launch --help lacks --$flag"
done
exit $status
