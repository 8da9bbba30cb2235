"""The browser demo's task: softmax regression (784 -> 10) on slices of the built-in ``mnist-10k`` images.

The same algorithm as ``static/train.mjs`` (so Python clients and tabs train alike): parameters are one float64
vector, ``W`` (784 x 10, row-major) then ``b`` (10); local training is ``epochs`` passes of minibatch SGD on the
cross-entropy loss, in data order, over pixels scaled by 1/255; the update is ``local - global``, each coordinate
clipped to ``[-clip, clip]`` (the secure aggregation encodes only ``|x| <= clip``: clipping is explicit here, never
a silent wrap).

Example:
    >>> w = np.zeros(PARAMS)
    >>> images = np.zeros((2, INPUTS), dtype=np.uint8); images[1, :10] = 255
    >>> delta = train_local(w, images.reshape(-1), np.array([3, 5], dtype=np.uint8), clip=0.1)
    >>> delta.shape, float(abs(delta).max()) <= 0.1
    ((7850,), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CLASSES", "INPUTS", "PARAMS", "PartitionData", "TaskData", "accuracy", "load_task_data", "train_local"]

INPUTS = 784
CLASSES = 10
PARAMS = INPUTS * CLASSES + CLASSES


def _split(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return w[: INPUTS * CLASSES].reshape(INPUTS, CLASSES), w[INPUTS * CLASSES :]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train_local(weights: np.ndarray, images: np.ndarray, labels: np.ndarray, *, epochs: int = 1, batch: int = 32,
                lr: float = 0.5, clip: float = 1.0) -> np.ndarray:
    """The clipped update ``local - global`` after local SGD on ``images`` (uint8, n * 784) and ``labels``."""
    x = np.asarray(images, dtype=np.float64).reshape(-1, INPUTS) / 255.0
    y = np.asarray(labels, dtype=np.int64)
    w = np.array(weights, dtype=np.float64)
    for _ in range(epochs):
        for start in range(0, len(y), batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            wm, b = _split(w)
            p = _softmax(xb @ wm + b)
            p[np.arange(len(yb)), yb] -= 1.0
            grad = np.concatenate([(xb.T @ p).reshape(-1), p.sum(axis=0)])
            w -= (lr / len(yb)) * grad
    return np.clip(w - weights, -clip, clip)


def accuracy(weights: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` (uint8, n * 784) whose arg-max logit is the label."""
    x = np.asarray(images, dtype=np.float64).reshape(-1, INPUTS) / 255.0
    wm, b = _split(np.asarray(weights, dtype=np.float64))
    return float(np.mean(np.argmax(x @ wm + b, axis=1) == np.asarray(labels))) if len(x) else 0.0


@dataclass(frozen=True)
class TaskData:
    """Every client's slice (IID partition into ``max_clients`` parts, the first ``samples`` of each) and the
    test split, as uint8 pixels (n * 784) and uint8 labels."""

    parts: tuple[np.ndarray, ...]
    images: np.ndarray
    labels: np.ndarray
    test: tuple[np.ndarray, np.ndarray]

    def client_slice(self, client_id: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.parts[(client_id - 1) % len(self.parts)]
        return self.images[idx].reshape(-1), self.labels[idx]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * 255.0).astype(np.uint8)


def load_task_data(config: Any) -> TaskData:
    """The slices for a :class:`~refimpl.web.server.RunConfig` (``max_clients`` parts of ``samples`` images)."""
    from refimpl.fl.data import load
    from refimpl.fl.partition import iid

    ds = load("mnist-10k")
    parts = tuple(p[: config.samples] for p in iid(ds.y_train, config.max_clients, seed=0))
    return TaskData(parts, _to_uint8(ds.x_train), ds.y_train.astype(np.uint8),
                    (_to_uint8(ds.x_test).reshape(-1), ds.y_test.astype(np.uint8)))


class PartitionData:
    """The tabs' data for ``python -m refimpl web --aggregator``: client ``k``'s partition exactly as
    ``python -m refimpl client`` computes it (``make_partition(partition, y_train, clients, seed)[k - 1]``), and the
    first ``test_size`` test images, each as one :mod:`refimpl.net.wire` message ``{images: uint8, labels: uint8}``.

    The page server holds every partition here: it stands in for data that a real device already has.
    """

    def __init__(self, dataset: str = "mnist-10k", clients: int = 10, partition: str = "iid", seed: int = 0,
                 test_size: int = 500) -> None:
        from refimpl.fl.data import load
        from refimpl.fl.partition import make_partition

        ds = load(dataset)
        self.clients = int(clients)
        self._parts = make_partition(partition, ds.y_train, self.clients, seed=seed)
        self._x, self._y = _to_uint8(ds.x_train), ds.y_train.astype(np.uint8)
        self._test = (_to_uint8(ds.x_test[:test_size]).reshape(-1), ds.y_test[:test_size].astype(np.uint8))

    def route(self, path: str) -> tuple[bytes, str] | None:
        """``(body, content type)`` for ``/data/client/<k>`` (1 <= k <= clients) and ``/data/test``, else None."""
        from refimpl.net import wire

        if path == "/data/test":
            return wire.encode({"images": self._test[0], "labels": self._test[1]}), "application/octet-stream"
        prefix = "/data/client/"
        if path.startswith(prefix) and path[len(prefix):].isdigit():
            k = int(path[len(prefix):])
            if 1 <= k <= self.clients:
                idx = self._parts[k - 1]
                return (wire.encode({"images": self._x[idx].reshape(-1), "labels": self._y[idx]}),
                        "application/octet-stream")
        return None
