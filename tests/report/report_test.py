"""Tests of `fedsim report` (tools/report/fedsim_report.py) on the hand-made
run directories in tests/fixtures/runs/ (values chosen so that every table
cell is known):

  fedavg_lr0.05   FedAvg, local.lr 0.05, 4 rounds, finished (run_end at 2.25 s)
  fedavg_lr0.1    FedAvg, local.lr 0.1, local DP (clip), eval.every 2,
                  4 rounds, finished (run_end at 4.5 s), epsilon 1..4
  fedau_running   FedAU, 10 rounds planned, 3 complete rows and a 4th line
                  half written (no newline), no run_end: still going

Environment: FEDSIM_SOURCE_DIR (the repository), FEDSIM_BIN_DIR (build/bin,
optional: the `fedsim report` pass-through test needs it).
Run: python3 -m unittest discover -s tests/report -p 'report_test.py'
"""
import base64
import csv
import importlib.util
import os
import shutil
import json
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("FEDSIM_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
SCRIPT = os.path.join(SOURCE, "tools", "report", "fedsim_report.py")
FIXTURES = os.path.join(SOURCE, "tests", "fixtures", "runs")
A = os.path.join(FIXTURES, "fedavg_lr0.05")
B = os.path.join(FIXTURES, "fedavg_lr0.1")
C = os.path.join(FIXTURES, "fedau_running")

spec = importlib.util.spec_from_file_location("fedsim_report", SCRIPT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def run_report(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                          text=True, timeout=300)


def read_summary(out):
    with open(os.path.join(out, "summary.csv"), newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fedsim_report_test_")
        cls.out = os.path.join(cls.tmp, "all")
        cls.size = (640, 360)
        cls.result = run_report(A, B, C, "--out", cls.out, "--size", "640x360")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def pngs(self):
        return sorted(f for f in os.listdir(self.out) if f.endswith(".png"))

    def test_exit_code_and_warning_for_the_running_run(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr)
        lines = self.result.stderr.splitlines()
        self.assertEqual(len(lines), 1, self.result.stderr)
        self.assertIn("fedau_running", lines[0])
        self.assertIn("incomplete line", lines[0])

    def test_table_values_are_what_the_fixtures_imply(self):
        rows = read_summary(self.out)
        self.assertEqual(list(rows), ["fedavg_lr0.05", "fedavg_lr0.1", "fedau_running"])
        a, b, c = rows["fedavg_lr0.05"], rows["fedavg_lr0.1"], rows["fedau_running"]
        # A: accuracies 0.5, 0.7, 0.8, 0.75; test losses 2.1, 1.6, 1.4, 1.5;
        # 1000 bytes each way per round; run_end's wall time wins over the
        # last row's 2 s.
        self.assertEqual((a["status"], a["algorithm"], a["rounds"], a["rounds_planned"]),
                         ("finished", "FedAvg", "4", "4"))
        self.assertEqual(float(a["final_test_accuracy"]), 0.75)
        self.assertEqual(float(a["best_test_accuracy"]), 0.8)
        self.assertEqual(float(a["final_test_loss"]), 1.5)
        self.assertEqual(float(a["best_test_loss"]), 1.4)
        self.assertEqual(float(a["final_train_loss"]), 1.1)
        self.assertEqual(float(a["wall_time_s"]), 2.25)
        self.assertEqual(int(a["bytes_up"]), 4000)
        self.assertEqual(int(a["bytes_down"]), 4000)
        self.assertEqual(a["epsilon_max"], "")  # no DP
        # B: evaluated on rounds 1 and 3 only (0.6, 0.9); epsilon ends at 4.
        self.assertEqual(float(b["final_test_accuracy"]), 0.9)
        self.assertEqual(float(b["best_test_accuracy"]), 0.9)
        self.assertEqual(float(b["final_test_loss"]), 1.2)
        self.assertEqual(float(b["final_client_loss"]), 1.4)
        self.assertEqual(float(b["best_client_loss"]), 1.4)
        self.assertEqual(float(b["epsilon_max"]), 4.0)
        self.assertEqual(float(b["wall_time_s"]), 4.5)
        self.assertEqual(int(b["bytes_up"]), 8000)
        # C: 3 complete rounds of 10; the half-written 4th row is left out;
        # no run_end, so the wall time is the last complete row's.
        self.assertEqual((c["status"], c["algorithm"], c["rounds"], c["rounds_planned"]),
                         ("unfinished", "FedAU", "3", "10"))
        self.assertEqual(float(c["final_test_accuracy"]), 0.65)
        self.assertEqual(float(c["final_test_loss"]), 1.8)
        self.assertEqual(float(c["wall_time_s"]), 0.75)
        self.assertEqual(int(c["bytes_up"]), 1500)

    def test_csv_values_round_trip_exactly(self):
        rows = read_summary(self.out)
        # 0.7 as written by %.17g in metrics.csv is the double 0.7.
        self.assertEqual(rows["fedavg_lr0.05"]["best_test_accuracy"], "0.8")

    def test_markdown_and_terminal_tables_name_every_run(self):
        with open(os.path.join(self.out, "summary.md")) as f:
            md = f.read().splitlines()
        self.assertTrue(md[0].startswith("| run | status | algorithm | settings | rounds"))
        self.assertEqual(len(md), 2 + 3)
        for name in ("fedavg_lr0.05", "fedavg_lr0.1", "fedau_running"):
            self.assertIn(name, self.result.stdout)
            self.assertTrue(any(line.startswith(f"| {name} |") for line in md))

    def test_legend_is_built_from_the_settings_that_differ(self):
        rows = read_summary(self.out)
        # algorithm.name, eval.every, local.dp.mode, local.lr and rounds differ.
        self.assertEqual(rows["fedavg_lr0.05"]["settings"],
                         "algorithm.name=fedavg, eval.every=1, dp.mode=none, lr=0.05, rounds=4")
        self.assertEqual(rows["fedavg_lr0.1"]["settings"],
                         "algorithm.name=fedavg, eval.every=2, dp.mode=clip, lr=0.1, rounds=4")
        self.assertEqual(rows["fedau_running"]["settings"],
                         "algorithm.name=fedau, eval.every=1, dp.mode=none, lr=0.05, rounds=10")
        # Only two runs: only what differs between those two.
        runs = [report.load_run(A), report.load_run(B)]
        keys = report.assign_labels(runs)
        self.assertEqual(keys, ["eval.every", "local.dp.mode", "local.lr"])
        self.assertEqual([r.label for r in runs],
                         ["eval.every=1, dp.mode=none, lr=0.05",
                          "eval.every=2, dp.mode=clip, lr=0.1"])

    def test_identical_settings_fall_back_to_directory_names(self):
        copy = os.path.join(self.tmp, "repeat")
        shutil.copytree(A, copy)
        runs = [report.load_run(A), report.load_run(copy)]
        self.assertEqual(report.assign_labels(runs), [])
        self.assertEqual([r.label for r in runs], ["fedavg_lr0.05", "repeat"])

    def test_every_metric_is_plotted_against_round_and_time(self):
        metrics = ["train_loss", "test_loss", "test_accuracy", "client_loss",
                   "participants", "bytes_up", "bytes_down", "epsilon_max", "epsilon_mean"]
        expected = sorted(f"{m}_vs_{x}.png" for m in metrics for x in ("round", "wall"))
        self.assertEqual(self.pngs(), expected)  # no virtual time in the fixtures

    def test_pngs_decode_have_the_requested_size_and_are_not_blank(self):
        import matplotlib.image
        for name in self.pngs():
            pixels = matplotlib.image.imread(os.path.join(self.out, name))
            self.assertEqual(pixels.shape[:2], (self.size[1], self.size[0]), name)
            # A blank canvas has zero variance; axes, text and curves do not.
            self.assertGreater(float(pixels[..., :3].var()), 1e-3, name)

    def test_html_names_every_run_and_embeds_every_plot(self):
        with open(os.path.join(self.out, "report.html")) as f:
            page = f.read()
        for path, name in ((A, "fedavg_lr0.05"), (B, "fedavg_lr0.1"), (C, "fedau_running")):
            self.assertIn(f"<b>{name}</b>", page)
            self.assertIn(path, page)
        self.assertIn("algorithm.name=fedau, eval.every=1, dp.mode=none, lr=0.05, rounds=10", page)
        embedded = page.split("data:image/png;base64,")[1:]
        self.assertEqual(len(embedded), len(self.pngs()))
        images = {base64.b64decode(chunk.split("'", 1)[0]) for chunk in embedded}
        for name in self.pngs():
            with open(os.path.join(self.out, name), "rb") as f:
                self.assertIn(f.read(), images, name)
        self.assertNotIn("src='", page.replace("src='data:", ""))  # nothing external

    def test_truncated_last_line_of_a_finished_run_is_an_error(self):
        broken = os.path.join(self.tmp, "broken")
        shutil.copytree(A, broken)
        with open(os.path.join(broken, "metrics.csv"), "rb+") as f:
            f.truncate(os.path.getsize(os.path.join(broken, "metrics.csv")) - 10)
        out = os.path.join(self.tmp, "broken_out")
        result = run_report(broken, B, "--out", out, "--no-plots")
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("broken/metrics.csv: last line is truncated", lines[0])
        self.assertEqual(list(read_summary(out)), ["fedavg_lr0.1"])  # B still reported

    def test_malformed_row_and_empty_file_are_errors(self):
        bad = os.path.join(self.tmp, "bad_row")
        shutil.copytree(A, bad)
        with open(os.path.join(bad, "metrics.csv"), "a") as f:
            f.write("4,2.5,x\n")
        with self.assertRaisesRegex(report.RunError, r"line 6: 3 cells, the header has 13"):
            report.load_run(bad)
        empty = os.path.join(self.tmp, "empty")
        shutil.copytree(A, empty)
        open(os.path.join(empty, "metrics.csv"), "w").close()
        with self.assertRaisesRegex(report.RunError, "no header line"):
            report.load_run(empty)

    def test_missing_directory_gives_one_line_and_the_others_are_reported(self):
        out = os.path.join(self.tmp, "missing_out")
        missing = os.path.join(self.tmp, "no_such_run")
        result = run_report(missing, A, "--out", out, "--no-plots")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.splitlines(),
                         [f"fedsim report: {missing}: no such run directory"])
        self.assertEqual(list(read_summary(out)), ["fedavg_lr0.05"])

    def test_metric_a_run_lacks_gives_one_line_and_the_others_are_plotted(self):
        out = os.path.join(self.tmp, "eps_out")
        result = run_report(A, B, "--out", out, "--metrics", "epsilon_max", "--x", "round")
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(f"{A}: no values of metric 'epsilon_max' (it has: ", lines[0])
        self.assertEqual(sorted(f for f in os.listdir(out) if f.endswith(".png")),
                         ["epsilon_max_vs_round.png"])
        self.assertEqual(float(read_summary(out)["fedavg_lr0.1"]["epsilon_max"]), 4.0)

    def test_chosen_metrics_axes_and_options(self):
        out = os.path.join(self.tmp, "chosen")
        result = run_report(A, B, "--out", out, "--metrics", "test_loss,test_accuracy",
                            "--x", "wall", "--logy", "test_loss", "--logx",
                            "--smooth", "2", "--size", "300x200", "--dpi", "50")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(f for f in os.listdir(out) if f.endswith(".png")),
                         ["test_accuracy_vs_wall.png", "test_loss_vs_wall.png"])
        import matplotlib.image
        pixels = matplotlib.image.imread(os.path.join(out, "test_loss_vs_wall.png"))
        self.assertEqual(pixels.shape[:2], (200, 300))
        # The table has final/best columns for the chosen metrics only.
        with open(os.path.join(out, "summary.csv")) as f:
            header = f.readline().strip().split(",")
        self.assertIn("final_test_loss", header)
        self.assertNotIn("final_train_loss", header)

    def test_virtual_time_axis_when_the_column_exists(self):
        run = os.path.join(self.tmp, "virtual")
        os.makedirs(run)
        with open(os.path.join(run, "metrics.csv"), "w") as f:
            # As fedsim writes it (common/runlog): `virtual_time`, last.
            f.write("round,wall_time_s,test_loss,model_hash,virtual_time\n"
                    "0,0.1,3,h0,10\n1,0.2,2,h1,25\n2,0.3,1.5,h2,45\n")
        out = os.path.join(self.tmp, "virtual_out")
        result = run_report(run, "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("test_loss_vs_virtual.png", os.listdir(out))
        self.assertEqual(float(read_summary(out)["virtual"]["virtual_time_s"]), 45.0)
        self.assertEqual(float(read_summary(out)["virtual"]["best_test_loss"]), 1.5)

    def test_enum_values_lose_their_fields_prefix(self):
        self.assertEqual(report.display_value("ASYNC_WEIGHTS_IDENTICAL",
                                              "algorithm.async_weights"), "identical")
        self.assertEqual(report.display_value("NAME_FEDAVG", "algorithm.name"), "fedavg")
        self.assertEqual(report.display_value("COMPUTE_TIME_LOG_NORMAL",
                                              "async.compute_time"), "log_normal")
        self.assertEqual(report.display_value("KIND_NONE"), "none")

    def test_smoothing_is_a_trailing_moving_average(self):
        self.assertEqual(report.smooth([1.0, 2.0, 3.0, 4.0], 2), [1.0, 1.5, 2.5, 3.5])
        self.assertEqual(report.smooth([3.0, 6.0, 9.0], 3), [3.0, 4.5, 6.0])
        self.assertEqual(report.smooth([1.0, 5.0], 1), [1.0, 5.0])

    def test_usage_errors_exit_2(self):
        for args in (["--size", "10x10", A], ["--x", "epoch", A], ["--smooth", "0", A], []):
            result = run_report(*args, "--out", os.path.join(self.tmp, "usage"))
            self.assertEqual(result.returncode, 2, args)

    @unittest.skipUnless(os.environ.get("FEDSIM_BIN_DIR"), "FEDSIM_BIN_DIR not set")
    def test_fedsim_report_runs_the_tool(self):
        out = os.path.join(self.tmp, "cli")
        env = dict(os.environ, FEDSIM_PYTHON=sys.executable)
        result = subprocess.run(
            [os.path.join(os.environ["FEDSIM_BIN_DIR"], "fedsim"), "report", A, B,
             "--out", out, "--no-plots"], capture_output=True, text=True, env=env,
            timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(list(read_summary(out)), ["fedavg_lr0.05", "fedavg_lr0.1"])

    def fedsim_report(self, out, env_changes, *extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("FEDSIM_PYTHON", "VIRTUAL_ENV")}
        env.update(env_changes)
        return subprocess.run(
            [os.path.join(os.environ["FEDSIM_BIN_DIR"], "fedsim"), "report", A,
             "--out", out, "--size", "320x200", *extra],
            capture_output=True, text=True, env=env, timeout=300)

    def make_venv(self, name, system_site_packages):
        """A venv in the test's folder, or None without the venv module."""
        path = os.path.join(self.tmp, name)
        args = [sys.executable, "-m", "venv", "--without-pip", path]
        if system_site_packages:
            args.insert(3, "--system-site-packages")
        if subprocess.run(args, capture_output=True).returncode != 0:
            return None
        return path

    @unittest.skipUnless(os.environ.get("FEDSIM_BIN_DIR"), "FEDSIM_BIN_DIR not set")
    def test_fedsim_report_uses_the_active_venv(self):
        # Issue 18: a venv the user activated is the interpreter `fedsim
        # report` runs, whatever python3 the build found; a venv without
        # matplotlib gets one line saying what is missing and how to get it.
        bare = self.make_venv("venv_bare", system_site_packages=False)
        if bare is None:
            self.skipTest("python3 -m venv is not available")
        result = self.fedsim_report(os.path.join(self.tmp, "bare"), {"VIRTUAL_ENV": bare})
        self.assertEqual(result.returncode, 2, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(os.path.join(bare, "bin", "python3"), lines[0])
        for words in ("matplotlib", "apt-get install python3-matplotlib",
                      "pip install matplotlib", "FEDSIM_PYTHON", "--no-plots"):
            self.assertIn(words, lines[0])
        # The tables need no matplotlib.
        result = self.fedsim_report(os.path.join(self.tmp, "bare_tables"),
                                    {"VIRTUAL_ENV": bare}, "--no-plots")
        self.assertEqual(result.returncode, 0, result.stderr)
        # A venv that has matplotlib (here Debian's, seen through the venv)
        # draws the plots.
        full = self.make_venv("venv_full", system_site_packages=True)
        out = os.path.join(self.tmp, "venv_plots")
        result = self.fedsim_report(out, {"VIRTUAL_ENV": full})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(any(f.endswith(".png") for f in os.listdir(out)))
        # FEDSIM_PYTHON wins over the venv.
        result = self.fedsim_report(os.path.join(self.tmp, "override"),
                                    {"VIRTUAL_ENV": full,
                                     "FEDSIM_PYTHON": os.path.join(bare, "bin", "python3")})
        self.assertEqual(result.returncode, 2, result.stderr)

    @unittest.skipUnless(os.environ.get("FEDSIM_BIN_DIR"), "FEDSIM_BIN_DIR not set")
    def test_fedsim_report_without_python_says_what_it_needs(self):
        result = self.fedsim_report(os.path.join(self.tmp, "nopython"),
                                    {"FEDSIM_PYTHON": "/nonexistent/python3"})
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("Python 3 with matplotlib", result.stderr)
        self.assertIn("/nonexistent/python3", result.stderr)


def write_run(path, config, rows, columns=("round", "wall_time_s", "test_accuracy", "test_loss",
                                           "model_hash"), finished=True):
    """A run directory with `config` (config.json) and metrics rows."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "metrics.csv"), "w") as f:
        f.write(",".join(columns) + "\n")
        for row in rows:
            f.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in row) + "\n")
    with open(os.path.join(path, "events.jsonl"), "w") as f:
        f.write(json.dumps({"event": "run_start", "algorithm": "FedAvg",
                            "rounds": len(rows)}) + "\n")
        if finished:
            f.write(json.dumps({"event": "run_end", "rounds": len(rows)}) + "\n")


def write_dp_run(path, seed, lr, rounds):
    """A run with an epsilon_max column (0.5 per round), accuracy 0.5."""
    write_run(path, {"seed": seed, "local": {"lr": lr}},
              [(r, float(r), 0.5, 1.0, "h", 0.5 * r) for r in range(rounds)],
              columns=("round", "wall_time_s", "test_accuracy", "test_loss", "model_hash",
                       "epsilon_max"))


class GroupTest(unittest.TestCase):
    """Runs that differ only in the seed are summarised as a group: mean and
    sample sd equal numpy's, and the band of known curves is what it must
    be."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="fedsim_report_group_")
        # Three seeds of lr 0.1 whose accuracy is c_s + 0.1 r (r = 0..4),
        # wall time t = (1 + s / 10) r, so accuracy(t) is linear in t too;
        # one run of lr 0.2 alone.
        cls.offsets = {1: 0.3, 2: 0.35, 3: 0.5}
        cls.dirs = []
        for seed, c in cls.offsets.items():
            rows = [(r, (1 + seed / 10) * r, c + 0.1 * r, 2.0 - c - 0.2 * r, "h")
                    for r in range(5)]
            d = os.path.join(cls.tmp, f"local.lr=0.1,seed={seed}")
            write_run(d, {"seed": seed, "local": {"lr": 0.1}, "runtime": {"threads": seed}},
                      rows)
            cls.dirs.append(d)
        cls.single = os.path.join(cls.tmp, "local.lr=0.2,seed=1")
        write_run(cls.single, {"seed": 1, "local": {"lr": 0.2}, "runtime": {"threads": 1}},
                  [(r, float(r), 0.2 + 0.15 * r, 1.0, "h") for r in range(5)])
        cls.out = os.path.join(cls.tmp, "report")
        cls.result = run_report(*cls.dirs, cls.single, "--out", cls.out, "--size", "400x300")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_table_has_mean_and_sd_over_seeds(self):
        import numpy as np
        self.assertEqual(self.result.returncode, 0, self.result.stderr)
        with open(os.path.join(self.out, "summary.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([(r["group"], r["n"]) for r in rows], [("lr=0.1", "3"), ("lr=0.2", "1")])
        g = rows[0]
        finals = np.array([c + 0.4 for c in self.offsets.values()])
        self.assertAlmostEqual(float(g["final_test_accuracy_mean"]), finals.mean(), places=12)
        self.assertAlmostEqual(float(g["final_test_accuracy_sd"]), finals.std(ddof=1), places=12)
        losses = np.array([2.0 - c - 0.8 for c in self.offsets.values()])
        self.assertAlmostEqual(float(g["best_test_loss_mean"]), losses.mean(), places=12)
        self.assertAlmostEqual(float(g["best_test_loss_sd"]), losses.std(ddof=1), places=12)
        walls = np.array([(1 + s / 10) * 4 for s in self.offsets])
        self.assertAlmostEqual(float(g["wall_time_s_mean"]), walls.mean(), places=12)
        self.assertEqual(rows[1]["final_test_accuracy_sd"], "")  # n = 1: no sd
        self.assertEqual(g["runs"].split(), [os.path.basename(d) for d in self.dirs])
        # The per-run rows are kept in runs.csv; the terminal shows mean ± sd.
        with open(os.path.join(self.out, "runs.csv"), newline="") as f:
            self.assertEqual(len(list(csv.DictReader(f))), 4)
        self.assertIn(" ± ", self.result.stdout)

    def test_band_of_known_curves(self):
        import numpy as np
        runs = [report.load_run(d) for d in self.dirs]
        group = report.group_runs(runs, ["seed"])[0]
        self.assertEqual(group.n, 3)
        c = np.array(list(self.offsets.values()))
        # Rounds: the mean curve and mean ± sd at every round.
        xs, mean, low, high = report.group_curve(group, "round", "test_accuracy", "sd")
        self.assertEqual(xs, [0, 1, 2, 3, 4])
        for r, m, lo, hi in zip(xs, mean, low, high):
            self.assertAlmostEqual(m, c.mean() + 0.1 * r, places=12)
            self.assertAlmostEqual(hi - m, c.std(ddof=1), places=12)
            self.assertAlmostEqual(m - lo, c.std(ddof=1), places=12)
        # 95% CI: t(0.975, 2) sd / sqrt(3); min-max: the extreme runs.
        _, mean, low, high = report.group_curve(group, "round", "test_accuracy", "ci")
        self.assertAlmostEqual(high[0] - mean[0], 4.303 * c.std(ddof=1) / np.sqrt(3), places=9)
        _, _, low, high = report.group_curve(group, "round", "test_accuracy", "minmax")
        self.assertAlmostEqual(low[2], c.min() + 0.2, places=12)
        self.assertAlmostEqual(high[2], c.max() + 0.2, places=12)
        # Wall time: the grid spans [0, 4.4], the time every run covers, and
        # accuracy(t) = c_s + 0.1 t / (1 + s / 10) interpolates exactly.
        xs, mean, _, high = report.group_curve(group, "wall_time_s", "test_accuracy", "sd")
        self.assertAlmostEqual(xs[0], 0.0)
        self.assertAlmostEqual(xs[-1], 4.4)
        for t, m, hi in zip(xs, mean, high):
            ys = np.array([cs + 0.1 * t / (1 + s / 10) for s, cs in self.offsets.items()])
            self.assertAlmostEqual(m, ys.mean(), places=9)
            self.assertAlmostEqual(hi - m, ys.std(ddof=1), places=9)

    def test_grouping_controls(self):
        runs = [report.load_run(d) for d in self.dirs + [self.single]]
        # The runtime section never splits a group; --group-by lr groups the
        # two learning rates of seed 1 instead; --no-group: one per run.
        self.assertEqual([g.n for g in report.group_runs(runs, ["seed"])], [3, 1])
        self.assertEqual(sorted(g.n for g in report.group_runs(runs, ["local.lr"])), [1, 1, 2])
        self.assertEqual([g.n for g in report.group_runs(runs, [])], [1, 1, 1, 1])
        out = os.path.join(self.tmp, "ungrouped")
        result = run_report(*self.dirs, "--out", out, "--no-group", "--no-plots")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(read_summary(out)), 3)

    def test_values_at_x_and_jitter(self):
        import numpy as np
        out = os.path.join(self.tmp, "at")
        result = run_report(*self.dirs, "--out", out, "--no-plots", "--metrics", "test_accuracy",
                            "--at", "round=2.5,10", "--jitter")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "summary.csv"), newline="") as f:
            g = next(csv.DictReader(f))
        c = np.array(list(self.offsets.values()))
        # The last measurement at or before round 2.5 is round 2's; at 10, the last.
        self.assertAlmostEqual(float(g["test_accuracy_at_2.5_mean"]), c.mean() + 0.2, places=12)
        self.assertAlmostEqual(float(g["test_accuracy_at_2.5_sd"]), c.std(ddof=1), places=12)
        self.assertAlmostEqual(float(g["test_accuracy_at_10_mean"]), c.mean() + 0.4, places=12)
        # Second half (rounds 3 and 4): one step of 0.1 per run.
        self.assertAlmostEqual(float(g["test_accuracy_jitter_mean"]), 0.1, places=12)
        self.assertEqual(float(g["rounds_mean"]), 5.0)
        bad = run_report(*self.dirs, "--out", out, "--at", "time=1")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--at = 'time=1'", bad.stderr)

    def test_event_fields(self):
        # run_start's rounds (5 for every run) and a field no run has.
        out = os.path.join(self.tmp, "fields")
        result = run_report(*self.dirs, "--out", out, "--no-plots", "--metrics", "test_accuracy",
                            "--field", "run_start.rounds,run_end.nothing.here")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "summary.csv"), newline="") as f:
            g = next(csv.DictReader(f))
        self.assertEqual(float(g["run_start.rounds_mean"]), 5.0)
        self.assertEqual(g["run_end.nothing.here_mean"], "")
        bad = run_report(*self.dirs, "--out", out, "--field", "rounds")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--field = 'rounds'", bad.stderr)

    def test_sweep_points_are_labelled_by_their_grid_values(self):
        # Runs of a `fedsim sweep` (sweep.json beside them): labels are the
        # grid values that differ, as written in the grid, seed left out of
        # group labels; --legend still wins.
        sweep = os.path.join(self.tmp, "sweep")
        points = []
        for d in self.dirs + [self.single]:
            name = os.path.basename(d)
            shutil.copytree(d, os.path.join(sweep, name))
            points.append({"dir": name, "overrides": name.split(",")})
        with open(os.path.join(sweep, "sweep.json"), "w") as f:
            json.dump({"points": points}, f)
        runs = [report.load_run(os.path.join(sweep, p["dir"])) for p in points]
        self.assertEqual(runs[0].sweep_values, [("local.lr", "0.1"), ("seed", "1")])
        report.assign_labels(runs)
        self.assertEqual(runs[1].label, "lr=0.1, seed=2")
        groups = report.group_runs(runs, ["seed"])
        report.label_groups(groups, ["seed"])
        self.assertEqual([g.label for g in groups], ["lr=0.1", "lr=0.2"])

    def test_legend_and_facet(self):
        # --legend picks the label keys; --facet draws a panel per value and
        # leaves its key out of the legends (the table keeps it).
        out = os.path.join(self.tmp, "facet")
        result = run_report(*self.dirs, self.single, "--out", out, "--legend", "local.lr",
                            "--facet", "local.lr", "--metrics", "test_accuracy", "--x", "round",
                            "--size", "600x300")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "summary.csv"), newline="") as f:
            self.assertEqual([r["group"] for r in csv.DictReader(f)], ["lr=0.1", "lr=0.2"])
        self.assertTrue(os.path.isfile(os.path.join(out, "test_accuracy_vs_round.png")))
        runs = [report.load_run(d) for d in self.dirs + [self.single]]
        groups = report.group_runs(runs, ["seed"])
        report.label_groups(groups, ["seed"], hide=("local.lr",))
        self.assertEqual([g.label for g in groups], ["local.lr=0.1,seed=1", "local.lr=0.2,seed=1"])
        # A section's name stands for its keys.
        report.LEGEND_KEYS[:] = ["local"]
        try:
            self.assertEqual(report.differing_settings(runs), ["local.lr"])
        finally:
            report.LEGEND_KEYS[:] = []
        # Ungrouped runs in panels: the labels leave the panel's key out.
        out = os.path.join(self.tmp, "facet_runs")
        result = run_report(*self.dirs, "--out", out, "--no-group", "--facet", "seed",
                            "--metrics", "test_accuracy", "--x", "round", "--size", "600x300")
        self.assertEqual(result.returncode, 0, result.stderr)
        runs = [report.load_run(d) for d in self.dirs + [self.single]]
        report.assign_labels(runs)
        report.label_groups([report.Group([r]) for r in runs], [], hide=("seed",))
        self.assertEqual([r.label for r in runs], ["lr=0.1"] * 3 + ["lr=0.2"])

    def test_facet_panels_draw_a_setting_in_the_same_colour(self):
        # Two panels (seed 1, seed 2) whose runs come in opposite orders:
        # each draws lr=0.1 before lr=0.2, so a setting has one colour.
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        extra = os.path.join(self.tmp, "local.lr=0.2,seed=2")
        write_run(extra, {"seed": 2, "local": {"lr": 0.2}, "runtime": {"threads": 1}},
                  [(r, float(r), 0.1 * r, 1.0, "h") for r in range(5)])
        dirs = [extra, self.dirs[1], self.dirs[0], self.single]
        runs = [report.load_run(d) for d in dirs]
        report.assign_labels(runs)
        report.label_groups([report.Group([r]) for r in runs], [], hide=("seed",))
        args = report.parse_args([*dirs, "--facet", "seed", "--size", "600x300"])
        figures = []
        close = plt.close
        plt.close = lambda fig=None: figures.append(fig) if hasattr(fig, "axes") else close(fig)
        try:
            report.plot(plt, runs, "test_accuracy", "round", args,
                        os.path.join(self.tmp, "colours.png"))
        finally:
            plt.close = close
        panels = figures[0].axes
        self.assertEqual([a.get_title() for a in panels], ["seed=2", "seed=1"])
        for ax in panels:
            self.assertEqual([line.get_label() for line in ax.get_lines()], ["lr=0.1", "lr=0.2"])
        colour = [[line.get_color() for line in ax.get_lines()] for ax in panels]
        self.assertEqual(colour[0], colour[1])
        close(figures[0])
        shutil.rmtree(extra)

    def test_tail_and_derive(self):
        import numpy as np
        out = os.path.join(self.tmp, "tail")
        # sq = accuracy squared; the last 40% of 5 rows are rounds 3 and 4.
        result = run_report(*self.dirs, "--out", out, "--no-plots", "--metrics",
                            "test_accuracy,sq", "--derive", "sq=test_accuracy**2",
                            "--tail", "40%")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "summary.csv"), newline="") as f:
            g = next(csv.DictReader(f))
        c = np.array(list(self.offsets.values()))
        tails = c + 0.35
        self.assertAlmostEqual(float(g["test_accuracy_tail_mean"]), tails.mean(), places=12)
        self.assertAlmostEqual(float(g["test_accuracy_tail_sd"]), tails.std(ddof=1), places=12)
        sq = ((c + 0.3) ** 2 + (c + 0.4) ** 2) / 2
        self.assertAlmostEqual(float(g["sq_tail_mean"]), sq.mean(), places=12)
        self.assertAlmostEqual(float(g["final_sq_mean"]), ((c + 0.4) ** 2).mean(), places=12)
        # On a time axis: wall time within 1.5 s of the last (t = (1 + s/10) r):
        # rounds 3 and 4 for every seed.
        out2 = os.path.join(self.tmp, "tail_wall")
        result = run_report(*self.dirs, "--out", out2, "--no-plots", "--metrics",
                            "test_accuracy", "--tail", "wall=1.5")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out2, "summary.csv"), newline="") as f:
            g = next(csv.DictReader(f))
        self.assertAlmostEqual(float(g["test_accuracy_tail_mean"]), tails.mean(), places=12)
        # Config keys in an expression; bad expressions and tails exit 2.
        runs = [report.load_run(d) for d in self.dirs]
        report.derive_columns(runs[0], [report.compile_derive("x=round*local.lr+sqrt(4)")])
        self.assertEqual([r["x"] for r in runs[0].rows], [0.1 * r + 2.0 for r in range(5)])
        for bad_args, needle in ((["--derive", "x=__import__('os')"], "--derive"),
                                 (["--derive", "1x=round"], "NAME=EXPR"),
                                 (["--derive", "x=sqrt(1, 2)"], "sqrt takes 1 argument, not 2"),
                                 (["--derive", "x=1" + "0" * 400], "too large for a float"),
                                 (["--logx", "runs/a"], "--logx = 'runs/a'"),
                                 (["--tail", "0%"], "--tail = '0%'"),
                                 (["--tail", "time=1"], "--tail = 'time=1'")):
            bad = run_report(*self.dirs, "--out", out, "--no-plots", *bad_args)
            self.assertEqual(bad.returncode, 2, bad_args)
            self.assertIn(needle, bad.stderr)
        unknown = run_report(*self.dirs, "--out", out, "--no-plots", "--derive", "y=nothing*2")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("'nothing' is neither a metrics.csv column nor a numeric config key",
                      unknown.stderr)
        text = run_report(*self.dirs, "--out", out, "--no-plots", "--derive", "y=model_hash*2")
        self.assertEqual(text.returncode, 1)
        self.assertIn("'model_hash' is a text column", text.stderr)
        # A column other runs have is empty in a run that lacks it; a run
        # that diverged has a NaN tail, shown as nan.
        lacking = os.path.join(self.tmp, "lacking")
        write_run(lacking, {"seed": 9, "local": {"lr": 0.5}},
                  [(0, 0.0, 0.5, 1.0, "h"), (1, 1.0, float("nan"), 1.0, "h")])
        with_eps = os.path.join(self.tmp, "with_eps")
        write_dp_run(with_eps, seed=9, lr=0.7, rounds=2)
        out3 = os.path.join(self.tmp, "derive_mixed")
        result = run_report(lacking, with_eps, "--out", out3, "--no-plots", "--derive",
                            "e=epsilon_max*2", "--metrics", "test_accuracy,e", "--tail", "50%")
        # Exit 1: a run that lacks a chosen metric is a problem line, as
        # for a logged metric; it stays in the table.
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("lacking: no values of metric 'e'", result.stderr)
        rows = read_summary(out3)
        self.assertEqual(rows["lacking"]["e_tail"], "")
        self.assertEqual(float(rows["with_eps"]["e_tail"]), 1.0)
        self.assertEqual(rows["lacking"]["test_accuracy_tail"], "nan")

    def test_groups_with_and_without_privacy_columns(self):
        # A DP run beside the non-private group: every row has the same
        # columns (the non-private group's epsilon is empty).
        dp = os.path.join(self.tmp, "dp_run")
        write_dp_run(dp, seed=1, lr=0.3, rounds=3)
        out = os.path.join(self.tmp, "mixed")
        result = run_report(*self.dirs, dp, "--out", out, "--no-plots")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "summary.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([r["epsilon_max_mean"] for r in rows], ["", "1.0"])

    def test_vs_a_config_key(self):
        import numpy as np
        # lr 0.1 (3 seeds) and 0.2 (1 run), with a second setting (momentum)
        # that splits the lines: x = lr, a line per momentum.
        tmp = os.path.join(self.tmp, "vs")
        dirs = []
        for lr, momentum, seeds in ((0.1, 0, (1, 2, 3)), (0.2, 0, (1,)), (0.1, 0.9, (1, 2))):
            for s in seeds:
                d = os.path.join(tmp, f"lr{lr}_m{momentum}_s{s}")
                write_run(d, {"seed": s, "local": {"lr": lr, "momentum": momentum}},
                          [(r, float(r), lr * s + 0.01 * r, 1.0, "h") for r in range(3)])
                with open(os.path.join(d, "events.jsonl"), "a") as f:
                    f.write(json.dumps({"event": "run_start", "bound": 10 * lr}) + "\n")
                dirs.append(d)
        runs = [report.load_run(d) for d in dirs]
        report.assign_labels(runs)
        groups = report.group_runs(runs, ["seed"])
        report.label_groups(groups, ["seed"])
        args = report.parse_args([*dirs, "--vs", "local.lr", "--ref", "run_start.bound"])
        report.REFS[:] = args.ref
        try:
            ((panel, lines),), skipped = report.vs_series(runs, groups, "test_accuracy",
                                                          "local.lr", args)
            self.assertEqual(skipped, [])
            # Only the x key differs (momentum 0): one line, not a point each.
            zero = [g for g in groups if g.runs[0].config["local.momentum"] == 0]
            ((_, single),), _ = report.vs_series([r for g in zero for r in g.runs], zero,
                                                 "test_accuracy", "local.lr", args)
            self.assertEqual([(label, xs) for label, xs, *_ in single],
                             [("test_accuracy", [0.1, 0.2])])
            # A --legend that leaves momentum out does not pool the two
            # settings into one zigzag: they meet at lr 0.1, so a line each.
            report.LEGEND_KEYS[:] = ["local.lr"]
            ((_, pooled),), _ = report.vs_series(runs, groups, "test_accuracy", "local.lr", args)
            self.assertEqual(sorted(xs for _, xs, *_ in pooled), [[0.1], [0.1, 0.2]])
        finally:
            report.LEGEND_KEYS[:] = []
            report.REFS[:] = []
        self.assertIsNone(panel)
        self.assertEqual([(label, xs) for label, xs, *_ in lines],
                         [("momentum=0", [0.1, 0.2]), ("momentum=0.9", [0.1])])
        stats = lines[0][2]
        finals = np.array([0.1 * s + 0.02 for s in (1, 2, 3)])
        self.assertAlmostEqual(stats[0].mean, finals.mean(), places=12)
        self.assertAlmostEqual(stats[0].sd, finals.std(ddof=1), places=12)
        self.assertEqual(stats[1].n, 1)
        self.assertEqual(lines[0][4]["run_start.bound"], [1.0, 2.0])
        # 64-bit integers come as strings in config.json (protobuf's JSON).
        runs[0].config["local.max_steps"] = "1000"
        self.assertEqual(report.numeric_setting(runs[0], "local.max_steps"), 1000.0)
        self.assertIsNone(report.numeric_setting(runs[0], "algorithm.name"))
        # Labels are restored for the rest of the report.
        self.assertEqual(groups[0].label, "lr=0.1, momentum=0")
        out = os.path.join(tmp, "report")
        result = run_report(*dirs, "--out", out, "--vs", "local.lr", "--ref",
                            "run_start.bound", "--metrics", "test_accuracy", "--x", "none",
                            "--size", "400x300")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sorted(f for f in os.listdir(out) if f.endswith(".png")),
                         ["test_accuracy_vs_local.lr.png"])
        bad = run_report(*dirs, "--out", out, "--vs", "algorithm.name", "--metrics",
                         "test_accuracy", "--x", "round")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("--vs algorithm.name:", bad.stderr)

    def test_plots_draw_the_groups(self):
        pngs = sorted(f for f in os.listdir(self.out) if f.endswith(".png"))
        self.assertIn("test_accuracy_vs_round.png", pngs)
        self.assertIn("test_accuracy_vs_wall.png", pngs)


if __name__ == "__main__":
    unittest.main()
