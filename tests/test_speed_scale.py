"""Secure aggregation at the scale target of issue 17: K = 10,000 clients per round in Z_2^64, default settings."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.errors import OutOfRangeError
from refimpl.secagg import AdditiveConfig, Codec, SecAggConfig

K = 10_000
D_2NN = 199_210  # parameters of the 2NN 784-200-200-10


def test_sizing_holds_for_ten_thousand_clients_with_the_defaults():
    codec = Codec(length=D_2NN, max_clients=K)  # default clip 1.0, 16 fractional bits, Z_2^64
    assert K * codec.per_client_bound < 2**63  # the K * 2^b <= M rule, signed
    AdditiveConfig(codec=codec, servers=2)
    SecAggConfig(num_clients=K, threshold=6, codec=codec, degree=10)


def test_fl_secure_aggregates_ten_thousand_clients_exactly():
    pytest.importorskip("jax", reason="fl.secure needs the fl extra (jax)")
    from refimpl.fl.secure import make_secure_aggregator

    rng = np.random.default_rng(0)
    upd = {"w": (rng.standard_normal((K, 8)) * 0.05).astype(np.float32)}
    weights = rng.integers(5, 8, K).astype(np.float64)  # equal-ish partitions of ~6 samples, as in the scale bench
    mean = make_secure_aggregator("additive", servers=2)(upd, weights)["w"]
    exact = (weights[:, None] * upd["w"].astype(np.float64)).sum(0) / weights.sum()
    # default 32 fractional bits: each client's scaled contribution is within 2^-33 of exact, then float32 output
    assert np.abs(np.asarray(mean, np.float64) - exact).max() <= K * 2.0**-33 + 1e-6


def test_too_large_updates_name_what_to_change():
    pytest.importorskip("jax", reason="fl.secure needs the fl extra (jax)")
    from refimpl.fl.secure import make_secure_aggregator

    upd = {"w": np.full((K, 2), 1e6, np.float32)}
    with pytest.raises(OutOfRangeError, match=r"10000 contributions inside Z2_64: clip updates to \|x\| <= .*frac_bits"):
        make_secure_aggregator("additive", servers=2)(upd, np.ones(K))
