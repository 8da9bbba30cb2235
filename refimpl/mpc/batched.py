"""Several independent Beaver products or truncations opened in ONE round (the round count of a training step).

:func:`refimpl.mpc.matmul`, :func:`~refimpl.mpc.mul` and :func:`~refimpl.mpc.divide` open one sharing (pair)
per call, one round each. A training step has independent products (the weight gradient ``h^T delta`` and the
back-propagated ``delta W^T`` of a layer) and independent truncations (every parameter's update): here they share
one opening, so the rounds per step do not grow with the number of operands. Each operand still consumes its own
fresh dealer item, and the results are exactly those of the one-at-a-time functions (same protocol, same bounds:
division by a public ``d`` is ``floor(x / d)`` or one more on :func:`~refimpl.mpc.truncation.division_range`).

Example:
    >>> from refimpl import share, Z2_64
    >>> from refimpl.mpc import Channel, Dealer
    >>> dealer, channel = Dealer(2, key=bytes(16)), Channel()
    >>> x, y = share([[1, 2]], 2), share([[3], [4]], 2)
    >>> p, q = matmul_many([(x, y), (y, x)], dealer, channel)
    >>> Z2_64.lift(p.reconstruct()).tolist(), Z2_64.lift(q.reconstruct()).tolist(), channel.rounds
    ([[11]], [[3, 6], [4, 8]], 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refimpl.errors import ShapeMismatchError
from refimpl.mpc.arithmetic import check_pair, with_public
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Dealer, check_divisor, matmul_shape, ring_matmul
from refimpl.mpc.truncation import division_offset, division_parts
from refimpl.sharing.additive import Shares

__all__ = ["divide_many", "matmul_many", "mul_many", "sum_rows", "transpose"]


def transpose(x: Shares) -> Shares:
    """The sharing of ``x.T`` for a 2-d sharing (each party transposes its own share; no communication)."""
    if len(x.shape) != 2:
        raise ShapeMismatchError(f"transpose takes a 2-d sharing, got shape {x.shape}")
    return Shares(x.ring, np.ascontiguousarray(np.swapaxes(x.data, 1, 2)))


def sum_rows(x: Shares) -> Shares:
    """The sharing of ``x.sum(axis=0)`` for a 2-d sharing (local)."""
    if len(x.shape) != 2:
        raise ShapeMismatchError(f"sum_rows takes a 2-d sharing, got shape {x.shape}")
    return Shares(x.ring, x.ring.sum(x.data, axis=1))


def _products(kind: str, pairs: Sequence[tuple[Shares, Shares]], dealer: Dealer, channel: Channel
              ) -> list[Shares]:
    if not pairs:
        return []
    parts = []
    for x, y in pairs:
        check_pair(x, y, dealer)
        if kind == "matmul":
            matmul_shape(x.shape, y.shape)
            item = dealer.matmul_triple(x.shape, y.shape)
        else:
            if x.shape != y.shape:
                raise ShapeMismatchError(f"elementwise mul needs equal shapes, got {x.shape} and {y.shape}")
            item = dealer.mul_triple(x.shape)
        parts.append(channel.take(item))
    masked = []
    for (x, y), (a, b, _) in zip(pairs, parts):
        masked += [x - a, y - b]
    opened = channel.open(*masked)
    ring = dealer.ring
    op = ring.mul if kind == "mul" else (lambda u, v: ring_matmul(ring, u, v))
    out = []
    for k, (a, b, c) in enumerate(parts):
        eps, delta = opened[2 * k], opened[2 * k + 1]
        # [z] = [c] + eps [b] + [a] delta + eps delta, party 0 folding its public term into its own product:
        # eps (b_0 + delta), one product fewer than computing eps delta apart
        b_fold = np.array(b.data, dtype=ring.dtype)
        b_fold[0] = ring.add(b_fold[0], delta)
        out.append(Shares(ring, np.asarray(ring.add(c.data, ring.add(op(eps, b_fold), op(a.data, delta))),
                                           dtype=ring.dtype)))
    return out


def matmul_many(pairs: Sequence[tuple[Shares, Shares]], dealer: Dealer, channel: Channel | None = None
                ) -> list[Shares]:
    """``[x @ y for x, y in pairs]`` on shares, every ``x - A`` and ``y - B`` opened in one round.

    Raises:
        RingMismatchError, PartyCountError, ShapeMismatchError: as :func:`refimpl.mpc.matmul`.
    """
    return _products("matmul", pairs, dealer, channel or Channel())


def mul_many(pairs: Sequence[tuple[Shares, Shares]], dealer: Dealer, channel: Channel | None = None
             ) -> list[Shares]:
    """``[x * y for x, y in pairs]`` (elementwise) on shares, in one round."""
    return _products("mul", pairs, dealer, channel or Channel())


def divide_many(items: Sequence[tuple[Shares, int]], dealer: Dealer, channel: Channel | None = None
                ) -> list[Shares]:
    """``[x / d for x, d in items]`` by dealer-assisted division (:func:`refimpl.mpc.divide`), all in one round.

    Each result is ``floor(x / d)`` or ``floor(x / d) + 1`` for signed ``x`` in
    :func:`~refimpl.mpc.truncation.division_range` (at least ``[-2**(l-2), 2**(l-2) - d)``); ``d = 2**f`` is
    truncation by ``f`` bits, ``d = 10**f`` divides a base-10 product back to its scale.

    Raises:
        RefimplError: a ring that is not Z_2^l.
        TypeError, ValueError: a divisor that is not an integer in ``[1, 2**(l-2)]``.
    """
    channel = channel or Channel()
    if not items:
        return []
    pairs = []
    for x, d in items:
        check_pair(x, x, dealer)
        pairs.append(channel.take(dealer.div_pair(x.shape, check_divisor(x.ring, d))))
    opened = channel.open(*[x + division_offset(x.ring, d) + r for (x, d), (r, _, _) in zip(items, pairs)])
    ring = dealer.ring
    return [with_public(ring, *division_parts(ring, d, c, r_hi.data, r_msb.data))
            for (_, d), c, (_, r_hi, r_msb) in zip(items, opened, pairs)]
