"""Mask expansion and the key derivations of a SecAgg round (pairwise seeds, share-encryption keys, AAD)."""

from __future__ import annotations

import sys

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from refimpl.errors import ProtocolError
from refimpl.prg import Stream, derive_key, key_length
from refimpl.secagg.bonawitz.config import SecAggConfig
from refimpl.sharing.kernels import fold_keystreams

__all__ = ["LOW_ORDER_U", "aad", "check_public_key", "enc_key", "exchange", "fold_masks", "mask", "pair_seed"]


def mask(seed: bytes, cfg: SecAggConfig) -> np.ndarray:
    """The mask ``PRG(seed)``: ``length`` uniform elements of the ring."""
    return cfg.ring.sample(Stream(seed, cipher=cfg.prg), cfg.length)


def fold_masks(x: np.ndarray, plus: list[bytes], minus: list[bytes], cfg: SecAggConfig, *,
               in_place: bool = False) -> np.ndarray:
    """``x + sum PRG(plus) - sum PRG(minus)`` in the ring: a new array, or ``x`` itself when ``in_place``.

    For Z_2^32 / Z_2^64 the masks are never materialised: their keystreams are folded into the result chunk by
    chunk, on every core (`refimpl.sharing.kernels.fold_keystreams`); bit-identical to adding the masks one by one,
    which is what other rings do.
    """
    ring = cfg.ring
    if ring.modulus in (2**32, 2**64) and sys.byteorder == "little" and type(x) is np.ndarray and \
            x.dtype == ring.dtype and x.flags.c_contiguous and (x.flags.writeable or not in_place):
        out = x if in_place else np.empty_like(x)
        terms = [(k, np.add) for k in plus] + [(k, np.subtract) for k in minus]
        fold_keystreams(out, terms, cfg.prg, src=None if in_place else x)
        return out
    y = x
    for k in plus:
        y = ring.add(y, mask(k, cfg))
    for k in minus:
        y = ring.sub(y, mask(k, cfg))
    if in_place:
        x[...] = y
        return x
    return np.asarray(y, dtype=ring.dtype)


def pair_seed(secret: bytes, round_: int, u: int, v: int, cfg: SecAggConfig) -> bytes:
    return derive_key(secret, "secagg/pairwise-mask", round_, min(u, v), max(u, v), length=key_length(cfg.prg))


def enc_key(secret: bytes, round_: int, sender: int, receiver: int) -> bytes:
    return derive_key(secret, "secagg/share-encryption", round_, sender, receiver, length=16)


def aad(round_: int, sender: int, receiver: int) -> bytes:
    return b"refimpl/secagg" + round_.to_bytes(8, "big") + sender.to_bytes(4, "big") + receiver.to_bytes(4, "big")


_P25519 = 2**255 - 19
# The u-coordinates (mod p) of the X25519 points whose order divides 8, on the curve and on its twist: 0 (order 2),
# 1 and p - 1 (order 4), and the two of order 8. X25519 ignores bit 255 of a public key and reads u mod p; a clamped
# private scalar is a multiple of 8 below 8q (q the prime subgroup order), so the shared secret is all zeros exactly
# for these points -- which is what cryptography's exchange refuses. Tested against exchange itself.
LOW_ORDER_U = frozenset({
    0, 1, _P25519 - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})


def check_public_key(public: object, client: int, what: str) -> None:
    """Raise :class:`ProtocolError` naming ``client`` unless ``public`` is a usable X25519 public key: 32 bytes and
    not of low order (a low-order point makes every shared secret with it all zeros, which cryptography refuses).

    The test is a set lookup of ``u mod p`` in :data:`LOW_ORDER_U`, the same keys an exchange refuses, without the
    cost of one (the server checks two keys per client).
    """
    if not isinstance(public, bytes) or len(public) != 32:
        raise ProtocolError(f"client {client}'s {what} public key must be 32 bytes, got "
                            f"{len(public) if isinstance(public, (bytes, bytearray)) else type(public).__name__}")
    if (int.from_bytes(public, "little") & ((1 << 255) - 1)) % _P25519 in LOW_ORDER_U:
        raise ProtocolError(f"client {client}'s {what} public key is an invalid (low-order) X25519 point; the "
                            "client is dropped")


def exchange(private: X25519PrivateKey, public: bytes, owner: int) -> bytes:
    """X25519 between ``private`` and client ``owner``'s ``public`` key; a ProtocolError naming ``owner`` if the
    key is invalid (instead of cryptography's anonymous "Error computing shared key")."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as err:
        raise ProtocolError(f"client {owner}'s X25519 public key is invalid (low order): {err}") from err
