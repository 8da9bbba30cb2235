"""Conformance checks: test another implementation of sharing, fixed point, streams or key derivation against
refimpl's properties, and get the first counterexample back.

Each ``check_*`` function takes the implementation under test as plain callables (write a two-line adapter for
yours), runs a fixed list of known traps (ring boundaries, half-way points, negatives next to an integer, the range
limits, published vectors) and then ``examples`` hypothesis examples per property, stopping at the first property
that fails. It returns a :class:`CheckResult`: truthy when everything held; otherwise ``property`` names what
broke, ``counterexample`` holds the (shrunk) inputs and outputs and ``message`` says it in words.
``result.assert_passed()`` raises a :class:`ConformanceError` (an ``AssertionError``) instead, for test suites.

=============================  ===================================================================================
check                          the implementation is called as
=============================  ===================================================================================
:func:`check_sharing`          ``share_fn(secret, n) -> sharing``, ``reconstruct_fn(sharing) -> ints``; optional
                               ``add(s, t)``, ``sub(s, t)``, ``neg(s)``, ``add_public(s, c)``, ``mul_public(s, c)``,
                               ``shares_of(sharing) -> n arrays``. Secrets and public values are 1-D NumPy arrays of
                               ring elements (dtype ``ring.dtype``, values in ``[0, M)``); results are compared
                               modulo M, so signed representations are fine.
:func:`check_fixed_point`      ``encode_fn(x: float64 array) -> ints``, ``decode_fn(r: ring elements) -> floats``
:func:`check_stream`           ``keystream_fn(key=, nbytes=, nonce=, offset=) -> bytes`` (refimpl's
                               :func:`~refimpl.prg.keystream` signature)
:func:`check_kdf`              ``derive_fn(master, *labels, length=) -> bytes`` (:func:`~refimpl.prg.derive_key`)
:func:`check_sampling`         ``sample_fn(count) -> count ring elements`` (uniform, no modulo bias)
:func:`check_beaver_mul`       ``mul_fn(x_shares, y_shares) -> shares`` (stacked ``(n, k)`` share arrays; see
                               :mod:`refimpl.testing.conformance_mpc`)
:func:`check_division`         ``div_fn(x_shares, d) -> shares`` of ``floor(x / d)`` or one more (truncation)
:func:`check_comparison`       ``ltz_fn(x_shares) -> shares`` of ``[x < 0]``, exact
=============================  ===================================================================================

Call the checks from ordinary tests, not from inside a hypothesis ``@given`` test (they run hypothesis
themselves). Arguments ``seed`` (an int) make a run reproducible; by default each run explores new examples, and
the active hypothesis profile's settings (e.g. ``derandomize``) apply.

Example:
    refimpl passes its own checks, and a decoder that floors negatives (the off-by-one of a widely used peer
    library: it decodes ``k`` as ``k // scale`` plus a signed fractional part) is caught:

    >>> import numpy as np
    >>> from refimpl import FixedPoint, Z2_64, share, reconstruct
    >>> from refimpl.testing.conformance import check_fixed_point, check_sharing
    >>> fp = FixedPoint()                                    # base 2, 16 fractional bits, Z_2^64
    >>> check_fixed_point(fp.encode, fp.decode, examples=20).passed
    True
    >>> check_sharing(share, reconstruct, ring=Z2_64, n=3, examples=10,
    ...               add=lambda s, t: s + t, neg=lambda s: -s).passed
    True
    >>> def floor_decode(r):
    ...     k = Z2_64.lift(r)
    ...     return k // fp.scale + np.sign(k) * (np.abs(k) % fp.scale) / fp.scale
    >>> result = check_fixed_point(fp.encode, floor_decode, examples=20)
    >>> result.passed, result.property
    (False, 'negatives_decode_exactly')
    >>> print(result.message)
    decode(r) returned -2.25 for r = 18446744073709469696 (signed k = -81920, k / scale = -1.25), expected -1.25
    >>> result.counterexample["expected"], result.counterexample["got"]
    (-1.25, -2.25)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

from refimpl.encoding import FixedPoint
from refimpl.prg import CIPHERS, derive_key, keystream
from refimpl.ring import Z2_64, Ring
from refimpl.testing import strategies as rst
from refimpl.testing._check import Checker, CheckResult, ConformanceError, PropertyFailure, dkw_uniformity, to_ints
from refimpl.testing._vectors import load_vectors
from refimpl.testing.conformance_mpc import check_beaver_mul, check_comparison, check_division

__all__ = [
    "CheckResult",
    "ConformanceError",
    "check_beaver_mul",
    "check_comparison",
    "check_division",
    "check_fixed_point",
    "check_kdf",
    "check_sampling",
    "check_sharing",
    "check_stream",
]

def _ring_array(ring: Ring, values: Iterable[int]) -> np.ndarray:
    return np.array([int(v) % ring.modulus for v in values], dtype=object).astype(ring.dtype)


def _party_counts(n: int | Sequence[int]) -> list[int]:
    single = isinstance(n, (int, np.integer)) and not isinstance(n, bool)
    ns: list[Any] = [n] if single else list(n)  # type: ignore[arg-type]
    if not ns or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2 for v in ns):
        raise ValueError(f"n must be a party count >= 2 or a non-empty sequence of them, got n={n!r}")
    return [int(v) for v in ns]


# ------------------------------------------------------------------------------------------------ sharing
def check_sharing(share_fn: Callable[[np.ndarray, int], Any], reconstruct_fn: Callable[[Any], Any], *,
                  ring: Ring = Z2_64, n: int | Sequence[int] = (2, 3, 5),
                  add: Callable[[Any, Any], Any] | None = None, sub: Callable[[Any, Any], Any] | None = None,
                  neg: Callable[[Any], Any] | None = None, add_public: Callable[[Any, np.ndarray], Any] | None = None,
                  mul_public: Callable[[Any, np.ndarray], Any] | None = None,
                  shares_of: Callable[[Any], Sequence[Any]] | None = None, examples: int = 100,
                  seed: int | None = None, uniformity_samples: int = 4096, alpha: float = 1e-9) -> CheckResult:
    """Check an n-party additive sharing over ``ring`` against refimpl's properties.

    Properties, in order (an operation that is not supplied is skipped, and listed in ``result.skipped``):

    * ``reconstruct``: ``reconstruct_fn(share_fn(x, n)) == x (mod M)``;
    * ``party_shares`` (with ``shares_of``): ``n`` shares of ``x``'s size that sum to ``x`` mod M;
    * ``shares_hide_secret`` (with ``shares_of``, ``M >= 2**32``): no party's share equals a secret of two or more
      elements (a uniform share does so with probability ``<= 2**-64``);
    * ``uniform_shares`` (with ``shares_of``): every party's shares of ``uniformity_samples`` zeros, and of as
      many ``M // 2``, are uniform on ``[0, M)`` (Kolmogorov distance below the Dvoretzky-Kiefer-Wolfowitz bound
      at level ``alpha``). Modulo-biased masks fail this in rings where the bias is large: test with a modulus
      such as ``Ring(3 * 2**62)`` or ``Ring.prime(2**61 - 1)`` next to your production ring;
    * ``add``, ``sub``, ``neg``, ``add_public``, ``mul_public``: the operation on sharings reconstructs to the same
      operation mod M on the secrets (``c`` is public: an array of ring elements of the secret's shape).

    Args:
        share_fn: ``share_fn(secret, n)`` with ``secret`` a 1-D array of ring elements (dtype ``ring.dtype``).
        reconstruct_fn: opens a sharing; returns integers, compared modulo M.
        ring: the ring to test in.
        n: a party count or a sequence of them (default 2, 3 and 5).
        add, sub, neg, add_public, mul_public: the homomorphic operations, or None to skip.
        shares_of: the list of the n party shares (arrays) of a sharing, or None to skip the share-level checks.
        examples: hypothesis examples per property (after the fixed boundary examples).
        seed: a seed for reproducible runs (None: the active hypothesis settings decide).
        uniformity_samples, alpha: size and false-alarm probability of the uniformity test.

    Returns:
        A :class:`CheckResult`.
    """
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a refimpl Ring, got {ring!r}")
    ns = _party_counts(n)
    m = ring.modulus
    chk = Checker("check_sharing", examples=examples, seed=seed)
    values = rst.ring_values(ring)
    secrets = st.lists(values, min_size=1, max_size=6).map(lambda vs: _ring_array(ring, vs))
    bounds = _ring_array(ring, rst.boundary_values(ring))
    rotated = np.roll(bounds, 1)
    n_st = st.sampled_from(ns)
    pairs = st.tuples(st.lists(st.tuples(values, values), min_size=1, max_size=6), n_st).map(
        lambda t: (_ring_array(ring, [a for a, _ in t[0]]), _ring_array(ring, [b for _, b in t[0]]), t[1]))

    def expect(prop: str, desc: str, got_raw: Any, want: list[int], ctx: dict[str, Any]) -> None:
        got = to_ints(got_raw, desc, prop, ctx)
        if len(got) != len(want):
            raise PropertyFailure(prop, {**ctx, "expected": want, "got": got},
                                  f"{desc} returned {len(got)} values for a secret of {len(want)} elements")
        for i, (g, w) in enumerate(zip(got, want)):
            if g % m != w:
                raise PropertyFailure(prop, {**ctx, "index": i, "expected": want, "got": [v % m for v in got]},
                                      f"{desc} gave {g % m} at index {i}, expected {w} (mod {m}); "
                                      f"inputs {ctx}")

    def ints(a: np.ndarray) -> list[int]:
        return [int(v) for v in a.ravel()]

    def narrow(value: tuple[Any, ...], failure: PropertyFailure) -> tuple[Any, ...] | None:
        """The failing element alone (arrays cut to index i), to report a one-element counterexample."""
        i = failure.counterexample.get("index")
        if i is None:
            return None
        return tuple(v[i:i + 1] if isinstance(v, np.ndarray) else v for v in value)

    # --- reconstruction
    def reconstruct_body(case: tuple[np.ndarray, int]) -> None:
        x, parties = case
        ctx = {"secret": ints(x), "n": parties}
        expect("reconstruct", f"reconstruct(share(secret, {parties}))", reconstruct_fn(share_fn(x.copy(), parties)),
               ints(x), ctx)

    chk.run("reconstruct", reconstruct_body, fixed=[(bounds, p) for p in ns],
            strategy=st.tuples(secrets, n_st), narrow=narrow)

    # --- the shares themselves
    if shares_of is None:
        for prop in ("party_shares", "shares_hide_secret", "uniform_shares"):
            chk.skip(prop, "no shares_of given")
    else:
        def shares_list(x: np.ndarray, parties: int, prop: str, ctx: dict[str, Any]) -> list[list[int]]:
            parts = list(shares_of(share_fn(x.copy(), parties)))
            if len(parts) != parties:
                raise PropertyFailure(prop, {**ctx, "shares": len(parts)},
                                      f"shares_of(share(secret, {parties})) gave {len(parts)} shares, not {parties}")
            out = [to_ints(p, f"party {i}'s share", prop, ctx) for i, p in enumerate(parts)]
            for i, p in enumerate(out):
                if len(p) != x.size:
                    raise PropertyFailure(prop, {**ctx, "party": i, "share_size": len(p)},
                                          f"party {i}'s share has {len(p)} elements, the secret {x.size}")
            return out

        def party_body(case: tuple[np.ndarray, int]) -> None:
            x, parties = case
            ctx = {"secret": ints(x), "n": parties}
            parts = shares_list(x, parties, "party_shares", ctx)
            total = [sum(col) % m for col in zip(*parts)]
            expect("party_shares", "the sum of the party shares", total, ints(x),
                   {**ctx, "shares": [[v % m for v in p] for p in parts]})

        chk.run("party_shares", party_body, fixed=[(bounds, p) for p in ns], strategy=st.tuples(secrets, n_st),
                narrow=narrow)

        if m < 2**32:
            chk.skip("shares_hide_secret", f"M = {m} < 2**32: a share equals the secret too often by chance")
        else:
            def hide_body(case: tuple[np.ndarray, int]) -> None:
                x, parties = case
                if x.size < 2:
                    return
                ctx = {"secret": ints(x), "n": parties}
                for i, p in enumerate(shares_list(x, parties, "shares_hide_secret", ctx)):
                    if [v % m for v in p] == ints(x):
                        raise PropertyFailure("shares_hide_secret", {**ctx, "party": i, "share": p},
                                              f"party {i}'s share equals the secret {ints(x)}: the sharing does "
                                              "not hide it")

            chk.run("shares_hide_secret", hide_body, fixed=[(bounds, p) for p in ns],
                    strategy=st.tuples(secrets.filter(lambda a: a.size >= 2), n_st))

        def uniform_body(case: tuple[int, int]) -> None:
            value, parties = case
            x = _ring_array(ring, [value] * uniformity_samples)
            ctx = {"secret": f"{uniformity_samples} x {value}", "n": parties}
            for i, p in enumerate(shares_list(x, parties, "uniform_shares", ctx)):
                dist, bound = dkw_uniformity([v % m for v in p], m, alpha)
                if dist > bound:
                    low = sum(1 for v in p if 2 * (v % m) < m) / len(p)
                    raise PropertyFailure(
                        "uniform_shares", {**ctx, "party": i, "distance": dist, "threshold": bound,
                                           "fraction_below_half": low, "first_values": p[:8]},
                        f"party {i}'s shares of {ctx['secret']} among {parties} parties are not uniform on "
                        f"[0, {m}): Kolmogorov distance {dist:.4f} > {bound:.4f} (false-alarm probability "
                        f"{alpha:g}); {low:.3f} of them lie below M/2")

        chk.run("uniform_shares", uniform_body, fixed=[(0, min(ns)), (m // 2, max(ns))])

    # --- homomorphic operations
    def binary(prop: str, op: Callable[[Any, Any], Any] | None, f: Callable[[int, int], int], sym: str,
               public: bool) -> None:
        if op is None:
            chk.skip(prop, f"no {prop} given")
            return

        def body(case: tuple[np.ndarray, np.ndarray, int]) -> None:
            x, y, parties = case
            ctx = {"a": ints(x), "b": ints(y), "n": parties}
            if public:
                out, desc = op(share_fn(x.copy(), parties), y.copy()), f"{prop}(share(a), b)"
            else:
                out = op(share_fn(x.copy(), parties), share_fn(y.copy(), parties))
                desc = f"{prop}(share(a), share(b))"
            want = [f(a, b) % m for a, b in zip(ints(x), ints(y))]
            expect(prop, f"reconstruct({desc}) [a {sym} b]", reconstruct_fn(out), want, ctx)

        chk.run(prop, body, fixed=[(bounds, rotated, p) for p in ns], strategy=pairs, narrow=narrow)

    binary("add", add, lambda a, b: a + b, "+", False)
    binary("sub", sub, lambda a, b: a - b, "-", False)
    if neg is None:
        chk.skip("neg", "no neg given")
    else:
        def neg_body(case: tuple[np.ndarray, int]) -> None:
            x, parties = case
            expect("neg", "reconstruct(neg(share(a))) [-a]", reconstruct_fn(neg(share_fn(x.copy(), parties))),
                   [(-v) % m for v in ints(x)], {"a": ints(x), "n": parties})

        chk.run("neg", neg_body, fixed=[(bounds, p) for p in ns], strategy=st.tuples(secrets, n_st), narrow=narrow)
    binary("add_public", add_public, lambda a, b: a + b, "+", True)
    binary("mul_public", mul_public, lambda a, b: a * b, "*", True)
    return chk.result()


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


def check_fixed_point(encode_fn: Callable[[np.ndarray], Any] | None, decode_fn: Callable[[np.ndarray], Any] | None,
                      *, frac_bits: int = 16, base: int = 2, ring: Ring = Z2_64, examples: int = 100,
                      seed: int | None = None, decode_ulps: int = 0) -> CheckResult:
    """Check a fixed-point encoder and/or decoder against ``FixedPoint(frac_bits, base, ring)``'s properties.

    With ``scale = base**frac_bits``, ``M = ring.modulus`` and ``k`` the signed view of an encoding (``v - M`` when
    ``2 v >= M``), the properties, in order, are:

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
    m, scale, limit = fp.ring.modulus, fp.scale, fp.max_abs_integer
    chk = Checker("check_fixed_point", examples=examples, seed=seed)
    top = _max_encodable(fp)
    floats = st.lists(rst.encodable_floats(fp), min_size=1, max_size=6)
    two_adic = (scale & -scale).bit_length() - 1

    def signed(v: int) -> int:
        v %= m
        return v - m if 2 * v >= m else v

    def encoded(xs: list[float], prop: str) -> list[int]:
        ctx = {"x": xs}
        got = to_ints(encode_fn(np.array(xs, dtype=np.float64)), f"encode({xs})", prop, ctx)  # type: ignore[misc]
        if len(got) != len(xs):
            raise PropertyFailure(prop, {**ctx, "got": got}, f"encode returned {len(got)} values for {len(xs)}")
        return got

    def fits(x: float) -> bool:
        return math.isfinite(x) and abs(round(Fraction(x) * scale)) <= limit

    # --- encoding
    if encode_fn is None:
        chk.skip("encode_error_bound", "no encode_fn given")
        chk.skip("round_half_even", "no encode_fn given")
    else:
        def bound_body(xs: list[float]) -> None:
            for x, r in zip(xs, encoded(xs, "encode_error_bound")):
                k, exact = signed(r), Fraction(x) * scale
                if abs(k - exact) > Fraction(1, 2):
                    raise PropertyFailure("encode_error_bound", {"x": x, "got": r % m, "signed": k,
                                                                 "x_times_scale": str(exact)},
                                          f"encode({x!r}) = {r % m} (signed k = {k}), but x * scale = "
                                          f"{float(exact)!r}: |k - x * scale| > 1/2")

        chk.run("encode_error_bound", bound_body, fixed=[[0.0, 1.0, -1.0, top, -top]], strategy=floats)

        def half_body(xs: list[float]) -> None:
            for x, r in zip(xs, encoded(xs, "round_half_even")):
                k, want = signed(r), round(Fraction(x) * scale)  # Fraction rounds half to even, exactly
                if k != want:
                    raise PropertyFailure("round_half_even", {"x": x, "got": k, "expected": want,
                                                              "x_times_scale": str(Fraction(x) * scale)},
                                          f"encode({x!r}) gave k = {k}, expected round_half_even(x * scale) = "
                                          f"{want} (x * scale = {Fraction(x) * scale} exactly)")

        halves = [math.ldexp(2 * j + 1, -(two_adic + 1)) for j in range(-8, 8)]
        near = [float(Fraction(2 * j + 1, 2 * scale)) for j in range(-8, 8)]
        chk.run("round_half_even", half_body, fixed=[[x for x in halves if fits(x)], [x for x in near if fits(x)]],
                strategy=floats)

    # --- decoding
    def decode_body(prop: str) -> Callable[[list[int]], None]:
        def body(rs: list[int]) -> None:
            arr = _ring_array(fp.ring, rs)
            ctx = {"r": [int(v) for v in arr]}
            raw = decode_fn(arr.copy())  # type: ignore[misc]
            try:
                got = np.asarray(raw, dtype=np.float64).ravel()
            except (TypeError, ValueError) as exc:
                raise PropertyFailure(prop, {**ctx, "got": repr(raw)[:200]},
                                      f"decode returned {type(raw).__name__}, not floats ({exc})") from None
            if got.size != arr.size:
                raise PropertyFailure(prop, {**ctx, "got": got.tolist()},
                                      f"decode returned {got.size} values for {arr.size}")
            for r, g in zip(ctx["r"], got.tolist()):
                k = signed(r)
                want = float(Fraction(k, scale))  # correctly rounded
                if g != want and not (decode_ulps and abs(g - want) <= decode_ulps * np.spacing(abs(want))):
                    raise PropertyFailure(prop, {"r": r, "k": k, "scale": scale, "expected": want, "got": g},
                                          f"decode(r) returned {g!r} for r = {r} (signed k = {k}, k / scale = "
                                          f"{Fraction(k, scale) if want != Fraction(k, scale) else want!r}), "
                                          f"expected {want!r}")
        return body

    if decode_fn is None:
        chk.skip("negatives_decode_exactly", "no decode_fn given")
        chk.skip("decode_exact", "no decode_fn given")
    else:
        nice = [x for x in (-1.25, -0.5, -2.001, -0.999, -0.1, -1 / 3, -7.75, -100.01, -1e-3) if fits(x)]
        grid = [-(q * scale) + d for q in (1, 2, 3, 7, 10, 100, 12345, limit // scale // 2, limit // scale)
                for d in (-2, -1, 1, 2) if q >= 1 and abs(-(q * scale) + d) <= limit]
        biggest_q = max(1, limit // scale)
        neg_near = st.lists(st.tuples(st.integers(1, biggest_q), st.integers(-3, 3)).map(
            lambda t: (-(t[0] * scale) + t[1]) % m), min_size=1, max_size=6)
        chk.run("negatives_decode_exactly", decode_body("negatives_decode_exactly"),
                fixed=[[round(Fraction(x) * scale) % m for x in nice], [k % m for k in grid]], strategy=neg_near)
        chk.run("decode_exact", decode_body("decode_exact"),
                fixed=[rst.boundary_values(fp.ring)],
                strategy=st.lists(rst.ring_values(fp.ring), min_size=1, max_size=6))

    # --- round trip
    if encode_fn is None or decode_fn is None:
        chk.skip("roundtrip", "needs both encode_fn and decode_fn")
    else:
        def roundtrip_body(xs: list[float]) -> None:
            raw = encode_fn(np.array(xs, dtype=np.float64))
            got = np.asarray(decode_fn(raw), dtype=np.float64).ravel().tolist()
            if len(got) != len(xs):
                raise PropertyFailure("roundtrip", {"x": xs, "got": got}, f"decode(encode(x)) returned {len(got)} "
                                      f"values for {len(xs)}")
            for x, d in zip(xs, got):
                allowed = Fraction(1, 2 * scale) + Fraction(float(np.spacing(abs(d)))) / 2 if math.isfinite(d) else 0
                if not math.isfinite(d) or abs(Fraction(d) - Fraction(x)) > allowed:
                    raise PropertyFailure("roundtrip", {"x": x, "got": d, "bound": float(Fraction(1, 2 * scale))},
                                          f"decode(encode({x!r})) = {d!r}, off by {abs(d - x)!r} > 1/(2*scale) = "
                                          f"{1 / (2 * scale)!r}")

        chk.run("roundtrip", roundtrip_body, fixed=[[0.0, -0.0, 1.5, -1.5, top, -top]], strategy=floats)

    # --- range errors
    if encode_fn is None:
        chk.skip("range_errors", "no encode_fn given")
    else:
        over = float(np.nextafter(top, np.inf))

        def range_body(xs: list[float]) -> None:
            try:
                out = encode_fn(np.array(xs, dtype=np.float64))
            except Exception:  # noqa: BLE001 - any exception is a refusal
                return
            shown: Any
            try:
                shown = [int(v) % m for v in np.asarray(out).ravel()]
                how = f"returned {shown} (signed {[signed(v) for v in shown]})"
            except Exception:  # noqa: BLE001
                shown, how = repr(out)[:120], f"returned {repr(out)[:120]}"
            raise PropertyFailure("range_errors", {"x": xs, "got": shown, "largest_encodable": top},
                                  f"encode({xs}) {how} instead of raising: the representable range is |x| <= "
                                  f"{top!r} (|round(x * {scale})| <= {limit}), so the value must be refused, "
                                  "not wrapped")

        fixed = [[over], [-over], [math.nan], [math.inf], [-math.inf], [1.0, over], [2 * over], [-4 * over]]
        if math.isfinite(over * 2**20):
            fixed.append([over * 2**20])
        chk.run("range_errors", range_body, fixed=fixed)
    return chk.result()


# ------------------------------------------------------------------------------------------------ streams
def _nonce_arg(cipher: str, nonce_hex: str, counter: int) -> bytes:
    nonce = bytes.fromhex(nonce_hex)
    return counter.to_bytes(4, "little") + nonce if cipher == "chacha20" else nonce


def check_stream(keystream_fn: Callable[..., Any], *, cipher: str = "aes128-ctr", examples: int = 100,
                 seed: int | None = None) -> CheckResult:
    """Check a keystream function against the published vectors, refimpl's vectors and refimpl itself.

    ``keystream_fn(key=..., nbytes=..., nonce=..., offset=...)`` returns ``nbytes`` keystream bytes (bytes or a
    uint8 array) starting at byte ``offset`` of the stream. ``nonce`` is, for ``"aes128-ctr"``, the 16-byte
    initial counter block (incremented as a 128-bit big-endian integer, wrapping); for ``"chacha20"``, 16 bytes:
    the 4-byte little-endian initial block counter, then the 12-byte RFC 8439 nonce (the layout of
    ``cryptography``'s ChaCha20). :func:`refimpl.prg.keystream` with ``cipher=`` bound has this signature.

    Properties: ``published`` (NIST SP 800-38A F.5.1, or RFC 8439 2.3.2 and 2.4.2), ``vectors`` (the packaged
    ``streams`` vectors: unaligned offsets, block-crossing reads, counter wrap-around) and ``matches_reference``
    (random keys, nonces, offsets up to 2**36 and lengths, compared with :func:`refimpl.prg.keystream`).

    Returns:
        A :class:`CheckResult`.
    """
    if cipher not in CIPHERS:
        raise ValueError(f"unknown cipher {cipher!r}; choose one of {CIPHERS}")
    chk = Checker("check_stream", examples=examples, seed=seed)
    doc = load_vectors("streams")

    def body(prop: str) -> Callable[[dict[str, Any]], None]:
        def run(case: dict[str, Any]) -> None:
            key, nonce = bytes.fromhex(case["key"]), _nonce_arg(cipher, case["nonce"], case["counter"])
            want = bytes.fromhex(case["keystream"]) if "keystream" in case else keystream(
                key, case["nbytes"], cipher=cipher, nonce=nonce, offset=case["offset"]).tobytes()
            raw = keystream_fn(key=key, nbytes=case["nbytes"], nonce=nonce, offset=case["offset"])
            got = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else \
                np.asarray(raw, dtype=np.uint8).ravel().tobytes()
            if got != want:
                where = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                names = ("source", "key", "nonce", "counter", "offset", "nbytes")
                ce: dict[str, Any] = {k: case[k] for k in names if k in case}
                raise PropertyFailure(prop, {**ce, "nonce_arg": nonce.hex(), "expected": want.hex(),
                                             "got": got.hex(), "first_difference": where},
                                      f"keystream(key={case['key']}, nonce={nonce.hex()}, offset={case['offset']}, "
                                      f"nbytes={case['nbytes']}) differs from the expected bytes at byte {where}"
                                      + (f" ({case['source']})" if "source" in case else "")
                                      + f": got {got[:32].hex()}..., expected {want[:32].hex()}...")
        return run

    chk.run("published", body("published"), fixed=[c for c in doc["published"] if c["cipher"] == cipher])
    chk.run("vectors", body("vectors"), fixed=[c for c in doc["cases"] if c["cipher"] == cipher])
    klen = 16 if cipher == "aes128-ctr" else 32
    if cipher == "aes128-ctr":
        nonces = st.tuples(st.one_of(st.binary(min_size=16, max_size=16), st.sampled_from([bytes(16), b"\xff" * 16])),
                           st.just(0))
    else:
        nonces = st.tuples(st.binary(min_size=12, max_size=12), st.integers(0, 2**31))
    cases = st.builds(
        lambda key, nc, offset, nbytes: {"key": key.hex(), "nonce": nc[0].hex(), "counter": nc[1],
                                         "offset": offset, "nbytes": nbytes},
        st.binary(min_size=klen, max_size=klen), nonces,
        st.one_of(st.integers(0, 300), st.integers(0, 2**36)), st.integers(0, 200))
    chk.run("matches_reference", body("matches_reference"), strategy=cases)
    return chk.result()


# ------------------------------------------------------------------------------------------------ kdf
def _label(entry: dict[str, str]) -> str | int | bytes:
    kind, value = entry["type"], entry["value"]
    return int(value) if kind == "int" else value if kind == "str" else bytes.fromhex(value)


def check_kdf(derive_fn: Callable[..., Any], *, examples: int = 100, seed: int | None = None) -> CheckResult:
    """Check ``derive_fn(master, *labels, length=16|32) -> bytes`` against :func:`refimpl.prg.derive_key`.

    Properties: ``vectors`` (the packaged ``kdf`` vectors) and ``matches_reference`` (random masters and label
    paths of str, int and bytes parts, where ``("ab",)`` and ``("a", "b")`` must give different keys).
    """
    chk = Checker("check_kdf", examples=examples, seed=seed)

    def body(prop: str) -> Callable[[tuple[bytes, list[Any], int]], None]:
        def run(case: tuple[bytes, list[Any], int]) -> None:
            master, labels, length = case
            want = derive_key(master, *labels, length=length)
            got = bytes(derive_fn(master, *labels, length=length))
            if got != want:
                raise PropertyFailure(prop, {"master": master.hex(), "labels": [repr(v) for v in labels],
                                             "length": length, "expected": want.hex(), "got": got.hex()},
                                      f"derive({master.hex()}, {', '.join(map(repr, labels))}, length={length}) "
                                      f"= {got.hex()}, expected {want.hex()}")
        return run

    fixed = [(bytes.fromhex(c["master"]), [_label(e) for e in c["labels"]], c["length"])
             for c in load_vectors("kdf")["cases"]]
    chk.run("vectors", body("vectors"), fixed=fixed)
    labels = st.lists(st.one_of(st.text(max_size=8), st.integers(-(2**70), 2**70), st.binary(max_size=8)),
                      max_size=4)
    chk.run("matches_reference", body("matches_reference"),
            strategy=st.tuples(rst.keys(), labels, st.sampled_from([16, 32])))
    return chk.result()


# ------------------------------------------------------------------------------------------------ sampling
def check_sampling(sample_fn: Callable[[int], Any], *, ring: Ring, samples: int = 4096,
                   alpha: float = 1e-9) -> CheckResult:
    """Check that ``sample_fn(count)`` draws ``count`` uniform elements of ``ring`` (no modulo bias).

    Properties: ``in_range`` (``count`` integers in ``[0, M)``) and ``uniform`` (Kolmogorov distance from the
    uniform distribution below the Dvoretzky-Kiefer-Wolfowitz bound at level ``alpha``, over ``samples`` draws).
    Reducing 64-bit words modulo M is caught where the bias is large: choose a modulus with a large
    ``2**64 mod M``, e.g. ``Ring(3 * 2**62)`` (values below ``2**62`` twice as likely) or ``Ring(2**63 + 1)``.
    A bias below about ``sqrt(ln(2/alpha) / (2 samples))`` in the CDF goes undetected.
    """
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a refimpl Ring, got {ring!r}")
    m = ring.modulus
    chk = Checker("check_sampling", examples=0, seed=None)
    drawn: list[int] = []

    def in_range(count: int) -> None:
        got = to_ints(sample_fn(count), f"sample({count})", "in_range", {"count": count})
        bad = [v for v in got if not 0 <= v < m]
        if len(got) != count or bad:
            raise PropertyFailure("in_range", {"count": count, "size": len(got), "out_of_range": bad[:8]},
                                  f"sample({count}) gave {len(got)} values" + (f", {bad[0]} not in [0, {m})"
                                                                               if bad else ""))
        drawn.extend(got)

    def uniform(_: Any) -> None:
        dist, bound = dkw_uniformity(drawn, m, alpha)
        if dist > bound:
            low = sum(1 for v in drawn if 2 * v < m) / len(drawn)
            raise PropertyFailure("uniform", {"samples": len(drawn), "distance": dist, "threshold": bound,
                                              "fraction_below_half": low, "first_values": drawn[:8]},
                                  f"{len(drawn)} samples are not uniform on [0, {m}): Kolmogorov distance "
                                  f"{dist:.4f} > {bound:.4f} (false-alarm probability {alpha:g}); {low:.3f} of "
                                  "them lie below M/2")

    chk.run("in_range", in_range, fixed=[samples])
    chk.run("uniform", uniform, fixed=[None])
    return chk.result()
