"""Tests of refimpl.encoding.FixedPoint: the exact error bound, round half to even, exact decoding of negatives,
PySyft's defaults, the range checks and bad input."""

from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, FixedPoint, OutOfRangeError, Ring
from refimpl.testing import strategies as rst

Q = 23740629843760239486723
DEFAULT = FixedPoint()
SYFT = FixedPoint(base=10, frac_bits=3)

ENCODINGS = [
    DEFAULT, SYFT, FixedPoint(frac_bits=1), FixedPoint(frac_bits=0), FixedPoint(ring=Z2_32),
    FixedPoint(base=10, frac_bits=3, ring=Z2_32), FixedPoint(base=10, frac_bits=6), FixedPoint(frac_bits=40),
    FixedPoint(base=3, frac_bits=5), FixedPoint(base=10, frac_bits=3, ring=Ring(Q)),
    FixedPoint(frac_bits=16, ring=Ring.prime(2**61 - 1)), FixedPoint(base=10, frac_bits=15, ring=Ring(2**128)),
    FixedPoint(frac_bits=2, ring=Ring(101)),
]


def k_of(fp: FixedPoint, encoded) -> list[int]:
    """The signed integers k behind encodings."""
    return [int(v) for v in np.asarray(fp.ring.lift(encoded)).ravel()]


def exact_k(fp: FixedPoint, x: float) -> int:
    """round_half_even(x * scale), computed exactly (Python's round on a Fraction rounds half to even)."""
    return round(Fraction(x) * fp.scale)


# ------------------------------------------------------------------------------------------------ the bound
@st.composite
def encoding_and_float(draw):
    fp = draw(st.one_of(st.sampled_from(ENCODINGS), rst.fixed_points()))
    return fp, draw(rst.encodable_floats(fp))


@given(encoding_and_float())
@example((SYFT, 0.0625)).via("exact half, base 10")
@example((SYFT, -0.0625)).via("exact negative half, base 10")
@example((SYFT, 2.0**52 + 1)).via("x * scale above 2**53, base 10")
@example((SYFT, -(2.0**52 + 1))).via("x * scale below -2**53, base 10")
@example((DEFAULT, -3.0000001)).via("negative just below an integer")
@example((DEFAULT, float(np.nextafter(2.0**47, 0)))).via("the float below 2**47: k = 2**63 - 2**10, Z2_64 frac 16")
@example((FixedPoint(frac_bits=1), 0.25)).via("half to even, base 2")
@example((FixedPoint(base=10, frac_bits=15, ring=Ring(2**128)), 1e-15)).via("scale 10**15")
def test_error_bound_and_correctly_rounded_decode(args):
    """k = round_half_even(x * scale) exactly; |k / scale - x| <= 1 / (2 scale); decode gives float(k / scale)."""
    fp, x = args
    encoded = fp.encode(x)
    assert np.shape(encoded) == () and np.asarray(encoded).dtype == fp.ring.dtype
    (k,) = k_of(fp, encoded)
    assert k == exact_k(fp, x)
    assert abs(Fraction(k, fp.scale) - Fraction(x)) <= Fraction(1, 2 * fp.scale)
    decoded = fp.decode(encoded)
    assert decoded.dtype == np.float64
    assert float(decoded) == float(Fraction(k, fp.scale))  # Fraction -> float is correctly rounded


@given(st.data())
def test_array_encoding_is_elementwise(data):
    fp = data.draw(st.sampled_from(ENCODINGS))
    xs = data.draw(st.lists(rst.encodable_floats(fp), min_size=0, max_size=12))
    shape = data.draw(st.sampled_from([(len(xs),), (1, len(xs))]))
    arr = np.array(xs, dtype=np.float64).reshape(shape)
    encoded = fp.encode(arr)
    assert encoded.shape == shape and encoded.dtype == fp.ring.dtype
    assert k_of(fp, encoded) == [exact_k(fp, x) for x in xs]
    decoded = fp.decode(encoded)
    assert decoded.shape == shape and decoded.dtype == np.float64
    assert decoded.ravel().tolist() == [float(Fraction(exact_k(fp, x), fp.scale)) for x in xs]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_widths_are_encoded_exactly(dtype):
    xs = np.array([0.1, -2.3, 1 / 3, 100.5], dtype=dtype)
    assert k_of(DEFAULT, DEFAULT.encode(xs)) == [exact_k(DEFAULT, float(x)) for x in xs]


