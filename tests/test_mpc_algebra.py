"""The conformance property of the fixed-point algebra on shares: for every operation, every encoding (base 2 and
10, Z_2^32 and Z_2^64) and n = 2, 3, 5, the reconstructed result equals the plaintext operation on the decoded
inputs within the operation's documented bound; ring boundaries and half-way points pinned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, FixedPoint
from refimpl.errors import ShapeMismatchError
from refimpl.mpc import Channel, Dealer, StackedTensor, concatenate, share_tensor, stack
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.shared_tensor import share_among

ENCODINGS = [FixedPoint(), FixedPoint(base=10, frac_bits=3), FixedPoint(base=10, frac_bits=6),
             FixedPoint(frac_bits=8, ring=Z2_32), FixedPoint(base=10, frac_bits=2, ring=Z2_32)]


def limit(enc: FixedPoint) -> float:
    """Inputs drawn below this magnitude keep every product (and 4-term sums of products) in range."""
    return 30.0 if enc.ring == Z2_32 else 1000.0


def ulp(enc: FixedPoint) -> float:
    return 1.0 / enc.scale


# (shared op, plain op, bound(enc, a, b)) -- a and b are the decoded inputs (same shape)
Op = tuple[Callable[[Any, Any], Any], Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[..., Any]]
EXACT: Callable[..., float] = lambda enc, a, b: 0.0  # noqa: E731
OPS: dict[str, Op] = {
    "add": (lambda x, y: x + y, np.add, EXACT),
    "sub": (lambda x, y: x - y, np.subtract, EXACT),
    "neg": (lambda x, y: -x, lambda a, b: -a, EXACT),
    "add_public": (lambda x, y: x + 2, lambda a, b: a + 2, EXACT),
    "rsub_public": (lambda x, y: 1 - x, lambda a, b: 1 - a, EXACT),
    "mul_int": (lambda x, y: x * 3, lambda a, b: a * 3, EXACT),
    "mul": (lambda x, y: x * y, np.multiply, lambda enc, a, b: ulp(enc)),
    "mul_public": (lambda x, y: x * 0.375, lambda a, b: a * 0.375, lambda enc, a, b: ulp(enc) * (1 + np.abs(a))),
    "square": (lambda x, y: x.square(), lambda a, b: a * a, lambda enc, a, b: ulp(enc)),
    "broadcast_mul": (lambda x, y: x * y[..., :1], lambda a, b: a * b[..., :1], lambda enc, a, b: ulp(enc)),
    "matmul": (lambda x, y: x @ y.T, lambda a, b: a @ b.T, lambda enc, a, b: ulp(enc)),
    "div_int": (lambda x, y: x / 3, lambda a, b: a / 3, lambda enc, a, b: ulp(enc)),
    "div_neg_int": (lambda x, y: x / -7, lambda a, b: a / -7, lambda enc, a, b: ulp(enc)),
    "sum": (lambda x, y: x.sum(axis=-1), lambda a, b: a.sum(axis=-1), EXACT),
    "mean": (lambda x, y: x.mean(axis=0), lambda a, b: a.mean(axis=0), lambda enc, a, b: ulp(enc)),
    "transpose": (lambda x, y: x.T, lambda a, b: a.T, EXACT),
    "reshape_index": (lambda x, y: x.reshape(-1)[::2], lambda a, b: a.reshape(-1)[::2], EXACT),
    "concat": (lambda x, y: concatenate([x, y], axis=-1), lambda a, b: np.concatenate([a, b], -1), EXACT),
    "stack": (lambda x, y: stack([x, y]), lambda a, b: np.stack([a, b]), EXACT),
    "lt": (lambda x, y: x < y, lambda a, b: (a < b).astype(int), EXACT),
    "le": (lambda x, y: x <= y, lambda a, b: (a <= b).astype(int), EXACT),
    "gt": (lambda x, y: x > y, lambda a, b: (a > b).astype(int), EXACT),
    "ge": (lambda x, y: x >= y, lambda a, b: (a >= b).astype(int), EXACT),
    "eq": (lambda x, y: x == y, lambda a, b: (a == b).astype(int), EXACT),
    "ne": (lambda x, y: x != y, lambda a, b: (a != b).astype(int), EXACT),
    "relu": (lambda x, y: x.relu(), lambda a, b: np.maximum(a, 0), EXACT),
    "drelu": (lambda x, y: x.drelu(), lambda a, b: (a >= 0).astype(int), EXACT),
    "abs": (lambda x, y: abs(x), lambda a, b: np.abs(a), EXACT),
    "sign": (lambda x, y: x.sign(), lambda a, b: np.where(a >= 0, 1, -1), EXACT),
    "max": (lambda x, y: x.max(axis=-1), lambda a, b: a.max(axis=-1), EXACT),
    "min": (lambda x, y: x.min(axis=0), lambda a, b: a.min(axis=0), EXACT),
    "argmax": (lambda x, y: x.argmax(axis=-1),
               lambda a, b: np.eye(a.shape[-1], dtype=int)[a.argmax(axis=-1)], EXACT),
    "where": (lambda x, y: (x > y).where(x, y), np.maximum, EXACT),
    "refresh": (lambda x, y: x.refresh(), lambda a, b: a, EXACT),
}


def _values(enc: FixedPoint, raw: list[float], shape: tuple[int, int]) -> np.ndarray:
    lim = limit(enc)
    v = np.resize(np.clip(np.array(raw, dtype=np.float64), -lim, lim), shape)
    return enc.decode(enc.encode(v))  # the exactly representable inputs


def within(got: Any, want: Any, bound: Any) -> bool:
    """``|got - want| <= bound``, up to the float64 rounding of decoding and of the plaintext reference."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    slack = 1e-12 * (1 + np.abs(want))
    return bool(np.all(np.abs(got - want) <= np.asarray(bound) * (1 + 1e-9) + slack))


