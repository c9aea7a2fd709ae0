#!/usr/bin/env python3
"""The asynchronous schemes on the wall clock (docs/experiments/wall_clock.md).

Runs synchronous FedAvg on the clock, asynchronous FedAvg, FedFix and FedBuff
(`identical` and `weight` each) with `async.clock: wall` across 4 worker
processes slowed by distributed.worker_slowdown [1, 2, 4, 8], on
heterogeneous least squares with a known optimum, for several seeds, with
`fedsim launch`; prints the Markdown table of docs/experiments/wall_clock.md
(steps, final distance to the optimum against synchronous FedAvg's, time to
get near it) and plots
dist_to_opt against run time for seed 1 with `fedsim report`.

  tools/experiments/wall_clock_sweep.py [--out runs/wall_clock] [--horizon 3]
      [--seeds 1 2 3] [--fedsim build/bin/fedsim] [--skip-runs]
"""
import argparse
import csv
import json
import os
import statistics
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """name: {name}
seed: {seed}
data:
  source: synthetic_least_squares
  least_squares: {{examples_per_client: 2000, dim: 20, noise_std: 0.3, heterogeneity: 1.0}}
clients: {{count: 8, partition: natural}}
model: {{objective: least_squares}}
algorithm: {{name: {algo}, async_weights: {weights}, window: {window}, buffer_size: 3, server_lr: {server_lr}}}
local: {{max_steps: 100, batch_size: 640, lr: 0.002}}
async: {{clock: wall, horizon: {horizon}, eval_interval: 0.25}}
eval: {{train_loss: false}}
distributed: {{worker_slowdown: [1, 2, 4, 8]}}
checkpoint: {{every: 0}}
"""

# (label, algorithm, weights, window, server_lr): eta_g small enough that
# every `weight` variant is stable (async FedAvg's largest d_i is about 4).
# Tasks take about 3.5 ms on the fastest worker and 18 ms on the slowest
# (two clients per worker), so FedFix windows of 5 and 10 ms leave the slow
# clients out of most windows.
SCHEMES = [
    ("FL (sync FedAvg)", "clock_fedavg", "weight", 0.05, 1.0),
    ("Async, identical", "async_fedavg", "identical", 0.05, 0.2),
    ("Async, weight", "async_fedavg", "weight", 0.05, 0.2),
    ("FedFix-5 ms, identical", "fedfix", "identical", 0.005, 1.0),
    ("FedFix-5 ms, weight", "fedfix", "weight", 0.005, 1.0),
    ("FedFix-10 ms, weight", "fedfix", "weight", 0.01, 1.0),
    ("FedBuff-3, identical", "fedbuff", "identical", 0.05, 0.5),
    ("FedBuff-3, weight", "fedbuff", "weight", 0.05, 0.5),
]
# "Time to reach": dist_to_opt below this multiple of synchronous FedAvg's
# final distance (same seed).
REACH = 1.25


def run_dir(out, algo, weights, window, seed):
    return os.path.join(out, f"{algo}_{weights}_{window:g}_s{seed}")


def read(path):
    with open(os.path.join(path, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    points = [(float(r["virtual_time"]), float(r["dist_to_opt"])) for r in rows]
    end = {}
    with open(os.path.join(path, "events.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "run_end":
                end = e
    return points, end


def final_distance(points):
    # The mean over the last second of steps (async schemes jitter from step
    # to step around their limit).
    t_end = points[-1][0]
    return statistics.mean(d for t, d in points if t >= t_end - 1.0)


def fmt(values, digits=3):
    values = [v for v in values if v == v]
    if not values:
        return "never"
    if len(values) == 1:
        return f"{values[0]:.{digits}g}"
    return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.1g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "wall_clock"))
    parser.add_argument("--horizon", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--fedsim", default=os.path.join(ROOT, "build", "bin", "fedsim"))
    parser.add_argument("--skip-runs", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.skip_runs:
        for _, algo, weights, window, server_lr in SCHEMES:
            for seed in args.seeds:
                out = run_dir(args.out, algo, weights, window, seed)
                config = out + ".yaml"
                with open(config, "w") as f:
                    f.write(CONFIG.format(name=os.path.basename(out), seed=seed, algo=algo,
                                          weights=weights, window=window,
                                          server_lr=server_lr, horizon=args.horizon))
                subprocess.run([args.fedsim, "launch", config, "--workers", "4", "--quiet",
                                "--out", out], check=True, stdout=subprocess.DEVNULL)
    fl = {}
    for seed in args.seeds:
        _, algo, weights, window, _ = SCHEMES[0]
        fl[seed] = final_distance(read(run_dir(args.out, algo, weights, window, seed))[0])
    print(f"| scheme | steps in {args.horizon:g} s | final dist_to_opt / FL's, per seed "
          f"| time to dist_to_opt < {REACH} x FL's final (s) |")
    print("| --- | --- | --- | --- |")
    taus = None
    for label, algo, weights, window, _ in SCHEMES:
        steps, ratio, reach = [], [], []
        for seed in args.seeds:
            points, end = read(run_dir(args.out, algo, weights, window, seed))
            steps.append(len(points))
            ratio.append(final_distance(points) / fl[seed])
            reach.append(next((t for t, d in points if d < REACH * fl[seed]), float("nan")))
            if algo == "async_fedavg" and weights == "identical" and seed == args.seeds[0]:
                taus = end.get("mean_task_time", [])
        never = sum(1 for r in reach if r != r)
        per_seed = ", ".join(f"{r:.2f}" for r in ratio)
        print(f"| {label} | {fmt(steps, 4)} | {per_seed} | {fmt(reach)}"
              + (f" ({never} of {len(reach)} seeds never)" if 0 < never < len(reach) else "")
              + " |")
    print("\nFL's final dist_to_opt per seed:", ", ".join(f"{fl[s]:.3f}" for s in args.seeds))
    if taus:
        print("mean task time per client (s), async FedAvg identical, seed",
              args.seeds[0], ":", ", ".join(f"{t:.4f}" for t in taus))
    dirs = [run_dir(args.out, algo, weights, window, args.seeds[0])
            for _, algo, weights, window, _ in SCHEMES]
    subprocess.run([args.fedsim, "report", *dirs, "--out", os.path.join(args.out, "report"),
                    "--metrics", "dist_to_opt", "--x", "virtual", "--logy", "dist_to_opt"],
                   check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
