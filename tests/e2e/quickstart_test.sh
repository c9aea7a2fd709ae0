#!/usr/bin/env bash
# The default experiment (configs/quickstart.yaml) reaches at least 0.80 test
# accuracy (softmax regression on Fashion-MNIST; linear models reach ~0.84).
# usage: quickstart_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"
"$bin/fedsim" run configs/quickstart.yaml --out "$out/run" --quiet
acc=$(tail -1 "$out/run/metrics.csv" | cut -d, -f5)
echo "final test accuracy $acc"
python3 -c "import sys; sys.exit(0 if float('$acc') >= 0.80 else 1)" || {
  echo "FAIL: quickstart accuracy $acc < 0.80"; exit 1; }
