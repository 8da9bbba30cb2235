"""Tests of refimpl.prg: known-answer vectors, determinism, seeking, capacity, key derivation, bad input."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import (
    KeyFormatError,
    RefimplError,
    Stream,
    derive_key,
    fresh_key,
    keystream,
)
from refimpl.prg import CIPHERS, key_length
from refimpl.testing import strategies as rst

KEY_LEN = {"aes128-ctr": 16, "chacha20": 32}

# ------------------------------------------------------------------------------------------------ known answers
# NIST SP 800-38A (2001), Appendix F.5.1 CTR-AES128.Encrypt.
F51_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
F51_COUNTER = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
F51_OUTPUT_BLOCKS = [  # the four "Output Block" values: the keystream
    "ec8cdf7398607cb0f2d21675ea9ea1e4",
    "362b7c3c6773516318a077d7fc5073ae",
    "6a2cc3787889374fbeb4c81b17ba6c44",
    "e89c399ff0f198c6d40a31db156cabfe",
]
F51_PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710"
)
F51_CIPHERTEXT = bytes.fromhex(
    "874d6191b620e3261bef6864990db6ce" "9806f66b7970fdff8617187bb9fffdff"
    "5ae4df3edbd5d35e5b4f09020db03eab" "1e031dda2fbe03d1792170a0f3009cee"
)

# RFC 8439 (2018): key 00 01 .. 1f.
RFC_KEY = bytes(range(32))
# Section 2.3.2: block function, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, block count 1.
RFC_232_NONCE = bytes.fromhex("000000090000004a00000000")
RFC_232_BLOCK = bytes.fromhex(
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
)
# Section 2.4.2: encryption with nonce 00:00:00:00:00:00:00:4a:00:00:00:00, initial counter 1.
RFC_242_NONCE = bytes.fromhex("000000000000004a00000000")
RFC_242_PLAINTEXT = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
                     b"sunscreen would be it.")
RFC_242_CIPHERTEXT = bytes.fromhex(
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
    "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)
# Appendix A.1, test vector #1: all-zero key and nonce, block counter 0.
RFC_A1_BLOCK0 = bytes.fromhex(
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def test_aes128_ctr_nist_sp800_38a_f51_output_blocks():
    ks = keystream(F51_KEY, 64, nonce=F51_COUNTER).tobytes()
    assert ks.hex() == "".join(F51_OUTPUT_BLOCKS)


def test_aes128_ctr_nist_sp800_38a_f51_ciphertext():
    ks = keystream(F51_KEY, len(F51_PLAINTEXT), nonce=F51_COUNTER).tobytes()
    assert _xor(F51_PLAINTEXT, ks) == F51_CIPHERTEXT
    assert _xor(F51_CIPHERTEXT, ks) == F51_PLAINTEXT


@pytest.mark.parametrize("block", range(4))
def test_aes128_ctr_f51_each_block_by_seeking(block):
    """Seeking to block i reproduces output block i (the counter is the 128-bit big-endian initial block + i)."""
    s = Stream(F51_KEY, nonce=F51_COUNTER, offset=16 * block)
    assert s.read(16).tobytes().hex() == F51_OUTPUT_BLOCKS[block]


def test_aes128_ctr_counter_wraps_modulo_2_128():
    """The counter after ff..ff is 00..00 (NIST SP 800-38A B.1: the standard incrementing function, mod 2**128)."""
    wrapped = keystream(F51_KEY, 32, nonce=b"\xff" * 16, offset=16)
    assert np.array_equal(wrapped, keystream(F51_KEY, 32, nonce=bytes(16)))


def test_chacha20_rfc8439_2_3_2_block_function():
    # a 16-byte nonce is the RFC's state layout: 4-byte little-endian block counter, then the 12-byte nonce
    s = Stream(RFC_KEY, cipher="chacha20", nonce=(1).to_bytes(4, "little") + RFC_232_NONCE)
    assert s.read(64).tobytes() == RFC_232_BLOCK
    # the same block is block 1 of the stream with counter 0, i.e. byte offset 64
    assert keystream(RFC_KEY, 64, cipher="chacha20", nonce=RFC_232_NONCE, offset=64).tobytes() == RFC_232_BLOCK


def test_chacha20_rfc8439_2_4_2_keystream():
    n = len(RFC_242_PLAINTEXT)
    ks = keystream(RFC_KEY, n, cipher="chacha20", nonce=(1).to_bytes(4, "little") + RFC_242_NONCE).tobytes()
    assert _xor(RFC_242_PLAINTEXT, ks) == RFC_242_CIPHERTEXT
    ks_offset = keystream(RFC_KEY, n, cipher="chacha20", nonce=RFC_242_NONCE, offset=64).tobytes()
    assert ks_offset == ks


def test_chacha20_rfc8439_a1_zero_key_is_the_default_stream():
    """With no nonce the stream starts at block 0 with an all-zero nonce: RFC 8439 A.1 test vector #1."""
    assert Stream(bytes(32), cipher="chacha20").read(64).tobytes() == RFC_A1_BLOCK0


