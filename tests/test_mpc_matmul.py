"""Exact Z_2^64 / Z_2^32 matmul with float64 BLAS on split limbs: bit-identical to the integer matmul."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64
from refimpl.mpc import limb as limb_mod
from refimpl.mpc.limb import limb_matmul, limb_matmul_pays, ring_matmul


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
    # a fixed operand's kept digits make the limb path worth timing from smaller outputs
    assert limb_matmul_pays((10, 784), (784, 128), fixed=True) and not limb_matmul_pays((10, 784), (784, 128))
    old = limb_mod.LIMB_MATMUL
    try:
        outs = []
        for mode in ("on", "off", "auto"):
            limb_mod.LIMB_MATMUL = mode
            outs.append(ring_matmul(Z2_64, x, y))
        assert all((o == outs[0]).all() for o in outs)
        a32 = rng.integers(0, 2**32, (130, 300), dtype=np.uint32)
        b32 = rng.integers(0, 2**32, (300, 130), dtype=np.uint32)
        limb_mod.LIMB_MATMUL = "on"
        assert (ring_matmul(Z2_32, a32, b32) == np.matmul(a32, b32)).all()
    finally:
        limb_mod.LIMB_MATMUL = old


@pytest.mark.parametrize("k", [64, 2048])
def test_limb_width_keeps_products_exact(k):
    """The digit width leaves every partial sum below 2**53 for the inner size."""
    w = min(26, (55 - int(k).bit_length()) // 2)
    assert k * 2 ** (2 * w - 2) < 2**53


@settings(max_examples=20, deadline=None)
@given(k=st.sampled_from([1, 7, 64, 784, 2048]), seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([32, 64]),
       extreme=st.sampled_from(["random", "top", "half"]))
@example(k=784, seed=0, bits=64, extreme="half")
def test_split_digits_are_balanced_and_reusable(k, seed, bits, extreme):
    """Digits of the fixed operand stay in [-2**(w-1), 2**(w-1)] (the exactness bound), sum back to the value
    mod 2**bits, and a product with reused digits (``b_limbs``, a ``ring_matmul`` cache) is bit-identical."""
    from refimpl.mpc.limb import limb_split

    dtype = np.uint64 if bits == 64 else np.uint32
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 2**bits, (k, 3), dtype=dtype)
    if extreme == "top":
        b[:] = 2**bits - 1
    elif extreme == "half":  # half-way points of every digit: 2**(w-1) at each position
        b[:] = sum(2 ** (22 * i + 21) for i in range(3)) % 2**bits
    digits = limb_split(b, k, bits)
    w = min(26, (55 - int(k).bit_length()) // 2)
    assert all(np.abs(d).max() <= 2 ** (w - 1) for d in digits)
    total = sum(d.astype(np.int64).astype(object) * 2 ** (w * i) for i, d in enumerate(digits))
    assert (np.asarray(total % 2**bits, dtype=np.uint64) == b.astype(np.uint64)).all()
    a = rng.integers(0, 2**bits, (5, k), dtype=dtype)
    assert (limb_matmul(a, b, bits, b_limbs=digits).astype(dtype) == np.matmul(a, b)).all()

def test_ring_matmul_cache_keeps_digits_of_the_fixed_operand():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**64, (2, 130, 200), dtype=np.uint64)
    b = rng.integers(0, 2**64, (200, 130), dtype=np.uint64)
    cache: dict = {}
    old = limb_mod.LIMB_MATMUL
    try:
        limb_mod.LIMB_MATMUL = "on"
        for _ in range(2):
            assert (ring_matmul(Z2_64, a, b, cache=cache) == np.matmul(a, b)).all()
            assert list(cache) == [(64, 200)]
    finally:
        limb_mod.LIMB_MATMUL = old
