"""The JAX backend: every primitive on both backends, compared element for element on the same inputs and keys,
eagerly, under jax.jit and under jax.vmap; the 64-bit rules; and that refimpl never touches JAX's global config.

JAX settings are strict here but local: dtype promotion 'strict' and warnings as errors in an autouse fixture, and
64-bit mode only inside ``jax.enable_x64(True)`` contexts (never ``jax.config.update``)."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax", reason="the JAX backend tests need jax (pip install -e '.[jax]')")
jnp = pytest.importorskip("jax.numpy", reason="the JAX backend tests need jax.numpy")

from refimpl import (
    Z2_32,
    Z2_64,
    BackendError,
    FixedPoint,
    KeyFormatError,
    KeyReuseError,
    OutOfRangeError,
    Ring,
    Shares,
    reconstruct,
    share,
    share_compressed,
    sum_shares,
)
from refimpl.sharing.jax_sharing import party_key_words, share_with_party_keys

KEY = bytes(range(16))
SIZE = 8  # one shape for most tests: every new shape is a new XLA compilation (seconds on a small CPU)
X64_RINGS = [Z2_64, Ring(2**20), Ring.prime(2**31 - 1), Ring(1000)]


@pytest.fixture(autouse=True)
def strict_jax():
    """Strict dtype promotion and warnings as errors, locally; and JAX's global config is left exactly as found."""
    x64_before = jax.config.jax_enable_x64
    with jax.numpy_dtype_promotion("strict"), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. JAX narrowing a 64-bit array in 32-bit mode
        warnings.simplefilter("error", RuntimeWarning)  # overflow / invalid value in NumPy
        yield
    assert jax.config.jax_enable_x64 == x64_before, "refimpl changed JAX's global 64-bit setting"


def x64():
    return jax.enable_x64(True)


def on(backend, x):
    return jnp.asarray(x) if backend == "jax" else np.asarray(x)


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def same_shares(a: Shares, b: Shares) -> bool:
    return a.ring == b.ring and same(a.data, b.data)


u32 = st.lists(st.integers(0, 2**32 - 1), min_size=SIZE, max_size=SIZE).map(lambda v: np.array(v, np.uint32))
i32 = st.lists(st.integers(-(2**31), 2**31 - 1), min_size=SIZE, max_size=SIZE).map(lambda v: np.array(v, np.int32))
BOUNDARY_U32 = np.array([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2, 3, 4], np.uint32)


def ring_values(ring: Ring):
    lo, hi = ring.signed_min, min(ring.modulus - 1, 2**63 - 1)
    return st.lists(st.integers(lo, hi), min_size=SIZE, max_size=SIZE).map(lambda v: np.array(v, np.int64))


