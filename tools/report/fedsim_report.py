#!/usr/bin/env python3
"""fedsim report: a summary table, plots and one HTML page of fedsim runs.

  fedsim report RUN_DIR... [--out DIR] [--metrics M,...] [--x round,wall,virtual]
                [--logy M,...|all] [--logx [AXES]] [--smooth K] [--size WxH] [--dpi N]
                [--no-plots] [--group-by KEY,... | --no-group] [--band sd|ci|minmax|none]
                [--at AXIS=X,...] [--tail P%|AXIS=W] [--jitter] [--field|--ref EVENT.KEY,...]
                [--derive NAME=EXPR ...] [--vs KEY,...] [--legend KEY,...] [--facet KEY,...]

Reads each run directory (docs/run-directory.md): metrics.csv, events.jsonl
and config.json. Runs that are still going are read safely: an incomplete
last line (no newline yet) is left out. Writes, in --out (default ./report):

  summary.csv, summary.md   one row per run: algorithm, the settings that
                            differ between runs, rounds, final and best
                            metrics, wall (and virtual) time, bytes, epsilon
  <metric>_vs_<x>.png       every metric against round and time, all runs
                            overlaid, the legend built from differing settings
  report.html               the tables and every plot, images embedded

Runs whose configs differ only in the seed (or in the --group-by keys) are
one group: the table then has a row per group with n and the mean and
sample standard deviation (ddof 1) of each final and best metric over its
runs (runs.csv keeps a row per run), and the plots draw each group's mean
curve with a band (--band: sd, the default; ci, a 95% Student-t interval of
the mean; minmax; none), time axes interpolated onto a common grid over the
time all the group's runs cover. The runtime, checkpoint and logging
sections never split a group. --no-group reports run by run.

The table is also printed on stdout. A broken run (missing directory,
damaged metrics.csv, a metric asked for that it lacks) gives one line on
stderr and exit code 1; the other runs are still reported. Usage errors exit
2. Plotting uses matplotlib (Debian's python3-matplotlib; docs/report.md).
"""
import argparse
import base64
import csv
import html
import io
import json
import math
import os
import re
import sys

PROG = "fedsim report"

# x axes: option name -> metrics.csv column.
X_AXES = {"round": "round", "wall": "wall_time_s", "virtual": "virtual_time_s"}
X_LABELS = {"round": "round", "wall": "wall-clock time (s)",
            "virtual": "virtual time (s)"}
# Columns that are not metrics.
NON_METRICS = {"round", "wall_time_s", "virtual_time_s", "model_hash"}
# Metrics summed over rounds in the table (traffic), and those whose final
# value is the whole story (privacy spent so far, cohort size).
TOTALS = ("bytes_up", "bytes_down")
NO_BEST = {"bytes_up", "bytes_down", "participants", "epsilon_max",
           "epsilon_mean"}
TEXT_COLUMNS = {"model_hash"}


class RunError(Exception):
    """A run that cannot be read: its one-line message."""


def warn(message):
    print(f"{PROG}: {message}", file=sys.stderr)


def higher_is_better(metric):
    return "accuracy" in metric


# ---------------------------------------------------------------------------
# Reading a run directory
# ---------------------------------------------------------------------------

def read_complete_lines(path):
    """The complete lines of a file being appended to, and the incomplete
    last line (text after the last newline) or None."""
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    parts = text.split("\n")
    tail = parts.pop()  # "" when the file ends with a newline
    lines = [p[:-1] if p.endswith("\r") else p for p in parts]
    return lines, (tail if tail != "" else None)


def parse_cell(text):
    if text == "":
        return None
    return float(text)  # accepts inf and nan as written by %.17g


def flatten(value, prefix=""):
    """Dotted keys of a config.json: {"local": {"lr": 0.1}} -> {"local.lr": 0.1};
    lists become their JSON text."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            out.update(flatten(child, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: json.dumps(value) if isinstance(value, list) else value}


class Run:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(os.path.normpath(path)) or path
        self.columns = []
        self.rows = []          # dicts column -> float or None (model_hash: str)
        self.events = []
        self.config = None      # flattened config.json, or None
        self.run_start = None
        self.run_end = None
        self.budget_spent = False
        self.incomplete_line = False
        self.label = self.name
        # The point's (key, value) pairs when the run is a point of a
        # `fedsim sweep` (its folder's sweep.json lists it), in grid order.
        self.sweep_values = None

    # Values of one column: (x, y) pairs where both are present and finite.
    def series(self, x_column, metric):
        xs, ys = [], []
        for row in self.rows:
            x, y = row.get(x_column), row.get(metric)
            if x is None or y is None or not math.isfinite(x) or not math.isfinite(y):
                continue
            xs.append(x)
            ys.append(y)
        return xs, ys

    def values(self, metric):
        return [r[metric] for r in self.rows if r.get(metric) is not None]

    def has_metric(self, metric):
        return any(r.get(metric) is not None for r in self.rows)

    @property
    def finished(self):
        return self.run_end is not None

    @property
    def rounds_done(self):
        return len(self.rows)

    @property
    def rounds_planned(self):
        if self.run_start and "rounds" in self.run_start:
            return self.run_start["rounds"]
        if self.config and "rounds" in self.config:
            return self.config["rounds"]
        return None

    @property
    def status(self):
        if not self.finished:
            return "unfinished"
        if self.budget_spent:
            return "stopped: privacy budget"
        return "finished"

    @property
    def algorithm(self):
        if self.run_start and self.run_start.get("algorithm"):
            return str(self.run_start["algorithm"])
        if self.config and "algorithm.name" in self.config:
            return display_value(self.config["algorithm.name"], "algorithm.name")
        return ""


_SWEEPS = {}


def sweep_values_of(path):
    """The grid values of the sweep point at `path` ([(key, value)] from the
    sweep.json beside it), or None."""
    parent = os.path.dirname(os.path.normpath(os.path.abspath(path)))
    index_path = os.path.join(parent, "sweep.json")
    if index_path not in _SWEEPS:
        try:
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
            _SWEEPS[index_path] = {p["dir"]: p["overrides"] for p in index.get("points", [])}
        except (OSError, ValueError, KeyError, TypeError):
            _SWEEPS[index_path] = {}
    overrides = _SWEEPS[index_path].get(os.path.basename(os.path.normpath(path)))
    if not overrides:
        return None
    return [tuple(o.split("=", 1)) for o in overrides if "=" in o]


def sweep_labels(runs, exclude=()):
    """Labels from the runs' sweep values that differ between them (keys in
    `exclude` left out), when every run is a sweep point and --legend is not
    given; None otherwise."""
    if LEGEND_KEYS or not runs or any(r.sweep_values is None for r in runs):
        return None
    keys = []
    for r in runs:
        for k, _ in r.sweep_values:
            if k not in keys and k not in exclude:
                keys.append(k)
    differ = [k for k in keys
              if len({dict(r.sweep_values).get(k) for r in runs}) > 1]
    if not differ:
        return None
    names = short_names(differ)
    return [", ".join(f"{names[k]}={dict(r.sweep_values).get(k, '-')}" for k in differ)
            for r in runs]


def load_run(path):
    if not os.path.isdir(path):
        raise RunError(f"{path}: no such run directory")
    run = Run(path)
    metrics_path = os.path.join(path, "metrics.csv")
    if not os.path.isfile(metrics_path):
        raise RunError(f"{path}: no metrics.csv (not a fedsim run directory)")

    events_path = os.path.join(path, "events.jsonl")
    if os.path.isfile(events_path):
        lines, _ = read_complete_lines(events_path)
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunError(f"{events_path} line {number}: not JSON ({e.msg})")
            run.events.append(event)
            kind = event.get("event")
            if kind == "run_start":
                run.run_start = event
            elif kind == "run_end":
                run.run_end = event
            elif kind == "privacy_budget_spent":
                run.budget_spent = True

    run.sweep_values = sweep_values_of(path)
    config_path = os.path.join(path, "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as f:
                run.config = flatten(json.load(f))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{config_path}: not valid JSON ({e})")

    lines, tail = read_complete_lines(metrics_path)
    if not lines:
        raise RunError(f"{metrics_path}: no header line (empty or truncated file)")
    header = next(csv.reader([lines[0]]))
    if not header or header[0] != "round":
        raise RunError(f"{metrics_path}: header must start with 'round', found {lines[0][:40]!r}")
    if tail is not None:
        if run.finished:
            raise RunError(
                f"{metrics_path}: last line is truncated ({tail[:30]!r}) although "
                "events.jsonl has run_end; the file is damaged")
        # A running run: the writer has not finished this line yet.
        run.incomplete_line = True
    # fedsim writes the virtual clock's time as `virtual_time` (time units;
    # seconds on the wall clock); the tool's x axis is `virtual_time_s`.
    header = ["virtual_time_s" if c == "virtual_time" else c for c in header]
    run.columns = header
    for number, cells in enumerate(csv.reader(lines[1:]), 2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise RunError(f"{metrics_path} line {number}: {len(cells)} cells, "
                           f"the header has {len(header)}")
        row = {}
        for column, cell in zip(header, cells):
            if column in TEXT_COLUMNS:
                row[column] = cell
                continue
            try:
                row[column] = parse_cell(cell)
            except ValueError:
                raise RunError(f"{metrics_path} line {number}: {column} = {cell!r} "
                               "is not a number")
        run.rows.append(row)
    return run


# ---------------------------------------------------------------------------
# Legend: the settings that differ between runs
# ---------------------------------------------------------------------------

ENUM_RE = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z0-9_]+$")


def display_value(value, key=""):
    """Config values as the YAML loader takes them: enum names by their
    lower-case suffix (NAME_FEDAVG -> fedavg; with the dotted key, the
    field's own prefix: algorithm.async_weights ASYNC_WEIGHTS_IDENTICAL ->
    identical), numbers as Python prints them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and ENUM_RE.match(value):
        prefix = key.rsplit(".", 1)[-1].upper() + "_"
        if key and value.startswith(prefix) and len(value) > len(prefix):
            return value[len(prefix):].lower()
        return value.split("_", 1)[1].lower()
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else repr(value)
    return str(value)


