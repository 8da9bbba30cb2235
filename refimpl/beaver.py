"""Multiplication on shares with a crypto provider (Beaver triples), and truncation of fixed-point products.

The **dealer** (the tutorial's ``crypto_provider``) holds its own key and hands out correlated randomness, each item
drawn from its own derived stream (``derive_key(key, "refimpl/dealer", kind, index)``: first the item's values,
then the shares of parties ``1 .. n-1``, party 0 getting the difference) and shared among the ``n`` parties: triples ``(a, b, a*b)`` for elementwise products, ``(A, B, A@B)`` for matrix products, pairs ``(a, a**2)``
for squares, AND triples on 64-bit words, daBits and truncation pairs. Every item can be consumed exactly once;
using it twice raises :class:`~refimpl._errors.TripleReuseError` (a reused triple leaks ``x - x'``).

**Beaver multiplication** of sharings ``[x]``, ``[y]`` with a triple ``([a], [b], [c])``: the parties open
``eps = x - a`` and ``delta = y - b`` (both in one round), then locally

    ``[z] = [c] + eps * [b] + [a] * delta + eps * delta``   (the public term added by party 0)

so ``z = x * y``; ``@`` in place of ``*`` gives matrix products. ``eps`` and ``delta`` are uniform: nothing leaks.

**Truncation** of a fixed-point product (scale ``2**(2f)`` back to ``2**f``), in a ring Z_2^l:

* :func:`truncate_local` (two parties, no communication; SecureML): party 0 computes ``s0 >> f``, party 1
  ``-((-s1) >> f)``. For a signed value ``x`` and a uniform mask the result is ``floor(x / 2**f)`` or one more,
  except with probability exactly ``|x| / 2**l`` (at most ``2**(l_x - l)`` for ``|x| < 2**l_x``), when it is off
  by about ``+-2**(l - f)``. Example: l = 64, f = 16, a product of values below 2**10 in magnitude has
  ``|x| < 2**52``, so each element fails with probability below ``2**-12``.
* :func:`truncate` (any ``n``, one round; dealer-assisted, after Catrina-Saxena / Escudero et al.): the dealer
  shares ``r``, ``(r mod 2**(l-1)) >> f`` and the top bit of ``r``; the parties open ``c = x + 2**(l-2) + r``.
  For every ``x`` in ``[-2**(l-2), 2**(l-2))`` the result is ``floor(x / 2**f)`` or ``floor(x / 2**f) + 1``,
  never anything else (error below 1 ulp), and it is ``+1`` with probability ``(x mod 2**f) / 2**f``: unbiased
  stochastic rounding. No failure probability.

Naive truncation (every party shifting its own share) is wrong whenever the shares wrap around M, which for
uniform shares is about half the time; the tests pin such cases.

Communication is counted by a :class:`Channel` (rounds, messages, bytes); ``refimpl.workers`` provides one that
sends every share through serialised messages between workers.

Example:
    >>> from refimpl import share, reconstruct, Z2_64
    >>> dealer = Dealer(3, key=bytes(16))
    >>> channel = Channel()
    >>> x, y = share([3, -4, 5], 3), share([7, 8, -9], 3)
    >>> Z2_64.lift(reconstruct(mul(x, y, dealer, channel)))
    array([ 21, -32, -45])
    >>> channel.rounds, channel.messages, channel.bytes      # one round: eps and delta opened together
    (1, 6, 288)

References:
    D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991.
    P. Mohassel, Y. Zhang, "SecureML: A System for Scalable Privacy-Preserving Machine Learning", IEEE S&P 2017.
    O. Catrina, A. Saxena, "Secure Computation with Fixed-Point Numbers", FC 2010.
    D. Escudero, S. Ghosh, M. Keller, R. Rachuri, P. Scholl, "Improved Primitives for MPC over Mixed
    Arithmetic-Binary Circuits", CRYPTO 2020.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np

from refimpl._errors import (
    PartyCountError,
    RefimplError,
    RingMismatchError,
    ShapeMismatchError,
    TripleReuseError,
    check_key,
    check_party_count,
)
from refimpl.binary import BinaryShares
from refimpl.prg import Stream, derive_key, fresh_key
from refimpl.ring import Z2_64, Ring
from refimpl.sharing import Shares

__all__ = [
    "Channel",
    "Dealer",
    "MaskedOperand",
    "Triple",
    "beaver_parts",
    "local_truncation_failure_probability",
    "mask_operand",
    "matmul",
    "matmul_masked",
    "mul",
    "ring_matmul",
    "square",
    "truncate",
    "truncate_local",
    "truncation_offset",
    "truncation_parts",
]

Sharing = Shares | BinaryShares


def _shape(shape: Any, what: str) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0 for d in shape):
        raise ValueError(f"{what} must be a tuple of non-negative integers, got {shape!r}")
    return tuple(int(d) for d in shape)


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


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


def ring_matmul(ring: Ring, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b mod M`` for ring elements, exact for every ring (NumPy broadcasting rules of ``matmul``).

    Z_2^32 and Z_2^64 use native wrap-around integer matmul; other moduli use exact Python integers.

    Example:
        >>> ring_matmul(Ring(7), np.array([[3, 4]], dtype=np.uint64), np.array([[5], [6]], dtype=np.uint64))
        array([[4]], dtype=uint64)
    """
    if ring.is_power_of_two and ring.dtype != object:
        return ring._wrap(np.matmul(a, b))
    out = np.matmul(np.asarray(a).astype(object), np.asarray(b).astype(object)) % ring.modulus
    return out.astype(ring.dtype)


