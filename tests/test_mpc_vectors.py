"""The dealer-keyed known-answer vectors of the fixed-point algebra (refimpl/testing/vectors/mpc.json): refimpl
reproduces every share bit for bit from the keys, and the opened values mean what the description says."""

from __future__ import annotations

import numpy as np

from refimpl import Z2_64, FixedPoint
from refimpl.mpc import Dealer, share_tensor
from refimpl.testing import load_vectors


def _shares(sharing: dict) -> list[list[int]]:
    return [[int(v) for v in party] for party in sharing["shares"]]


def test_mpc_vectors_reproduce_bit_for_bit():
    doc = load_vectors("mpc")
    assert doc["cases"] and {c["n"] for c in doc["cases"]} == {2, 3}
    for case in doc["cases"]:
        n, key = case["n"], bytes.fromhex(case["dealer_key"])
        enc = FixedPoint(base=case["encoding"]["base"], frac_bits=case["encoding"]["frac_bits"])
        dealer = Dealer(n, key=key)
        xs = [float(v) for v in case["inputs"]["x"]["values"]]
        ys = [float(v) for v in case["inputs"]["y"]["values"]]
        x = share_tensor(xs, dealer, encoding=enc, key=bytes.fromhex(case["inputs"]["x"]["key"]))
        y = share_tensor(ys, dealer, encoding=enc, key=bytes.fromhex(case["inputs"]["y"]["key"]))
        assert x.shares.data.tolist() == _shares(case["inputs"]["x"])
        z = x * y
        assert z.shares.data.tolist() == _shares(case["mul"])
        q = z.divide_exact(case["divide"]["divisor"])
        assert q.shares.data.tolist() == _shares(case["divide"])
        lt = x < y
        assert lt.shares.data.tolist() == _shares(case["less_than"])
        assert dealer.issued == case["issued"]
        # meaning: floor(x y 10**3) or one more; floor(. / 7) or one more; [x < y]
        prod = [int(v) for v in case["mul"]["signed"]]
        exact = [round(a * 1000) * round(b * 1000) // 1000 for a, b in zip(xs, ys)]
        assert all(p - e in (0, 1) for p, e in zip(prod, exact))
        assert all(int(v) - p // 7 in (0, 1) for v, p in zip(case["divide"]["signed"], prod))
        assert [int(v) for v in case["less_than"]["opened"]] == [int(a < b) for a, b in zip(xs, ys)]
        assert np.allclose(Z2_64.lift(np.array([int(v) for v in case["mul"]["opened"]], dtype=np.uint64)) / 1000,
                           np.array(xs) * np.array(ys), atol=2e-3)
