#!/usr/bin/env bash
# Issue 19: the field table of docs/config.md is the schema's, generated
# from the options on config.proto's fields (`fedsim config --fields`); it
# fails when the doc and the proto differ. Regenerate the table with
#   tools/update_config_doc.sh
# Also: `fedsim config CONFIG` prints a run's config.json, and refuses a bad
# config with one line and exit 2.
set -u
bin=${1:?usage: config_doc_test.sh BIN_DIR SOURCE_DIR}
src=${2:?usage: config_doc_test.sh BIN_DIR SOURCE_DIR}
status=0
fail() { echo "FAIL: $*"; status=1; }

doc=$src/docs/config.md
block=$(sed -n '/<!-- BEGIN GENERATED: fedsim config --fields -->/,/<!-- END GENERATED -->/p' "$doc" |
        sed '1d;$d')
[ -n "$block" ] || fail "docs/config.md has no generated field table"
if ! diff <(printf '%s\n' "$block") <("$bin/fedsim" config --fields) > /tmp/config_doc_diff.$$; then
  cat /tmp/config_doc_diff.$$
  fail "docs/config.md's field table differs from config.proto (run tools/update_config_doc.sh)"
fi
rm -f /tmp/config_doc_diff.$$
rows=$(printf '%s\n' "$block" | grep -c '^| `')
echo "docs/config.md: $rows keys, as config.proto declares them"

# fedsim config CONFIG: the resolved config.
out=$("$bin/fedsim" config "$src/configs/quickstart.yaml") || fail "fedsim config quickstart.yaml failed"
grep -q '"dirichlet_alpha": 0.5' <<<"$out" || fail "fedsim config does not show the defaults"
bad=$(mktemp)
printf 'clients: {dirichlet_alpha: 0}\n' > "$bad"
err=$("$bin/fedsim" config "$bad" 2>&1); rc=$?
rm -f "$bad"
[ "$rc" = 2 ] || fail "a bad config: exit $rc, expected 2"
[ "$err" = "fedsim: $bad: config: clients.dirichlet_alpha = 0; must be > 0" ] ||
  fail "a bad config: '$err'"
exit $status
