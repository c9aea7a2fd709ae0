#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

  report.py metrics RUN_DIR [on|off]   one JSON line: per-round time etc.
                                       (off: evaluation only after the
                                       last round, which is left out)
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


def run_metrics(run_dir, evaluation="on"):
    """evaluation "off": the run evaluated only after its last round
    (eval.every larger than rounds), which is then left out of per_round_s."""
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit("report: %s/metrics.csv has no rows" % run_dir)
    wall = [float(r["wall_time_s"]) for r in rows]
    n = len(rows)
    timed = wall[:-1] if evaluation == "off" and n > 2 else wall
    m = len(timed)
    per_round = (timed[-1] - timed[0]) / (m - 1) if m > 1 else timed[0]
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
        self.loops = []
        self.notes = []

    def add(self, bench, measure, fedsim, baseline, ratio, goal, met,
            gflops=None, gbs=None):
        """gflops, gbs: the rates of the row's fedsim measurement (GFLOP/s,
        GB/s of the work counted by the benchmark), None where not counted."""
        self.rows.append((bench, measure, fedsim, baseline, ratio, goal, met,
                          fmt(gflops), fmt(gbs)))

    def add_loop(self, name, evaluation, per_round_s, work):
        flops, nbytes = work
        self.loops.append((name, evaluation, fmt(per_round_s * 1e3),
                           fmt(flops / per_round_s / 1e9),
                           fmt(nbytes / per_round_s / 1e9)))

    def markdown(self):
        head = ("benchmark", "measure", "fedsim", "baseline", "ratio", "goal", "met",
                "GFLOP/s", "GB/s")
        lines = ["| " + " | ".join(head) + " |",
                 "| " + " | ".join("---" for _ in head) + " |"]
        for r in self.rows:
            lines.append("| " + " | ".join(r) + " |")
        if self.loops:
            head = ("quickstart loop (2 threads unless said)", "evaluation",
                    "ms/round", "GFLOP/s", "GB/s")
            lines += ["", "| " + " | ".join(head) + " |",
                      "| " + " | ".join("---" for _ in head) + " |"]
            for r in self.loops:
                lines.append("| " + " | ".join(r) + " |")
        if self.notes:
            lines.append("")
            lines.extend("- " + n for n in self.notes)
        return "\n".join(lines)


# The quickstart's work per round, counted from its shapes (configs/
# quickstart.yaml): softmax regression, d = 784 features, C = 10 classes;
# 10 of 100 clients a round draw on average a tenth of the 60,000 training
# rows; evaluation reads the 10,000 test and 60,000 training rows once.
QS_D, QS_C = 784, 10
QS_TRAIN_EXAMPLES = 6000
QS_EVAL_ROWS = 70000


def quickstart_work(evaluation, value_bytes, train_examples=QS_TRAIN_EXAMPLES):
    """(FLOPs, bytes) of one quickstart round: training 4 d C per example
    (the logits X W and the gradient X^T G) and its rows read once;
    evaluation 2 d C per row and every row read once. value_bytes: bytes of
    a stored feature (fedsim stores float32; a float64 loop 8)."""
    flops = 4.0 * QS_D * QS_C * train_examples
    nbytes = float(train_examples * QS_D * value_bytes)
    if evaluation == "on":
        flops += 2.0 * QS_D * QS_C * QS_EVAL_ROWS
        nbytes += QS_EVAL_ROWS * QS_D * value_bytes
    return flops, nbytes


def verdict(ok):
    if ok is None:
        return "n/a"
    return "yes" if ok else "**no**"


