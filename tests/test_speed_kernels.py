"""The multi-threaded sharing kernels and the ``out=`` buffers: bit-identical to the one-thread definition -- every
test twice, with OpenSSL's keystreams and with the compiled AES-CTR (refimpl.jit) where it can run."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, Ring, jit, reconstruct, share, share_compressed
from refimpl.errors import ShapeMismatchError
from refimpl.prg import Stream, encryptor, write_keystream
from refimpl.sharing import kernels
from refimpl.sharing.additive import party_keys

KEY = bytes(range(16))


@pytest.fixture(autouse=True, scope="module", params=["openssl", "compiled-aes"])
def keystreams(request):
    """Which keystream the kernels use: OpenSSL's, or the compiled AES-CTR (refimpl.jit) where it can run."""
    compiled = request.param == "compiled-aes"
    if compiled and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed: the compiled AES-CTR (refimpl.jit) is not tested")
    if compiled and not jit.aes_width():
        pytest.skip("this CPU has no AES instructions: the compiled AES-CTR (refimpl.jit.aes) is not tested")
    previous = jit.set_enabled(True) if compiled else None  # whatever REFIMPL_JIT says
    previous_aes = jit.set_aes(compiled)
    saved, jit.AES_MIN_BYTES = jit.AES_MIN_BYTES, 0  # the small arrays here take the compiled AES too
    yield request.param
    jit.AES_MIN_BYTES = saved
    jit.set_aes(previous_aes)
    if compiled:
        jit.set_enabled(previous)


@pytest.fixture(autouse=True, scope="module")
def small_chunks():
    """Small chunks and a low threshold, so that small arrays take the multi-threaded, multi-chunk paths."""
    saved = kernels.CHUNK_BYTES, kernels.MIN_PARALLEL_BYTES
    kernels.CHUNK_BYTES, kernels.MIN_PARALLEL_BYTES = 1 << 12, 1 << 14
    yield
    kernels.CHUNK_BYTES, kernels.MIN_PARALLEL_BYTES = saved


@pytest.fixture
def thread_count():
    """Set the kernels' thread count for one test and restore the default afterwards."""
    previous = kernels.set_threads(None)
    yield kernels.set_threads
    kernels.set_threads(previous)


def definition(x: np.ndarray, n: int, ring: Ring, prg: str) -> np.ndarray:
    """The sharing by its definition: masks read from Streams, party 0 = x - sum(masks)."""
    keys = party_keys(KEY, n, prg)
    data = np.empty((n, *x.shape), ring.dtype)
    for party, k in enumerate(keys, start=1):
        data[party] = ring.sample(Stream(k, cipher=prg), x.shape)
    data[0] = ring.sub(ring.element(x), ring.sum(data[1:], axis=0))
    return data


# Sizes around the (test-lowered) parallel threshold and chunk size, with ragged tails; elements per share.
BIG = (1 << 14) // 8


@settings(max_examples=12, deadline=None)
@given(size=st.sampled_from([0, 1, 1000, BIG - 1, BIG, BIG + 3, 3 * BIG + 17]),
       n=st.integers(2, 4), threads=st.integers(1, 5), ring=st.sampled_from([Z2_32, Z2_64]),
       prg=st.sampled_from(["aes128-ctr", "chacha20"]))
@example(size=3 * BIG + 17, n=3, threads=3, ring=Z2_64, prg="aes128-ctr")
@example(size=3 * BIG + 17, n=2, threads=2, ring=Z2_32, prg="chacha20")
def test_threaded_share_matches_definition(size, n, threads, ring, prg):
    x = (np.arange(size, dtype=np.uint64) * 0x9E3779B97F4A7C15).astype(ring.dtype)
    previous = kernels.set_threads(threads)
    try:
        s = share(x, n, ring=ring, key=KEY, prg=prg)
        c = share_compressed(x, n, ring=ring, key=KEY, prg=prg)
        opened, opened_c = reconstruct(s), reconstruct(c)
    finally:
        kernels.set_threads(previous)
    want = definition(x, n, ring, prg)
    assert (s.data == want).all()
    assert (c.first == want[0]).all()
    assert (opened == x).all() and (opened_c == x).all()


@pytest.mark.parametrize("ring", [Z2_32, Z2_64])
def test_out_buffers_are_reused_and_bit_identical(ring, thread_count):
    thread_count(2)
    x = np.arange(3 * BIG + 5).astype(ring.dtype)
    buf = np.empty((3, x.size), ring.dtype)
    s = share(x, 3, ring=ring, key=KEY, out=buf)
    assert np.shares_memory(s.data, buf) and not s.data.flags.writeable
    assert (s.data == share(x, 3, ring=ring, key=KEY).data).all()
    first = np.empty(x.size, ring.dtype)
    c = share_compressed(x, 3, ring=ring, key=KEY, out=first)
    assert c.first is first and (first == s.data[0]).all()
    opened = np.empty(x.size, ring.dtype)
    assert reconstruct(s, out=opened) is opened and (opened == x).all()
    opened[:] = 0
    assert reconstruct(c, out=opened) is opened and (opened == x).all()