# Last components too generic to stand alone in a legend.
GENERIC = {"name", "mode", "model", "p", "source", "path", "every", "count"}


def short_names(keys):
    """The shortest dotted suffix of each key that no other key ends with
    (at least two components when the last one is generic: algorithm.name)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        first = 2 if parts[-1] in GENERIC and len(parts) >= 2 else 1
        for n in range(first, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            clash = any(other != key and (other == suffix or other.endswith("." + suffix))
                        for other in keys)
            if not clash:
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


# --legend: the keys that make the labels, instead of every differing one.
LEGEND_KEYS = []
# --at AXIS=X,... and --jitter: extra summary columns (set in main).
AT = {"axis": None, "points": []}
JITTER = {"on": False}
# --field EVENT.KEY,...: columns from a run's run_start or run_end event;
# --ref EVENT.KEY,...: such columns that --vs plots also draw.
FIELDS = []
REFS = []
# --tail P% | AXIS=W: the mean of each metric over the end of the run.
TAIL = {"fraction": None, "axis": None, "width": None}


def tail_values(run, metric):
    """The metric's measurements at the end of the run that --tail
    averages: the last P% of them (at least one), or those within W of the
    last on the AXIS."""
    if TAIL["fraction"] is not None:
        # Every measurement, NaN and inf included: a run that diverged has
        # a non-finite tail, not the mean of its values before it did.
        values = run.values(metric)
        if not values:
            return []
        keep = max(1, math.ceil(len(values) * TAIL["fraction"] - 1e-9))
        return values[-keep:]
    pairs = [(r.get(X_AXES[TAIL["axis"]]), r.get(metric)) for r in run.rows]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x)]
    if not pairs:
        return []
    last = pairs[-1][0]
    return [y for x, y in pairs if x >= last - TAIL["width"] - 1e-12]


def tail_mean(run, metric):
    values = tail_values(run, metric)
    return sum(values) / len(values) if values else None


def tail_column(metric):
    return f"{metric}_tail"


# --derive NAME=EXPR: metrics computed row by row from other columns and the
# run's config (e.g. sq_err=dist_to_opt**2, steps=round*local.max_steps).
DERIVE_FUNCTIONS = {"sqrt": math.sqrt, "log": math.log, "log10": math.log10,
                    "exp": math.exp, "abs": abs, "min": min, "max": max}
DERIVE_ARITY = {"sqrt": (1, 1), "log": (1, 2), "log10": (1, 1), "exp": (1, 1),
                "abs": (1, 1), "min": (1, 99), "max": (1, 99)}


class DeriveError(Exception):
    pass


def compile_derive(text):
    """(name, tree) of 'NAME=EXPR'; EXPR arithmetic (+ - * / ** and
    parentheses) on numbers, metrics.csv columns, dotted config keys and
    sqrt, log, log10, exp, abs, min, max. Raises DeriveError."""
    import ast
    name, eq, expr = text.partition("=")
    name = name.strip()
    if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not expr.strip():
        raise DeriveError(f"--derive = {text!r}; must be NAME=EXPR with NAME a column name "
                          "(letters, digits, _), e.g. sq_err=dist_to_opt**2")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise DeriveError(f"--derive = {text!r}; not an expression ({e.msg})")
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load,
               ast.Attribute, ast.Call, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow,
               ast.USub, ast.UAdd)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise DeriveError(f"--derive = {text!r}; {type(node).__name__} is not allowed "
                              "(numbers, columns, config keys, + - * / **, "
                              + ", ".join(DERIVE_FUNCTIONS) + ")")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise DeriveError(f"--derive = {text!r}; {node.value!r} is not a number")
            try:
                float(node.value)
            except OverflowError:
                raise DeriveError(f"--derive = {text!r}; {node.value} is too large for a float")
        if isinstance(node, ast.Call):
            if (not isinstance(node.func, ast.Name) or node.func.id not in DERIVE_FUNCTIONS
                    or node.keywords):
                raise DeriveError(f"--derive = {text!r}; functions are "
                                  + ", ".join(DERIVE_FUNCTIONS))
            low, high = DERIVE_ARITY[node.func.id]
            if not low <= len(node.args) <= high:
                raise DeriveError(f"--derive = {text!r}; {node.func.id} takes "
                                  + (f"{low}" if low == high else
                                     f"{low} to {high}" if high < 99 else f"{low} or more")
                                  + f" argument{'s' if high > 1 else ''}, not {len(node.args)}")
    return name, tree.body


def dotted(node):
    """'a.b.c' of an attribute chain of names, or None."""
    import ast
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def evaluate(node, row, config, known=()):
    """The value of a --derive tree for one row; None when a column is
    missing (empty here, or a column of other runs, `known`); raises
    DeriveError for an unknown name or a text column."""
    import ast
    import operator
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, (ast.Name, ast.Attribute)):
        key = dotted(node)
        if key in row:
            value = row[key]
            if value is not None and not isinstance(value, float):
                raise DeriveError(f"'{key}' is a text column, not a number")
            return value
        if config is not None and key in config and not isinstance(config[key], bool):
            try:
                return float(config[key])
            except (TypeError, ValueError):
                pass
        if key in known:
            return None
        raise DeriveError(f"'{key}' is neither a metrics.csv column nor a numeric config key")
    if isinstance(node, ast.UnaryOp):
        v = evaluate(node.operand, row, config, known)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp):
        a = evaluate(node.left, row, config, known)
        b = evaluate(node.right, row, config, known)
        if a is None or b is None:
            return None
        ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.Pow: operator.pow}
        try:
            v = ops[type(node.op)](a, b)
        except (ZeroDivisionError, OverflowError):
            return math.nan
        return v if isinstance(v, float) else math.nan  # complex powers
    if isinstance(node, ast.Call):
        args = [evaluate(a, row, config, known) for a in node.args]
        if any(a is None for a in args):
            return None
        try:
            return float(DERIVE_FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError, OverflowError, ZeroDivisionError):
            return math.nan
    raise DeriveError(f"cannot evaluate {type(node).__name__}")


def derive_columns(run, derived, known=()):
    """Adds the --derive columns to the run's rows; `known`: the columns of
    all the runs (one this run lacks is empty here)."""
    for name, tree in derived:
        for row in run.rows:
            row[name] = evaluate(tree, row, run.config, known)
        if name not in run.columns:
            run.columns.append(name)


def event_field(run, spec):
    """The number at `spec` ("run_start.dp.noise_multiplier") in the run's
    run_start or run_end event, or None."""
    event, _, path = spec.partition(".")
    value = {"run_start": run.run_start, "run_end": run.run_end}.get(event)
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def differing_settings(runs):
    """Sorted config keys whose values are not the same in every run that has
    a config.json ('name' left out: it names, it does not set); with
    --legend, those of its keys that differ, in its order."""
    configs = [r.config for r in runs if r.config is not None]
    if LEGEND_KEYS:
        # A section's name stands for its keys (--legend algorithm).
        present = sorted({k for c in configs for k in c})
        keys = []
        for key in LEGEND_KEYS:
            for k in ([key] if key in present else
                      [p for p in present if p.startswith(key + ".")]):
                if k not in keys:
                    keys.append(k)
        return [k for k in keys
                if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    if len(configs) < 2:
        return []
    keys = set()
    for c in configs:
        keys.update(c.keys())
    keys.discard("name")
    return sorted(k for k in keys
                  if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)


def assign_labels(runs):
    """Legend labels "key=value, ..." from the differing settings (of the
    sweep's grid when the runs are points of a sweep); the run directory's
    name when nothing differs (or without config.json)."""
    labels = sweep_labels(runs)
    if labels is not None:
        for run, label in zip(runs, labels):
            run.label = label
        return differing_settings(runs)
    keys = differing_settings(runs)
    names = short_names(keys)
    for run in runs:
        if run.config is None or not keys:
            run.label = run.name
            continue
        parts = [f"{names[k]}={display_value(run.config.get(k, '-'), k)}" for k in keys]
        run.label = ", ".join(parts)
    # Identical settings (repeats): tell them apart by directory.
    seen = {}
    for run in runs:
        seen.setdefault(run.label, []).append(run)
    for label, same in seen.items():
        if len(same) > 1 and label not in (r.name for r in same):
            for run in same:
                run.label = f"{label} ({run.name})"
    # Unique display names for duplicate directory basenames.
    by_name = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)
    for name, same in by_name.items():
        if len(same) > 1:
            for run in same:
                run.name = os.path.normpath(run.path)
    return keys


# ---------------------------------------------------------------------------
# Groups: the runs of one setting over seeds
# ---------------------------------------------------------------------------

# Sections that do not change what a run computes (as --resume allows them
# to differ): they never split a group.
NEUTRAL_PREFIXES = ("runtime.", "checkpoint.", "logging.", "distributed.")


class Group:
    def __init__(self, runs):
        self.runs = runs
        self.label = runs[0].label
        self.name = runs[0].name

    @property
    def n(self):
        return len(self.runs)


def group_runs(runs, by):
    """Runs whose flattened configs agree on every key but `by` (and the
    neutral sections and 'name'), in first-seen order. `by` empty: one group
    a run."""
    if not by:
        return [Group([r]) for r in runs]
    groups, order = {}, []
    for run in runs:
        if run.config is None:
            key = ("run", run.path)
        else:
            # 'name' names a run, it does not set it; unless a sweep's grid
            # sets it (a label for a combination of values, docs/sweeps.md).
            named = "name" in dict(run.sweep_values or [])
            key = json.dumps({k: v for k, v in run.config.items()
                              if (k != "name" or named) and k not in by
                              and not k.startswith(NEUTRAL_PREFIXES)}, sort_keys=True)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(run)
    return [Group(groups[k]) for k in order]


def label_groups(groups, by, hide=()):
    """A group's label: the settings that differ between groups (the `by`
    keys and the neutral sections left out), as assign_labels builds them
    for single runs; a run alone in its group takes its group's label."""
    heads = [g.runs[0] for g in groups]
    if len(heads) < 2:
        for g in groups:
            g.label = g.runs[0].name if g.n == 1 else "all runs"
        return []
    labels = sweep_labels(heads, exclude=tuple(by) + tuple(hide))
    if labels is not None:
        for g, label in zip(groups, labels):
            g.label = label
            if g.n == 1:
                g.runs[0].label = label
        return differing_settings(heads)
    saved = [(r.label, r.config) for r in heads]
    for r in heads:
        if r.config is not None:
            r.config = {k: v for k, v in r.config.items()
                        if k not in by and k not in hide and not k.startswith(NEUTRAL_PREFIXES)}
    if hide:
        # Panels of a facet: the differing settings without the hidden key,
        # repeated across panels by design (no directory names appended).
        keys = differing_settings(heads)
        names = short_names(keys)
        for r in heads:
            if r.config is not None and keys:
                r.label = ", ".join(f"{names[k]}={display_value(r.config.get(k, '-'), k)}"
                                    for k in keys)
            else:
                r.label = r.name
    else:
        keys = assign_labels(heads)
    for g, r, (label, config) in zip(groups, heads, saved):
        g.label = r.label
        g.name = r.name
        r.config = config
        r.label = g.label if g.n == 1 else label
    return keys


