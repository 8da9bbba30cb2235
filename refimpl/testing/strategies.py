"""Hypothesis strategies for refimpl's values, for this project's tests and for downstream implementations.

Every strategy is keyword-only (apart from the object it is built on), validates its arguments eagerly and raises
:class:`hypothesis.errors.InvalidArgument` (a ``TypeError``) naming the bad argument and its value. Strategies
favour the values where implementations break: ring boundaries (0, 1, M-1, M//2, (M+1)//2, ...), exact half-way
points of a fixed-point grid, negatives next to an integer, the largest encodable magnitudes.

=====================================  ==========================================================================
strategy                               draws
=====================================  ==========================================================================
:func:`rings`                          :class:`~refimpl.ring.Ring` of every kind (Z_2^32, Z_2^64, Z_2^k, small and
                                       big primes, composites incl. the tutorial's Q, big moduli)
:func:`ring_values`                    one Python ``int`` in ``[0, M)`` (or the signed view)
:func:`ring_elements`                  a NumPy array of ring elements (dtype ``ring.dtype``)
:func:`fixed_points`                   valid :class:`~refimpl.encoding.FixedPoint` configurations
:func:`encodable_floats`               Python floats whose encoding fits a given FixedPoint
:func:`party_counts`                   numbers of parties ``n`` (default 2 .. 16)
:func:`keys`                           16- or 32-byte keys
:func:`prgs`                           stream cipher names (``"aes128-ctr"``, ``"chacha20"``)
:func:`sharings`                       ``(secret, shares)`` pairs with ``reconstruct(shares) == secret``
=====================================  ==========================================================================

Example:
    >>> from hypothesis import given, settings
    >>> from refimpl import reconstruct
    >>> from refimpl.testing import strategies as rst
    >>> @settings(max_examples=20)
    ... @given(rst.sharings())
    ... def test_reconstruction(pair):
    ...     secret, shares = pair
    ...     assert (reconstruct(shares) == secret).all()
    >>> test_reconstruction()
"""

from __future__ import annotations

import functools
import math
import numbers
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from refimpl.encoding import FixedPoint
from refimpl.prg import CIPHERS
from refimpl.ring import Z2_32, Z2_64, Ring
from refimpl.sharing.additive import Shares
from refimpl.sharing.api import share

__all__ = [
    "TUTORIAL_Q",
    "PRIME_MODULI",
    "COMPOSITE_MODULI",
    "rings",
    "ring_values",
    "ring_elements",
    "fixed_points",
    "encodable_floats",
    "party_counts",
    "keys",
    "prgs",
    "sharings",
    "boundary_values",
]

#: The tutorial's 75-bit modulus: a ring, not a field (it is 3 * 7913543281253413162241).
TUTORIAL_Q = 23740629843760239486723

#: Primes that :func:`rings` draws fields from (small, word-sized, Mersenne and 2**255 - 19).
PRIME_MODULI: tuple[int, ...] = (
    2, 3, 5, 7, 11, 13, 251, 257, 65521, 65537, 2**31 - 1, 4294967291,  # 4294967291 = largest prime < 2**32
    2**61 - 1, 2**89 - 1, 2**127 - 1, 2**255 - 19,
)

#: Composite moduli that are not powers of two (including the tutorial's Q and word-boundary cases).
COMPOSITE_MODULI: tuple[int, ...] = (
    4 * 3, 10, 1000, 2**16 + 2, 2**32 - 1, 2**32 + 1, 3 * 2**62, 2**64 - 1, 2**64 + 1, 10**30, TUTORIAL_Q,
    2**128 - 1,
)

_BIG = 2**64  # moduli above this are "big" (exact Python integers)


# ------------------------------------------------------------------------------------------------ validation
def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a bool, got {name}={value!r}")
    return value


def _check_optional_int(name: str, value: Any, *, minimum: int | None = None) -> int | None:
    return None if value is None else _check_int(name, value, minimum=minimum)


def _check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be an integer, got {name}={value!r} of type {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, got {name}={value!r}")
    return int(value)


def check_ring(name: str, value: Any) -> Ring:
    if not isinstance(value, Ring):
        raise InvalidArgument(f"{name} must be a refimpl Ring, got {name}={value!r} of type {type(value).__name__}")
    return value


def _ring_or_strategy(name: str, value: Any, default: st.SearchStrategy[Ring]) -> st.SearchStrategy[Ring]:
    if value is None:
        return default
    if isinstance(value, st.SearchStrategy):
        return value
    return st.just(check_ring(name, value))


def _shape_strategy(shape: Any) -> st.SearchStrategy[tuple[int, ...]]:
    """``shape`` as a strategy: None (small shapes, 0 to 2 dims), an int, a tuple of ints, or a strategy."""
    if shape is None:
        return hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6)
    if isinstance(shape, st.SearchStrategy):
        return shape
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0 for s in shape
    ):
        raise InvalidArgument(
            f"shape must be a non-negative int, a tuple of them, a strategy or None, got shape={shape!r}"
        )
    return st.just(tuple(int(s) for s in shape))


