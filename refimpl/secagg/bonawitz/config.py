"""The configuration of a Bonawitz SecAgg / SecAgg+ round and its four stages."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from refimpl.errors import ConfigurationError, ThresholdError
from refimpl.prg import check_cipher
from refimpl.ring import Z2_64, Ring
from refimpl.secagg.bonawitz.graph import harary_neighbours
from refimpl.secagg.codec import Codec

__all__ = ["KEY_LIMBS", "LIMB", "STAGES", "SecAggConfig"]


STAGES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "Unmasking")
LIMB = np.dtype("<u4")
KEY_LIMBS = 16  # a 32-byte X25519 private key as 16-bit limbs


@dataclass(frozen=True)
class SecAggConfig:
    """Public parameters of single-server SecAgg: clients ``1..num_clients``, threshold, encoding, graph.

    Args:
        num_clients: n, clients numbered ``1..n``.
        threshold: t, shares needed to rebuild a seed: ``2 <= t <= |N[u]|`` (n, or degree + 1 with SecAgg+).
            Security needs more than the number of colluding clients; Bonawitz et al. suggest ``t > n/2`` (and
            ``t > 2n/3`` against an active server).
        length: d, coordinates per input.
        clip, frac_bits, bits, headroom, ring: the encoding, see :class:`~refimpl.secagg.codec.Codec`.
        degree: None for the complete graph (SecAgg), or an even k for the SecAgg+ Harary graph.
        graph_key: public randomness placing clients in the SecAgg+ graph (16 bytes).
        prg: the cipher of the mask streams.

    Raises:
        ThresholdError: ``t`` out of range; ConfigurationError: sizing, clip or degree.
    """

    num_clients: int
    threshold: int
    length: int
    clip: float | None = 1.0
    frac_bits: int = 16
    bits: int | None = None
    headroom: int = 0
    ring: Ring = Z2_64
    degree: int | None = None
    graph_key: bytes = bytes(16)
    prg: str = "aes128-ctr"
    codec: Codec = field(init=False, repr=False, compare=False)
    graph: dict[int, frozenset[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("num_clients", "threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {v!r}")
        n = self.num_clients
        if n < 2:
            raise ConfigurationError(f"SecAgg needs at least 2 clients, got num_clients={n}")
        if not self.ring.is_power_of_two:
            raise ConfigurationError(f"SecAgg masks live in Z_2^k; got {self.ring!r}")
        check_cipher(self.prg)
        codec = Codec(self.length, n, self.clip, self.frac_bits, self.bits, self.headroom, self.ring)
        if self.degree is None or self.degree >= n - 1:
            graph = {u: frozenset(range(1, n + 1)) - {u} for u in range(1, n + 1)}
        else:
            graph = harary_neighbours(n, self.degree, self.graph_key)
        size = min(len(v) for v in graph.values()) + 1
        if not 2 <= self.threshold <= size:
            raise ThresholdError(f"threshold must satisfy 2 <= t <= {size} (neighbourhood size), "
                                 f"got t={self.threshold}")
        object.__setattr__(self, "codec", codec)
        object.__setattr__(self, "graph", graph)

    def closed_neighbourhood(self, u: int) -> frozenset[int]:
        """N[u]: ``u`` and its neighbours."""
        return self.graph[u] | {u}