def test_default_cipher_is_aes128_ctr_with_zero_counter_block():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes(range(16))
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = b"".join(enc.update(i.to_bytes(16, "big")) for i in range(3))
    assert Stream(key).read(48).tobytes() == blocks


# ------------------------------------------------------------------------------------------------ determinism, seeking
@pytest.mark.parametrize("cipher", CIPHERS)
def test_same_key_same_stream_and_different_keys_differ(cipher):
    k1, k2 = bytes(KEY_LEN[cipher]), bytes([1]) + bytes(KEY_LEN[cipher] - 1)
    a, b, c = (Stream(k, cipher=cipher).read(1000) for k in (k1, k1, k2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.count_nonzero(a == c) < 30  # ~1000/256 = 4 expected coincidences


@pytest.mark.parametrize("cipher", CIPHERS)
def test_missing_key_draws_a_fresh_one(cipher):
    assert not np.array_equal(Stream(cipher=cipher).read(32), Stream(cipher=cipher).read(32))


@pytest.mark.parametrize("cipher", CIPHERS)
def test_nonce_separates_streams(cipher):
    key = bytes(KEY_LEN[cipher])
    nonce = bytes(15) + b"\x01" if cipher == "aes128-ctr" else bytes(11) + b"\x01"
    assert not np.array_equal(keystream(key, 64, cipher=cipher), keystream(key, 64, cipher=cipher, nonce=nonce))


@given(cipher=rst.prgs(), data=st.data(),
       start=st.one_of(st.integers(0, 300), st.integers(0, 2**37)),
       pieces=st.lists(st.integers(0, 150), min_size=1, max_size=8))
@example(cipher="chacha20", data=None, start=63, pieces=[1, 64, 0, 65]).via("block boundaries")
@example(cipher="aes128-ctr", data=None, start=15, pieces=[1, 16, 0, 17]).via("block boundaries")
def test_reading_in_pieces_equals_reading_at_once(cipher, data, start, pieces):
    key = data.draw(rst.keys(length=KEY_LEN[cipher])) if data is not None else bytes(range(KEY_LEN[cipher]))
    whole = keystream(key, sum(pieces), cipher=cipher, offset=start)
    s = Stream(key, cipher=cipher, offset=start)
    parts = []
    for size in pieces:
        assert s.position == start + sum(len(p) for p in parts)
        parts.append(s.read(size))
    assert np.array_equal(np.concatenate(parts), whole)
    assert s.position == start + sum(pieces)


@given(cipher=rst.prgs(), offset=st.integers(0, 500), size=st.integers(0, 200))
def test_offset_is_a_slice_of_the_stream(cipher, offset, size):
    key = bytes(range(KEY_LEN[cipher]))
    long = keystream(key, offset + size, cipher=cipher)
    assert np.array_equal(keystream(key, size, cipher=cipher, offset=offset), long[offset:])
    s = Stream(key, cipher=cipher)
    s.read(offset + size)
    s.seek(offset)  # seeking backwards re-reads the same bytes
    assert np.array_equal(s.read(size), long[offset:])


@pytest.mark.parametrize("cipher", CIPHERS)
def test_far_offset_equals_advanced_counter(cipher):
    """Byte offset 64 * b equals starting the counter at block b (AES: 4 blocks of 16 bytes per 64)."""
    key = bytes(range(KEY_LEN[cipher]))
    blocks = 2**31 + 5
    if cipher == "aes128-ctr":
        nonce = (blocks * 4).to_bytes(16, "big")
    else:
        nonce = blocks.to_bytes(4, "little") + bytes(12)
    assert np.array_equal(keystream(key, 100, cipher=cipher, offset=64 * blocks),
                          keystream(key, 100, cipher=cipher, nonce=nonce))


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int64])
def test_read_into_is_little_endian_words_of_the_bytes(cipher, dtype):
    key = bytes(range(KEY_LEN[cipher]))
    out = np.empty((3, 5), dtype=dtype)
    s = Stream(key, cipher=cipher, offset=7)
    s.read_into(out)
    raw = keystream(key, out.nbytes, cipher=cipher, offset=7)
    assert np.array_equal(out.ravel(), raw.view(np.dtype(dtype).newbyteorder("<")).astype(dtype))
    assert s.position == 7 + out.nbytes


