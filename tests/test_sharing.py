"""Tests of refimpl.sharing: reconstruction and homomorphism on every ring kind for 2 to 16 parties, determinism by
key, seed-compressed shares, immutability, statistical indistinguishability of single shares, and bad input."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from _stats import chi_square_critical, chi_square_two_sample, chi_square_uniform
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import (
    Z2_32,
    Z2_64,
    CompressedShares,
    KeyFormatError,
    OutOfRangeError,
    PartyCountError,
    Ring,
    RingMismatchError,
    ShapeMismatchError,
    Shares,
    Stream,
    derive_key,
    reconstruct,
    share,
    share_compressed,
    sum_shares,
)
from refimpl.testing import strategies as rst

Q = 23740629843760239486723
RINGS = [Z2_32, Z2_64, Ring(2), Ring(2**8), Ring(2**65), Ring.prime(3), Ring.prime(65537),
         Ring.prime(4294967291), Ring.prime(2**61 - 1), Ring(10), Ring(3 * 2**62), Ring(Q), Ring(2**128 - 1)]
RING_IDS = [repr(r) if len(repr(r)) < 30 else f"Ring({r.bits}bits)" for r in RINGS]
CIPHERS = ["aes128-ctr", "chacha20"]
K0, K1 = bytes(16), bytes([1]) + bytes(15)


def ints(a) -> list[int]:
    """Elements as Python ints, flattened; an array nested inside an object array is an error, not an int."""
    flat = np.asarray(a).ravel()
    assert not any(isinstance(v, np.ndarray) for v in flat), f"nested array in {a!r}"
    return [int(v) for v in flat]


def boundaries(ring: Ring) -> np.ndarray:
    return np.array(rst.boundary_values(ring), dtype=object).astype(ring.dtype)


# ------------------------------------------------------------------------------------------------ reconstruction
@given(rst.sharings())
def test_reconstruction_every_ring_and_2_to_16_parties(pair):
    secret, shares = pair
    assert isinstance(shares, Shares) and 2 <= shares.n <= 16
    assert shares.data.shape == (shares.n, *secret.shape) and shares.data.dtype == shares.ring.dtype
    assert shares.shape == secret.shape and len(shares) == shares.n
    opened = reconstruct(shares)
    assert ints(opened) == ints(secret) and np.shape(opened) == secret.shape
    assert ints(shares.reconstruct()) == ints(secret)
    assert all(0 <= v < shares.ring.modulus for v in ints(shares.data))


@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
@pytest.mark.parametrize("n", [2, 3, 16])
def test_boundaries_reconstruct(ring, n):
    """0, 1, M-1, M/2, (M+1)/2 ... and, through the signed view, -M/2 and -1."""
    secret = boundaries(ring)
    assert ints(reconstruct(share(secret, n, ring=ring, key=K0))) == ints(secret)
    m = ring.modulus
    signed = [-(m // 2), -1, 0, ring.signed_max]
    assert ints(ring.lift(reconstruct(share(signed, n, ring=ring, key=K1)))) == signed


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64])
def test_integer_dtypes_are_accepted(dtype):
    info = np.iinfo(dtype)
    secret = np.array([info.min, 0, info.max], dtype=dtype)
    assert ints(Z2_64.lift(reconstruct(share(secret, 3, key=K0)))) == [
        v if v < 2**63 else v - 2**64 for v in ints(secret)]


def test_scalar_secret():
    for ring in (Z2_64, Z2_32, Ring(Q), Ring(7), Ring(2**65), Ring.prime(2**89 - 1)):
        x = share(5, 3, ring=ring, key=K0)
        assert x.shape == () and x.data.shape == (3,) and int(reconstruct(x)) == 5
        assert ints(x.data)  # no 0-d array nested in an object array


@pytest.mark.parametrize("ring", [Ring(Q), Ring(2**65), Ring.prime(2**89 - 1), Ring(2**64 + 1)], ids=str)
def test_scalar_sharings_over_big_rings_stay_exact(ring):
    m = ring.modulus
    x = share(np.array(m - 1, dtype=object), 3, ring=ring, key=K0)
    y = share(m // 2, 3, ring=ring, key=K1)
    cases = [(x, m - 1), (x + y, m - 1 + m // 2), (x - y, m - 1 - m // 2), (-x, 1), (x * (m - 1), (m - 1) ** 2),
             (x + np.array(5, dtype=object), m + 4), (x - 3, m - 4), (7 - x, 8), (sum_shares([x, y, x]), 2 * m - 2 + m // 2),
             (share_compressed(m - 1, 3, ring=ring, key=K0).expand(), m - 1)]
    for z, expected in cases:
        assert ints(z.data) and ints(reconstruct(z)) == [expected % m]


def test_empty_secret():
    x = share(np.zeros((0, 4), dtype=np.uint64), 3, key=K0)
    assert x.shape == (0, 4) and reconstruct(x).shape == (0, 4)


# ------------------------------------------------------------------------------------------------ homomorphism
@st.composite
def two_sharings(draw):
    ring = draw(rst.rings())
    n = draw(rst.party_counts())
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=5))
    a = draw(rst.ring_elements(ring, shape=shape))
    b = draw(rst.ring_elements(ring, shape=shape))
    prg = draw(rst.prgs())
    k1 = draw(rst.keys())
    k2 = draw(rst.keys().filter(lambda k: k != k1))
    public = draw(rst.ring_elements(ring, shape=shape, signed=draw(st.booleans())))
    special = [v for v in (0, 1, -1, 2, -2, ring.signed_min, ring.modulus - 1) if ring.signed_min <= v < ring.modulus]
    scalar = draw(st.one_of(st.sampled_from(special), st.integers(ring.signed_min, ring.modulus - 1)))
    return ring, n, a, b, k1, k2, prg, public, scalar


def _pinned(ring: Ring, n: int, scalar: int):
    b = boundaries(ring)
    signed = np.array([v - ring.modulus if 2 * v >= ring.modulus else v for v in ints(b)], dtype=object)
    return ring, n, b, b[::-1].copy(), K0, K1, "aes128-ctr", signed, scalar


@given(two_sharings())
@example(_pinned(Z2_64, 2, -1)).via("Z2_64 boundaries, negative scalar")
@example(_pinned(Z2_32, 16, -(2**31))).via("Z2_32 boundaries, 16 parties, scalar -M/2")
@example(_pinned(Ring(Q), 3, -7)).via("tutorial Q")
@example(_pinned(Ring.prime(2**61 - 1), 5, 2**61 - 2)).via("Mersenne 61, scalar M-1")
@example(_pinned(Ring(2**65), 2, 2**64)).via("2**65")
def test_homomorphism_against_python_integers(args):
    ring, n, a, b, k1, k2, prg, public, scalar = args
    m = ring.modulus
    x, y = share(a, n, ring=ring, key=k1, prg=prg), share(b, n, ring=ring, key=k2, prg=prg)
    ia, ib, ip = ints(a), ints(b), ints(public)

    def check(result, expected, what):
        assert isinstance(result, Shares) and result.ring == ring and result.n == n, what
        assert result.shape == np.shape(a) and result.data.dtype == ring.dtype, what
        assert ints(reconstruct(result)) == [v % m for v in expected], what

    check(x + y, [p + q for p, q in zip(ia, ib)], "x + y")
    check(x - y, [p - q for p, q in zip(ia, ib)], "x - y")
    check(-x, [-p for p in ia], "-x")
    check(x + public, [p + c for p, c in zip(ia, ip)], "x + public")
    check(public + x, [p + c for p, c in zip(ia, ip)], "public + x")
    check(x - public, [p - c for p, c in zip(ia, ip)], "x - public")
    check(public - x, [c - p for p, c in zip(ia, ip)], "public - x")
    check(x * scalar, [p * scalar for p in ia], "x * scalar")
    check(scalar * x, [p * scalar for p in ia], "scalar * x")
    check(x * public, [p * c for p, c in zip(ia, ip)], "x * public (elementwise)")
    check(x + scalar, [p + scalar for p in ia], "x + scalar (broadcast)")
    check(x * scalar + y - (-y), [p * scalar + 2 * q for p, q in zip(ia, ib)], "a combination")
    # a public value is added by party 0 alone; the operands are never modified
    assert np.array_equal((x + public).data[1:], x.data[1:])
    assert ints(reconstruct(x)) == ia and ints(reconstruct(y)) == ib


@given(st.data())
def test_sum_shares(data):
    ring = data.draw(rst.rings())
    n = data.draw(rst.party_counts())
    count = data.draw(st.integers(1, 6))
    prg = data.draw(rst.prgs())
    secrets = [data.draw(rst.ring_elements(ring, shape=(3,))) for _ in range(count)]
    sharings = [share(s, n, ring=ring, key=derive_key(K0, "test", i), prg=prg) for i, s in enumerate(secrets)]
    total = sum_shares(sharings)
    assert isinstance(total, Shares) and total.n == n and total.ring == ring and total.shape == (3,)
    assert ints(reconstruct(total)) == [sum(ints(s)[j] for s in secrets) % ring.modulus for j in range(3)]
    assert ints(reconstruct(sum_shares(iter(sharings)))) == ints(reconstruct(total))  # any iterable


def test_sum_shares_of_many_maximal_values_does_not_overflow():
    for ring in (Z2_64, Z2_32, Ring.prime(4294967291)):
        m = ring.modulus
        sharings = [share([m - 1, m // 2], 3, ring=ring, key=derive_key(K0, i)) for i in range(300)]
        assert ints(reconstruct(sum_shares(sharings))) == [300 * (m - 1) % m, 300 * (m // 2) % m]


# ------------------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
@pytest.mark.parametrize("prg", CIPHERS)
def test_same_key_same_shares_bit_for_bit(ring, prg):
    secret = np.resize(boundaries(ring), 40)
    for key in (K0, bytes(range(32))):
        a = share(secret, 4, ring=ring, key=key, prg=prg)
        b = share(secret, 4, ring=ring, key=key, prg=prg)
        assert a.data.dtype == b.data.dtype == ring.dtype
        if ring.dtype == object:
            assert ints(a.data) == ints(b.data)
        else:
            assert a.data.tobytes() == b.data.tobytes()


@pytest.mark.parametrize("ring", [Z2_32, Z2_64, Ring.prime(65537), Ring(Q), Ring(2**65)], ids=str)
@pytest.mark.parametrize("prg", CIPHERS)
def test_different_keys_or_ciphers_give_different_shares(ring, prg):
    secret = np.resize(boundaries(ring), 32)
    base = share(secret, 3, ring=ring, key=K0, prg=prg)
    other_key = share(secret, 3, ring=ring, key=K1, prg=prg)
    other_prg = share(secret, 3, ring=ring, key=K0, prg=[c for c in CIPHERS if c != prg][0])
    fresh1, fresh2 = share(secret, 3, ring=ring, prg=prg), share(secret, 3, ring=ring, prg=prg)
    for a, b in [(base, other_key), (base, other_prg), (fresh1, fresh2)]:
        for party in range(3):  # every party's share changes (32 elements coincide by chance with prob. ~ M**-32)
            assert ints(a[party]) != ints(b[party])
        assert ints(reconstruct(a)) == ints(reconstruct(b)) == ints(secret)


def test_pinned_share_layout():
    """Party i >= 1 holds ring.sample(Stream(derive_key(key, "refimpl/share", i))); party 0 holds the rest."""
    for ring, prg in [(Z2_64, "aes128-ctr"), (Z2_32, "chacha20"), (Ring(Q), "aes128-ctr"), (Ring(10), "chacha20")]:
        secret = np.resize(boundaries(ring), 10)
        x = share(secret, 3, ring=ring, key=K1, prg=prg)
        klen = 16 if prg == "aes128-ctr" else 32
        masks = [ring.sample(Stream(derive_key(K1, "refimpl/share", i, length=klen), cipher=prg), 10)
                 for i in (1, 2)]
        assert ints(x[1]) == ints(masks[0]) and ints(x[2]) == ints(masks[1])
        assert ints(x[0]) == [(s - p - q) % ring.modulus for s, p, q in zip(ints(secret), ints(masks[0]),
                                                                            ints(masks[1]))]


# ------------------------------------------------------------------------------------------------ seed compression
@given(rst.sharings(shape=st.sampled_from([(), (0,), (7,), (2, 3)])), st.data())
def test_compressed_expands_to_the_same_sharing(pair, data):
    secret, drawn = pair
    ring, n = drawn.ring, drawn.n
    key = data.draw(rst.keys())
    prg = data.draw(rst.prgs())
    full = share(secret, n, ring=ring, key=key, prg=prg)
    comp = share_compressed(secret, n, ring=ring, key=key, prg=prg)
    assert isinstance(comp, CompressedShares) and comp.n == n and comp.shape == secret.shape and comp.prg == prg
    expanded = comp.expand()
    assert expanded.data.dtype == full.data.dtype and ints(expanded.data) == ints(full.data)
    assert ints(reconstruct(comp)) == ints(secret)
    for party in range(n):
        assert ints(comp.party_share(party)) == ints(full[party])
    klen = 16 if prg == "aes128-ctr" else 32
    size = int(np.prod(secret.shape, dtype=np.int64))
    assert comp.keys == tuple(derive_key(key, "refimpl/share", i, length=klen) for i in range(1, n))
    assert comp.nbytes == size * ring.element_bytes + (n - 1) * klen
    assert comp.expanded_nbytes == full.nbytes == n * size * ring.element_bytes


def test_compressed_sizes_pinned():
    c = share_compressed(np.arange(1000), 5, key=K0)
    assert (c.nbytes, c.expanded_nbytes) == (8000 + 4 * 16, 40000)
    c = share_compressed(np.arange(1000), 3, ring=Z2_32, key=K0, prg="chacha20")
    assert (c.nbytes, c.expanded_nbytes) == (4000 + 2 * 32, 12000)
    c = share_compressed([1, 2], 2, ring=Ring(Q), key=K0)
    assert (c.nbytes, c.expanded_nbytes) == (2 * 10 + 16, 2 * 2 * 10)


def test_compressed_party_index_and_repr():
    c = share_compressed([123456789], 3, key=K0)
    for bad in (3, -1, 10):
        with pytest.raises(IndexError, match=f"party {bad} out of range"):
            c.party_share(bad)
    assert repr(c) == "CompressedShares(ring=Z2_64, n=3, shape=(1,), prg='aes128-ctr')"
    assert "123456789" not in repr(c)


# ------------------------------------------------------------------------------------------------ immutability, repr
def test_shares_are_immutable():
    x = share([1, 2, 3], 3, key=K0)
    assert not x.data.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        x.data[0, 0] = 5
    with pytest.raises(ValueError, match="read-only"):
        x[1][0] = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.data = np.zeros((3, 3), dtype=np.uint64)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.ring = Z2_32  # type: ignore[misc]
    before = ints(x.data)
    for op in (lambda: x + 1, lambda: x - 1, lambda: -x, lambda: x * 3, lambda: 1 - x, lambda: x + x):
        op()
    assert ints(x.data) == before


def test_shares_do_not_convert_to_arrays_or_booleans():
    x = share([1, 2, 3], 3, key=K0)
    with pytest.raises(TypeError):
        np.add(x, 1)  # ufuncs refuse sharings ...
    assert ints(reconstruct(np.array([1, 1, 1], dtype=np.uint64) + x)) == [2, 3, 4]  # ... operators defer to them
    assert ints(reconstruct(np.uint64(2) * x)) == [2, 4, 6]
    with pytest.raises(TypeError, match="reconstruct"):
        np.asarray(x)
    with pytest.raises(TypeError, match="reconstruct"):
        np.array(x)
    with pytest.raises(TypeError, match="secret"):
        bool(x)
    with pytest.raises(TypeError, match="secret"):
        if x:
            pass


def test_repr_shows_ring_n_shape_never_values():
    secret = np.array([[123456789, 987654321]], dtype=np.uint64)
    x = share(secret, 3, key=K0)
    text = repr(x)
    assert text == "Shares(ring=Z2_64, n=3, shape=(1, 2))" == str(x) == f"{x}"
    for value in ints(x.data) + ints(secret):
        assert str(value) not in text
    assert repr(share([1], 2, ring=Ring(Q), key=K0)) == f"Shares(ring=Ring({Q}), n=2, shape=(1,))"


def test_indexing_iteration_and_length():
    x = share([4, 5], 4, key=K0)
    assert len(x) == 4 and [ints(s) for s in x] == [ints(x[i]) for i in range(4)]
    assert ints(x[-1]) == ints(x[3])
    for bad in (4, -5):
        with pytest.raises(IndexError, match=f"party {bad} out of range for a sharing among 4 parties"):
            x[bad]
    for bad in (1.0, True, slice(0, 2), "0"):
        with pytest.raises(TypeError, match="index a sharing by party number"):
            x[bad]


# ------------------------------------------------------------------------------------------------ statistics
# A single share (any one party's) must not depend on the secret. With FIXED keys the samples below are
# deterministic, so the tests cannot flake; thresholds are chi-square critical values at significance 1e-6
# (tests/_stats.py). Each test also checks that the same statistic catches a plausibly broken sharing.
N_STAT = 4096


def _byte_histogram(share_array: np.ndarray) -> np.ndarray:
    """Joint histogram of (byte position, byte value) of word-ring elements: 8 or 4 positions x 256 values."""
    raw = np.ascontiguousarray(share_array).view(np.uint8).reshape(share_array.size, -1)
    width = raw.shape[1]
    return np.bincount((np.arange(width) * 256 + raw).ravel(), minlength=256 * width)


def _bucket_histogram(ring: Ring, share_array: np.ndarray, bins: int = 64) -> np.ndarray:
    return np.bincount([int(v) * bins // ring.modulus for v in ints(share_array)], minlength=bins)


STAT_CASES = [(Z2_64, 3), (Z2_32, 2), (Ring.prime(2**61 - 1), 3), (Ring(Q), 2)]


@pytest.mark.parametrize("ring, n", STAT_CASES, ids=lambda v: repr(v) if isinstance(v, Ring) else str(v))
def test_a_single_share_of_a_is_indistinguishable_from_one_of_b(ring, n):
    m = ring.modulus
    secret_a = ring.zeros(N_STAT)
    secret_b = ring.element(np.full(N_STAT, m // 2 + 12345, dtype=object))  # a far-away constant
    x_a = share(secret_a, n, ring=ring, key=derive_key(K0, "A"))
    x_b = share(secret_b, n, ring=ring, key=derive_key(K0, "B"))
    hist = _byte_histogram if ring in (Z2_32, Z2_64) else (lambda s: _bucket_histogram(ring, s))
    for party in range(n):
        ha, hb = hist(x_a[party]), hist(x_b[party])
        stat, df = chi_square_two_sample(ha, hb)
        assert stat < chi_square_critical(df), f"party {party}: chi2={stat:.1f}, df={df}"
        for h in (ha, hb):  # and each is uniform
            if ring in (Z2_32, Z2_64):
                width = h.size // 256
                per_position = h.reshape(width, 256)
                assert sum(chi_square_uniform(p) for p in per_position) < chi_square_critical(width * 255)
            else:
                assert chi_square_uniform(h) < chi_square_critical(h.size - 1)


@pytest.mark.parametrize("ring", [Z2_64, Z2_32], ids=str)
def test_the_indistinguishability_statistic_catches_short_masks(ring):
    """Teeth: masks drawn 16 bits wide instead of from the whole ring (a plausible bug) leak the secret's high
    bytes, and the same two-sample test rejects at once."""
    m = ring.modulus
    masks = (Stream(K0).read(2 * N_STAT).view(np.uint16)).astype(ring.dtype)
    leaky_a = ring.sub(ring.zeros(N_STAT), masks)
    leaky_b = ring.sub(ring.element(np.full(N_STAT, m // 2 + 12345, dtype=object)), masks)
    stat, df = chi_square_two_sample(_byte_histogram(leaky_a), _byte_histogram(leaky_b))
    assert stat > 10 * chi_square_critical(df)


def test_the_bucket_statistic_catches_a_biased_share():
    """Teeth for the bucket test: shares uniform on only [0, M/2) are rejected."""
    ring = Ring.prime(2**61 - 1)
    half = Ring(2**60).sample(Stream(K0), N_STAT)  # uniform on [0, 2**60), i.e. about [0, M/2)
    full = ring.sample(Stream(K1), N_STAT)
    stat, df = chi_square_two_sample(_bucket_histogram(ring, half), _bucket_histogram(ring, full))
    assert stat > 10 * chi_square_critical(df)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("secret, text", [
    ([1.5], "encode real numbers first with FixedPoint.encode"),
    (np.array([0.0, 1.0]), "FixedPoint.encode"),
    (np.float32(2.0), "dtype float32"),
    ([True, False], "dtype bool"),
    (np.array([True]), "dtype bool"),
    (True, "dtype bool"),
    ("7", "integer"),
    ([1 + 1j], "integer"),
    ([None], "integer"),
])
def test_non_integer_secrets_are_refused(secret, text):
    with pytest.raises(TypeError, match=re.escape(text)):
        share(secret, 3)
    with pytest.raises(TypeError):
        share_compressed(secret, 3)


@pytest.mark.parametrize("ring, value", [(Z2_64, 2**64), (Z2_64, -(2**63) - 1), (Z2_32, 2**32), (Ring(7), 7),
                                         (Ring(7), -4), (Ring(Q), Q), (Ring(Q), -(Q // 2) - 1)])
def test_out_of_range_secrets_are_named(ring, value):
    with pytest.raises(OutOfRangeError, match=re.escape(f"value {value} is outside {ring!r}'s range")):
        share([0, value], 2, ring=ring)
    with pytest.raises(OutOfRangeError, match=re.escape(f"value {value} is outside")):
        share_compressed([0, value], 2, ring=ring)


@pytest.mark.parametrize("n, exc, text", [
    (1, PartyCountError, "at least 2, got 1"),
    (0, PartyCountError, "at least 2, got 0"),
    (-3, PartyCountError, "at least 2, got -3"),
    (2.0, TypeError, "must be an integer, got 2.0 of type float"),
    (True, TypeError, "got True of type bool"),
    ("3", TypeError, "got '3' of type str"),
    (None, TypeError, "got None"),
])
def test_bad_party_counts_are_named(n, exc, text):
    for fn in (share, share_compressed):
        with pytest.raises(exc, match=re.escape(text)):
            fn([1], n)


def test_numpy_integer_party_count_is_accepted():
    assert share([1], np.int64(3), key=K0).n == 3


@pytest.mark.parametrize("key, exc, text", [
    (bytes(15), KeyFormatError, "got 15 bytes"),
    (bytes(17), KeyFormatError, "got 17 bytes"),
    (bytes(24), KeyFormatError, "got 24 bytes"),
    (b"", KeyFormatError, "got 0 bytes"),
    ("0" * 16, TypeError, "got str"),
    (12345, TypeError, "got int"),
    ([0] * 16, TypeError, "got list"),
])
def test_bad_keys_are_named(key, exc, text):
    for fn in (share, share_compressed):
        with pytest.raises(exc, match=re.escape(text)):
            fn([1], 3, key=key)


def test_both_key_lengths_work_with_both_ciphers():
    for key in (bytes(16), bytes(32)):
        for prg in CIPHERS:
            assert ints(reconstruct(share([7], 3, key=key, prg=prg))) == [7]


@pytest.mark.parametrize("prg", ["aes", "AES128-CTR", "chacha", "", None, "mt19937"])
def test_unknown_prg_is_named(prg):
    for fn in (share, share_compressed):
        with pytest.raises(ValueError, match=re.escape(f"unknown stream cipher {prg!r}")):
            fn([1], 3, prg=prg)


@pytest.mark.parametrize("ring", [2**64, "Z2_64", None, np.uint64])
def test_non_ring_is_named(ring):
    with pytest.raises(TypeError, match="ring must be a refimpl Ring"):
        share([1], 3, ring=ring)


def test_mismatched_sharings_raise_specific_errors():
    x = share([1, 2], 3, key=K0)
    cases = [
        (share([1, 2], 3, ring=Z2_32, key=K0), RingMismatchError, "over Z2_64 and Z2_32"),
        (share([1, 2], 4, key=K0), PartyCountError, "among 3 and 4 parties"),
        (share([1, 2, 3], 3, key=K0), ShapeMismatchError, "shapes (2,) and (3,)"),
        (share([[1, 2]], 3, key=K0), ShapeMismatchError, "shapes (2,) and (1, 2)"),
    ]
    for other, exc, text in cases:
        for op in (lambda o=other: x + o, lambda o=other: x - o, lambda o=other: sum_shares([x, o])):
            with pytest.raises(exc, match=re.escape(text)):
                op()
        with pytest.raises(exc):
            other + x


def test_bad_public_operands():
    x = share([[1, 2, 3]], 3, key=K0)
    with pytest.raises(ShapeMismatchError, match=re.escape("public value of shape (2,) does not fit a sharing of "
                                                           "shape (1, 3)")):
        x + [1, 2]
    with pytest.raises(ShapeMismatchError, match="does not fit"):
        x * np.ones((2, 1, 3), dtype=np.int64)
    assert ints(reconstruct(x + [10, 20, 30])) == [11, 22, 33]  # broadcasting that keeps the shape is fine
    with pytest.raises(TypeError, match="FixedPoint.encode"):
        x + 0.5
    with pytest.raises(TypeError, match="FixedPoint.encode"):
        x * 2.0
    with pytest.raises(OutOfRangeError, match="value 18446744073709551616 is outside"):
        x * 2**64
    with pytest.raises(TypeError, match="Beaver"):
        x * x
    with pytest.raises(TypeError):
        x + "1"


def test_sum_shares_bad_input():
    x = share([1], 2, key=K0)
    with pytest.raises(ValueError, match="at least one sharing"):
        sum_shares([])
    with pytest.raises(TypeError, match="sum_shares takes Shares, got ndarray"):
        sum_shares([x, np.array([1])])
    with pytest.raises(TypeError, match="sum_shares takes Shares, got list"):
        sum_shares([[1], x])


def test_reconstruct_bad_input():
    for bad in (np.zeros((3, 2), dtype=np.uint64), [1, 2], None):
        with pytest.raises(TypeError, match="reconstruct takes Shares or CompressedShares"):
            reconstruct(bad)


@pytest.mark.parametrize("ring, data, exc, text", [
    (Z2_64, np.zeros((3, 2), dtype=np.uint32), TypeError, "must have dtype uint64, got uint32"),
    (Z2_64, np.zeros((3, 2), dtype=np.int64), TypeError, "must have dtype uint64, got int64"),
    (Z2_64, [[0, 1], [2, 3]], TypeError, "got list"),
    (Z2_64, np.zeros((1, 2), dtype=np.uint64), PartyCountError, "at least 2, got 1"),
    (Z2_64, np.zeros((), dtype=np.uint64), ShapeMismatchError, "leading party axis"),
    (2**64, np.zeros((2, 2), dtype=np.uint64), TypeError, "ring must be a refimpl Ring"),
])
def test_shares_constructor_validates(ring, data, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        Shares(ring, data)