class MeanSd:
    """A mean with its sample standard deviation over n values."""
    def __init__(self, values):
        self.n = len(values)
        self.mean = sum(values) / self.n if self.n else None
        self.sd = (math.sqrt(sum((v - self.mean) ** 2 for v in values) / (self.n - 1))
                   if self.n > 1 else None)


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def band_halfwidth(sd, n, band):
    if band == "ci":
        return (T95[n - 2] if n - 1 <= len(T95) else 1.96) * sd / math.sqrt(n)
    return sd


def summarize_groups(groups, metrics):
    """One row per group: n, and the mean and sd over its runs of each
    summary column of the per-run table."""
    table = []
    everyone = [r for g in groups for r in g.runs]
    for g in groups:
        per_run = summarize(g.runs, metrics, everyone)
        finished = sum(1 for r in g.runs if r.finished)
        row = [("group", g.label), ("n", g.n),
               ("status", "finished" if finished == g.n else f"{g.n - finished} of {g.n} unfinished"),
               ("algorithm", g.runs[0].algorithm),
               ("rounds", MeanSd([r.rounds_done for r in g.runs]))]
        for i, (column, _) in enumerate(per_run[0]):
            if column in ("run", "status", "algorithm", "settings", "rounds", "rounds_planned"):
                continue
            values = [r[i][1] for r in per_run if r[i][1] is not None]
            row.append((column, MeanSd(values) if values else None))
        row.append(("runs", " ".join(r.name for r in g.runs)))
        table.append(row)
    return table


