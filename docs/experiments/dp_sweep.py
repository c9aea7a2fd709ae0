#!/usr/bin/python3
"""DiceSGD against clipped DP-SGD inside FedAvg on Fashion-MNIST
(docs/experiments/dp.md).

For every target epsilon in EPSILONS, clipping threshold C in CLIPS, method
in (clip, dicesgd) and seed, writes a config, runs `fedsim run` (one process
at a time, one thread), reads metrics.csv by header and the calibrated noise
multiplier from the run_start event, and draws with matplotlib:

  img/dp_acc_vs_clip.png   final test accuracy against C, one panel per epsilon
  img/dp_curves_eps{E}.png test accuracy against round for every C, both methods

plus one non-private FedAvg reference run per seed. A run directory that
already holds model.bin is reused, so the script can be re-run to re-plot.

  /usr/bin/python3 docs/experiments/dp_sweep.py [--out runs/dp] [--seeds 1 2 3]
      [--rounds 30] [--fedsim build/bin/fedsim]
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

EPSILONS = (1, 2, 8)
CLIPS = (0.1, 1, 10)
# Method variants: (local.dp.mode, C2 / C1, lr divided by C). "dicesgd" is
# fedsim's default error_clip = clip; "dicesgd_c2x10" is the C2 = 10 C1 of the
# paper's GPT-2 runs; "clip_lr_over_c" is DP-SGD with lr = --lr / C, so that
# lr * C is the same for every C (clipping then only changes the direction).
VARIANTS = {"clip": ("clip", 1, False), "dicesgd": ("dicesgd", 1, False),
            "dicesgd_c2x10": ("dicesgd", 10, False), "clip_lr_over_c": ("clip", 1, True)}
LABEL = {"clip": "DP-SGD (clip)", "dicesgd": "DiceSGD, C2 = C1",
         "dicesgd_c2x10": "DiceSGD, C2 = 10 C1", "clip_lr_over_c": "DP-SGD, lr = 0.1 / C",
         "none": "FedAvg, no DP"}
COLOR = {"clip": "#1f77b4", "dicesgd": "#d62728", "dicesgd_c2x10": "#ff7f0e",
         "clip_lr_over_c": "#2ca02c", "none": "#555555"}

CONFIG = """name: {name}
seed: {seed}
rounds: {rounds}
data: {{source: fashion_mnist, path: {data}}}
clients: {{count: {clients}, partition: iid}}
model: {{objective: softmax, l2: 0}}
participation: {{model: uniform, client_fraction: {fraction}}}
algorithm: {{name: fedavg, server_lr: 1.0}}
local:
  epochs: 1
  batch_size: {batch}
  lr: {lr}
{dp}eval: {{every: 1, train_loss: false}}
runtime: {{threads: 1}}
checkpoint: {{every: 0}}
"""

DP = """  dp:
    mode: {mode}
    clip: {clip}
    error_clip: {error_clip}
    delta: {delta}
    target_epsilon: {eps}