# ------------------------------------------------------------------------------------------------ rings
def rings(*, include_fields: bool = True, include_big: bool = True, include_power_of_two: bool = True,
          include_composite: bool = True, min_bits: int = 1, max_bits: int | None = None) -> st.SearchStrategy[Ring]:
    """Rings of every kind refimpl supports.

    Kinds: ``Z2_32`` and ``Z2_64`` (most often), ``Ring(2**k)``; prime fields from :data:`PRIME_MODULI`;
    composite moduli from :data:`COMPOSITE_MODULI` (the tutorial's Q among them) and random ones. "Big" means a
    modulus above 2**64 (elements are exact Python ints in object arrays).

    Args:
        include_fields: draw prime moduli.
        include_big: draw moduli above 2**64.
        include_power_of_two: draw moduli 2**k (``Z2_32``, ``Z2_64`` included).
        include_composite: draw composite moduli that are not powers of two.
        min_bits, max_bits: keep rings whose ``Ring.bits`` (``(M - 1).bit_length()``) lies in this range.

    Raises:
        InvalidArgument: a bad argument, or arguments that leave no ring to draw.
    """
    for name, value in (("include_fields", include_fields), ("include_big", include_big),
                        ("include_power_of_two", include_power_of_two), ("include_composite", include_composite)):
        _check_bool(name, value)
    min_bits = _check_int("min_bits", min_bits, minimum=1)
    max_bits = _check_optional_int("max_bits", max_bits, minimum=1)
    top = max_bits if max_bits is not None else (256 if include_big else 64)
    if not include_big:
        top = min(top, 64)
    if top < min_bits:
        raise InvalidArgument(f"no ring has between min_bits={min_bits} and max_bits={max_bits} bits"
                              + ("" if include_big else " and at most 64 bits (include_big=False)"))
    return _rings(include_fields, include_big, include_power_of_two, include_composite, min_bits, top)


@functools.lru_cache(maxsize=64)
def _rings(include_fields: bool, include_big: bool, include_power_of_two: bool, include_composite: bool,
           min_bits: int, top: int) -> st.SearchStrategy[Ring]:
    def keep(m: int) -> bool:
        return min_bits <= (m - 1).bit_length() <= top and (include_big or m <= _BIG)

    branches: list[st.SearchStrategy[Ring]] = []
    if include_power_of_two:
        common = [r for r in (Z2_64, Z2_32) if keep(r.modulus)]
        if common:
            branches.append(st.sampled_from(common))
        low = min_bits if include_fields else max(min_bits, 2)  # Z_2 is a field too
        if low <= min(top, 130):
            branches.append(st.integers(min_value=low, max_value=min(top, 130)).map(lambda k: Ring(2**k)))
    if include_fields:
        primes = [p for p in PRIME_MODULI if keep(p)]
        if primes:
            branches.append(st.sampled_from(primes).map(Ring.prime))
    if include_composite:
        composites = [m for m in COMPOSITE_MODULI if keep(m)]
        if composites:
            branches.append(st.sampled_from(composites).map(Ring))
        lo, hi = max(2**(min_bits - 1) + 1, 3), min(2**top, _BIG if not include_big else 2**top)
        if lo <= hi:
            branches.append(
                st.integers(min_value=lo, max_value=hi)
                .filter(lambda m: m & (m - 1) != 0 and keep(m))
                .map(Ring)
                .filter(lambda r: not r.is_field)
            )
    if not branches:
        raise InvalidArgument(
            "rings() needs at least one of include_fields, include_power_of_two, include_composite to be True "
            f"with a modulus in the bit range [{min_bits}, {top}]"
        )
    return st.one_of(branches)