class Triple:
    """One item of correlated randomness from a :class:`Dealer`, usable exactly once.

    Attributes:
        kind: ``"mul"``, ``"matmul"``, ``"square"``, ``"and"``, ``"dabit"`` or ``"trunc"``.
        index: its serial number at the dealer.
        shapes: the shapes of the operands it serves.
    """

    __slots__ = ("_parts", "_used", "index", "kind", "shapes")

    def __init__(self, kind: str, index: int, shapes: tuple[tuple[int, ...], ...], parts: tuple[Sharing, ...]):
        self.kind, self.index, self.shapes = kind, index, shapes
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

    def mul_triple(self, shape: int | tuple[int, ...]) -> Triple:
        """A triple ``([a], [b], [a * b])`` for elementwise products of arrays of ``shape``."""
        shape = _shape(shape, "triple shape")
        size, m = _size(shape), self.n - 1
        index, stream = self._next("mul", (2 + 3 * m) * size)
        a, b = self.ring.sample(stream, shape), self.ring.sample(stream, shape)
        parts = (self._share(a, stream), self._share(b, stream),
                 self._share(self.ring.mul(a, b), stream))
        return Triple("mul", index, (shape, shape), parts)

    def matmul_triple(self, shape_x: tuple[int, ...], shape_y: tuple[int, ...]) -> Triple:
        """A triple ``([A], [B], [A @ B])`` for ``x @ y`` with ``x.shape == shape_x``, ``y.shape == shape_y``.

        Raises:
            ShapeMismatchError: the shapes cannot be matrix-multiplied.
        """
        shape_x, shape_y = _shape(shape_x, "matmul shape"), _shape(shape_y, "matmul shape")
        _matmul_shape(shape_x, shape_y)
        sx, sy, sz, m = _size(shape_x), _size(shape_y), shape_x[0] * shape_y[1], self.n - 1
        index, stream = self._next("matmul", (sx + sy) * (1 + m) + sz * m)
        a, b = self.ring.sample(stream, shape_x), self.ring.sample(stream, shape_y)
        parts = (self._share(a, stream), self._share(b, stream),
                 self._share(ring_matmul(self.ring, a, b), stream))
        return Triple("matmul", index, (shape_x, shape_y), parts)

    def operand_mask(self, shape: tuple[int, ...]) -> Triple:
        """Shares of a fresh random ``B`` for masking a fixed right operand once (:func:`mask_operand`).

        The dealer remembers ``B`` (by the item's index) to make :meth:`masked_matmul_triple` items for it.
        """
        shape = _shape(shape, "mask shape")
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
        shape_x = _shape(shape_x, "matmul shape")
        _matmul_shape(shape_x, b.shape)
        m = self.n - 1
        index, stream = self._next("masked-matmul", _size(shape_x) * (1 + m) + shape_x[0] * b.shape[1] * m)
        a = self.ring.sample(stream, shape_x)
        parts = (self._share(a, stream),
                 self._share(ring_matmul(self.ring, a, b), stream))
        return Triple("masked-matmul", index, (shape_x, b.shape), parts)

    def square_pair(self, shape: int | tuple[int, ...]) -> Triple:
        """A pair ``([a], [a**2])`` for squaring arrays of ``shape`` (one opening instead of two)."""
        shape = _shape(shape, "square shape")
        index, stream = self._next("square", _size(shape) * (1 + 2 * (self.n - 1)))
        a = self.ring.sample(stream, shape)
        parts = (self._share(a, stream), self._share(self.ring.mul(a, a), stream))
        return Triple("square", index, (shape,), parts)

    def and_triple(self, shape: int | tuple[int, ...]) -> Triple:
        """An XOR-shared triple of uint64 words ``(a, b, a & b)``: 64 bitwise ANDs per word."""
        shape = _shape(shape, "and-triple shape")
        index, stream = self._next("and", extra_bytes=8 * _size(shape) * (2 + 3 * (self.n - 1)))
        a, b = np.empty(shape, np.uint64), np.empty(shape, np.uint64)
        stream.read_into(a)
        stream.read_into(b)
        parts = (self._share_bits(a, stream), self._share_bits(b, stream),
                 self._share_bits(a & b, stream))
        return Triple("and", index, (shape,), parts)

    def dabits(self, shape: int | tuple[int, ...]) -> Triple:
        """Random bits ``r`` shared twice: XOR-shared (in bit 0 of a word) and arithmetically in the ring."""
        shape = _shape(shape, "daBit shape")
        size = _size(shape)
        index, stream = self._next("dabit", (self.n - 1) * size, size + 8 * (self.n - 1) * size)
        bits = stream.read(int(np.prod(shape, dtype=np.int64))).reshape(shape).astype(np.uint64) & np.uint64(1)
        parts = (self._share_bits(bits, stream), self._share(bits, stream))
        return Triple("dabit", index, (shape,), parts)

    def trunc_pair(self, shape: int | tuple[int, ...], frac_bits: int) -> Triple:
        """Shares of ``r``, ``(r mod 2**(l-1)) >> frac_bits`` and ``r >> (l-1)`` for :func:`truncate`."""
        shape = _shape(shape, "truncation shape")
        l_bits = _check_trunc(self.ring, frac_bits)
        index, stream = self._next("trunc", _size(shape) * (1 + 3 * (self.n - 1)))
        r = self.ring.sample(stream, shape).astype(np.uint64)
        low = r & np.uint64(2 ** (l_bits - 1) - 1)
        parts = (self._share(r, stream), self._share(low >> np.uint64(frac_bits), stream),
                 self._share(r >> np.uint64(l_bits - 1), stream))
        return Triple("trunc", index, (shape,), parts)


