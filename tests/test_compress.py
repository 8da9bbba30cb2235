"""Tests of stochastic quantization and the random Hadamard rotation (refimpl.fl.compress). Fixed keys make the
statistics deterministic; thresholds are 6 standard errors."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import Z2_32
from refimpl.errors import ConfigurationError, OutOfRangeError
from refimpl.fl.compress import dequantize, dequantize_sum, fwht, hadamard_rotate, packed_nbytes, stochastic_quantize
from refimpl.secagg import AdditiveConfig, Codec, run_additive_round


@pytest.mark.parametrize("bits,value", [(1, 0.3), (2, -0.77), (4, 0.123), (8, 0.999)])
def test_quantization_is_unbiased(bits, value):
    n, clip = 200_000, 1.0
    q = stochastic_quantize(np.full(n, value), bits, clip, key=bytes([bits]) * 16)
    assert q.min() >= 0 and q.max() <= 2**bits - 1
    x = dequantize(q, bits, clip)
    step = 2 * clip / (2**bits - 1)
    assert len(np.unique(x)) <= 2  # only the two neighbouring levels
    assert np.all(np.abs(x - value) < step + 1e-12)
    # each sample has variance <= step^2 / 4: the mean's standard error is <= step / (2 sqrt(n))
    assert abs(x.mean() - value) < 6 * step / (2 * math.sqrt(n))


@given(st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=20), st.integers(1, 16), st.binary(min_size=16,
                                                                                              max_size=16))
def test_quantized_values_are_neighbouring_levels(xs, bits, key):
    x = np.array(xs)
    q = stochastic_quantize(x, bits, 2.0, key=key)
    step = 4.0 / (2**bits - 1)
    assert np.all(np.abs(dequantize(q, bits, 2.0) - x) <= step * (1 + 1e-9))


def test_quantized_updates_aggregate_securely_and_exactly():
    k, d, bits, clip = 5, 64, 6, 0.5
    xs = {c: np.linspace(-clip, clip, d) * (c + 1) / k for c in range(k)}
    qs = {c: stochastic_quantize(xs[c], bits, clip, key=bytes([c]) * 16) for c in range(k)}
    cfg = AdditiveConfig(codec=Codec(length=d, max_clients=k, bits=bits, ring=Z2_32), servers=3)
    res = run_additive_round(cfg, qs)
    est = dequantize_sum(res.total, k, bits, clip)
    assert np.allclose(est, sum(dequantize(q, bits, clip) for q in qs.values()))
    step = 2 * clip / (2**bits - 1)
    assert np.all(np.abs(est - sum(xs.values())) <= k * step)


def test_hadamard_rotation_is_orthogonal_and_spreads_energy():
    key = b"r" * 16
    x = np.zeros(1000)
    x[3] = 1.0
    r = hadamard_rotate(x, key=key)
    assert r.shape == (1024,)
    assert np.allclose(np.abs(r), 1 / 32)  # a spike becomes flat: max |coordinate| drops from 1 to 1/sqrt(n)
    y = np.sin(np.arange(1000.0))
    ry = hadamard_rotate(y, key=key)
    assert math.isclose(np.linalg.norm(ry), np.linalg.norm(y))
    assert np.allclose(hadamard_rotate(ry, key=key, inverse=True)[:1000], y)
    assert np.allclose(hadamard_rotate(x + y, key=key), r + ry)  # linear: sums commute with the rotation
    assert not np.allclose(hadamard_rotate(y, key=b"s" * 16), ry)
    assert np.allclose(fwht(fwht(np.arange(8.0))), np.arange(8.0))
    with pytest.raises(ValueError, match="power of two"):
        hadamard_rotate(np.ones(6), key=key, inverse=True)


def test_errors_and_sizes():
    with pytest.raises(ConfigurationError, match="bits"):
        stochastic_quantize([0.0], 0, 1.0, key=bytes(16))
    with pytest.raises(ConfigurationError, match="positive and finite"):
        stochastic_quantize([0.0], 4, math.inf, key=bytes(16))
    with pytest.raises(OutOfRangeError, match="1.5"):
        stochastic_quantize([1.5], 4, 1.0, key=bytes(16))
    assert packed_nbytes(100_000, 8) == 100_000 and packed_nbytes(3, 3) == 2
