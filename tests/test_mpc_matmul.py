"""Exact Z_2^64 / Z_2^32 matmul with float64 BLAS on split limbs: bit-identical to the integer matmul."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64
from refimpl.mpc import dealer as dealer_mod
from refimpl.mpc.dealer import limb_matmul, limb_matmul_pays, ring_matmul


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 6), k=st.sampled_from([1, 2, 7, 64, 784, 2048, 5000]), p=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([32, 64]), extreme=st.booleans())
@example(m=2, k=2048, p=2, seed=0, bits=64, extreme=True)
def test_limb_matmul_is_bit_identical(m, k, p, seed, bits, extreme):
    dtype = np.uint64 if bits == 64 else np.uint32
    rng = np.random.default_rng(seed)
    if extreme:  # every entry at the top of the ring: the largest digit products and sums
        a = np.full((m, k), 2**bits - 1, dtype=dtype)
        b = np.full((k, p), 2 ** (bits - 1) + 2 ** (bits - 2) - 1, dtype=dtype)
    else:
        a = rng.integers(0, 2**bits, (m, k), dtype=dtype)
        b = rng.integers(0, 2**bits, (k, p), dtype=dtype)
    want = np.matmul(a, b)
    got = limb_matmul(a, b, bits).astype(dtype)
    assert (got == want).all()


def test_batched_and_ring_matmul_paths_agree():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**64, (2, 130, 200), dtype=np.uint64)
    y = rng.integers(0, 2**64, (200, 140), dtype=np.uint64)
    assert (limb_matmul(x, y) == np.matmul(x, y)).all()
    assert limb_matmul_pays(x.shape, y.shape) and not limb_matmul_pays((3, 4), (4, 5))
    old = dealer_mod.LIMB_MATMUL
    try:
        outs = []
        for mode in ("on", "off", "auto"):
            dealer_mod.LIMB_MATMUL = mode
            outs.append(ring_matmul(Z2_64, x, y))
        assert all((o == outs[0]).all() for o in outs)
        a32 = rng.integers(0, 2**32, (130, 300), dtype=np.uint32)
        b32 = rng.integers(0, 2**32, (300, 130), dtype=np.uint32)
        dealer_mod.LIMB_MATMUL = "on"
        assert (ring_matmul(Z2_32, a32, b32) == np.matmul(a32, b32)).all()
    finally:
        dealer_mod.LIMB_MATMUL = old


@pytest.mark.parametrize("k", [64, 2048])
def test_limb_width_keeps_products_exact(k):
    """The digit width leaves every partial sum below 2**53 for the inner size."""
    w = min(26, (55 - int(k).bit_length()) // 2)
    assert k * 2 ** (2 * w - 2) < 2**53
