"""Beaver multiplication with a dealer, and the two truncation protocols, against their documented bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, FixedPoint, Ring, Shares, reconstruct, share
from refimpl.errors import PartyCountError, RingMismatchError, ShapeMismatchError, TripleReuseError
from refimpl.mpc import (
    Channel,
    Dealer,
    local_truncation_failure_probability,
    matmul,
    mul,
    ring_matmul,
    square,
    truncate,
    truncate_local,
)

RINGS = [Z2_64, Z2_32, Ring(2**20), Ring.prime(2**61 - 1), Ring(23740629843760239486723), Ring(7)]
ring_st = st.sampled_from(RINGS)
n_st = st.integers(2, 5)


def signed(ring: Ring, draw_value: int) -> int:
    """Map any integer into the ring's signed range."""
    return (draw_value - ring.signed_min) % ring.modulus + ring.signed_min


def lifted(ring: Ring, x: Shares) -> list[int]:
    return [int(v) for v in ring.lift(x.reconstruct()).ravel()]


def ref(ring: Ring, values) -> list[int]:
    return [int(v) for v in ring.lift(ring.reduce(np.array(values, dtype=object))).ravel()]


@given(ring=ring_st, n=n_st, a=st.integers(-(2**130), 2**130), b=st.integers(-(2**130), 2**130))
@example(ring=Z2_64, n=2, a=2**64 - 1, b=2**64 - 1)
@example(ring=Z2_64, n=3, a=-(2**63), b=-1)
@example(ring=Z2_64, n=2, a=2**63, b=2)
@example(ring=Z2_32, n=5, a=0, b=2**31)
@example(ring=Ring(7), n=2, a=6, b=6)
def test_mul_square_matches_plain_products(ring, n, a, b):
    a, b = signed(ring, a), signed(ring, b)
    x, y = share([a, b, 1], n, ring=ring), share([b, b, a], n, ring=ring)
    dealer, channel = Dealer(n, ring=ring), Channel()
    assert lifted(ring, mul(x, y, dealer, channel)) == ref(ring, [a * b, b * b, a])
    assert (channel.rounds, channel.messages) == (1, n * (n - 1))  # eps and delta opened in one round
    assert lifted(ring, square(x, dealer, channel)) == ref(ring, [a * a, b * b, 1])
    assert channel.rounds == 2


@given(ring=ring_st, n=n_st, m=st.integers(1, 4), k=st.integers(1, 4), p=st.integers(1, 4),
       vals=st.lists(st.integers(-(2**40), 2**40), min_size=32, max_size=32))
def test_matmul_matches_plain(ring, n, m, k, p, vals):
    v = np.array([signed(ring, x) if ring.modulus < 2**40 else x for x in vals], dtype=object)
    xv, yv = v[: m * k].reshape(m, k), v[16 : 16 + k * p].reshape(k, p)
    x, y = share(xv, n, ring=ring), share(yv, n, ring=ring)
    channel = Channel()
    z = matmul(x, y, Dealer(n, ring=ring), channel)
    assert z.shape == (m, p) and channel.rounds == 1
    assert lifted(ring, z) == ref(ring, (xv.astype(object) @ yv.astype(object)).ravel())


def test_ring_matmul_wraps_exactly():
    a = np.array([[2**63, 3]], dtype=np.uint64)
    b = np.array([[2], [2**63 + 1]], dtype=np.uint64)
    assert ring_matmul(Z2_64, a, b).tolist() == [[(2**64 + 3 * (2**63 + 1)) % 2**64]]
    p = 2**61 - 1                                        # object dtype: exact Python integers
    got = ring_matmul(Ring.prime(p), (a % np.uint64(p)).astype(object), (b % np.uint64(p)).astype(object))
    assert got.tolist() == [[(2**64 + 3 * (2**63 + 1)) % p]]
    assert ring_matmul(Ring(7), np.array([[6]], np.uint64), np.array([[6]], np.uint64)).tolist() == [[1]]


