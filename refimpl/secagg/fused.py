"""Fused one-pass kernels of secure aggregation over Z_2^32 / Z_2^64 (native wrap-around, little-endian hosts).

A client's fixed-point contribution usually arrives as float pieces (a model's leaves) and a scale factor, and
leaves as one masked array. Unfused, that takes a float64 copy, an int64 encoding, a range-check pass, a ring-element
copy and a masking pass. :func:`encode_mask` does it in one chunked pass: each chunk (:func:`chunk_size`)
is scaled, rounded, converted, and has its mask keystream subtracted while it is in cache, written once into the
caller's (reused) buffer. The range check is done inside that pass from each chunk's minimum and maximum
(:func:`scaled_bounds`), because ``x -> fl(x * factor)`` and ``rint`` are monotone for ``factor >= 0``; the pass
returns False when a value is out of range or not finite.

Where Numba is installed, each chunk's encoding and first subtraction run as one compiled loop instead
(:func:`refimpl.jit.kernels.encode_sub`; ``REFIMPL_JIT=0`` turns it off): 0.6x the time of the NumPy pass on the
README's FedAvg round, and the same bits (the tests run every fused test both ways). Where the CPU has AES
instructions the compiled loop also makes the mask itself, a few KiB at a time in the L1 cache
(:func:`refimpl.jit.kernels.encode_sub_ctr`; ``REFIMPL_JIT_AES=0`` leaves it to OpenSSL).

Every result is bit for bit the unfused definition: ``ring.element(rint(concat(pieces) * factor).astype(int64))``
minus the keystreams of ``keys`` read from offset 0 (:class:`refimpl.prg.Stream`), and ``rint`` rounds half to
even like NumPy's. The tests compare the two on ragged sizes, both rings and chunk boundaries.

Example:
    >>> import numpy as np
    >>> from refimpl.prg import Stream
    >>> out = np.empty(3, np.uint64)
    >>> encode_mask([np.array([0.5, -1.5], np.float32), np.array([2.25])], 4.0, out, [bytes(16)], "aes128-ctr")
    True
    >>> mask = Stream(bytes(16)).read(24).view(np.uint64)
    >>> (out + mask).view(np.int64).tolist()       # rint([2, -6, 9])
    [2, -6, 9]
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from refimpl import jit
from refimpl.prg import encryptor, write_keystream
from refimpl.sharing.kernels import fold_keystreams, threads

__all__ = ["CHUNK", "MAGIC_LIMIT", "PARALLEL_BYTES", "chunk_size", "encode_mask", "executor", "fold_arrays", "native",
           "scaled_bounds"]

CHUNK = 1 << 17
"""The most elements per chunk (1 MiB of float64): an array is cut into the fewest chunks of at most this many
elements, all of one size (:func:`chunk_size`), so a chunk's float and keystream words stay in the core's cache
together while the Python calls per element stay few (measured: 2^16-element chunks cost 5% more per client)."""


def chunk_size(n: int) -> int:
    """The elements per chunk :func:`encode_mask` uses for an ``n``-element array: ``n`` cut into
    ``ceil(n / CHUNK)`` chunks of (nearly) equal size -- the last one may be smaller.

    Example:
        >>> chunk_size(199210), chunk_size(CHUNK), chunk_size(CHUNK + 1)
        (99605, 131072, 65537)
    """
    count = max(1, -(-n // CHUNK))
    return -(-n // count)


MAGIC_LIMIT = 2**51
"""Below this magnitude ``rint(t)`` is read off the bits of ``t + 1.5 * 2^52`` (one addition instead of ``rint``
and a float-to-int conversion; the same integer, ties to even, since ``1.5 * 2^52`` is even)."""

PARALLEL_BYTES = 1 << 22
"""Below this many bytes of shares per round the clients of an in-process round are computed one after the other
(handing a client to a thread costs tens of microseconds on an idle machine, milliseconds on a loaded one)."""

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # the source dtypes the compiled loop takes
_MAGIC = 1.5 * 2.0**52
_MAGIC_BITS = np.float64(_MAGIC).view(np.uint64)


def native(dtype: np.dtype) -> bool:
    """True when ring elements of ``dtype`` wrap natively here (uint32 / uint64 on a little-endian host)."""
    return sys.byteorder == "little" and np.dtype(dtype) in (np.dtype(np.uint32), np.dtype(np.uint64))


def scaled_bounds(lo: float, hi: float, factor: float) -> tuple[float, float]:
    """``rint(fl(lo * factor))`` and ``rint(fl(hi * factor))`` for the pieces' minimum ``lo`` and maximum ``hi``
    (in their own dtype), computed exactly as :func:`encode_mask` computes every coordinate: the smallest and largest
    encoded integer of the whole contribution when ``factor >= 0`` (NaN when a bound is NaN)."""
    pair = np.multiply(np.array([lo, hi]), np.float64(factor), dtype=np.float64)
    low, high = np.rint(pair).tolist()
    return low, high


def encode_mask(pieces: Sequence[np.ndarray], factor: float, out: np.ndarray, keys: Sequence[bytes], prg: str,
                *, limit: float = MAGIC_LIMIT, bound: int | None = None) -> bool:
    """``out[...] = rint(concat(pieces) * factor)`` as ring elements, minus the keystream of every key (wrap-around).

    Either the caller has checked the range (:func:`scaled_bounds`): every encoded integer lies in ``[-limit,
    limit]`` (``limit <= 2^63``); below :data:`MAGIC_LIMIT` the rounding uses the magic-number addition, otherwise
    ``rint`` and a conversion. Or it gives ``bound`` (< :data:`MAGIC_LIMIT`): the pass then takes each chunk's
    minimum and maximum while the chunk is in cache (no separate pass over the pieces) and returns False -- ``out``
    then holds garbage -- when an encoded integer falls outside ``[-bound, bound]`` or a value is NaN.

    Args:
        pieces: 1-D float arrays (float32 / float64); their lengths add up to ``out.size``.
        factor: the scale (>= 0), e.g. ``weight * 2^frac_bits``; multiplied in float64.
        out: C-contiguous uint32 / uint64 array (the ring's words) written once; not overlapping ``pieces``.
        keys: the stream keys whose keystreams (offset 0, default nonce) are subtracted.
        prg: their cipher.
        limit: a bound on the encoded integers' magnitude the caller guarantees.
        bound: check the range as the pass goes (see above).

    Returns:
        True, or False when ``bound`` is given and the range check failed.
    """
    flat = out.reshape(-1)
    if sum(int(p.size) for p in pieces) != flat.size:
        raise ValueError(f"the pieces hold {sum(int(p.size) for p in pieces)} values, out has {flat.size}")
    if bound is not None and not 0 <= bound < MAGIC_LIMIT:
        raise ValueError(f"bound must lie in [0, 2^51), got {bound}")
    srcs = [p.reshape(-1) for p in pieces if p.size]
    check = limit if bound is None else bound
    if keys and check < MAGIC_LIMIT and all(p.dtype in _FLOATS for p in srcs) and jit.available():
        ok = _encode_mask_compiled(srcs, factor, flat, keys, prg, float(check))
        return ok or bound is None  # without a bound the caller has checked the range
    words = flat.dtype.itemsize
    n = chunk_size(flat.size)
    t = np.empty(n, np.float64)
    room = np.empty(n * words + 16, np.uint8)  # update_into needs 15 bytes past the data
    view = memoryview(room)  # type: ignore[arg-type]
    stream = room[: n * words].view(flat.dtype)
    encs = [encryptor(k, prg, bytes(16), 0) for k in keys]
    f = np.float64(factor)
    if bound is not None:
        limit = bound
    magic = limit < MAGIC_LIMIT
    ints = None if magic else np.empty(n, np.int64)
    wide = flat.dtype == np.uint64
    lows: list[Any] = []
    highs: list[Any] = []
    for pos, size, segments in _chunks(srcs, n, flat.size):
        tt, part = t[:size], flat[pos : pos + size]
        enc: np.ndarray
        for filled, src in segments:
            tt[filled : filled + src.size] = src  # exact (float32 -> float64), as multiply's own cast would be
        whole = segments[0][1] if len(segments) == 1 else None  # the chunk's source when it lies in one piece
        if bound is not None:  # the chunk's extremes: in the piece's own dtype if it is one piece (fewer bytes)
            lows.append(np.minimum.reduce(tt if whole is None else whole))
            highs.append(np.maximum.reduce(tt if whole is None else whole))
        np.multiply(tt, f, out=tt)  # a copy, then a float64 multiply in place: faster than one casting multiply
        if magic:
            np.add(tt, _MAGIC, out=tt)
            enc = tt.view(np.uint64)  # the integer + MAGIC's bits, mod 2^64
        else:
            np.rint(tt, out=tt)
            assert ints is not None
            enc = ints[:size]
            enc[...] = tt  # the conversion astype(np.int64) makes
        if not encs:
            _store(enc, part, magic, wide)
        for j, e in enumerate(encs):
            write_keystream(e, view, 0, size * words)
            mask = stream[:size]
            if j == 0:
                if wide:  # combined in the cached scratch, so the share chunk is written once
                    np.subtract(enc.view(np.uint64), mask, out=mask)
                    if magic:
                        np.subtract(mask, _MAGIC_BITS, out=part)
                    else:
                        np.copyto(part, mask)
                else:
                    np.subtract(enc.view(np.int64), mask, out=part, casting="unsafe")  # mod 2^32
                    if magic:
                        np.subtract(part, _MAGIC_BITS.astype(flat.dtype), out=part)
            else:
                np.subtract(part, mask, out=part)
    if bound is None or not lows:
        return True
    low, high = scaled_bounds(np.array(lows).min(), np.array(highs).max(), factor)  # NaN propagates to both
    return -bound <= low and high <= bound


def _chunks(srcs: Sequence[np.ndarray], n: int, total: int) -> Iterator[tuple[int, int, list[tuple[int, np.ndarray]]]]:
    """The concatenation of ``srcs`` (``total`` elements) in chunks of ``n``: ``(start, size, segments)`` per chunk,
    each segment ``(offset in the chunk, slice of a piece)`` -- small pieces share a chunk (fewer calls per round)."""
    k = off = 0  # the piece and the offset in it where the next chunk starts
    for pos in range(0, total, n):
        size = min(n, total - pos)
        segments, filled = [], 0
        while filled < size:
            take = min(size - filled, srcs[k].size - off)
            segments.append((filled, srcs[k][off : off + take]))
            filled, off = filled + take, off + take
            if off == srcs[k].size:
                k, off = k + 1, 0
        yield pos, size, segments


def _encode_mask_compiled(srcs: list[np.ndarray], factor: float, flat: np.ndarray, keys: Sequence[bytes], prg: str,
                          bound: float) -> bool:
    """:func:`encode_mask` through the compiled loop (:mod:`refimpl.jit.kernels`). With the compiled AES-CTR, one
    call per piece encodes it and subtracts the first key's keystream, made in the L1 cache as it goes; the other
    keys' keystreams are then subtracted in one more pass (:func:`refimpl.sharing.kernels.fold_keystreams`).
    Otherwise, per chunk, OpenSSL writes the first key's keystream into a cached buffer and one loop per piece in
    the chunk encodes and subtracts it; the other keys' keystreams are subtracted by NumPy. Returns whether every
    encoded integer lies within ``bound``."""
    aes = jit.aes_kernels(flat.nbytes * len(keys)) if prg == "aes128-ctr" else None
    if aes is not None:
        rk = aes.expand_keys(keys[:1])[0]
        ok, pos = True, 0
        for src in srcs:
            ok &= aes.encode_sub_ctr(src, float(factor), rk, flat[pos : pos + src.size], pos, float(bound))
            pos += src.size
        if len(keys) > 1:
            fold_keystreams(flat, [(k, np.subtract) for k in keys[1:]], prg)
        return bool(ok)
    compiled = jit.compiled_kernels()
    words = flat.dtype.itemsize
    n = chunk_size(flat.size)
    room = np.empty(n * words + 16, np.uint8)  # update_into needs 15 bytes past the data
    view = memoryview(room)  # type: ignore[arg-type]
    stream = room[: n * words].view(flat.dtype)
    encs = [encryptor(k, prg, bytes(16), 0) for k in keys]
    ok = True
    for pos, size, segments in _chunks(srcs, n, flat.size):
        write_keystream(encs[0], view, 0, size * words)
        for filled, src in segments:
            end = filled + src.size
            ok &= compiled.encode_sub(src, np.float64(factor), stream[filled:end], flat[pos + filled : pos + end],
                                      np.float64(bound))
        part, mask = flat[pos : pos + size], stream[:size]
        for e in encs[1:]:
            write_keystream(e, view, 0, size * words)
            np.subtract(part, mask, out=part)
    return ok


def _store(enc: np.ndarray, part: np.ndarray, magic: bool, wide: bool) -> None:
    """``part = enc`` as ring words (no keys to subtract)."""
    if wide:
        np.copyto(part, enc.view(np.uint64))
    else:
        np.copyto(part, enc.view(np.int64), casting="unsafe")
    if magic:
        np.subtract(part, _MAGIC_BITS.astype(part.dtype), out=part)


_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_workers = 0


def executor() -> tuple[ThreadPoolExecutor | None, int]:
    """The pool that computes in-process clients side by side and its number of workers: ``threads() - 1`` (the
    calling thread is the last), or ``(None, 0)`` where :func:`refimpl.sharing.kernels.threads` is 1. Kept."""
    global _pool, _workers
    workers = threads() - 1
    if workers < 1:
        return None, 0
    with _lock:
        if _pool is None or _workers != workers:
            _pool, _workers = ThreadPoolExecutor(workers, thread_name_prefix="refimpl-secagg"), workers
        return _pool, workers


def _forget_pool() -> None:  # a forked child inherits the pool object but not its threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def fold_arrays(acc: np.ndarray, arrays: Sequence[np.ndarray], *, first: bool = False) -> None:
    """``acc += sum(arrays)`` with wrap-around (``first``: ``acc = sum(arrays)``, its old contents ignored)."""
    for i, a in enumerate(arrays):
        if first and i == 0:
            np.copyto(acc, a)
        else:
            np.add(acc, a, out=acc)
