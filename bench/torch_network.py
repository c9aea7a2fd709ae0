#!/usr/bin/env python3
"""PyTorch baseline of bench/network_bench.cc: one local epoch of a preset.

For each preset (tools/nn_reference/torch_models.py), rows and batch size:
one epoch of plain SGD (lr 0.01) over synthetic rows of the preset's shape
(uniform [0, 1) pixels, token ids uniform in [0, 100)), shuffled, float32,
on --threads threads (1 by default, as fedsim's client), timed after one
warm-up epoch; the best of --repeats. Prints one JSON line per case:
{"preset", "rows", "batch", "samples_per_s"}.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools",
                                "nn_reference"))
import torch_models  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="fedau_cnn_mnist,fedfix_cnn_cifar,fedfix_lstm_shakespeare")
    parser.add_argument("--rows", default="600,6000")
    parser.add_argument("--batches", default="10,32,128")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for preset in args.presets.split(","):
        ctor, shape, vocab = torch_models.PRESETS[preset]
        model = ctor()
        classes = list(model.state_dict().values())[-1].shape[0]
        for rows in map(int, args.rows.split(",")):
            if vocab:
                x = torch.randint(0, vocab, (rows,) + tuple(shape))
            else:
                x = torch.rand((rows,) + tuple(shape))
            y = torch.randint(0, classes, (rows,))
            for batch in map(int, args.batches.split(",")):
                opt = torch.optim.SGD(model.parameters(), lr=0.01)
                loss_f = torch.nn.CrossEntropyLoss()

                def epoch():
                    order = torch.randperm(rows)
                    for begin in range(0, rows, batch):
                        idx = order[begin:begin + batch]
                        opt.zero_grad()
                        loss_f(model(x[idx]), y[idx]).backward()
                        opt.step()

                epoch()  # warm-up
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    epoch()
                    best = min(best, time.perf_counter() - t0)
                print(json.dumps({"preset": preset, "rows": rows, "batch": batch,
                                  "threads": args.threads, "samples_per_s": rows / best}),
                      flush=True)


if __name__ == "__main__":
    main()
