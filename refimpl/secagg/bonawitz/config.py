"""The configuration of a Bonawitz SecAgg / SecAgg+ round and its four stages."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from refimpl.errors import ConfigurationError, ThresholdError
from refimpl.ring import Ring
from refimpl.secagg.bonawitz.graph import harary_neighbours
from refimpl.secagg.codec import Codec, check_prg

__all__ = ["KEY_LIMBS", "LIMB", "STAGES", "SecAggConfig"]


STAGES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "Unmasking")
LIMB = np.dtype("<u4")
KEY_LIMBS = 16  # a 32-byte X25519 private key as 16-bit limbs


@dataclass(frozen=True, kw_only=True)
class SecAggConfig:
    """Public parameters of single-server SecAgg: clients ``1..num_clients``, threshold, encoding, graph.

    Args:
        num_clients: n, clients numbered ``1..n``.
        threshold: t, shares needed to rebuild a seed: ``2 <= t <= |N[u]|`` (n, or degree + 1 with SecAgg+).
            Security needs more than the number of colluding clients; Bonawitz et al. suggest ``t > n/2`` (and
            ``t > 2n/3`` against an active server). Never adjusted: an impossible t is refused.
        codec: the encoding (:class:`~refimpl.secagg.codec.Codec`: length d, fixed point or integers, ring);
            its ``max_clients`` must be at least n.
        degree: None for the complete graph (SecAgg), or an even k >= 2 for the SecAgg+ Harary graph (k >= n - 1
            is the complete graph).
        graph_key: public randomness placing clients in the SecAgg+ graph (16 bytes).
        prg: the cipher of the mask streams.

    Raises:
        ThresholdError: ``t`` out of range (the message states the valid range); ConfigurationError: n < 2, a
            codec sized for fewer than n clients, a ring that is not Z_2^k, or a bad degree.

    Example:
        >>> cfg = SecAggConfig(num_clients=5, threshold=3, codec=Codec(length=2, max_clients=5, clip=8.0))
        >>> cfg.length, cfg.ring, sorted(cfg.graph[1])
        (2, Z2_64, [2, 3, 4, 5])
    """

    num_clients: int
    threshold: int
    codec: Codec
    degree: int | None = None
    graph_key: bytes = bytes(16)
    prg: str = "aes128-ctr"
    graph: dict[int, frozenset[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("num_clients", "threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {v!r}")
        if not isinstance(self.codec, Codec):
            raise TypeError(f"codec must be a refimpl.secagg.Codec, got {type(self.codec).__name__}")
        n = self.num_clients
        if n < 2:
            raise ConfigurationError(f"SecAgg needs at least 2 clients, got num_clients={n}")
        if self.codec.max_clients < n:
            raise ConfigurationError(f"the codec is sized for max_clients={self.codec.max_clients}, fewer than "
                                     f"num_clients={n}: the sum could wrap")
        if not self.ring.is_power_of_two:
            raise ConfigurationError(f"SecAgg masks live in Z_2^k; got {self.ring!r}")
        check_prg(self.prg)
        if self.degree is not None and (isinstance(self.degree, bool) or not isinstance(self.degree, numbers.Integral)
                                        or self.degree < 2 or self.degree % 2):
            raise ConfigurationError(f"SecAgg+ degree must be an even integer >= 2 (n - 1 or more: the complete "
                                     f"graph), got {self.degree!r}")
        if self.degree is None or self.degree >= n - 1:
            graph = {u: frozenset(range(1, n + 1)) - {u} for u in range(1, n + 1)}
        else:
            graph = harary_neighbours(n, self.degree, self.graph_key)
        size = min(len(v) for v in graph.values()) + 1
        if not 2 <= self.threshold <= size:
            raise ThresholdError(f"threshold t={self.threshold} is impossible: it must satisfy 2 <= t <= {size} "
                                 f"(the neighbourhood size with n={n}"
                                 f"{'' if size == n else f', degree={self.degree}'})")
        object.__setattr__(self, "graph", graph)

    @property
    def length(self) -> int:
        """d, coordinates per input (the codec's)."""
        return self.codec.length

    @property
    def ring(self) -> Ring:
        """The ring of the masked inputs (the codec's)."""
        return self.codec.ring

    def closed_neighbourhood(self, u: int) -> frozenset[int]:
        """N[u]: ``u`` and its neighbours."""
        return self.graph[u] | {u}