def boundary_values(ring: Ring) -> list[int]:
    """The elements of ``ring`` where arithmetic tends to break, in ``[0, M)``, without repeats.

    ``0, 1, 2, M-1, M-2, M//2 - 1, M//2, M//2 + 1, (M+1)//2``, and for ``M > 2**32`` also ``2**32 - 1, 2**32,
    2**63 - 1, 2**63, 2**64 - 1`` (word boundaries) where they are elements.
    """
    ring = check_ring("ring", ring)
    m = ring.modulus
    cands = [0, 1, 2, m - 1, m - 2, m // 2 - 1, m // 2, m // 2 + 1, (m + 1) // 2]
    cands += [2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64]
    out: list[int] = []
    for v in cands:
        if 0 <= v < m and v not in out:
            out.append(v)
    return out


def ring_values(ring: Ring, *, signed: bool = False) -> st.SearchStrategy[int]:
    """One element of ``ring`` as a Python int, favouring :func:`boundary_values` and their neighbourhood.

    Args:
        ring: the ring.
        signed: draw from the signed view ``[-floor(M/2), ceil(M/2) - 1]`` instead of ``[0, M)``.
    """
    return _ring_values(check_ring("ring", ring), _check_bool("signed", signed))


@functools.lru_cache(maxsize=256)
def _ring_values(ring: Ring, signed: bool) -> st.SearchStrategy[int]:
    # cached: strategies are immutable, and building one per example costs more than drawing from it
    m = ring.modulus
    bounds = boundary_values(ring)
    near = st.tuples(st.sampled_from(bounds), st.integers(-3, 3)).map(lambda t: (t[0] + t[1]) % m)
    values = st.one_of(st.sampled_from(bounds), near, st.integers(min_value=0, max_value=m - 1))
    if signed:
        return values.map(lambda v: v - m if 2 * v >= m else v)
    return values


def ring_elements(ring: Ring, *, shape: Any = None, signed: bool = False) -> st.SearchStrategy[np.ndarray]:
    """Arrays of elements of ``ring`` (see :func:`ring_values`), favouring boundary values.

    Args:
        ring: the ring.
        shape: an int, a tuple of ints, a strategy of shapes, or None (0 to 2 dimensions, sides 0 to 6).
        signed: draw signed-view values: then the dtype is int64 where the signed range fits it, else object.

    Returns:
        A strategy of NumPy arrays of dtype ``ring.dtype`` (or signed, see above) and the given shape.
    """
    ring = check_ring("ring", ring)
    _check_bool("signed", signed)
    shapes = _shape_strategy(shape)
    values = ring_values(ring, signed=signed)
    if signed:
        dtype = np.dtype(np.int64) if ring.modulus <= 2**64 else np.dtype(object)
    else:
        dtype = ring.dtype

    return shapes.flatmap(functools.partial(_arrays_of_shape, values, dtype))


@functools.lru_cache(maxsize=1024)
def _arrays_of_shape(values: st.SearchStrategy[int], dtype: np.dtype,
                     shp: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    size = math.prod(shp)
    return st.lists(values, min_size=size, max_size=size).map(
        lambda vs: np.array(vs, dtype=object).astype(dtype).reshape(shp)
    )


# ------------------------------------------------------------------------------------------------ fixed point
@st.composite
def _fixed_points(draw: Any, ring: st.SearchStrategy[Ring], base: st.SearchStrategy[int],
                  frac_bits: st.SearchStrategy[int] | None) -> FixedPoint:
    r = draw(ring)
    b = draw(base)
    m = r.modulus
    power_of_two = b & (b - 1) == 0
    fmax = 0
    while 2 * b ** (fmax + 1) < m and (power_of_two or b ** (fmax + 1) <= 2**53) and b ** (fmax + 1) <= 2**1000:
        fmax += 1
    f = draw(frac_bits) if frac_bits is not None else draw(
        st.one_of(st.integers(0, fmax), st.just(fmax), st.just(min(fmax, 16 if b == 2 else 3))))
    return FixedPoint(frac_bits=f, base=b, ring=r)


def fixed_points(*, ring: Any = None, base: Any = None, frac_bits: Any = None) -> st.SearchStrategy[FixedPoint]:
    """Valid :class:`~refimpl.encoding.FixedPoint` configurations.

    Args:
        ring: a Ring, a strategy of rings, or None (:func:`rings` with at least 2 bits).
        base: an int >= 2, a strategy, or None (2 and 10 most often, else 2 .. 16).
        frac_bits: an int >= 0, a strategy, or None (any valid value for the drawn ring and base: at most the
            largest ``f`` with ``2 * base**f < M``, and ``base**f <= 2**53`` unless ``base`` is a power of two).
            A fixed ``frac_bits`` that is invalid for the drawn ring raises ``ValueError`` from FixedPoint.

    Example: ``fixed_points(ring=Z2_64, base=10, frac_bits=3)`` is PySyft's default encoding.
    """
    rs = _ring_or_strategy("ring", ring, rings(min_bits=2))
    if base is None:
        bs = st.one_of(st.sampled_from([2, 10]), st.integers(min_value=2, max_value=16))
    elif isinstance(base, st.SearchStrategy):
        bs = base
    else:
        bs = st.just(_check_int("base", base, minimum=2))
    fs: st.SearchStrategy[int] | None
    if frac_bits is None:
        fs = None
    elif isinstance(frac_bits, st.SearchStrategy):
        fs = frac_bits
    else:
        fs = st.just(_check_int("frac_bits", frac_bits, minimum=0))
    return _fixed_points(rs, bs, fs)


def _fits(fp: FixedPoint, x: float) -> bool:
    """Whether ``x`` encodes in ``fp``: ``|round_half_even(x * scale)| <= max_abs_integer``, decided exactly."""
    return math.isfinite(x) and abs(round(Fraction(x) * fp.scale)) <= fp.max_abs_integer


def _largest_encodable(fp: FixedPoint) -> float:
    """The largest float64 that encodes in ``fp`` (by symmetry, its negative is the smallest)."""
    bound = Fraction(2 * fp.max_abs_integer + 1, 2 * fp.scale)
    x = float(bound) if bound < Fraction(np.finfo(np.float64).max) else float(np.finfo(np.float64).max)
    while not _fits(fp, x):
        x = float(np.nextafter(x, 0.0))
    while x < np.finfo(np.float64).max and _fits(fp, float(np.nextafter(x, math.inf))):
        x = float(np.nextafter(x, math.inf))
    return x


def _step_ulps(x: float, steps: int) -> float:
    target = math.inf if steps > 0 else -math.inf
    for _ in range(abs(steps)):
        x = float(np.nextafter(x, target))
    return x


def encodable_floats(fixed_point: FixedPoint, *, min_value: float | None = None,
                     max_value: float | None = None) -> st.SearchStrategy[float]:
    """Python floats ``x`` whose encoding fits ``fixed_point`` (``encode(x)`` does not raise).

    Besides arbitrary floats in range (subnormals and ``-0.0`` included), the strategy favours:

    * exact half-way points ``(k + 1/2) / scale`` of the grid (round-half-to-even territory), e.g.
      ``0.0625`` for ``base=10, frac_bits=3``: the floats ``j / 2**(a + 1)`` with ``j`` odd, where ``2**a`` is the
      power of two in ``scale``;
    * grid points ``k / scale`` and their float neighbours a few ulps away, negative ones as often as positive
      (where a decoder that does not lift exactly is off by one);
    * the largest encodable magnitudes and integers.

    Args:
        fixed_point: the encoding.
        min_value, max_value: finite bounds (inclusive) further restricting the floats.

    Raises:
        InvalidArgument: a bad argument, or bounds that leave no encodable float.
    """
    if not isinstance(fixed_point, FixedPoint):
        raise InvalidArgument(f"fixed_point must be a refimpl FixedPoint, got fixed_point={fixed_point!r}")
    fp = fixed_point
    top = _largest_encodable(fp)
    lo, hi = -top, top
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value)):
            raise InvalidArgument(f"{name} must be a finite real number or None, got {name}={value!r}")
    if min_value is not None:
        lo = max(lo, float(min_value))
    if max_value is not None:
        hi = min(hi, float(max_value))
    if lo > hi:
        raise InvalidArgument(f"no encodable float lies in [min_value={min_value!r}, max_value={max_value!r}] for "
                              f"{fp!r}, whose range is [{-top!r}, {top!r}]")
    scale = fp.scale
    two_adic = (scale & -scale).bit_length() - 1  # a, with scale = 2**a * odd
    limit = fp.max_abs_integer
    grid_k = st.one_of(st.integers(-min(limit, 2**60), min(limit, 2**60)),
                       st.integers(-min(limit, 10**4), min(limit, 10**4)),
                       st.sampled_from([limit, -limit, limit - 1, -limit + 1]))

    def grid_point(t: tuple[int, int]) -> float:
        k, steps = t
        return _step_ulps(float(Fraction(k, scale)), steps)

    def halfway(j: int) -> float:
        return math.ldexp(float(2 * j + 1), -(two_adic + 1))

    def in_range(x: float) -> bool:
        return lo <= x <= hi and _fits(fp, x)

    odd_bound = 2**52
    favoured = st.one_of(
        st.tuples(grid_k, st.integers(-3, 3)).map(grid_point),
        st.integers(-odd_bound, odd_bound - 1).map(halfway),
        st.integers(-(2**8), 2**8).map(halfway),
        st.tuples(st.integers(-(2**20), 2**20), st.integers(-2, 2)).map(
            lambda t: _step_ulps(float(Fraction(2 * t[0] + 1, 2 * scale)), t[1])),
        st.sampled_from([0.0, -0.0, top, -top, 5e-324, -5e-324, 1.0 / scale, -1.0 / scale]),
        st.integers(-(2**53), 2**53).map(float),
    )
    # every float in [-top, top] encodes (rounding is monotone), so the plain range needs no filter
    anywhere = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)

    @st.composite
    def draw_float(draw: Any) -> float:
        x = draw(st.one_of(favoured, anywhere))
        return x if in_range(x) else draw(anywhere)

    return draw_float()


