#!/usr/bin/env bash
# The data formats end to end (docs/data.md):
#  - files written by numpy (Debian's python3-numpy) are what `fedsim data
#    inspect` reports, and the ten-line export recipe of docs/data.md works;
#  - bad data files make `fedsim run` exit 2 with one line naming the file;
#  - a memory-mapped 1 GiB x_train.npy shared by 4 worker processes: each
#    worker pages in only the rows of the clients it trained (its log's
#    residency line, read from /proc/self/smaps), and together they page in
#    the file about once.
set -u
bin=${1:?usage: data_test.sh BIN_DIR SOURCE_DIR}
src=${2:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
py=/usr/bin/python3
if ! "$py" -c 'import numpy' 2>/dev/null; then
  echo "FAIL: $py lacks numpy (Debian's python3-numpy; scripts/setup.sh installs it)"
  exit 1
fi

# --- inspect: what numpy wrote -------------------------------------------
"$py" - "$work" <<'EOF'
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)   # NHWC, as torchvision's CIFAR10.data
y = rng.integers(0, 10, 300)
clients = np.repeat(np.arange(12), 25)[rng.permutation(300)]
clients[:40] = 12                                               # a 13th client of 40 + its share
np.savez(d + '/cifar_like.npz', x_train=x, y_train=y, x_test=x[:50], y_test=y[:50],
         client_train=clients)
EOF
"$bin/fedsim" data inspect "$work/cifar_like.npz" --json > "$work/inspect.json" 2> "$work/inspect.err"
if ! "$py" - "$work/inspect.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
want = {"source": "npz", "train_rows": 300, "test_rows": 50, "features": 3072,
        "image": [3, 32, 32], "classes": 10, "clients": 13, "partition": "natural"}
bad = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
assert not bad, bad
assert sum(r["train_labels"]) == 300 and sum(r["test_labels"]) == 50, r
assert r["client_rows"]["max"] >= 40, r
EOF
then
  echo "FAIL inspect: unexpected report"; cat "$work/inspect.json" "$work/inspect.err"; fail=1
else
  echo "ok   inspect: $(head -c 160 "$work/inspect.json")..."
fi

# The export recipe of docs/data.md, run as written (a tiny stand-in for a
# torchvision data set), then a run on its output with natural clients.
recipe=$(sed -n '/^<!-- export-recipe -->$/,/^<!-- \/export-recipe -->$/p' "$src/docs/data.md" |
         sed '1,2d;$d' | sed '$d')
if [ -z "$recipe" ]; then
  echo "FAIL recipe: no export recipe between the markers in docs/data.md"; fail=1
else
  (cd "$work" && "$py" - <<EOF
import numpy as np
class FakeSet:  # what the recipe reads: .data (N, H, W, C uint8) and .targets
    def __init__(self, n, seed):
        r = np.random.default_rng(seed)
        self.data = r.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        self.targets = list(r.integers(0, 4, n))
train, test = FakeSet(80, 1), FakeSet(20, 2)
$recipe
EOF
  ) > "$work/recipe.out" 2>&1
  if [ ! -s "$work/my_data.npz" ]; then
    echo "FAIL recipe: my_data.npz not written"; cat "$work/recipe.out"; fail=1
  else
    cat > "$work/recipe.yaml" <<EOF
rounds: 2
data: {source: npz, path: '$work/my_data.npz'}
clients: {partition: natural}
participation: {client_fraction: 0.5}
local: {augment: {crop_padding: 2, horizontal_flip: true}}
EOF
    if "$bin/fedsim" run "$work/recipe.yaml" --out "$work/recipe-run" --quiet \
        > "$work/recipe-run.out" 2>&1; then
      echo "ok   recipe: exported and ran ($(tail -1 "$work/recipe-run.out"))"
    else
      echo "FAIL recipe: the run failed"; cat "$work/recipe-run.out"; fail=1
    fi
  fi
fi

# --- bad files: exit 2, one line naming the file ---------------------------
mkdir -p "$work/bad_npy" "$work/bad_cifar" "$work/bad_leaf/train" "$work/bad_leaf/test"
"$py" - "$work" <<'EOF'
import numpy as np, sys, json
d = sys.argv[1]
np.save(d + '/bad_npy/x_train.npy', np.zeros((10, 4), np.float32))
np.save(d + '/bad_npy/y_train.npy', np.zeros(9, np.int64))            # one label short
np.save(d + '/bad_npy/x_test.npy', np.zeros((2, 4), np.float32))
np.save(d + '/bad_npy/y_test.npy', np.zeros(2, np.int64))
with open(d + '/truncated.npz', 'wb') as f:
    np.savez(f, x_train=np.zeros((10, 4)), y_train=np.zeros(10), x_test=np.zeros((2, 4)),
             y_test=np.zeros(2))
