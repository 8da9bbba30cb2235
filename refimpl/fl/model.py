"""A multilayer perceptron as pure functions on a dict of arrays, in JAX and as a NumPy reference.

Parameters are a flat dict ``{"w0": (d0, d1), "b0": (d1,), "w1": ..., ...}`` (a JAX pytree). Hidden layers use
ReLU; the last layer gives logits; the loss is the mean softmax cross-entropy over (optionally masked) examples.

`numpy_loss_and_grad` is an independent hand-written forward/backward pass in float64 that the tests hold the JAX
gradients against.

Models:
    ``2nn``: 784-200-200-10, McMahan et al.'s "2NN" (199,210 parameters).
    ``small``: 784-128-10 (101,770 parameters).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from refimpl import nn

__all__ = [
    "MODELS",
    "Params",
    "accuracy",
    "apply",
    "init",
    "loss",
    "num_params",
    "numpy_loss_and_grad",
    "sizes_of",
]

Params = dict[str, jax.Array]
MODELS: dict[str, tuple[int, ...]] = {"2nn": (784, 200, 200, 10), "small": (784, 128, 10)}


def sizes_of(model: str | Sequence[int]) -> tuple[int, ...]:
    """Layer sizes of a named model, or validates an explicit sequence of sizes.

    Raises:
        ValueError: Unknown name, fewer than two sizes, or a size < 1.
    """
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {tuple(MODELS)} or give layer sizes")
        return MODELS[model]
    sizes = tuple(int(s) for s in model)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"layer sizes must be >= 2 positive ints, got {sizes}")
    return sizes


def init(model: str | Sequence[int], seed: int = 0) -> dict[str, np.ndarray]:
    """Initialises float32 parameters with a seeded NumPy generator.

    Weights and biases of a layer with fan-in d are drawn from U(-1/sqrt(d), 1/sqrt(d)) (PyTorch's default
    for ``nn.Linear``). NumPy is used so the same seed gives the same parameters with or without JAX.

    Args:
        model: A name in `MODELS` or a sequence of layer sizes (input first, classes last).
        seed: Generator seed.

    Returns:
        Dict of float32 NumPy arrays ``w{i}``, ``b{i}``.

    Example:
        >>> p = init("small", seed=0)
        >>> sorted(p), p["w0"].shape, num_params(p)
        (['b0', 'b1', 'w0', 'w1'], (784, 128), 101770)
    """
    sizes = sizes_of(model)
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        bound = 1.0 / np.sqrt(d_in)
        params[f"w{i}"] = rng.uniform(-bound, bound, size=(d_in, d_out)).astype(np.float32)
        params[f"b{i}"] = rng.uniform(-bound, bound, size=(d_out,)).astype(np.float32)
    return params


def num_params(params: Mapping[str, ArrayLike]) -> int:
    """Total number of scalars in the parameters."""
    return int(sum(np.size(v) for v in params.values()))


def _num_layers(params: Mapping[str, ArrayLike]) -> int:
    n = sum(1 for k in params if k.startswith("w"))
    if n == 0 or set(params) != {f"{c}{i}" for i in range(n) for c in "wb"}:
        raise ValueError(f"params must have keys w0, b0, ..., got {sorted(params)}")
    return n


def apply(params: Params, x: jax.Array) -> jax.Array:
    """Logits of the MLP: relu(x W0 + b0) ... W_{L-1} + b_{L-1}; x has shape (..., d0)."""
    n = _num_layers(params)
    h = x
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h


def loss(params: Params, x: jax.Array, y: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean softmax cross-entropy over the examples where ``mask`` is True (all if None; 0 if none are).

    L = sum_i m_i * (logsumexp(z_i) - z_{i, y_i}) / max(1, sum_i m_i).
    """
    logits = apply(params, x)
    per_example = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    if mask is None:
        return jnp.mean(per_example)
    m = mask.astype(per_example.dtype)
    return jnp.sum(per_example * m) / jnp.maximum(jnp.sum(m), 1.0)


def accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max logit equals the label."""
    return jnp.mean(jnp.argmax(apply(params, x), axis=-1) == y)


def numpy_loss_and_grad(params: Mapping[str, ArrayLike], x: ArrayLike, y: ArrayLike,
                        mask: ArrayLike | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """Reference forward and backward pass in float64 NumPy, written out by hand (:mod:`refimpl.nn`, the one
    NumPy MLP of refimpl).

    With h_0 = x, a_i = h_i W_i + b_i, h_{i+1} = relu(a_i), p = softmax(a_{L-1}) and per-example weights
    w_j = m_j / max(1, sum m): dL/da_{L-1} = w (p - onehot(y)); dL/dW_i = h_i^T delta_i; dL/db_i = sum_j delta_i;
    delta_{i-1} = (delta_i W_i^T) * [a_{i-1} > 0].

    Args:
        params: MLP parameters (any float dtype).
        x: (n, d0) inputs.
        y: (n,) integer labels.
        mask: Optional (n,) bool mask of examples that count.

    Returns:
        (loss, grads) with grads keyed like params, float64.
    """
    _num_layers(params)
    return nn.loss_and_grad(params, x, y, mask)