def expand_mean_sd(table):
    """The table with every MeanSd cell as two columns, _mean and _sd."""
    out = []
    for row in table:
        new = []
        for column, value in row:
            if isinstance(value, MeanSd) or (value is None and column not in
                                             ("group", "n", "status", "algorithm", "runs")):
                new.append((f"{column}_mean", value.mean if value else None))
                new.append((f"{column}_sd", value.sd if value else None))
            else:
                new.append((column, value))
        out.append(new)
    return out


# ---------------------------------------------------------------------------
# Summary table
# ---------------------------------------------------------------------------

def quality_metrics(runs, chosen):
    """Metrics that get final and best columns: the chosen ones, or every
    measured metric except traffic, cohort size and privacy."""
    present = []
    for run in runs:
        for column in run.columns:
            if column in NON_METRICS or column in present:
                continue
            if run.has_metric(column):
                present.append(column)
    pool = chosen if chosen else present
    return [m for m in pool if m in present and m not in NO_BEST]


def summarize(runs, metrics, all_runs=None):
    """Rows of the summary table: list of (column, value) pairs per run;
    values are numbers, strings or None. The optional columns (virtual
    time, bytes, epsilon) are there when any of `all_runs` (default: `runs`)
    has them, so that the rows of every group have the same columns."""
    every = all_runs if all_runs is not None else runs
    has_virtual = any(r.has_metric("virtual_time_s") for r in every)
    has_bytes = any(r.has_metric("bytes_up") or r.has_metric("bytes_down") for r in every)
    has_eps = any(r.has_metric("epsilon_max") for r in every)
    table = []
    for run in runs:
        row = [("run", run.name), ("status", run.status),
               ("algorithm", run.algorithm), ("settings", run.label if run.label != run.name else ""),
               ("rounds", run.rounds_done), ("rounds_planned", run.rounds_planned)]
        for m in metrics:
            values = run.values(m)
            final = values[-1] if values else None
            finite = [v for v in values if math.isfinite(v)]
            best = None
            if finite:
                best = max(finite) if higher_is_better(m) else min(finite)
            row += [(f"final_{m}", final), (f"best_{m}", best)]
            axis_column = X_AXES[AT["axis"]] if AT["axis"] else "round"
            xs, ys = run.series(axis_column, m)
            for x in AT["points"]:
                # The last measurement at or before x (None before the first).
                at = [y for xv, y in zip(xs, ys) if xv <= x + 1e-9]
                row.append((f"{m}_at_{x:g}", at[-1] if at else None))
            if TAIL["fraction"] is not None or TAIL["axis"] is not None:
                row.append((tail_column(m), tail_mean(run, m)))
            if JITTER["on"]:
                half = [y for xv, y in zip(xs, ys) if xs and xv > xs[-1] / 2]
                steps = [abs(b - a) for a, b in zip(half, half[1:])]
                row.append((f"{m}_jitter", sum(steps) / len(steps) if steps else None))
        wall = None
        if run.run_end is not None and run.run_end.get("wall_time_s") is not None:
            wall = float(run.run_end["wall_time_s"])
        elif run.values("wall_time_s"):
            wall = run.values("wall_time_s")[-1]
        row.append(("wall_time_s", wall))
        for spec in FIELDS:
            row.append((spec, event_field(run, spec)))
        if has_virtual:
            v = run.values("virtual_time_s")
            row.append(("virtual_time_s", v[-1] if v else None))
        if has_bytes:
            for column in TOTALS:
                v = run.values(column)
                row.append((column, int(sum(v)) if v else None))
        if has_eps:
            v = run.values("epsilon_max")
            row.append(("epsilon_max", v[-1] if v else None))
        table.append(row)
    return table


def fmt(value, exact=False):
    if value is None:
        return ""
    if isinstance(value, MeanSd):
        if value.sd is None:
            return fmt(value.mean, exact)
        return f"{fmt(value.mean, exact)} ± {fmt(value.sd, exact)}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        if exact:
            return repr(value)
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def text_table(table):
    header = [c for c, _ in table[0]]
    cells = [[fmt(v) for _, v in row] for row in table]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def markdown_table(table):
    header = [c for c, _ in table[0]]
    def esc(s):
        return s.replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(" --- " for _ in header) + "|"]
    for row in table:
        lines.append("| " + " | ".join(esc(fmt(v)) for _, v in row) + " |")
    return "\n".join(lines) + "\n"


def write_csv(table, path):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([c for c, _ in table[0]])
        for row in table:
            writer.writerow([fmt(v, exact=True) for _, v in row])


def html_table(table):
    header = [c for c, _ in table[0]]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in table:
        out.append("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for _, v in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

def smooth(values, window):
    """Trailing moving average over the last `window` values."""
    if window <= 1:
        return list(values)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def import_pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{PROG}: the plots need matplotlib, which {sys.executable} cannot "
              "import; install it (Debian: apt-get install python3-matplotlib, as "
              "scripts/setup.sh does; in a venv: pip install matplotlib), or set "
              "FEDSIM_PYTHON to a python3 that has it, or pass --no-plots for the "
              "tables only", file=sys.stderr)
        sys.exit(2)
    return plt