class Channel:
    """Counts the communication of protocols run on stacked sharings.

    An opening is one round in which every party sends its share of every opened sharing to every other party:
    ``n (n - 1)`` messages carrying ``(n - 1) * nbytes`` bytes. Material from the dealer is counted apart
    (``dealer_messages``, ``dealer_bytes``): one message per party per item. Subclasses (``refimpl.workers``)
    route the same traffic through real serialised messages.
    """

    def __init__(self) -> None:
        self.rounds = 0
        self.messages = 0
        self.bytes = 0
        self.dealer_messages = 0
        self.dealer_bytes = 0

    def open(self, *sharings: Sharing) -> list[np.ndarray]:
        """Open several sharings in one round: arithmetic ones by sum mod M, binary ones by XOR."""
        if not sharings:
            return []
        n = sharings[0].n
        if any(s.n != n for s in sharings):
            raise PartyCountError(f"cannot open sharings among {[s.n for s in sharings]} parties in one round")
        self.rounds += 1
        self.messages += n * (n - 1)
        self.bytes += (n - 1) * sum(s.nbytes for s in sharings)
        return [s.reconstruct() for s in sharings]

    def take(self, triple: Triple) -> tuple[Sharing, ...]:
        """Consume a dealer's item, counting its delivery to the parties."""
        parts = triple.take()
        self.dealer_messages += parts[0].n
        self.dealer_bytes += sum(p.nbytes for p in parts)
        return parts

    def summary(self) -> dict[str, int]:
        """The counters as a dict."""
        return {"rounds": self.rounds, "messages": self.messages, "bytes": self.bytes,
                "dealer_messages": self.dealer_messages, "dealer_bytes": self.dealer_bytes}

    def __repr__(self) -> str:
        return "Channel(" + ", ".join(f"{k}={v}" for k, v in self.summary().items()) + ")"


