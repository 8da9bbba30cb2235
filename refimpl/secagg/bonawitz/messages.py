"""The messages of a SecAgg round (reprs never show keys, shares or masked values' contents)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["AdvertiseKeys", "MaskedInput", "ShareKeys", "UnmaskingResponse", "message_nbytes"]


class AdvertiseKeys(NamedTuple):
    """Stage AdvertiseKeys, client -> server: the client's two X25519 public keys."""

    round: int
    client: int
    c_public: bytes
    s_public: bytes

    def __repr__(self) -> str:
        return f"AdvertiseKeys(round={self.round}, client={self.client}, <2 X25519 public keys>)"


class ShareKeys(NamedTuple):
    """Stage ShareKeys, client -> server: AES-GCM ciphertexts of the Shamir shares, one per neighbour."""

    round: int
    client: int
    ciphertexts: Mapping[int, bytes]

    def __repr__(self) -> str:
        return f"ShareKeys(round={self.round}, client={self.client}, ciphertexts for {sorted(self.ciphertexts)})"


class MaskedInput(NamedTuple):
    """Stage MaskedInputCollection, client -> server: the masked input ``y_u``."""

    round: int
    client: int
    masked: np.ndarray

    def __repr__(self) -> str:
        return f"MaskedInput(round={self.round}, client={self.client}, <{getattr(self.masked, 'size', '?')} elements>)"


class UnmaskingResponse(NamedTuple):
    """Stage Unmasking, client -> server: shares of ``s_u^SK`` (dropped ``u``) and of ``b_u`` (surviving ``u``)."""

    round: int
    client: int
    key_shares: Mapping[int, np.ndarray]
    seed_shares: Mapping[int, np.ndarray]

    def __repr__(self) -> str:  # the shares are secret: only whose shares they are
        return (f"UnmaskingResponse(round={self.round}, client={self.client}, key shares of "
                f"{sorted(self.key_shares)}, seed shares of {sorted(self.seed_shares)})")


def message_nbytes(msg: object) -> int:
    """Payload bytes of a SecAgg message on the wire (without the 16-byte header)."""
    if isinstance(msg, AdvertiseKeys):
        return 64
    if isinstance(msg, ShareKeys):
        return sum(4 + len(c) for c in msg.ciphertexts.values())
    if isinstance(msg, MaskedInput):
        return int(msg.masked.nbytes)
    if isinstance(msg, UnmaskingResponse):
        return sum(4 + v.size * 4 for d in (msg.key_shares, msg.seed_shares) for v in d.values())
    raise TypeError(f"not a SecAgg message: {type(msg).__name__}")