# ------------------------------------------------------------------------------------------------ rounding mode
@pytest.mark.parametrize("fp, xs, ks", [
    (FixedPoint(frac_bits=1), [0.25, 0.75, 1.25, 1.75, -0.25, -0.75, -1.25, -1.75], [0, 2, 2, 4, 0, -2, -2, -4]),
    (FixedPoint(frac_bits=0), [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5], [0, 2, 2, 4, 0, -2, -2]),
    (FixedPoint(frac_bits=16), [2.0**-17, 3 * 2.0**-17, -(2.0**-17), -3 * 2.0**-17, 2.0**-17 + 2.0**-40],
     [0, 2, 0, -2, 1]),
    # base 10: 0.0625 * 1000 = 62.5 exactly (0.0625 = 1/16 is exact in binary), and so on
    (SYFT, [0.0625, 0.1875, 0.3125, 0.4375, -0.0625, -0.1875, 1.0625, 2.5625],
     [62, 188, 312, 438, -62, -188, 1062, 2562]),
    (FixedPoint(base=10, frac_bits=1), [0.25, 0.75, -0.25, -0.75], [2, 8, -2, -8]),
    (FixedPoint(base=10, frac_bits=0), [0.5, 1.5, 2.5, -0.5, -1.5, -2.5], [0, 2, 2, 0, -2, -2]),
])
def test_round_half_to_even_is_pinned(fp, xs, ks):
    assert k_of(fp, fp.encode(xs)) == ks
    assert [exact_k(fp, x) for x in xs] == ks  # the table itself is right


def test_base_10_decides_on_the_exact_product_not_the_float_product():
    """The floats nearest j / 2000 (j odd) lie above or below the decimal half-way point, and the exact product
    decides: 0.0005 is slightly above 1/2000, so it rounds to 1 although fl(0.0005 * 1000) == 0.5 would round to 0.
    Rounding the float product instead is wrong for 0.0005, 0.0025, 0.0055, 0.0075, ... (the test has teeth)."""
    xs = [j / 2000 for j in range(1, 200, 2)]
    xs += [-x for x in xs]
    expected = [round(Fraction(x) * 1000) for x in xs]
    assert k_of(SYFT, SYFT.encode(xs)) == expected
    naive = [int(np.rint(x * 1000)) for x in xs]
    assert sum(a != b for a, b in zip(naive, expected)) > 20
    assert k_of(SYFT, SYFT.encode([0.0005, -0.0005])) == [1, -1] and 0.0005 * 1000 == 0.5


def test_large_base_10_values_are_exact():
    """Beyond 2**53 the float product x * 1000 is inexact; the encoding must still be round(x * 1000) exactly."""
    xs = [2.0**52 + 1, -(2.0**52 + 1), 9.2e15, -9.2e15, 2.0**53 - 1, 123456789012.345]
    assert k_of(SYFT, SYFT.encode(xs)) == [exact_k(SYFT, x) for x in xs]
    assert SYFT.decode(SYFT.encode(xs)).tolist() == [float(Fraction(exact_k(SYFT, x), 1000)) for x in xs]


# ------------------------------------------------------------------------------------------------ negatives
@pytest.mark.parametrize("fp", ENCODINGS, ids=repr)
def test_grid_negatives_decode_exactly(fp):
    """Every grid value k / scale (negatives whose fractional part sits at or next to an integer included) decodes
    to exactly the float it was encoded from. A decoder that floor-divides before lifting is off by one here."""
    limit = min(fp.max_abs_integer, 3 * 10**4)
    ks = np.arange(-limit, 1, dtype=np.int64)
    xs = np.array([float(Fraction(int(k), fp.scale)) for k in ks])
    encoded = fp.encode(xs)
    assert k_of(fp, encoded) == ks.tolist()
    assert fp.decode(encoded).tolist() == xs.tolist()


@given(n=st.integers(0, 10**9), ulps=st.integers(-4, 4), fp=st.sampled_from([DEFAULT, SYFT, FixedPoint(ring=Z2_32)]))
@example(n=3, ulps=-1, fp=DEFAULT)
@example(n=1, ulps=1, fp=SYFT)
@example(n=2, ulps=0, fp=SYFT)
def test_negatives_next_to_an_integer(n, ulps, fp):
    x = -float(n)
    for _ in range(abs(ulps)):
        x = float(np.nextafter(x, math.inf if ulps > 0 else -math.inf))
    if abs(exact_k(fp, x)) > fp.max_abs_integer:
        with pytest.raises(OutOfRangeError):
            fp.encode(x)
        return
    (k,) = k_of(fp, fp.encode(x))
    assert k == exact_k(fp, x)
    assert float(fp.decode(fp.encode(x))) == float(Fraction(k, fp.scale))
    if abs(x - round(x)) < 0.5 / fp.scale:  # x is within half a step of the integer -n: it decodes to exactly -n
        assert float(fp.decode(fp.encode(x))) == -float(n)


