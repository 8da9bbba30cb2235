"""The tutorial's loop on workers against the vmapped engine: seconds and bytes per epoch; accuracy and agreement.

Default (cost): ``mnist-10k`` split IID between 2 workers, batch 64, SGD lr 0.1, one epoch per FedAvg round.
Variants, timed epoch by epoch in interleaved order after one warm-up epoch each:

* ``tutorial``        -- PySyft's loop: one model sent to each batch's worker, trained there, fetched back;
* ``tutorial_numpy``  -- (``--numpy``) the same with the workers' NumPy reference ``train_step`` (float64);
* ``fedavg_trusted``  -- each worker trains its copy for the epoch; averaged on a trusted aggregator;
* ``fedavg_secure``   -- the same, averaged under secret sharing (only the average opened);
* ``engine_vmap``     -- the vmapped engine's round (refimpl.fl.client / server; the fast path);
* ``engine_loop``     -- the engine with one jitted client program per client;
* ``local_steps``     -- the naive baseline without workers: the same jitted SGD step per batch, in a Python loop.

Bytes per epoch per worker (sent + received) come from the workers' ledger.

``--accuracy``: test accuracy with the tutorial's hyperparameters (SGD lr 0.01, batch 64, 5 epochs, 2 workers)
and the variations that reach 93%, on ``mnist-10k`` and on MNIST 60k where its IDX files are present
(``python -m refimpl data fetch mnist``); the demo's settings; agreement of FedAvg-on-workers with the vmapped
engine per epoch (from the same model) and over whole runs. Logs in the tutorial's format and a JSON summary go to
``docs/fl-workers/``.

Usage: ``python bench/bench_fl_workers.py [--epochs 3] [--model 2nn] [--out PATH]``;
``python bench/bench_fl_workers.py --accuracy [--docs docs/fl-workers]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import _common
import jax
import numpy as np
import optax

from refimpl.fl import client, data, partition, server
from refimpl.fl import model as mlp
from refimpl.fl.tutorial import FederatedDataLoader, Model, federate, run, train
from refimpl.fl.tutorial.instructions import train_step
from refimpl.workers import Ledger, VirtualWorker

B, LR = 64, 0.1


class WorkerVariant:
    """One epoch of the worker loop per call, with its own workers and ledger."""

    def __init__(self, ds, model_name: str, **train_kw) -> None:
        self.ledger = Ledger(keep=0)
        self.people = [VirtualWorker(n, self.ledger) for n in ("bob", "alice")]
        self.sw = VirtualWorker("secure_worker", self.ledger)
        self.cp = VirtualWorker("crypto_provider", self.ledger)
        self.loader = FederatedDataLoader(federate(ds, self.people, seed=0), batch_size=B, shuffle=True, seed=0)
        self.model, self.epoch, self.kw = Model.init(model_name, seed=0), 0, train_kw
        self.bytes: list[int] = []

    def __call__(self) -> None:
        before = [self.ledger.sent(w.name) + self.ledger.received(w.name) for w in self.people]
        self.epoch += 1
        self.model = train(self.model, self.loader, epoch=self.epoch, lr=LR, aggregator=self.sw,
                           crypto_provider=self.cp, progress=None, **self.kw)
        after = [self.ledger.sent(w.name) + self.ledger.received(w.name) for w in self.people]
        self.bytes.append(max(a - b for a, b in zip(after, before)))


class EngineVariant:
    def __init__(self, ds, model_name: str, program) -> None:
        parts = partition.iid(ds.y_train, 2, seed=0)
        self.cdata = server.to_device(partition.federate(ds.x_train, ds.y_train, parts))
        self.fedavg = server.FedAvg(program(optax.sgd(LR), local_epochs=1, batch_size=B),
                                    server.server_optimizer("fedavg"), fraction=1.0, seed=0)
        self.state = self.fedavg.init(mlp.init(model_name, seed=0))

    def __call__(self) -> None:
        self.state, _ = self.fedavg.run_round(self.state, self.cdata)
        jax.block_until_ready(self.state.params)


class LocalSteps:
    """No workers, no messages: the workers' jitted step on the same batches, called from a Python loop."""

    def __init__(self, ds, model_name: str) -> None:
        parts = partition.iid(ds.y_train, 2, seed=0)
        self.xs = [ds.x_train[p] for p in parts]
        self.ys = [ds.y_train[p] for p in parts]
        self.params = mlp.init(model_name, seed=0)

    def __call__(self) -> None:
        for x, y in zip(self.xs, self.ys):
            for start in range(0, len(y), B):
                train_step(None, self.params, x[start:start + B], y[start:start + B], lr=LR)


