#!/usr/bin/env python3
"""The machine's GEMM rate, the compute floor of bench/report.py
(docs/performance.md, "Floors"). A benchmark script outside the product.

Times C = A B for square n x n matrices with numpy's BLAS (an optimised
OpenBLAS in the PyPI wheel that bench/setup.sh installs), in float32 and
float64, on 1 and 2 threads (each thread count in a fresh process, since
OpenBLAS reads OPENBLAS_NUM_THREADS once, at load). The rate is 2 n^3 /
the best of --repeats wall times, after one warm-up product.

  python3 bench/floors.py [--n 2048] [--repeats 5] [--threads 1 2]

Prints one JSON object per dtype and thread count: {"dtype", "threads",
"n", "gflops", "blas"}.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def child(dtype, n, repeats):
    import numpy as np
    from plain_quickstart import blas_name
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = a @ b  # warm-up: pages, thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return {"dtype": dtype, "threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
            "n": n, "gflops": 2.0 * n ** 3 / best / 1e9, "blas": blas_name(np)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.repeats)))
        return
    for threads in args.threads:
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        for dtype in ("float32", "float64"):
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", dtype,
                 "--n", str(args.n), "--repeats", str(args.repeats)],
                env=env, check=True, capture_output=True, text=True,
                cwd=os.path.dirname(os.path.abspath(__file__)))
            sys.stdout.write(out.stdout)


if __name__ == "__main__":
    main()