def test_triples_are_single_use_and_checked():
    dealer = Dealer(2, key=bytes(16))
    x, y = share([1, 2], 2), share([3, 4], 2)
    t = dealer.mul_triple((2,))
    mul(x, y, dealer, triple=t)
    assert t.used
    with pytest.raises(TripleReuseError, match="already consumed"):
        mul(x, y, dealer, triple=t)
    with pytest.raises(ShapeMismatchError, match=r"\(3,\)"):
        mul(x, y, dealer, triple=dealer.mul_triple(3))
    with pytest.raises(ShapeMismatchError, match=r"\(2,\) and \(3,\)"):
        mul(x, share([1, 2, 3], 2), dealer)
    with pytest.raises(ShapeMismatchError, match=r"\(2, 3\) @ \(2, 3\)"):
        dealer.matmul_triple((2, 3), (2, 3))
    with pytest.raises(ShapeMismatchError):
        matmul(share([[1, 2]], 2), share([[1, 2]], 2), dealer)
    with pytest.raises(PartyCountError, match="3 parties"):
        mul(share([1], 3), share([1], 3), dealer)
    with pytest.raises(RingMismatchError):
        mul(share([1], 2, ring=Z2_32), share([1], 2, ring=Z2_32), dealer)
    with pytest.raises(TypeError, match="crypto provider"):
        x * y  # Shares alone refuse; the error points at Beaver triples
    with pytest.raises(ValueError, match="triple shape"):
        dealer.mul_triple((-1,))


def test_dealer_is_deterministic_and_keyed():
    t1 = Dealer(3, key=bytes(16)).matmul_triple((2, 3), (3, 2)).take()
    t2 = Dealer(3, key=bytes(16)).matmul_triple((2, 3), (3, 2)).take()
    t3 = Dealer(3, key=bytes(range(16))).matmul_triple((2, 3), (3, 2)).take()
    assert all((p.data == q.data).all() for p, q in zip(t1, t2))
    assert not (t1[0].data == t3[0].data).all()
    d = Dealer(2, key=bytes(16))
    a1, a2 = d.mul_triple(4).take()[0], d.mul_triple(4).take()[0]  # consecutive triples are independent
    assert not (a1.reconstruct() == a2.reconstruct()).any()


def test_dealer_never_touches_numpy_or_python_random(monkeypatch):
    import random

    def forbidden(*args, **kwargs):
        raise AssertionError("non-cryptographic randomness used")

    for name in ("default_rng", "randint", "random", "rand", "integers", "bytes", "seed", "RandomState"):
        monkeypatch.setattr(np.random, name, forbidden, raising=False)
    monkeypatch.setattr(random, "getrandbits", forbidden)
    monkeypatch.setattr(random, "random", forbidden)
    d = Dealer(3)
    for item in (d.mul_triple(5), d.matmul_triple((2, 2), (2, 2)), d.square_pair(3), d.and_triple(3), d.dabits(3),
                 d.trunc_pair(3, 16)):
        assert len(item.take()) > 0
    assert reconstruct(truncate(share([2**20], 3), 16, d)).tolist() in ([16], [17])  # ran on crypto streams only


def test_triple_components_are_correct_for_every_kind():
    d = Dealer(4, key=bytes(16))
    a, b, c = d.mul_triple(6).take()
    assert (Z2_64.mul(a.reconstruct(), b.reconstruct()) == c.reconstruct()).all()
    a, a2 = d.square_pair(6).take()
    assert (Z2_64.mul(a.reconstruct(), a.reconstruct()) == a2.reconstruct()).all()
    a, b, c = d.and_triple(6).take()
    assert (a.reconstruct() & b.reconstruct() == c.reconstruct()).all()
    rb, ra = d.dabits(64).take()
    assert (rb.reconstruct() == ra.reconstruct()).all() and set(rb.reconstruct().tolist()) == {0, 1}
    r, r_hi, r_msb = d.trunc_pair(6, 16).take()
    rv = r.reconstruct()
    assert (r_hi.reconstruct() == (rv & np.uint64(2**63 - 1)) >> np.uint64(16)).all()
    assert (r_msb.reconstruct() == rv >> np.uint64(63)).all()


