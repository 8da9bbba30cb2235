"""Keyed, seekable, counter-mode cryptographic streams: the only source of randomness for secrets.

Two ciphers, both through the ``cryptography`` package (OpenSSL):

* ``"aes128-ctr"`` (default): AES-128 in counter mode (NIST SP 800-38A). A 16-byte key; the 16-byte initial
  counter block (``nonce``) defaults to zero and increments as a 128-bit big-endian integer.
* ``"chacha20"``: ChaCha20 (RFC 8439). A 32-byte key; a 12-byte nonce (default zero) and a 32-bit block counter
  (default 0), so one stream holds at most 256 GiB.

Speed: the AES-CTR keystream is computed, byte for byte, through OpenSSL's AES-GCM engine wherever a run of counters
allows it (GCM encrypts with the CTR keystream of the counters IV||2, IV||3, ...; on CPUs with VAES and AVX-512 that
engine runs about twice as fast as OpenSSL's CTR engine); see :func:`encryptor`. The tests compare every byte with
the plain CTR engine.

A :class:`Stream` reads keystream bytes sequentially and can seek to any byte offset; :func:`keystream` is the
pure function underneath. Independent streams come from one master key through :func:`derive_key`
(HKDF-SHA256, RFC 5869) with labels such as ``("share", party)`` or ``("secagg", round, client)``, so no stream is
used twice. With no key, :func:`fresh_key` draws 128 or 256 bits from the operating system.

Example:
    >>> s = Stream(bytes(16))
    >>> s.read(4).tolist()
    [102, 233, 75, 212]
    >>> s.seek(0); s.read(2).tolist()
    [102, 233]
    >>> derive_key(bytes(16), "share", 1, length=16).hex()[:16]
    '3b923810fb2ccf21'

References:
    NIST SP 800-38A (2001), Recommendation for Block Cipher Modes of Operation, F.5.1.
    RFC 8439 (2018), ChaCha20 and Poly1305 for IETF Protocols.
    RFC 5869 (2010), HMAC-based Extract-and-Expand Key Derivation Function (HKDF).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from refimpl._checks import check_key
from refimpl.errors import KeyFormatError, RefimplError

__all__ = ["CIPHERS", "Stream", "aes_engine", "keystream", "derive_key", "fresh_key", "key_length"]

CIPHERS = ("aes128-ctr", "chacha20")
_KEY_LENGTH = {"aes128-ctr": 16, "chacha20": 32}
_NONCE_LENGTH = {"aes128-ctr": 16, "chacha20": 12}
_BLOCK = {"aes128-ctr": 16, "chacha20": 64}
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)
_KDF_SALT = b"refimpl/v1/kdf"


def check_cipher(cipher: Any) -> str:
    if cipher not in CIPHERS:
        raise ValueError(f"unknown stream cipher {cipher!r}; choose one of {', '.join(map(repr, CIPHERS))}")
    return str(cipher)


def key_length(cipher: str) -> int:
    """Key length in bytes of a stream cipher: 16 for ``aes128-ctr``, 32 for ``chacha20``."""
    return _KEY_LENGTH[check_cipher(cipher)]


def fresh_key(length: int = 16) -> bytes:
    """A fresh key of ``length`` (16 or 32) bytes from the operating system's CSPRNG."""
    if length not in (16, 32):
        raise KeyFormatError(f"fresh keys are 16 or 32 bytes long, got length={length!r}")
    return os.urandom(length)


def _encode_label(part: Any) -> bytes:
    if isinstance(part, bool) or not isinstance(part, (str, int, bytes)):
        raise TypeError(f"KDF labels are str, int or bytes, got {part!r} of type {type(part).__name__}")
    if isinstance(part, int):
        body, tag = str(part).encode(), b"i"
    elif isinstance(part, str):
        body, tag = part.encode("utf-8"), b"s"
    else:
        body, tag = part, b"b"
    return tag + len(body).to_bytes(4, "big") + body


