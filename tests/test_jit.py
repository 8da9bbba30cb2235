"""The compiled loops (refimpl.jit) against their definitions, bit for bit: the encode-and-mask loop against NumPy
(float32 / float64 sources, both rings, ties, the range bound, NaN and infinity), the compiled AES-CTR against
OpenSSL's (random keys, word offsets, lengths, both word sizes, the 2^64 counter carry and the 2^128 wrap, every
vector width this CPU has), and how both are switched on and off. (tests/test_secagg_fused.py and
tests/test_speed_kernels.py run their callers' tests through them as well.)"""

import os
import subprocess
import sys

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl import jit
from refimpl.errors import ConfigurationError
from refimpl.prg import Stream

pytest.importorskip("numba", reason="numba is not installed: the compiled loops (refimpl.jit) are untested")
from refimpl.jit import kernels as compiled  # noqa: E402  (the loops themselves, whatever REFIMPL_JIT says)

needs_aes = pytest.mark.skipif(jit.aes_width() == 0, reason="this CPU has no AES instructions (or is not x86-64): "
                               "the compiled AES-CTR (refimpl.jit.aes) cannot run here")

WORDS = {"uint32": np.uint32, "uint64": np.uint64}
BOUND = 2.0**50


@pytest.fixture(autouse=True)
def enabled():
    previous = jit.set_enabled(True)
    yield
    jit.set_enabled(previous)


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
    jit.set_enabled(False)
    assert not jit.available() and not jit.aes_available() and jit.aes_kernels(1 << 30) is None
    with pytest.raises(ConfigurationError, match="off"):
        jit.compiled_kernels()
    jit.set_enabled(None)  # back to the default: the environment decides
    monkeypatch.setenv(jit.ENV, "0")
    assert not jit.available()
    jit.set_enabled(None)
    monkeypatch.setenv(jit.ENV, "yes")
    with pytest.raises(ConfigurationError, match="REFIMPL_JIT must be 0 or 1"):
        jit.available()
    jit.set_enabled(None)
    monkeypatch.setenv(jit.ENV, "1")
    assert jit.available()


def test_the_aes_switch(monkeypatch):
    previous = jit.set_aes(False)
    try:
        assert not jit.aes_available() and jit.aes_kernels(1 << 30) is None
        jit.set_aes(None)
        monkeypatch.setenv(jit.AES_ENV, "0")
        assert not jit.aes_available()
        if jit.aes_width():
            jit.set_aes(True)
            assert jit.aes_available() and jit.aes_kernels(1 << 30) is compiled
            assert jit.aes_kernels(jit.AES_MIN_BYTES - 1) is None  # small calls keep OpenSSL
    finally:
        jit.set_aes(previous)


@pytest.mark.parametrize("value, match", [("2", "must be 0, 1, 128, 256 or 512"), ("1024", "must be 0, 1, 128")])
def test_bad_aes_settings_are_refused(value, match):
    env = {**os.environ, jit.AES_ENV: value}
    code = "from refimpl import jit\njit.aes_width()"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and match in run.stderr and "ConfigurationError" in run.stderr


# ------------------------------------------------------------------------------------------- the compiled AES-CTR
def _openssl(key: bytes, block: int, nbytes: int) -> bytes:
    """AES-128-CTR keystream from counter block ``block`` (mod 2^128), by OpenSSL's CTR mode."""
    return Cipher(algorithms.AES(key), modes.CTR((block % 2**128).to_bytes(16, "big"))).encryptor().update(
        bytes(nbytes))


keys = st.binary(min_size=16, max_size=16)


@needs_aes
@given(keys, st.integers(0, 2**128 - 1))
@example(bytes(16), 0)
@example(bytes(range(16)), 2**64 - 7)  # the low half carries into the high half inside the group
@example(b"\xff" * 16, 2**128 - 5)  # the counter wraps round 2^128
@example(bytes(range(16)), 2**64 * 5 + 2**64 - 1)
def test_one_block_group_is_openssl_ctr(key, block):
    rk = compiled.expand_keys([key])[0]
    out = np.zeros(40, np.uint64)
    from refimpl.jit.aes import block_group

    block_group(rk, out, 4, np.uint64(block >> 64), np.uint64(block & (2**64 - 1)))
    assert out[4:36].tobytes() == _openssl(key, block, 256)
    assert not out[:4].any() and not out[36:].any()  # nothing written outside its 256 bytes