def test_out_on_other_rings_and_inputs():
    ring = Ring(10**9 + 7)
    x = np.array([1, 2, ring.modulus - 1], dtype=np.uint64)
    buf = np.empty((2, 3), ring.dtype)
    s = share(x, 2, ring=ring, key=KEY, out=buf)
    assert (reconstruct(s, out=np.empty(3, ring.dtype)) == x).all()
    first = np.empty(3, ring.dtype)
    assert (reconstruct(share_compressed([1, 2, -1], 2, ring=ring, key=KEY, out=first)) == [1, 2, ring.modulus - 1]).all()


def test_bad_out_buffers_are_refused():
    x = np.arange(10, dtype=np.uint64)
    with pytest.raises(ShapeMismatchError, match=r"shape \(3, 10\)"):
        share(x, 3, out=np.empty((2, 10), np.uint64))
    with pytest.raises(TypeError, match="dtype uint64"):
        share(x, 3, out=np.empty((3, 10), np.uint32))
    with pytest.raises(ValueError, match="C-contiguous and writeable"):
        share(x, 3, out=np.empty((10, 3), np.uint64).T)
    buf = np.empty((3, 10), np.uint64)
    with pytest.raises(ValueError, match="overlaps an input"):
        share(buf[1], 3, out=buf)
    with pytest.raises(TypeError, match="numpy array"):
        reconstruct(share(x, 2), out=[0] * 10)
    with pytest.raises(ShapeMismatchError):
        share_compressed(x, 2, out=np.empty(9, np.uint64))


def test_thread_settings_are_checked(monkeypatch, thread_count):
    with pytest.raises(ValueError, match="positive integer"):
        thread_count(0)
    monkeypatch.setenv("REFIMPL_THREADS", "3")
    assert kernels.threads() == 3
    monkeypatch.setenv("REFIMPL_THREADS", "many")
    with pytest.raises(ValueError, match="REFIMPL_THREADS"):
        kernels.threads()


def test_apply_keystreams_with_source_and_no_keys():
    src = np.arange(7, dtype=np.uint32)
    acc = np.zeros(7, np.uint32)
    kernels.apply_keystreams(acc, [], "aes128-ctr", np.add, src=src)
    assert (acc == src).all()
    kernels.apply_keystreams(acc, [KEY, KEY], "aes128-ctr", np.subtract, src=src)
    mask = Z2_32.sample(Stream(KEY), 7)
    assert (acc == Z2_32.sub(Z2_32.sub(src, mask), mask)).all()


def test_large_arrays_are_split_into_chunk_aligned_ranges(thread_count):
    thread_count(3)
    step = kernels.CHUNK_BYTES // 8
    ranges = kernels._ranges(3 * BIG + 17, step, (3 * BIG + 17) * 8)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == 3 * BIG + 17
    assert all(lo % step == 0 and lo == prev_hi for (lo, _), (_, prev_hi) in zip(ranges[1:], ranges))
    assert kernels._ranges(1000, step, 8000) == [(0, 1000)]  # small: the calling thread only
    assert kernels.CHUNK_BYTES % 64 == 0 and (1 << 19) % 64 == 0  # chunks start on cipher block boundaries


@pytest.mark.parametrize("threads", [1, 3])
def test_fold_keystreams_is_the_sum_of_the_masks(threads, thread_count):
    """Secure aggregation's one-pass fold: x + PRG(a) + PRG(b) - PRG(c), bit for bit, any thread count."""
    thread_count(threads)
    size = 3 * BIG + 11
    x = np.arange(size, dtype=np.uint64)
    keys = [bytes([i]) * 16 for i in range(3)]
    acc = np.empty_like(x)
    kernels.fold_keystreams(acc, [(keys[0], np.add), (keys[1], np.add), (keys[2], np.subtract)], "aes128-ctr", src=x)
    m = [Z2_64.sample(Stream(k), size) for k in keys]
    assert (acc == Z2_64.sub(Z2_64.add(Z2_64.add(x, m[0]), m[1]), m[2])).all()
    assert (x == np.arange(size, dtype=np.uint64)).all()  # the source is only read