def _check_pair(x: Shares, y: Shares, dealer: Dealer) -> None:
    for s in (x, y):
        if not isinstance(s, Shares):
            raise TypeError(f"expected Shares, got {type(s).__name__}")
    if x.ring != y.ring or x.ring != dealer.ring:
        raise RingMismatchError(f"operands over {x.ring!r} and {y.ring!r} with a dealer over {dealer.ring!r}")
    if x.n != y.n or x.n != dealer.n:
        raise PartyCountError(f"operands among {x.n} and {y.n} parties with a dealer for {dealer.n}")


def _matmul_shape(shape_x: tuple[int, ...], shape_y: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape_x) == 2 and len(shape_y) == 2 and shape_x[1] == shape_y[0]:
        return (shape_x[0], shape_y[1])
    raise ShapeMismatchError(f"matmul takes 2-d shapes (m, k) @ (k, p), got {shape_x} @ {shape_y}")


def _check_triple(triple: Triple | None, kind: str, shapes: tuple[tuple[int, ...], ...], dealer: Dealer) -> Triple:
    if triple is None:
        return getattr(dealer, {"mul": "mul_triple", "matmul": "matmul_triple", "square": "square_pair"}[kind])(
            *shapes[: 1 if kind != "matmul" else 2])
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


def _stacked_parts(ring: Ring, kind: str, eps: np.ndarray, delta: np.ndarray, a: np.ndarray, b: np.ndarray,
                   c: np.ndarray) -> Shares:
    """:func:`beaver_parts` on stacked shares, party 0 folding its public term into its own product:
    ``eps * (b_0 + delta)`` (one product fewer than computing ``eps * delta`` apart)."""
    op = ring.mul if kind == "mul" else (lambda u, v: ring_matmul(ring, u, v))
    b_fold = np.array(b, dtype=ring.dtype)
    b_fold[0] = ring.add(b_fold[0], delta)
    return Shares(ring, np.asarray(ring.add(c, ring.add(op(eps, b_fold), op(a, delta))), dtype=ring.dtype))


def _with_public(ring: Ring, local: np.ndarray, public: np.ndarray) -> Shares:
    data = np.array(local, dtype=ring.dtype)
    data[0] = ring.add(data[0], public)
    return Shares(ring, data)


def mul(x: Shares, y: Shares, dealer: Dealer, channel: Channel | None = None, *,
        triple: Triple | None = None) -> Shares:
    """The sharing of the elementwise product ``x * y`` (Beaver; one round opening ``x - a`` and ``y - b``).

    Args:
        x, y: sharings of the same ring, party count and shape.
        dealer: the crypto provider (same ring and ``n``).
        channel: counts the opening (None: a throwaway :class:`Channel`).
        triple: a specific ``dealer.mul_triple(shape)`` to consume (default: a fresh one).

    Raises:
        RingMismatchError, PartyCountError, ShapeMismatchError: incompatible operands, dealer or triple.
        TripleReuseError: ``triple`` was used before.
    """
    _check_pair(x, y, dealer)
    if x.shape != y.shape:
        raise ShapeMismatchError(f"elementwise mul needs equal shapes, got {x.shape} and {y.shape}")
    channel = channel or Channel()
    a, b, c = channel.take(_check_triple(triple, "mul", (x.shape, x.shape), dealer))
    eps, delta = channel.open(x - a, y - b)
    return _stacked_parts(x.ring, "mul", eps, delta, a.data, b.data, c.data)


