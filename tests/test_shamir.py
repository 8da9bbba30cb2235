"""Tests of t-of-n Shamir sharing (refimpl.sharing.shamir)."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import NotAFieldError, OutOfRangeError, PartyCountError, Ring
from refimpl.errors import ThresholdError
from refimpl.sharing.shamir import (
    DEFAULT_FIELD,
    ShamirShares,
    _evaluate,
    combine,
    reconstruct_bytes,
    shamir_reconstruct,
    shamir_share,
    share_bytes,
)

P = DEFAULT_FIELD.modulus
FIELDS = [DEFAULT_FIELD, Ring.prime(65537), Ring.prime(2**61 - 1), Ring.prime(2**127 - 1)]


@st.composite
def sharing_cases(draw):
    field = draw(st.sampled_from(FIELDS))
    n = draw(st.integers(1, 9))
    t = draw(st.integers(1, n))
    secret = draw(st.lists(st.integers(0, field.modulus - 1), min_size=1, max_size=5))
    subset = draw(st.permutations(range(1, n + 1)).map(lambda p: p[: draw(st.integers(t, n))]))
    key = draw(st.binary(min_size=16, max_size=16))
    return field, n, t, secret, list(subset), key


@given(sharing_cases())
def test_any_t_of_n_shares_reconstruct(case):
    field, n, t, secret, subset, key = case
    sh = shamir_share(secret, n, t, field=field, key=key)
    assert sh.data.shape == (n, len(secret))
    got = shamir_reconstruct(sh.subset(subset))
    assert [int(v) for v in got] == secret


@pytest.mark.parametrize("t,p", [(2, 5), (3, 5), (3, 7)])
def test_t_minus_one_shares_are_exactly_uniform_for_every_secret(t, p):
    """Exhaustive: over all p^(t-1) coefficient vectors, any t-1 shares take every value in Z_p^(t-1) exactly once,
    whatever the secret -- so t-1 shares are uniform and independent of the secret (perfect secrecy)."""
    field = Ring.prime(p)
    n = p - 1
    for secret in range(p):
        coeffs = np.array([[secret, *rest] for rest in itertools.product(range(p), repeat=t - 1)], dtype=np.uint64).T
        shares = _evaluate(coeffs, range(1, n + 1), field)  # (n, p^(t-1)): one column per polynomial
        for holders in itertools.combinations(range(n), t - 1):
            seen = {tuple(int(shares[h, c]) for h in holders) for c in range(coeffs.shape[1])}
            assert len(seen) == p ** (t - 1)


def test_sampled_coefficients_look_uniform():
    """The stream-drawn share of one party over 40,000 elements of a fixed secret is uniform on Z_17: a chi-square
    test with 16 degrees of freedom; the threshold 60 has p-value < 1e-6, and the key is fixed so it cannot flake."""
    field = Ring.prime(17)
    sh = shamir_share(np.zeros(40_000, dtype=np.int64), 3, 2, field=field, key=bytes(range(16)))
    counts = np.bincount(sh.share_of(2).astype(np.int64), minlength=17)
    expected = 40_000 / 17
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60, chi2


def test_deterministic_with_key_and_fresh_without():
    a = shamir_share([1, 2, 3], 4, 3, key=b"k" * 16)
    b = shamir_share([1, 2, 3], 4, 3, key=b"k" * 16)
    c = shamir_share([1, 2, 3], 4, 3)
    assert np.array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert a.data.flags.writeable is False


@given(st.binary(min_size=2, max_size=64).filter(lambda b: len(b) % 2 == 0), st.integers(2, 7), st.data())
def test_bytes_roundtrip(secret, n, data):
    t = data.draw(st.integers(1, n))
    sh = share_bytes(secret, n, t)
    chosen = data.draw(st.permutations(range(1, n + 1)))[:t]
    assert reconstruct_bytes(sh.subset(chosen)) == secret


def test_combine_and_custom_points():
    sh = shamir_share([99], 3, 2, points=[10, 20, 30], key=bytes(16))
    parts = [sh.subset([30]), sh.subset([10])]
    assert shamir_reconstruct(combine(parts))[0] == 99
    with pytest.raises(ThresholdError, match="t=2 and t=3"):
        combine([sh.subset([10]), shamir_share([1], 3, 3).subset([1])])


def test_errors_name_the_bad_value():
    with pytest.raises(ThresholdError, match="t=4"):
        shamir_share([1], 3, 4)
    with pytest.raises(ThresholdError, match="t=0"):
        shamir_share([1], 3, 0)
    with pytest.raises(PartyCountError, match="got 0"):
        shamir_share([1], 0, 1)
    with pytest.raises(PartyCountError, match="7 parties"):
        shamir_share([1], 7, 2, field=Ring.prime(7))
    with pytest.raises(NotAFieldError, match="not prime"):
        shamir_share([1], 3, 2, field=Ring(2**32))
    with pytest.raises(OutOfRangeError, match=str(P)):
        shamir_share([P], 3, 2)
    with pytest.raises(TypeError, match="integer"):
        shamir_share([1.5], 3, 2)
    with pytest.raises(ValueError, match="distinct"):
        shamir_share([1], 3, 2, points=[1, 2, 1])
    with pytest.raises(ValueError, match=r"\[1, "):
        shamir_share([1], 2, 2, points=[0, 1])
    sh = shamir_share([1], 3, 2)
    with pytest.raises(ThresholdError, match=r"t=2 shares .* got 1 \(parties \[3\]\)"):
        shamir_reconstruct(sh.subset([3]))
    with pytest.raises(KeyError, match="parties are"):
        sh.subset([4])
    with pytest.raises(TypeError, match="ShamirShares"):
        shamir_reconstruct(sh.data)
    with pytest.raises(TypeError, match="dtype"):
        ShamirShares(DEFAULT_FIELD, 2, (1, 2), np.zeros(2, dtype=np.int32))
    with pytest.raises(ValueError, match="even number"):
        share_bytes(b"abc", 3, 2)


def test_inconsistent_shares_are_detected_by_reconstruct_bytes():
    a = share_bytes(b"\xff\xff" * 8, 3, 2, key=bytes(16))
    b = share_bytes(b"\x00\x01" * 8, 3, 2, key=bytes(range(16)))
    mixed = combine([a.subset([1]), b.subset([2])])
    with pytest.raises(ValueError, match="inconsistent"):
        reconstruct_bytes(mixed)
