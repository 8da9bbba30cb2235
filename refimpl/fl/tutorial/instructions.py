"""The instructions a worker runs for the tutorial's training loop (registered with ``refimpl.workers.ops.register``).

Only these (and the core instruction set) run on a worker: a message names one, it never carries code. A process
that hosts a worker -- in this process, or a networked worker elsewhere -- has them once it imports
``refimpl.fl.tutorial``.

* ``train_step(params, x, y, lr=, backend=)`` -- one step of minibatch SGD on the worker's own batch, the same maths
  as :mod:`refimpl.fl.client` (mean softmax cross-entropy of :func:`refimpl.fl.model.loss`, ``p <- p + (-lr) g`` in
  float32); updates the stored model in place and stores the batch's loss (a 0-d float32 array);
* ``take_rows(x, rows)`` -- the rows of a stored array (a batch of the worker's data);
* ``model_mean(models, weights)`` -- the weighted mean of models held by this worker (the trusted aggregator);
* ``model_vector(params, scale)`` -- ``scale`` times the parameters, flattened in :func:`param_order` (float64),
  for secret sharing.

:func:`call` sends one ``exec`` command through the :class:`~refimpl.workers.Worker` interface and returns a
pointer to the stored result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from refimpl.errors import PointerError, ShapeMismatchError
from refimpl.workers import ops

__all__ = ["BACKENDS", "INSTRUCTIONS", "call", "param_order"]

BACKENDS = ("jax", "numpy")


def param_order(params: Mapping[str, Any]) -> list[str]:
    """Parameter names in layer order: ``w0, b0, w1, b1, ...`` (how vectors are flattened)."""
    n = sum(1 for k in params if k.startswith("w"))
    order = [f"{c}{i}" for i in range(n) for c in "wb"]
    if sorted(order) != sorted(params):
        raise ValueError(f"model parameters must be w0, b0, ..., got {sorted(params)}")
    return order


@functools.lru_cache(maxsize=1)
def _jax_step() -> Callable[..., Any]:
    import jax
    import jax.numpy as jnp

    from refimpl.fl import model as mlp

    grad_fn = jax.value_and_grad(mlp.loss)

    def step(params, x, y, lr):
        value, grads = grad_fn(params, x, y)
        new = jax.tree_util.tree_map(lambda p, g: p + (-lr) * g, params, grads)
        return new, value

    def run(params, x, y, lr):
        return step(params, x, y, jnp.float32(lr))

    return jax.jit(run)


def _check_batch(params: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(params, dict):
        raise TypeError(f"train_step needs a model (a dict of parameters), got {type(params).__name__}")
    xa, ya = np.asarray(x, dtype=np.float32), np.asarray(y)
    if xa.ndim != 2 or ya.ndim != 1 or len(xa) != len(ya) or len(ya) == 0:
        raise ShapeMismatchError(f"a batch is x (B, D) and y (B,) with B >= 1, got {xa.shape} and {ya.shape}")
    if xa.shape[1] != np.shape(params["w0"])[0]:
        raise ShapeMismatchError(f"the model takes {np.shape(params['w0'])[0]} features, the batch has {xa.shape[1]}")
    if not np.issubdtype(ya.dtype, np.integer):
        raise TypeError(f"targets must be integer labels, got dtype {ya.dtype}")
    return xa, ya.astype(np.int32)


def train_step(worker: Any, params: dict[str, Any], x: Any, y: Any, *, lr: float,
               backend: str = "jax") -> np.ndarray:
    """One SGD step of the stored model on a stored batch; the model is updated in place; returns the loss."""
    xa, ya = _check_batch(params, x, y)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if backend == "jax":
        new, value = _jax_step()(params, xa, ya, float(lr))
        updated = {k: np.asarray(v) for k, v in new.items()}
        loss = np.asarray(value, dtype=np.float32)
    elif backend == "numpy":
        from refimpl.fl import model as mlp

        value64, grads = mlp.numpy_loss_and_grad(params, xa, ya)
        updated = {k: (np.asarray(params[k], np.float64) - lr * grads[k]).astype(np.float32) for k in params}
        loss = np.asarray(value64, dtype=np.float32)
    else:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    params.update(updated)  # new arrays under the same keys: copies made before this step are unaffected
    return loss


def take_rows(worker: Any, x: Any, rows: Any) -> np.ndarray:
    """``x[rows]`` of a stored array."""
    arr, idx = np.asarray(x), np.asarray(rows, dtype=np.int64)
    if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= len(arr))):
        raise IndexError(f"rows must be a 1-D list of indices in [0, {len(arr)}), got shape {idx.shape}")
    return arr[idx]


def model_mean(worker: Any, models: list[Any], weights: list[float]) -> dict[str, np.ndarray]:
    """sum_k w_k p_k / sum_k w_k over stored models (float64 accumulation, float32 result)."""
    if not models or len(models) != len(weights):
        raise ValueError(f"model_mean needs one weight per model, got {len(models)} models, {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {w.tolist()}")
    keys = param_order(models[0])
    for m in models[1:]:
        if param_order(m) != keys or any(np.shape(m[k]) != np.shape(models[0][k]) for k in keys):
            raise ShapeMismatchError("model_mean: the models have different architectures")
    w = w / w.sum()
    return {k: sum(wk * np.asarray(m[k], np.float64) for wk, m in zip(w, models)).astype(np.float32)
            for k in keys}


def model_vector(worker: Any, params: dict[str, Any], scale: float = 1.0) -> np.ndarray:
    """``scale`` times the parameters flattened in layer order, float64."""
    return np.concatenate([np.asarray(params[k], np.float64).ravel() for k in param_order(params)]) * float(scale)


INSTRUCTIONS: dict[str, Callable[..., Any]] = {
    "train_step": train_step,
    "take_rows": take_rows,
    "model_mean": model_mean,
    "model_vector": model_vector,
}
for _name, _fn in INSTRUCTIONS.items():
    ops.register(_name, _fn)


def _arg(value: Any, location: Any) -> Any:
    """A pointer argument becomes ``{"ref": id}`` (it must live where the instruction runs)."""
    from refimpl.workers import Pointer

    if isinstance(value, Pointer):
        if value.stale:
            raise PointerError(f"{value!r} is stale: its object was fetched, moved or sent on")
        if value.location is not location:
            raise ValueError(f"{value!r} is at {value.location.name!r}, not at {location.name!r} where the "
                             "instruction runs; move it first")
        return {"ref": value.id}
    if isinstance(value, (list, tuple)):
        return [_arg(v, location) for v in value]
    return value


def call(fn: str, location: Any, *args: Any, owner: Any = None, **kw: Any) -> Any:
    """Run registered instruction ``fn`` at worker ``location`` on pointers/values; return a pointer to the result.

    Args:
        fn: a registered instruction name.
        location: the worker that runs it (every pointer argument must point there).
        owner: the worker that owns the result pointer (default: the ledger's ``me``).
    """
    owner = location.ledger.me if owner is None else owner
    out = location.ledger.new_id()
    msg = {"op": "exec", "fn": fn, "args": [_arg(a, location) for a in args],
           "kw": {k: _arg(v, location) for k, v in kw.items()}, "out": out}
    owner.deliver(location, "command", msg)
    return owner.pointer(location, out)
