"""Mask expansion and the key derivations of a SecAgg round (pairwise seeds, share-encryption keys, AAD)."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from refimpl.errors import ProtocolError
from refimpl.prg import Stream, derive_key, key_length
from refimpl.secagg.bonawitz.config import SecAggConfig

__all__ = ["aad", "check_public_key", "enc_key", "exchange", "mask", "pair_seed"]


def mask(seed: bytes, cfg: SecAggConfig) -> np.ndarray:
    """The mask ``PRG(seed)``: ``length`` uniform elements of the ring."""
    return cfg.ring.sample(Stream(seed, cipher=cfg.prg), cfg.length)


def pair_seed(secret: bytes, round_: int, u: int, v: int, cfg: SecAggConfig) -> bytes:
    return derive_key(secret, "secagg/pairwise-mask", round_, min(u, v), max(u, v), length=key_length(cfg.prg))


def enc_key(secret: bytes, round_: int, sender: int, receiver: int) -> bytes:
    return derive_key(secret, "secagg/share-encryption", round_, sender, receiver, length=16)


def aad(round_: int, sender: int, receiver: int) -> bytes:
    return b"refimpl/secagg" + round_.to_bytes(8, "big") + sender.to_bytes(4, "big") + receiver.to_bytes(4, "big")


def check_public_key(public: object, client: int, what: str) -> None:
    """Raise :class:`ProtocolError` naming ``client`` unless ``public`` is a usable X25519 public key: 32 bytes and
    not of low order (a low-order point makes every shared secret with it all zeros, which cryptography refuses)."""
    if not isinstance(public, bytes) or len(public) != 32:
        raise ProtocolError(f"client {client}'s {what} public key must be 32 bytes, got "
                            f"{len(public) if isinstance(public, (bytes, bytearray)) else type(public).__name__}")
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as err:
        raise ProtocolError(f"client {client}'s {what} public key is an invalid (low-order) X25519 point; the "
                            "client is dropped") from err


def exchange(private: X25519PrivateKey, public: bytes, owner: int) -> bytes:
    """X25519 between ``private`` and client ``owner``'s ``public`` key; a ProtocolError naming ``owner`` if the
    key is invalid (instead of cryptography's anonymous "Error computing shared key")."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as err:
        raise ProtocolError(f"client {owner}'s X25519 public key is invalid (low order): {err}") from err
