"""ChaCha20 in jax.numpy (refimpl.backend.jax_chacha): RFC 8439 vectors, and the same keystream as OpenSSL's ChaCha20
(refimpl.prg with cipher="chacha20") for any key, nonce and block counter."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax", reason="the JAX backend tests need jax (pip install -e '.[jax]')")
jnp = pytest.importorskip("jax.numpy", reason="the JAX backend tests need jax.numpy")

from refimpl import RefimplError, keystream
from refimpl.backend.jax_chacha import chacha20_block, chacha20_words, key_words, nonce_words

KEY_0_31 = bytes(range(32))

# (key, 12-byte nonce, block counter, expected 64-byte block) from RFC 8439
RFC_BLOCKS = [
    pytest.param(KEY_0_31, "000000090000004a00000000", 1,
                 "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
                 "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e", id="rfc8439-2.3.2"),
    pytest.param(bytes(32), "000000000000000000000000", 0,
                 "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
                 "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586", id="rfc8439-A.1-1"),
    pytest.param(bytes(32), "000000000000000000000000", 1,
                 "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
                 "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f", id="rfc8439-A.1-2"),
]


@pytest.fixture(autouse=True)
def strict_jax():
    """Strict dtype promotion and warnings as errors, locally (no global JAX configuration is changed)."""
    with jax.numpy_dtype_promotion("strict"), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _bytes(words) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


@pytest.mark.parametrize(("key", "nonce", "counter", "expected"), RFC_BLOCKS)
def test_rfc8439_block_vectors(key, nonce, counter, expected):
    words = chacha20_words(key_words(key), 16, counter=counter, nonce=bytes.fromhex(nonce))
    assert _bytes(words).hex() == expected
    # the vector is also what OpenSSL gives through refimpl.prg (16-byte nonce = LE counter + 12-byte nonce)
    ref = keystream(key, 64, cipher="chacha20", nonce=counter.to_bytes(4, "little") + bytes.fromhex(nonce))
    assert ref.tobytes().hex() == expected


def test_rfc8439_encryption_vector():
    """RFC 8439 section 2.4.2: "Ladies and Gentlemen ..." encrypted from block counter 1."""
    plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
    words = chacha20_words(key_words(KEY_0_31), 32, counter=1, nonce=bytes.fromhex("000000000000004a00000000"))
    stream = np.frombuffer(_bytes(words), dtype=np.uint8)[: len(plaintext)]
    cipher = np.frombuffer(plaintext, dtype=np.uint8) ^ stream
    assert cipher[:14].tobytes().hex() == "6e2e359a2568f98041ba0728dd0d"


def test_block_function_layout_and_batching():
    keys = np.stack([key_words(bytes([i]) * 32) for i in range(3)])
    out = chacha20_block(keys, jnp.arange(4, dtype=jnp.uint32) + jnp.uint32(7), nonce_words(bytes(12)))
    assert out.shape == (3, 4, 16) and out.dtype == jnp.uint32
    for i in range(3):
        ref = keystream(bytes([i]) * 32, 4 * 64, cipher="chacha20", offset=7 * 64).view("<u4")
        assert np.array_equal(np.asarray(out[i]).reshape(-1), ref)


@settings(max_examples=25)
@given(key=st.binary(min_size=32, max_size=32), nonce=st.binary(min_size=12, max_size=12),
       counter=st.integers(0, 2**32 - 3), nwords=st.sampled_from([16, 37]))
def test_same_keystream_as_openssl(key, nonce, counter, nwords):
    words = chacha20_words(key_words(key), nwords, counter=counter, nonce=nonce)
    ref = keystream(key, 4 * nwords, cipher="chacha20", nonce=counter.to_bytes(4, "little") + nonce)
    assert np.array_equal(np.asarray(words), ref.view("<u4"))


def test_under_jit_and_vmap_with_traced_keys():
    keys = np.stack([key_words(bytes([i + 1]) * 32) for i in range(4)])
    f = jax.jit(jax.vmap(lambda k: chacha20_words(k, 37, counter=2)))
    out = np.asarray(f(keys))
    for i in range(4):
        assert np.array_equal(out[i], keystream(bytes([i + 1]) * 32, 4 * 37, cipher="chacha20", offset=128).view("<u4"))


def test_exhausted_counter_raises_like_numpy():
    with pytest.raises(RefimplError, match="exhausted"):
        chacha20_words(key_words(bytes(32)), 33, counter=2**32 - 2)


def test_no_global_config_change():
    x64 = jax.config.jax_enable_x64
    chacha20_words(key_words(bytes(32)), 16)
    assert jax.config.jax_enable_x64 == x64


def test_jax_path_never_uses_jax_random():
    """Secrets on the JAX path come from ChaCha20 only: no module of the JAX path touches jax.random (threefry)."""
    import pathlib

    import refimpl

    root = pathlib.Path(refimpl.__file__).parent
    for name in ["backend/dispatch.py", "backend/jax_chacha.py", "backend/jax_ring.py", "sharing/jax_sharing.py",
                 "backend/jax_encoding.py", "sharing/tree.py", "sharing/api.py"]:
        text = (root / name).read_text()
        assert "jax.random" not in text and "PRNGKey" not in text and "random_bits" not in text, name


def test_long_batched_streams_match_openssl():
    """Several keys and nonces at once, over more than 8192 blocks and from a nonzero counter."""
    keys = [bytes([5]) * 32, bytes([6]) * 32]
    nonces = [bytes([1]) * 12, bytes([2]) * 12]
    nwords = 8192 * 16 + 37
    out = np.asarray(chacha20_words(np.stack([key_words(k) for k in keys]), nwords, counter=9,
                                    nonce=np.stack([nonce_words(n) for n in nonces])))
    for i in range(2):
        ref = keystream(keys[i], 4 * nwords, cipher="chacha20", nonce=(9).to_bytes(4, "little") + nonces[i])
        assert np.array_equal(out[i], ref.view("<u4"))
