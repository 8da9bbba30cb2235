"""The dealer (the tutorial's ``crypto_provider``): correlated randomness for multiplication and truncation.

Each item is drawn from its own derived stream (``derive_key(key, "refimpl/dealer", kind, index)``: first the
item's values, then the shares of parties ``1 .. n-1``, party 0 getting the difference) and shared among the ``n``
parties: triples ``(a, b, a*b)``, ``(A, B, A@B)``, square pairs ``(a, a**2)``, AND triples on 64-bit words, daBits
and truncation pairs. Every item can be consumed exactly once; using it twice raises
:class:`~refimpl.errors.TripleReuseError` (a reused triple leaks ``x - x'``). See :mod:`refimpl.mpc` for the protocols.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np

from refimpl._checks import check_key, check_party_count
from refimpl.errors import RefimplError, ShapeMismatchError, TripleReuseError
from refimpl.mpc.limb import limb_matmul, limb_matmul_pays, limb_split, ring_matmul
from refimpl.prg import Stream, derive_key, fresh_key
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.additive import Shares
from refimpl.sharing.binary import BinaryShares

__all__ = ["Dealer", "Sharing", "Triple", "broadcast_shape", "check_divisor", "check_frac_bits", "limb_matmul",
           "limb_matmul_pays", "limb_split", "matmul_shape", "ring_matmul", "shape_tuple"]

Sharing = Shares | BinaryShares

def shape_tuple(shape: Any, what: str) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0 for d in shape):
        raise ValueError(f"{what} must be a tuple of non-negative integers, got {shape!r}")
    return tuple(int(d) for d in shape)


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))

def matmul_shape(shape_x: tuple[int, ...], shape_y: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``x @ y`` under NumPy's ``matmul`` rules (1-d operands, batch dimensions broadcast).

    Raises:
        ShapeMismatchError: the shapes cannot be matrix-multiplied (0-d, inner sizes differ, batches differ).
    """
    sx, sy = tuple(shape_x), tuple(shape_y)
    if len(sx) == 2 and len(sy) == 2 and sx[1] == sy[0]:
        return (sx[0], sy[1])
    if not sx or not sy:
        raise ShapeMismatchError(f"matmul takes 1-d or higher operands (m, k) @ (k, p), got {sx} @ {sy}")
    x2 = (1, *sx) if len(sx) == 1 else sx
    y2 = (*sy, 1) if len(sy) == 1 else sy
    if x2[-1] != y2[-2]:
        raise ShapeMismatchError(f"matmul takes (..., m, k) @ (..., k, p): inner sizes differ in {sx} @ {sy}")
    try:
        batch = np.broadcast_shapes(x2[:-2], y2[:-2])
    except ValueError:
        raise ShapeMismatchError(f"matmul batch dimensions of {sx} and {sy} do not broadcast") from None
    out = (*batch, *(() if len(sx) == 1 else (x2[-2],)), *(() if len(sy) == 1 else (y2[-1],)))
    return tuple(int(d) for d in out)


