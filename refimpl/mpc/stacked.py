"""A stacked shared tensor: every party's share in one array, with its encoding, dealer and channel.

:class:`StackedTensor` gives stacked :class:`~refimpl.sharing.Shares` the whole algebra of
:class:`~refimpl.mpc.algebra.TensorAlgebra` (real-number arithmetic from a :class:`~refimpl.encoding.FixedPoint`,
tensor operations, comparisons, non-linear functions), counted in its :class:`~refimpl.mpc.Channel`. Raw ring
arithmetic stays on :class:`~refimpl.sharing.Shares` (``tensor.shares``).

Example:
    >>> import numpy as np
    >>> from refimpl import FixedPoint
    >>> from refimpl.mpc import Dealer
    >>> dealer = Dealer(3, key=bytes(16))
    >>> x = share_tensor([1.5, -2.0, 0.25], dealer, encoding=FixedPoint())
    >>> (x * 0.5 + 2).get().tolist(), (x / 3).get().round(4).tolist()
    ([2.75, 1.0, 2.125], [0.5, -0.6667, 0.0833])
    >>> (x > 0).get().tolist(), x.relu().get().tolist(), x.max().get().tolist()
    ([1, 0, 1], [1.5, 0.0, 0.25], 1.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl.encoding import FixedPoint
from refimpl.errors import PartyCountError
from refimpl.mpc import arithmetic, truncation
from refimpl.mpc.algebra import TensorAlgebra
from refimpl.mpc.channel import Channel
from refimpl.mpc.comparison import b2a, msb
from refimpl.mpc.dealer import Dealer, ring_matmul
from refimpl.mpc.shape_ops import local_op
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares
from refimpl.sharing.api import share

__all__ = ["StackedTensor", "share_tensor"]


def _aligned(data: np.ndarray, ndim: int) -> np.ndarray:
    """View stacked data ``(n, *shape)`` with singleton axes after the party axis up to ``ndim`` value axes."""
    return data.reshape(data.shape[0], *(1,) * (ndim - (data.ndim - 1)), *data.shape[1:])


class StackedTensor(TensorAlgebra):
    """Stacked shares with an encoding (None: ring integers), the dealer and the channel that count its protocols.

    Args:
        shares: the stacked sharing.
        encoding: a :class:`~refimpl.encoding.FixedPoint` over the same ring, or None for integers.
        dealer: the crypto provider for products, divisions and comparisons (same ring and ``n``).
        channel: counts every opening and dealer item (None: a new :class:`~refimpl.mpc.Channel`).
    """

    def __init__(self, shares: Shares, encoding: FixedPoint | None, dealer: Dealer,
                 channel: Channel | None = None) -> None:
        if not isinstance(shares, Shares):
            raise TypeError(f"expected Shares, got {type(shares).__name__}")
        if encoding is not None and encoding.ring != shares.ring:
            raise ValueError(f"encoding over {encoding.ring!r} for shares over {shares.ring!r}")
        if dealer.n != shares.n:
            raise PartyCountError(f"shares among {shares.n} parties with a dealer for {dealer.n}")
        self.shares, self.encoding, self.dealer = shares, encoding, dealer
        self.channel = Channel() if channel is None else channel

    @property
    def ring(self) -> Ring:  # type: ignore[override]
        return self.shares.ring

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.shares.shape

    @property
    def n(self) -> int:
        return self.shares.n

    def __repr__(self) -> str:
        enc = f", encoding={self.encoding!r}" if self.encoding is not None else ""
        return f"StackedTensor(n={self.n}, ring={self.ring!r}, shape={self.shape}{enc})"

    def _new(self, data: np.ndarray, encoding: Any = "same") -> StackedTensor:
        enc = self.encoding if encoding == "same" else encoding
        return StackedTensor(Shares(self.ring, np.ascontiguousarray(data, dtype=self.ring.dtype)), enc,
                             self.dealer, self.channel)

    # ---------------------------------------------------------------- primitives
    def _with(self, encoding: FixedPoint | None) -> StackedTensor:
        return StackedTensor(self.shares, encoding, self.dealer, self.channel)

    def _local(self, op: str, shape: tuple[int, ...], **kw: Any) -> StackedTensor:
        out = local_op(self.ring, self.shares.data, op, kw, 1)
        return self._new(out.reshape(self.n, *shape))

    def _concat(self, others: Sequence[TensorAlgebra], axis: int, stack: bool,
                shape: tuple[int, ...]) -> StackedTensor:
        datas = [self.shares.data] + [self._same(o).shares.data for o in others]
        nd = self.ndim + (1 if stack else 0)
        ax = int(axis) % nd + 1
        out = np.stack(datas, axis=ax) if stack else np.concatenate(datas, axis=ax)
        return self._new(out.reshape(self.n, *shape))

    def _same(self, other: Any) -> StackedTensor:
        if not isinstance(other, StackedTensor):
            raise TypeError(f"cannot combine a StackedTensor with {type(other).__name__}")
        if other.n != self.n:
            raise PartyCountError(f"tensors shared among {self.n} and {other.n} parties")
        return other

    def _raw_linear(self, other: TensorAlgebra, fn: str, shape: tuple[int, ...]) -> StackedTensor:
        o = self._same(other)
        a = _aligned(self.shares.data, len(shape))
        b = _aligned(o.shares.data, len(shape))
        return self._new(np.broadcast_to(getattr(self.ring, fn)(a, b), (self.n, *shape)))

    def _raw_public(self, value: np.ndarray, fn: str, shape: tuple[int, ...]) -> StackedTensor:
        ring, data = self.ring, self.shares.data
        if fn in ("add", "sub", "rsub"):
            out = np.array(np.broadcast_to(_aligned(data, len(shape)), (self.n, *shape)), dtype=ring.dtype)
            if fn == "rsub":
                out = ring.neg(out)
            out[0] = (ring.sub if fn == "sub" else ring.add)(out[0], value)
            return self._new(out)
        if fn == "neg":
            return self._new(ring.neg(data))
        if fn == "mul":
            return self._new(np.broadcast_to(ring.mul(_aligned(data, len(shape)), value), (self.n, *shape)))
        ax, av = arithmetic.aligned_shapes("matmul", *((self.shape, value.shape) if fn == "matmul" else
                                                       (value.shape, self.shape)))
        if fn == "matmul":
            out = ring_matmul(ring, data.reshape(self.n, *ax), value.reshape(av))
        else:
            out = ring_matmul(ring, value.reshape(ax), data.reshape(self.n, *av))
        return self._new(out.reshape(self.n, *shape))

    def _raw_beaver(self, other: TensorAlgebra, kind: str, shape: tuple[int, ...]) -> StackedTensor:
        o = self._same(other)
        fn = arithmetic.mul if kind == "mul" else arithmetic.matmul
        return self._new(fn(self.shares, o.shares, self.dealer, self.channel).data)

    def _raw_divide(self, divisor: int) -> StackedTensor:
        return self._new(truncation.divide(self.shares, divisor, self.dealer, self.channel).data)

    def _raw_msb(self) -> StackedTensor:
        bits = b2a(msb(self.shares, self.dealer, self.channel), self.dealer, self.channel)
        return self._new(bits.data, None)

    def refresh(self) -> StackedTensor:
        """The same value under fresh shares: add a fresh sharing of zero (keyed OS randomness; in a deployment
        each party would send a random mask to its neighbour, one round)."""
        zero = share(np.zeros(self.shape, dtype=np.int64), self.n, ring=self.ring)
        return self._new(self.ring.add(self.shares.data, zero.data))

    def get(self) -> np.ndarray:
        """Open (counted as one round in the channel) and decode: floats with an encoding, signed integers
        without."""
        (total,) = self.channel.open(self.shares)
        return self.encoding.decode(total) if self.encoding is not None else self.ring.lift(total)


def share_tensor(value: ArrayLike, dealer: Dealer, *, encoding: FixedPoint | None = None,
                 channel: Channel | None = None, key: bytes | None = None) -> StackedTensor:
    """Encode (with ``encoding``) and share ``value`` among ``dealer.n`` parties as a :class:`StackedTensor`.

    Args:
        value: integers, or reals with an ``encoding``.
        dealer: the crypto provider (its ring is the shares' ring; ``encoding.ring`` must match it).
        encoding: a :class:`~refimpl.encoding.FixedPoint` for real values (None: integers).
        channel: counts the protocols run on the tensor (None: a new one).
        key: the sharing key (None: fresh from the OS).
    """
    ring = dealer.ring
    arr = np.asarray(value)
    if encoding is not None:
        if encoding.ring != ring:
            raise ValueError(f"encoding over {encoding.ring!r} with a dealer over {ring!r}")
        elements = encoding.encode(arr)
    else:
        elements = ring.element(arr)
    return StackedTensor(share(elements, dealer.n, ring=ring, key=key), encoding, dealer, channel)
