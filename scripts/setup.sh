#!/usr/bin/env bash
# Installs what fedsim needs on Debian 12 (as root), skipping what is present,
# puts TensorBoard (PyPI) into .venv/ for the test that reads fedsim's event
# files back (optional: skipped when PyPI cannot be reached), and fetches Fashion-MNIST from Debian's dataset-fashion-mnist package into
# third_party/data/fashion-mnist, checking the SHA-256 sums of DATA.md, with
# uncompressed copies next to the .gz files (checked too; faster start-up).
#
#   scripts/setup.sh            packages + data
#   scripts/setup.sh --no-data  packages only
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ cmake ninja-build pkg-config make
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libeigen3-dev libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev libssl-dev libzip-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  ca-certificates openssl testssl.sh python3 gnuplot-nox iproute2 procps debootstrap
  python3-matplotlib python3-venv
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages and not root; run as root or install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
else
  echo "setup: all packages present"
fi

# TensorBoard's reader for tests/report/tensorboard_test.py: a venv that
# also sees Debian's packages. Optional: without it that test is skipped.
if [ ! -x .venv/bin/python3 ] || ! .venv/bin/python3 -c 'import tensorboard' 2>/dev/null; then
  echo "setup: installing tensorboard (PyPI) into .venv/"
  if ! { /usr/bin/python3 -m venv --system-site-packages .venv &&
         timeout 600 .venv/bin/pip install --quiet --disable-pip-version-check tensorboard; } > /dev/null 2>&1; then
    echo "setup: could not install tensorboard into .venv/ (no PyPI?); its test will be skipped" >&2
  fi
else
  echo "setup: tensorboard present in .venv/"
fi

[ "${1:-}" = "--no-data" ] && exit 0

# Fashion-MNIST (MIT, Zalando SE) from Debian's dataset-fashion-mnist.
data=third_party/data/fashion-mnist
sums="b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz"
# Uncompressed copies next to the .gz files: the IDX loader prefers them,
# and inflating 26 MB was half of a run's start-up (docs/performance.md).
raw_sums="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888  train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9  train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b  t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34  t10k-labels-idx1-ubyte"
unpack() {
  (cd "$data" && echo "$raw_sums" | sha256sum --check --quiet --status 2> /dev/null) && return 0
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gunzip -c "$data/$f.gz" > "$data/$f.tmp" && mv "$data/$f.tmp" "$data/$f"
  done
  if ! (cd "$data" && echo "$raw_sums" | sha256sum --check --quiet); then
    echo "setup: the uncompressed Fashion-MNIST copies in $data do not match (see scripts/setup.sh)" >&2
    exit 1
  fi
}
if [ -d "$data" ] && (cd "$data" && echo "$sums" | sha256sum --check --quiet --status); then
  unpack
  echo "setup: Fashion-MNIST present and verified in $data"
  exit 0
fi
echo "setup: fetching Fashion-MNIST (Debian package dataset-fashion-mnist)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download dataset-fashion-mnist > /dev/null 2>&1); then
  [ "$(id -u)" -eq 0 ] && apt-get update -qq
  (cd "$tmp" && apt-get download dataset-fashion-mnist > /dev/null) || {
    echo "setup: cannot download dataset-fashion-mnist from Debian's archive" >&2
    exit 1
  }
fi
dpkg-deb --fsys-tarfile "$tmp"/dataset-fashion-mnist_*_all.deb |
  tar -x --no-same-owner -C "$tmp" ./usr/share/datasets/fashion-mnist
mkdir -p "$data"
cp "$tmp"/usr/share/datasets/fashion-mnist/*.gz "$data"/
if ! (cd "$data" && echo "$sums" | sha256sum --check --quiet); then
  echo "setup: Fashion-MNIST checksum mismatch in $data (see DATA.md)" >&2
  exit 1
fi
unpack
echo "setup: Fashion-MNIST verified in $data"
