#!/usr/bin/env bash
# Rewrites the generated field table of docs/config.md from config.proto
# (`fedsim config --fields`), between its BEGIN/END GENERATED markers.
# tests/e2e/config_doc_test.sh fails until the table matches.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/bin}
doc=$root/docs/config.md
table=$(mktemp)
trap 'rm -f "$table"' EXIT
"$bin/fedsim" config --fields > "$table"
python3 - "$doc" "$table" <<'PY'
import sys
doc, table = sys.argv[1], sys.argv[2]
s = open(doc).read()
begin = "<!-- BEGIN GENERATED: fedsim config --fields -->\n"
end = "<!-- END GENERATED -->"
a = s.index(begin) + len(begin)
b = s.index(end)
open(doc, "w").write(s[:a] + open(table).read() + s[b:])
PY
echo "docs/config.md: field table rewritten"