# ---------------------------------------------------------------------------------------------------- hygiene
def test_import_and_numpy_use_never_import_jax():
    code = ("import sys, numpy as np, refimpl\n"
            "s = refimpl.share(np.arange(4), 3, key=bytes(16), prg='chacha20')\n"
            "refimpl.reconstruct(s + s); refimpl.FixedPoint().decode(refimpl.FixedPoint().encode([0.5]))\n"
            "refimpl.reconstruct_tree(refimpl.share_tree({'w': [np.arange(3)]}, 2, key=bytes(16)))\n"
            "assert 'jax' not in sys.modules, 'refimpl imported jax'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_jax_path_leaves_global_config_alone():
    before = (jax.config.jax_enable_x64, jax.config.jax_numpy_dtype_promotion, jax.config.jax_default_matmul_precision)
    s = share(jnp.arange(SIZE, dtype=jnp.uint32), 3, ring=Z2_32, key=KEY, prg="chacha20")
    reconstruct(s)
    with pytest.raises(BackendError):
        share(jnp.arange(SIZE, dtype=jnp.uint32), 3, ring=Z2_64, key=KEY, prg="chacha20")
    after = (jax.config.jax_enable_x64, jax.config.jax_numpy_dtype_promotion, jax.config.jax_default_matmul_precision)
    assert before == after


# ---------------------------------------------------------------------------------------------------- ring
@settings(max_examples=20)
@given(a=u32, b=u32, s=i32)
@example(a=BOUNDARY_U32, b=BOUNDARY_U32[::-1].copy(), s=np.array([0, -1, 1, -(2**31), 2**31 - 1, 5, -5, 7], np.int32))
def test_ring_ops_z2_32_both_backends(a, b, s):
    r = Z2_32
    np_out = [r.element(s), r.reduce(s), r.add(a, b), r.sub(a, b), r.neg(a), r.mul(a, b), r.sum(np.stack([a, b]))]
    ja, jb, js = jnp.asarray(a), jnp.asarray(b), jnp.asarray(s)
    jx_out = [r.element(js), r.reduce(js), r.add(ja, jb), r.sub(ja, jb), r.neg(ja), r.mul(ja, jb),
              r.sum(jnp.stack([ja, jb]))]
    for x, y in zip(np_out, jx_out):
        assert same(x, y)
    assert np.array_equal(r.lift(a), np.asarray(r.lift(ja)))  # int64 on NumPy, int32 in JAX's 32-bit mode
    assert r.lift(ja).dtype == jnp.int32


@pytest.mark.parametrize("ring", X64_RINGS, ids=repr)
def test_ring_ops_x64_rings_both_backends(ring):
    @settings(max_examples=10)
    @given(a=ring_values(ring), b=ring_values(ring))
    def check(a, b):
        with x64():
            ea, eb = ring.element(a), ring.element(b)
            ja, jb = ring.element(jnp.asarray(a)), ring.element(jnp.asarray(b))
            assert same(ea, ja) and same(eb, jb)
            assert same(ring.reduce(a), ring.reduce(jnp.asarray(a)))
            for op in (ring.add, ring.sub, ring.mul):
                assert same(op(ea, eb), op(ja, jb))
            assert same(ring.neg(ea), ring.neg(ja))
            assert same(ring.lift(ea), ring.lift(ja))
            assert same(ring.sum(np.stack([ea, eb, ea])), ring.sum(jnp.stack([ja, jb, ja])))

    check()


def test_element_range_errors_match_numpy():
    with x64():
        bad = np.array([1, 2**32], np.int64)
        with pytest.raises(OutOfRangeError) as np_err:
            Z2_32.element(bad)
        with pytest.raises(OutOfRangeError) as jx_err:
            Z2_32.element(jnp.asarray(bad))
        assert str(np_err.value) == str(jx_err.value)
        with pytest.raises(jax.errors.JaxRuntimeError, match="outside Z2_32's range"):
            jax.jit(Z2_32.element)(jnp.asarray(bad)).block_until_ready()
    with pytest.raises(TypeError, match="encode real numbers first"):
        Z2_32.element(jnp.ones(3))


# ---------------------------------------------------------------------------------------------------- 64-bit rules
def test_uint64_rings_need_x64_with_a_clear_error():
    for ring in (Z2_64, Ring(2**16), Ring.prime(65537)):
        with pytest.raises(BackendError, match="jax_enable_x64") as err:
            share(jnp.arange(3, dtype=jnp.uint32), 2, ring=ring, key=KEY, prg="chacha20")
        assert "JAX_ENABLE_X64=1" in str(err.value) and "Z2_32 works" in str(err.value)
    with pytest.raises(BackendError, match="jax_enable_x64"):
        FixedPoint().encode(jnp.ones(2))


def test_moduli_beyond_64_bits_raise():
    big = Ring(2**89 - 1)
    with x64():
        with pytest.raises(BackendError, match="at most 64 bits"):
            share(jnp.arange(3), 2, ring=big, key=KEY, prg="chacha20")
        with pytest.raises(BackendError, match="at most 64 bits"):
            big.add(jnp.arange(3), jnp.arange(3))


def test_x64_mode_z2_64_bit_identical():
    with x64():
        x = np.array([0, 1, -1, 2**63 - 1, -(2**63), 12345, -7, 3], np.int64)
        a = share(x, 4, ring=Z2_64, key=KEY, prg="chacha20")
        b = share(jnp.asarray(x), 4, ring=Z2_64, key=KEY, prg="chacha20")
        assert same_shares(a, b) and same(reconstruct(a), reconstruct(b))
        assert same(Z2_64.lift(reconstruct(b)), x)


# ---------------------------------------------------------------------------------------------------- sharing
def _ops(a: Shares, b: Shares, c: Shares, pub):
    return {"a": a, "add": a + b, "sub": a - b, "neg": -a, "padd": a + pub, "psub": a - pub, "rsub": pub - a,
            "pmul": a * pub, "rmul": 3 * a, "sum": sum_shares([a, b, c])}


def _np_pipeline(x, y, z, pub, ring=Z2_32):
    a, b, c = (share(v, 3, ring=ring, key=k, prg="chacha20") for v, k in zip((x, y, z), KEYS3))
    return _ops(a, b, c, pub)


KEYS3 = [bytes([i]) * 16 for i in range(3)]


def _jax_pipeline(x, y, z, pub):
    a, b, c = (share(v, 3, ring=Z2_32, key=k, prg="chacha20") for v, k in zip((x, y, z), KEYS3))
    out = _ops(a, b, c, pub)
    return out, {k: reconstruct(v) for k, v in out.items()}


_jit_pipeline = jax.jit(_jax_pipeline)


@settings(max_examples=15)
@given(x=u32, y=i32, z=u32, pub=u32)
@example(x=BOUNDARY_U32, y=np.full(SIZE, -1, np.int32), z=BOUNDARY_U32, pub=BOUNDARY_U32)
def test_sharing_and_homomorphic_ops_identical_eager_and_jit(x, y, z, pub):
    ref = _np_pipeline(x, y, z, pub)
    eager, _ = _jax_pipeline(jnp.asarray(x), jnp.asarray(y), jnp.asarray(z), jnp.asarray(pub))
    jitted, opened = _jit_pipeline(jnp.asarray(x), jnp.asarray(y), jnp.asarray(z), jnp.asarray(pub))
    for name, shares in ref.items():
        assert same_shares(shares, eager[name]), name
        assert same_shares(shares, jitted[name]), name
        assert same(reconstruct(shares), opened[name]), name
        assert same(reconstruct(shares), reconstruct(eager[name])), name
    assert same(np.asarray(Z2_32.lift(opened["add"])).astype(np.int64),
                (x.astype(np.int64) + y.astype(np.int64) + 2**31) % 2**32 - 2**31)


@pytest.mark.parametrize("ring", X64_RINGS, ids=repr)
def test_share_identical_in_x64_rings(ring):
    @settings(max_examples=5)
    @given(x=ring_values(ring))
    def check(x):
        with x64():
            a = share(x, 3, ring=ring, key=KEY, prg="chacha20")
            b = share(jnp.asarray(x), 3, ring=ring, key=KEY, prg="chacha20")
            assert same_shares(a, b)
            assert same(reconstruct(b), ring.element(x))
            assert same_shares(a + a, b + b) and same_shares(a * 5, b * 5) and same_shares(-a, -b)

    check()


_vmap_share = jax.jit(jax.vmap(lambda x: reconstruct(share(x, 3, ring=Z2_32, key=KEY, prg="chacha20")) + jnp.uint32(0)))
_vmap_keys = jax.jit(jax.vmap(lambda x, k: share_with_party_keys(x, k, ring=Z2_32)))


def test_vmap_over_secrets():
    xs = np.arange(4 * SIZE, dtype=np.uint32).reshape(4, SIZE) * np.uint32(2654435761)
    # one key for a batch of secrets would pad them all with the same masks: refused (issue 10), however nested
    one_key = jax.vmap(lambda x: share(x, 3, ring=Z2_32, key=KEY, prg="chacha20").data)
    for f in (_vmap_share, one_key, jax.vmap(jax.jit(lambda x: share(x, 3, ring=Z2_32, key=KEY, prg="chacha20").data))):
        with pytest.raises(KeyReuseError, match="same masks"):
            f(jnp.asarray(xs))
    # one key per secret, batched as data: each row equals NumPy's share under that row's key
    keys = [bytes([7, i]) * 8 for i in range(4)]
    words = np.stack([party_key_words(k, 3) for k in keys])
    batched = _vmap_keys(jnp.asarray(xs), jnp.asarray(words))
    assert batched.data.shape == (4, 3, SIZE)
    for i, k in enumerate(keys):
        assert same(batched.data[i], share(xs[i], 3, ring=Z2_32, key=k, prg="chacha20").data)
    assert same(jax.vmap(reconstruct)(batched), xs)


def test_aes_on_jax_host_masks_eagerly_refused_under_jit():
    x = np.arange(SIZE, dtype=np.uint32)
    a = share(x, 3, ring=Z2_32, key=KEY)  # default prg: aes128-ctr
    b = share(jnp.asarray(x), 3, ring=Z2_32, key=KEY)
    assert same_shares(a, b) and isinstance(b.data, jax.Array)
    with pytest.raises(BackendError, match="chacha20"):
        jax.jit(lambda v: share(v, 3, ring=Z2_32, key=KEY).data)(jnp.asarray(x))


def test_fresh_keys_refused_under_jit_allowed_eagerly():
    x = jnp.arange(SIZE, dtype=jnp.uint32)
    s = share(x, 3, ring=Z2_32, prg="chacha20")
    assert same(reconstruct(s), x)
    with pytest.raises(KeyFormatError, match="explicit key"):
        jax.jit(lambda v: share(v, 3, ring=Z2_32, prg="chacha20").data)(x)


def test_shares_pytree_and_validation():
    s = share(jnp.arange(SIZE, dtype=jnp.uint32), 3, ring=Z2_32, key=KEY, prg="chacha20")
    leaves, treedef = jax.tree_util.tree_flatten(s)
    assert len(leaves) == 1 and leaves[0] is s.data
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(rebuilt, Shares) and rebuilt.ring == Z2_32 and rebuilt.n == 3
    other = share(jnp.arange(SIZE, dtype=jnp.uint32), 4, ring=Z2_32, key=KEY, prg="chacha20")
    assert jax.tree_util.tree_structure(other) != treedef  # n is static aux data
    doubled = jax.jit(lambda t: t + t)(s)
    assert same(reconstruct(doubled), 2 * np.arange(SIZE, dtype=np.uint32))
    with pytest.raises(TypeError, match="dtype uint32"):
        Shares(Z2_32, jnp.zeros((3, 2), jnp.int32))
    with pytest.raises(ValueError):
        Shares(Z2_32, jnp.zeros((1, 2), jnp.uint32))
    # a NumPy sharing made after JAX was imported is a pytree too, and mixes with jax ones (the result is jax)
    np_s = share(np.arange(SIZE, dtype=np.uint32), 3, ring=Z2_32, key=KEY, prg="chacha20")
    assert same(jax.jit(reconstruct)(np_s), np.arange(SIZE, dtype=np.uint32))
    mixed = np_s + s
    assert isinstance(mixed.data, jax.Array) and same(mixed.data, (np_s + np_s).data)


def test_share_compressed_accepts_concrete_jax_refuses_traced():
    x = np.arange(SIZE, dtype=np.uint32)
    a = share_compressed(x, 3, ring=Z2_32, key=KEY, prg="chacha20")
    b = share_compressed(jnp.asarray(x), 3, ring=Z2_32, key=KEY, prg="chacha20")
    assert same(a.first, b.first) and a.keys == b.keys
    with pytest.raises(TypeError, match="cannot run under jax.jit"):
        jax.jit(lambda v: share_compressed(v, 3, ring=Z2_32, key=KEY).first)(jnp.asarray(x))


# ---------------------------------------------------------------------------------------------------- fixed point
FP16 = FixedPoint(ring=Z2_32)  # base 2, 16 fractional bits
FP_DEC = FixedPoint(base=10, frac_bits=3, ring=Z2_32)
f32 = st.lists(st.floats(-30000, 30000, width=32), min_size=SIZE, max_size=SIZE).map(lambda v: np.array(v, np.float32))
HALVES = (np.arange(-4, 4, dtype=np.float32) + np.float32(0.5)) / np.float32(65536)  # exact half-way products
_jit_encode = {fp: jax.jit(fp.encode) for fp in (FP16, FP_DEC)}
_jit_decode = {fp: jax.jit(fp.decode) for fp in (FP16, FP_DEC)}


@settings(max_examples=25)
@given(x=f32)
@example(x=HALVES)
@example(x=np.array([0.0005, -0.0005, 0.0015, -0.0025, 1e-3, -2.001, 32767.0, -32767.0], np.float32))
def test_encode_decode_float32_both_backends(x):
    for fp in (FP16, FP_DEC):
        ref = fp.encode(x)
        assert same(ref, fp.encode(jnp.asarray(x)))
        assert same(ref, _jit_encode[fp](jnp.asarray(x)))
        dec_np = fp.decode(ref).astype(np.float32)
        dec_jx = np.asarray(_jit_decode[fp](jnp.asarray(ref)))
        assert dec_jx.dtype == np.float32
        if fp is FP16:  # power-of-two scale: exactly NumPy's float64 result rounded to float32
            assert np.array_equal(dec_np, dec_jx)
        else:  # k / 1000 in float32: within one float32 ulp of NumPy's float64 result
            assert np.all(np.abs(dec_np - dec_jx) <= np.spacing(np.abs(dec_np)))


def test_encode_halfway_values_round_to_even():
    x = jnp.asarray(HALVES)
    assert same(FP16.ring.lift(FP16.encode(x)), np.array([-4, -2, -2, 0, 0, 2, 2, 4], np.int32))  # (k + 0.5)


def test_encode_under_vmap():
    xs = np.linspace(-100, 100, 4 * SIZE, dtype=np.float32).reshape(4, SIZE)
    out = jax.vmap(FP16.encode)(jnp.asarray(xs))
    assert same(out, FP16.encode(xs))


@pytest.mark.parametrize("fp", [FixedPoint(), FixedPoint(base=10, frac_bits=3), FixedPoint(ring=Ring(2**40)),
                                FixedPoint(base=10, frac_bits=3, ring=Ring.prime(2**31 - 1))], ids=repr)
def test_encode_decode_x64_bit_identical(fp):
    rng = np.random.default_rng(3)
    limit = fp.max_abs_integer / fp.scale
    x = np.concatenate([rng.normal(size=40) * rng.choice([1e-4, 1.0, 1e3, limit / 4], 40),
                        (np.arange(-3, 3) + 0.5) / fp.scale, [0.0, -0.0, limit * 0.999]])
    with x64():
        ref = fp.encode(x)
        got = jax.jit(fp.encode)(jnp.asarray(x))
        assert same(ref, got)
        assert same(fp.decode(ref), jax.jit(fp.decode)(got))


_decode64 = {fp: jax.jit(fp.decode) for fp in (FixedPoint(base=10, frac_bits=3), FixedPoint(base=3, frac_bits=33))}
wide_ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(2**53 - 4, 2**55), st.integers(-(2**55), -(2**53) + 4))