@needs_aes
@settings(deadline=None)
@given(keys, st.sampled_from(["uint32", "uint64"]), st.integers(0, 3000), st.integers(0, 2500))
@example(bytes(16), "uint64", 0, 0)
@example(bytes(range(16)), "uint32", 63, 1)  # a group boundary: 64 uint32 words per group
@example(bytes(range(16)), "uint64", 513, 31)  # across a 4 KiB batch and a group boundary
def test_fill_is_the_stream(key, words, first, count):
    from refimpl.jit.aes import fill

    dt = np.dtype(words)
    rk = compiled.expand_keys([key])[0]
    out = np.zeros(count, dt)
    fill(rk, out, first)
    want = Stream(key).read((first + count) * dt.itemsize)[first * dt.itemsize :].tobytes()
    assert out.tobytes() == want


def _masks(keys_, size, dt):
    return [np.frombuffer(Stream(k).read(size * dt.itemsize), dt) for k in keys_]


@needs_aes
@settings(deadline=None, max_examples=40)
@given(st.lists(keys, min_size=1, max_size=4, unique=True), st.sampled_from(["uint32", "uint64"]),
       st.integers(0, 2200), st.data())
@example([bytes(16)], "uint64", 0, None)
def test_fold_share_and_fill_rows_are_their_definitions(keys_, words, size, data):
    dt = np.dtype(words)
    lo, hi = (0, size) if data is None else sorted(data.draw(st.tuples(st.integers(0, size), st.integers(0, size))))
    signs = np.array([1 if i % 2 == 0 else -1 for i in range(len(keys_))], np.int64)
    rks = compiled.expand_keys(keys_)
    masks = _masks(keys_, size, dt)
    x = (np.arange(size, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)).astype(dt)
    acc = np.full(size, 7, dt)
    compiled.fold_ctr(acc, x, rks, signs, lo, hi)
    want = x.copy()
    for s, m in zip(signs, masks):
        want = want + m if s > 0 else want - m
    np.testing.assert_array_equal(acc[lo:hi], want[lo:hi])
    assert (acc[:lo] == 7).all() and (acc[hi:] == 7).all()  # nothing outside the range
    in_place = x.copy()
    compiled.fold_ctr(in_place, in_place, rks, signs, 0, size)
    np.testing.assert_array_equal(in_place, want)
    shares = np.full((len(keys_) + 1, size), 5, dt)
    compiled.share_ctr(x, rks, shares.reshape(-1), size, lo, hi)
    np.testing.assert_array_equal(shares[1:, lo:hi], np.array(masks).reshape(len(keys_), size)[:, lo:hi])
    np.testing.assert_array_equal(shares[0, lo:hi], (x - sum(masks, np.zeros(size, dt)))[lo:hi])
    assert (shares[:, :lo] == 5).all() and (shares[:, hi:] == 5).all()
    rows = np.full((len(keys_), size), 3, dt)
    compiled.fill_rows_ctr(rows.reshape(-1), rks, size, lo, hi)
    np.testing.assert_array_equal(rows[:, lo:hi], np.array(masks).reshape(len(keys_), size)[:, lo:hi])


@needs_aes
@settings(deadline=None, max_examples=40)
@given(keys, st.sampled_from(["uint32", "uint64"]), st.integers(0, 1500), st.integers(0, 1500))
@example(bytes(16), "uint64", 1, 0)
def test_encode_sub_ctr_is_encode_sub_with_the_stream(key, words, size, first):
    dt = np.dtype(words)
    src = (np.sin(np.arange(size)) * 1000).astype(np.float32)
    mask = np.frombuffer(Stream(key).read((first + size) * dt.itemsize), dt)[first:]
    want, got = np.empty(size, dt), np.empty(size, dt)
    assert compiled.encode_sub(src, 3.0, mask, want, 2.0**40)
    assert compiled.encode_sub_ctr(src, 3.0, compiled.expand_keys([key])[0], got, first, 2.0**40)
    np.testing.assert_array_equal(got, want)
    assert not compiled.encode_sub_ctr(src[:1] * np.float32("nan"), 3.0, compiled.expand_keys([key])[0], got[:1],
                                       first, 2.0**40) or size == 0


