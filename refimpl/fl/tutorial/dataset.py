"""Data held by workers: ``federate(dataset, workers)`` and the tutorial's ``FederatedDataLoader``.

:func:`federate` splits a dataset among workers (IID, Dirichlet label skew or shards, exactly as
:func:`refimpl.fl.partition.make_partition` does), sends each worker its part and returns a
:class:`FederatedDataset` of pointers. The owner keeps only the pointers and the partition (index lists).

:class:`FederatedDataLoader` yields ``(data_ptr, target_ptr)`` batches whose ``.location`` is the worker holding
them, worker after worker, as PySyft's loader does. Each batch is cut at its worker (the registered ``take_rows``
instruction); only the row indices travel. The batch order of worker k in epoch e is the one
:mod:`refimpl.fl.client` uses for client k in round e (``client.batch_order`` under ``client.epoch_keys(seed, e,
k, 1)``, over the padded length ``max_k n_k``), so one epoch of the worker loop with averaging at its end visits
the same batches as a FedAvg round of the vmapped engine (E = 1, every client, ``pad_multiple=1``).

Example:
    >>> import numpy as np
    >>> from refimpl.workers import Ledger, VirtualWorker
    >>> ledger = Ledger()
    >>> jake, john = VirtualWorker("jake", ledger), VirtualWorker("john", ledger)
    >>> ds = TensorDataset(np.zeros((10, 4), np.float32), np.arange(10) % 2)
    >>> fed = ds.federate((jake, john))
    >>> fed, len(fed)
    (FederatedDataset(workers=['jake', 'john'], sizes=[5, 5]), 10)
    >>> loader = FederatedDataLoader(fed, batch_size=2, shuffle=True)
    >>> len(loader), [(d.location.name, t.get().shape) for d, t in loader][:4]
    (6, [('jake', (2,)), ('jake', (2,)), ('jake', (1,)), ('john', (2,))])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl.errors import PartyCountError
from refimpl.fl import partition as part
from refimpl.fl.tutorial.instructions import call
from refimpl.workers import Pointer, Worker, send

__all__ = ["FederatedDataLoader", "FederatedDataset", "TensorDataset", "federate"]


@dataclasses.dataclass(frozen=True)
class TensorDataset:
    """Examples ``x`` (N, D) and integer targets ``y`` (N,) held locally; ``.federate(workers)`` sends them out."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, dtype=np.float32), np.asarray(self.y)
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"need x (N, D) and y (N,), got shapes {x.shape} and {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"targets must be integer labels, got dtype {y.dtype}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y.astype(np.int32))

    def __len__(self) -> int:
        return len(self.y)

    def federate(self, workers: Sequence[Any], **kwargs: Any) -> FederatedDataset:
        """``federate(self, workers, **kwargs)``: PySyft's ``dataset.federate((bob, alice))``."""
        return federate(self, workers, **kwargs)


@dataclasses.dataclass(frozen=True)
class FederatedDataset:
    """A dataset split among workers: per worker, pointers to its examples and targets.

    Attributes:
        workers: the workers, in partition order (worker k holds part k).
        data: pointers to each worker's examples (n_k, D).
        targets: pointers to each worker's targets (n_k,).
        sizes: n_k per worker.
        partition: the index arrays into the original dataset (kept by the owner, who made the split).
    """

    workers: tuple[Any, ...]
    data: tuple[Pointer, ...]
    targets: tuple[Pointer, ...]
    sizes: tuple[int, ...]
    partition: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(sum(self.sizes))

    def __getitem__(self, worker: str) -> tuple[Pointer, Pointer]:
        """``fed["alice"]``: alice's (data, targets) pointers."""
        for w, d, t in zip(self.workers, self.data, self.targets):
            if w.name == worker:
                return d, t
        raise KeyError(f"no worker {worker!r} in this dataset; it has {[w.name for w in self.workers]}")

    def __repr__(self) -> str:
        return f"FederatedDataset(workers={[w.name for w in self.workers]}, sizes={list(self.sizes)})"