def group_curve(group, x_column, metric, band, points=200):
    """The group's mean curve and its band: (xs, mean, low, high), or None
    when its runs share no x range. Rounds: the rounds every run has;
    times: a grid of `points` over the range every run covers, each run
    interpolated linearly onto it."""
    series = [r.series(x_column, metric) for r in group.runs]
    series = [(xs, ys) for xs, ys in series if xs]
    if len(series) < len(group.runs) or not series:
        return None
    if x_column == "round":
        common = set(series[0][0])
        for xs, _ in series[1:]:
            common &= set(xs)
        grid = sorted(common)
        columns = [[dict(zip(xs, ys))[x] for x in grid] for xs, ys in series]
    else:
        lo = max(xs[0] for xs, _ in series)
        hi = min(xs[-1] for xs, _ in series)
        if not hi > lo:
            return None
        grid = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
        columns = [interpolate(xs, ys, grid) for xs, ys in series]
    if not grid:
        return None
    mean, low, high = [], [], []
    for i in range(len(grid)):
        values = [c[i] for c in columns]
        ms = MeanSd(values)
        mean.append(ms.mean)
        if band == "minmax":
            low.append(min(values))
            high.append(max(values))
        elif band == "none" or ms.sd is None:
            low.append(ms.mean)
            high.append(ms.mean)
        else:
            w = band_halfwidth(ms.sd, ms.n, band)
            low.append(ms.mean - w)
            high.append(ms.mean + w)
    return grid, mean, low, high


def interpolate(xs, ys, grid):
    """Piecewise-linear values of (xs, ys) (xs increasing) at grid points
    inside [xs[0], xs[-1]]."""
    out, j = [], 0
    for x in grid:
        while j + 1 < len(xs) - 1 and xs[j + 1] < x:
            j += 1
        if len(xs) == 1:
            out.append(ys[0])
            continue
        x0, x1 = xs[j], xs[j + 1]
        t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
        out.append(ys[j] + t * (ys[j + 1] - ys[j]))
    return out


BAND_TEXT = {"sd": "mean ± sd", "ci": "mean, 95% CI", "minmax": "mean, min-max",
             "none": "mean"}


def draw(ax, runs, groups, metric, axis, args):
    """The curves of `runs` (or of `groups`: a group of several runs as its
    mean and band, a group of one as its run) on `ax`; returns how many."""
    curves = 0
    for group in (groups or []):
        if group.n < 2:
            continue
        curve = group_curve(group, X_AXES[axis], metric, args.band)
        if curve is None:
            continue
        xs, mean, low, high = curve
        line, = ax.plot(xs, smooth(mean, args.smooth), linewidth=1.6,
                        label=f"{group.label} ({BAND_TEXT[args.band]}, n={group.n})")
        if args.band != "none":
            ax.fill_between(xs, smooth(low, args.smooth), smooth(high, args.smooth),
                            color=line.get_color(), alpha=0.2, linewidth=0)
        curves += 1
    if groups is not None:
        runs = [g.runs[0] for g in groups if g.n == 1]
    for run in runs:
        xs, ys = run.series(X_AXES[axis], metric)
        if not xs:
            continue
        if args.smooth > 1:
            line, = ax.plot(xs, ys, alpha=0.25, linewidth=1)
            ax.plot(xs, smooth(ys, args.smooth), color=line.get_color(),
                    label=run.label, linewidth=1.6)
        else:
            ax.plot(xs, ys, label=run.label, linewidth=1.6,
                    marker="o" if len(xs) <= 20 else None, markersize=3)
        curves += 1
    return curves


def log_x(args, axis):
    """Whether --logx asks for a log x axis on `axis` (an x axis or a --vs key)."""
    chosen = parse_list(args.logx)
    return "all" in chosen or axis in chosen


def place_legends(fig, axes, args):
    """A legend per panel, or, when every panel of a --facet figure has the
    same entries, one legend for the figure below the panels."""
    entries = [ax.get_legend_handles_labels() for ax in axes]
    labels = [tuple(l) for _, l in entries]
    if len(axes) > 1 and labels[0] and all(l == labels[0] for l in labels):
        handles = entries[0][0]
        fig.legend(handles, labels[0], loc="lower center", fontsize="small",
                   ncol=min(len(handles), 2 if max(len(l) for l in labels[0]) > 40 else 4),
                   frameon=False)
        fig._fedsim_legend_rows = math.ceil(len(handles) / min(
            len(handles), 2 if max(len(l) for l in labels[0]) > 40 else 4))
        return
    for ax, (handles, _) in zip(axes, entries):
        if handles:
            ax.legend(fontsize="x-small" if args.facet else "small", loc="best")


def finish_layout(fig, axes, args):
    """tight_layout, leaving room at the bottom for a figure legend."""
    rows = getattr(fig, "_fedsim_legend_rows", 0)
    if rows:
        height = args.size[1] / args.dpi
        fig.tight_layout(rect=(0, min(0.6, (rows * 0.19 + 0.1) / height), 1, 1))
    else:
        fig.tight_layout()


def facet_value(run, keys):
    """The panel of `run`: its values of the --facet keys."""
    names = short_names(keys)
    return ", ".join(
        f"{names[k]}={display_value(run.config[k], k) if run.config and k in run.config else '-'}"
        for k in keys)


def plot(plt, runs, metric, axis, args, path, groups=None):
    """One PNG of `metric` against `axis` with every run (or group: its mean
    and band) that has both, in one panel per value of --facet if given;
    returns the number of curves drawn."""
    width, height = args.size
    panels = [(None, runs, groups)]
    if args.facet:
        values = []
        for r in runs:
            if facet_value(r, args.facet) not in values:
                values.append(facet_value(r, args.facet))
        # Each panel's curves in the order of their labels: panels with the
        # same settings draw them in the same colours, whatever order the
        # run directories came in.
        panels = [(v, sorted((r for r in runs if facet_value(r, args.facet) == v),
                             key=lambda r: r.label),
                   None if groups is None else
                   sorted((g for g in groups if facet_value(g.runs[0], args.facet) == v),
                          key=lambda g: g.label))
                  for v in values]
    fig, axes = plt.subplots(1, len(panels), figsize=(width / args.dpi, height / args.dpi),
                             dpi=args.dpi, sharey=True, squeeze=False)
    curves = 0
    for ax, (value, panel_runs, panel_groups) in zip(axes[0], panels):
        lines = len(panel_groups) if panel_groups is not None else len(panel_runs)
        if lines > 10:  # more curves than the default cycle's 10 colours
            ax.set_prop_cycle(color=plt.cm.tab20.colors)
        drawn = draw(ax, panel_runs, panel_groups, metric, axis, args)
        curves += drawn
        ax.set_xlabel(X_LABELS[axis])
        if axis == "round":
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax is axes[0][0]:
            ax.set_ylabel(metric)
        title = f"{metric} vs {X_LABELS[axis].split(' (')[0]}"
        if value is not None:
            title = value
        elif args.smooth > 1:
            title += f" (moving average of {args.smooth})"
        ax.set_title(title, fontsize="small" if value is not None else None)
        if "all" in args.logy or metric in args.logy:
            ax.set_yscale("log")
        if log_x(args, axis):
            ax.set_xscale("symlog" if axis == "round" else "log")
        ax.grid(True, alpha=0.3)
    if curves:
        place_legends(fig, axes[0], args)
        if args.facet:
            fig.suptitle(f"{metric} vs {X_LABELS[axis].split(' (')[0]}")
        finish_layout(fig, axes[0], args)
        fig.savefig(path, dpi=args.dpi)
    plt.close(fig)
    return curves


