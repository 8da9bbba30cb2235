"""ChaCha20 (RFC 8439) in jax.numpy: the keystream of :class:`refimpl.prg.Stream` with ``cipher="chacha20"``.

The block function is 32-bit add-rotate-xor on ``uint32``, vectorised over blocks (and over any leading batch axes
of the key, e.g. one key per party): the 16 state words are 16 arrays, so XLA fuses the 20 rounds into one loop
over the blocks. The state layout is RFC 8439's: constants, 8 little-endian key words, a 32-bit block counter and
a 96-bit nonce, so the words produced are exactly the little-endian words of ``refimpl.prg.keystream(key, ...,
cipher="chacha20")`` (OpenSSL through ``cryptography``). Keys may be traced values: one compiled function serves
every key.

Works in JAX's default 32-bit mode. Never used with JAX's own PRNG (threefry): this is the only randomness the JAX
path draws for secrets.

Example:
    >>> import numpy as np
    >>> from refimpl import keystream
    >>> nonce = bytes.fromhex("000000090000004a00000000")
    >>> words = chacha20_words(key_words(bytes(range(32))), 16, counter=1, nonce=nonce)
    >>> np.asarray(words)[:2].tobytes().hex()       # RFC 8439, section 2.3.2
    '10f1e7e4d13b5915'
    >>> bool((np.asarray(chacha20_words(key_words(bytes(32)), 20)).view(np.uint8)
    ...       == keystream(bytes(32), 80, cipher="chacha20")).all())
    True

References:
    RFC 8439 (2018), ChaCha20 and Poly1305 for IETF Protocols, sections 2.1-2.4 and appendix A.1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from refimpl._checks import check_key
from refimpl.errors import RefimplError

__all__ = ["chacha20_block", "chacha20_words", "key_words", "nonce_words"]

_CONSTANTS = np.frombuffer(b"expand 32-byte k", dtype="<u4").astype(np.uint32)
_COLUMNS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
_DIAGONALS = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def key_words(key: bytes) -> np.ndarray:
    """A 32-byte ChaCha20 key as its 8 little-endian ``uint32`` words (host array)."""
    key = check_key(key, lengths=(32,), what="chacha20 key")
    return np.frombuffer(key, dtype="<u4").astype(np.uint32)


def nonce_words(nonce: bytes | None) -> np.ndarray:
    """A 12-byte nonce (default zero) as 3 little-endian ``uint32`` words (host array)."""
    nonce = bytes(12) if nonce is None else check_key(nonce, lengths=(12,), what="nonce")
    return np.frombuffer(nonce, dtype="<u4").astype(np.uint32)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return lax.shift_left(x, jnp.uint32(r)) | lax.shift_right_logical(x, jnp.uint32(32 - r))


def _quarter_round(s: list[jax.Array], a: int, b: int, c: int, d: int) -> None:
    s[a] = s[a] + s[b]
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = s[c] + s[d]
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = s[a] + s[b]
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = s[c] + s[d]
    s[b] = _rotl(s[b] ^ s[c], 7)


def _double_round(_: int, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    s = list(state)
    for q in _COLUMNS + _DIAGONALS:
        _quarter_round(s, *q)
    return tuple(s)


def chacha20_block(key: jax.Array, counters: jax.Array, nonce: jax.Array) -> jax.Array:
    """The ChaCha20 block function, vectorised: keystream words of shape ``(*batch, blocks, 16)``.

    Args:
        key: ``uint32`` key words, shape ``(*batch, 8)``.
        counters: ``uint32`` block counters, shape ``(blocks,)``.
        nonce: ``uint32`` nonce words, shape ``(*batch, 3)`` or ``(3,)``.

    Returns:
        ``uint32`` words; word ``j`` of a block is bytes ``4j .. 4j+3`` of its 64-byte keystream, little-endian.
    """
    key = jnp.asarray(key, dtype=jnp.uint32)
    counters = jnp.asarray(counters, dtype=jnp.uint32)
    nonce = jnp.asarray(nonce, dtype=jnp.uint32)
    batch = jnp.broadcast_shapes(key.shape[:-1], nonce.shape[:-1])
    shape = (*batch, counters.shape[0])

    def lane(word: jax.Array) -> jax.Array:  # a per-key word, broadcast over blocks
        return jnp.broadcast_to(word[..., None], shape)

    init = [jnp.full(shape, c, dtype=jnp.uint32) for c in _CONSTANTS]
    init += [lane(key[..., i]) for i in range(8)]
    init += [jnp.broadcast_to(counters, shape)]
    init += [lane(nonce[..., i]) for i in range(3)]
    final = lax.fori_loop(0, 10, _double_round, tuple(init))
    return jnp.stack([f + i for f, i in zip(final, init)], axis=-1)


@functools.partial(jax.jit, static_argnames=("nwords",))
def _words(key: jax.Array, nonce: jax.Array, nwords: int, counter: jax.Array) -> jax.Array:
    blocks = -(-nwords // 16)
    out = chacha20_block(key, jnp.arange(blocks, dtype=jnp.uint32) + counter, nonce)
    return out.reshape(*out.shape[:-2], blocks * 16)[..., :nwords]


def chacha20_words(key: jax.Array | np.ndarray, nwords: int, *, counter: int = 0,
                   nonce: bytes | np.ndarray | jax.Array | None = None) -> jax.Array:
    """``nwords`` little-endian ``uint32`` keystream words starting at block ``counter``.

    Equal to ``refimpl.prg.keystream(key, 4 * nwords, cipher="chacha20", nonce=counter.to_bytes(4, "little") +
    nonce).view("<u4")``. Keys with leading batch axes give one stream per key (shape ``(*batch, nwords)``).

    Args:
        key: ``uint32`` key words, shape ``(*batch, 8)`` (see :func:`key_words`); may be traced.
        nwords: number of 32-bit words (static).
        counter: first block counter (a host integer; one compiled function serves every counter).
        nonce: 12 bytes, or ``uint32`` nonce words of shape ``(*batch, 3)``; default zero.

    Raises:
        RefimplError: the stream would pass the 32-bit block counter (256 GiB), as on NumPy.
    """
    if isinstance(nonce, (bytes, bytearray)) or nonce is None:
        nonce = nonce_words(None if nonce is None else bytes(nonce))
    nwords, counter = int(nwords), int(counter)
    if nwords < 0 or not 0 <= counter < 2**32:
        raise ValueError(f"need nwords >= 0 and 0 <= counter < 2**32, got nwords={nwords}, counter={counter}")
    if counter + -(-nwords // 16) > 2**32:
        raise RefimplError(
            f"ChaCha20 stream exhausted: {4 * nwords} bytes from block {counter} pass the 32-bit block counter "
            "(256 GiB); derive a new key"
        )
    return _words(jnp.asarray(key, dtype=jnp.uint32), jnp.asarray(nonce, dtype=jnp.uint32), nwords,
                  jnp.asarray(counter, dtype=jnp.uint32))
