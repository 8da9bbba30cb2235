"""The one NumPy MLP: forward pass, losses, backward pass and SGD in float64, written out by hand.

Every plaintext MLP computation in refimpl goes through this module: the reference gradient that the JAX model is
tested against (:func:`refimpl.fl.model.numpy_loss_and_grad`), the plaintext logits and trainer of encrypted
inference (:mod:`refimpl.mpc.inference`) and the plaintext twin of encrypted training
(:mod:`refimpl.mpc.training`).

Parameters are a flat dict ``{"w0": (d0, d1), "b0": (d1,), "w1": ..., ...}``. With ``h_0 = x``:

    ``a_i = h_i W_i + b_i``,  ``h_{i+1} = relu(a_i)`` for hidden layers, logits ``z = a_{L-1}``.

Backward, for per-example weights ``w_j`` (``1/B`` for a plain mean) and ``delta_{L-1} = dL/dz``:

    ``dL/dW_i = h_i^T delta_i``,  ``dL/db_i = sum_j delta_i``,  ``delta_{i-1} = (delta_i W_i^T) * [a_{i-1} > 0]``.

Losses: softmax cross-entropy ``-log softmax(z)_y`` (``dL/dz = w (softmax(z) - onehot(y))``) and the squared error
``||z - onehot(y)||^2 / 2`` (``dL/dz = w (z - onehot(y))``), the cheap loss of encrypted training.

Example:
    >>> params = init_params((4, 3, 2), seed=0)
    >>> x, y = np.arange(8.0).reshape(2, 4) / 8, np.array([0, 1])
    >>> loss, grads = loss_and_grad(params, x, y)
    >>> sorted(grads), grads["w0"].shape, round(loss, 4)
    (['b0', 'b1', 'w0', 'w1'], (4, 3), 0.6704)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from refimpl.errors import ShapeMismatchError
from refimpl.prg import Stream, derive_key

__all__ = [
    "LOSSES",
    "Cache",
    "backward",
    "forward",
    "init_params",
    "layers",
    "logits",
    "loss_and_grad",
    "loss_delta",
    "one_hot",
    "sgd_step",
    "softmax",
    "uniform",
]

LOSSES = ("xent", "mse")


def layers(params: Mapping[str, ArrayLike]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(W_i, b_i)`` pairs of ``params`` as float64 arrays, checked to chain.

    Raises:
        ValueError: keys other than ``w0, b0, w1, b1, ...``.
        ShapeMismatchError: shapes that do not chain.
    """
    count = sum(1 for k in params if k.startswith("w"))
    if count == 0 or set(params) != {f"{c}{i}" for i in range(count) for c in "wb"}:
        raise ValueError(f"params must have keys w0, b0, w1, b1, ..., got {sorted(params)}")
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(count):
        w, b = np.asarray(params[f"w{i}"], np.float64), np.asarray(params[f"b{i}"], np.float64)
        if w.ndim != 2 or b.shape != (w.shape[1],) or (out and out[-1][0].shape[1] != w.shape[0]):
            raise ShapeMismatchError(f"layer {i}: w{i} {w.shape} and b{i} {b.shape} do not chain")
        out.append((w, b))
    return out


def uniform(stream: Stream, shape: int | tuple[int, ...]) -> np.ndarray:
    """Floats uniform in [-1, 1) from the top 53 bits of little-endian 64-bit stream words."""
    words = np.empty(shape, dtype=np.uint64)
    stream.read_into(words)
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0


def init_params(sizes: Sequence[int], *, seed: int | None = None, stream: Stream | None = None
                ) -> dict[str, np.ndarray]:
    """Weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and zero biases, float64, from a keyed stream.

    The model is a secret in encrypted learning, so its initialisation comes from refimpl's cryptographic streams:
    ``stream`` if given, else one derived from ``seed`` (a reproducible, *public* initialisation).
    """
    if stream is None:
        stream = Stream(derive_key(bytes(16), "refimpl/train_mlp", int(seed or 0)))
    params: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        params[f"w{i}"] = uniform(stream, (a, b)) / np.sqrt(a)
    for i, b in enumerate(sizes[1:]):
        params[f"b{i}"] = np.zeros(b)
    return params