def matmul(x: Shares, y: Shares, dealer: Dealer, channel: Channel | None = None, *,
           triple: Triple | None = None) -> Shares:
    """The sharing of the matrix product ``x @ y`` for 2-d ``x`` (m, k) and ``y`` (k, p), in one round.

    Arguments and errors as for :func:`mul`; ``triple`` comes from ``dealer.matmul_triple(x.shape, y.shape)``.
    """
    _check_pair(x, y, dealer)
    _matmul_shape(x.shape, y.shape)
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

    __slots__ = ("b", "delta", "mask_index", "y")

    def __init__(self, y: Shares, b: Shares, delta: np.ndarray, mask_index: int) -> None:
        self.y, self.b, self.delta, self.mask_index = y, b, delta, mask_index

    @property
    def shape(self) -> tuple[int, ...]:
        return self.y.shape

    def __repr__(self) -> str:
        return f"MaskedOperand(shape={self.shape}, mask={self.mask_index})"


def mask_operand(y: Shares, dealer: Dealer, channel: Channel | None = None) -> MaskedOperand:
    """Open ``y - B`` once (one round) for a fresh dealer mask ``B``; see :class:`MaskedOperand`."""
    _check_pair(y, y, dealer)
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
    _check_pair(x, y.y, dealer)
    _matmul_shape(x.shape, y.shape)
    channel = channel or Channel()
    a, c = channel.take(dealer.masked_matmul_triple(x.shape, y.mask_index))
    (eps,) = channel.open(x - a)
    return _stacked_parts(x.ring, "matmul", eps, y.delta, a.data, y.b.data, c.data)


def square(x: Shares, dealer: Dealer, channel: Channel | None = None, *, triple: Triple | None = None) -> Shares:
    """The sharing of ``x * x`` from a pair ``(a, a**2)``: open ``eps = x - a``, then ``a2 + 2 eps a + eps**2``."""
    _check_pair(x, x, dealer)
    channel = channel or Channel()
    a, a2 = channel.take(_check_triple(triple, "square", (x.shape,), dealer))
    (eps,) = channel.open(x - a)
    return _stacked_parts(x.ring, "mul", eps, eps, a.data, a.data, a2.data)


def _check_trunc(ring: Ring, frac_bits: Any) -> int:
    if not ring.is_power_of_two or ring.dtype == object:
        raise RefimplError(f"truncation by shifting needs a ring Z_2^l with l <= 64, got {ring!r}")
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, numbers.Integral):
        raise TypeError(f"frac_bits must be an integer, got {frac_bits!r}")
    if not 0 <= int(frac_bits) <= ring.bits - 2:
        raise ValueError(f"frac_bits must lie in [0, {ring.bits - 2}] for {ring!r}, got {frac_bits}")
    return ring.bits


def truncate_local(x: Shares, frac_bits: int) -> Shares:
    """Two-party local truncation (SecureML): divide a sharing by ``2**frac_bits`` without communication.

    Party 0 shifts its share, party 1 shifts the negation of its share and negates back. With ``l`` ring bits and
    ``x`` the signed value, the result is ``floor(x / 2**f)`` or ``floor(x / 2**f) + 1`` unless ``x + (-s1 mod M)``
    leaves ``[0, M)``, which for a uniform share ``s1`` happens with probability exactly ``|x| / 2**l``
    (:func:`local_truncation_failure_probability`); then the result is off by about ``2**(l - f)``.

    Raises:
        PartyCountError: ``x`` is not shared between exactly two parties.
        ValueError: the ring is not Z_2^l, or ``frac_bits`` is outside ``[0, l - 2]``.

    Example:
        >>> from refimpl import Z2_64
        >>> x = Shares(Z2_64, np.array([[2**20 + 3], [2**64 - 3]], dtype=np.uint64))   # 2**20, shares wrap
        >>> Z2_64.lift(truncate_local(x, 16).reconstruct())
        array([16])
    """
    if x.n != 2:
        raise PartyCountError(f"local truncation works for exactly 2 parties, got {x.n}; use truncate()")
    _check_trunc(x.ring, frac_bits)
    ring, f = x.ring, np.uint64(frac_bits)
    t0 = x.data[0] >> f.astype(x.data.dtype)
    t1 = ring.neg(ring.neg(x.data[1]) >> f.astype(x.data.dtype))
    return Shares(ring, np.stack([t0, t1]))


