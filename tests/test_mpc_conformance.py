"""The MPC conformance checks (refimpl.testing.conformance_mpc): refimpl's own protocols pass, and the classic
mistakes of other implementations are caught with a counterexample."""

from __future__ import annotations

import numpy as np

from refimpl import Z2_32, Z2_64, Shares
from refimpl.mpc import Dealer, divide, divide_local, mul
from refimpl.mpc.comparison import b2a, msb
from refimpl.testing.conformance_mpc import check_beaver_mul, check_comparison, check_division


def _dealers(ring=Z2_64):
    cache: dict[int, Dealer] = {}
    return lambda n: cache.setdefault(n, Dealer(n, ring=ring))


def _passes(ring) -> bool:
    dealer = _dealers(ring)
    return (check_beaver_mul(lambda x, y: mul(Shares(ring, x), Shares(ring, y), dealer(len(x))).data,
                             ring=ring, examples=10, seed=1).passed
            and check_division(lambda x, d: divide(Shares(ring, x), d, dealer(len(x))).data, ring=ring,
                               examples=10, seed=1, samples=1000).passed
            and check_comparison(lambda x: b2a(msb(Shares(ring, x), dealer(len(x))), dealer(len(x))).data,
                                 ring=ring, examples=10, seed=1).passed)


def test_refimpl_passes_its_mpc_checks():
    assert _passes(Z2_32) and _passes(Z2_64)


def test_naive_truncation_is_caught():
    """Every party shifting its own share (wrong whenever the shares wrap)."""
    def naive(x, d):
        return np.stack([p // np.uint64(d) for p in x])

    res = check_division(naive, n=2, examples=10, seed=1)
    assert not res.passed and res.property == "floor_or_one_more"
    assert "expected floor" in res.message


def test_local_division_fails_at_the_ends_of_the_range():
    """SecureML's 2-party local truncation fails with probability |x| / 2**64: near 2**62 that is 1/4."""
    res = check_division(lambda x, d: divide_local(Shares(Z2_64, x), d).data, n=2, examples=0, unbiased=False)
    assert not res.passed and res.property == "floor_or_one_more"


def test_deterministic_floor_is_caught_as_biased():
    def floor_exact(x, d):  # opens, floors, reshares: correct values but always rounds down
        from refimpl import share

        v = Z2_64.lift(Shares(Z2_64, x).reconstruct())
        return share(np.array([int(a) // d for a in v], dtype=object) % 2**64, len(x)).data

    res = check_division(floor_exact, divisors=(1000,), n=2, examples=5, samples=500)
    assert not res.passed and res.property == "unbiased_rounding"


def test_a_wrong_product_and_a_sign_flip_are_caught():
    dealer = _dealers()
    res = check_beaver_mul(lambda x, y: mul(Shares(Z2_64, x), Shares(Z2_64, y), dealer(len(x))).data + 1,
                           examples=5)
    assert not res.passed and res.property == "mul_reconstructs"
    res = check_comparison(lambda x: 1 - b2a(msb(Shares(Z2_64, x), dealer(len(x))), dealer(len(x))).data,
                           examples=5)
    assert not res.passed and res.counterexample["value"] is not None
