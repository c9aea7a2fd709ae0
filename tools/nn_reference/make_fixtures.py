#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures of fedsim's network presets.

    bench/.venv/bin/python3 tools/nn_reference/make_fixtures.py tests/fixtures/nn

For every preset (tools/nn_reference/torch_models.py), in float64:
parameters and inputs from closed formulas that tests/unit/common/
nn_parity_test.cc computes the same way, then PyTorch's logits, mean
cross-entropy and gradient on batch 0, and the parameters after twenty
plain SGD steps (lr 0.05) on batches 0..19. A tensor is recorded as its
L2 norm and 16 entries at fixed positions (the fixtures stay small; the
6.6M parameters of leaf_cnn_femnist included). CI does not need PyTorch:
the JSON files are committed.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402

BATCH = 4
STEPS = 20
LR = 0.05
SAMPLES = 16


def param_value(tensor_index, shape):
    """Parameter k of tensor `tensor_index`: 0.5 sin(0.37 k + 0.11 + 1.3 t) * sqrt(3 / fan)."""
    size = int(np.prod(shape))
    fan = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
    k = np.arange(size, dtype=np.float64)
    return (0.5 * np.sin(0.37 * k + 0.11 + 1.3 * tensor_index) * math.sqrt(3.0 / fan)).reshape(shape)


def batch(step, input_shape, vocab, classes):
    """Batch `step`: example i is global row r = step * BATCH + i."""
    d = int(np.prod(input_shape))
    rows = np.arange(step * BATCH, (step + 1) * BATCH, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    if vocab:
        ri = rows.astype(np.int64)
        ji = j.astype(np.int64)
        x = torch.from_numpy((7 * ri + 3 * ji + (ji * ji) % 11) % vocab)
    else:
        x = torch.from_numpy(0.5 + 0.5 * np.sin(0.013 * j + 0.7 * rows + 0.3)).reshape(
            (BATCH,) + tuple(input_shape))
    y = torch.from_numpy((3 * rows[:, 0].astype(np.int64) + 1) % classes)
    return x, y


def summary(t):
    flat = t.detach().reshape(-1).numpy()
    at = [int(i * flat.size // SAMPLES) for i in range(SAMPLES)]
    return {"norm": float(np.linalg.norm(flat)), "at": at, "values": [float(flat[i]) for i in at]}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    for name, (ctor, input_shape, vocab) in torch_models.PRESETS.items():
        model = ctor().double()
        with torch.no_grad():
            for t, (key, p) in enumerate(model.state_dict().items()):
                p.copy_(torch.from_numpy(param_value(t, tuple(p.shape))))
        params = list(model.parameters())
        classes = model.state_dict()[list(model.state_dict())[-1]].shape[0]
        x, y = batch(0, input_shape, vocab, classes)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, params)
        record = {
            "preset": name, "batch": BATCH, "steps": STEPS, "lr": LR,
            "logits": logits.detach().reshape(-1).tolist(),
            "loss": float(loss.detach()),
            "gradient": {k: summary(g) for k, g in zip(model.state_dict(), grads)},
        }
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for step in range(STEPS):
            x, y = batch(step, input_shape, vocab, classes)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        record["after_sgd"] = {k: summary(p) for k, p in model.state_dict().items()}
        path = os.path.join(out_dir, name + ".json")
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        print(f"{path}: loss {float(loss):.6f}")


if __name__ == "__main__":
    main()
