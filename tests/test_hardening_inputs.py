"""Regression tests for the findings of scripts/bad_inputs.py (issue 10): each was a silent result, a hang or an
unbounded allocation; each is now a specific error naming the bad value."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import FixedPoint, PartyCountError, Stream, share
from refimpl.errors import ConfigurationError, OutOfRangeError, ShapeMismatchError
from refimpl.fl import compress, privacy
from refimpl.secagg import Codec, SecAggConfig
from refimpl.sharing import shamir_share

KEY = bytes(range(16))


@given(st.integers(1, 16), st.integers(-5, 2**17))
@example(8, 255).via("the largest level")
@example(8, 256).via("one past it")
def test_dequantize_refuses_levels_that_no_quantizer_makes(bits, level):
    top = 2**bits - 1
    if 0 <= level <= top:
        assert compress.dequantize(np.array([level]), bits, 1.0)[0] == pytest.approx(level * 2 / top - 1)
    else:
        with pytest.raises(OutOfRangeError, match=f"not an integer in \\[0, {top}\\]"):
            compress.dequantize(np.array([level]), bits, 1.0)


def test_dequantize_sum_checks_count_and_range():
    assert compress.dequantize_sum(np.array([255 * 3]), 3, 8, 1.0)[0] == pytest.approx(3.0)
    with pytest.raises(ConfigurationError, match="count must be a positive integer"):
        compress.dequantize_sum(np.array([3]), -1, 8, 1.0)
    with pytest.raises(OutOfRangeError, match=r"not an integer in \[0, 765\]"):
        compress.dequantize_sum(np.array([766]), 3, 8, 1.0)
    with pytest.raises(OutOfRangeError, match="finite integers"):
        compress.dequantize(np.array([np.nan]), 8, 1.0)


def test_rotation_and_noise_refuse_bad_shapes_and_values():
    with pytest.raises(OutOfRangeError, match="NaN or infinity"):
        compress.hadamard_rotate(np.array([np.nan, 1.0]), key=KEY)
    with pytest.raises(ShapeMismatchError):
        compress.hadamard_rotate(np.zeros(0), key=KEY)
    with pytest.raises(ShapeMismatchError, match="power-of-two"):
        compress.fwht(np.zeros(3))
    with pytest.raises(ConfigurationError, match="more than 2147483648"):
        privacy.discrete_gaussian(10**12, 1.0, key=KEY)
    with pytest.raises(ShapeMismatchError, match="non-negative integers"):
        privacy.gaussian_noise((-1,), 1.0, key=KEY)
    assert privacy.gaussian_noise((2, 3), 1.0, key=KEY).shape == (2, 3)
    with pytest.raises(ConfigurationError, match="rounds must be a non-negative integer"):
        privacy.epsilon_after(-1, 1.0, 0.1, 1e-5)


def test_huge_sizes_are_refused_at_once():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="frac_bits=1000000000 leaves no integer range"):
        FixedPoint(frac_bits=10**9)
    with pytest.raises(PartyCountError, match="at most 65536"):
        share([1], 10**7)
    with pytest.raises(PartyCountError, match="at most 65536"):
        shamir_share([1], 10**7, 2)
    with pytest.raises(ValueError, match=r"\[0, 2\*\*40\]"):
        Stream(KEY).read(2**62)
    assert time.perf_counter() - t0 < 5  # refused, not attempted (each used to hang or allocate exabytes)


def test_secagg_plus_degree_must_be_even():
    codec = Codec(length=1, max_clients=8)
    for bad in (3, 1, 0, -2, 2.0):
        with pytest.raises((ConfigurationError, TypeError)):
            SecAggConfig(num_clients=8, threshold=2, codec=codec, degree=bad)
    assert SecAggConfig(num_clients=8, threshold=2, codec=codec, degree=8).graph[1] == frozenset(range(2, 9))
