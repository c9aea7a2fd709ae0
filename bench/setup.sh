#!/usr/bin/env bash
# Installs the Python baselines of bench/ into bench/.venv (PyPI), never
# needed by fedsim, its build or its tests:
#   - PyTorch on CPU (the local-SGD baseline, bench/torch_sgd.py);
#   - Flower (flwr) with its simulation extra (Ray), the end-to-end baseline
#     (bench/flower_quickstart.py).
# Each is optional: what cannot be installed is reported on one line and
# bench/run.sh then skips that baseline, saying so.
#
#   bench/setup.sh
#
# PyTorch: when TORCH_INDEX_URL names a CPU-only wheel index that answers,
# torch comes from there (a few hundred MB); otherwise from PyPI, whose
# Linux wheel also pulls the CUDA runtime packages (a few GB; the GPU is
# never used).
set -uo pipefail
cd "$(dirname "$0")"
venv=.venv
log=$venv/setup.log

if [ ! -x $venv/bin/python3 ]; then
  /usr/bin/python3 -m venv $venv || {
    echo "bench/setup: cannot create $venv (python3-venv missing? scripts/setup.sh installs it)" >&2
    exit 1
  }
fi
: > "$log"
pip() { timeout 3600 $venv/bin/pip install --disable-pip-version-check --quiet "$@" >> "$log" 2>&1; }
has() { $venv/bin/python3 -c "import $1" > /dev/null 2>&1; }

pip --upgrade pip || true

if has torch; then
  echo "bench/setup: torch present in bench/$venv"
else
  ok=0
  if [ -n "${TORCH_INDEX_URL:-}" ] &&
     timeout 15 $venv/bin/python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=10)" \
       "$TORCH_INDEX_URL" > /dev/null 2>&1; then
    echo "bench/setup: installing torch from TORCH_INDEX_URL"
    pip torch --index-url "$TORCH_INDEX_URL" && ok=1
  fi
  if [ $ok = 0 ]; then
    echo "bench/setup: installing torch from PyPI (large: includes the CUDA runtime wheels)"
    pip torch && ok=1
  fi
  [ $ok = 1 ] || echo "bench/setup: could not install torch (no PyPI, or no wheel for this Python); the PyTorch baseline will be skipped (see bench/$log)" >&2
fi

if has flwr && has ray; then
  echo "bench/setup: flwr and ray present in bench/$venv"
else
  echo "bench/setup: installing flwr[simulation] (Flower with Ray)"
  if ! pip "flwr[simulation]"; then
    echo "bench/setup: could not install flwr[simulation]; trying flwr alone" >&2
    pip flwr || echo "bench/setup: could not install flwr; the Flower baseline will be skipped (see bench/$log)" >&2
  fi
fi
has numpy || pip numpy || true

for m in torch flwr ray numpy; do
  v=$($venv/bin/python3 -c "import $m; print($m.__version__)" 2>/dev/null) || v="not installed"
  echo "bench/setup: $m $v"
done
