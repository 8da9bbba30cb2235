"""Rings Z_M of integers modulo M: the arithmetic every share lives in.

A :class:`Ring` is a frozen value: ``Ring(M)`` for any modulus ``M >= 2`` (additive sharing needs only a ring) and
``Ring.prime(p)`` for fields, which checks primality. Elements are stored in the smallest exact array type:

============================  =====================  ===========================================
modulus                       dtype                  arithmetic
============================  =====================  ===========================================
``2**32``                     ``uint32``             native wrap-around
``2**k``, ``k <= 64``         ``uint64``             native wrap-around, then mask to ``k`` bits
other ``M <= 2**32``          ``uint64``             exact, products fit in 64 bits
other ``M > 2**32``           ``object`` (int)       exact Python integers
============================  =====================  ===========================================

Signed view: an element ``v`` stands for ``v - M`` when ``2 v >= M`` (:meth:`Ring.lift`).

Example:
    >>> from refimpl import Ring, Z2_64
    >>> Z2_64.add(Z2_64.element([2**64 - 1]), Z2_64.element([2]))
    array([1], dtype=uint64)
    >>> Z2_64.lift(Z2_64.element([-5]))
    array([-5])
    >>> q = Ring(23740629843760239486723)      # the tutorial's Q: a ring, but not a field
    >>> q.is_field
    False
"""

from __future__ import annotations

import functools
import numbers
import os
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl.backend import dispatch
from refimpl.errors import NotAFieldError, OutOfRangeError

if TYPE_CHECKING:
    from refimpl.prg import Stream

__all__ = ["Ring", "Z2_32", "Z2_64", "is_probable_prime"]

_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
# Miller-Rabin with the first 13 primes as bases is deterministic below this bound (Sorenson & Webster 2015).
_DETERMINISTIC_BOUND = 3_317_044_064_679_887_385_961_981
_OVERSAMPLE_BYTES = 16  # 128 extra bits when sampling rings above 2**64: statistical distance <= 2**-128