def test_large_read_crosses_internal_chunks():
    key = bytes(16)
    n = (1 << 20) * 2 + 123  # more than two internal 1 MiB chunks, odd tail
    s = Stream(key, offset=5)
    whole = s.read(n)
    assert np.array_equal(whole[-1000:], keystream(key, 1000, offset=5 + n - 1000))
    assert np.array_equal(whole[(1 << 20) - 3:(1 << 20) + 3], keystream(key, 6, offset=5 + (1 << 20) - 3))


# ------------------------------------------------------------------------------------------------ AES-CTR engines
# prg.encryptor computes AES-CTR through OpenSSL's GCM engine over counter runs IV||2 .. IV||(2^32 - 1) and through
# its CTR engine elsewhere; every byte must equal the plain CTR engine's (cryptography's modes.CTR, the definition).
def _ctr_reference(key: bytes, counter: int, nbytes: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor().update(bytes(nbytes))


_LOW_WORDS = st.sampled_from([0, 1, 2, 3, 7, 2**32 - 1, 2**32 - 2, 2**32 - 3, 2**32 - 5000]) | st.integers(0, 2**32 - 1)
_HIGH_WORDS = st.sampled_from([0, 1, 2**96 - 1]) | st.integers(0, 2**96 - 1)
_PIECES = st.lists(st.sampled_from([1, 15, 16, 17, 4096, 2**16 - 1, 2**16, 2**16 + 17, 3 * 2**17 + 5]) |
                   st.integers(0, 2**17), min_size=1, max_size=5)


@contextlib.contextmanager
def _engine(name: str):
    """Force refimpl.prg's AES engine (the choice is per process: measured, or REFIMPL_AES_ENGINE)."""
    from refimpl import prg

    saved, prg._engine = prg._engine, name
    try:
        yield
    finally:
        prg._engine = saved


@pytest.mark.parametrize("engine", ["gcm", "ctr"])
@given(key=st.binary(min_size=16, max_size=16), high=_HIGH_WORDS, low=_LOW_WORDS, pieces=_PIECES,
       data_nonzero=st.booleans())
@example(key=bytes(16), high=0, low=0, pieces=[2**16 + 32], data_nonzero=False)  # a stream's start: 2 CTR blocks
@example(key=bytes(16), high=0, low=2**32 - 3, pieces=[2**17], data_nonzero=False)  # across the low word's wrap
@example(key=bytes(16), high=2**96 - 1, low=2**32 - 2, pieces=[2**17], data_nonzero=True)  # across 2^128
@example(key=bytes(16), high=5, low=2, pieces=[20, 2**16, 2**17], data_nonzero=False)  # short, then GCM-sized
def test_aes_encryptor_is_plain_ctr_bit_for_bit(engine, key, high, low, pieces, data_nonzero):
    from refimpl.prg import encryptor

    counter = (high << 32) | low
    total = sum(pieces)
    data = bytes(range(256)) * (total // 256 + 1) if data_nonzero else bytes(total + 256)
    out, pos = bytearray(), 0
    with _engine(engine):
        enc = encryptor(key, "aes128-ctr", counter.to_bytes(16, "big"), 0)
        for size in pieces:
            buf = bytearray(size + 15)
            assert enc.update_into(data[pos:pos + size], buf) == size
            out += buf[:size]
            pos += size
    expected = _xor(_ctr_reference(key, counter, total), data[:total])
    assert bytes(out) == expected


def test_aes_encryptor_switches_engines_where_a_gcm_run_ends(monkeypatch):
    """A GCM run covers 2^32 - 2 counters (64 GiB); the switch back to the CTR engine at its end is exercised by
    shortening the run, which must not change a byte."""
    from refimpl import prg

    monkeypatch.setattr(prg, "_GCM_SPAN", 4097)
    monkeypatch.setattr(prg, "_engine", "gcm")
    key = bytes(range(16))
    enc = prg.encryptor(key, "aes128-ctr", bytes(16), 0)
    sizes = [2**16, 2**17, 2**16 + 3, 5]
    out = bytearray()
    for size in sizes:
        buf = bytearray(size + 15)
        enc.update_into(bytes(size), buf)
        out += buf[:size]
    assert bytes(out) == _ctr_reference(key, 0, sum(sizes))


@pytest.mark.parametrize("setting, expected", [("gcm", "gcm"), ("CTR", "ctr"), ("", None)])
def test_aes_engine_is_chosen_by_the_environment_or_measured(monkeypatch, setting, expected):
    from refimpl import prg

    monkeypatch.setattr(prg, "_engine", None)
    monkeypatch.setenv("REFIMPL_AES_ENGINE", setting)
    assert prg.aes_engine() == (expected or prg.aes_engine()) and prg.aes_engine() in ("gcm", "ctr")


def test_aes_engine_setting_is_validated(monkeypatch):
    from refimpl import prg

    monkeypatch.setattr(prg, "_engine", None)
    monkeypatch.setenv("REFIMPL_AES_ENGINE", "ecb")
    with pytest.raises(ValueError, match="REFIMPL_AES_ENGINE must be 'gcm' or 'ctr', got 'ecb'"):
        prg.aes_engine()


def test_aes_encryptor_update_equals_update_into():
    from refimpl.prg import encryptor

    key = bytes(range(16))
    a, b = encryptor(key, "aes128-ctr", bytes(16), 0), encryptor(key, "aes128-ctr", bytes(16), 0)
    buf = bytearray(2**17 + 15)
    b.update_into(bytes(2**17), buf)
    assert a.update(bytes(2**17)) == bytes(buf[:2**17]) == _ctr_reference(key, 0, 2**17)


# ------------------------------------------------------------------------------------------------ capacity
def test_chacha20_capacity_error_at_the_32_bit_block_counter():
    key = bytes(32)
    end = (1 << 32) * 64
    s = Stream(key, cipher="chacha20", offset=end - 64)
    assert s.read(64).tobytes() == keystream(key, 64, cipher="chacha20",
                                             nonce=(2**32 - 1).to_bytes(4, "little") + bytes(12)).tobytes()
    with pytest.raises(RefimplError, match=r"ChaCha20 stream exhausted.*offset 274877906944"):
        s.read(1)
    s.seek(end - 10)
    with pytest.raises(RefimplError, match="reading 11 bytes"):
        s.read(11)
    assert s.position == end - 10  # a refused read does not advance
    assert len(s.read(10)) == 10


def test_empty_reads_at_the_end_of_a_chacha20_stream():
    end = (1 << 32) * 64
    assert len(Stream(bytes(32), cipher="chacha20", offset=end).read(0)) == 0
    assert len(keystream(bytes(32), 0, cipher="chacha20", offset=end)) == 0
    with pytest.raises(RefimplError, match="exhausted"):
        Stream(bytes(32), cipher="chacha20", offset=end).read(1)


def test_chacha20_capacity_counts_the_initial_counter():
    s = Stream(bytes(32), cipher="chacha20", nonce=(2**32 - 2).to_bytes(4, "little") + bytes(12))
    s.read(128)
    with pytest.raises(RefimplError, match="exhausted"):
        s.read(1)


def test_aes_has_no_practical_capacity_limit():
    s = Stream(bytes(16), offset=(1 << 40) * 64)
    assert len(s.read(16)) == 16


# ------------------------------------------------------------------------------------------------ key derivation
def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, independent of the `cryptography` package."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def _label(part) -> bytes:
    if isinstance(part, int):
        body, tag = str(part).encode(), b"i"
    elif isinstance(part, str):
        body, tag = part.encode(), b"s"
    else:
        body, tag = part, b"b"
    return tag + len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("labels", [(), ("share", 1), ("secagg", 3, 17), (b"\x00raw", "é", -5)])
@pytest.mark.parametrize("length", [16, 32])
def test_derive_key_is_hkdf_sha256_with_the_documented_label_encoding(labels, length):
    master = bytes(range(16))
    info = b"".join(_label(p) for p in (length, *labels))
    assert derive_key(master, *labels, length=length) == _hkdf_sha256(master, b"refimpl/v1/kdf", info, length)


def test_derive_key_pinned_value():
    assert derive_key(bytes(16), "share", 1, length=16).hex().startswith("3b923810fb2ccf21")


def test_derive_key_lengths_are_domain_separated():
    short, long = derive_key(bytes(16), "share", 1, length=16), derive_key(bytes(16), "share", 1, length=32)
    assert long[:16] != short  # plain HKDF would make the 16-byte key a prefix of the 32-byte one


label_parts = st.one_of(st.text(max_size=4), st.integers(-3, 300), st.binary(max_size=4))


@given(a=st.lists(label_parts, max_size=4), b=st.lists(label_parts, max_size=4), master=rst.keys())
@example(a=["ab"], b=["a", "b"], master=bytes(16))
@example(a=[1], b=["1"], master=bytes(16))
@example(a=[b"1"], b=["1"], master=bytes(16))
@example(a=["share", 1], b=["share", 2], master=bytes(16))
@example(a=[], b=[""], master=bytes(16))
def test_distinct_labels_give_distinct_keys(a, b, master):
    ka, kb = derive_key(master, *a), derive_key(master, *b)
    assert derive_key(master, *a) == ka  # deterministic
    if a == b and all(type(x) is type(y) for x, y in zip(a, b)):
        assert ka == kb
    else:
        assert ka != kb


def test_derived_keys_depend_on_the_master_key():
    assert derive_key(bytes(16), "x") != derive_key(bytes(15) + b"\x01", "x")
    assert derive_key(bytes(16), "x") != derive_key(bytes(32), "x")


def test_derived_streams_are_unrelated():
    master = bytes(16)
    s1 = Stream(derive_key(master, "share", 1)).read(4096)
    s2 = Stream(derive_key(master, "share", 2)).read(4096)
    assert np.count_nonzero(s1 == s2) < 60  # 4096/256 = 16 expected coincidences
    assert not np.array_equal(s1, Stream(master).read(4096))


def test_fresh_key_lengths_and_freshness():
    assert len(fresh_key()) == 16 and len(fresh_key(32)) == 32
    assert fresh_key() != fresh_key()
    assert key_length("aes128-ctr") == 16 and key_length("chacha20") == 32


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("cipher", ["aes", "AES128-CTR", "chacha", "", None, 3])
def test_unknown_cipher_is_named(cipher):
    with pytest.raises(ValueError, match=re.escape(f"unknown stream cipher {cipher!r}")):
        Stream(bytes(16), cipher=cipher)
    with pytest.raises(ValueError, match="unknown stream cipher"):
        keystream(bytes(16), 4, cipher=cipher)
    with pytest.raises(ValueError, match="unknown stream cipher"):
        key_length(cipher)


@pytest.mark.parametrize("cipher, length", [("aes128-ctr", 0), ("aes128-ctr", 15), ("aes128-ctr", 17),
                                            ("aes128-ctr", 32), ("chacha20", 16), ("chacha20", 31),
                                            ("chacha20", 33)])
def test_wrong_key_length_is_named(cipher, length):
    with pytest.raises(KeyFormatError, match=f"got {length} bytes"):
        Stream(bytes(length), cipher=cipher)


@pytest.mark.parametrize("key", ["0" * 16, 12345, [0] * 16, np.zeros(16, np.uint8)])
def test_key_of_wrong_type_is_named(key):
    with pytest.raises(TypeError, match=type(key).__name__):
        Stream(key)


def test_bytearray_and_memoryview_keys_are_accepted():
    assert np.array_equal(Stream(bytearray(16)).read(8), Stream(memoryview(bytes(16))).read(8))


@pytest.mark.parametrize("cipher, nonce", [("aes128-ctr", bytes(12)), ("aes128-ctr", bytes(17)),
                                           ("chacha20", bytes(8)), ("chacha20", bytes(13))])
def test_wrong_nonce_length_is_named(cipher, nonce):
    with pytest.raises(KeyFormatError, match=rf"nonce must be .* got {len(nonce)} bytes"):
        Stream(bytes(KEY_LEN[cipher]), cipher=cipher, nonce=nonce)


@pytest.mark.parametrize("offset", [-1, 1.5, "3", True, None])
def test_bad_offset_is_named(offset):
    with pytest.raises(ValueError, match=re.escape(f"offset must be a non-negative integer, got {offset!r}")):
        Stream(bytes(16), offset=offset)
    s = Stream(bytes(16))
    with pytest.raises(ValueError, match="offset"):
        s.seek(offset)


@pytest.mark.parametrize("nbytes", [-1, 2.0, "8", True])
def test_bad_read_size_is_named(nbytes):
    with pytest.raises(ValueError, match=re.escape(f"got {nbytes!r}")):
        Stream(bytes(16)).read(nbytes)


@pytest.mark.parametrize("out", [np.empty(8, np.float64), np.empty((4, 4), np.uint8)[:, ::2], [0] * 8,
                                 np.empty(3, object)])
def test_read_into_refuses_non_contiguous_or_non_integer_arrays(out):
    s = Stream(bytes(16))
    with pytest.raises(TypeError, match="C-contiguous integer numpy array"):
        s.read_into(out)
    assert s.position == 0


@pytest.mark.parametrize("length", [0, 8, 24, 64, "16", None])
def test_fresh_and_derived_key_lengths_are_checked(length):
    with pytest.raises(KeyFormatError, match=re.escape(f"length={length!r}")):
        fresh_key(length)
    with pytest.raises(KeyFormatError, match=re.escape(f"length={length!r}")):
        derive_key(bytes(16), "x", length=length)


@pytest.mark.parametrize("master, exc", [(bytes(8), KeyFormatError), (bytes(24), KeyFormatError),
                                         ("k" * 16, TypeError), (None, TypeError)])
def test_bad_master_key(master, exc):
    with pytest.raises(exc, match="master key"):
        derive_key(master, "x")


@pytest.mark.parametrize("label", [1.5, True, None, ("a",), ["a"]])
def test_bad_label_type_is_named(label):
    with pytest.raises(TypeError, match=re.escape(f"KDF labels are str, int or bytes, got {label!r}")):
        derive_key(bytes(16), label)


def test_repr_never_shows_the_key():
    key = bytes.fromhex("deadbeef" * 4)
    text = repr(Stream(key, offset=3))
    assert text == "Stream(cipher='aes128-ctr', position=3)"
    assert "dead" not in text and "\\xde" not in text
