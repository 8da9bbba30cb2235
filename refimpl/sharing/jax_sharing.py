"""Additive sharing on JAX arrays: :func:`refimpl.share` for ``jax.Array`` secrets, bit-identical to NumPy.

``share(x, n, key=k, prg="chacha20")`` draws party ``i``'s mask from ChaCha20 under ``derive_key(k,
"refimpl/share", i)`` (host-side HKDF, exactly as on NumPy) expanded by :mod:`refimpl.backend.jax_chacha` on the device,
so it returns the same shares as NumPy bit for bit, works under ``jax.jit`` and ``jax.vmap``, and one compiled
function serves every key (the derived keys are arguments, not constants).

``prg="aes128-ctr"`` (the default) has no JAX implementation: for a concrete JAX array the masks are computed on
the host with AES (OpenSSL) and transferred, again identical to NumPy; under ``jax.jit`` / ``jax.vmap`` it raises
:class:`~refimpl.errors.BackendError` asking for ``prg="chacha20"``.

Keys are host bytes. Under ``jax.jit`` they are fixed when the function is traced. ``jax.vmap`` of ``share``
over many secrets with one key would pad every secret with the same masks, so it raises
:class:`~refimpl.errors.KeyReuseError` (a ``custom_vmap`` rule, whatever the nesting with ``jax.jit``): call
:func:`share_with_party_keys` with per-secret keys as a batched argument instead.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from refimpl.backend import dispatch
from refimpl.backend import jax_ring as R
from refimpl.backend.jax_chacha import chacha20_words
from refimpl.errors import BackendError, KeyFormatError, KeyReuseError, RefimplError
from refimpl.prg import check_cipher, fresh_key
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares, party_keys
from refimpl.sharing.additive import share_numpy as _numpy_share

__all__ = ["party_key_words", "share", "share_with_party_keys"]


def party_key_words(key: bytes, n: int) -> np.ndarray:
    """The ChaCha20 keys of parties ``1 .. n-1`` of ``share(..., key=key, prg="chacha20")`` as ``uint32`` words,
    shape ``(n - 1, 8)`` (host HKDF-SHA256, as on NumPy)."""
    keys = party_keys(key, n, "chacha20")
    return np.frombuffer(b"".join(keys), dtype="<u4").astype(np.uint32).reshape(n - 1, 8)


def _masks(ring: Ring, keys: jax.Array, count: int) -> jax.Array:
    """``ring.sample(Stream(key_p, cipher="chacha20"), count)`` for every party key, shape ``(parties, count)``."""
    m = ring.modulus
    if m == 2**32:
        return chacha20_words(keys, count)
    if ring.is_power_of_two:  # uint64 words, masked to k bits
        w = chacha20_words(keys, 2 * count)
        words = (w[..., 1::2].astype(jnp.uint64) << jnp.uint64(32)) | w[..., 0::2].astype(jnp.uint64)
        return words if m == 2**64 else words & jnp.uint64(m - 1)
    # Rejection sampling, as Ring.sample: the first `count` 64-bit words below 2**64 - (2**64 mod M), reduced mod M.
    # A word is rejected with probability < M / 2**64 <= 2**-32, so `extra` spare words run short with probability
    # far below 2**-128; if they ever did, the call fails loudly rather than return different masks.
    extra = 64 + count // 4096
    w = chacha20_words(keys, 2 * (count + extra))
    words = (w[..., 1::2].astype(jnp.uint64) << jnp.uint64(32)) | w[..., 0::2].astype(jnp.uint64)
    accept = words < jnp.uint64(2**64 - 2**64 % m)
    flat_accept = accept.reshape(-1, count + extra)
    idx = jax.vmap(lambda a: jnp.nonzero(a, size=count, fill_value=0)[0])(flat_accept)
    picked = jnp.take_along_axis(words.reshape(-1, count + extra), idx, axis=1) % jnp.uint64(m)
    short = jnp.sum(flat_accept, axis=1, dtype=jnp.int32) < count
    R.report(short, short, lambda _: "rejection sampling ran out of spare keystream words (probability below "
             "2**-128); nothing was returned", error=RefimplError)
    return picked.reshape(*accept.shape[:-1], count)


@functools.partial(jax.jit, static_argnames=("ring",))
def _share_from_keys(x: jax.Array, keys: jax.Array, ring: Ring) -> jax.Array:
    masks = _masks(ring, keys, int(np.prod(x.shape, dtype=np.int64))).reshape(keys.shape[0], *x.shape)
    first = R.sub(ring, x, R.sum(ring, masks, axis=0))
    return jnp.concatenate([first[None], masks])


def share_with_party_keys(secret: Any, party_keys: Any, *, ring: Ring) -> Shares:
    """Share ``secret`` with explicit ChaCha20 party keys (``uint32`` words, shape ``(n - 1, 8)``).

    ``share_with_party_keys(x, party_key_words(k, n), ring=r)`` equals ``share(x, n, ring=r, key=k,
    prg="chacha20")``. The keys may be traced, so this is the form to ``jax.vmap`` over many secrets with one key
    set each (batch the keys too), or to ``jax.jit`` once for every key.
    """
    dispatch.jax_dtype(ring)
    keys = R.to_jax(party_keys, "party keys")
    if keys.ndim != 2 or keys.shape[1] != 8 or keys.dtype != jnp.uint32 or keys.shape[0] < 1:
        raise KeyFormatError(f"party keys must be uint32 words of shape (n - 1, 8), got {keys.dtype} {keys.shape}")
    x = R.element(ring, secret)
    return Shares(ring, _guarded_share(ring)(x, keys))  # type: ignore[arg-type]  # Shares holds jax arrays too


@functools.cache
def _guarded_share(ring: Ring) -> Any:
    """:func:`_share_from_keys` for ``ring`` with a ``jax.vmap`` rule that refuses one key set for a batch of
    secrets (every element would be padded by the same masks: the differences of the secrets would leak). The rule
    runs wherever the call is batched, also under ``jax.jit`` inside or outside the ``vmap``."""

    @jax.custom_batching.custom_vmap
    def guarded(x: jax.Array, keys: jax.Array) -> jax.Array:
        return _share_from_keys(x, keys, ring)

    @guarded.def_vmap
    def _rule(axis_size: int, in_batched: Any, x: jax.Array, keys: jax.Array) -> tuple[jax.Array, bool]:
        x_batched, keys_batched = in_batched
        if x_batched and not keys_batched:
            raise KeyReuseError(
                "jax.vmap of share over one key: every secret in the batch would be padded by the same masks. "
                "Batch the keys too: share_with_party_keys(x, party_key_words(key_i, n), ring=...) with one key per "
                "secret, vmapped over both")
        out = jax.vmap(lambda a, k: _share_from_keys(a, k, ring), in_axes=(0 if x_batched else None,
                                                                            0 if keys_batched else None),
                       axis_size=axis_size)(x, keys)
        return out, True

    return guarded


def share(secret: Any, n: int, *, ring: Ring, key: bytes | None, prg: str) -> Shares:
    """:func:`refimpl.share` for a JAX array ``secret`` (arguments already checked by the caller)."""
    dispatch.jax_dtype(ring)
    prg = check_cipher(prg)
    traced = dispatch.is_tracer(secret)
    if key is None and traced:
        raise KeyFormatError(
            "under jax.jit / jax.vmap pass an explicit key=...: a fresh key drawn while tracing would be baked into "
            "the compiled function and reused by every call"
        )
    if prg == "chacha20":
        if key is None:
            key = fresh_key(16)
        return share_with_party_keys(secret, party_key_words(key, n), ring=ring)
    if traced:
        raise BackendError(
            f"prg={prg!r} has no JAX implementation, so it cannot run under jax.jit / jax.vmap; use "
            "prg='chacha20' on the JAX path (same key -> the same shares as NumPy with prg='chacha20')"
        )
    x = R.element(ring, secret)  # concrete: checked on the device, then shared on the host with AES and moved back
    host = _numpy_share(np.asarray(x), n, ring=ring, key=key, prg=prg)
    return Shares(ring, jnp.asarray(host.data))  # type: ignore[arg-type]
