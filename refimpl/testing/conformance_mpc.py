"""Conformance checks for another implementation's protocols on shares: Beaver multiplication, division
(truncation) by a public integer and comparison, against refimpl's properties. First counterexample out.

The implementation under test is called with stacked shares (``(n, k)`` arrays of ring elements, dtype
``ring.dtype``, made by refimpl's :func:`~refimpl.share`) and returns stacked shares (any integers, compared modulo
M); it brings its own dealer/triples. Fixed examples pin the ring boundaries, the ends of the documented input
ranges and the half-way points; then ``examples`` hypothesis examples follow.

============================  ========================================================================
check                         the implementation is called as
============================  ========================================================================
:func:`check_beaver_mul`      ``mul_fn(x_shares, y_shares) -> shares of x * y mod M``
:func:`check_division`        ``div_fn(x_shares, d) -> shares of floor(x / d) or floor(x / d) + 1``
                              (signed view, ``x`` in :func:`refimpl.mpc.division_range`)
:func:`check_comparison`      ``ltz_fn(x_shares) -> shares of [x < 0]`` (0/1, signed view, exact)
============================  ========================================================================

Example:
    refimpl's protocols pass; a division that rounds to nearest (off by one below ``floor``) is caught:

    >>> from refimpl import Z2_64, Shares
    >>> from refimpl.mpc import Dealer, divide
    >>> d = Dealer(3)
    >>> ok = check_division(lambda s, k: divide(Shares(Z2_64, s), k, d).data, n=3, examples=5)
    >>> ok.passed
    True
    >>> def rounds_down(s, k):   # floor((x - k/2) / k): one below floor for small remainders
    ...     return divide(Shares(Z2_64, s) - k // 2, k, d).data
    >>> bad = check_division(rounds_down, n=3, examples=5)
    >>> bad.passed, bad.property
    (False, 'floor_or_one_more')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from refimpl.mpc.truncation import division_range
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.api import share
from refimpl.testing import strategies as rst
from refimpl.testing._check import Checker, CheckResult, PropertyFailure, to_ints

__all__ = ["check_beaver_mul", "check_comparison", "check_division"]


def _party_counts(n: int | Sequence[int]) -> list[int]:
    ns = [n] if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else list(n)  # type: ignore[arg-type]
    if not ns or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2 for v in ns):
        raise ValueError(f"n must be a party count >= 2 or a non-empty sequence of them, got n={n!r}")
    return [int(v) for v in ns]


def _check_ring(ring: Any) -> Ring:
    if not isinstance(ring, Ring) or not ring.is_power_of_two or ring.dtype == object:
        raise ValueError(f"the MPC checks run over Z_2^l (l <= 64), got {ring!r}")
    return ring


def _shares(ring: Ring, values: Sequence[int], n: int) -> np.ndarray:
    arr = np.array([int(v) % ring.modulus for v in values], dtype=object).astype(ring.dtype)
    return np.array(share(arr, n, ring=ring).data)


def _opened(ring: Ring, raw: Any, n: int, size: int, prop: str, ctx: dict[str, Any]) -> list[int]:
    """The signed values of returned stacked shares."""
    arr = np.asarray(raw)
    if arr.shape[:1] != (n,):
        raise PropertyFailure(prop, {**ctx, "shape": list(arr.shape)},
                              f"returned shares of shape {arr.shape}, expected ({n}, {size}): one row per party")
    rows = [to_ints(arr[i], f"party {i}'s share", prop, ctx) for i in range(n)]
    if any(len(r) != size for r in rows):
        raise PropertyFailure(prop, {**ctx, "shape": list(arr.shape)}, f"returned {len(rows[0])} values for {size}")
    m = ring.modulus
    out = []
    for col in zip(*rows):
        v = sum(col) % m
        out.append(v - m if 2 * v >= m else v)
    return out


def check_beaver_mul(mul_fn: Callable[[np.ndarray, np.ndarray], Any], *, ring: Ring = Z2_64,
                     n: int | Sequence[int] = (2, 3, 5), examples: int = 50, seed: int | None = None) -> CheckResult:
    """Check a multiplication on stacked shares: ``mul_reconstructs`` -- the product opens to ``x * y mod M`` for
    every pair of ring boundary values (0, 1, M/2 - 1, M/2, M - 1, ...), then random pairs, for each ``n``.

    Returns:
        A :class:`~refimpl.testing.CheckResult`.
    """
    ring, ns = _check_ring(ring), _party_counts(n)
    m = ring.modulus
    chk = Checker("check_beaver_mul", examples=examples, seed=seed)
    bounds = rst.boundary_values(ring)
    xs = [a for a in bounds for _ in bounds]
    ys = [b for _ in bounds for b in bounds]
    values = rst.ring_values(ring)

    def body(case: tuple[list[int], list[int], int]) -> None:
        x, y, parties = case
        ctx = {"x": x, "y": y, "n": parties}
        got = _opened(ring, mul_fn(_shares(ring, x, parties), _shares(ring, y, parties)), parties, len(x),
                      "mul_reconstructs", ctx)
        for i, (a, b, g) in enumerate(zip(x, y, got)):
            if (g - a * b) % m:
                raise PropertyFailure("mul_reconstructs", {**ctx, "index": i, "expected": a * b % m, "got": g % m},
                                      f"mul of {a} and {b} among {parties} parties opened to {g % m}, expected "
                                      f"{a * b % m} (mod {m})")

    pairs = st.lists(st.tuples(values, values), min_size=1, max_size=8)
    chk.run("mul_reconstructs", body, fixed=[(xs, ys, p) for p in ns],
            strategy=st.tuples(pairs.map(lambda ps: [a for a, _ in ps]), pairs.map(lambda ps: [b for _, b in ps]),
                               st.sampled_from(ns)).map(lambda t: (t[0][: len(t[1])], t[1][: len(t[0])], t[2])))
    return chk.result()


def check_division(div_fn: Callable[[np.ndarray, int], Any], *, ring: Ring = Z2_64,
                   divisors: Sequence[int] = (2**16, 1000, 7), n: int | Sequence[int] = (2, 3, 5),
                   examples: int = 50, seed: int | None = None, unbiased: bool = True, samples: int = 2000,
                   sigmas: float = 6.0) -> CheckResult:
    """Check a division (truncation) of stacked shares by a public positive integer ``d``.

    Properties: ``floor_or_one_more`` -- for every signed ``x`` in ``division_range(ring, d)`` the result opens to
    ``floor(x / d)`` or one more (pinned: both ends of the range, 0, -1, multiples of ``d`` and their neighbours,
    half-way points ``q d + d // 2``); ``unbiased_rounding`` (with ``unbiased``) -- over ``samples`` divisions of
    one value the ``+1`` happens with frequency ``(x mod d) / d`` within ``sigmas`` standard deviations (a
    deterministic floor or round-to-nearest fails it).

    Returns:
        A :class:`~refimpl.testing.CheckResult`.
    """
    ring, ns = _check_ring(ring), _party_counts(n)
    chk = Checker("check_division", examples=examples, seed=seed)
    ds = [int(d) for d in divisors]

    def body(case: tuple[list[int], int, int]) -> None:
        x, d, parties = case
        ctx = {"x": x, "d": d, "n": parties}
        got = _opened(ring, div_fn(_shares(ring, x, parties), d), parties, len(x), "floor_or_one_more", ctx)
        for i, (v, g) in enumerate(zip(x, got)):
            if g - v // d not in (0, 1):
                raise PropertyFailure("floor_or_one_more", {**ctx, "index": i, "value": v, "expected_floor": v // d,
                                                            "got": g},
                                      f"dividing {v} by {d} among {parties} parties gave {g}; expected floor = "
                                      f"{v // d} or one more")

    fixed = []
    for d in ds:
        lo, hi = division_range(ring, d)
        pins = [lo, lo + 1, hi - 1, 0, -1, 1, d, -d, d - 1, d + 1, -d - 1, d // 2, -(d // 2), 3 * d + d // 2,
                -3 * d - d // 2, (hi // d - 1) * d, (lo // d + 1) * d]
        pins = [v for v in pins if lo <= v < hi]
        fixed += [(pins, d, p) for p in ns]

    @st.composite
    def cases(draw: Any) -> tuple[list[int], int, int]:
        d = draw(st.sampled_from(ds))
        lo, hi = division_range(ring, d)
        return draw(st.lists(st.integers(lo, hi - 1), min_size=1, max_size=8)), d, draw(st.sampled_from(ns))

    if chk.run("floor_or_one_more", body, fixed=fixed, strategy=cases()) and unbiased:
        def bias_body(case: tuple[int, int, int]) -> None:
            v, d, parties = case
            got = _opened(ring, div_fn(_shares(ring, [v] * samples, parties), d), parties, samples,
                          "unbiased_rounding", {"x": v, "d": d, "n": parties})
            p = (v % d) / d
            freq = sum(1 for g in got if g == v // d + 1) / samples
            tol = sigmas * math.sqrt(max(p * (1 - p), 1 / samples) / samples)
            if abs(freq - p) > tol:
                raise PropertyFailure("unbiased_rounding", {"x": v, "d": d, "n": parties, "frequency": freq,
                                                            "expected": p, "tolerance": tol},
                                      f"dividing {v} by {d} rounded up in {freq:.4f} of {samples} runs; unbiased "
                                      f"stochastic rounding does so with probability {p:.4f} (+- {tol:.4f})")

        chk.run("unbiased_rounding", bias_body, fixed=[(d * 5 + r, d, ns[0]) for d in ds if d > 2
                                                       for r in (d // 4, d // 2)][:4])
    elif not unbiased:
        chk.skip("unbiased_rounding", "unbiased=False")
    return chk.result()


def check_comparison(ltz_fn: Callable[[np.ndarray], Any], *, ring: Ring = Z2_64, n: int | Sequence[int] = (2, 3, 5),
                     examples: int = 50, seed: int | None = None) -> CheckResult:
    """Check a comparison with zero on stacked shares: ``exact_sign`` -- ``ltz_fn(shares of x)`` opens to 1 iff the
    signed view of ``x`` is negative, else 0, over the whole ring (pinned: -M/2, -M/2 + 1, -1, 0, 1, M/2 - 1 and
    powers of two with their neighbours).

    Returns:
        A :class:`~refimpl.testing.CheckResult`.
    """
    ring, ns = _check_ring(ring), _party_counts(n)
    chk = Checker("check_comparison", examples=examples, seed=seed)
    half = ring.modulus // 2
    pins = [-half, -half + 1, -1, 0, 1, half - 1]
    pins += [s * (2**k + e) for k in range(0, ring.bits - 1, 7) for e in (-1, 0, 1) for s in (1, -1)]
    pins = [v for v in pins if -half <= v < half]

    def body(case: tuple[list[int], int]) -> None:
        x, parties = case
        ctx = {"x": x, "n": parties}
        got = _opened(ring, ltz_fn(_shares(ring, x, parties)), parties, len(x), "exact_sign", ctx)
        for i, (v, g) in enumerate(zip(x, got)):
            if g != int(v < 0):
                raise PropertyFailure("exact_sign", {**ctx, "index": i, "value": v, "expected": int(v < 0),
                                                     "got": g},
                                      f"[x < 0] for x = {v} among {parties} parties opened to {g}, expected "
                                      f"{int(v < 0)}")

    chk.run("exact_sign", body, fixed=[(pins, p) for p in ns],
            strategy=st.tuples(st.lists(st.integers(-half, half - 1), min_size=1, max_size=8), st.sampled_from(ns)))
    return chk.result()