class Cache(NamedTuple):
    """What the backward pass needs: the layer inputs ``hs`` (``h_0 = x`` ...) and pre-activations ``pre``."""

    hs: list[np.ndarray]
    pre: list[np.ndarray]


def forward(params: Mapping[str, ArrayLike], x: ArrayLike) -> Cache:
    """The forward pass; ``cache.pre[-1]`` are the logits."""
    hs, pre = [np.asarray(x, np.float64)], []
    lay = layers(params)
    for i, (w, b) in enumerate(lay):
        a = hs[-1] @ w + b
        pre.append(a)
        if i < len(lay) - 1:
            hs.append(np.maximum(a, 0.0))
    return Cache(hs, pre)


def logits(params: Mapping[str, ArrayLike], x: ArrayLike) -> np.ndarray:
    """The MLP's logits in float64: ``relu(x W0 + b0) ... W_last + b_last``."""
    return forward(params, x).pre[-1]


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable (the row maximum subtracted first)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def one_hot(y: ArrayLike, classes: int) -> np.ndarray:
    """Float64 one-hot rows of integer labels ``y``."""
    y = np.asarray(y)
    out = np.zeros((len(y), classes))
    out[np.arange(len(y)), y] = 1.0
    return out


def loss_delta(z: np.ndarray, y: ArrayLike, weight: np.ndarray, loss: str = "xent") -> tuple[float, np.ndarray]:
    """The weighted loss and ``dL/dz`` for logits ``z`` (batch, classes), labels ``y`` and per-example weights.

    Raises:
        ValueError: an unknown ``loss`` (one of :data:`LOSSES`).
    """
    target = one_hot(y, z.shape[1])
    if loss == "xent":
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1))[:, None]
        value = float(-(weight * (log_p * target).sum(axis=1)).sum())
        return value, (np.exp(log_p) - target) * weight[:, None]
    if loss == "mse":
        diff = z - target
        return float((weight * 0.5 * (diff**2).sum(axis=1)).sum()), diff * weight[:, None]
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")


def backward(params: Mapping[str, ArrayLike], cache: Cache, delta: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of every parameter, from the forward cache and ``delta = dL/dz``."""
    lay = layers(params)
    grads: dict[str, np.ndarray] = {}
    for i in reversed(range(len(lay))):
        grads[f"w{i}"] = cache.hs[i].T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ lay[i][0].T) * (cache.pre[i - 1] > 0)
    return grads


def loss_and_grad(params: Mapping[str, ArrayLike], x: ArrayLike, y: ArrayLike, mask: ArrayLike | None = None, *,
                  loss: str = "xent") -> tuple[float, dict[str, np.ndarray]]:
    """Mean loss over the examples where ``mask`` is True (all if None) and its gradients, float64.

    Per-example weights are ``m_j / max(1, sum m)`` (``1/B`` without a mask).
    """
    ys = np.asarray(y)
    m = np.ones(len(ys)) if mask is None else np.asarray(mask, dtype=np.float64)
    weight = m / max(1.0, m.sum()) if mask is not None else m / len(ys)
    cache = forward(params, x)
    value, delta = loss_delta(cache.pre[-1], ys, weight, loss)
    return value, backward(params, cache, delta)


def sgd_step(params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float, *,
             momentum: float = 0.0, velocity: dict[str, np.ndarray] | None = None) -> None:
    """In place: ``v = momentum v - lr g; p += v`` (plain ``p -= lr g`` without momentum)."""
    for k, g in grads.items():
        if velocity is None:
            params[k] -= lr * g
        else:
            velocity[k] = momentum * velocity.get(k, np.zeros_like(g)) - lr * g
            params[k] += velocity[k]
