"""The compiled encode-and-mask loop (refimpl.secagg.compiled) against its NumPy definition, element by element:
float32 / float64 sources, both rings, ties, the range bound, NaN and infinity; and how it is switched on and off.
(tests/test_secagg_fused.py runs every fused-round test through it as well.)"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl.errors import ConfigurationError
from refimpl.secagg import compiled

pytest.importorskip("numba", reason="numba is not installed: the compiled loop (refimpl.secagg.compiled) is untested")

WORDS = {"uint32": np.uint32, "uint64": np.uint64}
BOUND = 2.0**50


@pytest.fixture(autouse=True)
def enabled():
    previous = compiled.set_enabled(True)
    yield
    compiled.set_enabled(previous)


def _definition(src, factor, mask, words, bound):
    """NumPy: rint(float64(src) * factor) as int64, as ring words, minus the mask; and whether every value is
    within the bound (NaN is not)."""
    with np.errstate(invalid="ignore"):  # inf * 0
        r = np.rint(np.multiply(src, factor, dtype=np.float64))
        ok = bool(np.all(np.abs(r) <= bound))
        enc = r.astype(np.int64) if ok else None
    return ok, (None if enc is None else enc.astype(words) - mask)


values = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from(
    [0.5, -0.5, 1.5, -2.5, 2.0**-30, -(2.0**-30), 0.0, -0.0])


@given(st.lists(values, min_size=0, max_size=40), st.sampled_from(["float32", "float64"]),
       st.sampled_from(sorted(WORDS)), st.sampled_from([0.0, 1.0, 0.8125, 2.0**16, 0.8125 * 2.0**32, 3.0**20]),
       st.sampled_from([0.0, 1.0, 2.0**20, BOUND]), st.integers(0, 2**64 - 1))
@example([0.5, 1.5, 2.5, -0.5, -1.5], "float64", "uint64", 1.0, BOUND, 0)  # ties round to even
@example([2.0**20 + 0.5], "float64", "uint32", 1.0, 2.0**20, 0)  # B + 0.5: rint ties to the even B, inside
@example([2.0**20 + 1.5], "float64", "uint32", 1.0, 2.0**20, 0)  # B + 1.5 rounds to B + 2: outside
@example([1.0, float("nan")], "float32", "uint64", 1.0, BOUND, 0)
@example([float("-inf")], "float32", "uint64", 0.0, BOUND, 0)  # -inf * 0 is NaN
@example([-1.0], "float32", "uint64", 1.0, BOUND, 2**64 - 1)  # wraps round
def test_the_loop_is_its_numpy_definition(xs, dtype, words, factor, bound, mask_seed):
    src = np.array(xs, dtype=dtype)
    w = WORDS[words]
    mask = (np.arange(src.size, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(mask_seed)).astype(w)
    out = np.full(src.size, 7, w)
    ok = compiled.encode_sub(src, factor, mask, out, bound)
    want_ok, want = _definition(src, factor, mask, w, bound)
    assert ok == want_ok
    if ok:
        np.testing.assert_array_equal(out, want)


def test_a_strided_source_and_views_of_larger_buffers():
    src = np.linspace(-3, 3, 201, dtype=np.float32)[::3]
    mask = np.arange(200, dtype=np.uint64)[10 : 10 + src.size]
    out = np.zeros(300, np.uint64)[5 : 5 + src.size]
    assert compiled.encode_sub(src, 2.0**16, mask, out, BOUND)
    np.testing.assert_array_equal(out, np.rint(src.astype(np.float64) * 2.0**16).astype(np.int64).astype(np.uint64)
                                  - mask)


def test_switching_off_and_the_environment_variable(monkeypatch):
    compiled.set_enabled(False)
    assert not compiled.available()
    with pytest.raises(ConfigurationError, match="off"):
        compiled.encode_sub(np.zeros(1, np.float32), 1.0, np.zeros(1, np.uint64), np.zeros(1, np.uint64), 1.0)
    compiled.set_enabled(None)  # back to the default: the environment decides
    monkeypatch.setenv(compiled.ENV, "0")
    assert not compiled.available()
    compiled.set_enabled(None)
    monkeypatch.setenv(compiled.ENV, "yes")
    with pytest.raises(ConfigurationError, match="REFIMPL_JIT must be 0 or 1"):
        compiled.available()
    compiled.set_enabled(None)
    monkeypatch.setenv(compiled.ENV, "1")
    assert compiled.available()