# ------------------------------------------------------------------------------------------------ parties, keys
def party_counts(*, min_value: int = 2, max_value: int = 16) -> st.SearchStrategy[int]:
    """Numbers of parties ``n``, ``min_value <= n <= max_value`` (default 2 to 16), favouring 2, 3 and the max."""
    min_value = _check_int("min_value", min_value, minimum=2)
    max_value = _check_int("max_value", max_value, minimum=2)
    if max_value < min_value:
        raise InvalidArgument(f"max_value={max_value} is below min_value={min_value}")
    common = sorted({v for v in (min_value, 2, 3, max_value) if min_value <= v <= max_value})
    return st.one_of(st.sampled_from(common), st.integers(min_value=min_value, max_value=max_value))


def keys(*, length: int | None = None) -> st.SearchStrategy[bytes]:
    """Keys for :func:`refimpl.share` and :class:`refimpl.Stream`: ``length`` bytes (16 or 32; None: either).

    All-zero and all-one keys are drawn often; otherwise arbitrary bytes.
    """
    if length is not None and (isinstance(length, bool) or length not in (16, 32)):
        raise InvalidArgument(f"length must be 16, 32 or None, got length={length!r}")
    lengths = [16, 32] if length is None else [length]
    fixed = [bytes(n) for n in lengths] + [b"\xff" * n for n in lengths]
    return st.one_of(st.sampled_from(fixed), st.sampled_from(lengths).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)))