def summary_value(run, metric):
    """What a --vs plot draws for a run: the --tail mean if asked, else the
    final value."""
    if TAIL["fraction"] is not None or TAIL["axis"] is not None:
        return tail_mean(run, metric)
    values = run.values(metric)
    return values[-1] if values else None


def numeric_setting(run, key):
    """The run's config value at `key` as a float (config.json writes 64-bit
    integers as strings, as protobuf's JSON mapping does), or None."""
    v = run.config.get(key) if run.config else None
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def follows(runs, key):
    """The other config keys whose value is a function of `key`'s across
    the runs (the keys linked to it in a sweep, as rounds to local.max_steps
    when their product is held fixed): a --vs line runs along them."""
    configs = [r.config for r in runs if r.config is not None]
    if not configs:
        return ()
    out = []
    for k in sorted({k for c in configs for k in c}):
        if k in (key, "name") or k.startswith(NEUTRAL_PREFIXES):
            continue
        values = {}
        for c in configs:
            values.setdefault(json.dumps(c.get(key)), set()).add(json.dumps(c.get(k)))
        if all(len(v) == 1 for v in values.values()) and \
                len({next(iter(v)) for v in values.values()}) > 1:
            out.append(k)
    return tuple(out)


def vs_series(runs, groups, metric, key, args):
    """What a --vs plot of `metric` against the numeric config value `key`
    draws: ([(panel, [(label, xs, stats, values, refs)])], skipped), panel
    the --facet value (None without), a line per combination of the other
    settings that differ (keys that follow `key` left out), `stats` a MeanSd
    of the final (or --tail) values of a group's runs at each x (NaN when a
    run diverged), `values` those values, `refs` {spec: [mean --ref value
    at each x]}; `skipped` the runs without a numeric `key`."""
    units = groups if groups is not None else [Group([r]) for r in runs]
    skipped = [r for g in units for r in g.runs if numeric_setting(r, key) is None]
    units = [[r for r in g.runs if numeric_setting(r, key) is not None] for g in units]
    units = [Group(members) for members in units if members]
    kept = [r for g in units for r in g.runs]
    if not units:
        return [], skipped
    saved = [(g, g.label, g.name) for g in units] + [(r, r.label, r.name) for r in kept]
    try:
        by = args.group_by if groups is not None else []
        hidden = tuple(args.facet) + (key,) + follows(kept, key)
        keys = label_groups(units, by, hide=hidden)
        heads = [g.runs[0] for g in units]
        if sweep_labels(heads, exclude=tuple(by) + hidden) is None and not keys:
            for g in units:  # nothing else differs: one line
                g.label = metric
        panels = {}
        for g in units:
            panel = facet_value(g.runs[0], args.facet) if args.facet else None
            panels.setdefault(panel, {}).setdefault((g.label, ""), []).append(g)
        for panel, series in panels.items():
            # A label (--legend may print less than what differs) whose
            # groups meet at one x is several settings: a line each.
            for (label, _), members in list(series.items()):
                xs = [numeric_setting(g.runs[0], key) for g in members]
                if len(set(xs)) == len(xs):
                    continue
                del series[(label, "")]
                for g in members:
                    config = g.runs[0].config or {}
                    named = "name" in dict(g.runs[0].sweep_values or [])
                    signature = json.dumps({k: v for k, v in config.items()
                                            if k not in hidden and k not in by
                                            and (k != "name" or named)
                                            and not k.startswith(NEUTRAL_PREFIXES)},
                                           sort_keys=True)
                    series.setdefault((label, signature), []).append(g)
        out = []
        for panel, series in panels.items():
            lines = []
            for (label, _), members in series.items():
                points = []
                for g in members:
                    ys = [summary_value(r, metric) for r in g.runs]
                    ys = [y for y in ys if y is not None]
                    if not ys:
                        continue
                    refs = {}
                    for spec in REFS:
                        values = [v for v in (event_field(r, spec) for r in g.runs)
                                  if v is not None]
                        refs[spec] = sum(values) / len(values) if values else None
                    points.append((numeric_setting(g.runs[0], key), MeanSd(ys), ys, refs))
                if not points:
                    continue
                points.sort(key=lambda p: p[0])
                lines.append((label, [p[0] for p in points], [p[1] for p in points],
                              [p[2] for p in points],
                              {spec: [p[3][spec] for p in points] for spec in REFS}))
            out.append((panel, lines))
        return out, skipped
    finally:
        for obj, label, name in saved:
            obj.label, obj.name = label, name


