#!/usr/bin/env python3
"""Benchmark 4's plain-loop baselines (docs/performance.md): fedsim's
quickstart as the FedAvg loop a researcher writes by hand, in numpy or in
PyTorch. A benchmark script outside the product.

The same task as configs/quickstart.yaml: softmax regression (784 -> 10,
zero initial parameters) on Fashion-MNIST (pixels / 255), the 100 clients
of fedsim's own Dirichlet(0.5) split (bench_export_partition: line k =
client k's training rows), 10 clients a round drawn uniformly, one local
epoch of SGD (batches of 32 in a fresh random order, lr 0.05), FedAvg
weighted by n_k, and (unless --no-eval) after every round the global model
evaluated on the test set (loss, accuracy) and on the whole training set
(loss): fedsim's eval.every 1, eval.train_loss true.

  numpy   the twenty-line loop: X @ W + b, a stable softmax, W -= lr X^T G;
          BLAS threads = --threads (OPENBLAS_NUM_THREADS, set before numpy
          is imported).
  torch   the tutorial loop: nn.Linear, F.cross_entropy, optim.SGD,
          torch.no_grad() evaluation; torch.set_num_threads(--threads).

The data are converted once, at load, to --dtype (float32 or float64), as a
user would; each client's rows are gathered once per round.

  python3 bench/plain_quickstart.py --backend numpy|torch --dtype float64
      --partition FILE --rounds R [--threads 2] [--no-eval] [--data DIR]
      [--train-rows N] [--model fedau_cnn_mnist --max-steps 5]

--model fedau_cnn_mnist (torch only) runs the FedAU CNN experiment
(configs/fedau_cnn_fmnist.yaml: FedAU's MNIST CNN, --max-steps 5 local
steps of 32) instead of softmax regression.

Prints one JSON object: backend, dtype, threads, eval, rounds, per_round_s
(time between the end of the first and of the last round / (R - 1), as
bench/report.py takes fedsim's), train_examples_per_round (mean),
final test accuracy (when evaluating), versions and the BLAS numpy uses.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load_idx(images_path, labels_path, limit=None):
    import numpy as np
    with gzip.open(images_path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803, images_path
        if limit:
            n = min(n, limit)
        x = np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, h * w)
    with gzip.open(labels_path, "rb") as f:
        magic, _ = struct.unpack(">II", f.read(8))
        assert magic == 0x801, labels_path
        y = np.frombuffer(f.read(n), dtype=np.uint8)
    return x, y.astype(np.int64)


def blas_name(np):
    """numpy's BLAS: its own report where numpy gives one (>= 1.26), else
    the BLAS libraries mapped into this process after a product."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return "%s %s" % (blas.get("name", "?"), blas.get("version", ""))
    except Exception:
        np.ones((64, 64)) @ np.ones((64, 64))
        with open("/proc/self/maps") as f:
            libs = sorted({os.path.realpath(line.split()[-1]) for line in f
                           if "blas" in line.lower() and "/" in line})
        return ", ".join(os.path.basename(p) for p in libs) or "unknown"


def numpy_loop(args, np, x, y, x_test, y_test, partition):
    dt = np.dtype(args.dtype)
    x, x_test = x.astype(dt) / dt.type(255), x_test.astype(dt) / dt.type(255)
    d, c = x.shape[1], 10
    w, b = np.zeros((d, c), dt), np.zeros(c, dt)
    rng = np.random.default_rng(1)
    lr = dt.type(args.lr)

    def softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def loss_of(xs, ys):
        p = softmax(xs @ w + b)
        return float(-np.log(p[np.arange(len(ys)), ys]).mean()), p

    ends, examples, accuracy = [], [], float("nan")
    for _ in range(args.rounds):
        chosen = rng.choice(len(partition), args.clients_per_round, replace=False)
        sum_w, sum_b, total = np.zeros_like(w), np.zeros_like(b), 0
        for k in chosen:
            xk, yk = x[partition[k]], y[partition[k]]
            wk, bk = w.copy(), b.copy()
            order = rng.permutation(len(yk))
            for s in range(0, len(yk), args.batch):
                idx = order[s:s + args.batch]
                xb = xk[idx]
                g = softmax(xb @ wk + bk)
                g[np.arange(len(idx)), yk[idx]] -= 1
                g /= len(idx)
                wk -= lr * (xb.T @ g)
                bk -= lr * g.sum(axis=0)
            sum_w += len(yk) * wk
            sum_b += len(yk) * bk
            total += len(yk)
        w, b = sum_w / total, sum_b / total
        examples.append(total)
        if args.eval:
            _, p = loss_of(x_test, y_test)
            accuracy = float((p.argmax(axis=1) == y_test).mean())
            loss_of(x, y)
        ends.append(time.perf_counter())
    return ends, examples, accuracy


