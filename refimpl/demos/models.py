"""Models the demos and benchmarks share: a small MLP trained in plaintext on the MNIST images shipped with refimpl."""

from __future__ import annotations

import numpy as np

from refimpl.fl.data import load
from refimpl.mpc.inference import train_mlp

__all__ = ["mnist_mlp"]


_MNIST_CACHE: dict[tuple[int, int], dict[str, np.ndarray]] = {}


def mnist_mlp(*, hidden: int = 128, epochs: int = 4) -> dict[str, np.ndarray]:
    """A 784-``hidden``-10 MLP trained (deterministically, cached per process) on the 8,000 training images of
    ``refimpl.fl.data.load("mnist-10k")`` (the official MNIST test set shipped with refimpl)."""
    if (hidden, epochs) not in _MNIST_CACHE:
        data = load("mnist-10k")
        _MNIST_CACHE[(hidden, epochs)] = train_mlp(data.x_train, data.y_train, (784, hidden, 10), epochs=epochs)
    return _MNIST_CACHE[(hidden, epochs)]
