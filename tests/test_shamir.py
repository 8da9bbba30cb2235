"""Tests of t-of-n Shamir sharing (refimpl.sharing.shamir)."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import NotAFieldError, OutOfRangeError, PartyCountError, Ring
from refimpl.errors import ShapeMismatchError, ThresholdError
from refimpl.sharing.shamir import (
    DEFAULT_FIELD,
    ShamirShares,
    _evaluate,
    combine,
    reconstruct_bytes,
    reconstruct_limbs_many,
    shamir_reconstruct,
    shamir_share,
    share_bytes,
    share_bytes_many,
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


def _poly_at(coeffs, x, p):
    """The definition: sum_k c_k x^k mod p, in Python integers."""
    return sum(int(c) * pow(x, k, p) for k, c in enumerate(coeffs)) % p


@given(st.sampled_from([DEFAULT_FIELD, Ring.prime(65537), Ring.prime(4294967291)]), st.data())
def test_vectorised_evaluation_is_the_polynomial_definition(field, data):
    """The in-place uint64 Horner pass (p < 2^32) gives sum_k c_k x^k mod p exactly, at the extremes too."""
    p = field.modulus
    t = data.draw(st.integers(1, 8), label="t")
    cols = data.draw(st.integers(1, 4), label="columns")
    elem = st.integers(0, p - 1) | st.sampled_from([0, 1, p - 1])
    coeffs = np.array(data.draw(st.lists(st.lists(elem, min_size=cols, max_size=cols), min_size=t, max_size=t)),
                      dtype=np.uint64)
    xs = data.draw(st.lists(st.integers(1, p - 1) | st.just(p - 1), min_size=1, max_size=6, unique=True))
    got = _evaluate(coeffs, xs, field)
    assert got.dtype == np.uint64 and got.shape == (len(xs), cols)
    assert [[int(v) for v in row] for row in got] == [[_poly_at(coeffs[:, c], x, p) for c in range(cols)] for x in xs]


@given(st.lists(st.binary(min_size=2, max_size=40).filter(lambda b: len(b) % 2 == 0), min_size=1, max_size=4),
       st.integers(1, 8), st.data())
def test_share_bytes_many_is_share_bytes_column_by_column(secrets, n, data):
    """Sharing several secrets at once gives, bit for bit, each secret's own share_bytes sharing side by side."""
    t = data.draw(st.integers(1, n), label="t")
    keys = data.draw(st.lists(st.binary(min_size=16, max_size=16), min_size=len(secrets), max_size=len(secrets)))
    points = data.draw(st.none() | st.lists(st.integers(1, 1000), min_size=n, max_size=n, unique=True))
    prg = data.draw(st.sampled_from(["aes128-ctr", "chacha20"]))
    field = data.draw(st.sampled_from(FIELDS))
    many = share_bytes_many(secrets, n, t, keys=keys, points=points, prg=prg, field=field)
    one_by_one = [share_bytes(s, n, t, key=k, points=points, prg=prg, field=field) for s, k in zip(secrets, keys)]
    assert many.xs == one_by_one[0].xs and many.threshold == t
    assert many.data.dtype == field.dtype
    assert np.array_equal(many.data, np.concatenate([sh.data for sh in one_by_one], axis=1))
    subset = data.draw(st.permutations(many.xs).map(lambda p: list(p[:t])))
    assert reconstruct_bytes(many.subset(subset)) == b"".join(secrets)


def test_share_bytes_many_refuses_bad_arguments():
    with pytest.raises(ValueError, match="2 keys for 1 secrets"):
        share_bytes_many([b"ab"], 3, 2, keys=[bytes(16)] * 2)
    with pytest.raises(ValueError, match="at least one secret"):
        share_bytes_many([], 3, 2)
    with pytest.raises(TypeError, match="takes bytes"):
        share_bytes_many([b"ab", "cd"], 3, 2)  # type: ignore[list-item]
    with pytest.raises(ThresholdError, match="1 <= t <= n=3"):
        share_bytes_many([b"ab"], 3, 4)
    a, b = share_bytes_many([b"ab", b"ab"], 3, 2).data.T  # fresh keys: the two polynomials differ (p ~ 2^-62)
    assert not np.array_equal(a, b)


@given(st.sampled_from(FIELDS), st.integers(1, 7), st.data())
def test_reconstruct_limbs_many_is_shamir_reconstruct_per_sharing(field, n, data):
    """Rebuilding many sharings held by the same t parties at once equals rebuilding each one on its own."""
    t = data.draw(st.integers(1, n), label="t")
    m = data.draw(st.integers(1, 5), label="sharings")
    secrets = data.draw(st.lists(st.integers(0, field.modulus - 1) | st.just(field.modulus - 1), min_size=m, max_size=m))
    sh = shamir_share(secrets, n, t, field=field, key=data.draw(st.binary(min_size=16, max_size=16)))
    parties = data.draw(st.permutations(sh.xs).map(lambda p: list(p[:t])))
    got = reconstruct_limbs_many(parties, sh.subset(parties).data, field)
    assert [int(v) for v in got] == [int(v) for v in shamir_reconstruct(sh.subset(parties))] == secrets
    with pytest.raises(ShapeMismatchError, match="one row per party"):
        reconstruct_limbs_many(parties, sh.data[:0], field)
