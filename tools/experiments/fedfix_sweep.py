#!/usr/bin/env python3
"""FedFix paper comparison at CPU scale (docs/experiments/fedfix.md).

Runs synchronous FedAvg on the clock, asynchronous FedAvg, FedFix-dt
(three windows) and FedBuff-c (two buffers) on Fashion-MNIST with
Dirichlet(0.1) label skew, in the F-0 and F-80 time scenarios, for several
seeds, with build/bin/fedsim; then prints the markdown tables of
docs/experiments/fedfix.md and, if gnuplot is installed, draws test
accuracy against virtual time (docs/experiments/fedfix_F<X>_lr<lr>.svg).

  tools/experiments/fedfix_sweep.py [--out runs/fedfix] [--horizon 50] [--lr 0.01] [--seeds 1 2 3]
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FEDSIM = os.path.join(ROOT, "build", "bin", "fedsim")

CONFIG = """name: {name}
seed: {seed}
data: {{source: fashion_mnist, path: {root}/third_party/data/fashion-mnist}}
clients: {{count: {m}, partition: dirichlet, dirichlet_alpha: 0.1}}
model: {{objective: softmax}}
participation: {{client_fraction: 1}}
algorithm: {{name: {algo}, async_weights: {weights}, window: {window}, buffer_size: {buffer}}}
local: {{max_steps: 10, batch_size: 64, lr: {lr}, momentum: 0.9, fresh_batches: true, grad_clip_norm: 10000}}
async: {{compute_time: fx, fx_percent: {fx}, horizon: {horizon}, eval_interval: 1}}
eval: {{train_loss: false}}
runtime: {{threads: 1}}
"""

# (label, algorithm, weights, window, buffer): the paper's `opt_all` grid.
SCHEMES = [
    ("FL (sync FedAvg)", "clock_fedavg", "weight", 0.5, 5),
    ("Async (weight)", "async_fedavg", "weight", 0.5, 5),
    ("FedFix-0.2", "fedfix", "weight", 0.2, 5),
    ("FedFix-0.5", "fedfix", "weight", 0.5, 5),
    ("FedFix-0.8", "fedfix", "weight", 0.8, 5),
    ("FedBuff-5", "fedbuff", "identical", 0.5, 5),
    ("FedBuff-10", "fedbuff", "identical", 0.5, 10),
]


def run_one(out, label, algo, weights, window, buffer, fx, seed, args):
    name = f"{algo}_w{window}_c{buffer}_F{fx}_s{seed}"
    run_dir = os.path.join(out, name)
    metrics = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(metrics):
        os.makedirs(out, exist_ok=True)
        cfg = os.path.join(out, name + ".yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(name=name, seed=seed, root=ROOT, m=args.clients,
                                  algo=algo, weights=weights, window=window,
                                  buffer=buffer, lr=args.lr, fx=fx,
                                  horizon=args.horizon))
        subprocess.run([FEDSIM, "run", cfg, "--out", run_dir, "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
    points = []  # (virtual_time, accuracy) at evaluation steps
    steps = 0
    with open(metrics) as f:
        for row in csv.DictReader(f):
            steps += 1
            if row["test_accuracy"]:
                points.append((float(row["virtual_time"]), float(row["test_accuracy"])))
    return points, steps


def accuracy_at(points, t):
    """Accuracy of the last evaluation at or before virtual time t."""
    best = None
    for time, acc in points:
        if time <= t + 1e-9:
            best = acc
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "fedfix"))
    p.add_argument("--horizon", type=float, default=50)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = p.parse_args()
    checkpoints = [5, 10, 25, args.horizon]
    curves = {}
    for fx in (0, 80):
        print(f"\n### F-{fx}\n")
        print("| scheme | steps | " + " | ".join(f"acc @ T={c:g}" for c in checkpoints)
              + " | mean |Δacc| between evaluations (last half) |")
        print("| --- | --- |" + " --- |" * len(checkpoints) + " --- |")
        for label, algo, weights, window, buffer in SCHEMES:
            per_seed = []
            for seed in args.seeds:
                per_seed.append(run_one(args.out, label, algo, weights, window,
                                        buffer, fx, seed, args))
            cells = []
            for c in checkpoints:
                vals = [accuracy_at(pts, c) for pts, _ in per_seed]
                vals = [v for v in vals if v is not None]
                if not vals:
                    cells.append("–")
                    continue
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}")
            jitter = []
            for pts, _ in per_seed:
                half = [a for t, a in pts if t > args.horizon / 2]
                jitter += [abs(b - a) for a, b in zip(half, half[1:])]
            steps = statistics.mean(s for _, s in per_seed)
            print(f"| {label} | {steps:.0f} | " + " | ".join(cells)
                  + f" | {statistics.mean(jitter) if jitter else float('nan'):.4f} |")
            curves[(fx, label)] = per_seed[0][0]
    if shutil.which("gnuplot"):
        for fx in (0, 80):
            data = os.path.join(args.out, f"curves_F{fx}.dat")
            with open(data, "w") as f:
                for label, *_ in SCHEMES:
                    f.write(f'"{label}"\n')
                    for t, a in curves[(fx, label)]:
                        f.write(f"{t} {a}\n")
                    f.write("\n\n")
            svg = os.path.join(ROOT, "docs", "experiments", f"fedfix_F{fx}_lr{args.lr:g}.svg")
            plot = (f"set terminal svg size 800,480; set output '{svg}';"
                    f"set title 'Fashion-MNIST, Dirichlet 0.1, M = {args.clients}, F-{fx}, lr {args.lr:g}, seed {args.seeds[0]}';"
                    "set xlabel 'virtual time'; set ylabel 'test accuracy'; set key bottom right;"
                    f"plot for [i=0:{len(SCHEMES) - 1}] '{data}' index i with lines title columnheader(1)")
            subprocess.run(["gnuplot", "-e", plot], check=True)


if __name__ == "__main__":
    main()
