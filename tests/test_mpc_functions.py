"""Non-linear functions on shares (exp, log, reciprocal, sqrt, inv_sqrt, sigmoid, tanh, softmax): within their
documented bounds (refimpl.mpc.functions.BOUNDS) over their documented input ranges, for every Z_2^64 encoding and
n = 2, 3, 5; refused before computing where the ring cannot hold them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl import Z2_32, FixedPoint
from refimpl.errors import ConfigurationError
from refimpl.mpc import Channel, Dealer, StackedTensor, share_tensor
from refimpl.mpc.functions import BOUNDS, softmax_newton_steps, working_encoding
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.shared_tensor import share_among

ENCODINGS = [FixedPoint(), FixedPoint(base=10, frac_bits=3), FixedPoint(base=10, frac_bits=6),
             FixedPoint(frac_bits=24)]


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


PLAIN = {"exp": np.exp, "reciprocal": lambda v: 1 / v, "log": np.log, "inv_sqrt": lambda v: 1 / np.sqrt(v),
         "sqrt": np.sqrt, "sigmoid": _sigmoid, "tanh": np.tanh}


def _check(name: str, enc: FixedPoint, v: np.ndarray, got: np.ndarray) -> None:
    bound = BOUNDS[name][2](v) + 1 / enc.scale
    err = np.abs(got - PLAIN[name](v))
    assert np.all(err <= bound), (name, enc, v[err > bound], got[err > bound], err.max())


@pytest.mark.parametrize("name", sorted(PLAIN))
@settings(max_examples=10, deadline=None)
@given(enc=st.sampled_from(ENCODINGS), n=st.sampled_from([2, 3, 5]), u=st.lists(st.floats(0, 1), min_size=1,
                                                                               max_size=16))
@example(enc=ENCODINGS[0], n=2, u=[0.0, 1.0, 0.5])   # both ends of the range, the middle
@example(enc=ENCODINGS[1], n=3, u=[0.0, 1.0, 0.25, 0.75])
def test_function_within_bound_over_its_range(name, enc, n, u):
    lo, hi, _ = BOUNDS[name]
    v = lo + (hi - lo) * np.array(u)
    if name == "reciprocal":  # both signs: 0.05 <= |x| <= 200
        v = np.concatenate([v, -v])
    v = enc.decode(enc.encode(v))
    v = v[(v >= lo) | (name == "reciprocal")]
    got = getattr(share_tensor(v, Dealer(n), encoding=enc), name)().get()
    _check(name, enc, v, got)


@settings(max_examples=10, deadline=None)
@given(enc=st.sampled_from(ENCODINGS[:3]), n=st.sampled_from([2, 3, 5]), k=st.integers(1, 12),
       scale=st.sampled_from([0.1, 3.0, 30.0, 1000.0]), seed=st.integers(0, 2**32 - 1))
def test_softmax_within_bound_for_any_input(enc, n, k, scale, seed):
    v = np.random.default_rng(seed).normal(size=(3, k)) * scale
    v = enc.decode(enc.encode(v))
    e = np.exp(v - v.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    got = share_tensor(v, Dealer(n), encoding=enc).softmax(axis=1).get()
    assert np.abs(got - want).max() <= BOUNDS["softmax"][2](v).max() + 1 / enc.scale
    got0 = share_tensor(v.T, Dealer(n), encoding=enc).softmax(axis=0).get()
    assert np.abs(got0 - want.T).max() <= BOUNDS["softmax"][2](v).max() + 1 / enc.scale


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 2000))
@example(k=1)
@example(k=2)
@example(k=10)
@example(k=200)
def test_softmax_reciprocal_start_and_steps_reach_the_target(k):
    """The linear start's relative error on [1, k] (ends and the equioscillation point pinned) is within the
    documented ``(k-1)^2 / (k^2 + 6k + 1)``, and the chosen number of Newton steps squares it below 2**-24."""
    b = 8 / (k * k + 6 * k + 1)
    s = np.concatenate([np.linspace(1, k, 4001), [1.0, (k + 1) / 2, float(k)]])
    worst = (k - 1) ** 2 / (k * k + 6 * k + 1)
    assert np.abs(1 - s * b * (k + 1 - s)).max() <= worst * (1 + 1e-12) + 1e-15
    steps = softmax_newton_steps(k)
    assert worst ** (2**steps) <= 2.0**-24
    assert steps == 0 or worst ** (2 ** (steps - 1)) > 2.0**-24  # no step more than needed


@pytest.mark.parametrize("k", [2, 10, 200])
def test_softmax_many_classes_within_bound_and_rounds(k):
    enc = FixedPoint()
    v = enc.decode(enc.encode(np.random.default_rng(k).normal(size=(4, k)) * 5))
    e = np.exp(v - v.max(axis=1, keepdims=True))
    channel = Channel()
    x = share_tensor(v, Dealer(2), encoding=enc)
    y = StackedTensor(x.shares, enc, x.dealer, channel).softmax(axis=1)
    rounds = channel.rounds
    got = y.get()
    assert np.abs(got - e / e.sum(axis=1, keepdims=True)).max() <= BOUNDS["softmax"][2](v).max() + 1 / enc.scale
    if k == 10:
        assert rounds == 86  # README table (130 with CrypTen's exp-based start of the reciprocal)


def test_functions_refuse_rings_without_headroom():
    x = share_tensor([1.0], Dealer(2, ring=Z2_32), encoding=FixedPoint(frac_bits=8, ring=Z2_32))
    with pytest.raises(ConfigurationError, match="cannot multiply"):
        x.exp()
    with pytest.raises(TypeError, match="fixed-point"):
        share_tensor([1], Dealer(2)).exp()
    assert working_encoding(FixedPoint(base=10, frac_bits=3)) == FixedPoint(base=10, frac_bits=7)
    assert working_encoding(FixedPoint(frac_bits=24)) == FixedPoint(frac_bits=24)


def test_functions_on_workers():
    ledger = Ledger()
    ws = [VirtualWorker(f"w{i}", ledger) for i in range(3)]
    cp = VirtualWorker("cp", ledger)
    enc = FixedPoint()
    v = np.array([0.1, 1.0, 2.5, 7.0])
    for name in ("exp", "reciprocal", "sigmoid"):
        got = getattr(share_among(v, ws, crypto_provider=cp, encoding=enc), name)().get()
        _check(name, enc, v, got)
    z = share_among(np.array([[1.0, 2.0, 3.0], [0.0, -300.0, 5.0]]), ws, crypto_provider=cp, encoding=enc)
    e = np.exp(np.array([[1.0, 2.0, 3.0], [0.0, -300.0, 5.0]]) - [[3.0], [5.0]])
    assert np.abs(z.softmax().get() - e / e.sum(1, keepdims=True)).max() <= 2**-6
    x = share_among(np.array([3.0, -1.5]), ws, crypto_provider=cp, encoding=enc)
    y = share_among(np.array([1.5, 0.5]), ws, crypto_provider=cp, encoding=enc)
    assert np.abs((x / y).get() - [2.0, -3.0]).max() < 0.01  # private division through the reciprocal
