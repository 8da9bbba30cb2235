"""Hypothesis against the JavaScript module: for any encodable float and fixed-point configuration, and any sharing
(ring, n, key, cipher), the JavaScript's encoding, decoding and seed-compressed shares equal refimpl's bit for bit,
and what refimpl refuses the JavaScript refuses too. One long-lived Node process answers every example."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl.encoding import FixedPoint
from refimpl.errors import OutOfRangeError
from refimpl.ring import Z2_32, Z2_64, Ring
from refimpl.sharing.additive import share_compressed
from refimpl.testing import strategies as rst

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def js() -> Iterator[Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js >= 20) is not installed: the JavaScript property tests cannot run")
    proc = subprocess.Popen([node, str(ROOT / "tests" / "js" / "serve.mjs")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)

    def call(req: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, "the Node process ended"
        return json.loads(line)  # type: ignore[no-any-return]

    try:
        yield call
    finally:
        proc.kill()
        proc.wait(timeout=10)


@st.composite
def _configs_and_floats(draw: Any) -> tuple[FixedPoint, list[float]]:
    fp = draw(rst.fixed_points(ring=st.sampled_from([Z2_32, Z2_64, Ring(2**62), Ring.prime(2**61 - 1), Ring(2**80)])))
    xs = draw(st.lists(rst.encodable_floats(fp), min_size=1, max_size=20))
    return fp, xs


@given(_configs_and_floats())
@example((FixedPoint(frac_bits=3, base=10), [0.0625, 0.1875, -0.0005, -0.0, 5e-324]))
@example((FixedPoint(frac_bits=16, ring=Z2_32), [(2**31 - 1) / 65536, -(2**31 - 1) / 65536, 0.5 / 65536, 1.5 / 65536]))
def test_js_encode_and_decode_equal_refimpl(js: Any, case: tuple[FixedPoint, list[float]]) -> None:
    fp, xs = case
    got = js({"op": "encode", "modulus": str(fp.ring.modulus), "base": fp.base, "frac_bits": fp.frac_bits,
              "x": [repr(x) for x in xs]})
    enc = fp.encode(np.array(xs, dtype=np.float64))
    assert got.get("encoded") == [str(int(v)) for v in enc], got
    assert [float(v) for v in got["decoded"]] == fp.decode(enc).tolist()


@given(rst.fixed_points(ring=st.sampled_from([Z2_32, Z2_64])), st.floats(allow_nan=True, allow_infinity=True))
def test_js_refuses_what_refimpl_refuses(js: Any, fp: FixedPoint, x: float) -> None:
    got = js({"op": "encode", "modulus": str(fp.ring.modulus), "base": fp.base, "frac_bits": fp.frac_bits,
              "x": [repr(x)]})
    try:
        want = [str(int(v)) for v in fp.encode(np.array([x]))]
    except OutOfRangeError:
        assert got.get("error") == "OutOfRangeError", got
    else:
        assert got.get("encoded") == want, got


@st.composite
def _sharing_inputs(draw: Any) -> tuple[Ring, int, bytes, str, np.ndarray]:
    ring = draw(st.sampled_from([Z2_32, Z2_64, Ring(2**16), Ring(10), Ring.prime(2**61 - 1), Ring(2**127 - 1)]))
    return (ring, draw(rst.party_counts(max_value=6)), draw(rst.keys()), draw(rst.prgs()),
            draw(rst.ring_elements(ring, shape=st.integers(1, 40).map(lambda k: (k,)))))


@given(_sharing_inputs())
def test_js_share_compressed_equals_refimpl(js: Any, case: tuple[Ring, int, bytes, str, np.ndarray]) -> None:
    ring, n, key, prg, secret = case
    got = js({"op": "share", "modulus": str(ring.modulus), "n": n, "prg": prg, "key": key.hex(),
              "secret": [str(int(v)) for v in secret]})
    cs = share_compressed(secret, n, ring=ring, key=key, prg=prg)
    assert got == {"first": [str(int(v)) for v in cs.first], "keys": [k.hex() for k in cs.keys], "nbytes": cs.nbytes}