def local_truncation_failure_probability(value: float, ring_bits: int = 64) -> float:
    """Probability that :func:`truncate_local` fails on the integer ``value`` (signed, before truncation).

    Exactly ``|value| / 2**ring_bits`` for a uniform share; it does not depend on ``frac_bits``.

    Example:
        >>> local_truncation_failure_probability(2**52)        # |x| < 2**10 at 2 * 16 fractional bits
        0.000244140625
    """
    return min(1.0, abs(float(value)) / 2.0**ring_bits)


def truncate(x: Shares, frac_bits: int, dealer: Dealer, channel: Channel | None = None, *,
             pair: Triple | None = None) -> Shares:
    """Dealer-assisted truncation by ``2**frac_bits`` for any number of parties, in one round.

    For every signed ``x`` in ``[-2**(l-2), 2**(l-2))`` the result is ``floor(x / 2**f)`` or
    ``floor(x / 2**f) + 1`` (error below one unit in the last place, never a wrap), and the ``+1`` happens with
    probability ``(x mod 2**f) / 2**f`` (unbiased stochastic rounding). Outside that range the result is
    undefined.

    Protocol: with ``y = x + 2**(l-2)`` (so ``0 <= y < 2**(l-1)``) and the dealer's ``[r]``,
    ``[r_hi] = [(r mod 2**(l-1)) >> f]`` and ``[r_msb] = [r >> (l-1)]``, open ``c = y + r``; the carry into
    the top bit is ``w = msb(c) xor r_msb`` (linear in ``[r_msb]``) and
    ``[y >> f] ~ ((c mod 2**(l-1)) >> f) - [r_hi] + 2**(l-1-f) [w]``.

    Raises:
        ValueError: a ring that is not Z_2^l, or ``frac_bits`` outside ``[0, l - 2]``.
        RingMismatchError, PartyCountError: ``x`` does not match the dealer.

    Example:
        >>> from refimpl import share, Z2_64
        >>> x = share([5 * 2**16 + 2**15, -3 * 2**16], 4)
        >>> Z2_64.lift(truncate(x, 16, Dealer(4)).reconstruct()).tolist() in ([5, -3], [6, -3])
        True
    """
    _check_pair(x, x, dealer)
    _check_trunc(x.ring, frac_bits)
    channel = channel or Channel()
    if pair is None:
        pair = dealer.trunc_pair(x.shape, frac_bits)
    elif pair.kind != "trunc" or pair.shapes != (x.shape,):
        raise ShapeMismatchError(f"{pair!r} does not fit a truncation of shape {x.shape}")
    r, r_hi, r_msb = channel.take(pair)
    (c,) = channel.open(x + truncation_offset(x.ring) + r)
    return _with_public(x.ring, *truncation_parts(x.ring, frac_bits, c, r_hi.data, r_msb.data))


def truncation_offset(ring: Ring) -> int:
    """The public offset ``2**(l-2)`` that party 0 adds before the opening of :func:`truncate`."""
    return 2 ** (ring.bits - 2)


def truncation_parts(ring: Ring, frac_bits: int, c: np.ndarray, r_hi: np.ndarray,
                     r_msb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local step of :func:`truncate` after opening ``c``: ``(local, public)`` as in :func:`beaver_parts`.

    ``local = 2**(l-1-f) * r_msb * (1 - 2 msb(c)) - r_hi`` for every party, and party 0 adds
    ``public = 2**(l-1-f) * msb(c) + ((c mod 2**(l-1)) >> f) - 2**(l-2-f)``.
    """
    l_bits = ring.bits
    c = np.asarray(c).astype(np.uint64)
    c_msb = (c >> np.uint64(l_bits - 1)).astype(np.int64)
    c_low_hi = (c & np.uint64(2 ** (l_bits - 1) - 1)) >> np.uint64(frac_bits)
    top = ring.dtype.type(2 ** (l_bits - 1 - frac_bits))
    local = ring.sub(ring.mul(ring.mul(r_msb, ring.reduce(1 - 2 * c_msb)), top), r_hi)
    public = ring.add(ring.mul(ring.reduce(c_msb), top),
                      ring.sub(ring.reduce(c_low_hi), ring.reduce(truncation_offset(ring) >> frac_bits)))
    return local, public
