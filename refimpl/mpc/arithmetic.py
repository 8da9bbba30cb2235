"""Beaver multiplication on shares: elementwise, matrix and square products with a dealer's triples."""

from __future__ import annotations

from typing import Any

import numpy as np

from refimpl.errors import PartyCountError, RingMismatchError, ShapeMismatchError
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Dealer, Triple, broadcast_shape, matmul_shape, ring_matmul
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares

__all__ = ["MaskedOperand", "aligned_shapes", "beaver_parts",
    "check_pair", "mask_operand", "matmul", "matmul_masked", "mul", "square"]

def check_pair(x: Shares, y: Shares, dealer: Dealer) -> None:
    for s in (x, y):
        if not isinstance(s, Shares):
            raise TypeError(f"expected Shares, got {type(s).__name__}")
    if x.ring != y.ring or x.ring != dealer.ring:
        raise RingMismatchError(f"operands over {x.ring!r} and {y.ring!r} with a dealer over {dealer.ring!r}")
    if x.n != y.n or x.n != dealer.n:
        raise PartyCountError(f"operands among {x.n} and {y.n} parties with a dealer for {dealer.n}")




def _check_triple(triple: Triple | None, kind: str, shapes: tuple[tuple[int, ...], ...], dealer: Dealer) -> Triple:
    if triple is None:
        return getattr(dealer, {"mul": "mul_triple", "matmul": "matmul_triple", "square": "square_pair"}[kind])(
            *shapes[: 1 if kind == "square" else 2])
    if triple.kind != kind or triple.shapes != shapes:
        raise ShapeMismatchError(f"{triple!r} does not fit a {kind} of shapes {shapes}")
    return triple


def beaver_parts(ring: Ring, kind: str, eps: np.ndarray, delta: np.ndarray, a: np.ndarray, b: np.ndarray,
                 c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local computation after a Beaver opening, for one party's share or for stacked shares.

    Returns ``(local, public)``: every party's result is ``c + eps*b + a*delta`` (``local``, computed from its
    own ``a``, ``b``, ``c``) and party 0 also adds ``public = eps*delta``. ``kind`` is ``"mul"`` or
    ``"matmul"``; with ``b`` the square's ``a`` and ``delta = eps`` it also serves squaring.
    """
    op = ring.mul if kind == "mul" else (lambda u, v: ring_matmul(ring, u, v))
    return ring.add(c, ring.add(op(eps, b), op(a, delta))), op(eps, delta)


def aligned_shapes(kind: str, sx: tuple[int, ...], sy: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes to view the operands as so that a leading party axis broadcasts correctly against the other operand
    (batch dimensions padded with 1s; 1-d matmul operands as a row / a column)."""
    if kind == "mul":
        nd = max(len(sx), len(sy))
        return (1,) * (nd - len(sx)) + sx, (1,) * (nd - len(sy)) + sy
    x2 = (1, *sx) if len(sx) == 1 else sx
    y2 = (*sy, 1) if len(sy) == 1 else sy
    nd = max(len(x2), len(y2))
    return (1,) * (nd - len(x2)) + x2, (1,) * (nd - len(y2)) + y2


