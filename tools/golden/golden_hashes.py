#!/usr/bin/env python3
"""The golden list of final model hashes (issue 19: a refactoring must not
change any numerical result).

  tools/golden/golden_hashes.py record [--bin build/bin]   writes the list
  tools/golden/golden_hashes.py check  [--bin build/bin]   compares with it
  tools/golden/golden_hashes.py add    [--bin build/bin]   as check, then
      appends the new runs (a new config or test) to the list; fails, and
      writes nothing, if a listed run differs or is missing

Runs every config of configs/ with `fedsim run` (embedded; the wall-clock
config is left out: real time is not reproducible), and the runtime
equivalence and checkpoint tests of integration_test with their run
directories kept (gtest's TEST_TMPDIR), and takes from each run directory
the last model_hash of metrics.csv and the SHA-256 of model.bin.

Builds for different vector ISA levels differ in their last bits
(docs/architecture.md, "Vector ISA and determinism"), so there is one list
per level, tools/golden/model_hashes.LEVEL.txt (the level read from the
runs' run_start event): one line per run, `NAME MODEL_HASH
MODEL_BIN_SHA256`. `check` prints every run whose hashes differ, or that is
missing or new, and exits 1 if there is one.
"""
import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def list_path(isa):
    return os.path.join(HERE, f"model_hashes.{isa}.txt")
# Real time: not reproducible by design (docs/async.md, "The wall clock").
# Network experiments of minutes: their kind of run is in the list through
# NetworkRunTest (a CNN, an LSTM and the same preset on Fashion-MNIST).
# DataSourcesRunTest pins the data formats' runs (LEAF, CIFAR with
# augmentation, mapped .npy).
SKIP_CONFIGS = {"fedfix_wall.yaml", "fedau_cnn_fmnist.yaml", "fedau_cnn_fmnist_central.yaml"}
TEST_FILTER = ("RuntimeEquivalenceTest.*:CheckpointTest.*:NetworkRunTest.*:"
               "DataSourcesRunTest.*")


def run_hashes(run_dir):
    """(last model_hash of metrics.csv, SHA-256 of model.bin) or None."""
    metrics = os.path.join(run_dir, "metrics.csv")
    model = os.path.join(run_dir, "model.bin")
    if not (os.path.isfile(metrics) and os.path.isfile(model)):
        return None
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "model_hash" not in rows[-1]:
        return None
    with open(model, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return rows[-1]["model_hash"], digest


def build_isa(run_dir):
    """The vector ISA level in a run's run_start event."""
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        for line in f:
            event = json.loads(line)
            if event.get("event") == "run_start":
                return event.get("build", {}).get("isa")
    return None


def collect(bin_dir, work):
    """({run: (model_hash, model.bin digest)}, the build's ISA level)."""
    out = {}
    isa = None
    configs = sorted(c for c in os.listdir(os.path.join(ROOT, "configs"))
                     if c.endswith(".yaml") and c not in SKIP_CONFIGS)
    for name in configs:
        run_dir = os.path.join(work, "configs", name[:-5])
        result = subprocess.run(
            [os.path.join(bin_dir, "fedsim"), "run", os.path.join("configs", name),
             "--out", run_dir, "--quiet"], cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"golden: fedsim run configs/{name} failed: {result.stderr.strip()}")
        hashes = run_hashes(run_dir)
        if hashes is None:
            sys.exit(f"golden: configs/{name} left no metrics.csv/model.bin")
        out[f"configs/{name}"] = hashes
        isa = isa or build_isa(run_dir)
        print(f"  configs/{name}: {hashes[0]}", file=sys.stderr)
    tmp = os.path.join(work, "tests")
    os.makedirs(tmp)
    env = dict(os.environ, TEST_TMPDIR=tmp)
    result = subprocess.run(
        [os.path.join(bin_dir, "integration_test"), f"--gtest_filter={TEST_FILTER}"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit("golden: integration_test failed:\n" + result.stdout[-3000:])
    for dirpath, _, files in sorted(os.walk(tmp)):
        if "metrics.csv" in files:
            hashes = run_hashes(dirpath)
            if hashes is not None:
                out["tests/" + os.path.relpath(dirpath, tmp)] = hashes
    if not isa:
        sys.exit("golden: the runs' run_start events name no build.isa")
    return out, isa


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["record", "check", "add"])
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedsim_golden_") as work:
        got, isa = collect(os.path.abspath(args.bin), work)
    LIST = list_path(isa)
    if args.command == "record":
        with open(LIST, "w") as f:
            f.write(f"# tools/golden/golden_hashes.py record, a build for {isa}: run, "
                    "last model_hash, SHA-256 of model.bin\n")
            for name in sorted(got):
                f.write(f"{name} {got[name][0]} {got[name][1]}\n")
        print(f"golden: {len(got)} runs recorded in {os.path.relpath(LIST, ROOT)}")
        return 0
    if not os.path.isfile(LIST):
        print(f"golden: no list for builds of {isa} ({os.path.relpath(LIST, ROOT)}); "
              "`record` writes one")
        return 1
    print(f"golden: a build for {isa}, against {os.path.relpath(LIST, ROOT)}")
    want = {}
    with open(LIST) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, model_hash, digest = line.split()
            want[name] = (model_hash, digest)
    new = sorted(set(got) - set(want))
    bad = 0  # listed runs that differ or are missing
    for name in sorted(set(want) | set(got)):
        if name not in got:
            print(f"golden: {name}: missing (in the list, not run)")
            bad += 1
        elif name not in want:
            print(f"golden: {name}: new (run, not in the list): {got[name][0]}")
        elif got[name] != want[name]:
            print(f"golden: {name}: model_hash {got[name][0]}, expected {want[name][0]}"
                  f"{' (model.bin differs)' if got[name][1] != want[name][1] else ''}")
            bad += 1
    print(f"golden: {len(want) - bad} of {len(want)} runs identical")
    if bad or (new and args.command == "check"):
        return 1
    if args.command == "add" and new:
        with open(LIST) as f:
            lines = f.read().splitlines()
        header = [line for line in lines if line.startswith("#")]
        body = [line for line in lines if line.strip() and not line.startswith("#")]
        body += [f"{name} {got[name][0]} {got[name][1]}" for name in new]
        with open(LIST, "w") as f:
            f.write("\n".join(header + sorted(body)) + "\n")
        print(f"golden: {len(new)} new runs added to {os.path.relpath(LIST, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
