#!/usr/bin/env bash
# Issue 18: the README's two commands are the shortest path to what they
# promise. The first (set-up, build, run the quickstart) must build the
# programs only, never a test or benchmark source; the second must run the
# whole suite (scripts/test.sh, which .ci/run calls). Checked on the
# README's own text, with the build as a dry run in a fresh build folder.
set -u
src=${1:?usage: readme_test.sh SOURCE_DIR}
src=$(cd "$src" && pwd) || exit 2
cd "$src" || exit 2
status=0
fail() { echo "FAIL: $*"; status=1; }

# The first two ```sh blocks of the README.
blocks=$(awk '/^```sh$/{n++; inside=1; next} /^```$/{inside=0} inside && n<=2 {print n": "$0}' README.md)
run_cmd=$(sed -n 's/^1: //p' <<<"$blocks")
test_cmd=$(sed -n 's/^2: //p' <<<"$blocks")
echo "run command:  $run_cmd"
echo "test command: $test_cmd"
[[ "$run_cmd" == "scripts/setup.sh && scripts/build.sh && build/bin/fedsim run configs/quickstart.yaml" ]] ||
  fail "the README's first command changed; update this test with it"
[[ "$test_cmd" == "scripts/setup.sh && scripts/test.sh" ]] || fail "the README's second command changed"
grep -q 'scripts/setup.sh && scripts/test.sh' .ci/run || fail ".ci/run does not run the README's test command"

# What the first command's build step compiles, in a fresh build folder:
# `ninja -t commands` lists every command of the targets scripts/build.sh
# asks for, without running any.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build_step=$(grep -oE 'scripts/build.sh' <<<"$run_cmd")
[ -n "$build_step" ] || fail "no scripts/build.sh in the first command"
BUILD_DIR="$tmp/build" BUILD_ARGS="-t commands" $build_step > "$tmp/plan.txt" 2>&1 ||
  { cat "$tmp/plan.txt"; fail "listing the build's commands failed"; }
compiles=$(grep -oE " -c $src/[^ ]+" "$tmp/plan.txt" | sed "s# -c $src/##")
echo "$(wc -l <<<"$compiles") sources compiled"
for must in tools/fedsim.cc tools/fedsim_server.cc tools/fedsim_client.cc tools/fedsim_health.cc; do
  grep -qx "$must" <<<"$compiles" || fail "the run command does not build $must"
done
if grep -E '^(tests|bench)/' <<<"$compiles"; then
  fail "the run command compiles test or benchmark sources (above)"
fi
# And the test command's build does build them (scripts/test.sh: TARGETS=all).
grep -q 'TARGETS=all' scripts/test.sh || fail "scripts/test.sh does not build every target"
[ $status = 0 ] && echo "readme: ok"
exit $status