def broadcast_shape(shape_x: tuple[int, ...], shape_y: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast shape of an elementwise product (NumPy rules).

    Raises:
        ShapeMismatchError: the shapes do not broadcast.
    """
    try:
        return tuple(int(d) for d in np.broadcast_shapes(tuple(shape_x), tuple(shape_y)))
    except ValueError:
        raise ShapeMismatchError(f"elementwise product of shapes {tuple(shape_x)} and {tuple(shape_y)}: "
                                 "they do not broadcast") from None

def check_divisor(ring: Ring, divisor: Any) -> int:
    """Validate a public divisor for dealer-assisted division: an integer in ``[1, 2**(l-2)]`` on Z_2^l."""
    if not ring.is_power_of_two or ring.dtype == object:
        raise RefimplError(f"division on shares needs a ring Z_2^l with l <= 64, got {ring!r}")
    if isinstance(divisor, bool) or not isinstance(divisor, numbers.Integral):
        raise TypeError(f"the divisor must be a positive integer, got {divisor!r}")
    if not 1 <= int(divisor) <= 2 ** (ring.bits - 2):
        raise ValueError(f"the divisor must lie in [1, 2**{ring.bits - 2}] for {ring!r}, got {divisor}")
    return int(divisor)


def check_frac_bits(ring: Ring, frac_bits: Any) -> int:
    if not ring.is_power_of_two or ring.dtype == object:
        raise RefimplError(f"truncation by shifting needs a ring Z_2^l with l <= 64, got {ring!r}")
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, numbers.Integral):
        raise TypeError(f"frac_bits must be an integer, got {frac_bits!r}")
    if not 0 <= int(frac_bits) <= ring.bits - 2:
        raise ValueError(f"frac_bits must lie in [0, {ring.bits - 2}] for {ring!r}, got {frac_bits}")
    return ring.bits

class _Prefetched:
    """A :class:`~refimpl.prg.Stream` read ahead in one call (``nbytes``), then handed out sequentially; reads
    past the prefetched bytes continue from the stream itself. Same bytes, in the same order, as the stream."""

    __slots__ = ("_buf", "_pos", "_stream")

    def __init__(self, stream: Stream, nbytes: int) -> None:
        self._stream, self._buf, self._pos = stream, stream.read(nbytes), 0

    def read_into(self, out: np.ndarray) -> None:
        flat = out.reshape(-1).view(np.uint8)
        take = min(flat.size, self._buf.size - self._pos)
        flat[:take] = self._buf[self._pos : self._pos + take]
        self._pos += take
        if take < flat.size:
            rest = np.empty(flat.size - take, np.uint8)
            self._stream.read_into(rest)
            flat[take:] = rest
        if sys.byteorder == "big" and out.dtype.itemsize > 1:
            out.byteswap(inplace=True)

    def read(self, nbytes: int) -> np.ndarray:
        out = np.empty(int(nbytes), dtype=np.uint8)
        self.read_into(out)
        return out


class Triple:
    """One item of correlated randomness from a :class:`Dealer`, usable exactly once.

    Attributes:
        kind: ``"mul"``, ``"matmul"``, ``"square"``, ``"and"``, ``"dabit"`` or ``"trunc"``.
        index: its serial number at the dealer.
        shapes: the shapes of the operands it serves.
    """

    __slots__ = ("_parts", "_used", "divisor", "index", "kind", "shapes")

    def __init__(self, kind: str, index: int, shapes: tuple[tuple[int, ...], ...], parts: tuple[Sharing, ...]):
        self.kind, self.index, self.shapes = kind, index, shapes
        self.divisor: int | None = None
        self._parts: tuple[Sharing, ...] | None = parts
        self._used = False

    @property
    def used(self) -> bool:
        """Whether :meth:`take` was called."""
        return self._used

    def take(self) -> tuple[Sharing, ...]:
        """The shared components, once; the triple is then spent.

        Raises:
            TripleReuseError: the triple was taken before.
        """
        if self._used or self._parts is None:
            raise TripleReuseError(f"{self!r} was already consumed; a Beaver triple must never be used twice")
        parts, self._parts, self._used = self._parts, None, True
        return parts

    @property
    def nbytes(self) -> int:
        """Bytes the dealer sends for it (all parties together); 0 once taken."""
        return sum(p.nbytes for p in self._parts) if self._parts else 0

    def __repr__(self) -> str:
        return f"Triple(kind={self.kind!r}, index={self.index}, shapes={self.shapes})"


class Dealer:
    """The crypto provider: correlated randomness for ``n`` parties, from its own key.

    Args:
        n: the number of computing parties (>= 2).
        ring: the arithmetic ring (default Z_2^64).
        key: the dealer's 16- or 32-byte master key (None: fresh from the OS). Same key, same triples, bit for bit.

    Attributes:
        issued: how many items of each kind were handed out.

    Raises:
        PartyCountError: ``n < 2``.
    """

    def __init__(self, n: int, *, ring: Ring = Z2_64, key: bytes | None = None) -> None:
        self.n = check_party_count(n)
        if not isinstance(ring, Ring):
            raise TypeError(f"ring must be a refimpl Ring, got {ring!r}")
        self.ring = ring
        self._key = fresh_key(16) if key is None else check_key(key, what="dealer key")
        self._count = 0
        self._masks: dict[int, np.ndarray] = {}
        self._mask_limbs: dict[int, dict[Any, Any]] = {}
        self.issued: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Dealer(n={self.n}, ring={self.ring!r}, issued={self.issued})"

    def _next(self, kind: str, elements: int = 0, extra_bytes: int = 0) -> tuple[int, Any]:
        """The next item's index and stream; with a size hint (ring elements + raw bytes) on a ring Z_2^k of
        machine words, the whole keystream of the item is produced in one call and handed out in order."""
        index = self._count
        self._count += 1
        self.issued[kind] = self.issued.get(kind, 0) + 1
        stream = Stream(derive_key(self._key, "refimpl/dealer", kind, index))
        if self.ring.is_power_of_two and self.ring.dtype != object and (elements or extra_bytes):
            return index, _Prefetched(stream, elements * self.ring.dtype.itemsize + extra_bytes)
        return index, stream

    def _share(self, value: np.ndarray, stream: Stream) -> Shares:
        """Share ``value``: the masks of parties 1..n-1 are the item stream's next elements; party 0 gets the rest."""
        ring = self.ring
        data = np.empty((self.n, *value.shape), dtype=ring.dtype)
        data[1:] = ring.sample(stream, (self.n - 1, *value.shape))
        data[0] = ring.sub(value, ring.sum(data[1:], axis=0))
        return Shares(ring, data)

    def _share_bits(self, words: np.ndarray, stream: Stream) -> BinaryShares:
        data = np.empty((self.n, *words.shape), dtype=np.uint64)
        stream.read_into(data[1:])
        data[0] = np.bitwise_xor.reduce(data[1:], axis=0) ^ words
        return BinaryShares(data)

    def mul_triple(self, shape: int | tuple[int, ...], shape_y: int | tuple[int, ...] | None = None) -> Triple:
        """A triple ``([a], [b], [a * b])`` for elementwise products of arrays of ``shape`` (and ``shape_y`` for
        the right operand when it differs: ``a * b`` then broadcasts, e.g. a scalar times a vector).

        Raises:
            ShapeMismatchError: the two shapes do not broadcast.
        """
        shape = shape_tuple(shape, "triple shape")
        shape_y = shape if shape_y is None else shape_tuple(shape_y, "triple shape")
        shape_z = broadcast_shape(shape, shape_y)
        m = self.n - 1
        index, stream = self._next("mul", (_size(shape) + _size(shape_y)) * (1 + m) + _size(shape_z) * m)
        a, b = self.ring.sample(stream, shape), self.ring.sample(stream, shape_y)
        parts = (self._share(a, stream), self._share(b, stream),
                 self._share(self.ring.mul(a, b), stream))
        return Triple("mul", index, (shape, shape_y), parts)

    def matmul_triple(self, shape_x: tuple[int, ...], shape_y: tuple[int, ...]) -> Triple:
        """A triple ``([A], [B], [A @ B])`` for ``x @ y`` with ``x.shape == shape_x``, ``y.shape == shape_y``.

        Raises:
            ShapeMismatchError: the shapes cannot be matrix-multiplied.
        """
        shape_x, shape_y = shape_tuple(shape_x, "matmul shape"), shape_tuple(shape_y, "matmul shape")
        matmul_shape(shape_x, shape_y)
        sx, sy, sz, m = _size(shape_x), _size(shape_y), _size(matmul_shape(shape_x, shape_y)), self.n - 1
        index, stream = self._next("matmul", (sx + sy) * (1 + m) + sz * m)
        a, b = self.ring.sample(stream, shape_x), self.ring.sample(stream, shape_y)
        parts = (self._share(a, stream), self._share(b, stream),
                 self._share(ring_matmul(self.ring, a, b), stream))
        return Triple("matmul", index, (shape_x, shape_y), parts)

    def operand_mask(self, shape: tuple[int, ...]) -> Triple:
        """Shares of a fresh random ``B`` for masking a fixed right operand once (:func:`mask_operand`).

        The dealer remembers ``B`` (by the item's index) to make :meth:`masked_matmul_triple` items for it.
        """
        shape = shape_tuple(shape, "mask shape")
        if len(shape) != 2:
            raise ShapeMismatchError(f"a matmul operand mask must be 2-d, got shape {shape}")
        index, stream = self._next("mask", _size(shape) * self.n)
        b = self.ring.sample(stream, shape)
        self._masks[index] = b
        return Triple("mask", index, (shape,), (self._share(b, stream),))

    def masked_matmul_triple(self, shape_x: tuple[int, ...], mask_index: int) -> Triple:
        """``([A], [A @ B])`` for ``x @ y`` where ``y`` was masked once with the dealer's mask ``mask_index``."""
        if mask_index not in self._masks:
            raise ValueError(f"dealer has no operand mask #{mask_index}")
        b = self._masks[mask_index]
        shape_x = shape_tuple(shape_x, "matmul shape")
        matmul_shape(shape_x, b.shape)
        m = self.n - 1
        index, stream = self._next("masked-matmul", _size(shape_x) * (1 + m) + shape_x[0] * b.shape[1] * m)
        a = self.ring.sample(stream, shape_x)
        parts = (self._share(a, stream),
                 self._share(ring_matmul(self.ring, a, b, cache=self._mask_limbs.setdefault(mask_index, {})),
                             stream))
        return Triple("masked-matmul", index, (shape_x, b.shape), parts)

    def square_pair(self, shape: int | tuple[int, ...]) -> Triple:
        """A pair ``([a], [a**2])`` for squaring arrays of ``shape`` (one opening instead of two)."""
        shape = shape_tuple(shape, "square shape")
        index, stream = self._next("square", _size(shape) * (1 + 2 * (self.n - 1)))
        a = self.ring.sample(stream, shape)
        parts = (self._share(a, stream), self._share(self.ring.mul(a, a), stream))
        return Triple("square", index, (shape,), parts)

    def zero_sharing(self, shape: int | tuple[int, ...]) -> Triple:
        """A fresh sharing of zero, for re-randomising a sharing without changing its value (``refresh``)."""
        shape = shape_tuple(shape, "zero-sharing shape")
        index, stream = self._next("zero", _size(shape) * (self.n - 1))
        return Triple("zero", index, (shape,), (self._share(self.ring.zeros(shape), stream),))

    def and_triple(self, shape: int | tuple[int, ...]) -> Triple:
        """An XOR-shared triple of uint64 words ``(a, b, a & b)``: 64 bitwise ANDs per word."""
        shape = shape_tuple(shape, "and-triple shape")
        index, stream = self._next("and", extra_bytes=8 * _size(shape) * (2 + 3 * (self.n - 1)))
        a, b = np.empty(shape, np.uint64), np.empty(shape, np.uint64)
        stream.read_into(a)
        stream.read_into(b)
        parts = (self._share_bits(a, stream), self._share_bits(b, stream),
                 self._share_bits(a & b, stream))
        return Triple("and", index, (shape,), parts)

    def dabits(self, shape: int | tuple[int, ...]) -> Triple:
        """Random bits ``r`` shared twice: XOR-shared (in bit 0 of a word) and arithmetically in the ring."""
        shape = shape_tuple(shape, "daBit shape")
        size = _size(shape)
        index, stream = self._next("dabit", (self.n - 1) * size, size + 8 * (self.n - 1) * size)
        bits = stream.read(int(np.prod(shape, dtype=np.int64))).reshape(shape).astype(np.uint64) & np.uint64(1)
        parts = (self._share_bits(bits, stream), self._share(bits, stream))
        return Triple("dabit", index, (shape,), parts)

    def trunc_pair(self, shape: int | tuple[int, ...], frac_bits: int) -> Triple:
        """Shares of ``r``, ``(r mod 2**(l-1)) >> frac_bits`` and ``r >> (l-1)`` for :func:`truncate`."""
        check_frac_bits(self.ring, frac_bits)
        return self.div_pair(shape, 2 ** int(frac_bits))

    def div_pair(self, shape: int | tuple[int, ...], divisor: int) -> Triple:
        """Shares of ``r``, ``floor((r mod 2**(l-1)) / divisor)`` and ``r >> (l-1)`` for :func:`divide`.

        For ``divisor = 2**f`` this is exactly :meth:`trunc_pair` (same item, same bytes). The item's
        ``divisor`` attribute records what it divides by.
        """
        shape = shape_tuple(shape, "truncation shape")
        d = check_divisor(self.ring, divisor)
        l_bits = self.ring.bits
        index, stream = self._next("trunc", _size(shape) * (1 + 3 * (self.n - 1)))
        r = self.ring.sample(stream, shape).astype(np.uint64)
        low = r & np.uint64(2 ** (l_bits - 1) - 1)
        parts = (self._share(r, stream), self._share((low // np.uint64(d)).astype(self.ring.dtype), stream),
                 self._share(r >> np.uint64(l_bits - 1), stream))
        item = Triple("trunc", index, (shape,), parts)
        item.divisor = d
        return item
