"""Tests of refimpl.testing.strategies: argument validation, and that each strategy draws what it promises."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from refimpl import Z2_32, Z2_64, FixedPoint, Ring, Shares, reconstruct
from refimpl.testing import strategies as rst


def draws(strategy, count=60):
    """A few values from a strategy (through @given, so with the active profile's machinery)."""
    out = []

    @settings(max_examples=count, database=None, deadline=None)
    @given(strategy)
    def collect(value):
        out.append(value)

    collect()
    return out


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("call, text", [
    (lambda: rst.rings(include_fields=1), "include_fields must be a bool, got include_fields=1"),
    (lambda: rst.rings(include_big="no"), "include_big must be a bool"),
    (lambda: rst.rings(min_bits=0), "min_bits must be at least 1, got min_bits=0"),
    (lambda: rst.rings(max_bits=2.5), "max_bits must be an integer, got max_bits=2.5"),
    (lambda: rst.rings(min_bits=10, max_bits=5), "no ring has between min_bits=10 and max_bits=5 bits"),
    (lambda: rst.rings(min_bits=70, include_big=False), "at most 64 bits (include_big=False)"),
    (lambda: rst.rings(include_fields=False, include_power_of_two=False, include_composite=False),
     "needs at least one of"),
    (lambda: rst.ring_elements(2**64), "ring must be a refimpl Ring, got ring=18446744073709551616"),
    (lambda: rst.ring_elements(Z2_64, shape=-1), "shape must be a non-negative int"),
    (lambda: rst.ring_elements(Z2_64, shape=(2, "3")), "shape=(2, '3')"),
    (lambda: rst.ring_elements(Z2_64, signed=None), "signed must be a bool"),
    (lambda: rst.ring_values(Z2_64, signed=0), "signed must be a bool"),
    (lambda: rst.boundary_values("Z2_64"), "ring must be a refimpl Ring"),
    (lambda: rst.encodable_floats(Z2_64), "fixed_point must be a refimpl FixedPoint"),
    (lambda: rst.encodable_floats(FixedPoint(), min_value=math.nan), "min_value must be a finite real number"),
    (lambda: rst.encodable_floats(FixedPoint(), max_value="1"), "max_value must be a finite real number"),
    (lambda: rst.encodable_floats(FixedPoint(), min_value=1.0, max_value=0.0), "no encodable float lies in"),
    (lambda: rst.encodable_floats(FixedPoint(ring=Z2_32), min_value=1e6), "no encodable float lies in"),
    (lambda: rst.fixed_points(base=1), "base must be at least 2, got base=1"),
    (lambda: rst.fixed_points(frac_bits=-2), "frac_bits must be at least 0"),
    (lambda: rst.fixed_points(ring=7), "ring must be a refimpl Ring"),
    (lambda: rst.party_counts(min_value=1), "min_value must be at least 2, got min_value=1"),
    (lambda: rst.party_counts(max_value=True), "max_value must be an integer"),
    (lambda: rst.party_counts(min_value=5, max_value=4), "max_value=4 is below min_value=5"),
    (lambda: rst.keys(length=24), "length must be 16, 32 or None, got length=24"),
    (lambda: rst.keys(length=True), "length must be 16, 32 or None"),
    (lambda: rst.sharings(n=1), "n must be at least 2, got n=1"),
    (lambda: rst.sharings(ring="Z2_64"), "ring must be a refimpl Ring"),
    (lambda: rst.sharings(prg="aes"), "prg must be one of"),
    (lambda: rst.sharings(shape=1.5), "shape must be"),
])
def test_bad_arguments_raise_invalid_argument_naming_them(call, text):
    with pytest.raises(InvalidArgument) as info:
        call()
    assert text in str(info.value)


def test_strategies_are_keyword_only():
    with pytest.raises(TypeError):
        rst.rings(True)  # type: ignore[misc]
    with pytest.raises(TypeError):
        rst.ring_elements(Z2_64, (3,))  # type: ignore[misc]
    with pytest.raises(TypeError):
        rst.party_counts(2, 5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        rst.encodable_floats(FixedPoint(), 0.0, 1.0)  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ behaviour
def test_rings_respect_their_filters():
    for ring in draws(rst.rings(include_big=False)):
        assert ring.modulus <= 2**64
    for ring in draws(rst.rings(include_fields=False)):
        assert not ring.is_field
    for ring in draws(rst.rings(include_power_of_two=False, include_composite=False)):
        assert ring.is_field
    for ring in draws(rst.rings(include_fields=False, include_composite=False)):
        assert ring.is_power_of_two
    for ring in draws(rst.rings(min_bits=20, max_bits=40)):
        assert 20 <= ring.bits <= 40


def test_rings_cover_every_kind():
    kinds = set()
    for ring in draws(rst.rings(), count=150):
        m = ring.modulus
        kinds.add("word" if ring in (Z2_32, Z2_64) else "pow2" if ring.is_power_of_two else
                  "field" if ring.is_field else "composite")
        kinds.add("big" if m > 2**64 else "small")
    assert kinds == {"word", "pow2", "field", "composite", "big", "small"}
    assert rst.TUTORIAL_Q in rst.COMPOSITE_MODULI and all(Ring(p).is_field for p in rst.PRIME_MODULI)


@pytest.mark.parametrize("ring", [Z2_64, Z2_32, Ring(7), Ring(2), Ring(rst.TUTORIAL_Q)], ids=str)
def test_ring_elements_are_elements_and_favour_boundaries(ring):
    values = draws(rst.ring_elements(ring, shape=(4,)), count=40)
    bounds = set(rst.boundary_values(ring))
    flat = [int(v) for arr in values for v in arr]
    assert all(arr.dtype == ring.dtype and arr.shape == (4,) for arr in values)
    assert all(0 <= v < ring.modulus for v in flat)
    assert sum(v in bounds for v in flat) >= len(flat) // 5  # random values would almost never hit them
    signed = [int(v) for arr in draws(rst.ring_elements(ring, shape=3, signed=True)) for v in arr]
    assert all(ring.signed_min <= v <= ring.signed_max for v in signed)


def test_boundary_values():
    m = 2**64
    assert rst.boundary_values(Z2_64)[:9] == [0, 1, 2, m - 1, m - 2, m // 2 - 1, m // 2, m // 2 + 1, 2**32 - 1]
    assert rst.boundary_values(Ring(2)) == [0, 1]
    assert rst.boundary_values(Ring(7)) == [0, 1, 2, 6, 5, 3, 4]


def test_shape_argument_forms():
    assert {a.shape for a in draws(rst.ring_elements(Z2_64, shape=3), 10)} == {(3,)}
    assert {a.shape for a in draws(rst.ring_elements(Z2_64, shape=(2, 0)), 10)} == {(2, 0)}
    assert {a.shape for a in draws(rst.ring_elements(Z2_64, shape=st.just((1, 2))), 10)} == {(1, 2)}


@pytest.mark.parametrize("fp", [FixedPoint(), FixedPoint(base=10, frac_bits=3), FixedPoint(ring=Z2_32),
                                FixedPoint(frac_bits=2, ring=Ring(101)), FixedPoint(base=3, frac_bits=4)], ids=repr)
def test_encodable_floats_encode_and_include_halfway_cases(fp):
    xs = draws(rst.encodable_floats(fp), count=200)
    for x in xs:
        fp.encode(x)  # never raises
        assert math.isfinite(x)
    halves = [x for x in xs if (Fraction(x) * fp.scale).denominator == 2]
    assert halves, "no exact half-way value drawn"
    assert any(x < 0 for x in halves)


def test_encodable_floats_bounds():
    for x in draws(rst.encodable_floats(FixedPoint(), min_value=-2.5, max_value=1.0)):
        assert -2.5 <= x <= 1.0


def test_fixed_points_are_valid():
    for fp in draws(rst.fixed_points(), count=100):
        assert isinstance(fp, FixedPoint) and 2 * fp.scale < fp.ring.modulus
    assert draws(rst.fixed_points(ring=Z2_64, base=10, frac_bits=3), 3)[0] == FixedPoint(base=10, frac_bits=3)


def test_party_counts_and_keys():
    ns = draws(rst.party_counts(), count=100)
    assert all(2 <= n <= 16 for n in ns) and 2 in ns and 16 in ns
    assert set(draws(rst.party_counts(min_value=5, max_value=5), 5)) == {5}
    assert {len(k) for k in draws(rst.keys(), 100)} == {16, 32}
    assert {len(k) for k in draws(rst.keys(length=32), 20)} == {32}
    assert set(draws(rst.prgs(), 50)) == {"aes128-ctr", "chacha20"}


def test_sharings_reconstruct_to_their_secret():
    for secret, shares in draws(rst.sharings(ring=Z2_32, n=st.sampled_from([2, 5]), shape=(3,), prg="chacha20")):
        assert isinstance(shares, Shares) and shares.ring == Z2_32 and shares.n in (2, 5)
        assert secret.shape == (3,) and np.array_equal(reconstruct(shares), secret)