def cost(args: argparse.Namespace) -> dict:
    ds = data.load("mnist-10k")
    variants = {
        "tutorial": WorkerVariant(ds, args.model),
        "fedavg_trusted": WorkerVariant(ds, args.model, average_every="epoch", average="trusted"),
        "fedavg_secure": WorkerVariant(ds, args.model, average_every="epoch", average="secure"),
        "engine_vmap": EngineVariant(ds, args.model, client.make_round_update),
        "engine_loop": EngineVariant(ds, args.model, client.make_loop_update),
        "local_steps": LocalSteps(ds, args.model),
    }
    if args.numpy:
        variants["tutorial_numpy"] = WorkerVariant(ds, args.model, backend="numpy")
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm-up epoch (compilation)
        fn()
    for _ in range(args.epochs):
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    engine = statistics.median(times["engine_vmap"])
    rows = {}
    for name, ts in times.items():
        v = variants[name]
        rows[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts,
                      "min_cpu_s": min(cpu[name]), "cpu_vs_engine_vmap": min(cpu[name]) / min(cpu["engine_vmap"]),
                      "vs_engine_vmap": statistics.median(ts) / engine,
                      "bytes_per_epoch_per_worker": v.bytes[-1] if isinstance(v, WorkerVariant) else None}
    return {"benchmark": "fl_workers", "machine": _common.machine_info(optax=optax.__version__),
            "setting": {"data": "mnist-10k (8,000 train)", "workers": 2, "batch_size": B, "lr": LR,
                        "model": args.model, "params": mlp.num_params(mlp.init(args.model)),
                        "timed_epochs": args.epochs, "steps_per_epoch": 2 * int(np.ceil(4000 / B))},
            "variants": rows}


def agreement(ds, model_name: str, epochs: int, lr: float, b: int, average: str) -> dict:
    """FedAvg on workers vs the vmapped engine: per epoch from the same model, and over a whole run."""
    ledger = Ledger(keep=0)
    people = [VirtualWorker(n, ledger) for n in ("alice", "bob")]
    sw, cp = VirtualWorker("secure_worker", ledger), VirtualWorker("crypto_provider", ledger)
    loader = FederatedDataLoader(federate(ds, people, seed=0), batch_size=b, shuffle=True, seed=0)
    cdata = server.to_device(partition.federate(ds.x_train, ds.y_train, partition.iid(ds.y_train, 2, seed=0)))
    fedavg = server.FedAvg(client.make_round_update(optax.sgd(lr), local_epochs=1, batch_size=b),
                           server.server_optimizer("fedavg"), fraction=1.0, seed=0)
    net, state = Model.init(model_name, seed=0), fedavg.init(mlp.init(model_name, seed=0))
    rows = []
    for epoch in range(1, epochs + 1):
        same_start = fedavg.init(net.params)._replace(round=epoch - 1)
        same_start, _ = fedavg.run_round(same_start, cdata)
        net = train(net, loader, epoch=epoch, lr=lr, average_every="epoch", average=average, aggregator=sw,
                    crypto_provider=cp, progress=None)
        state, _ = fedavg.run_round(state, cdata)
        one = np.abs(net.vector() - Model(same_start.params).vector())
        run_diff = np.abs(net.vector() - Model(state.params).vector())
        rows.append({"epoch": epoch, "same_start_max_abs_diff": float(one.max()),
                     "run_max_abs_diff": float(run_diff.max()), "run_mean_abs_diff": float(run_diff.mean())})
    return {"model": model_name, "lr": lr, "batch_size": b, "average": average, "epochs": rows}


