#!/usr/bin/env python3
"""FedAU against its baselines on Fashion-MNIST (docs/experiments/fedau.md).

Runs configs/fedau_{bernoulli,markov,cyclic}.yaml with every algorithm and
seed, then writes a Markdown table of final and best test accuracy and an
SVG plot of mean test accuracy against rounds. Standard library only.

  python3 docs/experiments/fedau_sweep.py [--rounds 1000] [--seeds 1 2 3]
      [--out runs/fedau_sweep] [--fedsim build/bin/fedsim] [--skip-runs]
"""
import argparse
import csv
import os
import re
import statistics
import subprocess
import sys

PATTERNS = ["bernoulli", "markov", "cyclic"]
ALGORITHMS = ["fedau", "known_prob", "average_participating", "average_all"]
COLORS = {"fedau": "#d62728", "known_prob": "#2ca02c",
          "average_participating": "#1f77b4", "average_all": "#7f7f7f"}


def make_config(base, algorithm, seed, rounds):
    text = re.sub(r"(?m)^seed: .*$", f"seed: {seed}", base)
    text = re.sub(r"(?m)^rounds: .*$", f"rounds: {rounds}", text)
    text = re.sub(r"(?m)^  name: fedau$", f"  name: {algorithm}", text)
    text = re.sub(r"(?m)^  train_loss: true$", "  train_loss: false", text)
    assert f"name: {algorithm}" in text
    return text


def read_metrics(path):
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["test_accuracy"]]
    return [(int(r["round"]), float(r["test_accuracy"])) for r in rows]


def svg_plot(curves, path, rounds):
    """curves[pattern][algorithm] = [(round, mean accuracy)]."""
    w, h, pad = 300, 220, 40
    lo, hi = 0.5, 0.9
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * w + 170}" '
             f'height="{h + 30}" font-family="sans-serif" font-size="11">']
    for i, pattern in enumerate(PATTERNS):
        x0 = i * w + pad
        parts.append(f'<text x="{x0 + (w - pad) / 2}" y="14" text-anchor="middle">'
                     f'{pattern}</text>')
        parts.append(f'<rect x="{x0}" y="20" width="{w - pad - 10}" height="{h - pad}" '
                     'fill="none" stroke="black"/>')
        for acc in (0.5, 0.6, 0.7, 0.8, 0.9):
            y = 20 + (h - pad) * (hi - acc) / (hi - lo)
            parts.append(f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end">{acc:.1f}</text>')
        parts.append(f'<text x="{x0 + (w - pad - 10) / 2}" y="{h - 2}" '
                     f'text-anchor="middle">round (0..{rounds})</text>')
        for algorithm, points in curves[pattern].items():
            pts = []
            for r, acc in points:
                x = x0 + (w - pad - 10) * (r + 1) / rounds
                y = 20 + (h - pad) * (hi - max(lo, min(hi, acc))) / (hi - lo)
                pts.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<polyline fill="none" stroke="{COLORS[algorithm]}" '
                         f'stroke-width="1.5" points="{" ".join(pts)}"/>')
    for j, algorithm in enumerate(ALGORITHMS):
        y = 40 + 16 * j
        parts.append(f'<line x1="{3 * w + 10}" y1="{y}" x2="{3 * w + 30}" y2="{y}" '
                     f'stroke="{COLORS[algorithm]}" stroke-width="2"/>')
        parts.append(f'<text x="{3 * w + 34}" y="{y + 4}">{algorithm}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", default="runs/fedau_sweep")
    ap.add_argument("--fedsim", default="build/bin/fedsim")
    ap.add_argument("--skip-runs", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for pattern in PATTERNS:
        with open(f"configs/fedau_{pattern}.yaml") as f:
            base = f.read()
        for algorithm in ALGORITHMS:
            for seed in args.seeds:
                name = f"{pattern}_{algorithm}_s{seed}"
                run_dir = os.path.join(args.out, name)
                if not args.skip_runs:
                    cfg = os.path.join(args.out, name + ".yaml")
                    with open(cfg, "w") as f:
                        f.write(make_config(base, algorithm, seed, args.rounds))
                    subprocess.run([args.fedsim, "run", cfg, "--out", run_dir,
                                    "--threads", "1", "--quiet"], check=True,
                                   stdout=subprocess.DEVNULL)
                    print("done", name, file=sys.stderr, flush=True)
                results[(pattern, algorithm, seed)] = read_metrics(
                    os.path.join(run_dir, "metrics.csv"))
    print("| participation | algorithm | final test accuracy (mean ± sd) | per seed | best (mean) |")
    print("| --- | --- | --- | --- | --- |")
    curves = {p: {} for p in PATTERNS}
    for pattern in PATTERNS:
        for algorithm in ALGORITHMS:
            runs = [results[(pattern, algorithm, s)] for s in args.seeds]
            finals = [r[-1][1] for r in runs]
            bests = [max(a for _, a in r) for r in runs]
            sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
            print(f"| {pattern} | {algorithm} | {statistics.mean(finals):.4f} ± {sd:.4f} | "
                  f"{', '.join(f'{a:.4f}' for a in finals)} | {statistics.mean(bests):.4f} |")
            curves[pattern][algorithm] = [
                (runs[0][i][0], statistics.mean(r[i][1] for r in runs))
                for i in range(len(runs[0]))]
    svg_plot(curves, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "fedau_accuracy.svg"), args.rounds)


if __name__ == "__main__":
    main()
