"""A model the tutorial's way: ``model_ptr = model.send(worker)``, train it there, ``model = model_ptr.get()``.

:class:`Model` holds an MLP's float32 parameters (the dict of :mod:`refimpl.fl.model`) in this process.
:meth:`Model.send` stores a copy at a worker and returns a :class:`ModelPointer`; the worker then trains it on its
own data with the registered ``train_step`` instruction (:mod:`refimpl.fl.tutorial.instructions`), and
:meth:`ModelPointer.get` brings it back. Unlike PyTorch's ``model.send``, which turns the model itself into a
pointer, ``send`` here returns the pointer and leaves the local model as it was.

Example:
    >>> import numpy as np
    >>> from refimpl.workers import Ledger, VirtualWorker, send
    >>> ledger = Ledger()
    >>> alice = VirtualWorker("alice", ledger)
    >>> x, y = send(np.ones((4, 3), np.float32), alice), send(np.array([0, 1, 0, 1]), alice)
    >>> model = Model.init((3, 2), seed=0)
    >>> model_ptr = model.send(x.location)
    >>> loss_ptr = model_ptr.train_step(x, y, lr=0.1)
    >>> loss, trained = float(loss_ptr.get()), model_ptr.get()
    >>> round(loss, 4) == round(float(model.evaluate(np.ones((4, 3)), np.array([0, 1, 0, 1]))[0]), 4)
    True
    >>> bool(np.any(trained.params["w0"] != model.params["w0"]))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl.encoding import FixedPoint
from refimpl.fl.tutorial.instructions import BACKENDS, call, param_order
from refimpl.workers import Pointer, send

__all__ = ["Model", "ModelPointer"]


class Model:
    """An MLP's parameters held locally (float32 arrays ``w0, b0, w1, b1, ...``).

    Args:
        params: the parameter dict (copied, as float32).

    Raises:
        ValueError: the keys are not ``w0, b0, ...``.
    """

    def __init__(self, params: Mapping[str, ArrayLike]) -> None:
        order = param_order(params)
        self.params: dict[str, np.ndarray] = {k: np.array(params[k], dtype=np.float32) for k in order}

    @classmethod
    def init(cls, model: str | Sequence[int] = "2nn", seed: int = 0) -> Model:
        """A fresh model, initialised as :func:`refimpl.fl.model.init` does (same seed, same parameters)."""
        from refimpl.fl import model as mlp

        return cls(mlp.init(model, seed=seed))

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The parameter shapes, in layer order."""
        return {k: v.shape for k, v in self.params.items()}

    @property
    def num_params(self) -> int:
        """The number of scalars."""
        return int(sum(v.size for v in self.params.values()))

    def copy(self) -> Model:
        """An independent copy."""
        return Model(self.params)

    def send(self, worker: Any) -> ModelPointer:
        """Store a copy of the model at ``worker``; returns the pointer (this model is unchanged)."""
        return ModelPointer(send({k: v.copy() for k, v in self.params.items()}, worker), self.shapes)

    def logits(self, x: ArrayLike) -> np.ndarray:
        """The MLP's logits for inputs ``x`` (N, D), computed locally with JAX."""
        import jax.numpy as jnp

        from refimpl.fl import model as mlp

        params = {k: jnp.asarray(v) for k, v in self.params.items()}
        return np.asarray(mlp.apply(params, jnp.asarray(x, dtype=jnp.float32)))

    def evaluate(self, x: ArrayLike, y: ArrayLike, batch_size: int = 1000) -> tuple[float, int]:
        """(mean cross-entropy, number correct) on ``(x, y)``, in batches of ``batch_size``."""
        xa, ya = np.asarray(x, dtype=np.float32), np.asarray(y)
        total, correct = 0.0, 0
        for start in range(0, len(ya), batch_size):
            z = self.logits(xa[start:start + batch_size]).astype(np.float64)
            t = ya[start:start + batch_size]
            z -= z.max(axis=1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            total -= float(log_p[np.arange(len(t)), t].sum())
            correct += int((z.argmax(axis=1) == t).sum())
        return total / max(1, len(ya)), correct

    def vector(self) -> np.ndarray:
        """The parameters flattened in layer order (float64)."""
        return np.concatenate([v.astype(np.float64).ravel() for v in self.params.values()])

    @classmethod
    def from_vector(cls, vector: ArrayLike, shapes: Mapping[str, tuple[int, ...]]) -> Model:
        """The inverse of :meth:`vector` for the given parameter shapes.

        Raises:
            ValueError: the vector's length does not match the shapes.
        """
        v = np.asarray(vector, dtype=np.float64).ravel()
        sizes = [int(np.prod(s)) for s in shapes.values()]
        if len(v) != sum(sizes):
            raise ValueError(f"a vector of {len(v)} values does not fit parameters of {sum(sizes)} values")
        parts = np.split(v, np.cumsum(sizes)[:-1])
        return cls({k: p.reshape(s) for (k, s), p in zip(shapes.items(), parts)})

    def __repr__(self) -> str:
        sizes = [self.params["w0"].shape[0]] + [self.params[k].shape[1] for k in self.params if k.startswith("w")]
        return f"Model({'-'.join(map(str, sizes))}, {self.num_params} parameters)"


class ModelPointer:
    """A pointer to a :class:`Model` stored at a worker (made by :meth:`Model.send`).

    Attributes:
        pointer: the underlying :class:`~refimpl.workers.Pointer` to the parameter dict.
        shapes: the parameter shapes (known to the owner, who sent the model).
    """

    def __init__(self, pointer: Pointer, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.pointer, self.shapes = pointer, dict(shapes)

    @property
    def location(self) -> Any:
        """The worker holding the model."""
        return self.pointer.location

    def __repr__(self) -> str:
        return f"ModelPointer({self.pointer!r})"

    def train_step(self, data: Pointer, target: Pointer, *, lr: float, backend: str = "jax") -> Pointer:
        """One SGD step at the model's worker on a batch it holds; returns a pointer to the batch's loss.

        Raises:
            ValueError: the batch is at another worker, or ``backend`` is unknown.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        return call("train_step", self.location, self.pointer, data, target, owner=self.pointer.owner, lr=float(lr),
                    backend=backend)

    def get(self) -> Model:
        """Fetch the model (it leaves the worker; this pointer goes stale)."""
        return Model(self.pointer.get())

    def move(self, worker: Any) -> ModelPointer:
        """Move the model to ``worker`` (directly from its location); returns the new pointer."""
        return ModelPointer(self.pointer.move(worker), self.shapes)

    def copy(self) -> ModelPointer:
        """A second copy of the model at the same worker."""
        return ModelPointer(self.pointer.copy(), self.shapes)

    def vector(self, scale: float = 1.0) -> Pointer:
        """A pointer to ``scale`` times the parameters, flattened in layer order, at the model's worker."""
        return call("model_vector", self.location, self.pointer, owner=self.pointer.owner, scale=float(scale))

    def share(self, *workers: Any, crypto_provider: Any = None, encoding: FixedPoint | None = None,
              scale: float = 1.0) -> Any:
        """Secret-share ``scale`` times the flattened parameters among ``workers`` (fixed point, default 24
        fractional bits in Z_2^64); returns a :class:`~refimpl.workers.SharedTensor`. The model stays put."""
        enc = FixedPoint(frac_bits=24) if encoding is None else encoding
        return self.vector(scale).share(*workers, crypto_provider=crypto_provider, encoding=enc)