def test_expand_keys_refuses_other_key_lengths():
    if not jit.aes_width():
        pytest.skip("this CPU has no AES instructions: the compiled AES-CTR cannot run here")
    with pytest.raises(ValueError, match="16 bytes"):
        compiled.expand_keys([bytes(32)])


@needs_aes
@pytest.mark.parametrize("width", [128, 256, 512])
def test_every_vector_width_makes_the_same_keystream(width):
    if width > jit.aes_width():
        pytest.skip(f"this CPU's widest AES instructions are {jit.aes_width()} bits: {width} cannot run here")
    code = ("import numpy as np\n"
            "from refimpl import jit\n"
            "from refimpl.prg import Stream\n"
            f"assert jit.aes_width() == {width}\n"
            "k = jit.compiled_kernels()\n"
            "key = bytes(range(16))\n"
            "acc = np.zeros(3001, np.uint64)\n"
            "k.fold_ctr(acc, acc, k.expand_keys([key]), np.array([1]), 0, acc.size)\n"
            "assert acc.tobytes() == Stream(key).read(8 * 3001).tobytes()\n"
            "out = np.zeros(999, np.uint32)\n"
            "from refimpl.jit.aes import fill\n"
            "fill(k.expand_keys([key])[0], out, 77)\n"
            "assert out.tobytes() == Stream(key).read(4 * 1076)[4 * 77:].tobytes()\n"
            "print('ok')")
    env = {**os.environ, jit.AES_ENV: str(width), jit.ENV: "1"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


@needs_aes
def test_the_kernels_refuse_ranges_outside_their_arrays():
    """No compiled loop writes or reads past an array: a bad range or a short array is refused before any work."""
    from refimpl.errors import ShapeMismatchError
    from refimpl.jit.aes import block_group, fill

    rks = compiled.expand_keys([bytes(16), bytes(range(16))])
    acc, short = np.zeros(100, np.uint64), np.zeros(99, np.uint64)
    bad = [
        lambda: compiled.fold_ctr(acc, acc, rks, np.array([1, 1]), 0, 101),
        lambda: compiled.fold_ctr(acc, short, rks, np.array([1, 1]), 0, 100),
        lambda: compiled.fold_ctr(acc, acc, rks, np.array([1]), 0, 100),
        lambda: compiled.share_ctr(acc, rks, np.zeros(299, np.uint64), 100, 0, 100),
        lambda: compiled.share_ctr(acc, rks, np.zeros(300, np.uint64), 100, -1, 100),
        lambda: compiled.fill_rows_ctr(np.zeros(199, np.uint64), rks, 100, 0, 100),
        lambda: compiled.encode_sub(np.zeros(5, np.float32), 1.0, np.zeros(4, np.uint64), np.zeros(5, np.uint64), 1.0),
        lambda: compiled.encode_sub_ctr(np.zeros(5, np.float32), 1.0, rks[0], np.zeros(4, np.uint64), 0, 1.0),
        lambda: block_group(rks[0], np.zeros(31, np.uint64), 0, np.uint64(0), np.uint64(0)),
        lambda: block_group(rks[0][:100], np.zeros(64, np.uint64), 0, np.uint64(0), np.uint64(0)),
        lambda: fill(rks[0], np.zeros(5, np.uint64), -1),
    ]
    for call in bad:
        with pytest.raises(ShapeMismatchError):
            call()
    assert not acc.any()  # nothing was written


def test_the_aes_choice_outlives_switching_the_loops_off_and_on():
    """Asking while the compiled loops are off does not settle the AES choice for later (the bench switches them)."""
    previous_aes = jit.set_aes(None)
    try:
        jit.set_enabled(False)
        assert not jit.aes_available()
        jit.set_enabled(True)
        assert jit.aes_available() == (jit.aes_width() > 0 and os.environ.get(jit.AES_ENV, "") != "0")
    finally:
        jit.set_aes(previous_aes)