def _arrays(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(dataset, TensorDataset):
        return dataset.x, dataset.y
    if hasattr(dataset, "x_train") and hasattr(dataset, "y_train"):  # refimpl.fl.data.Dataset: its training split
        return np.asarray(dataset.x_train, np.float32), np.asarray(dataset.y_train)
    if isinstance(dataset, tuple) and len(dataset) == 2:
        ds = TensorDataset(*dataset)
        return ds.x, ds.y
    raise TypeError(f"federate takes a TensorDataset, a refimpl.fl.data.Dataset or an (x, y) pair, got "
                    f"{type(dataset).__name__}")


def federate(dataset: Any, workers: Sequence[Any], *, partition: str = "iid", seed: int = 0, alpha: float = 0.5,
             shards_per_client: int = 2) -> FederatedDataset:
    """Split ``dataset`` among ``workers`` and send each its part; returns the :class:`FederatedDataset`.

    Args:
        dataset: a :class:`TensorDataset`, an ``(x, y)`` pair, or a :class:`refimpl.fl.data.Dataset` (its
            training split).
        workers: distinct workers (any :class:`~refimpl.workers.Worker`); worker k gets part k.
        partition: ``iid``, ``dirichlet`` or ``shards`` (see :func:`refimpl.fl.partition.make_partition`).
        seed, alpha, shards_per_client: passed to the partition.

    Raises:
        PartyCountError: no workers.
        TypeError: a worker is not a Worker, or the dataset is of an unknown kind.
        ValueError: repeated workers, more workers than examples, or an unknown partition.
    """
    workers = tuple(workers)
    if not workers:
        raise PartyCountError("federate needs at least one worker")
    for w in workers:
        if not isinstance(w, Worker):
            raise TypeError(f"federate needs workers (VirtualWorker or networked), got {type(w).__name__}")
    if len({w.name for w in workers}) != len(workers):
        raise ValueError(f"workers must be distinct, got {[w.name for w in workers]}")
    x, y = _arrays(dataset)
    parts = part.make_partition(partition, y, len(workers), seed=seed, alpha=alpha,
                                shards_per_client=shards_per_client)
    data = tuple(send(x[p], w) for p, w in zip(parts, workers))
    targets = tuple(send(y[p].astype(np.int32), w) for p, w in zip(parts, workers))
    return FederatedDataset(workers, data, targets, tuple(len(p) for p in parts), tuple(parts))


class FederatedDataLoader:
    """Batches of a :class:`FederatedDataset`, worker after worker: ``for data, target in loader: ...``.

    Every iteration is one epoch and draws that epoch's order (epoch 0, 1, ... unless :meth:`epoch` picks one).

    Args:
        federated_dataset: the data, held by its workers.
        batch_size: B >= 1; a worker's last batch may be smaller.
        shuffle: visit each worker's examples in a fresh random order every epoch (False: stored order).
        seed: seeds the order (not secret: ``jax.random``, exactly as :mod:`refimpl.fl.client` draws it).
        average_every: federated averaging for :func:`~refimpl.fl.tutorial.train` to do by default: None (one
            model travels, the tutorial), n (average the workers' copies every n batches each) or ``"epoch"``.

    Raises:
        ValueError: batch_size < 1, or a bad average_every.
    """

    def __init__(self, federated_dataset: FederatedDataset, batch_size: int = 8, shuffle: bool = False,
                 seed: int = 0, average_every: int | str | None = None) -> None:
        if not isinstance(federated_dataset, FederatedDataset):
            raise TypeError(f"expected a FederatedDataset (from federate), got {type(federated_dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.federated_dataset, self.batch_size, self.shuffle, self.seed = (
            federated_dataset, int(batch_size), bool(shuffle), int(seed))
        if not (average_every is None or average_every == "epoch"
                or (isinstance(average_every, int) and not isinstance(average_every, bool) and average_every >= 1)):
            raise ValueError(f"average_every must be None, 'epoch' or an int >= 1, got {average_every!r}")
        self.average_every = average_every
        self._epoch = 0

    @property
    def workers(self) -> tuple[Any, ...]:
        return self.federated_dataset.workers

    def batches_of(self, k: int) -> int:
        """Batches per epoch of worker k: ceil(n_k / B)."""
        return -(-self.federated_dataset.sizes[k] // self.batch_size)

    def __len__(self) -> int:
        """Batches per epoch, all workers together."""
        return sum(self.batches_of(k) for k in range(len(self.workers)))

    def order(self, epoch: int, k: int) -> list[np.ndarray]:
        """Worker k's batches in ``epoch``, as row lists into its data."""
        from refimpl.fl import client

        sizes = self.federated_dataset.sizes
        n, length = sizes[k], max(sizes)
        if self.shuffle:
            positions, _ = client.batch_order(client.epoch_keys(self.seed, epoch, k, 1)[0], n, length,
                                              self.batch_size, True)
            rows = np.asarray(positions).reshape(-1)[:n]
        else:
            rows = np.arange(n)
        return [rows[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    def batch(self, k: int, rows: ArrayLike) -> tuple[Pointer, Pointer]:
        """Pointers to rows ``rows`` of worker k's data and targets, cut at the worker."""
        fed, rows_list = self.federated_dataset, np.asarray(rows, dtype=np.int64).tolist()
        w = fed.workers[k]
        return call("take_rows", w, fed.data[k], rows_list), call("take_rows", w, fed.targets[k], rows_list)

    def epoch(self, epoch: int) -> Iterator[tuple[Pointer, Pointer]]:
        """The batches of ``epoch``, worker after worker (made lazily, one at a time)."""
        for k in range(len(self.workers)):
            for rows in self.order(epoch, k):
                yield self.batch(k, rows)

    def __iter__(self) -> Iterator[tuple[Pointer, Pointer]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        return self.epoch(epoch)

    def rounds(self, epoch: int, every: int) -> Iterator[list[tuple[int, Iterator[tuple[Pointer, Pointer]]]]]:
        """The batches of ``epoch`` in averaging rounds: each round, up to ``every`` batches of each worker.

        Yields, per round, ``[(k, batches of worker k), ...]`` for the workers with batches left.
        """
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        orders = [self.order(epoch, k) for k in range(len(self.workers))]
        for r in range(-(-max(len(o) for o in orders) // every)):
            yield [(k, self._lazy(k, o[r * every:(r + 1) * every]))
                   for k, o in enumerate(orders) if o[r * every:(r + 1) * every]]

    def _lazy(self, k: int, rows: list[np.ndarray]) -> Iterator[tuple[Pointer, Pointer]]:
        for r in rows:
            yield self.batch(k, r)