"""


def run(args, name, seed, mode="none", clip=None, eps=None, ratio=1, lr=None):
    d = os.path.join(args.out, name)
    if not os.path.exists(os.path.join(d, "model.bin")):
        os.makedirs(d, exist_ok=True)
        dp = "" if mode == "none" else DP.format(mode=mode, clip=clip, eps=eps,
                                                  error_clip=clip * ratio, delta=args.delta)
        cfg = os.path.join(d, "in.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(name=name, seed=seed, rounds=args.rounds, data=args.data,
                                  clients=args.clients, fraction=args.fraction,
                                  batch=args.batch, lr=lr or args.lr, dp=dp))
        t0 = time.time()
        subprocess.run([args.fedsim, "run", cfg, "--out", d, "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"{name}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    with open(os.path.join(d, "events.jsonl")) as f:
        start = json.loads(f.readline())
    with open(os.path.join(d, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    acc = [(int(r["round"]), float(r["test_accuracy"])) for r in rows if r["test_accuracy"]]
    last = rows[-1]
    return {
        "name": name, "seed": seed, "mode": mode, "clip": clip, "eps": eps,
        "z": start.get("dp", {}).get("noise_multiplier"),
        "sampling_rate": start.get("dp", {}).get("sampling_rate_max"),
        "eps_max": float(last["epsilon_max"]) if last.get("epsilon_max") else None,
        "eps_mean": float(last["epsilon_mean"]) if last.get("epsilon_mean") else None,
        "final": acc[-1][1],
        "last5": statistics.mean(a for _, a in acc[-5:]),
        "curve": acc,
    }


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "dp"))
    ap.add_argument("--fedsim", default=os.path.join(ROOT, "build", "bin", "fedsim"))
    ap.add_argument("--data", default=os.path.join(ROOT, "third_party", "data", "fashion-mnist"))
    ap.add_argument("--plots", default=os.path.join(HERE, "img"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--fraction", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--methods", nargs="+", default=["clip", "dicesgd"],
                    choices=list(VARIANTS))
    ap.add_argument("--only", choices=["ref", "grid"], help="run only part of the sweep")
    args = ap.parse_args()
    METHODS = args.methods
    os.makedirs(args.plots, exist_ok=True)

    refs = [] if args.only == "grid" else \
        [run(args, f"nodp_s{s}", s) for s in args.seeds]
    res = {}
    if args.only != "ref":
        for s in args.seeds:
            for eps in EPSILONS:
                for c in CLIPS:
                    for m in METHODS:
                        mode, ratio, scale = VARIANTS[m]
                        res[(m, eps, c, s)] = run(args, f"{m}_eps{eps}_C{c}_s{s}", s,
                                                  mode=mode, clip=c, eps=eps, ratio=ratio,
                                                  lr=args.lr / c if scale else args.lr)
    if not res:
        return

    # Summary CSV: one row per run.
    with open(os.path.join(args.out, "summary.csv"), "w") as f:
        w = csv.writer(f)
        w.writerow(["method", "target_epsilon", "clip", "seed", "noise_multiplier",
                    "epsilon_max", "epsilon_mean", "final_test_accuracy", "mean_last5"])
        for r in refs:
            w.writerow(["none", "", "", r["seed"], "", "", "", r["final"], r["last5"]])
        for (m, eps, c, s), r in sorted(res.items()):
            w.writerow([m, eps, c, s, r["z"], r["eps_max"], r["eps_mean"], r["final"],
                        r["last5"]])

    # Markdown table for dp.md.
    seeds = args.seeds
    print("| ε target | C | z | ε_max reached | " + " | ".join(LABEL[m] for m in METHODS) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for m in METHODS) + " |")
    for eps in EPSILONS:
        for c in CLIPS:
            cells = []
            for m in METHODS:
                fin = [res[(m, eps, c, s)]["final"] for s in seeds]
                mu, sd = mean_sd(fin)
                cells.append(f"{mu:.4f} ± {sd:.4f}" if len(seeds) > 1 else f"{mu:.4f}")
            zs = {round(res[(m, eps, c, s)]["z"], 6) for m in METHODS for s in seeds}
            em = [res[(m, eps, c, s)]["eps_max"] for m in METHODS for s in seeds]
            print(f"| {eps} | {c} | {'/'.join(format(z, '.4g') for z in sorted(zs))} | "
                  f"{min(em):.3f}–{max(em):.3f} | " + " | ".join(cells) + " |")
    if refs:
        mu, sd = mean_sd([r["final"] for r in refs])
        print(f"\nnon-private FedAvg: {mu:.4f} ± {sd:.4f} "
              f"({', '.join(format(r['final'], '.4f') for r in refs)})")
    print("\nper-seed final accuracies:")
    for (m, eps, c, s), r in sorted(res.items()):
        print(f"  {m:8s} eps={eps} C={c} seed={s}: final {r['final']:.4f} "
              f"last5 {r['last5']:.4f} eps_max {r['eps_max']:.4f} z {r['z']:.6g}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Final accuracy against C, one panel per epsilon.
    fig, axes = plt.subplots(1, len(EPSILONS), figsize=(12, 3.8), sharey=True)
    for ax, eps in zip(axes, EPSILONS):
        for m in METHODS:
            mus, sds = [], []
            for c in CLIPS:
                mu, sd = mean_sd([res[(m, eps, c, s)]["final"] for s in seeds])
                mus.append(mu)
                sds.append(sd)
            ax.errorbar(CLIPS, mus, yerr=sds if len(seeds) > 1 else None, marker="o",
                        capsize=3, color=COLOR[m], label=LABEL[m])
            for s in seeds if len(seeds) > 1 else []:
                ax.scatter(CLIPS, [res[(m, eps, c, s)]["final"] for c in CLIPS], s=8,
                           color=COLOR[m], alpha=0.4)
        if refs:
            ax.axhline(statistics.mean(r["final"] for r in refs), color=COLOR["none"],
                       ls="--", lw=1, label=LABEL["none"])
        ax.set_xscale("log")
        ax.set_xticks(CLIPS)
        ax.set_xticklabels([str(c) for c in CLIPS])
        ax.set_xlabel("clipping threshold C (DiceSGD's C1)")
        ax.set_title(f"target ε = {eps}, δ = {args.delta:g}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"final test accuracy (round {args.rounds})")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Fashion-MNIST, softmax regression, FedAvg: {args.clients} IID clients, "
                 f"{int(round(args.fraction * args.clients))} a round, "
                 f"{len(seeds)} seed(s), mean" + (" ± sd" if len(seeds) > 1 else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(args.plots, "dp_acc_vs_clip.png"), dpi=110)
    plt.close(fig)

    # Test accuracy against round, one figure per epsilon (seed-mean curves).
    styles = {0.1: ":", 1: "--", 10: "-"}
    colors = {0.1: "#1b9e77", 1: "#d95f02", 10: "#7570b3"}
    for eps in EPSILONS:
        fig, axs = plt.subplots(1, len(METHODS), figsize=(4.2 * len(METHODS), 3.8),
                                sharey=True)
        for ax, m in zip(axs, METHODS):
            for c in CLIPS:
                curves = [res[(m, eps, c, s)]["curve"] for s in seeds]
                xs = [r for r, _ in curves[0]]
                ys = [statistics.mean(cv[i][1] for cv in curves) for i in range(len(xs))]
                ax.plot([x + 1 for x in xs], ys, color=colors[c], ls=styles[c],
                        label=f"C = {c}")
            if refs:
                curves = [r["curve"] for r in refs]
                xs = [r for r, _ in curves[0]]
                ax.plot([x + 1 for x in xs],
                        [statistics.mean(cv[i][1] for cv in curves) for i in range(len(xs))],
                        color=COLOR["none"], lw=1, label=LABEL["none"])
            ax.set_xlabel("round")
            ax.set_ylim(0, 0.9)
            ax.set_title(LABEL[m], fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        axs[0].set_ylabel("test accuracy")
        fig.suptitle(f"target ε = {eps}: test accuracy per round "
                     f"(mean over {len(seeds)} seed(s))", fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(args.plots, f"dp_curves_eps{eps}.png"), dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
