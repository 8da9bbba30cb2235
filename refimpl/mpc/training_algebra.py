"""One SGD step of encrypted training written once over the shared-tensor algebra (stacked or pointer world).

:func:`sgd_step` uses only :class:`~refimpl.mpc.algebra.TensorAlgebra` operations (``@``, ``.T``, ``*``,
``drelu``, ``sum``, ``softmax``, ``divide_exact``), so the same code trains stacked tensors
(:class:`~refimpl.mpc.StackedTensor`) and the pointer world's :class:`~refimpl.workers.SharedTensor`, whose
shares live in the workers' object stores and whose every step is a message between workers (a networked worker
implements the same :class:`~refimpl.workers.interface.Worker` interface).

It is the protocol of :class:`~refimpl.mpc.training.EncryptedTrainer` with the algebra's own rounding: the weight
gradient ``h^T delta`` is divided back to the encoding's scale before the public step multiplies it (one unit more
of rounding per entry, far below the twin bound), and independent products and divisions are opened one after
another (the stacked trainer batches them: fewer rounds, same values up to rounding).

Example:
    >>> import numpy as np
    >>> from refimpl import nn
    >>> from refimpl.encoding import FixedPoint
    >>> from refimpl.mpc import Dealer
    >>> from refimpl.mpc.stacked import share_tensor
    >>> from refimpl.mpc.training import PlaintextTwin
    >>> params = nn.init_params((6, 4, 3), seed=1)
    >>> x, y = (np.arange(30.0).reshape(5, 6) % 7) / 7, np.array([0, 1, 2, 1, 0])
    >>> fp, dealer = FixedPoint(), Dealer(2)
    >>> weights = {k: share_tensor(v, dealer, encoding=fp) for k, v in params.items()}
    >>> weights = sgd_step(weights, share_tensor(x, dealer, encoding=fp),
    ...                    share_tensor(nn.one_hot(y, 3), dealer, encoding=fp), lr=0.5, loss="mse", step_bits=20)
    >>> twin = PlaintextTwin(params, lr=0.5, step_bits=20); twin.step(x, y)
    >>> bool(max(np.abs(weights[k].get() - twin.params[k]).max() for k in params) < 1e-3)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from refimpl.mpc.algebra import TensorAlgebra
from refimpl.mpc.training_loss import LOSSES

__all__ = ["sgd_step"]

T = TypeVar("T", bound=TensorAlgebra)


def sgd_step(weights: Mapping[str, T], x: T, y: T, *, lr: float, loss: str = "mse", step_bits: int) -> dict[str, T]:
    """One minibatch SGD step on shares: returns the new weights (``{"w0", "b0", ...}``, same encoding).

    Args:
        weights: the shared parameters (fixed point).
        x: shared images ``(B, d0)``; ``y``: shared one-hot labels ``(B, classes)``.
        lr: learning rate of the mean loss; the public step is ``round(lr / B * 2**step_bits)`` applied as an
            integer product and one division by ``2**step_bits`` (as :func:`~refimpl.mpc.training.step_scale`).
        loss: ``"mse"`` or ``"xent"`` (the algebra's softmax).
        step_bits: the step's fractional bits (:func:`~refimpl.mpc.training.step_bits_for`).

    Raises:
        ValueError: an unknown loss.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    layers = sum(1 for k in weights if k.startswith("w"))
    hs, bits = [x], []
    a = x
    for i in range(layers):
        a = hs[-1] @ weights[f"w{i}"] + weights[f"b{i}"]
        if i < layers - 1:
            bit = a.drelu()
            hs.append(a * bit)
            bits.append(bit)
    delta = (a - y) if loss == "mse" else (a.softmax(axis=-1) - y)
    step = int(round(lr / x.shape[0] * 2.0**step_bits))
    new: dict[str, T] = {}
    for i in reversed(range(layers)):
        grad_w, grad_b = hs[i].T @ delta, delta.sum(axis=0)
        if i > 0:
            delta = (delta @ weights[f"w{i}"].T) * bits[i - 1]
        new[f"w{i}"] = weights[f"w{i}"] - (grad_w * step).divide_exact(2**step_bits)
        new[f"b{i}"] = weights[f"b{i}"] - (grad_b * step).divide_exact(2**step_bits)
    return {k: new[k] for k in weights}
