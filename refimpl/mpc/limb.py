"""Exact Z_2^64 / Z_2^32 matmul with float64 BLAS on split limbs, and the ring matmul that chooses it.

NumPy's integer matmul does not use BLAS; :func:`limb_matmul` splits both operands into balanced digits whose
products, summed over the inner size, stay below 2**53, multiplies them with float64 BLAS and recombines them mod
``2**bits``, bit-identical to the integer matmul. :func:`ring_matmul` (every Beaver matmul and the dealer's
``A @ B``) takes that path where it pays (``LIMB_MATMUL``), and keeps a fixed right operand's digits in a cache.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from refimpl.ring import Ring

__all__ = ["LIMB_MATMUL", "LIMB_MATMUL_MIN_OUTPUT", "LIMB_MATMUL_MIN_OUTPUT_FIXED", "limb_matmul", "limb_matmul_pays",
           "limb_split", "ring_matmul"]


#: Output entries per matrix (m * p) from which :func:`limb_matmul` may replace the integer matmul; with a fixed
#: right operand whose digits are kept (``ring_matmul(..., cache=)``) splitting it costs nothing, so from
#: ``LIMB_MATMUL_MIN_OUTPUT_FIXED``.
LIMB_MATMUL_MIN_OUTPUT = 1 << 14
LIMB_MATMUL_MIN_OUTPUT_FIXED = 1 << 10


def limb_matmul_pays(shape_a: tuple[int, ...], shape_b: tuple[int, ...], *, fixed: bool = False) -> bool:
    """Whether float64 BLAS on split limbs is used instead of NumPy's (non-BLAS) integer matmul: for outputs of at
    least ``LIMB_MATMUL_MIN_OUTPUT`` entries per matrix (``LIMB_MATMUL_MIN_OUTPUT_FIXED`` for a ``fixed`` right
    operand with kept digits) and inner sizes of 64 to 2048, where it measured faster (bench/bench_mpc.py; 2-3.6x
    for inference-sized products with one BLAS thread on a shared 2-core machine)."""
    if len(shape_a) < 2 or len(shape_b) < 2:
        return False
    m, k, p = int(shape_a[-2]), int(shape_a[-1]), int(shape_b[-1])
    return 64 <= k <= 2048 and m * p >= (LIMB_MATMUL_MIN_OUTPUT_FIXED if fixed else LIMB_MATMUL_MIN_OUTPUT)


#: ``"auto"`` (time both ways once per shape class and keep the faster), ``"on"`` or ``"off"``. Both ways give
#: the same bits; only the speed differs (BLAS threads on a loaded machine can make the float path slower).
LIMB_MATMUL = "auto"
_LIMB_CHOICE: dict[tuple[int, ...], bool] = {}


def _limb_is_faster(a: np.ndarray, b: np.ndarray, bits: int, b_limbs: list[np.ndarray] | None = None) -> bool:
    """The cached choice for this shape class (powers of two of m, k, p; kept digits or not), timed once on first
    use: the limb path once untimed (its thread pool and buffers warm), then the best of two runs each way."""
    key = (bits, b_limbs is not None,
           *(int(d).bit_length() for d in (a.shape[-2], a.shape[-1], b.shape[-1], a.size // a.shape[-1])))
    if key not in _LIMB_CHOICE:
        limb_matmul(a, b, bits, b_limbs=b_limbs)
        best = [float("inf"), float("inf")]
        for _ in range(2):
            t0 = time.perf_counter()
            np.matmul(a, b)
            t1 = time.perf_counter()
            limb_matmul(a, b, bits, b_limbs=b_limbs)
            t2 = time.perf_counter()
            best = [min(best[0], t1 - t0), min(best[1], t2 - t1)]
        _LIMB_CHOICE[key] = best[1] < best[0]
    return _LIMB_CHOICE[key]


def _signed_limbs(x: np.ndarray, w: int, count: int, bits: int = 64) -> list[np.ndarray]:
    """Balanced base-``2**w`` digits of ``x`` (read mod ``2**bits``): ``x = sum d_i 2**(w i) mod 2**bits`` with
    every ``d_i`` in ``[-2**(w-1), 2**(w-1)]``, as float64 arrays (exact).

    From the signed view ``s`` of ``x`` (int64, wrapping): ``t = s + 2**(w-1)``, ``d = (t mod 2**w) - 2**(w-1)``,
    ``s = t >> w`` (arithmetic), so ``s = d + 2**w (t >> w)`` mod 2**64 at each step; five passes per digit."""
    u = np.asarray(x).astype(np.uint64, copy=False)
    s = u.view(np.int64) if bits == 64 else (u << np.uint64(64 - bits)).view(np.int64) >> np.int64(64 - bits)
    half, mask, shift = np.int64(1 << (w - 1)), np.int64((1 << w) - 1), np.int64(w)
    out = []
    for _ in range(count - 1):
        t = s + half  # wraps like the ring
        d = np.bitwise_and(t, mask).astype(np.float64)
        d -= float(1 << (w - 1))
        out.append(d)
        t >>= shift
        s = t
    out.append(s.astype(np.float64))  # |top digit| <= 2**(bits - 1 - w (count - 1)) <= 2**(w-1)
    return out


def limb_split(b: np.ndarray, k: int, bits: int = 64) -> list[np.ndarray]:
    """The float64 digits :func:`limb_matmul` splits a right operand with inner size ``k`` into: pass them as
    ``b_limbs`` to reuse them across products with a fixed operand (a model's weights)."""
    w = _limb_width(k)
    return _signed_limbs(b, w, -(-bits // w), bits)


def _limb_width(k: int) -> int:
    return min(26, (55 - int(max(1, k)).bit_length()) // 2)  # k * 2**(2w - 2) < 2**53


def limb_matmul(a: np.ndarray, b: np.ndarray, bits: int = 64, *,
                b_limbs: list[np.ndarray] | None = None) -> np.ndarray:
    """``a @ b mod 2**bits`` for unsigned integer arrays, exactly, with float64 BLAS on split limbs.

    Both operands are split into ``L`` balanced digits of ``w`` bits (each in ``[-2**(w-1), 2**(w-1)]``) with
    ``k * 2**(2w - 2) < 2**53`` (``k`` the inner size), so every digit product summed over ``k`` is an exact
    integer in float64; the products of digits ``(i, j)`` with ``(i + j) w < bits`` (6 of them for ``w = 22``,
    ``k <= 2048``) are computed by BLAS, converted to integers, shifted by ``(i + j) w`` and added mod
    ``2**bits``. ``b_limbs`` (from :func:`limb_split`) skips splitting ``b`` again. Bit-identical to the
    integer matmul (tested); faster where BLAS is (bench/bench_mpc.py).

    Example:
        >>> a = np.array([[2**64 - 1, 3]], dtype=np.uint64)
        >>> b = np.array([[2**63 + 5], [7]], dtype=np.uint64)
        >>> bool((limb_matmul(a, b) == np.matmul(a, b)).all())
        True
    """
    w = _limb_width(a.shape[-1])
    limbs = -(-bits // w)
    al = _signed_limbs(a, w, limbs, bits)
    bl = _signed_limbs(b, w, limbs, bits) if b_limbs is None else b_limbs
    jobs = [(i, j, (i + j) * w) for i in range(limbs) for j in range(limbs - i) if (i + j) * w < bits]

    def product(job: tuple[int, int, int]) -> np.ndarray:
        i, j, shift = job
        part = np.matmul(al[i], bl[j]).astype(np.int64).view(np.uint64)  # exact, |entry| < 2**53
        if shift:
            part <<= np.uint64(shift)
        return part

    pool = _limb_pool()
    parts = list(pool.map(product, jobs)) if pool is not None else [product(job) for job in jobs]
    out = parts[0]
    for part in parts[1:]:
        out += part  # wraps mod 2**64
    return out


_POOL: list[Any] = []


def _limb_pool() -> Any:
    """A thread pool for the limb products when BLAS runs one thread (``OPENBLAS_NUM_THREADS=1`` or
    ``OMP_NUM_THREADS=1``) and several cores are free: BLAS releases the GIL, so the products run side by side.
    None otherwise (multi-threaded BLAS already uses the cores)."""
    if not _POOL:
        single = "1" in (os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get("OMP_NUM_THREADS"))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        _POOL.append(ThreadPoolExecutor(max_workers=min(cores, 6)) if single and cores > 1 else None)
    return _POOL[0]


def ring_matmul(ring: Ring, a: np.ndarray, b: np.ndarray, *, cache: dict[Any, Any] | None = None) -> np.ndarray:
    """``a @ b mod M`` for ring elements, exact for every ring (NumPy broadcasting rules of ``matmul``).

    Z_2^32 and Z_2^64 use native wrap-around integer matmul (or :func:`limb_matmul`, same bits); other moduli use
    exact Python integers. ``cache``: a dict kept with a fixed ``b`` (a model's weights), where the limb path
    keeps ``b``'s digits for the next product.

    Example:
        >>> ring_matmul(Ring(7), np.array([[3, 4]], dtype=np.uint64), np.array([[5], [6]], dtype=np.uint64))
        array([[4]], dtype=uint64)
    """
    if ring.is_power_of_two and ring.dtype != object:
        if LIMB_MATMUL != "off" and limb_matmul_pays(np.shape(a), np.shape(b), fixed=cache is not None):
            a, b = np.asarray(a), np.asarray(b)
            b_limbs = None
            if cache is not None:
                key = (ring.bits, int(a.shape[-1]))
                if key not in cache:
                    cache[key] = limb_split(b, key[1], ring.bits)
                b_limbs = cache[key]
            if LIMB_MATMUL == "on" or _limb_is_faster(a, b, ring.bits, b_limbs):
                out = limb_matmul(a, b, ring.bits, b_limbs=b_limbs)
                return ring._wrap(out.astype(ring.dtype, copy=False))
        return ring._wrap(np.matmul(a, b))
    out = np.matmul(np.asarray(a).astype(object), np.asarray(b).astype(object)) % ring.modulus
    return out.astype(ring.dtype)
