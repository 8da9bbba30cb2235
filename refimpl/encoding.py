"""Fixed-point encoding of real numbers into a ring, exact and range-checked.

A real ``x`` encodes as ``k = round_half_even(x * scale)`` with ``scale = base ** frac_bits``, stored as ``k mod M``.
Decoding lifts to the signed integer ``k`` first and then divides, returning the float64 nearest to ``k / scale``.

Error bound (exact, for every encodable float64 ``x``)::

    |k / scale - x| <= 1 / (2 * scale)

and the float64 returned by :meth:`FixedPoint.decode` is ``k / scale`` correctly rounded. The rounding is computed
exactly even when ``x * scale`` is not representable in float64 (base 10): the product's rounding error is recovered
with Dekker's exact product, so half-way cases are decided on the true product, not on a rounded one.

Range: ``x`` is encodable iff ``|k| < M / 2``; NaN, infinities and anything larger raise
:class:`~refimpl.errors.OutOfRangeError`, naming the value and the range. Nothing wraps.

Example:
    >>> from refimpl import FixedPoint
    >>> fp = FixedPoint()                                  # base 2, 16 fractional bits, Z_2^64
    >>> fp.decode(fp.encode([0.5, -1.25, 3.0000001]))
    array([ 0.5 , -1.25,  3.  ])
    >>> syft = FixedPoint(base=10, frac_bits=3)            # PySyft's fix_precision defaults
    >>> syft.ring.lift(syft.encode([0.1, 0.0625, 0.1875, -0.0005]))   # exact halves round to even;
    array([100,  62, 188,  -1])

    The float nearest -0.0005 is slightly below it, so the exact product ``-0.50000000000000001`` rounds to -1.

References:
    T. J. Dekker, "A floating-point technique for extending the available precision", Numer. Math. 18 (1971).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike

from refimpl.backend import dispatch
from refimpl.errors import OutOfRangeError
from refimpl.ring import Z2_64, Ring

__all__ = ["FixedPoint"]

_SPLITTER = 134217729.0  # 2**27 + 1, Veltkamp's splitting constant for float64


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _two_product(a: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """``p, e`` with ``p = fl(a * b)`` and ``a * b = p + e`` exactly (Dekker), for |a * b| well inside float range."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(np.float64(b))
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point encoding with ``scale = base ** frac_bits`` into ``ring``.

    Args:
        frac_bits: number of fractional digits in ``base`` (default 16).
        base: the radix (default 2; ``base=10, frac_bits=3`` reproduces PySyft's ``fix_precision``).
        ring: the ring the encodings live in (default Z_2^64).

    Raises:
        TypeError: a non-integer ``frac_bits``/``base`` or a non-Ring ``ring``.
        ValueError: ``base < 2``, ``frac_bits < 0``, a non-power-of-two scale above 2**53 (not exact in float64),
            or a scale that leaves no integer part in the ring (``scale >= M / 2``).
    """

    frac_bits: int = 16
    base: int = 2
    ring: Ring = Z2_64

    def __post_init__(self) -> None:
        for name in ("frac_bits", "base"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"FixedPoint {name} must be an integer, got {v!r}")
        if not isinstance(self.ring, Ring):
            raise TypeError(f"FixedPoint ring must be a Ring, got {self.ring!r}")
        if self.base < 2:
            raise ValueError(f"FixedPoint base must be at least 2, got {self.base}")
        if self.frac_bits < 0:
            raise ValueError(f"FixedPoint frac_bits must be non-negative, got {self.frac_bits}")
        if self.frac_bits >= self.ring.modulus.bit_length():  # before computing base**frac_bits (10**9 bits: a hang)
            raise ValueError(f"FixedPoint frac_bits={self.frac_bits} leaves no integer range in {self.ring!r}")
        scale = self.scale
        if scale & (scale - 1) and scale > 2**53:
            raise ValueError(f"scale {self.base}**{self.frac_bits} = {scale} exceeds 2**53 and is not exact in float64")
        if scale > 2**1000:
            raise ValueError(f"scale {self.base}**{self.frac_bits} is too large for float64 inputs")
        if 2 * scale >= self.ring.modulus:
            raise ValueError(f"scale {scale} leaves no integer range in {self.ring!r} (needs scale < M/2)")

    @property
    def scale(self) -> int:
        """``base ** frac_bits``."""
        return int(self.base) ** int(self.frac_bits)

    @property
    def resolution(self) -> float:
        """The spacing of representable values, ``1 / scale``."""
        return 1.0 / self.scale

    @property
    def max_abs_integer(self) -> int:
        """The largest ``|k|`` that encodes: ``ceil(M / 2) - 1``."""
        return (self.ring.modulus - 1) // 2

    def _round_exact(self, x: np.ndarray) -> np.ndarray:
        """``round_half_even(x * scale)`` of the exact product, as float64 integers."""
        scale = float(self.scale)
        if self.scale & (self.scale - 1) == 0:  # power of two: the float product is exact
            return np.rint(x * scale)
        p, e = _two_product(x, scale)
        r = np.rint(p)
        d = p - r  # exact
        fix = (np.abs(d) == 0.5) & (e != 0) & (np.sign(e) == np.sign(d))
        return np.where(fix, r + np.sign(d), r)

    def encode(self, x: ArrayLike) -> np.ndarray:
        """Encode real numbers as ring elements, rounding half to even.

        Args:
            x: floats (float16/32/64) or integers, any shape.

        Returns:
            An array of ring elements (dtype ``ring.dtype``) of the same shape.

        Raises:
            TypeError: complex, boolean or non-numeric input.
            OutOfRangeError: NaN, infinity, or ``|round(x * scale)| >= M / 2``.

        Example:
            >>> FixedPoint(frac_bits=1).encode([0.25, 0.75, -0.25])     # halves of 1/2 round to even
            array([0, 2, 0], dtype=uint64)
            >>> FixedPoint(ring=Ring(2**32)).encode(2.0**15)
            Traceback (most recent call last):
            ...
            refimpl.errors.OutOfRangeError: value 32768.0 does not fit FixedPoint(frac_bits=16, base=2, ring=Z2_32): round(x * 65536) must lie in [-2147483647, 2147483647], i.e. |x| <= 32767.9999847
        """
        if dispatch.is_jax(x):  # JAX arrays: the same integers, under jit and vmap too (refimpl.backend.jax_encoding)
            return _jax_encoding().encode(self, x)
        if not isinstance(x, (np.ndarray, np.generic)):
            # Python ints must stay exact: NumPy turns lists that mix small and >= 2**63 ints into float64
            obj = np.array(x, dtype=object)
            if obj.size and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in obj.flat):
                return self._encode_integers(obj)
        arr = np.asarray(x)
        if arr.dtype.kind in "iu" or (arr.dtype == object and all(isinstance(v, numbers.Integral) and not
                                                                      isinstance(v, bool) for v in arr.ravel())):
            return self._encode_integers(arr)
        if arr.dtype.kind != "f":
            raise TypeError(f"FixedPoint.encode takes real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)  # read only below
        if arr.ndim and self.ring.dtype != object:
            fast = self._encode_in_range(arr)
            if fast is not None:
                return fast
        bad = ~np.isfinite(arr)
        if bad.any():
            raise OutOfRangeError(f"cannot encode non-finite value {arr[bad].ravel()[0].item()!r} in {self!r}")
        with np.errstate(over="ignore", invalid="ignore"):  # huge |x|: x * scale overflows, caught just below
            k = self._round_exact(arr)
        limit = self.max_abs_integer
        if (np.abs(k) >= 2.0**53).any():
            # Beyond 2**53 neither float(limit) nor (base 10) the float product x * scale is exact: compute these
            # integers exactly, round_half_even(Fraction(x) * scale) (int(k) is exact for a power-of-two scale).
            exact_scale = self.scale & (self.scale - 1) == 0
            vals = []
            for kv, xv in zip(k.ravel(), arr.ravel()):
                v = int(kv) if abs(kv) < 2.0**53 or (exact_scale and np.isfinite(kv)) else round(
                    Fraction(float(xv)) * self.scale)
                if abs(v) > limit:
                    self._raise_range(xv.item())
                vals.append(v)
            return self.ring.reduce(np.array(vals, dtype=object).reshape(arr.shape))
        over = np.abs(k) > float(limit)  # exact here: |k| < 2**53, and float(limit) only rounds above 2**53
        if over.any():
            self._raise_range(arr[over].ravel()[0].item())
        if self.ring.dtype == object:
            ints = np.vectorize(lambda v: int(v), otypes=[object])(k)
            return self.ring.reduce(ints)
        return self.ring.reduce(k.astype(np.int64))

    def _encode_in_range(self, arr: np.ndarray) -> np.ndarray | None:
        """The common case of :meth:`encode` in few passes and no temporaries: float64 ``arr`` (ndim >= 1) into a
        uint32/uint64 ring, when every ``k = round_half_even(x * scale)`` is finite with ``|k| <= min(limit,
        2**53 - 1)``; None otherwise (NaN, infinities, huge or out-of-range values: the general path decides, and
        raises). The result is bit-identical to the general path's."""
        with np.errstate(all="ignore"):  # NaN, infinities, overflow: rejected below, the general path warns
            if self.scale & (self.scale - 1) == 0:  # power of two: the float product is exact
                k = np.multiply(arr, float(self.scale))
                np.rint(k, out=k)
            else:
                k = self._round_exact(arr)
            if k.size:
                bound = float(min(self.max_abs_integer, 2**53 - 1))  # exact in float64
                if not (-bound <= np.minimum.reduce(k, axis=None) and np.maximum.reduce(k, axis=None) <= bound):
                    return None
        ints = k.view(np.int64)
        np.copyto(ints, k, casting="unsafe")  # in place; k holds integers below 2**53, so the cast is exact
        if self.ring.modulus == 2**64:  # int64 -> uint64 is two's complement: reinterpret, no copy
            return ints.view(np.uint64)
        return self.ring.reduce(ints)

    def _raise_range(self, value: object) -> None:
        limit = self.max_abs_integer
        value = value.item() if isinstance(value, np.generic) else value  # show 13, not np.int64(13)
        raise OutOfRangeError(
            f"value {value!r} does not fit {self!r}: round(x * {self.scale}) must lie in [{-limit}, {limit}], "
            f"i.e. |x| <= {limit / self.scale:.12g}"
        )

    def _encode_integers(self, arr: np.ndarray) -> np.ndarray:
        ints = np.array(arr.astype(object) * self.scale, dtype=object)  # stays an array for 0-d input
        limit = self.max_abs_integer
        for v, s in zip(ints.ravel(), arr.ravel()):
            if abs(v) > limit:
                self._raise_range(s)
        return self.ring.reduce(ints)

    def decode(self, r: ArrayLike) -> np.ndarray:
        """Decode ring elements to float64: lift to signed integers ``k`` exactly, then ``k / scale``.

        The result is ``k / scale`` correctly rounded to float64 (Python's exact integer division is used wherever
        ``|k| > 2**53``, where converting ``k`` to float first would round twice).

        Raises:
            TypeError: ``r`` does not hold integers.
            OutOfRangeError: ``r`` holds values outside ``[0, M)``.

        Example:
            >>> fp = FixedPoint(base=10, frac_bits=3)
            >>> fp.decode(fp.encode([-2.001, -0.999, 1e-3])).tolist()
            [-2.001, -0.999, 0.001]
        """
        if dispatch.is_jax(r):  # JAX arrays: float64 in JAX's 64-bit mode, else float32 (refimpl.backend.jax_encoding)
            return _jax_encoding().decode(self, r)
        if type(r) is np.ndarray and r.dtype == np.uint64 and self.ring.modulus == 2**64:
            k = r.view(np.int64)  # every uint64 is an element of Z_2^64 and its int64 view is the lift: no copies
        else:
            k = self.ring.lift(self.ring.element(self._check_unsigned(r)))
        scale = self.scale
        if k.dtype == object:
            return np.vectorize(lambda v: v / scale, otypes=[np.float64])(k).astype(np.float64)
        out = k.astype(np.float64)  # an array even for 0-d input
        np.divide(out, np.float64(scale), out=out)
        if scale & (scale - 1):  # a power-of-two scale divides exactly: no correction to look for
            big = np.abs(k) > 2**53
            if big.any():
                out[big] = [int(v) / scale for v in k[big]]
        return out

    def _check_unsigned(self, r: ArrayLike) -> np.ndarray:
        arr = np.asarray(r)
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise OutOfRangeError(
                f"decode takes ring elements in [0, {self.ring.modulus}), got negative value {arr.min()}"
            )
        return arr

    def __repr__(self) -> str:
        return f"FixedPoint(frac_bits={self.frac_bits}, base={self.base}, ring={self.ring!r})"


def _jax_encoding() -> ModuleType:
    """The JAX implementation (imported on first use: importing refimpl never imports JAX)."""
    from refimpl.backend import jax_encoding

    return jax_encoding
