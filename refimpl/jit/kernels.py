"""The compiled loops (Numba; see :mod:`refimpl.jit`). Each is checked bit for bit against its NumPy / OpenSSL
definition in ``tests/test_jit.py``, and the callers' tests run through both.

* :func:`encode_sub`: a secure-aggregation client's encode-and-mask loop, ``out[i] = ring(int64(rint(float64(src[i])
  * factor))) - mask[i]`` with the range check folded in (NumPy needs six passes). Numba keeps IEEE float64 here (no
  ``fastmath``: the multiply and the rounding are not contracted) and ``np.rint`` rounds half to even as NumPy's.
* The AES-CTR kernels (:mod:`refimpl.jit.aes`; the keystream of a stream from offset 0, default nonce, read as
  little-endian words of the output's dtype, uint32 or uint64): :func:`encode_sub_ctr` (the same loop, its mask made
  in the L1 cache), :func:`fold_ctr` (``acc = src +/- keystream_1 +/- ... ``), :func:`share_ctr` (an additive
  sharing: mask rows and party 0's share in one pass) and :func:`fill_rows_ctr`. Each works on a range
  ``[lo, hi)`` of words, so threads can share an array, and makes its keystream :data:`~refimpl.jit.aes.BATCH_BYTES`
  at a time.

Example:
    >>> import numpy as np
    >>> out = np.empty(3, np.uint64)
    >>> ok = encode_sub(np.array([0.5, -1.5, 2.25], np.float32), 4.0, np.zeros(3, np.uint64), out, 2.0**20)
    >>> ok, out.view(np.int64).tolist()          # rint([2, -6, 9]), nothing subtracted
    (True, [2, -6, 9])
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from refimpl.errors import ShapeMismatchError
from refimpl.jit.aes import BATCH_BYTES, GROUP_BYTES, expand_keys, fill_batch, fill_into

__all__ = ["encode_sub", "encode_sub_ctr", "expand_keys", "fill_rows_ctr", "fold_ctr", "share_ctr"]

_TMP_BYTES = BATCH_BYTES + GROUP_BYTES


@numba.njit(nogil=True, error_model="numpy")
def encode_sub(src: Any, factor: Any, mask: Any, out: Any, bound: Any) -> Any:  # pragma: no cover (compiled)
    """``out[i] = int64(rint(float64(src[i]) * factor)) - mask[i]`` in ``out``'s ring words (wrap-around), for a
    1-D float32 / float64 ``src`` and equally long uint32 / uint64 ``mask`` and ``out``; returns whether every
    ``|rint(...)|`` is at most ``bound`` (< 2^51; NaN fails). Where one is not, ``out`` holds garbage there (the
    caller discards it)."""
    if mask.size < src.size or out.size < src.size:
        raise ShapeMismatchError("encode_sub: mask and out need src's length")
    ok = True
    for i in range(src.size):
        r = np.rint(np.float64(src[i]) * factor)
        inside = np.abs(r) <= bound  # False for NaN
        ok &= inside
        r = r if inside else 0.0  # never convert an out-of-range float (undefined in LLVM)
        out[i] = np.uint64(np.int64(r)) - np.uint64(mask[i])  # stored mod 2^32 in uint32 words
    return ok


@numba.njit(nogil=True, error_model="numpy")
def encode_sub_ctr(src: Any, factor: Any, rk: Any, out: Any, first: Any, bound: Any) -> Any:  # pragma: no cover
    """:func:`encode_sub` with ``mask`` = the keystream words ``first .. first + src.size - 1`` of the AES-128 round
    keys ``rk`` (made a batch at a time in the L1 cache, never in memory)."""
    if out.size < src.size:
        raise ShapeMismatchError("encode_sub_ctr: out needs src's length")
    tmp = np.empty(_TMP_BYTES // out.itemsize, out.dtype)
    batch = BATCH_BYTES // out.itemsize
    ok = True
    done = 0
    while done < src.size:
        take = min(batch, src.size - done)
        at = fill_batch(rk, tmp, first + done, take)
        ok &= encode_sub(src[done : done + take], factor, tmp[at : at + take], out[done : done + take], bound)
        done += take
    return ok


@numba.njit(nogil=True)
def fold_ctr(acc: Any, src: Any, rks: Any, signs: Any, lo: Any, hi: Any) -> None:  # pragma: no cover (compiled)
    """``acc[lo:hi] = src[lo:hi] + sum_k signs[k] * keystream_k[lo:hi]`` with wrap-around (``signs`` +1 / -1;
    ``src`` may be ``acc``): all keys' keystreams over one batch of ``acc`` while it is in cache."""
    if lo < 0 or hi > acc.size or src.size < acc.size or signs.size < rks.shape[0]:
        raise ShapeMismatchError("fold_ctr: [lo, hi) must lie in acc, src be as long, one sign per key")
    tmp = np.empty(_TMP_BYTES // acc.itemsize, acc.dtype)
    batch = BATCH_BYTES // acc.itemsize
    a = lo
    while a < hi:
        take = min(batch, hi - a)
        part = acc[a : a + take]
        operand = src[a : a + take]
        for k in range(rks.shape[0]):
            at = fill_batch(rks[k], tmp, a, take)
            mask = tmp[at : at + take]
            if signs[k] > 0:
                for i in range(take):
                    part[i] = operand[i] + mask[i]
            else:
                for i in range(take):
                    part[i] = operand[i] - mask[i]
            operand = part
        a += take


@numba.njit(nogil=True)
def share_ctr(x: Any, rks: Any, data: Any, size: Any, lo: Any, hi: Any) -> None:  # pragma: no cover (compiled)
    """An additive sharing of ``x`` over words ``[lo, hi)``: row ``k + 1`` of ``data`` = keystream ``k`` and row 0
    = ``x - sum_k keystream_k`` (``data``: the n rows of ``size`` words, flat; ``rks``: n - 1 rows), one batch of
    every row at a time."""
    if lo < 0 or hi > size or x.size < size or data.size < (rks.shape[0] + 1) * size:
        raise ShapeMismatchError("share_ctr: [lo, hi) must lie in the rows, x and data be large enough")
    tmp = np.empty(_TMP_BYTES // data.itemsize, data.dtype)
    batch = BATCH_BYTES // data.itemsize
    a = lo
    while a < hi:  # slices, not computed indices: a slice's start is wrapped once, so the loops vectorise
        take = min(batch, hi - a)
        part = data[a : a + take]
        operand = x[a : a + take]
        if rks.shape[0] == 0:
            part[:] = operand
        for k in range(rks.shape[0]):
            start = (k + 1) * size + a
            fill_into(rks[k], data, start, a, take, tmp)  # the mask row, then read back from the L1 cache
            mask = data[start : start + take]
            for i in range(take):
                part[i] = operand[i] - mask[i]
            operand = part
        a += take


@numba.njit(nogil=True)
def fill_rows_ctr(data: Any, rks: Any, size: Any, lo: Any, hi: Any) -> None:  # pragma: no cover (compiled)
    """Row ``k`` of ``data`` (rows of ``size`` words, flat) = keystream ``k``'s words, over ``[lo, hi)``."""
    if lo < 0 or hi > size or data.size < rks.shape[0] * size:
        raise ShapeMismatchError("fill_rows_ctr: [lo, hi) must lie in the rows, data be large enough")
    tmp = np.empty(_TMP_BYTES // data.itemsize, data.dtype)
    batch = BATCH_BYTES // data.itemsize
    a = lo
    while a < hi:
        take = min(batch, hi - a)
        for k in range(rks.shape[0]):
            fill_into(rks[k], data, k * size + a, a, take, tmp)
        a += take