def prgs() -> st.SearchStrategy[str]:
    """The stream cipher names ``share`` accepts: ``"aes128-ctr"`` and ``"chacha20"``."""
    return st.sampled_from(CIPHERS)


# ------------------------------------------------------------------------------------------------ sharings
@st.composite
def _sharings(draw: Any, ring: st.SearchStrategy[Ring], n: st.SearchStrategy[int],
              shape: st.SearchStrategy[tuple[int, ...]], prg: st.SearchStrategy[str]) -> tuple[np.ndarray, Shares]:
    r = draw(ring)
    parties = draw(n)
    secret = draw(ring_elements(r, shape=draw(shape)))
    key = draw(keys())
    return secret, share(secret, parties, ring=r, key=key, prg=draw(prg))


def sharings(*, ring: Any = None, n: Any = None, shape: Any = None,
             prg: Any = None) -> st.SearchStrategy[tuple[np.ndarray, Shares]]:
    """Pairs ``(secret, shares)`` where ``shares = share(secret, n, ring=ring, key=key, prg=prg)``.

    ``secret`` is an array of ring elements (dtype ``ring.dtype``, values in ``[0, M)``, boundaries favoured) and
    ``reconstruct(shares) == secret`` holds element for element. The key is drawn by :func:`keys`, so every
    example is reproducible (no OS randomness). Read the ring, n and shape back from ``shares``.

    Args:
        ring: a Ring, a strategy of rings, or None (:func:`rings`).
        n: an int >= 2, a strategy, or None (:func:`party_counts`, 2 to 16).
        shape: an int, a tuple, a strategy of shapes, or None (0 to 2 dimensions, sides 0 to 6).
        prg: a cipher name, a strategy, or None (:func:`prgs`).
    """
    rs = _ring_or_strategy("ring", ring, rings())
    if n is None:
        ns = party_counts()
    elif isinstance(n, st.SearchStrategy):
        ns = n
    else:
        ns = st.just(_check_int("n", n, minimum=2))
    if prg is None:
        ps = prgs()
    elif isinstance(prg, st.SearchStrategy):
        ps = prg
    elif prg in CIPHERS:
        ps = st.just(prg)
    else:
        raise InvalidArgument(f"prg must be one of {CIPHERS}, a strategy or None, got prg={prg!r}")
    return _sharings(rs, ns, _shape_strategy(shape), ps)