@pytest.mark.parametrize("fp", [DEFAULT, SYFT, FixedPoint(base=10, frac_bits=3, ring=Ring(Q))], ids=repr)
def test_decode_of_every_ring_boundary(fp):
    """decode(r) = lift(r) / scale for the boundaries 0, 1, M-1, M/2 (the most negative), M/2 - 1 (the largest)."""
    m = fp.ring.modulus
    elements = [0, 1, m - 1, m // 2, (m + 1) // 2, m // 2 - 1, m - 2]
    decoded = fp.decode(fp.ring.element(elements)).tolist()
    assert decoded == [float(Fraction(v - m if 2 * v >= m else v, fp.scale)) for v in elements]


def test_decode_correctly_rounds_large_k_in_base_10():
    ks = [2**60 + 1, -(2**60) - 1, 2**63 - 1, -(2**63) + 1, 2**53 + 1, 999_999_999_999_999_999]
    decoded = SYFT.decode(SYFT.ring.element(ks)).tolist()
    assert decoded == [float(Fraction(k, 1000)) for k in ks]
    assert float(SYFT.decode(SYFT.ring.element(2**60 + 1))) == float(Fraction(2**60 + 1, 1000))


# ------------------------------------------------------------------------------------------------ defaults and API
def test_defaults_and_pysyft_defaults():
    assert (DEFAULT.frac_bits, DEFAULT.base, DEFAULT.ring, DEFAULT.scale) == (16, 2, Z2_64, 65536)
    assert (SYFT.frac_bits, SYFT.base, SYFT.ring, SYFT.scale) == (3, 10, Z2_64, 1000)
    assert SYFT.resolution == 0.001 and DEFAULT.resolution == 2.0**-16
    assert SYFT.max_abs_integer == 2**63 - 1
    # PySyft's fix_precision(): 0.1 -> 100, -1.5 -> -1500, 3.14159 -> 3142 in a 64-bit ring
    assert k_of(SYFT, SYFT.encode([0.1, -1.5, 3.14159, 1.0, -0.001])) == [100, -1500, 3142, 1000, -1]
    assert SYFT.decode(SYFT.encode([0.1, -1.5, 3.14159])).tolist() == [0.1, -1.5, 3.142]
    assert repr(SYFT) == "FixedPoint(frac_bits=3, base=10, ring=Z2_64)"


def test_fixed_point_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.frac_bits = 3  # type: ignore[misc]
    assert FixedPoint() == DEFAULT and hash(FixedPoint()) == hash(DEFAULT)


def test_scalars_encode_and_decode():
    enc = DEFAULT.encode(1.5)
    assert np.shape(enc) == () and k_of(DEFAULT, enc) == [98304]
    assert float(DEFAULT.decode(enc)) == 1.5
    big = DEFAULT.encode(2.0**40)  # |k| beyond 2**53
    assert k_of(DEFAULT, big) == [2**56] and float(DEFAULT.decode(big)) == 2.0**40
    assert k_of(SYFT, SYFT.encode(-(2.0**52 + 1))) == [-(2**52 + 1) * 1000]


@pytest.mark.parametrize("fp", ENCODINGS, ids=repr)
def test_integers_encode_exactly(fp):
    limit = fp.max_abs_integer // fp.scale
    vals = [0, 1, -1, limit, -limit]
    for arr in (np.array(vals, dtype=object), vals):
        assert k_of(fp, fp.encode(arr)) == [v * fp.scale for v in vals]
    if limit < 2**62:
        assert k_of(fp, fp.encode(np.array(vals, dtype=np.int64))) == [v * fp.scale for v in vals]
    with pytest.raises(OutOfRangeError, match=f"value {limit + 1} does not fit"):
        fp.encode([0, limit + 1])


def test_python_int_lists_stay_exact():
    """NumPy turns [0, 2**63 - 1] into float64 (rounding to 2**63); encode must keep Python ints exact."""
    fp = FixedPoint(frac_bits=0)
    assert k_of(fp, fp.encode([0, 2**63 - 1, -(2**63) + 1])) == [0, 2**63 - 1, -(2**63) + 1]
    big = FixedPoint(base=10, frac_bits=3, ring=Ring(Q))
    v = big.max_abs_integer // 1000
    assert k_of(big, big.encode([0, v, -v])) == [0, v * 1000, -v * 1000]
    with pytest.raises(OutOfRangeError, match=f"value {v + 1} does not fit"):
        big.encode([0, v + 1])


# ------------------------------------------------------------------------------------------------ range and bad input
@pytest.mark.parametrize("fp", ENCODINGS, ids=repr)
def test_range_edges(fp):
    top = rst._largest_encodable(fp)
    assert k_of(fp, fp.encode([top, -top])) == [exact_k(fp, top), -exact_k(fp, top)]
    over = float(np.nextafter(top, math.inf))
    for x in (over, -over):
        with pytest.raises(OutOfRangeError, match=re.escape(f"value {x!r} does not fit {fp!r}")) as info:
            fp.encode(np.array([0.0, x]))
        assert f"[{-fp.max_abs_integer}, {fp.max_abs_integer}]" in str(info.value)


@pytest.mark.parametrize("x", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_named(x):
    with pytest.raises(OutOfRangeError, match=re.escape(f"cannot encode non-finite value {x!r}")):
        DEFAULT.encode([1.0, x])
    with pytest.raises(OutOfRangeError, match="non-finite"):
        SYFT.encode(x)


@pytest.mark.parametrize("x", [1e300, -1e300, np.finfo(np.float64).max, 2.0**47, 1e16])
def test_overflow_never_wraps(x):
    with pytest.raises(OutOfRangeError, match="does not fit"):
        DEFAULT.encode([x])
    with pytest.raises(OutOfRangeError, match="does not fit"):
        FixedPoint(ring=Z2_32).encode(x / 2**20)


def test_z2_32_range_message():
    with pytest.raises(OutOfRangeError, match=re.escape("|x| <= 32767.9999847")):
        FixedPoint(ring=Z2_32).encode(2.0**15)


@pytest.mark.parametrize("x", [[1 + 2j], ["1.5"], [True, False], np.array([True]), [None], "3"])
def test_non_real_input_is_refused(x):
    with pytest.raises(TypeError, match="FixedPoint.encode takes real numbers"):
        DEFAULT.encode(x)


@pytest.mark.parametrize("r, exc, text", [
    (np.array([-1]), OutOfRangeError, "negative value -1"),
    ([2**64], OutOfRangeError, "value 18446744073709551616 is outside"),
    (np.array([0.5]), TypeError, "integer"),
    ([True], TypeError, "integer"),
])
def test_decode_refuses_non_elements(r, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        DEFAULT.decode(r)


@pytest.mark.parametrize("kwargs, exc, text", [
    ({"frac_bits": 1.5}, TypeError, "frac_bits must be an integer, got 1.5"),
    ({"frac_bits": True}, TypeError, "frac_bits must be an integer, got True"),
    ({"base": 10.0}, TypeError, "base must be an integer, got 10.0"),
    ({"base": "2"}, TypeError, "base must be an integer, got '2'"),
    ({"ring": 2**64}, TypeError, "ring must be a Ring, got 18446744073709551616"),
    ({"base": 1}, ValueError, "base must be at least 2, got 1"),
    ({"base": 0}, ValueError, "base must be at least 2, got 0"),
    ({"frac_bits": -1}, ValueError, "frac_bits must be non-negative, got -1"),
    ({"base": 10, "frac_bits": 16}, ValueError, "10**16 = 10000000000000000 exceeds 2**53"),
    ({"frac_bits": 31, "ring": Z2_32}, ValueError, "scale 2147483648 leaves no integer range in Z2_32"),
    ({"frac_bits": 0, "ring": Ring(2)}, ValueError, "scale 1 leaves no integer range"),
    ({"frac_bits": 1100, "ring": Ring(2**1200)}, ValueError, "too large for float64"),
])
def test_invalid_parameters_are_named(kwargs, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        FixedPoint(**kwargs)


def test_largest_valid_scales():
    assert FixedPoint(frac_bits=62).scale == 2**62
    assert FixedPoint(frac_bits=30, ring=Z2_32).scale == 2**30
    assert FixedPoint(base=10, frac_bits=15).scale == 10**15