@settings(max_examples=30)
@given(k=st.lists(wide_ints, min_size=SIZE, max_size=SIZE))
@example(k=[2**53 + 1, -(2**63), 2**63 - 1, 2**53, -(2**53) - 1, 1500 * 2**40 + 500, 2**62 + 500, 3])
def test_decode_x64_beyond_2_53_correctly_rounded(k):
    """|k| > 2**53 with a non-power-of-two scale: float(k) is rounded, yet decode matches NumPy's exact k / scale."""
    with x64():
        for fp, dec in _decode64.items():
            r = Z2_64.element(np.array(k, np.int64))
            assert same(fp.decode(r), dec(jnp.asarray(r)))


def test_encode_errors_match_numpy_eagerly_and_fail_under_jit():
    for bad in ([1.0, 40000.0], [0.0, np.inf], [np.nan, 1.0]):
        with pytest.raises(OutOfRangeError) as np_err:
            FP16.encode(np.array(bad, np.float32))
        with pytest.raises(OutOfRangeError) as jx_err:
            FP16.encode(jnp.asarray(np.array(bad, np.float32)))
        assert str(np_err.value) == str(jx_err.value)
        with pytest.raises(jax.errors.JaxRuntimeError, match="OutOfRangeError"):
            _jit_encode[FP16](jnp.asarray(np.array(bad + [0.0] * (SIZE - 2), np.float32))).block_until_ready()
    with pytest.raises(OutOfRangeError, match="does not fit"):
        FP16.encode(jnp.asarray([1, 40000], dtype=jnp.int32))
    with pytest.raises(TypeError, match="real numbers"):
        FP16.encode(jnp.asarray([True, False]))
    with pytest.raises(OutOfRangeError, match="negative"):
        FP16.decode(jnp.asarray([-1, 2], dtype=jnp.int32))


def test_integer_inputs_encode_alike():
    x = np.array([-32767, -1, 0, 1, 7, 32767, 100, -100], np.int32)
    assert same(FP16.encode(x), FP16.encode(jnp.asarray(x)))
    assert same(FP_DEC.encode(x), FP_DEC.encode(jnp.asarray(x)))


def test_end_to_end_jit_pipeline_matches_numpy():
    """Encode, share, add, scale, reconstruct and decode in one jitted function."""
    def pipeline(x, y):
        a = share(FP16.encode(x), 3, ring=Z2_32, key=KEYS3[0], prg="chacha20")
        b = share(FP16.encode(y), 3, ring=Z2_32, key=KEYS3[1], prg="chacha20")
        return FP16.decode(reconstruct((a + b) * 2))

    x = np.linspace(-10, 10, SIZE, dtype=np.float32)
    y = np.linspace(3, -3, SIZE, dtype=np.float32)
    ref = pipeline(x, y).astype(np.float32)
    got = jax.jit(pipeline)(jnp.asarray(x), jnp.asarray(y))
    assert np.array_equal(ref, np.asarray(got))
