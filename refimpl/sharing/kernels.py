"""Fused, multi-threaded kernels for additive sharing over Z_2^32 / Z_2^64 (native wrap-around, little-endian hosts).

Every kernel walks its arrays in chunks of :data:`CHUNK_BYTES` per share, so a chunk of keystream is still in cache
when it is combined: one pass over memory, no temporaries. Large arrays are split into contiguous, chunk-aligned
ranges, one per thread; each thread opens its own cipher positioned at its range's first byte (counter mode is
seekable), so the keystream and every result are **bit-identical** to the one-thread definition whatever the
number of threads. The ``cryptography`` package releases the GIL while it encrypts and NumPy's ufuncs release it
while they add, so the threads run on every core.

The number of threads is the number of cores this process may use (``os.sched_getaffinity``), or
``REFIMPL_THREADS`` from the environment, or what :func:`set_threads` sets (1 = never start a thread). Calls with
less than :data:`MIN_PARALLEL_BYTES` of work always run in the calling thread.

Where Numba is installed and the CPU has AES instructions, calls of at least :data:`refimpl.jit.AES_MIN_BYTES` of
``aes128-ctr`` keystream run on the compiled AES-CTR instead (:mod:`refimpl.jit`): every keystream is made 4 KiB at
a time where it is used -- added into the sum, written as a mask row next to party 0's share -- with the same bits.

Speed (``bench/bench_share_limits.py``; README "Speed and scale-out"): ``share`` into a reused buffer beats the
single-core keystream bound of OpenSSL's CTR engine on 2 cores and reaches about 0.65x its all-core bound (0.7x
with the compiled AES-CTR). With OpenSSL, AES-CTR runs on its faster GCM engine where it can
(:func:`refimpl.prg.aes_engine`): for a stream from its start, so for the first range only, which therefore takes
more elements. Each core alternates between the cipher and the
subtraction, which reads the secret from memory and writes party 0's share to memory; separate OpenSSL and NumPy
calls cannot overlap the two, and ``share``'s memory traffic alone, with the cipher taken out, already takes longer
than the fastest all-core keystream.

Example:
    >>> import numpy as np
    >>> from refimpl.prg import Stream
    >>> acc = np.zeros(10, np.uint64)
    >>> apply_keystreams(acc, [bytes(16)], "aes128-ctr", np.add)
    >>> bool((acc == Stream(bytes(16)).read(80).view(np.uint64)).all())
    True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from refimpl import jit
from refimpl.errors import ShapeMismatchError
from refimpl.prg import aes_engine, encryptor, write_keystream

__all__ = ["CHUNK_BYTES", "MIN_PARALLEL_BYTES", "apply_keystreams", "check_out", "fill_keystreams", "fold_keystreams",
           "set_chunk_bytes", "set_threads", "share_words", "sum_parties", "threads"]

# A multiple of every cipher's block (16, 64): each chunk starts on a block boundary. 512 KiB measured best or tied
# (bench/bench_share_limits.py --sweep, 2 cores: 256 KiB - 1 MiB within 3%; 64 KiB 20% slower: ~1 us of Python
# and a GIL hand-off per call; above 1 MiB the combination falls out of the 1 MiB L2 cache).
CHUNK_BYTES = 1 << 19
# Below this many bytes of work (keystream plus combination) a call stays in the calling thread: handing work to a
# pool thread costs ~50 us on an idle machine but milliseconds on a loaded one (measured: 3 ms per hand-off with
# the 2 cores busy), more than 16 MiB of keystream takes on one core (~1.5 ms at 11 GB/s).
MIN_PARALLEL_BYTES = 1 << 24

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_override: int | None = None


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads() -> int:
    """The number of threads the kernels use for large arrays (see the module docstring)."""
    if _override is not None:
        return _override
    env = os.environ.get("REFIMPL_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"REFIMPL_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return _cores()


def set_threads(count: int | None) -> int | None:
    """Use ``count`` threads (None: back to the default); returns the previous setting (None if it was default).

    Results do not depend on the number of threads, only the speed does.

    Raises:
        ValueError: ``count`` is not a positive integer or None.
    """
    global _override
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"thread count must be a positive integer or None, got {count!r}")
    previous, _override = _override, count
    return previous


def set_chunk_bytes(nbytes: int) -> int:
    """Walk arrays in chunks of ``nbytes`` per share (a positive multiple of 64); returns the previous size.

    For tuning and benchmarks: results do not depend on the chunk size, only the speed does.

    Raises:
        ValueError: ``nbytes`` is not a positive multiple of 64.
    """
    global CHUNK_BYTES
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 64 or nbytes % 64:
        raise ValueError(f"chunk size must be a positive multiple of 64 bytes, got {nbytes!r}")
    previous, CHUNK_BYTES = CHUNK_BYTES, nbytes
    return previous


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(size, thread_name_prefix="refimpl-kernel"), size
        return _pool


def _forget_pool() -> None:  # a forked child inherits the pool object but not its threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


_local = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's scratch buffer of at least ``nbytes`` + 16 bytes (update_into's room after the data), kept and
    reused so that repeated calls do not pay first-touch page faults; its length is a multiple of 16 plus 16."""
    need = -(-nbytes // 16) * 16 + 16
    buf = getattr(_local, "scratch", None)
    if buf is None or buf.size < need:
        buf = _local.scratch = np.empty(max(need, 1 << 12), dtype=np.uint8)
    return buf


# Where AES-CTR runs on OpenSSL's GCM engine (refimpl.prg.aes_engine), only the first range's streams get it: they
# start at offset 0; the other ranges start mid-stream, on the CTR engine, about half as fast here. The first range
# then takes more elements: with a 3:2 split (2 threads) share n = 3 at 2^23 elements took 9.5 ms against 10.5 ms for
# halves (bench/bench_share_limits.py; 0.6-0.65 of the elements measured best, 0.7 slower).
GCM_FIRST_RANGE_WEIGHT = 1.5


_WORDS = (np.dtype(np.uint32), np.dtype(np.uint64))


def _compiled_aes(prg: str, nbytes: int, *dtypes: np.dtype) -> Any:
    """:mod:`refimpl.jit.kernels` where the compiled AES-CTR (:func:`refimpl.jit.aes_kernels`) makes ``nbytes`` of
    ``prg``'s keystreams for arrays of ``dtypes`` (one word size, uint32 / uint64), else None: OpenSSL makes them."""
    if prg != "aes128-ctr" or len({np.dtype(d) for d in dtypes}) != 1 or np.dtype(dtypes[0]) not in _WORDS:
        return None
    return jit.aes_kernels(nbytes)


def _first_weight(prg: str) -> float:
    return GCM_FIRST_RANGE_WEIGHT if prg == "aes128-ctr" and aes_engine() == "gcm" else 1.0


def _ranges(size: int, step: int, work_bytes: int, first_weight: float = 1.0) -> list[tuple[int, int]]:
    """Split ``range(size)`` into contiguous, ``step``-aligned ranges, one per thread (one range for small work);
    the first range gets ``first_weight`` times the others' share."""
    workers = threads() if work_bytes >= MIN_PARALLEL_BYTES else 1
    chunks = -(-size // step)
    workers = max(1, min(workers, chunks))
    if workers == 1:
        return [(0, size)]
    first = min(chunks - workers + 1, max(1, round(chunks * first_weight / (first_weight + workers - 1))))
    per = -(-(chunks - first) // (workers - 1))
    bounds = [0, first] + list(range(first + per, chunks, per)) + [chunks]
    return [(lo * step, min(size, hi * step)) for lo, hi in zip(bounds, bounds[1:]) if lo < hi]


def _run(work: Callable[[int, int], None], ranges: Sequence[tuple[int, int]]) -> None:
    if len(ranges) == 1:
        work(*ranges[0])
        return
    pool = _executor(len(ranges))
    futures = [pool.submit(work, lo, hi) for lo, hi in ranges[1:]]
    try:
        work(*ranges[0])  # the calling thread takes the first range
    finally:
        for f in futures:
            f.result()  # re-raises a worker's exception


def _keystream_rows(flat: np.ndarray, first_row: int, keys: Sequence[bytes], prg: str,
                    combine: Callable[[int, int], None] | None) -> None:
    """``flat[first_row + i]`` = keystream of ``keys[i]`` for a C-contiguous 2-d uint32/uint64 ``flat``, chunk by
    chunk on every core, calling ``combine(a, b)`` after each chunk ``[a, b)`` of columns (its keystream in cache).

    The cipher writes straight into the rows (no scratch buffer, no copy): measured faster than drawing into a
    cache-resident scratch buffer and copying out (bench/bench_share_limits.py notes)."""
    size = flat.shape[1]
    itemsize = flat.dtype.itemsize
    step = CHUNK_BYTES // itemsize
    whole = flat.reshape(-1).view(np.uint8)

    def work(lo: int, hi: int) -> None:
        encs = [encryptor(k, prg, bytes(16), lo * itemsize) for k in keys]
        view = memoryview(whole)  # type: ignore[arg-type]  # one view of every row: only the last row's end has
        bases = [(first_row + i) * size * itemsize for i in range(len(keys))]  # no room after it for update_into
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            for enc, base in zip(encs, bases):
                write_keystream(enc, view, base + a * itemsize, (b - a) * itemsize)
            if combine is not None:
                combine(a, b)

    if size and keys:
        _run(work, _ranges(size, step, (len(keys) + (combine is not None)) * size * itemsize,
                           _first_weight(prg)))


def fill_keystreams(rows: np.ndarray, keys: Sequence[bytes], prg: str) -> None:
    """``rows[i]`` = the keystream of ``keys[i]``, read as ``Stream(keys[i], cipher=prg).read_into(rows[i])`` reads
    it (offset 0, default nonce), on every core. ``rows``: C-contiguous uint32/uint64, ``rows.shape[0] == len(keys)``.

    Example:
        >>> from refimpl.prg import Stream
        >>> rows = np.empty((2, 5), np.uint32)
        >>> fill_keystreams(rows, [bytes(16), bytes([1]) * 16], "aes128-ctr")
        >>> bool((rows[1] == Stream(bytes([1]) * 16).read(20).view(np.uint32)).all())
        True
    """
    if rows.shape[0] != len(keys):
        raise ShapeMismatchError(f"fill_keystreams: {rows.shape[0]} rows for {len(keys)} keys")
    flat = rows.reshape(len(keys), -1)
    compiled = _compiled_aes(prg, rows.nbytes, rows.dtype)
    if compiled is not None and keys and flat.shape[1]:  # every keystream made and stored in one pass
        rks = compiled.expand_keys(keys)
        _run(lambda lo, hi: compiled.fill_rows_ctr(rows.reshape(-1), rks, flat.shape[1], lo, hi),
             _ranges(flat.shape[1], CHUNK_BYTES // rows.dtype.itemsize, rows.nbytes))
        return
    _keystream_rows(flat, 0, keys, prg, None)


def share_words(x: np.ndarray, keys: Sequence[bytes], prg: str, data: np.ndarray) -> None:
    """Fill ``data`` (C-contiguous, shape ``(n, *x.shape)``, uint32/uint64) with the sharing of ``x``.

    ``data[i]`` = keystream of ``keys[i - 1]`` (exactly ``Stream(key, cipher=prg).read_into``: offset 0, default
    nonce) and ``data[0] = x - data[1] - ... - data[n-1]`` with native wrap-around. ``x`` may not overlap ``data``.
    """
    n = data.shape[0]
    flat = data.reshape(n, -1)
    xf = x.reshape(-1)
    first = flat[0]
    compiled = _compiled_aes(prg, data.nbytes - data[0].nbytes, data.dtype, x.dtype)
    if compiled is not None and flat.shape[1]:  # masks and party 0's share made together, word by word
        rks = compiled.expand_keys(keys)
        _run(lambda lo, hi: compiled.share_ctr(xf, rks, data.reshape(-1), flat.shape[1], lo, hi),
             _ranges(flat.shape[1], CHUNK_BYTES // data.dtype.itemsize, data.nbytes))
        return

    def combine(a: int, b: int) -> None:  # the chunk's masks were just written: they are read back from cache
        out = first[a:b]
        np.subtract(xf[a:b], flat[1, a:b], out=out)
        for party in range(2, n):
            np.subtract(out, flat[party, a:b], out=out)

    _keystream_rows(flat, 1, keys, prg, combine)


def sum_parties(data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``sum(data, axis=0)`` for a C-contiguous uint32/uint64 stack of shares (ndim >= 2), with wrap-around.

    ``out``: a C-contiguous array of ``data.shape[1:]`` and ``data.dtype`` to write into (not overlapping ``data``);
    a new array when None.
    """
    n = data.shape[0]
    flat = data.reshape(n, -1)
    if out is None:
        out = np.empty(data.shape[1:], dtype=data.dtype)
    acc = out.reshape(-1)
    step = CHUNK_BYTES // data.dtype.itemsize

    def work(lo: int, hi: int) -> None:
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            part = acc[a:b]
            np.add(flat[0, a:b], flat[1, a:b], out=part)
            for party in range(2, n):
                np.add(part, flat[party, a:b], out=part)

    if acc.size:
        _run(work, _ranges(acc.size, step, data.nbytes))
    return out


def apply_keystreams(acc: np.ndarray, keys: Iterable[bytes], prg: str, op: np.ufunc, *,
                     src: np.ndarray | None = None) -> None:
    """``acc = op(acc, mask_k)`` in place for every key, where ``mask_k`` is the keystream of ``k`` read as
    ``Stream(k, cipher=prg).read_into`` reads it (offset 0, default nonce) into an array of ``acc``'s shape and dtype.

    ``acc``: C-contiguous uint32/uint64 numpy array on a little-endian host; ``op``: ``np.add`` or ``np.subtract``
    (native wrap-around, so this is ``ring.add`` / ``ring.sub`` of ``ring.sample(Stream(k, cipher=prg), shape)`` for
    Z_2^32 / Z_2^64, bit for bit). The masks are never materialised: each chunk of keystream goes into a small
    per-thread scratch buffer and is folded into ``acc`` while still in cache.

    ``src``: when given (an array of ``acc``'s size and dtype, C-contiguous), ``acc`` starts as a copy of ``src``
    (in the same pass: ``acc = op(src, mask_1)``, then the other masks)."""
    fold_keystreams(acc, [(k, op) for k in keys], prg, src=src)


def fold_keystreams(acc: np.ndarray, terms: Sequence[tuple[bytes, np.ufunc]], prg: str, *,
                    src: np.ndarray | None = None) -> None:
    """``acc = op_k(acc, mask_k)`` for every ``(key, op_k)`` of ``terms``, in one chunked pass over ``acc`` (each
    op ``np.add`` or ``np.subtract``); otherwise as :func:`apply_keystreams`. Secure aggregation folds a client's
    self mask (+) and its pairwise masks (+ or -) into its input this way."""
    flat = acc.reshape(-1)
    if src is not None and not terms:
        np.copyto(acc, src.reshape(acc.shape))
    if not terms or not flat.size:
        return
    first = flat if src is None else src.reshape(-1)
    itemsize = acc.dtype.itemsize
    step = CHUNK_BYTES // itemsize
    compiled = _compiled_aes(prg, acc.nbytes * len(terms), acc.dtype, first.dtype)
    if compiled is not None and all(op is np.add or op is np.subtract for _, op in terms):
        rks = compiled.expand_keys([k for k, _ in terms])  # every keystream made where it is added
        signs = np.array([1 if op is np.add else -1 for _, op in terms], np.int64)
        _run(lambda lo, hi: compiled.fold_ctr(flat, first, rks, signs, lo, hi),
             _ranges(flat.size, step, flat.size * itemsize * len(terms)))
        return

    def work(lo: int, hi: int) -> None:
        encs = [(encryptor(k, prg, bytes(16), lo * itemsize), op) for k, op in terms]
        scratch = _scratch(min(CHUNK_BYTES, (hi - lo) * itemsize))
        room = memoryview(scratch)  # type: ignore[arg-type]
        words = scratch[: scratch.size - 16].view(acc.dtype)
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            part, mask, operand = flat[a:b], words[: b - a], first[a:b]
            for enc, op in encs:
                write_keystream(enc, room, 0, (b - a) * itemsize)
                op(operand, mask, out=part)
                operand = part

    _run(work, _ranges(flat.size, step, flat.size * itemsize * len(terms), _first_weight(prg)))


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype, what: str, *inputs: Any) -> np.ndarray:
    """Validate an ``out=`` buffer: a writeable, C-contiguous numpy array of exactly ``shape`` and ``dtype``."""
    if type(out) is not np.ndarray:
        raise TypeError(f"{what}: out= must be a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{what}: out= must have dtype {dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ShapeMismatchError(f"{what}: out= must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"{what}: out= must be C-contiguous and writeable")
    for other in inputs:
        if isinstance(other, np.ndarray) and np.may_share_memory(out, other):
            raise ValueError(f"{what}: out= overlaps an input array; pass a separate buffer")
    return out
