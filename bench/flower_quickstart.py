#!/usr/bin/env python3
"""Benchmark 4's Flower baseline (docs/performance.md): fedsim's quickstart
as a Flower simulation. A benchmark script outside the product.

The same task as configs/quickstart.yaml: softmax regression (a linear
layer 784 -> 10, zero initial parameters, float64 like fedsim) on
Fashion-MNIST (pixels / 255), the 100 clients of fedsim's own
Dirichlet(0.5) split (bench_export_partition writes it: line k = client k's
training rows), 10 clients a round chosen uniformly, FedAvg weighted by
n_k, one local epoch of SGD with batches of 32 and lr 0.05 (PyTorch on one
thread per client), and after every round the global model evaluated
centrally on the test set and on the whole training set (fedsim's
eval.every 1, eval.train_loss true); --no-eval skips that evaluation (the
callback only takes the time).

Flower's Simulation Engine (Ray backend) with 100 SuperNodes, 2 CPUs and
one CPU per ClientApp.

--model fedau_cnn_mnist --max-steps 5 --dtype float32 runs the FedAU CNN
experiment instead (configs/fedau_cnn_fmnist.yaml, bench/run.sh's networks
section): FedAU's MNIST CNN (tools/nn_reference/torch_models.py) on images
of 1 x 28 x 28, exactly 5 local steps of 32 per client (batches of a fresh
order, reshuffled at every pass, as bench/plain_quickstart.py does),
float32.

  bench/.venv/bin/python3 bench/flower_quickstart.py --partition FILE
      --rounds R --out RESULT.json [--data DIR] [--train-rows N]
      [--model fedau_cnn_mnist --max-steps 5 --dtype float32]

RESULT.json: rounds, per_round_s (time between the end of the first and of
the last round / (R - 1), as bench/report.py does for fedsim),
train_s_per_round and eval_s_per_round (time inside the ClientApps'
training and in the central evaluation), final test accuracy, versions.
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
        assert magic == 0x803
        if limit:
            n = min(n, limit)
        x = np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, h * w)
    with gzip.open(labels_path, "rb") as f:
        magic, _ = struct.unpack(">II", f.read(8))
        assert magic == 0x801
        y = np.frombuffer(f.read(n), dtype=np.uint8)
    return (x.astype(np.float32) / np.float32(255.0)), y.astype(np.int64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--partition", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=os.path.join(
        HERE, "..", "third_party", "data", "fashion-mnist"))
    parser.add_argument("--train-rows", type=int, default=0,
                        help="smoke runs: keep only client rows below this")
    parser.add_argument("--clients-per-round", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--no-train-loss", action="store_true",
                        help="evaluate on the test set only (eval.train_loss false)")
    parser.add_argument("--model", default="linear",
                        help="linear, or a preset of tools/nn_reference/torch_models.py")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="local steps per client (0: one epoch)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--no-eval", action="store_true",
                        help="no evaluation: the server's evaluate callback only "
                             "takes the time (bench/run.sh's evaluation off)")
    args = parser.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    import flwr
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    data_dir = os.path.abspath(args.data)
    with open(args.partition) as f:
        partition = [[int(v) for v in line.split()] for line in f]
    if args.train_rows:
        partition = [[r for r in rows if r < args.train_rows] or [0]
                     for rows in partition]
    num_clients = len(partition)
    partition_path = os.path.abspath(args.partition)
    timings = {"train_s": 0.0}

    dt = getattr(torch, args.dtype)
    # The model's input: flat rows, or N x 1 x 28 x 28 images for a network.
    shape = (-1, 784) if args.model == "linear" else (-1, 1, 28, 28)

    def make_model():
        if args.model == "linear":
            model = torch.nn.Linear(784, 10).to(dt)
            with torch.no_grad():
                model.weight.zero_()
                model.bias.zero_()
            return model
        sys.path.insert(0, os.path.join(HERE, "..", "tools", "nn_reference"))
        import torch_models
        return torch_models.make(args.model).to(dt)

    # ClientApp: loads the training set once per process (a Ray actor). The
    # ClientApp is unpickled afresh for every message, so the cache hangs on
    # an importable module, which the actor keeps; a closure's dict would be
    # a new, empty one every time (and every client would reload the data).
    def client_data(k):
        import builtins
        cache = getattr(builtins, "_fedsim_bench_cache", None)
        if cache is None:
            cache = {}
            builtins._fedsim_bench_cache = cache
        if "x" not in cache:
            x, y = load_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"),
                            os.path.join(data_dir, "train-labels-idx1-ubyte.gz"),
                            args.train_rows or None)
            cache["x"], cache["y"] = torch.from_numpy(x), torch.from_numpy(y)
            with open(partition_path) as f:
                cache["rows"] = [[int(v) for v in line.split()] for line in f]
            if args.train_rows:
                cache["rows"] = [[r for r in rows if r < args.train_rows] or [0]
                                 for rows in cache["rows"]]
        rows = torch.tensor(cache["rows"][k], dtype=torch.int64)
        return cache["x"][rows], cache["y"][rows]

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context):
        start = time.perf_counter()
        torch.set_num_threads(1)
        k = int(context.node_config["partition-id"])
        x, y = client_data(k)
        model = make_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)
        n = x.shape[0]
        total, seen = 0.0, 0

        def step(idx):
            xb = x[idx].to(dt).reshape(shape)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), y[idx])
            loss.backward()
            opt.step()
            return float(loss.detach()) * len(idx)

        if args.max_steps:
            # Exactly max_steps batches of a fresh order, reshuffled at every
            # pass (FedAU's I local steps, as bench/plain_quickstart.py).
            order, s = torch.randperm(n), 0
            for _ in range(args.max_steps):
                if s >= n:
                    order, s = torch.randperm(n), 0
                idx = order[s:s + args.batch]
                s += args.batch
                total += step(idx)
                seen += len(idx)
        else:
            perm = torch.randperm(n)
            for begin in range(0, n, args.batch):
                idx = perm[begin:begin + args.batch]
                total += step(idx)
                seen += len(idx)
        total *= n / max(1, seen)
        content = RecordDict({
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": total / n, "num-examples": n,
                                     "train_s": time.perf_counter() - start}),
        })
        return Message(content=content, reply_to=msg)

    x_test, y_test = load_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"),
                              os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    x_train, y_train = load_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"),
                                os.path.join(data_dir, "train-labels-idx1-ubyte.gz"),
                                args.train_rows or None)
    x_test = torch.from_numpy(x_test).to(dt).reshape(shape)
    x_train = torch.from_numpy(x_train).to(dt).reshape(shape)
    y_test, y_train = torch.from_numpy(y_test), torch.from_numpy(y_train)
    round_end = []
    eval_s = []
    accuracy = []

    def global_evaluate(server_round, arrays):
        start = time.perf_counter()
        if args.no_eval:
            eval_s.append(0.0)
            if server_round > 0:
                round_end.append(start)
            return MetricRecord({})
        model = make_model()
        model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            logits = model(x_test)
            test_loss = float(F.cross_entropy(logits, y_test))
            acc = float((logits.argmax(1) == y_test).double().mean())
            train_loss = (float("nan") if args.no_train_loss else
                          float(F.cross_entropy(model(x_train), y_train)))
        now = time.perf_counter()
        eval_s.append(now - start)
        if server_round > 0:
            round_end.append(now)
            accuracy.append(acc)
        return MetricRecord({"test_loss": test_loss, "test_accuracy": acc,
                             "train_loss": train_loss})

    server_app = ServerApp()

    def sum_train_time(replies, weighting_key):
        # The round's total time inside the ClientApps' training.
        total = 0.0
        for reply in replies:
            for record in reply.metric_records.values():
                total += float(record.get("train_s", 0.0))
        return MetricRecord({"train_s": total})

    @server_app.main()
    def main_fn(grid: Grid, context: Context):
        strategy = FedAvg(train_metrics_aggr_fn=sum_train_time,
                          fraction_train=args.clients_per_round / num_clients,
                          fraction_evaluate=0.0,
                          min_train_nodes=args.clients_per_round,
                          min_evaluate_nodes=0,
                          min_available_nodes=num_clients)
        result = strategy.start(grid=grid,
                                initial_arrays=ArrayRecord(make_model().state_dict()),
                                train_config=ConfigRecord({"lr": args.lr}),
                                num_rounds=args.rounds,
                                evaluate_fn=global_evaluate)
        train_s = 0.0
        for metrics in result.train_metrics_clientapp.values():
            train_s += float(metrics.get("train_s", 0.0))
        timings["train_s_mean_round"] = train_s / max(1, args.rounds)

    torch.set_num_threads(1)
    run_simulation(server_app=server_app, client_app=client_app,
                   num_supernodes=num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2}})
    if len(round_end) < 2:
        sys.exit("flower_quickstart: fewer than 2 rounds finished")
    per_round = (round_end[-1] - round_end[0]) / (len(round_end) - 1)
    result = {
        "rounds": len(round_end),
        "per_round_s": per_round,
        "eval_s_per_round": sum(eval_s[1:]) / len(eval_s[1:]),
        "train_s_per_round": timings.get("train_s_mean_round", float("nan")),
        "test_accuracy": accuracy[-1] if accuracy else float("nan"),
        "model": args.model,
        "dtype": args.dtype,
        "flwr": flwr.__version__,
        "torch": torch.__version__,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
