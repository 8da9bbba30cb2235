"""The loss gradient of encrypted training on shares: squared error (free) or softmax cross-entropy.

Both give ``delta = dL/dz`` times the batch size, at the encoding's scale, for shared logits ``z`` (B, C) and
shared one-hot labels ``y``:

* ``"mse"``: ``L = ||z - y||^2 / 2`` per example, ``delta = z - y``: local, 0 rounds, 0 bytes, exact.
* ``"xent"``: ``L = -log softmax(z)_y``, ``delta = softmax(z) - y``, with the softmax on shares in the manner of
  CrypTen (Knott et al. 2021):

  1. the row maximum ``m`` by a tree of exact comparisons (``max(a, b) = b + (a - b) [a - b >= 0]``), so every
     exponent is ``<= 0``: ``ceil(log2 C)`` levels of one ``drelu`` and one product;
  2. ``exp(x)`` by the limit approximation ``(1 + x / 2**8)**(2**8)``: the base clamped at 0 by an exact ReLU
     (``x < -256`` gives 0, not a wrapped power), then 8 squarings with truncation;
  3. ``1 / sum(exp)`` by Newton-Raphson ``r <- r (2 - s r)`` from ``r = 1 / C`` (the sum lies in ``[1, C]``, so
     the relative error ``1 - s r`` squares each iteration from ``<= 1 - 1/C``): ``ceil(log2(16 C))`` iterations,
     2 products and one truncation each;
  4. ``softmax = exp * r``.

  Error bound (documented, checked by a property test for logits in ``[-64, 64]`` and 16 fractional bits):
  every softmax entry within ``XENT_SOFTMAX_BOUND`` = 0.01 of the exact softmax (the limit approximation
  contributes ``<= 0.54 / 256``, the fixed-point squarings and products the rest).

These functions are this module's own (the shared-tensor algebra of issue 11 was not in the tree when encrypted
training was written); the training uses only :func:`loss_delta`, so adopting the algebra's ``softmax`` later is a
one-line change here.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.errors import ShapeMismatchError
from refimpl.mpc.batched import mul_many, truncate_many
from refimpl.mpc.channel import Channel
from refimpl.mpc.comparison import drelu
from refimpl.mpc.dealer import Dealer
from refimpl.sharing.additive import Shares

__all__ = ["EXP_ITERATIONS", "LOSS_COSTS", "XENT_SOFTMAX_BOUND", "loss_delta", "softmax", "row_max"]

EXP_ITERATIONS = 8
XENT_SOFTMAX_BOUND = 0.01
LOSS_COSTS = {"mse": "local: 0 rounds, 0 bytes", "xent": "softmax on shares: see refimpl.mpc.training_loss"}


def _columns(x: Shares, cols: slice | list[int]) -> Shares:
    return Shares(x.ring, np.ascontiguousarray(x.data[:, :, cols]))


def row_max(z: Shares, dealer: Dealer, channel: Channel) -> Shares:
    """The shared row maxima ``(B, 1)`` of a shared ``(B, C)`` matrix, by a tree of exact comparisons."""
    cur = z
    while cur.shape[1] > 1:
        half = cur.shape[1] // 2
        left, right = _columns(cur, slice(0, half)), _columns(cur, slice(half, 2 * half))
        diff = left - right
        (pick,) = mul_many([(diff, drelu(diff, dealer, channel))], dealer, channel)
        best = right + pick
        if cur.shape[1] % 2:
            best = Shares(z.ring, np.concatenate([best.data, cur.data[:, :, -1:]], axis=2))
        cur = best
    return cur


def _broadcast(x: Shares, shape: tuple[int, ...]) -> Shares:
    return Shares(x.ring, np.ascontiguousarray(np.broadcast_to(x.data, (x.n, *shape))))


def softmax(z: Shares, encoding: FixedPoint, dealer: Dealer, channel: Channel) -> Shares:
    """Row-wise softmax of shared logits ``(B, C)`` at the encoding's scale (see the module docstring)."""
    if len(z.shape) != 2:
        raise ShapeMismatchError(f"softmax takes shared (batch, classes) logits, got shape {z.shape}")
    f = encoding.frac_bits
    one = 1 << f
    rows, classes = z.shape
    x = z - _broadcast(row_max(z, dealer, channel), z.shape)
    (base,) = truncate_many([(x, EXP_ITERATIONS)], dealer, channel)
    base = base + one
    (base,) = mul_many([(base, drelu(base, dealer, channel))], dealer, channel)
    for _ in range(EXP_ITERATIONS):
        (sq,) = mul_many([(base, base)], dealer, channel)
        (base,) = truncate_many([(sq, f)], dealer, channel)
    e = base
    s = Shares(e.ring, e.ring.sum(e.data, axis=2)[:, :, None])  # (B, 1), in [1, C] up to the approximation
    r = Shares(e.ring, np.zeros(s.data.shape, e.ring.dtype)) + encoding.encode(np.full((rows, 1), 1.0 / classes))
    for _ in range(math.ceil(math.log2(16 * classes))):
        (sr,) = mul_many([(s, r)], dealer, channel)            # scale 2**2f
        two_minus = (2 << (2 * f)) - sr                          # 2 - s r at scale 2**2f
        (prod,) = mul_many([(r, two_minus)], dealer, channel)    # scale 2**3f
        (r,) = truncate_many([(prod, 2 * f)], dealer, channel)
    (p,) = mul_many([(e, _broadcast(r, z.shape))], dealer, channel)
    (p,) = truncate_many([(p, f)], dealer, channel)
    return p


def loss_delta(loss: str, z: Shares, y: Shares, encoding: FixedPoint, dealer: Dealer, channel: Channel) -> Shares:
    """``dL/dz`` (times the batch size) on shares for ``loss`` in :data:`LOSS_COSTS`.

    Raises:
        ValueError: an unknown loss.
        ShapeMismatchError: logits and labels of different shapes.
    """
    if z.shape != y.shape:
        raise ShapeMismatchError(f"logits {z.shape} and one-hot labels {y.shape} differ in shape")
    if loss == "mse":
        return z - y
    if loss == "xent":
        return softmax(z, encoding, dealer, channel) - y
    raise ValueError(f"unknown loss {loss!r}; choose one of {tuple(LOSS_COSTS)}")