def plot_vs(plt, runs, groups, metric, key, args, path):
    """One PNG of vs_series: a line per setting with error bars (--band)
    over a group's runs, one panel per --facet value, each --ref a black
    dotted reference line (drawn once where lines share it). Returns the
    number of lines drawn."""
    panels, skipped = vs_series(runs, groups, metric, key, args)
    if not panels:
        return 0, skipped
    width, height = args.size
    fig, axes = plt.subplots(1, len(panels), figsize=(width / args.dpi, height / args.dpi),
                             dpi=args.dpi, sharey=True, squeeze=False)
    drawn = 0
    tail = TAIL["fraction"] is not None or TAIL["axis"] is not None
    for ax, (panel, lines) in zip(axes[0], panels):
        references, labelled, span = [], set(), []
        for label, xs, stats, values, refs in lines:
            span += [y for v in values for y in v if math.isfinite(y)]
            if args.band == "minmax":
                errors = [[m.mean - min(v) for m, v in zip(stats, values)],
                          [max(v) - m.mean for m, v in zip(stats, values)]]
            elif args.band == "none" or all(m.sd is None or not math.isfinite(m.sd)
                                            for m in stats):
                errors = None
            else:
                errors = [0.0 if m.sd is None or not math.isfinite(m.sd)
                          else band_halfwidth(m.sd, m.n, args.band)
                          for m in stats]
            n = max(m.n for m in stats)
            text = label if n == 1 else f"{label} ({BAND_TEXT[args.band]}, n={n})"
            ax.errorbar(xs, [m.mean for m in stats], yerr=errors, marker="o", markersize=4,
                        capsize=3, linewidth=1.6, label=text)
            drawn += 1
            for spec, ys in refs.items():
                curve = [(x, y) for x, y in zip(xs, ys) if y is not None]
                if curve and curve not in references:
                    references.append(curve)
                    ax.plot([c[0] for c in curve], [c[1] for c in curve], "k:", linewidth=1.2,
                            label=None if spec in labelled else spec.split(".", 1)[1])
                    labelled.add(spec)
        ax.set_xlabel(key)
        if ax is axes[0][0]:
            ax.set_ylabel(f"{metric} ({'tail mean' if tail else 'final'})")
        if panel is not None:
            ax.set_title(panel, fontsize="small")
        if "all" in args.logy or metric in args.logy:
            ax.set_yscale("log")
            # The measured values set the range; a reference line far below
            # (a bias of 1e-25) leaves the panel rather than flatten it.
            positive = [v for v in span if v > 0]
            if positive and references:
                ax.set_ylim(min(positive) / 3, max(positive) * 3)
        if log_x(args, key):
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    if drawn:
        place_legends(fig, axes[0], args)
        fig.suptitle(f"{metric} vs {key}")
        finish_layout(fig, axes[0], args)
        fig.savefig(path, dpi=args.dpi)
    plt.close(fig)
    return drawn, skipped


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:0.9em;margin-bottom:1em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}figure{display:inline-block;margin:0.5em}
figcaption{font-size:0.85em;color:#555}code{background:#f6f6f6}"""


def write_html(path, runs, table, keys, shared, plots, problems):
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             "<title>fedsim report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>fedsim report</h1>", "<h2>Runs</h2>", "<ul>"]
    for run in runs:
        planned = run.rounds_planned
        parts.append(
            f"<li><b>{html.escape(run.name)}</b> ({html.escape(run.label)}): "
            f"<code>{html.escape(run.path)}</code>, {html.escape(run.status)}, "
            f"{run.rounds_done}{'/' + str(planned) if planned is not None else ''} rounds</li>")
    parts.append("</ul>")
    if problems:
        parts.append("<h2>Problems</h2><ul>")
        parts += [f"<li>{html.escape(p)}</li>" for p in problems]
        parts.append("</ul>")
    parts += ["<h2>Summary</h2>", html_table(table)]
    if keys:
        parts.append("<p>Settings that differ between runs: "
                     + ", ".join(f"<code>{html.escape(k)}</code>" for k in keys) + "</p>")
    if shared:
        parts.append("<details><summary>Settings shared by all runs</summary><table>")
        parts += [f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(display_value(v, k))}</td></tr>"
                  for k, v in sorted(shared.items())]
        parts.append("</table></details>")
    if plots:
        parts.append("<h2>Plots</h2>")
    for file_name, caption in plots:
        with open(os.path.join(os.path.dirname(path), file_name), "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        parts.append(f"<figure><img src='data:image/png;base64,{data}' "
                     f"alt='{html.escape(caption)}' title='{html.escape(file_name)}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def shared_settings(runs):
    configs = [r.config for r in runs if r.config is not None]
    if not configs:
        return {}
    first = configs[0]
    return {k: v for k, v in first.items()
            if k != "name" and all(k in c and c[k] == v for c in configs[1:])}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_size(text):
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--size = {text!r}; must be WIDTHxHEIGHT in pixels, e.g. 800x500")
    w, h = int(m.group(1)), int(m.group(2))
    if not (100 <= w <= 10000 and 100 <= h <= 10000):
        raise argparse.ArgumentTypeError(f"--size = {text!r}; width and height must be in [100, 10000]")
    return w, h


def parse_list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}; must be an integer >= 1")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG, description="Summary table, plots and an HTML page of fedsim runs "
        "(finished or still running). docs/report.md")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", default="report", help="output directory (default: ./report)")
    p.add_argument("--metrics", type=parse_list, default=[],
                   help="comma-separated metrics.csv columns to tabulate and plot "
                        "(default: every measured one)")
    p.add_argument("--x", type=parse_list, default=["round", "time"],
                   help="x axes: round, wall, virtual, time (= wall and virtual), none (no "
                        "curves: only the --vs plots); default round,time")
    p.add_argument("--logy", type=parse_list, default=[],
                   help="metrics drawn on a log y axis, comma-separated, or 'all'")
    p.add_argument("--logx", nargs="?", const="all", default="", type=str,
                   help="log x axes: all (no value), or only these comma-separated axes and "
                        "--vs keys (e.g. --logx local.dp.clip)")
    p.add_argument("--smooth", type=positive_int, default=1,
                   help="trailing moving average over K points (default 1: none)")
    p.add_argument("--size", type=parse_size, default=(800, 500),
                   help="plot size in pixels, WxH (default 800x500)")
    p.add_argument("--dpi", type=positive_int, default=100, help="dots per inch (default 100)")
    p.add_argument("--no-plots", action="store_true", help="only the tables")
    p.add_argument("--group-by", type=parse_list, default=["seed"],
                   help="config keys that vary within a group: runs that differ only in "
                        "them are summarised together (default: seed)")
    p.add_argument("--no-group", action="store_true",
                   help="one row and one curve per run")
    p.add_argument("--at", default="",
                   help="AXIS=X,X,...: also tabulate each metric's last value at or before "
                        "these x (AXIS round, wall or virtual), e.g. virtual=5,10,25,50")
    p.add_argument("--field", type=parse_list, default=[],
                   help="EVENT.KEY,...: also tabulate these numbers of each run's run_start or "
                        "run_end event (e.g. run_start.dp.noise_multiplier, run_end.rounds)")
    p.add_argument("--ref", type=parse_list, default=[],
                   help="EVENT.KEY,...: as --field, and drawn in the --vs plots as black dotted "
                        "reference lines (a closed-form value beside the measured one)")
    p.add_argument("--jitter", action="store_true",
                   help="also tabulate each metric's mean absolute change between consecutive "
                        "measurements in the second half of the run (on the --at axis, else "
                        "rounds)")
    p.add_argument("--legend", type=parse_list, default=[],
                   help="config keys that make the labels, a section's name for all its keys "
                        "(default: every key whose value differs between the runs)")
    p.add_argument("--facet", type=parse_list, default=[],
                   help="config keys: one panel per combination of their values (labels then "
                        "leave them out)")
    p.add_argument("--tail", default="",
                   help="P%% or AXIS=W: also tabulate each metric's mean over the last P "
                        "percent of its measurements, or over the last W of the AXIS (round, "
                        "wall, virtual), e.g. 10%% or virtual=1; --vs plots it")
    p.add_argument("--derive", action="append", default=[], metavar="NAME=EXPR",
                   help="a metric computed row by row: EXPR on numbers, metrics.csv columns, "
                        "numeric config keys (dotted), + - * / ** and sqrt, log, log10, exp, "
                        "abs, min, max; e.g. sq_err=dist_to_opt**2 (repeatable)")
    p.add_argument("--vs", type=parse_list, default=[],
                   help="config keys: also plot each metric's final (or --tail) value against "
                        "each key's numeric value, a line per other setting, error bars over "
                        "a group's runs, --ref values as dotted reference lines")
    p.add_argument("--band", choices=sorted(BAND_TEXT), default="sd",
                   help="a group's band: sd (default), ci (95%% Student t of the mean), "
                        "minmax, none")
    args = p.parse_args(argv)
    if args.no_group:
        args.group_by = []
    axes = []
    for a in args.x:
        if a == "none":  # only the --vs plots (or none)
            continue
        for name in (["wall", "virtual"] if a == "time" else [a]):
            if name not in X_AXES:
                p.error(f"--x = {a!r}; must be among round, wall, virtual, time, none")
            if name not in axes:
                axes.append(name)
    args.x = axes
    logx = []
    for a in parse_list(args.logx):
        if a == "time":
            logx += ["wall", "virtual"]
        elif a == "all" or a in X_AXES or a in args.vs:
            logx.append(a)
        else:
            p.error(f"--logx = {a!r}; must be all (no value), round, wall, virtual, time or a "
                    "--vs key (a run directory right after --logx is taken as its value: give "
                    "--logx after the run directories, or --logx=AXES)")
    args.logx = ",".join(logx)
    for flag, specs in (("--field", args.field), ("--ref", args.ref)):
        for spec in specs:
            if spec.partition(".")[0] not in ("run_start", "run_end") or "." not in spec:
                p.error(f"{flag} = {spec!r}; must be run_start.KEY or run_end.KEY (dots for "
                        "nested keys)")
    if args.at:
        axis, _, points = args.at.partition("=")
        try:
            values = [float(v) for v in parse_list(points)]
        except ValueError:
            values = []
        if axis not in X_AXES or not values:
            p.error(f"--at = {args.at!r}; must be AXIS=X,X,... with AXIS round, wall or "
                    "virtual (e.g. virtual=5,10,25,50)")
        args.at = (axis, values)
    if args.tail:
        text = args.tail
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                percent = -1.0
            if not 0 < percent <= 100:
                p.error(f"--tail = {text!r}; a percentage must be in (0, 100], e.g. 10%")
            args.tail = (percent / 100.0, None, None)
        else:
            axis, _, width = text.partition("=")
            try:
                w = float(width)
            except ValueError:
                w = -1.0
            if axis not in X_AXES or not w > 0:
                p.error(f"--tail = {text!r}; must be P% or AXIS=W with AXIS round, wall or "
                        "virtual and W > 0 (e.g. 10% or virtual=1)")
            args.tail = (None, axis, w)
    derived = []
    for text in args.derive:
        try:
            derived.append(compile_derive(text))
        except DeriveError as e:
            p.error(str(e))
    args.derive = derived
    return args


