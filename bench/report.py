#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

  report.py metrics RUN_DIR            one JSON line: per-round time etc.
  report.py table RESULTS_DIR          the table of ratios (Markdown) on
                                       stdout and in RESULTS_DIR/table.md

Per-round time of a run: (wall_time_s of the last round - that of the
first) / (rounds - 1), so start-up (data loading, worker processes) is not
counted; the first round's time is reported separately as start-up.
"""
import csv
import json
import os
import sys


def run_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit("report: %s/metrics.csv has no rows" % run_dir)
    wall = [float(r["wall_time_s"]) for r in rows]
    n = len(rows)
    per_round = (wall[-1] - wall[0]) / (n - 1) if n > 1 else wall[0]
    up = [int(r["bytes_up"] or 0) for r in rows]
    down = [int(r["bytes_down"] or 0) for r in rows]
    return {
        "rounds": n,
        "first_round_end_s": wall[0],
        "total_s": wall[-1],
        "per_round_s": per_round,
        "model_hash": rows[-1]["model_hash"],
        "test_accuracy": rows[-1].get("test_accuracy", ""),
        "payload_bytes": sum(up) + sum(down),
        "payload_bytes_per_round": (sum(up) + sum(down)) / n,
    }


def load_gbench(path):
    """name -> list of per-repetition entries of a Google Benchmark JSON."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        data = json.load(f)
    for b in data.get("benchmarks", []):
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            continue
        out.setdefault(b["run_name"], []).append(b)
    return out


def best(entries, key):
    vals = [e[key] for e in entries if key in e]
    return max(vals) if vals else None


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(x, digits=3):
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return "{:,.0f}".format(x)
    return "{:.{}g}".format(x, digits)


class Table:
    def __init__(self):
        self.rows = []
        self.notes = []

    def add(self, bench, measure, fedsim, baseline, ratio, goal, met):
        self.rows.append((bench, measure, fedsim, baseline, ratio, goal, met))

    def markdown(self):
        head = ("benchmark", "measure", "fedsim", "baseline", "ratio", "goal", "met")
        lines = ["| " + " | ".join(head) + " |",
                 "| " + " | ".join("---" for _ in head) + " |"]
        for r in self.rows:
            lines.append("| " + " | ".join(r) + " |")
        if self.notes:
            lines.append("")
            lines.extend("- " + n for n in self.notes)
        return "\n".join(lines)


def verdict(ok):
    if ok is None:
        return "n/a"
    return "yes" if ok else "**no**"


