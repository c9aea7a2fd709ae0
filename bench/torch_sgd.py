#!/usr/bin/env python3
"""Benchmark 2's PyTorch baseline (docs/performance.md).

The same epoch as bench_training's local_sgd/B: softmax regression on the
first 6000 rows of Fashion-MNIST's training set (pixels / 255), zero
initial parameters, plain SGD with lr 0.05, mini-batches of B in a fresh
random order, the last partial batch kept, on one CPU thread. Written the
way the PyTorch tutorials write it (nn.Linear, F.cross_entropy,
torch.optim.SGD, indexing a tensor for each batch; a DataLoader would only
add overhead). float64 by default, like fedsim; --dtype float32 for
PyTorch's usual precision.

Prints one JSON object per line: {"name": "torch_sgd/B", "dtype": ...,
"samples_per_s": best of --repeats epochs after one warm-up epoch}. Time is
the process's CPU time, as Google Benchmark's items_per_second for
bench_training: on a shared, busy machine it leaves out the time the
process waits for a core.

  bench/.venv/bin/python3 bench/torch_sgd.py [--batch 10 32 128] [--rows 6000]
      [--repeats 3] [--dtype float64] [--data third_party/data/fashion-mnist]
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time


def load_idx(images_path, labels_path, rows):
    with gzip.open(images_path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, images_path
        n = min(n, rows)
        pixels = f.read(n * h * w)
    with gzip.open(labels_path, "rb") as f:
        magic, m = struct.unpack(">II", f.read(8))
        assert magic == 0x801, labels_path
        labels = f.read(n)
    return pixels, labels, n, h * w


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 32, 128])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--test-set", action="store_true",
                        help="read t10k-* instead of train-* (smoke runs)")
    parser.add_argument("--data", default=os.path.join(
        here, "..", "third_party", "data", "fashion-mnist"))
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    prefix = "t10k" if args.test_set else "train"
    pixels, labels, n, d = load_idx(
        os.path.join(args.data, prefix + "-images-idx3-ubyte.gz"),
        os.path.join(args.data, prefix + "-labels-idx1-ubyte.gz"), args.rows)
    # Stored as float32 like fedsim's Dataset; each batch is cast to dtype.
    x_all = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(n, d)
    x_all = x_all.to(torch.float32) / 255.0
    y_all = torch.frombuffer(bytearray(labels), dtype=torch.uint8).to(torch.int64)
    num_classes = int(y_all.max()) + 1

    for batch in args.batch:
        model = torch.nn.Linear(d, num_classes).to(dtype)
        gen = torch.Generator().manual_seed(1)

        def epoch():
            with torch.no_grad():
                model.weight.zero_()
                model.bias.zero_()
            opt = torch.optim.SGD(model.parameters(), lr=args.lr)
            perm = torch.randperm(n, generator=gen)
            for begin in range(0, n, batch):
                idx = perm[begin:begin + batch]
                xb = x_all[idx].to(dtype)
                yb = y_all[idx]
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            return float(loss.detach())

        epoch()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            epoch()
            best = min(best, time.process_time() - start)
        print(json.dumps({"name": "torch_sgd/%d" % batch, "dtype": args.dtype,
                          "torch": torch.__version__, "rows": n,
                          "samples_per_s": n / best}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
