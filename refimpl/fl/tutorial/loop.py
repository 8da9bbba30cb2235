"""The tutorial's training loop on workers: the model travels to the data, batch after batch.

:func:`train` runs one epoch. Without averaging it is PySyft's loop (one model, sent to each batch's worker)::

    for batch_idx, (data, target) in enumerate(loader):
        model_ptr = model.send(data.location)
        loss_ptr = model_ptr.train_step(data, target, lr=lr)
        model = model_ptr.get()
        if batch_idx % log_interval == 0:
            print(progress_line(epoch, batch_idx * B, len(loader) * B, 100 * batch_idx / len(loader), loss_ptr.get()))

With ``average_every=n`` it is federated averaging: each worker trains its own copy of the model on up to n of its
batches, then the copies are averaged, on a trusted aggregator (:func:`~refimpl.fl.tutorial.trusted_average`) or
under secret sharing (:func:`~refimpl.fl.tutorial.secure_average`), weighted by the workers' sample counts.
``average_every="epoch"`` averages once per epoch: that is a FedAvg round of :mod:`refimpl.fl.client` /
:mod:`refimpl.fl.server` with E = 1 and every client taking part, batch for batch.

:func:`test` prints the tutorial's ``Test set: Average loss: 0.2428, Accuracy: 9300/10000 (93%)``; :func:`run` is
the whole experiment (workers, data, epochs, cost from the ledger) behind the demo and the benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl.fl.tutorial.averaging import secure_average, trusted_average
from refimpl.fl.tutorial.dataset import FederatedDataLoader, federate
from refimpl.fl.tutorial.model import Model

__all__ = ["AVERAGING", "progress_line", "run", "test", "test_line", "train"]

AVERAGING = ("trusted", "secure")
Out = Callable[[str], Any]


def progress_line(epoch: int, seen: int, total: int, percent: float, loss: float) -> str:
    """``Train Epoch: 1 [0/60032 (0%)]  Loss: 2.306809``."""
    return f"Train Epoch: {epoch} [{seen}/{total} ({percent:.0f}%)]  Loss: {float(loss):.6f}"


def test_line(loss: float, correct: int, total: int) -> str:
    """``Test set: Average loss: 0.2428, Accuracy: 9300/10000 (93%)``."""
    return f"Test set: Average loss: {loss:.4f}, Accuracy: {correct}/{total} ({100.0 * correct / total:.0f}%)"


class _Progress:
    """Per-batch lines every ``log_interval`` batches (``"lines"``), a tqdm bar with the same figures (``"bar"``),
    or nothing (None)."""

    def __init__(self, mode: str | None, epoch: int, loader: FederatedDataLoader, log_interval: int, out: Out) -> None:
        if mode not in ("lines", "bar", None):
            raise ValueError(f"progress must be 'lines', 'bar' or None, got {mode!r}")
        self.mode, self.epoch, self.out, self.log_interval = mode, epoch, out, max(1, int(log_interval))
        self.batches, self.batch_size = len(loader), loader.batch_size
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.batches * self.batch_size, desc=f"Train Epoch {epoch}", unit="ex")
        self.losses: list[float] = []

    def step(self, batch_idx: int, loss_ptr: Any) -> None:
        if self.mode is None or batch_idx % self.log_interval:
            if self.bar is not None:
                self.bar.update(self.batch_size)
            return
        loss = float(loss_ptr.get())
        self.losses.append(loss)
        seen, total = batch_idx * self.batch_size, self.batches * self.batch_size
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.6f}")
            self.bar.update(self.batch_size)
        else:
            self.out(progress_line(self.epoch, seen, total, 100.0 * batch_idx / self.batches, loss))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(model: Model, loader: FederatedDataLoader, *, epoch: int = 1, lr: float = 0.01, log_interval: int = 30,
          out: Out = print, backend: str = "jax", average_every: int | str | None = None, average: str = "trusted",
          aggregator: Any = None, crypto_provider: Any = None, progress: str | None = "lines") -> Model:
    """One epoch of the worker loop; returns the trained model (the input model is not modified).

    Args:
        model: the model to train (local).
        loader: the federated batches; epoch ``epoch`` uses the loader's order for epoch ``epoch - 1``.
        epoch: 1-based epoch number (printed, and it picks the batch order).
        lr: SGD learning rate.
        log_interval: fetch and print the loss every this many batches.
        out: where progress lines go.
        backend: ``jax`` or ``numpy`` (the workers' ``train_step``).
        average_every: None (the loader's ``average_every``, itself None by default: the tutorial, one model
            travels), n (average every n batches per worker) or ``"epoch"`` (once, at the end of the epoch).
        average: ``trusted`` (on ``aggregator``) or ``secure`` (secret-shared among the workers).
        aggregator: the trusted worker (``secure_worker`` in the tutorial) for ``average="trusted"``.
        crypto_provider: passed to the secret sharing for ``average="secure"``.
        progress: ``lines`` (the tutorial's), ``bar`` (tqdm) or None.

    Raises:
        ValueError: bad ``average``/``average_every``, or trusted averaging without an aggregator.
    """
    if average_every is None:
        average_every = loader.average_every
    if average not in AVERAGING:
        raise ValueError(f"average must be one of {AVERAGING}, got {average!r}")
    if average_every is not None and average == "trusted" and aggregator is None:
        raise ValueError("trusted averaging needs an aggregator worker (aggregator=secure_worker)")
    bar = _Progress(progress, epoch, loader, log_interval, out)
    try:
        if average_every is None:
            for batch_idx, (data, target) in enumerate(loader.epoch(epoch - 1)):
                model_ptr = model.send(data.location)
                loss_ptr = model_ptr.train_step(data, target, lr=lr, backend=backend)
                model = model_ptr.get()
                bar.step(batch_idx, loss_ptr)
            return model
        every = max(loader.batches_of(k) for k in range(len(loader.workers))) if average_every == "epoch" \
            else average_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"average_every must be None, 'epoch' or an int >= 1, got {average_every!r}")
        sizes, batch_idx = loader.federated_dataset.sizes, 0
        for rnd in loader.rounds(epoch - 1, every):
            pointers, weights = [], []
            for k, batches in rnd:
                model_ptr = model.send(loader.workers[k])
                for data, target in batches:
                    bar.step(batch_idx, model_ptr.train_step(data, target, lr=lr, backend=backend))
                    batch_idx += 1
                pointers.append(model_ptr)
                weights.append(sizes[k])
            if len(pointers) == 1:
                model = pointers[0].get()
            elif average == "trusted":
                model = trusted_average(pointers, aggregator, weights)
            else:
                model = secure_average(pointers, crypto_provider, weights)
        return model
    finally:
        bar.close()


def test(model: Model, x: Any, y: Any, out: Out = print) -> tuple[float, int]:
    """Evaluate locally and print the tutorial's test line; returns (average loss, number correct)."""
    loss, correct = model.evaluate(x, y)
    out(test_line(loss, correct, len(y)))
    return loss, correct


def run(*, dataset: str = "mnist-10k", workers: int = 2, epochs: int = 5, lr: float = 0.01, batch_size: int = 64,
        model: str = "2nn", seed: int = 0, partition: str = "iid", average_every: int | str | None = None,
        average: str = "trusted", backend: str = "jax", log_interval: int = 30, progress: str | None = "lines",
        out: Out = print, data_dir: str | None = None) -> dict[str, Any]:
    """The whole experiment: make the workers, federate the data, train and test every epoch, measure the cost.

    Workers are ``bob`` and ``alice`` (then ``worker2``, ...), plus ``secure_worker`` (the trusted aggregator) and
    ``crypto_provider``, all on one :class:`~refimpl.workers.Ledger`.

    Returns:
        ``{"accuracy", "test_loss", "correct", "epochs": [{"epoch", "seconds", "accuracy", "test_loss",
        "bytes": {worker: {"sent", "received"}}}], "model": Model, "config": {...}}``.
    """
    from refimpl.fl import data
    from refimpl.workers import Ledger, VirtualWorker

    ds = data.load(dataset, data_dir=data_dir)
    ledger = Ledger(keep=0)
    names = ["bob", "alice"][:workers] + [f"worker{i}" for i in range(2, workers)]
    people = [VirtualWorker(n, ledger) for n in names]
    secure_worker, provider = VirtualWorker("secure_worker", ledger), VirtualWorker("crypto_provider", ledger)
    fed = federate(ds, people, partition=partition, seed=seed)
    loader = FederatedDataLoader(fed, batch_size=batch_size, shuffle=True, seed=seed)
    net = Model.init(model, seed=seed)
    config = {"dataset": ds.name, "train": len(ds.x_train), "test": len(ds.x_test), "workers": names,
              "epochs": epochs, "lr": lr, "batch_size": batch_size, "model": model, "seed": seed,
              "partition": partition, "average_every": average_every,
              "average": average if average_every is not None else None, "backend": backend}
    history: list[dict[str, Any]] = []
    parties = names + ["secure_worker", "crypto_provider", "me"]
    for epoch in range(1, epochs + 1):
        before = {p: (ledger.sent(p), ledger.received(p)) for p in parties}
        t0 = time.perf_counter()
        net = train(net, loader, epoch=epoch, lr=lr, log_interval=log_interval, out=out, backend=backend,
                    average_every=average_every, average=average, aggregator=secure_worker,
                    crypto_provider=provider, progress=progress)
        seconds = time.perf_counter() - t0
        loss, correct = test(net, ds.x_test, ds.y_test, out)
        history.append({"epoch": epoch, "seconds": seconds, "accuracy": correct / len(ds.y_test),
                        "test_loss": loss, "bytes": {p: {"sent": ledger.sent(p) - before[p][0],
                                                         "received": ledger.received(p) - before[p][1]}
                                                     for p in parties}})
    accuracy = float(history[-1]["accuracy"]) if history else float("nan")
    return {"accuracy": accuracy, "test_loss": history[-1]["test_loss"] if history else float("nan"),
            "correct": int(round(accuracy * len(ds.y_test))) if history else 0, "epochs": history, "model": net,
            "config": config, "ledger": ledger.summary(), "final_vector": np.asarray(net.vector())}