def table(results):
    t = Table()
    smoke = os.path.exists(os.path.join(results, "SMOKE"))
    if smoke:
        t.notes.append("--smoke run: tiny sizes, numbers mean nothing")

    # 1. Aggregation.
    agg = load_gbench(os.path.join(results, "aggregation.json"))
    for threads in (1, 2):
        triad = best(agg.get("stream_triad/threads:%d/real_time" % threads, []),
                     "bytes_per_second")
        copy = best(agg.get("stream_copy/threads:%d/real_time" % threads, []),
                    "bytes_per_second")
        for name in ("weighted_sum", "fedavg_aggregate"):
            v = best(agg.get("%s/threads:%d/real_time" % (name, threads), []),
                     "bytes_per_second")
            if v is None or triad is None:
                continue
            r = v / triad
            t.add("1 aggregation, %s, %d thread%s" % (name, threads,
                                                     "s" if threads > 1 else ""),
                  "GB/s", fmt(v / 1e9), "triad %s (copy %s)" % (
                      fmt(triad / 1e9), fmt(copy / 1e9 if copy else None)),
                  fmt(r) + "x triad", ">= 0.8x", verdict(r >= 0.8))

    # 2. Local SGD and 3. DP.
    tr = load_gbench(os.path.join(results, "training.json"))
    torch = {}
    for e in load_jsonl(os.path.join(results, "torch.jsonl")):
        torch[(e["name"], e["dtype"])] = e["samples_per_s"]
    for batch in (10, 32, 128):
        ours = best(tr.get("local_sgd/batch:%d" % batch, []), "items_per_second")
        floor = best(tr.get("eigen_floor/batch:%d" % batch, []), "items_per_second")
        dp = best(tr.get("dp_sgd/batch:%d" % batch, []), "items_per_second")
        ghost = best(tr.get("dp_sgd_ghost/batch:%d" % batch, []), "items_per_second")
        if ours is not None and floor is not None:
            r = floor / ours  # time ratio = inverse throughput ratio
            t.add("2 local SGD vs Eigen floor, B=%d" % batch, "samples/s",
                  fmt(ours), fmt(floor), fmt(r) + "x floor's time",
                  "<= 1.2x", verdict(r <= 1.2))
        for dtype in ("float64", "float32"):
            pt = torch.get(("torch_sgd/%d" % batch, dtype))
            if ours is not None and pt is not None:
                r = ours / pt
                goal = ">= 3x" if batch == 10 and dtype == "float64" else "(info)"
                t.add("2 local SGD vs PyTorch %s, B=%d" % (dtype, batch),
                      "samples/s", fmt(ours), fmt(pt), fmt(r) + "x",
                      goal, verdict(r >= 3) if goal != "(info)" else "")
        if ours is not None and dp is not None:
            r = ours / dp
            t.add("3 DP-SGD step vs non-private, B=%d" % batch, "samples/s",
                  fmt(dp), fmt(ours), fmt(r) + "x time", "<= 2x",
                  verdict(r <= 2.0))
        if ours is not None and ghost is not None:
            r = ours / ghost
            t.add("3 DP-SGD step, ghost clipping, vs non-private, B=%d" % batch,
                  "samples/s", fmt(ghost), fmt(ours), fmt(r) + "x time", "<= 2x",
                  verdict(r <= 2.0))
    # The DP noise of one step (d = 7850): the ziggurat sampler against the
    # polar method it replaced, in the same run.
    polar = best(tr.get("noise_polar/d:7850", []), "items_per_second")
    zig = best(tr.get("noise_ziggurat/d:7850", []), "items_per_second")
    if polar is not None and zig is not None:
        t.add("3 DP noise, ziggurat vs polar method, d=7850", "normals/s",
              fmt(zig), fmt(polar), fmt(zig / polar) + "x faster", "(info)", "")
    if tr and not torch:
        skipped = os.path.join(results, "torch.skipped")
        if os.path.exists(skipped):
            t.notes.append("PyTorch: " + open(skipped).read().strip())

    # 4. End to end.
    e2e = load_json(os.path.join(results, "e2e.json")) or {}
    emb, lau, flw = e2e.get("embedded"), e2e.get("launch"), e2e.get("flower")
    if emb and lau:
        r = lau["per_round_s"] / emb["per_round_s"]
        t.add("4 quickstart: launch --workers %d vs embedded" % e2e.get("workers", 8),
              "s/round", fmt(lau["per_round_s"]), fmt(emb["per_round_s"]),
              fmt(r) + "x time", "<= 1.3x", verdict(r <= 1.3))
        same = emb["model_hash"] == lau["model_hash"]
        t.notes.append("quickstart, %d rounds: model_hash embedded %s, launch %s (%s)"
                       % (emb["rounds"], emb["model_hash"], lau["model_hash"],
                          "identical" if same else "DIFFERENT"))
    if emb and flw:
        r = flw["per_round_s"] / emb["per_round_s"]
        t.add("4 quickstart: embedded vs Flower simulation", "s/round",
              fmt(emb["per_round_s"]), fmt(flw["per_round_s"]),
              fmt(r) + "x faster", ">= 100x", verdict(r >= 100))
        if "train_s_per_round" in flw:
            t.notes.append(
                "Flower, %d rounds: %.3g s/round; the ClientApps' training "
                "took %.3g s per round summed over the round's clients (the "
                "first round includes each Ray actor's data loading), the "
                "central evaluation %.3g s per round"
                % (flw["rounds"], flw["per_round_s"], flw["train_s_per_round"],
                   flw["eval_s_per_round"]))
    if e2e.get("flower_skipped"):
        t.notes.append("Flower: " + e2e["flower_skipped"])

    # 5. Scale.
    scale = load_jsonl(os.path.join(results, "scale.jsonl"))
    def ckpt_of(s):  # "1", "10s" or "0"; older results: checkpoint_every
        return str(s.get("checkpoint", s.get("checkpoint_every", 1)))
    for ckpt, label in (("1", "checkpoint every round (default)"),
                        ("10s", "checkpoints at most every 10 s"),
                        ("0", "checkpoints off")):
        runs = [s for s in scale if ckpt_of(s) == ckpt]
        if len(runs) < 2:
            continue
        lo, hi = runs[0], runs[-1]
        r = hi["per_round_s"] / lo["per_round_s"]
        t.add("5 FedAU scale, N=%d vs N=%d, %s" % (hi["clients"], lo["clients"], label),
              "ms/round", fmt(hi["per_round_s"] * 1e3), fmt(lo["per_round_s"] * 1e3),
              fmt(r) + "x time", "<= 1.2x", verdict(r <= 1.2))
        if ckpt == "0":
            per_client = (hi["max_rss_kb"] - lo["max_rss_kb"]) * 1024.0 / (
                hi["clients"] - lo["clients"])
            t.add("5 FedAU scale, memory", "bytes/client (RSS slope)",
                  fmt(per_client), "data rows %s" % fmt(hi["data_bytes_per_client"]),
                  "", "(report)", "")
    for s in scale:
        t.notes.append(
            "scale N=%d, checkpoint %s: %.3g ms/round over %d rounds, "
            "peak RSS %.1f MiB" % (s["clients"], ckpt_of(s),
                                   s["per_round_s"] * 1e3, s["rounds"],
                                   s["max_rss_kb"] / 1024.0))

    # 6. Wire.
    wire = load_json(os.path.join(results, "wire.json"))
    if wire and wire.get("per_round_bytes"):
        r = wire["per_round_bytes"] / wire["payload_per_round"]
        t.add("6 wire bytes per round vs payload", "bytes/round",
              fmt(wire["per_round_bytes"]), fmt(wire["payload_per_round"]),
              fmt(r) + "x", "<= 1.05x", verdict(r <= 1.05))
        t.notes.append(
            "wire: loopback bytes (IP packets with headers) of a launch run "
            "in its own network namespace; per round = difference of a "
            "%d- and a %d-round run / %d; the whole %d-round run averaged "
            "%.4gx the payload (join, config, start-up included)"
            % (wire["rounds_short"], wire["rounds_long"],
               wire["rounds_long"] - wire["rounds_short"], wire["rounds_long"],
               wire["total_ratio"]))
    elif wire and wire.get("skipped"):
        t.notes.append("wire: " + wire["skipped"])
    return t


def check_smoke(t):
    """A smoke run must produce every benchmark's row, and the embedded and
    distributed quickstart runs must end on the same model."""
    have = " ".join(r[0] for r in t.rows)
    missing = [p for p in ("1 aggregation", "2 local SGD vs Eigen floor",
                           "3 DP-SGD", "4 quickstart: launch", "5 FedAU scale")
               if p not in have]
    if "6 wire" not in have and not any(n.startswith("wire: needs") for n in t.notes):
        missing.append("6 wire")
    if missing:
        sys.exit("report: smoke run has no row for: " + ", ".join(missing))
    if any("DIFFERENT" in n for n in t.notes):
        sys.exit("report: embedded and launch runs ended on different models")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "metrics":
        print(json.dumps(run_metrics(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        t = table(sys.argv[2])
        text = t.markdown()
        with open(os.path.join(sys.argv[2], "table.md"), "w") as f:
            f.write(text + "\n")
        print(text)
        if not t.rows:
            sys.exit("report: no results in %s" % sys.argv[2])
        if os.path.exists(os.path.join(sys.argv[2], "SMOKE")):
            check_smoke(t)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