def torch_loop(args, x, y, x_test, y_test, partition):
    import numpy as np
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    dt = getattr(torch, args.dtype)
    x = torch.from_numpy(x).to(dt) / 255
    x_test = torch.from_numpy(x_test).to(dt) / 255
    y, y_test = torch.from_numpy(y), torch.from_numpy(y_test)
    parts = [torch.tensor(p, dtype=torch.int64) for p in partition]
    if args.model == "linear":
        model = torch.nn.Linear(784, 10).to(dt)
        with torch.no_grad():
            model.weight.zero_()
            model.bias.zero_()
    else:
        # A network preset (tools/nn_reference/torch_models.py): images as
        # N x 1 x 28 x 28, PyTorch's default initialisation.
        sys.path.insert(0, os.path.join(HERE, "..", "tools", "nn_reference"))
        import torch_models
        model = torch_models.make(args.model).to(dt)
        x = x.reshape(-1, 1, 28, 28)
        x_test = x_test.reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(1)
    ends, examples, accuracy = [], [], float("nan")
    for _ in range(args.rounds):
        chosen = rng.choice(len(parts), args.clients_per_round, replace=False)
        global_state = {k: v.clone() for k, v in model.state_dict().items()}
        sums = {k: torch.zeros_like(v) for k, v in global_state.items()}
        total = 0
        for k in chosen:
            xk, yk = x[parts[k]], y[parts[k]]
            model.load_state_dict(global_state)
            opt = torch.optim.SGD(model.parameters(), lr=args.lr)
            if args.max_steps:
                # FedAU's I local steps: batches of a fresh order, reshuffled
                # at every pass, exactly max_steps of them.
                steps, order, s = 0, torch.randperm(len(yk)), 0
                while steps < args.max_steps:
                    if s >= len(yk):
                        order, s = torch.randperm(len(yk)), 0
                    idx = order[s:s + args.batch]
                    s += args.batch
                    opt.zero_grad()
                    F.cross_entropy(model(xk[idx]), yk[idx]).backward()
                    opt.step()
                    steps += 1
            else:
                order = torch.randperm(len(yk))
                for s in range(0, len(yk), args.batch):
                    idx = order[s:s + args.batch]
                    opt.zero_grad()
                    F.cross_entropy(model(xk[idx]), yk[idx]).backward()
                    opt.step()
            for name, v in model.state_dict().items():
                sums[name] += len(yk) * v
            total += len(yk)
        model.load_state_dict({k: v / total for k, v in sums.items()})
        examples.append(total)
        if args.eval:
            with torch.no_grad():
                logits = model(x_test)
                F.cross_entropy(logits, y_test)
                accuracy = float((logits.argmax(1) == y_test).to(dt).mean())
                F.cross_entropy(model(x), y)
        ends.append(time.perf_counter())
    return ends, examples, accuracy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("numpy", "torch"), required=True)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--partition", required=True)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-eval", dest="eval", action="store_false")
    parser.add_argument("--data", default=os.path.join(
        HERE, "..", "third_party", "data", "fashion-mnist"))
    parser.add_argument("--train-rows", type=int, default=0,
                        help="smoke runs: keep only client rows below this")
    parser.add_argument("--clients-per-round", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--model", default="linear",
                        help="linear (softmax regression), or a network preset "
                             "(torch backend only), e.g. fedau_cnn_mnist")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="local steps per client (0: one epoch)")
    args = parser.parse_args()
    if args.model != "linear" and args.backend != "torch":
        sys.exit("plain_quickstart: --model " + args.model + " needs --backend torch")
    if args.rounds < 2:
        sys.exit("plain_quickstart: --rounds must be at least 2")
    # OpenBLAS (numpy's, and PyTorch's own pool) reads these at load time.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    with open(args.partition) as f:
        partition = [np.array([int(v) for v in line.split()], dtype=np.int64)
                     for line in f]
    if args.train_rows:
        partition = [p[p < args.train_rows] if (p < args.train_rows).any()
                     else np.zeros(1, np.int64) for p in partition]
    data = os.path.abspath(args.data)
    x, y = load_idx(os.path.join(data, "train-images-idx3-ubyte.gz"),
                    os.path.join(data, "train-labels-idx1-ubyte.gz"),
                    args.train_rows or None)
    x_test, y_test = load_idx(os.path.join(data, "t10k-images-idx3-ubyte.gz"),
                              os.path.join(data, "t10k-labels-idx1-ubyte.gz"))
    versions = {"numpy": np.__version__, "blas": blas_name(np)}
    if args.backend == "numpy":
        ends, examples, accuracy = numpy_loop(args, np, x, y, x_test, y_test, partition)
    else:
        import torch
        versions["torch"] = torch.__version__
        ends, examples, accuracy = torch_loop(args, x, y, x_test, y_test, partition)
    result = {
        "backend": args.backend, "dtype": args.dtype, "threads": args.threads,
        "eval": args.eval, "rounds": len(ends), "model": args.model,
        "per_round_s": (ends[-1] - ends[0]) / (len(ends) - 1),
        "train_examples_per_round": sum(examples) / len(examples),
        "eval_rows": len(y_test) + len(y) if args.eval else 0,
        "test_accuracy": accuracy,
        "versions": versions,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