def derive_key(master: bytes, *labels: str | int | bytes, length: int = 16) -> bytes:
    """Derive an independent key from a master key and a label path, with HKDF-SHA256.

    Labels are encoded unambiguously (type tag and length prefix per part), so distinct label tuples always give
    independent keys: ``derive_key(k, "ab")`` and ``derive_key(k, "a", "b")`` differ. The output length is the
    first part of the HKDF ``info``, so a 16-byte key is not a prefix of the 32-byte key for the same labels (plain
    HKDF would make it one).

    Args:
        master: 16 or 32 secret bytes.
        *labels: the path of the stream, e.g. ``("share", 2)`` or ``("secagg", round, client)``.
        length: bytes of output key (16 or 32).

    Returns:
        The derived key.

    Raises:
        KeyFormatError: ``master`` is not 16 or 32 bytes, or ``length`` is not 16 or 32.
    """
    master = check_key(master, what="master key")
    if length not in (16, 32):
        raise KeyFormatError(f"derived keys are 16 or 32 bytes long, got length={length!r}")
    info = b"".join(_encode_label(p) for p in (length, *labels))  # the length first: 16- and 32-byte keys unrelated
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_KDF_SALT, info=info).derive(master)


def aes_engine() -> str:
    """Which OpenSSL engine computes long AES-CTR keystreams in this process: ``"gcm"`` or ``"ctr"`` (the bytes are
    the same). ``REFIMPL_AES_ENGINE=gcm|ctr`` chooses; otherwise it is measured once, on first use (256 KiB through
    each engine, best of 3, ~0.2 ms): GCM when it is at least 10% faster. OpenSSL's GCM engine is about twice as
    fast as its CTR engine on CPUs with VAES and AVX-512, but slower on CPUs whose GCM is not stitched with a wide
    carry-less multiply.

    Raises:
        ValueError: ``REFIMPL_AES_ENGINE`` is set to something else.
    """
    global _engine
    if _engine is None:
        env = os.environ.get("REFIMPL_AES_ENGINE", "").strip().lower()
        if env and env not in ("gcm", "ctr"):
            raise ValueError(f"REFIMPL_AES_ENGINE must be 'gcm' or 'ctr', got {env!r}")
        _engine = env or _faster_engine()
    return _engine


def _faster_engine() -> str:
    size, aes = 1 << 18, algorithms.AES(bytes(16))
    zeros, out = bytes(size), bytearray(size + 16)
    best = {"ctr": float("inf"), "gcm": float("inf")}
    for _ in range(3):
        for name, mode in (("ctr", modes.CTR(bytes(16))), ("gcm", modes.GCM(bytes(12)))):
            enc = Cipher(aes, mode).encryptor()
            start = time.perf_counter()
            enc.update_into(zeros, out)
            best[name] = min(best[name], time.perf_counter() - start)
    return "gcm" if best["gcm"] < 0.9 * best["ctr"] else "ctr"


_engine: str | None = None

# AES-CTR through OpenSSL's AES-GCM engine (where aes_engine() chose it). GCM's ciphertext is the plaintext xor the
# CTR keystream of the counter blocks IV||2, IV||3, ..., IV||(2^32 - 1) (96-bit IV, 32-bit low word; GCM's own limit
# is 2^32 - 2 blocks), so over that run of counters it *is* AES-CTR, bit for bit; only its tag (never asked for) is
# extra. On this project's CPU (VAES, AVX-512) OpenSSL's GCM engine runs about twice as fast as its CTR engine (26
# vs 12.4 GB/s into cache, 23 vs 11 GB/s into memory). Counters outside such runs, and writes too short to repay
# creating a second engine (~4 us), go through the CTR engine.
GCM_MIN_BYTES = 1 << 16
_GCM_SPAN = (1 << 32) - 2  # counter blocks one GCM engine yields
_LOW = (1 << 32) - 1


