"""Conformance of a fixed-point encoder/decoder (:func:`check_fixed_point`): a table of properties.

Re-exported by :mod:`refimpl.testing.conformance`, whose docstring describes the checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

from refimpl.encoding import FixedPoint
from refimpl.ring import Z2_64, Ring
from refimpl.testing import strategies as rst
from refimpl.testing._check import Checker, CheckResult, PropertyFailure, to_ints
from refimpl.testing.conformance_sharing import ring_array

__all__ = ["FIXED_POINT_PROPERTIES", "check_fixed_point"]


# ------------------------------------------------------------------------------------------------ fixed point
def _max_encodable(fp: FixedPoint) -> float:
    """The largest float64 that encodes (exact test), by bisection on the ordered bit patterns of floats."""
    limit, scale = fp.max_abs_integer, fp.scale

    def fits(bits: int) -> bool:
        x = float(np.int64(bits).view(np.float64))
        return math.isfinite(x) and abs(round(Fraction(x) * scale)) <= limit

    lo, hi = 0, int(np.float64(np.inf).view(np.int64))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return float(np.int64(lo).view(np.float64))


class _FixedPointCase:
    """What every property of :func:`check_fixed_point` needs (see :data:`FIXED_POINT_PROPERTIES`)."""

    def __init__(self, encode_fn: Any, decode_fn: Any, fp: FixedPoint, chk: Checker, decode_ulps: int) -> None:
        self.encode_fn, self.decode_fn, self.fp, self.chk, self.decode_ulps = encode_fn, decode_fn, fp, chk, decode_ulps
        self.m, self.scale, self.limit = fp.ring.modulus, fp.scale, fp.max_abs_integer
        self.top = _max_encodable(fp)
        self.floats = st.lists(rst.encodable_floats(fp), min_size=1, max_size=6)
        self.two_adic = (self.scale & -self.scale).bit_length() - 1

    def signed(self, v: int) -> int:
        v %= self.m
        return v - self.m if 2 * v >= self.m else v

    def encoded(self, xs: list[float], prop: str) -> list[int]:
        ctx = {"x": xs}
        got = to_ints(self.encode_fn(np.array(xs, dtype=np.float64)), f"encode({xs})", prop, ctx)
        if len(got) != len(xs):
            raise PropertyFailure(prop, {**ctx, "got": got}, f"encode returned {len(got)} values for {len(xs)}")
        return got

    def fits(self, x: float) -> bool:
        return math.isfinite(x) and abs(round(Fraction(x) * self.scale)) <= self.limit

    def decode_body(self, prop: str) -> Callable[[list[int]], None]:
        scale, decode_ulps = self.scale, self.decode_ulps

        def body(rs: list[int]) -> None:
            arr = ring_array(self.fp.ring, rs)
            ctx = {"r": [int(v) for v in arr]}
            raw = self.decode_fn(arr.copy())
            try:
                got = np.asarray(raw, dtype=np.float64).ravel()
            except (TypeError, ValueError) as exc:
                raise PropertyFailure(prop, {**ctx, "got": repr(raw)[:200]},
                                      f"decode returned {type(raw).__name__}, not floats ({exc})") from None
            if got.size != arr.size:
                raise PropertyFailure(prop, {**ctx, "got": got.tolist()},
                                      f"decode returned {got.size} values for {arr.size}")
            for r, g in zip(ctx["r"], got.tolist()):
                k = self.signed(r)
                want = float(Fraction(k, scale))  # correctly rounded
                if g != want and not (decode_ulps and abs(g - want) <= decode_ulps * np.spacing(abs(want))):
                    raise PropertyFailure(prop, {"r": r, "k": k, "scale": scale, "expected": want, "got": g},
                                          f"decode(r) returned {g!r} for r = {r} (signed k = {k}, k / scale = "
                                          f"{Fraction(k, scale) if want != Fraction(k, scale) else want!r}), "
                                          f"expected {want!r}")
        return body


def _fp_error_bound(c: _FixedPointCase) -> None:
    def body(xs: list[float]) -> None:
        for x, r in zip(xs, c.encoded(xs, "encode_error_bound")):
            k, exact = c.signed(r), Fraction(x) * c.scale
            if abs(k - exact) > Fraction(1, 2):
                raise PropertyFailure("encode_error_bound", {"x": x, "got": r % c.m, "signed": k,
                                                             "x_times_scale": str(exact)},
                                      f"encode({x!r}) = {r % c.m} (signed k = {k}), but x * scale = "
                                      f"{float(exact)!r}: |k - x * scale| > 1/2")

    c.chk.run("encode_error_bound", body, fixed=[[0.0, 1.0, -1.0, c.top, -c.top]], strategy=c.floats)


def _fp_half_even(c: _FixedPointCase) -> None:
    def body(xs: list[float]) -> None:
        for x, r in zip(xs, c.encoded(xs, "round_half_even")):
            k, want = c.signed(r), round(Fraction(x) * c.scale)  # Fraction rounds half to even, exactly
            if k != want:
                raise PropertyFailure("round_half_even", {"x": x, "got": k, "expected": want,
                                                          "x_times_scale": str(Fraction(x) * c.scale)},
                                      f"encode({x!r}) gave k = {k}, expected round_half_even(x * scale) = "
                                      f"{want} (x * scale = {Fraction(x) * c.scale} exactly)")

    halves = [math.ldexp(2 * j + 1, -(c.two_adic + 1)) for j in range(-8, 8)]
    near = [float(Fraction(2 * j + 1, 2 * c.scale)) for j in range(-8, 8)]
    c.chk.run("round_half_even", body, fixed=[[x for x in halves if c.fits(x)], [x for x in near if c.fits(x)]],
              strategy=c.floats)


def _fp_negatives(c: _FixedPointCase) -> None:
    scale, limit, m = c.scale, c.limit, c.m
    nice = [x for x in (-1.25, -0.5, -2.001, -0.999, -0.1, -1 / 3, -7.75, -100.01, -1e-3) if c.fits(x)]
    grid = [-(q * scale) + d for q in (1, 2, 3, 7, 10, 100, 12345, limit // scale // 2, limit // scale)
            for d in (-2, -1, 1, 2) if q >= 1 and abs(-(q * scale) + d) <= limit]
    biggest_q = max(1, limit // scale)
    neg_near = st.lists(st.tuples(st.integers(1, biggest_q), st.integers(-3, 3)).map(
        lambda t: (-(t[0] * scale) + t[1]) % m), min_size=1, max_size=6)
    c.chk.run("negatives_decode_exactly", c.decode_body("negatives_decode_exactly"),
              fixed=[[round(Fraction(x) * scale) % m for x in nice], [k % m for k in grid]], strategy=neg_near)


def _fp_decode_exact(c: _FixedPointCase) -> None:
    c.chk.run("decode_exact", c.decode_body("decode_exact"), fixed=[rst.boundary_values(c.fp.ring)],
              strategy=st.lists(rst.ring_values(c.fp.ring), min_size=1, max_size=6))


def _fp_roundtrip(c: _FixedPointCase) -> None:
    scale = c.scale

    def body(xs: list[float]) -> None:
        raw = c.encode_fn(np.array(xs, dtype=np.float64))
        got = np.asarray(c.decode_fn(raw), dtype=np.float64).ravel().tolist()
        if len(got) != len(xs):
            raise PropertyFailure("roundtrip", {"x": xs, "got": got}, f"decode(encode(x)) returned {len(got)} "
                                  f"values for {len(xs)}")
        for x, d in zip(xs, got):
            allowed = Fraction(1, 2 * scale) + Fraction(float(np.spacing(abs(d)))) / 2 if math.isfinite(d) else 0
            if not math.isfinite(d) or abs(Fraction(d) - Fraction(x)) > allowed:
                raise PropertyFailure("roundtrip", {"x": x, "got": d, "bound": float(Fraction(1, 2 * scale))},
                                      f"decode(encode({x!r})) = {d!r}, off by {abs(d - x)!r} > 1/(2*scale) = "
                                      f"{1 / (2 * scale)!r}")

    c.chk.run("roundtrip", body, fixed=[[0.0, -0.0, 1.5, -1.5, c.top, -c.top]], strategy=c.floats)


def _fp_range_errors(c: _FixedPointCase) -> None:
    over, top, m = float(np.nextafter(c.top, np.inf)), c.top, c.m

    def body(xs: list[float]) -> None:
        try:
            out = c.encode_fn(np.array(xs, dtype=np.float64))
        except Exception:  # noqa: BLE001 - any exception is a refusal
            return
        shown: Any
        try:
            shown = [int(v) % m for v in np.asarray(out).ravel()]
            how = f"returned {shown} (signed {[c.signed(v) for v in shown]})"
        except Exception:  # noqa: BLE001
            shown, how = repr(out)[:120], f"returned {repr(out)[:120]}"
        raise PropertyFailure("range_errors", {"x": xs, "got": shown, "largest_encodable": top},
                              f"encode({xs}) {how} instead of raising: the representable range is |x| <= "
                              f"{top!r} (|round(x * {c.scale})| <= {c.limit}), so the value must be refused, "
                              "not wrapped")

    fixed = [[over], [-over], [math.nan], [math.inf], [-math.inf], [1.0, over], [2 * over], [-4 * over]]
    if math.isfinite(over * 2**20):
        fixed.append([over * 2**20])
    c.chk.run("range_errors", body, fixed=fixed)


#: The properties of :func:`check_fixed_point`, in order: ``(name, callables it needs, runner)``.
FIXED_POINT_PROPERTIES: tuple[tuple[str, tuple[str, ...], Callable[[_FixedPointCase], None]], ...] = (
    ("encode_error_bound", ("encode_fn",), _fp_error_bound),
    ("round_half_even", ("encode_fn",), _fp_half_even),
    ("negatives_decode_exactly", ("decode_fn",), _fp_negatives),
    ("decode_exact", ("decode_fn",), _fp_decode_exact),
    ("roundtrip", ("encode_fn", "decode_fn"), _fp_roundtrip),
    ("range_errors", ("encode_fn",), _fp_range_errors),
)


def check_fixed_point(encode_fn: Callable[[np.ndarray], Any] | None, decode_fn: Callable[[np.ndarray], Any] | None,
                      *, frac_bits: int = 16, base: int = 2, ring: Ring = Z2_64, examples: int = 100,
                      seed: int | None = None, decode_ulps: int = 0) -> CheckResult:
    """Check a fixed-point encoder and/or decoder against ``FixedPoint(frac_bits, base, ring)``'s properties.

    With ``scale = base**frac_bits``, ``M = ring.modulus`` and ``k`` the signed view of an encoding (``v - M`` when
    ``2 v >= M``), the properties, in order (:data:`FIXED_POINT_PROPERTIES`), are:

    * ``encode_error_bound``: ``|k - x * scale| <= 1/2`` exactly, for every encodable float ``x``;
    * ``round_half_even``: ``k == round_half_even(x * scale)`` of the exact product: exact half-way floats
      (``0.0625`` for base 10, 3 digits), floats next to half-way points, then arbitrary encodable floats;
    * ``negatives_decode_exactly``: decoding negative ``k`` next to multiples of ``scale`` gives ``k / scale``
      (a decoder that floors negatives is off by one here);
    * ``decode_exact``: ``decode(r)`` is ``k / scale`` correctly rounded to float64 (within ``decode_ulps`` ulps),
      for every ring element ``r`` (``M/2`` included);
    * ``roundtrip``: ``|decode(encode(x)) - x| <= 1 / (2 scale)`` plus half an ulp of the result;
    * ``range_errors``: ``encode`` raises (any exception) for NaN, infinities and the floats just beyond the
      largest encodable magnitude (alone or next to valid values), instead of wrapping around.

    Args:
        encode_fn: ``encode_fn(x)`` for a 1-D float64 array; returns integers (compared modulo M). None: skip.
        decode_fn: ``decode_fn(r)`` for a 1-D array of ring elements (dtype ``ring.dtype``); returns floats. None:
            skip.
        frac_bits, base, ring: the reference configuration (as :class:`~refimpl.encoding.FixedPoint`).
        examples: hypothesis examples per property (after the fixed examples).
        seed: a seed for reproducible runs.
        decode_ulps: tolerance of the decode checks in units in the last place (0: correctly rounded).

    Returns:
        A :class:`CheckResult`.
    """
    fp = FixedPoint(frac_bits=frac_bits, base=base, ring=ring)
    chk = Checker("check_fixed_point", examples=examples, seed=seed)
    fns = {"encode_fn": encode_fn, "decode_fn": decode_fn}
    case = _FixedPointCase(encode_fn, decode_fn, fp, chk, decode_ulps)
    for prop, needs, run in FIXED_POINT_PROPERTIES:
        missing = [name for name in needs if fns[name] is None]
        if missing:
            chk.skip(prop, f"no {missing[0]} given" if len(needs) == 1 else "needs both encode_fn and decode_fn")
        elif chk.failure is None:
            run(case)
    return chk.result()