def table(results):
    t = Table()
    smoke = os.path.exists(os.path.join(results, "SMOKE"))
    if smoke:
        t.notes.append("--smoke run: tiny sizes, numbers mean nothing")

    # 0. Floors: the machine's GEMM rate and memory bandwidth.
    gemm = {}
    for e in load_jsonl(os.path.join(results, "gemm.jsonl")):
        # Measured at the start and the end of the run: the best of the two.
        key = (e["dtype"], e["threads"])
        gemm[key] = max(gemm.get(key, 0.0), e["gflops"] * 1e9)
        blas = e.get("blas", "?")
    stream = load_gbench(os.path.join(results, "stream.json"))
    if not stream:
        stream = load_gbench(os.path.join(results, "aggregation.json"))
    copy_bw = {}
    for threads in (1, 2):
        c = best(stream.get("stream_copy/threads:%d/real_time" % threads, []),
                 "bytes_per_second")
        if c is not None:
            copy_bw[threads] = c
            t.add("0 floor: STREAM copy, %d thread%s" % (threads, "s" if threads > 1 else ""),
                  "GB/s", fmt(c / 1e9), "", "", "(floor)", "", None, c / 1e9)
    for (dtype, threads), rate in sorted(gemm.items()):
        t.add("0 floor: GEMM %s, %d thread%s" % (dtype, threads, "s" if threads > 1 else ""),
              "GFLOP/s", fmt(rate / 1e9), "", "", "(floor)", "", rate / 1e9, None)
    if gemm:
        t.notes.append("GEMM rate: C = A B, n = %d, numpy's BLAS (%s), best of "
                       "its repetitions at the start and the end of the run" % (load_jsonl(os.path.join(
                           results, "gemm.jsonl"))[0]["n"], blas))
    elif os.path.exists(os.path.join(results, "gemm.skipped")):
        t.notes.append("GEMM rate: " + open(os.path.join(results, "gemm.skipped")).read().strip())

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
            flop = best(agg.get("%s/threads:%d/real_time" % (name, threads), []), "flop")
            t.add("1 aggregation, %s, %d thread%s" % (name, threads,
                                                     "s" if threads > 1 else ""),
                  "GB/s", fmt(v / 1e9), "triad %s (copy %s)" % (
                      fmt(triad / 1e9), fmt(copy / 1e9 if copy else None)),
                  fmt(r) + "x triad", ">= 0.8x", verdict(r >= 0.8),
                  flop / 1e9 if flop else None, v / 1e9)

    # 2. Local SGD and 3. DP.
    tr = load_gbench(os.path.join(results, "training.json"))
    torch = {}
    for e in load_jsonl(os.path.join(results, "torch.jsonl")):
        torch[(e["name"], e["dtype"])] = e["samples_per_s"]
    for batch in (10, 32, 128):
        for dtype, suffix in (("float64", ""), ("float32", "_f32")):
            ours = best(tr.get("local_sgd%s/batch:%d" % (suffix, batch), []), "items_per_second")
            ours_flop = best(tr.get("local_sgd%s/batch:%d" % (suffix, batch), []), "flop")
            # One thread here: that precision's GEMM rate.
            rate = gemm.get((dtype, 1))
            dp = best(tr.get("dp_sgd%s/batch:%d" % (suffix, batch), []), "items_per_second")
            ghost = best(tr.get("dp_sgd_ghost%s/batch:%d" % (suffix, batch), []), "items_per_second")
            if ours is not None and ours_flop and rate:
                floor = ours * rate / ours_flop  # samples/s at the GEMM rate
                t.add("2 local SGD vs GEMM floor (%s, 1 thread), B=%d" % (dtype, batch),
                      "samples/s", fmt(ours), fmt(floor), fmt(floor / ours) + "x floor's time",
                      "(info)", "", ours_flop / 1e9,
                      ours * QS_D * 4 / 1e9)
            pt = torch.get(("torch_sgd/%d" % batch, dtype))
            if ours is not None and pt is not None:
                r = ours / pt
                goal = ">= 3x" if batch == 10 and dtype == "float64" else "(info)"
                t.add("2 local SGD vs PyTorch %s, B=%d (fedsim %s)" % (dtype, batch, dtype),
                      "samples/s", fmt(ours), fmt(pt), fmt(r) + "x",
                      goal, verdict(r >= 3) if goal != "(info)" else "")
            if ours is not None and dp is not None:
                r = ours / dp
                t.add("3 DP-SGD step vs non-private, %s, B=%d" % (dtype, batch), "samples/s",
                      fmt(dp), fmt(ours), fmt(r) + "x time", "<= 2x",
                      verdict(r <= 2.0))
            if ours is not None and ghost is not None:
                r = ours / ghost
                t.add("3 DP-SGD step, ghost clipping, vs non-private, %s, B=%d" % (dtype, batch),
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

    # 7. Networks: a local epoch against PyTorch's, and DP-SGD's against
    # the non-private one (issue 21).
    nw = load_gbench(os.path.join(results, "network.json"))
    tnw = {}
    for e in load_jsonl(os.path.join(results, "torch_network.jsonl")):
        tnw[(e["preset"], e["rows"], e["batch"])] = e["samples_per_s"]
    def epoch_key(name):  # preset, rows, batch in numeric order
        parts = name.split("/")
        if len(parts) < 4 or parts[0] != "net_epoch":
            return (name, 0, 0)
        return (parts[1], int(parts[2].split(":")[1]), int(parts[3].split(":")[1]))
    for name in sorted(nw, key=epoch_key):
        parts = name.split("/")
        if parts[0] != "net_epoch":
            continue
        preset = parts[1]
        rows = int(parts[2].split(":")[1])
        batch = int(parts[3].split(":")[1])
        ours = best(nw[name], "items_per_second")
        flop = best(nw[name], "flop")
        pt = tnw.get((preset, rows, batch))
        if ours is None:
            continue
        if "lstm" in preset:
            goal, need = ">= 2x", 2.0
        else:
            goal, need = (">= 1x", 1.0) if batch < 128 else (">= 0.7x", 0.7)
        t.add("7 %s local epoch, %d rows, B=%d vs PyTorch" % (preset, rows, batch),
              "samples/s", fmt(ours), fmt(pt), fmt(ours / pt) + "x" if pt else "n/a",
              goal, verdict(ours / pt >= need) if pt else "", flop / 1e9 if flop else None)
    for prefix, what in (("dp_epoch/", "per-example gradients"),
                         ("dp_ghost_epoch/", "ghost clipping")):
        for name in sorted(n for n in nw if n.startswith(prefix)):
            base = "net_epoch/" + name[len(prefix):]
            ours = best(nw.get(base, []), "items_per_second")
            priv = best(nw[name], "items_per_second")
            if ours and priv:
                t.add("7 DP-SGD epoch (%s) vs non-private, %s"
                      % (what, name[len(prefix):].replace("/real_time", "")), "samples/s",
                      fmt(priv), fmt(ours), fmt(ours / priv) + "x time", "<= 3x",
                      verdict(ours / priv <= 3.0))
    for name in nw:
        if not name.startswith("conv_layer/"):
            continue
        flop = best(nw[name], "flop")
        rate = gemm.get(("float32", 1))
        if flop and rate:
            r = flop / rate
            t.add("7 convolution layers, %s, vs GEMM floor (float32, 1 thread)"
                  % name[len("conv_layer/"):].replace("/real_time", ""), "GFLOP/s", fmt(flop / 1e9), fmt(rate / 1e9),
                  fmt(r) + "x the floor's rate", ">= 0.5x", verdict(r >= 0.5), flop / 1e9)
    cnn = load_json(os.path.join(results, "cnn_fedavg.json"))
    cnn_pt = load_json(os.path.join(results, "cnn_torch_loop.json"))
    if cnn:
        # Without PyTorch (no bench/.venv, as in CI) the row has no baseline.
        ours = cnn["fedsim"]["per_round_s"]
        theirs = cnn_pt["per_round_s"] if cnn_pt else None
        t.add("7 FedAU CNN FedAvg round (10 clients x 5 steps of 32), evaluation off: "
              "fedsim vs plain PyTorch loop float32, 2 threads", "s/round", fmt(ours),
              fmt(theirs), fmt(theirs / ours) + "x faster" if theirs else "n/a", "(info)", "")
        flower = load_json(os.path.join(results, "cnn_flower.json"))
        if flower:
            theirs = flower["per_round_s"]
            t.add("7 FedAU CNN FedAvg round (10 clients x 5 steps of 32), evaluation off: "
                  "fedsim vs Flower simulation float32, 2 CPUs", "s/round", fmt(ours),
                  fmt(theirs), fmt(theirs / ours) + "x faster", "(info)", "")
    if nw and not tnw and os.path.exists(os.path.join(results, "torch_network.skipped")):
        t.notes.append("PyTorch networks: " +
                       open(os.path.join(results, "torch_network.skipped")).read().strip())

    # 4. End to end.
    e2e = load_json(os.path.join(results, "e2e.json")) or {}
    emb, lau, flw = e2e.get("embedded"), e2e.get("launch"), e2e.get("flower")
    quickstart(t, results, e2e, gemm, copy_bw)
    if emb and lau:
        r = lau["per_round_s"] / emb["per_round_s"]
        t.add("4 quickstart: launch --workers %d vs embedded" % e2e.get("workers", 8),
              "s/round", fmt(lau["per_round_s"]), fmt(emb["per_round_s"]),
              fmt(r) + "x time", "<= 1.3x", verdict(r <= 1.3))
        same = emb["model_hash"] == lau["model_hash"]
        t.notes.append("quickstart, %d rounds: model_hash embedded %s, launch %s (%s)"
                       % (emb["rounds"], emb["model_hash"], lau["model_hash"],
                          "identical" if same else "DIFFERENT"))
    if flw:
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
    for ckpt, label in (("1", "checkpoints at their default cadence"),
                        ("10s", "checkpoints at most every 10 s"),
                        ("0", "checkpoints off")):
        runs = [s for s in scale if ckpt_of(s) == ckpt]
        if len(runs) < 2:
            continue
        lo, hi = runs[0], runs[-1]
        r = hi["per_round_s"] / lo["per_round_s"]
        t.add("5 FedAU scale, N=%d vs N=%d, %s" % (hi["clients"], lo["clients"], label),
              "ms/round", fmt(hi["per_round_s"] * 1e3), fmt(lo["per_round_s"] * 1e3),
              fmt(r) + "x time", "<= 1.3x", verdict(r <= 1.3))
        if ckpt == "1":
            per_client = (hi["max_rss_kb"] - lo["max_rss_kb"]) * 1024.0 / (
                hi["clients"] - lo["clients"])
            data = hi["data_bytes_per_client"]
            t.add("5 FedAU scale, memory, N=%d vs N=%d" % (hi["clients"], lo["clients"]),
                  "bytes/client (RSS slope)", fmt(per_client),
                  "data rows %s" % fmt(data), fmt(per_client - data) + " beyond the data",
                  "<= 1024", verdict(per_client - data <= 1024))
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


def quickstart(t, results, e2e, gemm, copy_bw):
    """Section 4's rows: fedsim's quickstart round against the plain loops,
    Flower, itself on one thread, and the floors."""
    ours = {}
    for e in load_jsonl(os.path.join(results, "quickstart.jsonl")):
        ours[(e["threads"], e["eval"])] = e["metrics"]["per_round_s"]
    plain = {}
    for e in load_jsonl(os.path.join(results, "plain.jsonl")):
        ev = "on" if e["eval"] else "off"
        plain[(e["backend"], e["dtype"], ev)] = e
    flower = {"on": e2e.get("flower"), "off": e2e.get("flower_off")}
    for ev in ("on", "off"):
        mine = ours.get((2, ev))
        if mine is None:
            continue
        work = quickstart_work(ev, 4)
        rates = (work[0] / mine / 1e9, work[1] / mine / 1e9)
        t.add_loop("fedsim, embedded", ev, mine, work)
        if (1, ev) in ours:
            t.add_loop("fedsim, embedded, 1 thread", ev, ours[(1, ev)], work)
        for backend, dtype, goal in (("numpy", "float64", 3), ("numpy", "float32", 3),
                                     ("torch", "float32", 3), ("torch", "float64", None)):
            e = plain.get((backend, dtype, ev))
            if e is None:
                continue
            name = {"numpy": "plain numpy loop", "torch": "plain PyTorch loop"}[backend]
            t.add_loop("%s, %s" % (name, dtype), ev, e["per_round_s"],
                       quickstart_work(ev, 4 if dtype == "float32" else 8,
                                       e["train_examples_per_round"]))
            r = e["per_round_s"] / mine
            t.add("4 quickstart, evaluation %s: fedsim vs %s %s" % (ev, name, dtype),
                  "s/round", fmt(mine), fmt(e["per_round_s"]), fmt(r) + "x faster",
                  ">= %gx" % goal if goal else "(info)",
                  verdict(r >= goal) if goal else "", *rates)
        f = flower.get(ev)
        if f:
            t.add_loop("Flower simulation (Ray)", ev, f["per_round_s"],
                       quickstart_work(ev, 8))
            r = f["per_round_s"] / mine
            goal = 30 if ev == "off" else None
            t.add("4 quickstart, evaluation %s: fedsim vs Flower simulation" % ev,
                  "s/round", fmt(mine), fmt(f["per_round_s"]), fmt(r) + "x faster",
                  ">= %gx" % goal if goal else "(info)",
                  verdict(r >= goal) if goal else "", *rates)
        if (1, ev) in ours:
            r = ours[(1, ev)] / mine
            t.add("4 quickstart, evaluation %s: 2 threads vs 1" % ev, "s/round",
                  fmt(mine), fmt(ours[(1, ev)]), fmt(r) + "x faster", ">= 1.8x",
                  verdict(r >= 1.8), *rates)
    # Against the floors. The quickstart computes its products in float32
    # (model.precision's default for softmax), training and evaluation: the
    # sgemm rate for both.
    rate32 = gemm.get(("float32", 2))
    rate = rate32
    off, on = ours.get((2, "off")), ours.get((2, "on"))
    if rate32 and off:
        flops, nbytes = quickstart_work("off", 4)
        floor = flops / rate32
        t.add("4 quickstart training vs GEMM floor (float32, 2 threads)", "ms/round",
              fmt(off * 1e3), fmt(floor * 1e3), fmt(off / floor) + "x floor's time",
              "<= 2.5x", verdict(off / floor <= 2.5), flops / off / 1e9, nbytes / off / 1e9)
    if rate and off and on and 2 in copy_bw:
        on_work, off_work = quickstart_work("on", 4), quickstart_work("off", 4)
        flops, nbytes = on_work[0] - off_work[0], on_work[1] - off_work[1]
        mine = on - off
        floor = max(flops / rate, nbytes / copy_bw[2])
        t.add("4 quickstart evaluation vs floor (max of GEMM, copy; 2 threads)",
              "ms/round", fmt(mine * 1e3), fmt(floor * 1e3), fmt(mine / floor) + "x floor's time",
              "<= 1.5x", verdict(mine / floor <= 1.5), flops / mine / 1e9, nbytes / mine / 1e9)
    for f in ("numpy.skipped", "torch_loop.skipped"):
        path = os.path.join(results, f)
        if os.path.exists(path):
            t.notes.append("%s loop: %s" % (f.split(".")[0].split("_")[0],
                                            open(path).read().strip()))
    if plain:
        v = next(iter(plain.values())).get("versions", {})
        t.notes.append("plain loops: " + ", ".join("%s %s" % kv for kv in sorted(v.items())))
    t.notes.append("quickstart work per round (counted from its shapes): training "
                   "%.3g GFLOP, evaluation %.3g GFLOP and %.3g MB of float32 rows"
                   % (quickstart_work("off", 4)[0] / 1e9,
                      (quickstart_work("on", 4)[0] - quickstart_work("off", 4)[0]) / 1e9,
                      QS_EVAL_ROWS * QS_D * 4 / 1e6))


def check_smoke(t):
    """A smoke run must produce every benchmark's row, and the embedded and
    distributed quickstart runs must end on the same model."""
    have = " ".join(r[0] for r in t.rows)
    missing = [p for p in ("0 floor: STREAM copy", "1 aggregation", "2 local SGD",
                           "3 DP-SGD", "7 fedau_cnn_mnist local epoch", "7 DP-SGD epoch",
                           "7 FedAU CNN FedAvg round", "4 quickstart: launch", "4 quickstart, evaluation on",
                           "4 quickstart, evaluation off: 2 threads vs 1", "5 FedAU scale")
               if p not in have]
    if "6 wire" not in have and not any(n.startswith("wire: needs") for n in t.notes):
        missing.append("6 wire")
    if missing:
        sys.exit("report: smoke run has no row for: " + ", ".join(missing))
    if any("DIFFERENT" in n for n in t.notes):
        sys.exit("report: embedded and launch runs ended on different models")


def main():
    if len(sys.argv) in (3, 4) and sys.argv[1] == "metrics":
        print(json.dumps(run_metrics(*sys.argv[2:])))
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