def _strong_probable_prime(n: int, a: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    x = pow(a, d, n)
    if x in (1, n - 1):
        return True
    for _ in range(s - 1):
        x = x * x % n
        if x == n - 1:
            return True
    return False


def is_probable_prime(n: int) -> bool:
    """Miller-Rabin primality test.

    Deterministic for ``n < 3.3e24`` (first 13 prime bases); above that, 13 fixed bases plus 40 random bases from
    the OS, so a composite passes with probability below ``4**-40``.

    Args:
        n: the integer to test.

    Returns:
        True if ``n`` is (probably) prime.

    Example:
        >>> is_probable_prime(2**61 - 1), is_probable_prime(23740629843760239486723)
        (True, False)

    References:
        J. Sorenson, J. Webster, "Strong pseudoprimes to twelve prime bases", Math. Comp. 86 (2017).
    """
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    bases = list(_SMALL_PRIMES[:13])
    if n >= _DETERMINISTIC_BOUND:
        bases += [2 + int.from_bytes(os.urandom(32), "little") % (n - 3) for _ in range(40)]
    return all(_strong_probable_prime(n, a) for a in bases)


@dataclass(frozen=True)
class Ring:
    """The ring Z_M of integers modulo ``modulus``.

    Args:
        modulus: M, an integer >= 2.

    Raises:
        TypeError: ``modulus`` is not an integer.
        ValueError: ``modulus < 2``.
    """

    modulus: int

    def __post_init__(self) -> None:
        m = self.modulus
        if isinstance(m, bool) or not isinstance(m, numbers.Integral):
            raise TypeError(f"Ring modulus must be an integer, got {m!r} of type {type(m).__name__}")
        if m < 2:
            raise ValueError(f"Ring modulus must be at least 2, got {m}")
        object.__setattr__(self, "modulus", int(m))

    @classmethod
    def prime(cls, p: int) -> Ring:
        """The prime field Z_p; refuses a composite ``p``.

        Example:
            >>> Ring.prime(2**61 - 1)
            Ring.prime(2305843009213693951)
            >>> Ring.prime(23740629843760239486723)
            Traceback (most recent call last):
            ...
            refimpl.errors.NotAFieldError: 23740629843760239486723 is not prime (it has the factor 3), so Z_p is not a field; use Ring(23740629843760239486723) for a ring
        """
        ring = cls(p)
        if not ring.is_field:
            factor = next((q for q in _SMALL_PRIMES if ring.modulus % q == 0 and q != ring.modulus), None)
            why = f" (it has the factor {factor})" if factor else ""
            raise NotAFieldError(
                f"{ring.modulus} is not prime{why}, so Z_p is not a field; use Ring({ring.modulus}) for a ring"
            )
        return ring

    # ---------------------------------------------------------------- properties
    @functools.cached_property
    def is_field(self) -> bool:
        """Whether M is prime (then Z_M is a field and every nonzero element has an inverse)."""
        return is_probable_prime(self.modulus)

    @property
    def bits(self) -> int:
        """Bits needed to write the largest element, ``(M - 1).bit_length()``."""
        return (self.modulus - 1).bit_length()

    @property
    def is_power_of_two(self) -> bool:
        return self.modulus & (self.modulus - 1) == 0

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype that stores elements: uint32, uint64 or object (Python int)."""
        m = self.modulus
        if m == 2**32:
            return np.dtype(np.uint32)
        if (self.is_power_of_two and m <= 2**64) or m <= 2**32:
            return np.dtype(np.uint64)
        return np.dtype(object)

    @property
    def element_bytes(self) -> int:
        """Bytes per element when serialised: the dtype's width, or ``ceil(bits / 8)`` for big moduli."""
        return self.dtype.itemsize if self.dtype != object else (self.bits + 7) // 8

    @property
    def signed_min(self) -> int:
        """Smallest value of the signed view, ``-floor(M / 2)``."""
        return -(self.modulus // 2)

    @property
    def signed_max(self) -> int:
        """Largest value of the signed view, ``ceil(M / 2) - 1``."""
        return (self.modulus - 1) // 2

    def __repr__(self) -> str:
        m = self.modulus
        if m == 2**32:
            return "Z2_32"
        if m == 2**64:
            return "Z2_64"
        if self.is_power_of_two:
            return f"Ring(2**{self.bits})"
        return f"Ring.prime({m})" if m < _DETERMINISTIC_BOUND and self.is_field else f"Ring({m})"

    # ---------------------------------------------------------------- conversion
    def _as_int_array(self, x: ArrayLike, what: str) -> np.ndarray:
        if not isinstance(x, (np.ndarray, np.generic)):
            # Python ints beyond 64 bits must stay exact: NumPy would turn some mixes of them into float64
            obj = np.array(x, dtype=object)
            if obj.size and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in obj.flat):
                lo, hi = min(obj.flat), max(obj.flat)
                return obj.astype(np.int64) if -(2**63) <= lo and hi < 2**63 else obj
        arr = np.asarray(x)
        if arr.dtype == object:
            bad = [v for v in arr.ravel() if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
            if bad:
                raise TypeError(f"{what} must hold integers, got {bad[0]!r} of type {type(bad[0]).__name__}")
            return arr
        if arr.dtype.kind not in "iu":
            raise TypeError(
                f"{what} must be an integer array, got dtype {arr.dtype}"
                + ("; encode real numbers first with FixedPoint.encode" if arr.dtype.kind == "f" else "")
            )
        return arr

    def reduce(self, x: ArrayLike) -> np.ndarray:
        """Reduce any integers modulo M (an explicit modular reduction, so values of any size are accepted).

        Example:
            >>> Ring(7).reduce([-1, 7, 15])
            array([6, 0, 1], dtype=uint64)
        """
        if dispatch.is_jax(x):
            return _jax_ring().reduce(self, x)
        arr = self._as_int_array(x, "Ring.reduce input")
        m, dt = self.modulus, self.dtype
        if arr.dtype.kind == "O" or dt.kind == "O":
            return np.vectorize(lambda v: int(v) % m, otypes=[object])(arr).astype(dt)
        if self.is_power_of_two:
            out = arr.astype(dt)  # two's-complement cast: exact reduction modulo 2**64 (or 2**32)
            return out if m in (2**32, 2**64) else out & dt.type(m - 1)
        if arr.dtype.kind == "u":
            return (arr.astype(np.uint64) % np.uint64(m)).astype(dt)
        return np.mod(arr.astype(np.int64), np.int64(m)).astype(dt)

    def element(self, x: ArrayLike) -> np.ndarray:
        """Checked conversion of integers to ring elements.

        Integers in ``[0, M)`` are elements; negative integers down to ``-floor(M/2)`` are read in the signed view
        (``v + M``). Anything else raises: nothing wraps silently.

        Raises:
            TypeError: ``x`` does not hold integers.
            OutOfRangeError: a value lies outside ``[-floor(M/2), M)``.

        Example:
            >>> Z2_32.element([-1, 5])
            array([4294967295,          5], dtype=uint32)
            >>> Ring(7).element([7])
            Traceback (most recent call last):
            ...
            refimpl.errors.OutOfRangeError: value 7 is outside Ring.prime(7)'s range [-3, 7)
        """
        if dispatch.is_jax(x):
            return _jax_ring().element(self, x)
        arr = self._as_int_array(x, "ring element")
        lo, hi = self.signed_min, self.modulus
        if arr.size:
            if arr.dtype == object:
                flat = arr.ravel()
                bad = [v for v in flat if not lo <= v < hi]
            else:
                info = np.iinfo(arr.dtype)
                bad = []
                if info.min < lo:
                    bad += arr[arr < lo].tolist()[:1]
                if info.max >= hi:
                    bad += arr[arr >= hi].tolist()[:1]
            if bad:
                raise OutOfRangeError(f"value {bad[0]} is outside {self!r}'s range [{lo}, {hi})")
        return self.reduce(arr)

    def lift(self, x: ArrayLike) -> np.ndarray:
        """The signed view: ``v - M`` where ``2 v >= M``, else ``v``: int64 for rings stored as uint32/uint64,
        Python ints (object array) for the others.

        Example:
            >>> Z2_64.lift(Z2_64.element([0, 1, 2**63 - 1, 2**63, 2**64 - 1]))
            array([                   0,                    1,  9223372036854775807,
                   -9223372036854775808,                   -1])
        """
        if dispatch.is_jax(x):
            return _jax_ring().lift(self, x)
        arr = np.asarray(x)
        m = self.modulus
        if self.dtype == object:
            return np.vectorize(lambda v: int(v) - m if 2 * int(v) >= m else int(v), otypes=[object])(arr)
        if m == 2**64:
            return arr.astype(np.uint64).view(np.int64)
        signed = arr.astype(np.int64)  # here M <= 2**63, so every element fits
        return np.where(signed >= (m + 1) // 2, signed + np.int64(-m), signed)

    def zeros(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """An array of zeros of the ring's dtype."""
        return np.zeros(shape, dtype=self.dtype) if self.dtype != object else np.full(shape, 0, dtype=object)

    # ---------------------------------------------------------------- arithmetic
    def _wrap(self, out: np.ndarray) -> np.ndarray:
        m = self.modulus
        if self.is_power_of_two:
            return out if m in (2**32, 2**64) else out & self.dtype.type(m - 1)
        if self.dtype == object:
            return out % m
        return out % np.uint64(m)

    def _exact(self, a: Any, b: Any) -> tuple[Any, Any]:
        """Object rings: both operands as object arrays. A 0-d object result comes back from NumPy as a Python int,
        and a ufunc on two Python ints computes in int64: silently wrong above 2**63, or an OverflowError."""
        if self.dtype != object:
            return a, b
        return np.asarray(a, dtype=object), np.asarray(b, dtype=object)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(a + b) mod M`` for ring elements ``a``, ``b``."""
        if dispatch.is_jax(a) or dispatch.is_jax(b):
            return _jax_ring().add(self, a, b)
        a, b = self._exact(a, b)
        return self._wrap(np.add(a, b))  # the dtype table guarantees no intermediate overflow

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(a - b) mod M`` for ring elements ``a``, ``b``."""
        if dispatch.is_jax(a) or dispatch.is_jax(b):
            return _jax_ring().sub(self, a, b)
        a, b = self._exact(a, b)
        if self.is_power_of_two:
            return self._wrap(np.subtract(a, b))
        if self.dtype == object:
            return np.subtract(a, b) % self.modulus
        return self._wrap(np.add(a, np.uint64(self.modulus) - b))

    def neg(self, a: np.ndarray) -> np.ndarray:
        """``-a mod M``."""
        if dispatch.is_jax(a):
            return _jax_ring().neg(self, a)
        return self.sub(self.zeros(np.shape(a)), a)

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(a * b) mod M`` for ring elements (products of public values with shares, or plaintext products)."""
        if dispatch.is_jax(a) or dispatch.is_jax(b):
            return _jax_ring().mul(self, a, b)
        a, b = self._exact(a, b)
        return self._wrap(np.multiply(a, b))

    def sum(self, x: np.ndarray, axis: int = 0) -> np.ndarray:
        """Sum of ring elements along ``axis``, modulo M, with no intermediate overflow."""
        if dispatch.is_jax(x):
            return _jax_ring().sum(self, x, axis)
        if self.is_power_of_two:
            return self._wrap(np.sum(x, axis=axis, dtype=self.dtype))
        parts = np.moveaxis(np.asarray(x), axis, 0)
        total = self.zeros(parts.shape[1:])
        for part in parts:
            total = self.add(total, part)
        return total

    # ---------------------------------------------------------------- sampling
    def sample(self, stream: Stream, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform elements drawn from a cryptographic stream, with no modulo bias.

        * ``M = 2**k <= 2**64``: little-endian words of the dtype's width, masked to ``k`` bits.
        * other ``M <= 2**32``: rejection sampling on little-endian 64-bit words ``w``: accept ``w < 2**64 - (2**64
          mod M)`` and return ``w mod M``; the stream advances exactly past the last accepted word.
        * every other ``M`` (object dtype: ``M > 2**32``, and ``2**k`` with ``k > 64``): ``bytes(M) + 16``
          little-endian bytes per element reduced mod M (128 bits of oversampling, statistical distance below
          ``2**-128`` from uniform; exactly uniform for ``2**k``).

        Args:
            stream: a :class:`refimpl.prg.Stream`; it is advanced past the bytes used.
            shape: the output shape.

        Example:
            >>> from refimpl.prg import Stream
            >>> Ring(10).sample(Stream(bytes(16)), 5)
            array([2, 4, 8, 6, 5], dtype=uint64)
        """
        shape = (int(shape),) if isinstance(shape, numbers.Integral) else tuple(shape)  # type: ignore[arg-type]
        count = int(np.prod(shape, dtype=np.int64))
        m, dt = self.modulus, self.dtype
        if self.is_power_of_two and dt.kind != "O":
            out = np.empty(count, dtype=dt)
            stream.read_into(out)
            return self._wrap(out).reshape(shape)
        if dt.kind == "O":
            width = self.element_bytes + _OVERSAMPLE_BYTES
            raw = stream.read(count * width).reshape(count, width)
            vals = [int.from_bytes(row.tobytes(), "little") % m for row in raw]
            return np.array(vals, dtype=object).reshape(shape)
        limit = np.uint64(2**64 - (2**64 % m))
        out = np.empty(count, dtype=np.uint64)
        filled = 0
        while filled < count:
            need = count - filled
            start = stream.position
            words = np.empty(need + need // 8 + 8, dtype=np.uint64)
            stream.read_into(words)
            accepted = np.flatnonzero(words < limit)
            if accepted.size > need:
                accepted = accepted[:need]
                stream.seek(start + 8 * (int(accepted[-1]) + 1))
            out[filled : filled + accepted.size] = words[accepted] % np.uint64(m)
            filled += accepted.size
        return out.reshape(shape)


Z2_32 = Ring(2**32)
Z2_64 = Ring(2**64)


def _jax_ring() -> ModuleType:
    """The JAX implementation (imported on first use: importing refimpl never imports JAX)."""
    from refimpl.backend import jax_ring

    return jax_ring