# ---------------------------------------------------------------- truncation

TRUNC_RINGS = [Z2_64, Z2_32, Ring(2**20)]


@given(ring=st.sampled_from(TRUNC_RINGS), n=n_st, f=st.integers(0, 18), u=st.floats(-1, 1, allow_nan=False))
@example(ring=Z2_64, n=2, f=16, u=-1.0)         # x = -2**62, the lowest value in range
@example(ring=Z2_64, n=3, f=16, u=1.0)          # x = 2**62 - 1, the highest
@example(ring=Z2_32, n=2, f=18, u=0.0)
@example(ring=Ring(2**20), n=5, f=18, u=-1.0)
def test_dealer_truncation_is_within_one_ulp_for_any_n(ring, n, f, u):
    half = 2 ** (ring.bits - 2)
    x0 = min(max(int(u * half), -half), half - 1)
    xs = [x0, -x0 - 1, 0, -1, 1, half - 1, -half]
    t = lifted(ring, truncate(share(xs, n, ring=ring), f, Dealer(n, ring=ring)))
    for x, got in zip(xs, t):
        assert got - (x >> f) in (0, 1), (x, f, got)


def test_dealer_truncation_rounds_stochastically_without_bias():
    f, count = 16, 4000
    xs = np.full(count, 7 * 2**f + 2**f // 4, dtype=np.int64)  # 7.25
    t = Z2_64.lift(truncate(share(xs, 3), f, Dealer(3)).reconstruct())
    assert set(t.tolist()) <= {7, 8}
    up = (t == 8).mean()
    assert abs(up - 0.25) < 4 * np.sqrt(0.25 * 0.75 / count)


@given(x=st.integers(-(2**62), 2**62 - 1), r=st.integers(0, 2**64 - 1), f=st.integers(1, 40))
@example(x=5 * 2**16, r=3, f=16)                # the shares wrap: naive truncation fails, SecureML does not
@example(x=2**40, r=2**64 - 2**40, f=16)        # x + r' hits M: the documented failure case
@example(x=-(2**40), r=2**40 - 1, f=16)         # x + r' < 0: fails
@example(x=-1, r=0, f=16)
def test_local_truncation_fails_exactly_when_documented(x, r, f):
    m = 2**64
    s1 = (-r) % m                    # party 1's share; r' = -s1 mod M = r
    s0 = (x - s1) % m
    shares = Shares(Z2_64, np.array([[s0], [s1]], dtype=np.uint64))
    got = int(Z2_64.lift(truncate_local(shares, f).reconstruct())[0])
    fails = not 0 <= x + r < m
    if fails:
        err = (got - (x >> f)) % m
        assert min(err, m - err) >= 2 ** (64 - f) - 2
    else:
        assert got - (x >> f) in (0, 1)


def test_naive_truncation_fails_on_wrapping_shares_where_local_truncation_does_not():
    x, f = 5 * 2**16, 16                                 # 5.0 at 16 fractional bits (x2: the product scale)
    s1 = 2**64 - 3
    s0 = (x - s1) % 2**64                                # = x + 3: the shares wrap around M
    data = np.array([[s0], [s1]], dtype=np.uint64)
    naive = Z2_64.lift((data >> np.uint64(f)).sum(axis=0, dtype=np.uint64))
    assert int(naive[0]) == 5 + 2**48 - 1                # off by 2**(l - f): garbage
    assert Z2_64.lift(truncate_local(Shares(Z2_64, data), f).reconstruct()).tolist() == [5]
    assert Z2_64.lift(truncate(Shares(Z2_64, data), f, Dealer(2)).reconstruct()).tolist() in ([5], [6])


def test_local_truncation_failure_rate_matches_documented_probability():
    count, x = 20000, 2**61                             # |x| / 2**64 = 1/8
    p = local_truncation_failure_probability(x)
    assert p == 0.125
    t = Z2_64.lift(truncate_local(share(np.full(count, x), 2), 16).reconstruct())
    rate = np.mean(np.abs(t - (x >> 16)) > 1)
    assert abs(rate - p) < 5 * np.sqrt(p * (1 - p) / count)


def test_truncation_argument_errors():
    with pytest.raises(PartyCountError, match="exactly 2 parties, got 3"):
        truncate_local(share([1], 3), 16)
    with pytest.raises(ValueError, match="Z_2\\^l"):
        truncate(share([1], 2, ring=Ring(7)), 1, Dealer(2, ring=Ring(7)))
    with pytest.raises(ValueError, match="frac_bits must lie in \\[0, 62\\].*got 63"):
        truncate(share([1], 2), 63, Dealer(2))
    with pytest.raises(ShapeMismatchError):
        d = Dealer(2)
        truncate(share([1, 2], 2), 16, d, pair=d.trunc_pair(3, 16))


@given(a=st.floats(-1000, 1000), b=st.floats(-1000, 1000), n=n_st)
@example(a=-1000.0, b=1000.0, n=2)
@example(a=0.0, b=-0.0, n=3)
def test_fixed_point_product_error_bound(a, b, n):
    fp = FixedPoint()
    s = float(fp.scale)
    x, y = share(fp.encode([a]), n), share(fp.encode([b]), n)
    dealer = Dealer(n)
    z = fp.decode(truncate(mul(x, y, dealer), fp.frac_bits, dealer).reconstruct())[0]
    # encoding error of each factor (<= 1/2s) propagated, plus truncation below one ulp
    bound = (abs(a) + abs(b)) / (2 * s) + 1 / (4 * s * s) + 1 / s
    assert abs(z - a * b) <= bound * (1 + 1e-12)


def test_masked_operand_products_match_and_open_only_the_left_operand():
    from refimpl.mpc import mask_operand, matmul_masked

    d, ch = Dealer(3, key=bytes(16)), Channel()
    wv = np.arange(12).reshape(4, 3) - 6
    w = mask_operand(share(wv, 3), d, ch)
    assert ch.rounds == 1 and repr(w) == f"MaskedOperand(shape=(4, 3), mask={w.mask_index})"
    for batch in (1, 5):
        xv = np.arange(4 * batch).reshape(batch, 4) - 3
        before = ch.bytes
        z = matmul_masked(share(xv, 3), w, d, ch)
        assert Z2_64.lift(z.reconstruct()).tolist() == (xv @ wv).tolist()
        assert ch.bytes - before == 2 * 3 * xv.size * 8  # only eps = x - A: (n - 1) * n shares of x's size
    with pytest.raises(ShapeMismatchError):
        matmul_masked(share(np.ones((2, 3), dtype=np.int64), 3), w, d)
    with pytest.raises(ValueError, match="no operand mask #999"):
        d.masked_matmul_triple((2, 4), 999)
    with pytest.raises(ShapeMismatchError, match="2-d"):
        d.operand_mask((4,))


def test_prefetched_dealer_stream_is_the_same_keystream():
    from refimpl.mpc.dealer import _Prefetched
    from refimpl.prg import Stream

    pre, plain = _Prefetched(Stream(bytes(16)), 40), Stream(bytes(16))
    a, b = np.empty(3, np.uint64), np.empty(4, np.uint64)  # 24 bytes, then 32 (past the 40 prefetched)
    pre.read_into(a)
    pre.read_into(b)
    assert a.tobytes() + b.tobytes() == plain.read(56).tobytes()
    assert pre.read(3).tolist() == plain.read(3).tolist()