values = st.lists(st.floats(-1000, 1000, allow_nan=False), min_size=1, max_size=12)


@settings(max_examples=20, deadline=None)  # ~35 protocols per example
@given(enc=st.sampled_from(ENCODINGS), n=st.sampled_from([2, 3, 5]), xs=values, ys=values,
       rows=st.integers(1, 3), cols=st.integers(1, 4))
@example(enc=ENCODINGS[0], n=2, xs=[2.0**-17, -(2.0**-17), 1.5 * 2**-16, 999.9999], ys=[0.5, -0.5, 2**-16, -1000.0],
         rows=1, cols=4)  # half-way points of the division, the top of the range
@example(enc=ENCODINGS[1], n=3, xs=[0.0005, -0.0005, 0.0015, 1000.0], ys=[0.5, 0.5, -0.5, 1000.0], rows=2, cols=2)
@example(enc=ENCODINGS[3], n=5, xs=[30.0, -30.0, 2**-9, 0.0], ys=[-30.0, 30.0, 0.5, 0.0], rows=2, cols=2)
@example(enc=ENCODINGS[4], n=2, xs=[0.005, -0.005, 30.0], ys=[0.5, 0.5, -30.0], rows=1, cols=3)
def test_every_operation_matches_plaintext_within_its_bound(enc, n, xs, ys, rows, cols):
    a, b = _values(enc, xs, (rows, cols)), _values(enc, ys, (rows, cols))
    dealer = Dealer(n, ring=enc.ring)
    for name, (op, plain, bound) in OPS.items():
        x, y = share_tensor(a, dealer, encoding=enc), share_tensor(b, dealer, encoding=enc)
        got = op(x, y).get()
        want = plain(a, b)
        assert np.shape(got) == np.shape(want), name
        assert within(got, want, bound(enc, a, b)), (name, enc, n, a, b, got, want)


