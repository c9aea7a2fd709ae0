#!/usr/bin/env python3
"""Converts between fedsim's model.bin and a PyTorch state_dict file.

    torch_state.py to-fedsim STATE_DICT.pt MODEL.bin
    torch_state.py to-torch MODEL.bin --preset NAME STATE_DICT.pt
    torch_state.py to-torch MODEL.bin --like TEMPLATE.pt STATE_DICT.pt

fedsim's parameter vector is the state_dict's tensors in their order, each
flattened in PyTorch's (row-major) memory layout (docs/networks.md), as
float64; model.bin is that vector behind a 24-byte header
(docs/run-directory.md). `to-torch` takes the tensors' names and shapes from
a preset's module (tools/nn_reference/torch_models.py) or from a template
state_dict. Needs PyTorch (bench/setup.sh installs it into bench/.venv).
"""
import argparse
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn_reference"))
import torch_models  # noqa: E402

MAGIC = b"FEDSIMMD"


def read_model_bin(path):
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) != 24 or head[:8] != MAGIC:
            sys.exit(f"torch_state: {path}: not a fedsim model.bin (no FEDSIMMD header)")
        version, value_type, count = struct.unpack("<IIQ", head[8:])
        if version != 1 or value_type != 1:
            sys.exit(f"torch_state: {path}: format {version}, value type {value_type}; "
                     "need 1 and 1 (float64)")
        values = np.frombuffer(f.read(), dtype="<f8")
    if values.size != count:
        sys.exit(f"torch_state: {path}: header says {count} values, file holds {values.size}")
    return values


def write_model_bin(path, values):
    values = np.ascontiguousarray(values, dtype="<f8")
    with open(path + ".tmp", "wb") as f:
        f.write(MAGIC + struct.pack("<IIQ", 1, 1, values.size))
        f.write(values.tobytes())
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    to_fedsim = sub.add_parser("to-fedsim")
    to_fedsim.add_argument("state_dict")
    to_fedsim.add_argument("model_bin")
    to_torch = sub.add_parser("to-torch")
    to_torch.add_argument("model_bin")
    to_torch.add_argument("state_dict")
    group = to_torch.add_mutually_exclusive_group(required=True)
    group.add_argument("--preset", choices=sorted(torch_models.PRESETS))
    group.add_argument("--like")
    args = parser.parse_args()

    if args.command == "to-fedsim":
        state = torch.load(args.state_dict, map_location="cpu")
        parts = [t.detach().to(torch.float64).reshape(-1).numpy() for t in state.values()]
        write_model_bin(args.model_bin, np.concatenate(parts))
        print(f"{args.model_bin}: {sum(p.size for p in parts)} parameters from "
              f"{len(parts)} tensors")
        return
    template = (torch_models.make(args.preset).state_dict() if args.preset
                else torch.load(args.like, map_location="cpu"))
    values = read_model_bin(args.model_bin)
    need = sum(t.numel() for t in template.values())
    if values.size != need:
        sys.exit(f"torch_state: {args.model_bin} holds {values.size} parameters; "
                 f"the template has {need}")
    out, at = {}, 0
    for name, t in template.items():
        out[name] = torch.from_numpy(values[at:at + t.numel()].copy()).reshape(t.shape).to(t.dtype)
        at += t.numel()
    torch.save(out, args.state_dict)
    print(f"{args.state_dict}: {len(out)} tensors")


if __name__ == "__main__":
    main()
