"""Update compression: unbiased stochastic quantization to b bits, optionally after a random Hadamard rotation.

:func:`stochastic_quantize` maps ``x`` in ``[-c, c]`` to ``y = (x + c) / step`` with ``step = 2c / (2^b - 1)`` and
rounds up with probability ``frac(y)`` (dither ``u`` from a keyed stream: ``q = floor(y + u)``), so ``E[q] = y``
and the dequantized value ``q step - c`` is unbiased with variance at most ``step^2 / 4``. The integers ``q`` lie in
``[0, 2^b)``: secure aggregation sums them exactly (``K (2^b - 1) < M``) and the sum dequantizes as
``sum q * step - K c``.

:func:`hadamard_rotate` multiplies by ``H D / sqrt(n)`` (``D`` random signs from a keyed stream, ``H`` the
Walsh-Hadamard matrix, ``n`` the length padded to a power of two). It is orthogonal, so it keeps L2 norms and
commutes with summation; it spreads a vector's energy evenly, so coordinates are about ``||x||_2 / sqrt(n)`` and a
small clip range ``c`` loses little (Suresh et al. 2017).

Example:
    >>> import numpy as np
    >>> q = stochastic_quantize(np.array([-1.0, 0.0, 0.3, 1.0]), bits=2, clip=1.0, key=bytes(16))
    >>> q.tolist(), dequantize(q, bits=2, clip=1.0).round(3).tolist()
    ([0, 2, 2, 3], [-1.0, 0.333, 0.333, 1.0])
    >>> x = np.arange(5.0)
    >>> np.allclose(hadamard_rotate(hadamard_rotate(x, key=bytes(16)), key=bytes(16), inverse=True)[:5], x)
    True

References:
    A. T. Suresh, F. X. Yu, S. Kumar, H. B. McMahan, "Distributed Mean Estimation with Limited Communication",
    ICML 2017.
    J. Konecny et al., "Federated Learning: Strategies for Improving Communication Efficiency", 2016.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key
from refimpl.errors import ConfigurationError, OutOfRangeError, ShapeMismatchError
from refimpl.prg import Stream, derive_key

__all__ = ["stochastic_quantize", "dequantize", "dequantize_sum", "hadamard_rotate", "fwht", "packed_nbytes"]


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= bits <= 62:
        raise ConfigurationError(f"bits must be an integer in [1, 62], got {bits!r}")
    return int(bits)


def _check_clip(clip: float) -> float:
    if isinstance(clip, bool) or not isinstance(clip, numbers.Real) or not (math.isfinite(clip) and clip > 0):
        raise ConfigurationError(f"clip range must be positive and finite, got {clip!r}")
    return float(clip)


def _uniform01(key: bytes, purpose: str, n: int) -> np.ndarray:
    w = np.empty(n, dtype=np.uint64)
    Stream(derive_key(check_key(key), "fl/compress", purpose)).read_into(w)
    return ((w >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def stochastic_quantize(x: ArrayLike, bits: int, clip: float, *, key: bytes) -> np.ndarray:
    """Unbiased stochastic quantization of ``x`` (``|x| <= clip``) to integers in ``[0, 2^bits)`` (int64).

    Raises:
        ConfigurationError: bad ``bits`` or ``clip``. OutOfRangeError: ``|x| > clip`` or non-finite ``x``.
    """
    b, c = _check_bits(bits), _check_clip(clip)
    arr = np.asarray(x, dtype=np.float64)
    bad = ~(np.abs(arr) <= c)
    if bad.any():
        raise OutOfRangeError(f"value {arr[bad].ravel()[0].item()!r} is outside the clip range [-{c}, {c}]")
    levels = 2**b - 1
    y = (arr + c) * (levels / (2 * c))
    q = np.floor(y + _uniform01(key, "dither", arr.size).reshape(arr.shape))
    return np.clip(q, 0, levels).astype(np.int64)


def _check_levels(q: ArrayLike, top: int, what: str) -> np.ndarray:
    """``q`` as integers in ``[0, top]``, else OutOfRangeError naming the first bad value (never a silent result)."""
    arr = np.asarray(q)
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr))):
        raise OutOfRangeError(f"{what} must be finite integers, got dtype {arr.dtype}")
    a = arr.astype(np.float64)
    bad = (a < 0) | (a > top) | (a != np.floor(a))
    if bad.any():
        raise OutOfRangeError(f"{what} value {a[bad].ravel()[0].item()!r} is not an integer in [0, {top}]")
    return a


def dequantize(q: ArrayLike, bits: int, clip: float) -> np.ndarray:
    """``q step - clip``: the unbiased estimate of the quantized values.

    Raises:
        OutOfRangeError: a value outside ``[0, 2^bits)`` (it could not come from :func:`stochastic_quantize`).
    """
    b, c = _check_bits(bits), _check_clip(clip)
    return _check_levels(q, 2**b - 1, "quantized") * (2 * c / (2**b - 1)) - c


def dequantize_sum(total: ArrayLike, count: int, bits: int, clip: float) -> np.ndarray:
    """The unbiased estimate of a sum of ``count`` quantized vectors from the sum of their integers.

    Raises:
        ConfigurationError: ``count < 1``. OutOfRangeError: a total outside ``[0, count (2^bits - 1)]``.
    """
    b, c = _check_bits(bits), _check_clip(clip)
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ConfigurationError(f"count must be a positive integer (the vectors summed), got {count!r}")
    return _check_levels(total, int(count) * (2**b - 1), "quantized sum") * (2 * c / (2**b - 1)) - count * c


def packed_nbytes(length: int, bits: int) -> int:
    """Bytes of ``length`` b-bit integers packed tightly (what a quantized update costs on a plain channel)."""
    return (int(length) * _check_bits(bits) + 7) // 8


def fwht(x: np.ndarray) -> np.ndarray:
    """Orthonormal fast Walsh-Hadamard transform along the last axis (length a power of two); self-inverse."""
    a = np.array(x, dtype=np.float64, copy=True)
    n = a.shape[-1]
    if n < 1 or n & (n - 1):
        raise ShapeMismatchError(f"fwht needs a power-of-two length, got {n}")
    lead = a.shape[:-1]
    h = 1
    while h < n:
        v = a.reshape(*lead, n // (2 * h), 2, h)
        top, bottom = v[..., 0, :].copy(), v[..., 1, :]
        v[..., 0, :] += bottom
        v[..., 1, :] = top - bottom
        h *= 2
    return a / math.sqrt(n)


def hadamard_rotate(x: ArrayLike, *, key: bytes, inverse: bool = False) -> np.ndarray:
    """Randomized Hadamard rotation ``H D x / sqrt(n)`` of the last axis, zero-padded to a power of two.

    With ``inverse=True``, ``x`` must already have the padded length; returns ``D H x / sqrt(n)`` (padding kept:
    slice the result to the original length). The signs ``D`` come from a stream keyed by ``key`` (shared by all
    clients and the server of a round, so rotated updates can be summed and the sum rotated back).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] < 1:
        raise ShapeMismatchError(f"hadamard_rotate needs at least one coordinate on the last axis, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise OutOfRangeError("hadamard_rotate: the input holds NaN or infinity")
    d = a.shape[-1]
    n = 1 << max(0, (d - 1).bit_length())
    if inverse and d != n:
        raise ShapeMismatchError(f"inverse rotation takes the padded length (a power of two), got {d}")
    raw = np.empty((n + 7) // 8, dtype=np.uint8)
    Stream(derive_key(check_key(key), "fl/compress", "hadamard-signs")).read_into(raw)
    signs = 1.0 - 2.0 * np.unpackbits(raw)[:n]
    if inverse:
        return fwht(a) * signs
    padded = np.zeros((*a.shape[:-1], n))
    padded[..., :d] = a
    return fwht(padded * signs)
