#!/usr/bin/env python3
"""Writes the data set of benchmark 5 (scale) as uncompressed IDX files.

  bench/scale_data.py DIR ROWS DIM

DIR/train-images-idx3-ubyte (ROWS x 1 x DIM uint8 features, uniform random
from a fixed seed), DIR/train-labels-idx1-ubyte (label 1 when the first
feature is above 127, else 0: a binary task that logistic regression
learns), and a 1000-row test set DIR/t10k-*. Standard library only.
"""
import os
import random
import struct
import sys


def write(dirname, prefix, rows, dim, rng):
    # In blocks of 2^20 rows: randbytes of more than 2^28 bytes overflows.
    block = 1 << 20
    with open(os.path.join(dirname, prefix + "-images-idx3-ubyte"), "wb") as images, \
         open(os.path.join(dirname, prefix + "-labels-idx1-ubyte"), "wb") as labels:
        images.write(struct.pack(">IIII", 0x803, rows, 1, dim))
        labels.write(struct.pack(">II", 0x801, rows))
        for begin in range(0, rows, block):
            pixels = rng.randbytes(min(block, rows - begin) * dim)
            images.write(pixels)
            labels.write(bytes(1 if b > 127 else 0 for b in pixels[::dim]))


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: scale_data.py DIR ROWS DIM")
    dirname, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(dirname, exist_ok=True)
    rng = random.Random(1)
    write(dirname, "train", rows, dim, rng)
    write(dirname, "t10k", 1000, dim, rng)


if __name__ == "__main__":
    main()