@pytest.mark.parametrize("ring", [Z2_32, Z2_64])
def test_comparisons_are_exact_at_the_ends_of_the_signed_range(ring):
    """The sign extraction is exact over the ring's whole signed range (integer sharings)."""
    top = 2 ** (ring.bits - 1)
    vals = np.array([-top, -top + 1, -1, 0, 1, top - 1], dtype=object)
    for n in (2, 3, 5):
        x = share_tensor(vals, Dealer(n, ring=ring))
        assert (x < 0).get().tolist() == [1, 1, 1, 0, 0, 0]
        assert x.drelu().get().tolist() == [0, 0, 0, 1, 1, 1]


def test_workers_and_stacked_agree_on_every_operation():
    """The pointer-world SharedTensor runs the same algebra through worker messages: same results."""
    ledger = Ledger()
    ws = [VirtualWorker(f"w{i}", ledger) for i in range(3)]
    cp = VirtualWorker("cp", ledger)
    enc = FixedPoint(base=10, frac_bits=4)
    rng = np.random.default_rng(3)
    a = enc.decode(enc.encode(rng.normal(size=(2, 3)) * 5))
    b = enc.decode(enc.encode(rng.normal(size=(2, 3)) * 5))
    for name, (op, plain, bound) in OPS.items():
        x = share_among(a, ws, crypto_provider=cp, encoding=enc)
        y = share_among(b, ws, crypto_provider=cp, encoding=enc)
        assert within(op(x, y).get(), plain(a, b), bound(enc, a, b)), name


def test_shapes_broadcasting_and_batched_matmul():
    d = Dealer(2)
    rng = np.random.default_rng(0)
    for sa, sb in [((3, 4), (4,)), ((), (5,)), ((2, 1, 3), (4, 3)), ((1, 4), (3, 1))]:
        a, b = rng.integers(-9, 9, sa), rng.integers(-9, 9, sb)
        assert ((share_tensor(a, d) * share_tensor(b, d)).get() == a * b).all()
    for sa, sb in [((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((4,), (4,)), ((3,), (3, 2)), ((2, 3), (3,))]:
        a, b = rng.integers(-9, 9, sa), rng.integers(-9, 9, sb)
        assert ((share_tensor(a, d) @ share_tensor(b, d)).get() == a @ b).all()
        assert ((share_tensor(a, d) @ b).get() == a @ b).all() and ((a @ share_tensor(b, d)).get() == a @ b).all()
    v = rng.integers(-9, 9, 6)
    assert share_tensor(v, d).dot(share_tensor(v, d)).get() == v @ v
    with pytest.raises(ShapeMismatchError):
        share_tensor(np.ones((2, 3), int), d) @ share_tensor(np.ones((2, 3), int), d)
    with pytest.raises(ShapeMismatchError):
        share_tensor(np.ones(4, int), d).reshape(3, -1)
    x = share_tensor(np.arange(24).reshape(2, 3, 4), d)
    assert (x.transpose(1, 0, 2).get() == np.arange(24).reshape(2, 3, 4).transpose(1, 0, 2)).all()
    assert (x[1, :, [0, 3]].get() == np.arange(24).reshape(2, 3, 4)[1, :, [0, 3]]).all()
    assert (x.sum(axis=(0, 2)).get() == np.arange(24).reshape(2, 3, 4).sum(axis=(0, 2))).all()
    assert x.clone().get().tolist() == np.arange(24).reshape(2, 3, 4).tolist()


def test_argmax_index_and_ties():
    d = Dealer(3)
    x = share_tensor([[3, 7, 7, 1, 0], [9, 9, 9, 9, 9]], d)
    assert x.argmax(axis=1).get().tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert x.argmax(axis=1, one_hot=False).get().tolist() == [1, 0]
    assert x.max().get() == 9 and x.argmax(one_hot=False).get() == 5


def test_max_uses_log_rounds():
    ch = Channel()
    x = StackedTensor(share_tensor(np.arange(64), Dealer(2)).shares, None, Dealer(2), ch)
    x.max().get()
    ch1 = Channel()
    StackedTensor(share_tensor(np.arange(2), Dealer(2)).shares, None, Dealer(2), ch1).max().get()
    assert ch.rounds == 6 * (ch1.rounds - 1) + 1  # 6 levels for 64 elements, each like one level for 2
