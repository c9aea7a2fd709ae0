"""TensorBoard event files (logging.tensorboard / --tensorboard) read back
with TensorBoard's own reader (tensorboard.backend.event_processing.
event_accumulator): every metrics.csv value is there, at its round, as a
float32 scalar.

Needs FEDSIM_BIN_DIR (build/bin) and a Python with the tensorboard package
(scripts/setup.sh puts one in .venv/). Without tensorboard it prints why and
exits 77, which ctest reports as skipped.
"""
import csv
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

try:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.backend.event_processing import event_file_loader
except ImportError as e:
    print(f"SKIP: the tensorboard package is not installed for {sys.executable} ({e}); "
          "scripts/setup.sh installs it into .venv/")
    sys.exit(77)

CONFIG = """name: tb
rounds: 5
data: {source: synthetic_least_squares}
clients: {count: 4}
participation: {client_fraction: 0.5}
eval: {every: 2}
"""


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


class TensorBoardTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fedsim_tensorboard_test_")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_fedsim(self, yaml_text, *flags):
        config = os.path.join(self.tmp, "tb.yaml")
        with open(config, "w") as f:
            f.write(yaml_text)
        out = os.path.join(self.tmp, "run")
        result = subprocess.run(
            [os.path.join(os.environ["FEDSIM_BIN_DIR"], "fedsim"), "run", config,
             "--out", out, "--quiet", *flags], capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        return out

    def check_scalars_equal_metrics(self, out, purge_orphaned_data=True):
        self.assertTrue(os.path.isfile(os.path.join(out, "events.out.tfevents.fedsim")))
        acc = event_accumulator.EventAccumulator(out, purge_orphaned_data=purge_orphaned_data)
        acc.Reload()
        with open(os.path.join(out, "metrics.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 5)
        tags = set(acc.Tags()["scalars"])
        for column in ("wall_time_s", "train_loss", "test_loss", "client_loss",
                       "dist_to_opt", "participants", "bytes_up", "bytes_down"):
            self.assertIn(column, tags)
            expected = [(int(r["round"]), f32(float(r[column]))) for r in rows if r[column] != ""]
            got = [(e.step, e.value) for e in acc.Scalars(column)]
            self.assertEqual(got, expected, column)
        # Evaluated every 2 rounds and at the last: rounds 1, 3 and 4.
        self.assertEqual([e.step for e in acc.Scalars("test_loss")], [1, 3, 4])
        # No accuracy for regression, no epsilon without DP.
        self.assertNotIn("test_accuracy", tags)
        self.assertNotIn("epsilon_max", tags)

    def test_config_key_writes_events_tensorboard_reads(self):
        out = self.run_fedsim(CONFIG + "logging: {tensorboard: true}\n")
        self.check_scalars_equal_metrics(out)

    def test_command_line_flag_writes_the_same(self):
        out = self.run_fedsim(CONFIG, "--tensorboard")
        self.check_scalars_equal_metrics(out)

    def test_resumed_run_shows_each_round_once(self):
        # A finished run with its newer checkpoints removed resumes from round
        # 1 and redoes rounds 1-4: TensorBoard must show each round once, with
        # the redone values (the same here: resume is bit-identical).
        out = self.run_fedsim(CONFIG + "logging: {tensorboard: true}\n")
        ckpts = sorted(os.listdir(os.path.join(out, "checkpoints")))
        self.assertEqual(ckpts[0], "round-00000001.ckpt")
        for name in ckpts[1:]:
            os.remove(os.path.join(out, "checkpoints", name))
        self.run_fedsim(CONFIG + "logging: {tensorboard: true}\n", "--resume")
        # One event file, and with TensorBoard's lowest-level reader (which,
        # like the UI's Rust data server, purges nothing) each round once.
        files = [f for f in os.listdir(out) if "tfevents" in f]
        self.assertEqual(files, ["events.out.tfevents.fedsim"])
        steps = [e.step for e in event_file_loader.EventFileLoader(
                     os.path.join(out, files[0])).Load() if e.HasField("summary")]
        self.assertEqual(steps, [0, 1, 2, 3, 4])
        self.check_scalars_equal_metrics(out, purge_orphaned_data=False)

    def test_off_by_default(self):
        out = self.run_fedsim(CONFIG)
        self.assertFalse(any("tfevents" in f for f in os.listdir(out)))


if __name__ == "__main__":
    unittest.main()
