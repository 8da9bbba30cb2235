"""Mask expansion and the key derivations of a SecAgg round (pairwise seeds, share-encryption keys, AAD)."""

from __future__ import annotations

import numpy as np

from refimpl.prg import Stream, derive_key, key_length
from refimpl.secagg.bonawitz.config import SecAggConfig

__all__ = ["aad", "enc_key", "mask", "pair_seed"]


def mask(seed: bytes, cfg: SecAggConfig) -> np.ndarray:
    return cfg.ring.sample(Stream(seed, cipher=cfg.prg), cfg.length)


def pair_seed(secret: bytes, round_: int, u: int, v: int, cfg: SecAggConfig) -> bytes:
    return derive_key(secret, "secagg/pairwise-mask", round_, min(u, v), max(u, v), length=key_length(cfg.prg))


def enc_key(secret: bytes, round_: int, sender: int, receiver: int) -> bytes:
    return derive_key(secret, "secagg/share-encryption", round_, sender, receiver, length=16)


def aad(round_: int, sender: int, receiver: int) -> bytes:
    return b"refimpl/secagg" + round_.to_bytes(8, "big") + sender.to_bytes(4, "big") + receiver.to_bytes(4, "big")