raw = open(d + '/truncated.npz', 'rb').read()
open(d + '/truncated.npz', 'wb').write(raw[:len(raw) // 2])
open(d + '/bad_cifar/data_batch_1.bin', 'wb').write(bytes(3073 * 2 + 100))
open(d + '/bad_cifar/test_batch.bin', 'wb').write(bytes(3073))
json.dump({"users": ["a"], "num_samples": [2], "user_data": {"a": {"x": [[1, 2]], "y": [0]}}},
          open(d + '/bad_leaf/train/x.json', 'w'))
json.dump({"users": ["a"], "num_samples": [1], "user_data": {"a": {"x": [[1, 2]], "y": [0]}}},
          open(d + '/bad_leaf/test/x.json', 'w'))
EOF
expect_error() {
  local name=$1 want=$2 yaml=$3
  printf '%s\n' "$yaml" > "$work/$name.yaml"
  "$bin/fedsim" run "$work/$name.yaml" --out "$work/out-$name" --quiet \
      > "$work/$name.stdout" 2> "$work/$name.stderr"
  local code=$? lines
  lines=$(wc -l < "$work/$name.stderr")
  if [ "$code" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$want" "$work/$name.stderr"; then
    echo "FAIL $name: exit $code, $lines lines, expected 2, 1 and '$want':"
    cat "$work/$name.stderr"; fail=1
  else
    echo "ok   $name: $(cat "$work/$name.stderr")"
  fi
}
expect_error npy_labels "y_train.npy: 9 labels for the 10 rows" \
  "data: {source: npy, path: '$work/bad_npy'}"
expect_error npz_truncated "truncated.npz: not a readable .npz (ZIP) archive" \
  "data: {source: npz, path: '$work/truncated.npz'}"
expect_error cifar_truncated "data_batch_1.bin: 6246 bytes, not a whole number of 3073-byte records" \
  "data: {source: cifar10, path: '$work/bad_cifar'}"
expect_error leaf_counts "x.json: num_samples[0] = 2 but user 'a' has 1 samples" \
  "data: {source: leaf, path: '$work/bad_leaf'}"
# A copy of cifar_like.npz without its client column:
"$py" -c "import numpy as np; a = dict(np.load('$work/cifar_like.npz')); a.pop('client_train'); np.savez('$work/no_clients.npz', **a)"
expect_error npz_without_clients "names no clients (npz/npy: add client_train" \
  "data: {source: npz, path: '$work/no_clients.npz'}
clients: {partition: natural}"
mkdir -p "$work/flat"
"$py" -c "
import numpy as np
for s, n in (('train', 20), ('test', 5)):
    np.save('$work/flat/x_%s.npy' % s, np.ones((n, 6), np.float32))
    np.save('$work/flat/y_%s.npy' % s, np.arange(n) % 2)"
expect_error augment_flat "local.augment crops and flips images, but data.source = npy" \
  "data: {source: npy, path: '$work/flat'}
clients: {count: 2}
local: {augment: {horizontal_flip: true}}"

# --- a memory-mapped 1 GiB x_train.npy and 4 workers ----------------------
# 8 clients of 32768 contiguous rows of 1024 float32 (128 MiB each); one
# round in which every client trains one epoch, so every row is read by
# exactly one worker.
big="$work/big"
mkdir -p "$big"
"$py" - "$big" <<'EOF'
import numpy as np, sys
d = sys.argv[1]
n, dim, clients = 262144, 1024, 8
x = np.lib.format.open_memmap(d + '/x_train.npy', mode='w+', dtype=np.float32, shape=(n, dim))
rng = np.random.default_rng(1)
block = rng.standard_normal((4096, dim), dtype=np.float32)
for i in range(0, n, 4096):
    x[i:i + 4096] = block
x.flush()
del x
np.save(d + '/y_train.npy', (np.arange(n) % 10).astype(np.int64))
np.save(d + '/client_train.npy', np.repeat(np.arange(clients), n // clients).astype(np.int32))
np.save(d + '/x_test.npy', rng.standard_normal((100, dim), dtype=np.float32))
np.save(d + '/y_test.npy', (np.arange(100) % 10).astype(np.int64))
EOF
cat > "$work/big.yaml" <<EOF
rounds: 1
data: {source: npy, path: '$big'}
clients: {partition: natural}
participation: {client_fraction: 1}
local: {epochs: 1, batch_size: 4096, lr: 0.001}
eval: {train_loss: false}
checkpoint: {every: 0}
EOF
if ! "$bin/fedsim" launch "$work/big.yaml" --workers 4 --out "$work/big-run" --quiet \
    > "$work/big.out" 2>&1; then
  echo "FAIL mmap: the launch failed"; cat "$work/big.out"; fail=1
elif ! "$py" - "$work/big-run" <<'EOF'
import glob, json, re, sys
run = sys.argv[1]
total = 262144 * 1024 * 4
per_client = total // 8
# Which clients each worker trained, from events.jsonl.
names, trained = {}, {}
for line in open(run + '/events.jsonl'):
    e = json.loads(line)
    if e['event'] in ('worker_joined', 'worker_rejoined'):
        names[e['worker']] = e['name']
    elif e['event'] == 'result_accepted':
        trained.setdefault(names[e['worker']], set()).add(e['client'])
assert sum(len(c) for c in trained.values()) == 8, trained
# Each worker paged in its clients' blocks and nothing else: within the
# page-cache granularity at each block's two edges (large folios, read-around).
edge = 4 << 20
total_resident = 0
for log in sorted(glob.glob(run + '/workers/worker-*.log')):
    name = log.rsplit('/', 1)[1][:-4]
    m = re.search(r'data: (\d+) of (\d+) bytes', open(log).read())
    assert m, f'{log}: no residency line'
    assert int(m.group(2)) == total, m.group(0)
    resident, k = int(m.group(1)), len(trained.get(name, ()))
    print(f'{name}: trained {k} clients, {resident >> 20} MiB of {total >> 20} resident')
    assert k * per_client - edge <= resident <= k * per_client + 2 * (k + 1) * edge, (name, k, resident)
    total_resident += resident
assert total_resident < total + 8 * 2 * edge, total_resident
EOF
then
  echo "FAIL mmap: residency"; cat "$work/big-run"/workers/*.log; fail=1
else
  echo "ok   mmap: $(grep -h 'resident' "$work/big-run"/workers/*.log | tr '\n' ' ')"
fi
rm -rf "$big"

exit $fail