def fold_public(ring: Ring, b: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``b`` with ``delta`` added to party 0's share (``b_0 + delta``): party 0's right operand in
    :func:`beaver_parts`' folded form."""
    b_fold = np.array(b, dtype=ring.dtype)
    b_fold[0] = ring.add(b_fold[0], delta)
    return b_fold


def _product(ring: Ring, kind: str, cache: dict[Any, Any] | None) -> Any:
    if kind == "mul":
        return ring.mul
    return lambda u, v: ring_matmul(ring, u, v, cache=cache)


def _stacked_parts(ring: Ring, kind: str, eps: np.ndarray, delta: np.ndarray, a: np.ndarray, b: np.ndarray,
                   c: np.ndarray, *, b_fold: np.ndarray | None = None,
                   caches: tuple[dict[Any, Any] | None, dict[Any, Any] | None] = (None, None)) -> Shares:
    """:func:`beaver_parts` on stacked shares, party 0 folding its public term into its own product:
    ``eps * (b_0 + delta)`` (one product fewer than computing ``eps * delta`` apart). Operands may broadcast
    (``mul``) or be batched / 1-d (``matmul``). For a fixed right operand (:class:`MaskedOperand`), ``b_fold``
    and ``caches`` (for ``b_fold`` and ``delta``, see :func:`ring_matmul`) are kept from product to product."""
    n, sx, sy = a.shape[0], a.shape[1:], b.shape[1:]
    if b_fold is None:
        b_fold = fold_public(ring, b, delta)
    if sx != sy or kind != "mul":
        ax, ay = aligned_shapes(kind, sx, sy)
        eps, delta = np.reshape(eps, ax), np.reshape(delta, ay)
        a, b_fold = a.reshape(n, *ax), b_fold.reshape(n, *ay)
    op0, op1 = _product(ring, kind, caches[0]), _product(ring, kind, caches[1])
    if ring.modulus in (2**32, 2**64) and ring.dtype != object:  # native wrap-around: add in place
        total = np.asarray(op0(eps, b_fold))
        total += op1(a, delta)
        total = total.reshape(c.shape)
        total += c
        return Shares(ring, total.astype(ring.dtype, copy=False))
    out = ring.add(op0(eps, b_fold), op1(a, delta)).reshape(c.shape)
    return Shares(ring, np.asarray(ring.add(c, out), dtype=ring.dtype))


def with_public(ring: Ring, local: np.ndarray, public: np.ndarray) -> Shares:
    data = np.array(local, dtype=ring.dtype)
    data[0] = ring.add(data[0], public)
    return Shares(ring, data)


def mul(x: Shares, y: Shares, dealer: Dealer, channel: Channel | None = None, *,
        triple: Triple | None = None) -> Shares:
    """The sharing of the elementwise product ``x * y`` (Beaver; one round opening ``x - a`` and ``y - b``).

    The shapes broadcast as in NumPy (scalar x vector, row x matrix): the triple has ``a`` of ``x``'s shape and
    ``b`` of ``y``'s, so each operand is opened at its own size.

    Args:
        x, y: sharings of the same ring and party count, shapes that broadcast.
        dealer: the crypto provider (same ring and ``n``).
        channel: counts the opening (None: a throwaway :class:`Channel`).
        triple: a specific ``dealer.mul_triple(shape)`` to consume (default: a fresh one).

    Raises:
        RingMismatchError, PartyCountError, ShapeMismatchError: incompatible operands, dealer or triple.
        TripleReuseError: ``triple`` was used before.
    """
    check_pair(x, y, dealer)
    broadcast_shape(x.shape, y.shape)
    channel = channel or Channel()
    a, b, c = channel.take(_check_triple(triple, "mul", (x.shape, y.shape), dealer))
    eps, delta = channel.open(x - a, y - b)
    return _stacked_parts(x.ring, "mul", eps, delta, a.data, b.data, c.data)


def matmul(x: Shares, y: Shares, dealer: Dealer, channel: Channel | None = None, *,
           triple: Triple | None = None) -> Shares:
    """The sharing of the matrix product ``x @ y`` in one round: 2-d ``(m, k) @ (k, p)``, 1-d operands and
    batched ``(..., m, k) @ (..., k, p)`` with broadcast batch dimensions, as NumPy's ``matmul``.

    Arguments and errors as for :func:`mul`; ``triple`` comes from ``dealer.matmul_triple(x.shape, y.shape)``.
    """
    check_pair(x, y, dealer)
    matmul_shape(x.shape, y.shape)
    channel = channel or Channel()
    a, b, c = channel.take(_check_triple(triple, "matmul", (x.shape, y.shape), dealer))
    eps, delta = channel.open(x - a, y - b)
    return _stacked_parts(x.ring, "matmul", eps, delta, a.data, b.data, c.data)


class MaskedOperand:
    """A shared right operand ``y`` opened once as ``delta = y - B`` for many products ``x @ y`` (fixed weights).

    Made by :func:`mask_operand`. Each later product (:func:`matmul_masked`) opens only ``x - A``: for a model's
    weights this halves the rounds' data and removes the weight-sized opening from every inference. ``B`` masks
    ``y`` exactly once, so ``delta`` reveals nothing; every ``A`` is fresh.
    """

    __slots__ = ("b", "b_fold", "caches", "delta", "mask_index", "y")

    def __init__(self, y: Shares, b: Shares, delta: np.ndarray, mask_index: int) -> None:
        self.y, self.b, self.delta, self.mask_index = y, b, delta, mask_index
        self.b_fold = fold_public(y.ring, b.data, delta)  # party 0's operand b_0 + delta, the same every product
        self.caches: tuple[dict[Any, Any], dict[Any, Any]] = ({}, {})  # split limbs of b_fold and delta

    @property
    def shape(self) -> tuple[int, ...]:
        return self.y.shape

    def __repr__(self) -> str:
        return f"MaskedOperand(shape={self.shape}, mask={self.mask_index})"


def mask_operand(y: Shares, dealer: Dealer, channel: Channel | None = None) -> MaskedOperand:
    """Open ``y - B`` once (one round) for a fresh dealer mask ``B``; see :class:`MaskedOperand`."""
    check_pair(y, y, dealer)
    channel = channel or Channel()
    item = dealer.operand_mask(y.shape)
    (b,) = channel.take(item)
    assert isinstance(b, Shares)
    (delta,) = channel.open(y - b)
    return MaskedOperand(y, b, delta, item.index)


def matmul_masked(x: Shares, y: MaskedOperand, dealer: Dealer, channel: Channel | None = None) -> Shares:
    """``x @ y`` for a :class:`MaskedOperand` ``y``: one round opening only ``eps = x - A``.

    ``[z] = [A @ B] + eps @ [B] + [A] @ delta + eps @ delta`` (the last term by party 0).

    Example:
        >>> from refimpl import share, Z2_64
        >>> dealer, ch = Dealer(2), Channel()
        >>> w = mask_operand(share([[1, 2], [3, 4]], 2), dealer, ch)
        >>> Z2_64.lift(matmul_masked(share([[1, -1]], 2), w, dealer, ch).reconstruct()).tolist()
        [[-2, -2]]
        >>> ch.rounds                       # one round to mask the weights, one per product after that
        2
    """
    check_pair(x, y.y, dealer)
    matmul_shape(x.shape, y.shape)
    channel = channel or Channel()
    a, c = channel.take(dealer.masked_matmul_triple(x.shape, y.mask_index))
    (eps,) = channel.open(x - a)
    return _stacked_parts(x.ring, "matmul", eps, y.delta, a.data, y.b.data, c.data, b_fold=y.b_fold,
                          caches=y.caches)


def square(x: Shares, dealer: Dealer, channel: Channel | None = None, *, triple: Triple | None = None) -> Shares:
    """The sharing of ``x * x`` from a pair ``(a, a**2)``: open ``eps = x - a``, then ``a2 + 2 eps a + eps**2``."""
    check_pair(x, x, dealer)
    channel = channel or Channel()
    a, a2 = channel.take(_check_triple(triple, "square", (x.shape,), dealer))
    (eps,) = channel.open(x - a)
    return _stacked_parts(x.ring, "mul", eps, eps, a.data, a.data, a2.data)
