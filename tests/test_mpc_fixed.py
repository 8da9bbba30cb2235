"""Fixed-point arithmetic on shares: the two silent wrong results of issue 11 (regressions), division by any
public integer, headroom checks, and real-number semantics on stacked tensors and on workers' SharedTensors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, FixedPoint, Ring, share
from refimpl.errors import ConfigurationError, PartyCountError, RefimplError, ShapeMismatchError
from refimpl.mpc import (
    Channel,
    Dealer,
    divide,
    divide_local,
    division_range,
    local_truncation_failure_probability,
    share_tensor,
    truncate,
)
from refimpl.mpc.inference import EncryptedMLP
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.shared_tensor import share_among

SYFT = FixedPoint(base=10, frac_bits=3)


def workers(*names: str) -> list[VirtualWorker]:
    ledger = Ledger()
    return [VirtualWorker(n, ledger) for n in names]


# ---------------------------------------------------------------- the two silent wrong results (regressions)
def test_base10_products_are_divided_by_ten_to_the_frac_bits():
    """Was [-125, -500, 1125, 2000]: products truncated by 2**3 instead of 10**3."""
    a, b, cp = workers("a", "b", "cp")
    x = share_among(np.array([1, -2, -3, 4.0]), (a, b), crypto_provider=cp, encoding=SYFT)
    y = share_among(np.array([-1, 2, -3, 4.0]), (a, b), crypto_provider=cp, encoding=SYFT)
    assert np.allclose((x * y).get(), [-1, -4, 9, 16], atol=1e-3)
    x = share_among(np.array([[1, -2.0]]), (a, b), crypto_provider=cp, encoding=SYFT)
    w = share_among(np.array([[3.0], [0.5]]), (a, b), crypto_provider=cp, encoding=SYFT)
    assert np.allclose((x @ w).get(), [[2.0]], atol=1e-3)
    d = Dealer(3, key=bytes(16))
    s = share_tensor([1, -2, -3, 4.0], d, encoding=SYFT)
    assert np.allclose((s * s).get(), [1, 4, 9, 16], atol=1e-3)


def test_encrypted_mlp_with_a_base10_encoding_is_accurate():
    """Was logit errors of ~1000 with a base-10 encoding."""
    rng = np.random.default_rng(0)
    params = {"w0": rng.normal(size=(8, 6)) * 0.3, "b0": rng.normal(size=6) * 0.1,
              "w1": rng.normal(size=(6, 3)) * 0.3, "b1": rng.normal(size=3) * 0.1}
    x = rng.normal(size=(5, 8))
    want = np.maximum(x @ params["w0"] + params["b0"], 0) @ params["w1"] + params["b1"]
    for n, trunc in ((2, "local"), (3, "dealer")):
        model = EncryptedMLP(params, n=n, encoding=FixedPoint(base=10, frac_bits=4), truncation=trunc,
                             key=bytes(16))
        assert np.abs(model.logits(x) - want).max() < 5e-3
    with pytest.raises(ConfigurationError):
        EncryptedMLP(params, encoding=FixedPoint(ring=Z2_32))


def test_z2_32_with_16_fractional_bits_refuses_products_and_says_what_fits():
    """Was [0, 0, 0, 0] silently: 16 + 16 fractional bits overflow Z_2^32."""
    a, b, cp = workers("a", "b", "cp")
    fp = FixedPoint(ring=Z2_32)
    x = share_among(np.array([1.0, 2.0, -3.0, 4.0]), (a, b), crypto_provider=cp, encoding=fp)
    before = a.ledger.messages
    with pytest.raises(ConfigurationError, match=r"frac_bits <= 13 in base 2 with Z2_32"):
        x * x
    assert a.ledger.messages == before  # refused before any message
    with pytest.raises(ConfigurationError):
        x * 0.5
    assert np.allclose((x + x).get(), [2, 4, -6, 8])  # sums need no headroom
    fits = FixedPoint(frac_bits=12, ring=Z2_32)
    y = share_tensor([1.5, -2.25, 3.0], Dealer(2, ring=Z2_32), encoding=fits)
    assert np.allclose((y * y).get(), [2.25, 5.0625, 9.0], atol=2 ** -11)


# ---------------------------------------------------------------- division by any public positive integer
@given(st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=8), st.integers(1, 2**40),
       st.sampled_from([2, 3, 5]))
@example([2**61, -(2**61), 0, -1, 1], 1000, 2)
@example([999, 1000, 1001, -999, -1000, -1001, 500, -500], 1000, 3)   # half-way points and neighbours
@example([2**16 - 1, 2**16, -(2**16)], 2**16, 5)
def test_divide_is_floor_or_one_more(values, d, n):
    lo, hi = division_range(Z2_64, d)
    values = [v for v in values if lo <= v < hi]
    x = share(np.array(values, dtype=object), n)
    got = Z2_64.lift(divide(x, d, Dealer(n)).reconstruct()).tolist()
    for v, g in zip(values, got):
        assert g - v // d in (0, 1), (v, d, g)


@pytest.mark.parametrize("ring", [Z2_32, Z2_64])
def test_divide_at_the_ends_of_its_range(ring):
    for d in (1, 3, 1000, 2**16, 2 ** (ring.bits - 2)):
        lo, hi = division_range(ring, d)
        vals = np.array([lo, lo + 1, hi - 1, 0, -1], dtype=object)
        got = ring.lift(divide(share(vals, 3, ring=ring), d, Dealer(3, ring=ring)).reconstruct()).tolist()
        assert all(g - int(v) // d in (0, 1) for v, g in zip(vals, got)), (d, got)


def test_divide_by_a_power_of_two_is_truncate_bit_for_bit():
    x = share(np.arange(-20, 20) * 9973, 3, key=bytes(16))
    one, two = Dealer(3, key=bytes(16)), Dealer(3, key=bytes(16))
    assert (divide(x, 2**7, one).data == truncate(x, 7, two).data).all()


def test_divide_counts_one_round_and_rejects_bad_divisors():
    ch = Channel()
    divide(share([5, 6], 3), 7, Dealer(3), ch)
    assert ch.rounds == 1 and ch.dealer_messages == 3
    for bad in (0, -3, 2**62 + 1):
        with pytest.raises(ValueError, match="divisor"):
            divide(share([5], 2), bad, Dealer(2))
    with pytest.raises(TypeError):
        divide(share([5], 2), 2.5, Dealer(2))  # type: ignore[arg-type]
    with pytest.raises(RefimplError):
        divide(share([5], 2, ring=Ring(97)), 3, Dealer(2, ring=Ring(97)))


def test_divide_is_unbiased_stochastic_rounding():
    x = share(np.full(4000, 1333), 2)  # 1333 / 1000: +1 with probability 0.333
    got = Z2_64.lift(divide(x, 1000, Dealer(2)).reconstruct())
    assert set(got.tolist()) <= {1, 2}
    assert abs((got == 2).mean() - 0.333) < 0.04


def test_local_division_failure_probability():
    """Two-party local division: floor or one more except with probability |x| / 2**64 (independent of d)."""
    big = 2**60  # failure probability 1/16
    x = share(np.full(4000, big), 2)
    got = Z2_64.lift(divide_local(x, 1000).reconstruct())
    ok = np.isin(got - big // 1000, [0, 1])
    p = local_truncation_failure_probability(big)
    assert p == 1 / 16 and abs((~ok).mean() - p) < 0.02
    small = share(np.arange(-500, 500) * 1001, 2)
    got = Z2_64.lift(divide_local(small, 1001).reconstruct())
    assert np.isin(got - np.arange(-500, 500), [0, 1]).mean() > 0.999
    with pytest.raises(PartyCountError):
        divide_local(share([1], 3), 10)


# ---------------------------------------------------------------- real-number semantics
@pytest.mark.parametrize("enc", [FixedPoint(), SYFT, FixedPoint(base=10, frac_bits=6)])
def test_public_operands_mean_real_arithmetic(enc):
    a, b, c, cp = workers("a", "b", "c", "cp")
    v = np.array([1.5, -2.0, 0.25, 7.0])
    for x in (share_among(v, (a, b, c), crypto_provider=cp, encoding=enc),
              share_tensor(v, Dealer(3), encoding=enc)):
        ulp = 1 / enc.scale
        assert np.allclose((x + 2).get(), v + 2)
        assert np.abs((x * 0.5).get() - v * 0.5).max() <= ulp
        assert np.abs((x / 3).get() - v / 3).max() <= 1.5 * ulp
        assert np.abs((x / -4).get() - v / -4).max() <= 1.5 * ulp
        assert np.abs((2 - x * 3).get() - (2 - 3 * v)).max() <= ulp
        assert np.abs((x / 2.5).get() - v / 2.5).max() <= 8 * ulp
        assert np.abs(x.mean().get() - v.mean()) <= ulp


def test_pointer_world_averaging_of_models():
    """The tutorial's (alice_model + bob_model) / 2 on pointers and on shared tensors."""
    from refimpl.workers import send

    alice, bob, w, cp = workers("alice", "bob", "w", "cp")
    m1, m2 = send(np.array([1.0, 3.0]), w), send(np.array([3.0, 5.0]), w)
    assert ((m1 + m2) / 2).get().tolist() == [2.0, 4.0]
    s1 = share_among(np.array([1.0, 3.0]), (alice, bob), crypto_provider=cp, encoding=FixedPoint())
    s2 = share_among(np.array([3.0, 5.5]), (alice, bob), crypto_provider=cp, encoding=FixedPoint())
    assert np.allclose(((s1 + s2) / 2).get(), [2.0, 4.25], atol=2**-16)