def accuracy(args: argparse.Namespace) -> dict:
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    configs = [
        ("tutorial", {"lr": 0.01}),
        ("tutorial-lr0.2", {"lr": 0.2}),
        ("tutorial-lr0.2-seed1", {"lr": 0.2, "seed": 1}),
        ("tutorial-lr0.2-seed2", {"lr": 0.2, "seed": 2}),
        ("tutorial-lr0.3", {"lr": 0.3}),
        ("tutorial-lr0.3-seed1", {"lr": 0.3, "seed": 1}),
        ("tutorial-lr0.3-seed2", {"lr": 0.3, "seed": 2}),
        ("tutorial-lr0.1", {"lr": 0.1}),
        ("tutorial-38-epochs", {"lr": 0.01, "epochs": 38}),  # as many SGD steps as 5 epochs of 60,000 images
        ("tutorial-fedavg-secure", {"lr": 0.01, "average_every": "epoch", "average": "secure"}),
        ("demo-fedavg-secure", {"lr": 0.1, "batch_size": 16, "average_every": "epoch", "average": "secure"}),
    ]
    datasets = ["mnist-10k"]
    try:
        data.load("mnist", use_tfds=False)
        datasets.append("mnist")
    except data.DatasetNotFoundError as e:
        print(f"# MNIST 60k not run: its IDX files are absent ({type(e).__name__}); python -m refimpl data fetch mnist")
    results = []
    for dataset in datasets:
        for name, kw in configs if dataset == "mnist-10k" else configs[:2] + configs[4:5]:
            cfg = {"epochs": 5, "batch_size": 64, "workers": 2, **kw}
            lines: list[str] = []
            t0 = time.perf_counter()
            r = run(dataset=dataset, log_interval=30, out=lines.append, **cfg)
            seconds = time.perf_counter() - t0
            stem = f"{dataset}-{name}"
            (docs / f"{stem}.log").write_text("\n".join(lines) + "\n")
            results.append({"run": stem, "config": r["config"], "accuracy": r["accuracy"],
                            "test_loss": r["test_loss"], "seconds": seconds,
                            "epochs": [{k: e[k] for k in ("epoch", "accuracy", "test_loss", "seconds")}
                                       for e in r["epochs"]]})
            last = ", ".join(f"{e['accuracy']:.2%}" for e in r["epochs"][-5:])
            print(f"{stem:40s} accuracy {r['accuracy']:.2%} (last epochs: {last}) {seconds:.1f} s")
    ds = data.load("mnist-10k")
    agree = [agreement(ds, m, 5, 0.1, 16, avg) for m, avg in (("small", "trusted"), ("2nn", "trusted"),
                                                             ("2nn", "secure"))]
    for a in agree:
        print(f"agreement {a['model']}/{a['average']}: per epoch from the same model, max |diff| <= "
              f"{max(e['same_start_max_abs_diff'] for e in a['epochs']):.1e}; whole run after 5 epochs "
              f"{a['epochs'][-1]['run_max_abs_diff']:.1e} (mean {a['epochs'][-1]['run_mean_abs_diff']:.1e})")
    report = {"benchmark": "fl_workers_accuracy", "machine": _common.machine_info(), "runs": results,
              "agreement": agree}
    (docs / "accuracy.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"# wrote {docs / 'accuracy.json'} and the logs")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up)")
    parser.add_argument("--model", default="2nn", help="2nn (784-200-200-10) or small (784-128-10)")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/fl_workers-<date>.json)")
    parser.add_argument("--accuracy", action="store_true", help="accuracy and agreement runs instead of cost")
    parser.add_argument("--numpy", action="store_true", help="also time the workers' NumPy reference train_step")
    parser.add_argument("--docs", default=str(_common.ROOT / "docs" / "fl-workers"), help="where --accuracy writes")
    args = parser.parse_args(argv)
    if args.accuracy:
        accuracy(args)
        return 0
    report = cost(args)
    _common.write_result(report, args.out, "fl_workers")
    s = report["setting"]
    print(f"one epoch of {s['data']}, 2 workers, B={B} ({s['steps_per_epoch']} SGD steps), model {s['model']} "
          f"({s['params']} params); median of {s['timed_epochs']} interleaved epochs")
    print(f"{'variant':16s} {'median s':>9s} {'min s':>7s} {'x engine_vmap':>14s} {'min CPU s':>10s} "
          f"{'x engine (CPU)':>15s} {'MB/epoch/worker':>16s}")
    for name, r in report["variants"].items():
        mb = "" if r["bytes_per_epoch_per_worker"] is None else f"{r['bytes_per_epoch_per_worker'] / 1e6:.2f}"
        print(f"{name:16s} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['vs_engine_vmap']:14.2f} {r['min_cpu_s']:10.3f} "
              f"{r['cpu_vs_engine_vmap']:15.2f} {mb:>16s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