class _AesCtr:
    """An AES-128-CTR encryptor (128-bit big-endian counter) made of CTR and GCM engine segments (see above)."""

    __slots__ = ("_aes", "_counter", "_engine", "_left")

    def __init__(self, key: bytes, counter: int) -> None:
        self._aes = algorithms.AES(key)
        self._counter = counter  # the counter block at which the next segment starts
        self._engine: Any = None
        self._left = 0  # bytes the current engine may still produce

    def _next_segment(self, want: int) -> None:
        counter = self._counter
        low = counter & _LOW
        if want < GCM_MIN_BYTES:  # a short write: the CTR engine, for just the blocks it needs
            blocks = -(-want // 16)
            self._engine = Cipher(self._aes, modes.CTR(counter.to_bytes(16, "big"))).encryptor()
        elif low == 2 and aes_engine() == "gcm":
            blocks = _GCM_SPAN
            self._engine = Cipher(self._aes, modes.GCM((counter >> 32).to_bytes(12, "big"))).encryptor()
        else:  # the CTR engine up to the next counter whose low word is 2 (two blocks from a stream's start)
            blocks = (2 - low) & _LOW or _GCM_SPAN + 2
            self._engine = Cipher(self._aes, modes.CTR(counter.to_bytes(16, "big"))).encryptor()
        self._left = blocks * 16
        self._counter = (counter + blocks) % (1 << 128)

    def update_into(self, data: Any, buf: Any) -> int:
        """As ``cryptography``'s ``update_into``: ``buf`` needs 15 bytes of room after ``len(data)``."""
        size, done = len(data), 0
        data, buf = memoryview(data), memoryview(buf)
        while done < size:
            if not self._left:
                self._next_segment(size - done)
            take = min(size - done, self._left)
            self._engine.update_into(data[done : done + take], buf[done:])
            self._left -= take
            done += take
        return size

    def update(self, data: Any) -> bytes:
        out = bytearray(len(data) + 15)
        self.update_into(data, out)
        return bytes(out[: len(data)])


def encryptor(key: bytes, cipher: str, nonce: bytes, offset: int) -> Any:
    """An encryptor positioned at the start of the block that holds byte ``offset`` (``update_into`` needs 15 bytes
    of room after the data, as ``cryptography``'s does).

    AES: a stream read from a counter whose low 32-bit word is 0, 1 or 2 -- every stream from offset 0 with the
    default nonce -- runs on the GCM engine after at most two blocks; one that starts elsewhere runs on the CTR
    engine until its low word wraps round to 2 (64 GiB further on), so only such streams get the faster engine."""
    block = offset // _BLOCK[cipher]
    if cipher == "aes128-ctr":
        return _AesCtr(key, (int.from_bytes(nonce, "big") + block) % (1 << 128))
    first_block, rest = nonce[:4], nonce[4:]
    start = int.from_bytes(first_block, "little") + block
    return Cipher(algorithms.ChaCha20(key, start.to_bytes(4, "little") + rest), None).encryptor()


def write_keystream(encryptor: Any, out: memoryview, pos: int, size: int) -> None:
    """Write the encryptor's next ``size`` keystream bytes to ``out[pos : pos + size]``."""
    while size > _CHUNK:  # the zeros fed to the cipher are _CHUNK bytes long: longer writes go in pieces
        write_keystream(encryptor, out, pos, _CHUNK)
        pos, size = pos + _CHUNK, size - _CHUNK
    zeros = memoryview(_ZEROS)[:size]  # a memoryview slice copies nothing (a bytes slice would copy the zeros)
    room = len(out) - pos - 15  # update_into needs block_size - 1 bytes of room after the data
    if room >= size:
        encryptor.update_into(zeros, out[pos:])
        return
    # The end of the array: all but the last <= 15 bytes in place, those through a small scratch buffer (update()
    # would be several times slower, a scratch buffer of the whole size costs an allocation and a copy).
    head = max(0, room)
    if head:
        encryptor.update_into(zeros[:head], out[pos:])
    scratch = bytearray(size - head + 15)
    encryptor.update_into(zeros[head:], scratch)
    out[pos + head : pos + size] = memoryview(scratch)[: size - head]


def _fill(encryptor: Any, out: memoryview, skip: int) -> None:
    """Write keystream into ``out`` (bytes), after discarding ``skip`` bytes."""
    if skip:
        encryptor.update(memoryview(_ZEROS)[:skip])
    for pos in range(0, len(out), _CHUNK):
        write_keystream(encryptor, out, pos, min(_CHUNK, len(out) - pos))


class Stream:
    """A keyed counter-mode keystream, read sequentially and seekable by byte offset.

    Args:
        key: 16 bytes for ``aes128-ctr``, 32 bytes for ``chacha20``; None draws a fresh key from the OS.
        cipher: ``"aes128-ctr"`` or ``"chacha20"``.
        nonce: AES: the 16-byte initial counter block; ChaCha20: 12-byte nonce, or 16 bytes = 4-byte little-endian
            initial block counter followed by the 12-byte nonce (the RFC 8439 state layout). Default all zero.
        offset: the starting byte position.

    The key is never shown by ``repr``. A stream must never be read twice at the same position for two different
    secrets: derive a new key per purpose with :func:`derive_key`.
    """

    __slots__ = ("_cipher", "_key", "_nonce", "_position")

    def __init__(self, key: bytes | None = None, *, cipher: str = "aes128-ctr", nonce: bytes | None = None,
                 offset: int = 0) -> None:
        self._cipher = check_cipher(cipher)
        klen = _KEY_LENGTH[self._cipher]
        self._key = fresh_key(klen) if key is None else check_key(key, lengths=(klen,), what=f"{cipher} key")
        if nonce is None:
            nonce = bytes(16)
        nonce = bytes(check_key(nonce, lengths=(16,) if cipher == "aes128-ctr" else (12, 16), what="nonce"))
        self._nonce = nonce if len(nonce) == 16 else bytes(4) + nonce
        self._position = 0
        self.seek(offset)

    @property
    def cipher(self) -> str:
        return self._cipher

    @property
    def position(self) -> int:
        """Byte offset of the next byte :meth:`read` returns."""
        return self._position

    def seek(self, offset: int) -> None:
        """Move to byte ``offset`` of the keystream."""
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
            raise ValueError(f"stream offset must be a non-negative integer, got {offset!r}")
        self._position = int(offset)

    def _check_capacity(self, nbytes: int) -> None:
        if self._cipher == "chacha20":
            first = int.from_bytes(self._nonce[:4], "little")
            if first * 64 + self._position + nbytes > (1 << 32) * 64:
                raise RefimplError(
                    f"ChaCha20 stream exhausted: reading {nbytes} bytes at offset {self._position} passes the "
                    "32-bit block counter (256 GiB); derive a new key"
                )

    def read_into(self, out: np.ndarray) -> None:
        """Fill a C-contiguous integer array with keystream, read as little-endian words, and advance."""
        if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or out.dtype.kind not in "ui":
            raise TypeError("read_into needs a C-contiguous integer numpy array")
        nbytes = out.nbytes
        self._check_capacity(nbytes)
        if nbytes == 0:  # nothing to draw (and at the very end of a ChaCha20 stream no block counter to start)
            return
        block = _BLOCK[self._cipher]
        enc = encryptor(self._key, self._cipher, self._nonce, self._position)
        _fill(enc, memoryview(out.reshape(-1).view(np.uint8)), self._position % block)  # type: ignore[arg-type]
        if sys.byteorder == "big" and out.dtype.itemsize > 1:
            out.byteswap(inplace=True)
        self._position += nbytes

    def read(self, nbytes: int) -> np.ndarray:
        """The next ``nbytes`` keystream bytes as a fresh uint8 array."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or not 0 <= nbytes <= 2**40:
            raise ValueError(f"number of bytes must be an integer in [0, 2**40], got {nbytes!r}")
        out = np.empty(int(nbytes), dtype=np.uint8)
        self.read_into(out)
        return out

    def __repr__(self) -> str:
        return f"Stream(cipher={self._cipher!r}, position={self._position})"


def keystream(key: bytes, nbytes: int, *, cipher: str = "aes128-ctr", nonce: bytes | None = None,
              offset: int = 0) -> np.ndarray:
    """``nbytes`` bytes of keystream starting at byte ``offset``, as a uint8 array (a pure function).

    Example:
        >>> keystream(bytes(16), 4, offset=2).tolist() == Stream(bytes(16)).read(6)[2:].tolist()
        True
    """
    return Stream(key, cipher=cipher, nonce=nonce, offset=offset).read(nbytes)