def main(argv):
    args = parse_args(argv)
    LEGEND_KEYS[:] = args.legend
    AT["axis"], AT["points"] = args.at if args.at else (None, [])
    JITTER["on"] = args.jitter
    FIELDS[:] = args.field + [r for r in args.ref if r not in args.field]
    REFS[:] = args.ref
    TAIL["fraction"], TAIL["axis"], TAIL["width"] = args.tail if args.tail else (None,) * 3
    problems = []

    def problem(message):
        problems.append(message)
        warn(message)

    runs = []
    for path in args.runs:
        try:
            run = load_run(path)
        except (RunError, OSError) as e:
            problem(str(e))
            continue
        if run.incomplete_line:
            warn(f"{path}: metrics.csv ends in an incomplete line (run still going?); "
                 f"reporting its {run.rounds_done} complete rounds")
        runs.append(run)
    if args.derive:
        known = {c for run in runs for c in run.columns}
        kept = []
        for run in runs:
            try:
                derive_columns(run, args.derive, known)
                kept.append(run)
            except DeriveError as e:
                problem(f"{run.path}: --derive: {e}")
        runs = kept
    if not runs:
        warn("no run could be read")
        return 1

    keys = assign_labels(runs)
    measured = []
    for run in runs:
        for column in run.columns:
            if column not in NON_METRICS and column not in measured and run.has_metric(column):
                measured.append(column)
    if args.metrics:
        for m in args.metrics:
            for run in runs:
                if not run.has_metric(m):
                    have = [c for c in run.columns if c not in NON_METRICS and run.has_metric(c)]
                    problem(f"{run.path}: no values of metric '{m}' "
                            f"(it has: {', '.join(have) or 'none'})")
        plot_metrics = [m for m in args.metrics if m in measured]
    else:
        plot_metrics = measured

    metrics_for_table = quality_metrics(runs, args.metrics)
    table = summarize(runs, metrics_for_table)
    groups = group_runs(runs, args.group_by)
    grouped = any(g.n > 1 for g in groups)
    os.makedirs(args.out, exist_ok=True)
    if grouped:
        label_groups(groups, args.group_by)
        write_csv(table, os.path.join(args.out, "runs.csv"))
        table = summarize_groups(groups, metrics_for_table)
        write_csv(expand_mean_sd(table), os.path.join(args.out, "summary.csv"))
        if args.facet:
            # The plots' legends leave the panel's key out.
            label_groups(groups, args.group_by, hide=tuple(args.facet))
    else:
        groups = None
        write_csv(table, os.path.join(args.out, "summary.csv"))
        if args.facet:
            # The plots' legends leave the panel's key out here too.
            label_groups([Group([r]) for r in runs], [], hide=tuple(args.facet))
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(markdown_table(table))
    print(text_table(table))

    plots = []
    vs_skipped = set()
    if not args.no_plots and plot_metrics:
        plt = import_pyplot()
        for metric in plot_metrics:
            for axis in args.x:
                if not any(run.series(X_AXES[axis], metric)[0] for run in runs):
                    continue
                file_name = f"{metric}_vs_{axis}.png"
                if plot(plt, runs, metric, axis, args, os.path.join(args.out, file_name),
                        groups):
                    plots.append((file_name, f"{metric} vs {X_LABELS[axis]}"))
            for key in args.vs:
                file_name = f"{metric}_vs_{key}.png"
                drawn, skipped = plot_vs(plt, runs, groups, metric, key, args,
                                         os.path.join(args.out, file_name))
                for r in skipped:
                    if (key, r.path) not in vs_skipped:
                        vs_skipped.add((key, r.path))
                        v = r.config.get(key) if r.config else None
                        problem(f"{r.path}: --vs {key}: no numeric {key} (config.json: {v!r}); "
                                "left out of that plot")
                if drawn:
                    what = "tail mean" if args.tail else "final value"
                    plots.append((file_name, f"{metric} ({what}) vs {key}"))
    html_path = os.path.join(args.out, "report.html")
    write_html(html_path, runs, table, keys, shared_settings(runs), plots, problems)
    print(f"{PROG}: {len(runs)} run(s), {len(plots)} plot(s), tables and "
          f"{html_path} in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