def test_bool_of_a_shared_tensor_raises():
    a, b, cp = workers("a", "b", "cp")
    x = share_among(np.array([1]), (a, b), crypto_provider=cp)
    with pytest.raises(TypeError, match="secret"):
        bool(x)
    with pytest.raises(TypeError, match="secret"):
        bool(share_tensor([1], Dealer(2)) > 0)


def test_mixing_encodings_and_integers():
    d = Dealer(2)
    x = share_tensor([1.5, -2.0], d, encoding=FixedPoint())
    k = share_tensor([2, 3], d)
    assert np.allclose((x * k).get(), [3.0, -6.0])  # integer x fixed: no division, exact
    assert np.allclose((x + k).get(), [3.5, 1.0])
    with pytest.raises(ValueError, match="encodings"):
        x + share_tensor([1.0], d, encoding=FixedPoint(frac_bits=8))
    with pytest.raises(TypeError, match="encoding"):
        k * 0.5
    with pytest.raises(ShapeMismatchError):
        x * share_tensor([1.0, 2.0, 3.0], d, encoding=FixedPoint())


@pytest.mark.parametrize("secret", [5, np.uint64(7), 2**64 - 1, np.array(3), np.int8(0)])
def test_share_binary_accepts_scalars(secret):
    from refimpl.sharing.binary import share_binary

    s = share_binary(secret, 3, key=bytes(16))
    assert s.shape == () and int(s.reconstruct()) == int(secret)
    # same keystream as a 1-element array's
    assert int(share_binary(np.array([secret], dtype=np.uint64), 3, key=bytes(16)).data[1, 0]) == int(s.data[1])


