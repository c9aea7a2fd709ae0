#!/usr/bin/env python3
"""SCAFFLSA paper setting at CPU scale (docs/experiments/scafflsa.md).

Runs FedLSA and SCAFFLSA on the Garnet TD(0) problems of ALGORITHMS.md §3.4
with build/bin/fedsim, then draws the error-vs-round plots (with FedLSA's
closed-form bias ||beta||^2) and the linear speed-up plot with gnuplot.

  tools/experiments/scafflsa_sweep.py [--out runs/scafflsa] [--steps 50000]
"""
import argparse
import csv
import json
import math
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FEDSIM = os.path.join(ROOT, "build", "bin", "fedsim")

CONFIG = """name: {name}
seed: {seed}
rounds: {rounds}
data: {{source: lsa}}
clients: {{count: {n}}}
algorithm: {{name: {algo}}}
local: {{lr: {eta}, max_steps: {h}}}
eval: {{every: 1000000}}
lsa: {{problem: garnet, oracle: iid, kernel_heterogeneity: {hg}, theta0_offset: {offset}}}
"""


def run(out, name, **kw):
    d = os.path.join(out, name)
    if not os.path.exists(os.path.join(d, "model.bin")):
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "in.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(name=name, **kw))
        subprocess.run([FEDSIM, "run", cfg, "--out", d, "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "events.jsonl")) as f:
        start = json.loads(f.readline())
    with open(os.path.join(d, "metrics.csv")) as f:
        err = [float(r["dist_to_opt"]) ** 2 for r in csv.DictReader(f)]
    return start["lsa"]["fedlsa_bias_sq"], err


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "scafflsa"))
    ap.add_argument("--steps", type=int, default=50000,
                    help="local steps per agent, T*H (the paper: 5e5)")
    ap.add_argument("--plots", default=os.path.join(ROOT, "docs", "experiments", "img"))
    args = ap.parse_args()
    os.makedirs(args.plots, exist_ok=True)
    summary = []
    for hg in (0.02, 10):
        for n in (10, 100):
            for eta in (0.01, 0.1):
                series = []
                for h in (1, 10, 100, 1000):
                    rounds = max(50, args.steps // h)
                    row = {"hg": hg, "n": n, "eta": eta, "h": h, "rounds": rounds}
                    for algo in ("fedlsa", "scafflsa"):
                        name = f"{algo}_hg{hg}_n{n}_eta{eta}_h{h}"
                        bias, err = run(args.out, name, seed=1, rounds=rounds, n=n,
                                        algo=algo, eta=eta, h=h, hg=hg, offset=1)
                        tail = err[len(err) * 9 // 10:]
                        row[algo] = sum(tail) / len(tail)
                        row["bias_sq"] = bias
                        dat = os.path.join(args.out, name + ".dat")
                        with open(dat, "w") as f:
                            for t, e in enumerate(err):
                                f.write(f"{(t + 1) * h} {e}\n")
                        series.append((algo, h, dat, bias))
                    summary.append(row)
                png = os.path.join(args.plots, f"scafflsa_hg{hg}_n{n}_eta{eta}.png")
                colors = {1: "#1b9e77", 10: "#d95f02", 100: "#7570b3", 1000: "#e7298a"}
                plots = []
                for algo, h, dat, bias in series:
                    dash = "dt 1" if algo == "scafflsa" else "dt 2"
                    plots.append(f"'{dat}' every 1 w l lw 1.5 {dash} lc rgb '{colors[h]}' "
                                 f"t '{algo} H={h}'")
                    if algo == "fedlsa" and bias > 1e-5:  # drawable on the plot's scale
                        plots.append(f"{bias} w l lw 1 dt 3 lc rgb '{colors[h]}' "
                                     f"t '||beta||^2 H={h}'")
                gnuplot(f"""set terminal pngcairo size 900,560 font ',10'
set output '{png}'
set logscale y
set yrange [1e-4:20]
set format y '10^{{%L}}'
set xlabel 'local steps per agent (t H)'
set ylabel '||theta_t - theta*||^2'
set title 'Garnet TD(0), N={n}, heterogeneity {hg}, eta={eta} (solid SCAFFLSA, dashed FedLSA, dotted ||beta||^2)'
set key outside right
plot {', '.join(plots)}
""")
    with open(os.path.join(args.out, "summary.csv"), "w") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
        w.writeheader()
        w.writerows(summary)

    # Linear speed-up: T H = 1000, start at theta*, 20 seeds, error averaged
    # over the second half of the rounds (as tests/integration/lsa_test.cc).
    speed = os.path.join(args.out, "speedup.dat")
    with open(speed, "w") as f:
        for n in (1, 10, 100, 1000):
            vals = {}
            for hg in (0.02, 10):
                tot = 0.0
                for s in range(1, 21):
                    _, err = run(args.out, f"speed_hg{hg}_n{n}_s{s}", seed=s, rounds=100,
                                 n=n, algo="scafflsa", eta=0.1, h=10, hg=hg, offset=0)
                    half = err[len(err) // 2:]
                    tot += sum(half) / len(half)
                vals[hg] = tot / 20
            f.write(f"{n} {vals[0.02]} {vals[10]}\n")
    gnuplot(f"""set terminal pngcairo size 700,480 font ',10'
set output '{os.path.join(args.plots, "scafflsa_speedup.png")}'
set logscale xy
set xlabel 'agents N'
set ylabel 'mean squared error'
set title 'SCAFFLSA linear speed-up (eta=0.1, H=10, T=100, 20 seeds)'
f(x) = a / x
a = 1
fit [x=1:1000] f(x) '{speed}' u 1:2 via a
plot '{speed}' u 1:2 w lp pt 7 t 'heterogeneity 0.02', '{speed}' u 1:3 w lp pt 5 t 'heterogeneity 10', f(x) dt 2 t '1/N reference'
""")
    print(open(speed).read())
    for r in summary:
        print(r)


if __name__ == "__main__":
    main()
