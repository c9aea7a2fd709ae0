#!/usr/bin/env python3
"""FedProx's synthetic(alpha, beta) comparison (docs/experiments/baselines.md).

Runs FedAvg, FedProx (mu = 0 and mu = 1), SCAFFOLD and FedAdam with FedProx's
setup (30 devices, 10 a round, E = 20, B = 10, lr 0.01, 200 rounds) at 0, 50
and 90% stragglers with build/bin/fedsim, then prints the final test accuracy
(mean over seeds) and draws test-accuracy and training-loss curves with
gnuplot.

  tools/experiments/baselines_sweep.py [--out runs/baselines] [--data 1_1 0_0]
      [--stragglers 0 0.5 0.9] [--seeds 1 2 3] [--rounds 200]
"""
import argparse
import csv
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FEDSIM = os.path.join(ROOT, "build", "bin", "fedsim")

CONFIG = """name: {name}
seed: {seed}
rounds: {rounds}
data: {{source: fedprox_synthetic, fedprox_synthetic: {{alpha: {alpha}, beta: {beta}, iid: {iid}}}}}
clients: {{count: 30, partition: natural, straggler_fraction: {s}}}
model: {{objective: softmax}}
participation: {{client_fraction: 0.3333333333333333}}
algorithm: {algo}
local: {{epochs: 20, batch_size: 10, lr: 0.01}}
eval: {{every: {every}, train_rows: 0}}
runtime: {{threads: {threads}}}
"""

ALGOS = {
    "fedavg": "{name: fedavg}",
    "fedprox_mu0": "{name: fedprox, prox_mu: 0}",
    "fedprox_mu1": "{name: fedprox, prox_mu: 1}",
    "scaffold": "{name: scaffold, scaffold_option: ii}",
    "fedadam": "{name: fedavg, server_lr: 0.03, server_optimizer: {kind: adam, tau: 0.001}}",
}

DATA = {"0_0": (0, 0, "false"), "0.5_0.5": (0.5, 0.5, "false"),
        "1_1": (1, 1, "false"), "iid": (0, 0, "true")}


def run(out, name, **kw):
    d = os.path.join(out, name)
    if not os.path.exists(os.path.join(d, "model.bin")):
        os.makedirs(d, exist_ok=True)
        cfg = os.path.join(d, "in.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(name=name, **kw))
        subprocess.run([FEDSIM, "run", cfg, "--out", d, "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["test_accuracy"]]
    return ([int(r["round"]) for r in rows],
            [float(r["test_accuracy"]) for r in rows],
            [float(r["train_loss"]) for r in rows])


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "baselines"))
    ap.add_argument("--data", nargs="+", default=["1_1"], choices=sorted(DATA))
    ap.add_argument("--stragglers", nargs="+", type=float, default=[0.0, 0.5, 0.9])
    ap.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plots", default=os.path.join(ROOT, "docs", "experiments", "img"))
    args = ap.parse_args()
    os.makedirs(args.plots, exist_ok=True)
    print("data stragglers " + " ".join(args.algos))
    for data in args.data:
        alpha, beta, iid = DATA[data]
        for s in args.stragglers:
            curves = {}
            finals = []
            for algo in args.algos:
                per_seed = []
                for seed in args.seeds:
                    name = f"{data}_s{s}_{algo}_seed{seed}"
                    per_seed.append(run(args.out, name, seed=seed, rounds=args.rounds,
                                        alpha=alpha, beta=beta, iid=iid, s=s,
                                        algo=ALGOS[algo], every=args.every,
                                        threads=args.threads))
                curves[algo] = per_seed[0]
                finals.append(sum(p[1][-1] for p in per_seed) / len(per_seed))
            print(f"{data} {s} " + " ".join(f"{a:.4f}" for a in finals))
            stem = os.path.join(args.plots, f"baselines_{data}_s{s}")
            for col, what in ((1, "test accuracy"), (2, "training loss")):
                dat = []
                for algo, c in curves.items():
                    dat.append("\n".join(f"{r} {v}" for r, v in zip(c[0], c[col])))
                plots = ", ".join(f"'-' with lines title '{a}'" for a in curves)
                tag = "acc" if col == 1 else "loss"
                gnuplot(f"""set terminal pngcairo size 640,420 noenhanced
set output '{stem}_{tag}.png'
set title 'synthetic({alpha},{beta}){" IID" if iid == "true" else ""}, {int(s * 100)}% stragglers (seed {args.seeds[0]})'
set xlabel 'round'
set ylabel '{what}'
{"set logscale y" if col == 2 else ""}
set key {"bottom right" if col == 1 else "top right"}
plot {plots}
""" + "\ne\n".join(dat) + "\ne\n")


if __name__ == "__main__":
    main()
