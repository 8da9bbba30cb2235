"""Binary sharing, AND triples, the Kogge-Stone adder, A2B/B2A and exact ReLU against plaintext."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, Ring, share
from refimpl.errors import PartyCountError, ShapeMismatchError
from refimpl.mpc import Channel, Dealer
from refimpl.mpc.comparison import a2b, add_binary, and_, b2a, drelu, msb, relu
from refimpl.sharing.binary import BinaryShares, share_binary

U64 = st.integers(0, 2**64 - 1)
RINGS = [Z2_64, Z2_32, Ring(2**20), Ring(2**3), Ring(2**2), Ring(2**1)]


@given(x=U64, y=U64, n=st.integers(2, 5))
@example(x=2**64 - 1, y=1, n=2)
@example(x=2**63, y=2**63, n=3)
@example(x=0, y=0, n=2)
def test_and_and_adder_match_plain(x, y, n):
    d, ch = Dealer(n), Channel()
    xs = share_binary(np.array([x, y], dtype=np.uint64), n)
    ys = share_binary(np.array([y, x ^ y], dtype=np.uint64), n)
    assert and_(xs, ys, d, ch).reconstruct().tolist() == [x & y, y & (x ^ y)]
    assert ch.rounds == 1
    ch = Channel()
    assert add_binary(xs, ys, d, ch).reconstruct().tolist() == [(x + y) % 2**64, (y + (x ^ y)) % 2**64]
    assert ch.rounds == 7  # 1 + log2(64)


@given(ring=st.sampled_from(RINGS), n=st.integers(2, 6), v=st.integers(-(2**63), 2**63 - 1))
@example(ring=Z2_64, n=2, v=-(2**63))
@example(ring=Z2_64, n=3, v=2**63 - 1)
@example(ring=Z2_64, n=2, v=0)
@example(ring=Z2_64, n=4, v=-1)
@example(ring=Z2_32, n=2, v=-(2**31))
@example(ring=Ring(2**2), n=5, v=1)
def test_relu_msb_a2b_are_exact(ring, n, v):
    lo, m = ring.signed_min, ring.modulus
    v = (v - lo) % m + lo
    values = [(val - lo) % m + lo for val in (v, 0, -1, 1, lo, ring.signed_max)]  # in the signed view
    x = share(values, n, ring=ring)
    d = Dealer(n, ring=ring)
    mask = np.uint64(m - 1)
    assert (a2b(x, d).reconstruct() & mask).tolist() == [val % m for val in values]
    assert msb(x, d).reconstruct().tolist() == [int(val < 0) for val in values]
    assert drelu(x, d).reconstruct().tolist() == [int(val >= 0) % m for val in values]  # 1 is -1 in Z_2
    assert ring.lift(relu(x, d).reconstruct()).tolist() == [max(val, 0) for val in values]


def test_msb_sends_a_quarter_of_the_full_adder_and_agrees_with_it():
    x = share(np.arange(-1000, 1000) * 2**40, 2)
    full, pruned = Channel(), Channel()
    d = Dealer(2)
    via_adder = (a2b(x, d, full) >> 63).reconstruct() & np.uint64(1)
    assert (msb(x, d, pruned).reconstruct() == via_adder).all()
    assert pruned.rounds == full.rounds == 7
    assert pruned.bytes < full.bytes / 4 + 64 * 16 * 8  # 182 instead of 768 AND bits per element, packed


def test_relu_is_batched_in_constant_rounds():
    x = share(np.arange(-500, 500).reshape(10, 100), 2)
    ch = Channel()
    out = relu(x, Dealer(2), ch)
    assert out.shape == (10, 100)
    assert (Z2_64.lift(out.reconstruct()) == np.maximum(np.arange(-500, 500), 0).reshape(10, 100)).all()
    assert ch.rounds == 9  # 7 adder + 1 B2A + 1 multiplication, independent of the batch size


def test_b2a_of_bits():
    bits = np.array([0, 1, 1, 0, 1], dtype=np.uint64)
    assert b2a(share_binary(bits, 3), Dealer(3)).reconstruct().tolist() == bits.tolist()


def test_binary_shares_checks():
    x = share_binary(np.array([1, 2], dtype=np.uint64), 2, key=bytes(16))
    assert (share_binary(np.array([1, 2], dtype=np.uint64), 2, key=bytes(16)).data == x.data).all()
    assert repr(x) == "BinaryShares(n=2, shape=(2,))"
    assert (~x).reconstruct().tolist() == [2**64 - 2, 2**64 - 3]
    assert x[1:].reconstruct().tolist() == [2]
    with pytest.raises(TypeError, match="crypto provider"):
        x & x
    with pytest.raises(TypeError, match="reconstruct"):
        np.asarray(x)
    with pytest.raises(TypeError, match="secret"):
        bool(x)
    with pytest.raises(TypeError, match="uint64"):
        BinaryShares(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="shift amount.*64"):
        x << 64
    with pytest.raises(ValueError, match="non-negative"):
        x ^ -1
    with pytest.raises(PartyCountError):
        x ^ share_binary(np.array([1, 2], dtype=np.uint64), 3)
    with pytest.raises(ShapeMismatchError):
        and_(x, share_binary(np.array([1], dtype=np.uint64), 2), Dealer(2))
    with pytest.raises(PartyCountError):
        and_(x, x, Dealer(3))
    with pytest.raises(ValueError, match="Z_2\\^l"):
        relu(share([1], 2, ring=Ring(7)), Dealer(2, ring=Ring(7)))