def test_refresh_rerandomises_without_changing_the_value():
    d = Dealer(3)
    x = share_tensor([1.5, -2.0], d, encoding=FixedPoint())
    y = x.refresh()
    assert (y.shares.data != x.shares.data).any() and np.allclose(y.get(), [1.5, -2.0])
    a, b, cp = workers("a", "b", "cp")
    s = share_among(np.array([4, -5]), (a, b), crypto_provider=cp)
    before = [a.objects[s.pointers[0].id].copy(), b.objects[s.pointers[1].id].copy()]
    t = s.refresh()
    after = [a.objects[t.pointers[0].id], b.objects[t.pointers[1].id]]
    assert not (before[0] == after[0]).all() and t.get().tolist() == [4, -5]


def test_every_opening_and_dealer_item_is_in_the_ledger():
    a, b, c, cp = workers("a", "b", "c", "cp")
    ledger = a.ledger
    x = share_among(np.array([1.5, -2.0]), (a, b, c), crypto_provider=cp, encoding=FixedPoint())
    y = share_among(np.array([0.5, 4.0]), (a, b, c), crypto_provider=cp, encoding=FixedPoint())
    opens, dealer = ledger.rounds_by_kind["open"], ledger.messages_by_kind["dealer"]
    z = x * y
    assert ledger.rounds_by_kind["open"] - opens == 2  # Beaver opening + division opening
    assert ledger.messages_by_kind["dealer"] - dealer == 2 * 3  # a triple and a division pair, to each party
    opens = ledger.rounds_by_kind["open"]
    (z > 0).get()
    ch = Channel()
    x2 = share_tensor([1.5, -2.0], Dealer(3), encoding=FixedPoint(), channel=ch)
    _ = x2 > 0
    # the same protocol on stacked shares: the same number of opening rounds (carry-save + adder + B2A)
    assert ledger.rounds_by_kind["open"] - opens == ch.rounds
    assert ch.ledger.messages_by_kind["open"] == ch.messages and ch.dealer_messages > 0