def test_out_is_refused_for_jax_arrays():
    jnp = pytest.importorskip("jax.numpy", reason="the JAX path needs the jax extra")
    x = jnp.arange(4, dtype=jnp.int32)
    with pytest.raises(TypeError, match="out= takes a NumPy buffer"):
        share(x, 2, ring=Z2_32, key=KEY, prg="chacha20", out=np.empty((2, 4), np.uint32))
    s = share(x, 2, ring=Z2_32, key=KEY, prg="chacha20")
    with pytest.raises(TypeError, match="out= takes a NumPy buffer"):
        reconstruct(s, out=np.empty(4, np.uint32))


@pytest.fixture
def chunk_bytes():
    """Set the kernels' chunk size for one test and restore the module's (test-lowered) size afterwards."""
    saved = kernels.CHUNK_BYTES
    yield kernels.set_chunk_bytes
    kernels.set_chunk_bytes(saved)


@settings(max_examples=15, deadline=None)
@given(chunk=st.sampled_from([64, 192, 1 << 12, 5 << 10]), threads=st.integers(1, 4),
       extra=st.sampled_from([-1, 0, 1, 7]), chunks=st.integers(0, 9), ring=st.sampled_from([Z2_32, Z2_64]),
       prg=st.sampled_from(["aes128-ctr", "chacha20"]))
@example(chunk=64, threads=2, extra=0, chunks=4, ring=Z2_64, prg="aes128-ctr")  # ends exactly on a chunk boundary
@example(chunk=64, threads=3, extra=1, chunks=3, ring=Z2_32, prg="chacha20")  # one word into the next chunk
@example(chunk=1 << 12, threads=2, extra=-1, chunks=1, ring=Z2_64, prg="aes128-ctr")  # one word short of a chunk
@example(chunk=(2 << 20) + 64, threads=2, extra=5, chunks=1, ring=Z2_64, prg="aes128-ctr")  # chunk > 1 MiB: pieces
def test_any_chunk_size_and_thread_count_is_bit_identical(chunk, threads, extra, chunks, ring, prg):
    """Chunk and range boundaries never show in the result: share, share_compressed, reconstruct, expand and
    fill_keystreams equal the one-thread, one-chunk definition for sizes around multiples of the chunk."""
    per = chunk // ring.dtype.itemsize
    size = max(0, chunks * per + extra)
    x = (np.arange(size, dtype=np.uint64) * 0x9E3779B97F4A7C15).astype(ring.dtype)
    want = definition(x, 3, ring, prg)
    saved, previous = kernels.set_chunk_bytes(chunk), kernels.set_threads(threads)
    try:
        s = share(x, 3, ring=ring, key=KEY, prg=prg)
        c = share_compressed(x, 3, ring=ring, key=KEY, prg=prg)
        rows = np.empty((2, size), ring.dtype)
        kernels.fill_keystreams(rows, party_keys(KEY, 3, prg), prg)
        expanded, opened, opened_c = c.expand().data, reconstruct(s), reconstruct(c)
    finally:
        kernels.set_chunk_bytes(saved)
        kernels.set_threads(previous)
    assert (s.data == want).all() and (c.first == want[0]).all() and (rows == want[1:]).all()
    assert (expanded == want).all() and (opened == x).all() and (opened_c == x).all()


def test_chunk_size_is_checked(chunk_bytes):
    for bad in (0, 63, 100, -64, 64.0, True, None):
        with pytest.raises(ValueError, match="multiple of 64"):
            chunk_bytes(bad)
    previous = chunk_bytes(128)
    assert chunk_bytes(previous) == 128 and kernels.CHUNK_BYTES == previous


def test_fill_keystreams_needs_one_row_per_key():
    with pytest.raises(ShapeMismatchError, match="3 rows for 2 keys"):
        kernels.fill_keystreams(np.empty((3, 4), np.uint64), [KEY, KEY], "aes128-ctr")


@pytest.mark.parametrize("prg", ["aes128-ctr", "chacha20"])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, (1 << 20) - 1, (1 << 20) + 17, (2 << 20) + 64])
def test_write_keystream_at_the_end_of_a_buffer_and_past_the_zeros(prg, size):
    """``write_keystream`` into a buffer that ends with the data (the last <= 15 bytes go through a scratch) and
    for sizes past its 1 MiB of zeros (written in pieces): the cipher's own output, byte for byte."""
    key = bytes(range(16 if prg == "aes128-ctr" else 32))
    out = bytearray(size + 3)
    enc = encryptor(key, prg, bytes(16), 0)
    write_keystream(enc, memoryview(out), 3, size)
    write_keystream(enc, memoryview(out), 0, 0)
    want = encryptor(key, prg, bytes(16), 0).update(bytes(size + 16))
    assert bytes(out[3:]) == want[:size] and bytes(out[:3]) == bytes(3)
    tail = bytearray(16)
    write_keystream(enc, memoryview(tail), 0, 16)  # the stream continues where the pieces stopped
    assert bytes(tail) == want[size:]
