"""The configuration, messages and stages of a multi-server additive secure-aggregation round."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from refimpl._checks import check_party_count
from refimpl.errors import (
    ConfigurationError,
)
from refimpl.ring import Ring
from refimpl.secagg.codec import Codec, check_prg

__all__ = ["AdditiveConfig", "PartialSum", "STAGES", "ShareMessage", "server_of"]


@dataclass(frozen=True, kw_only=True)
class AdditiveConfig:
    """Public parameters of multi-server additive aggregation, checked when constructed.

    Args:
        codec: how contributions become ring elements (:class:`Codec`: length d, max_clients K, fixed point with
            ``clip``/``frac_bits`` or integers in ``[0, 2^bits)``, headroom, ring).
        servers: S >= 2 aggregators.
        prg: the share streams' cipher.
        min_clients: fewest agreed clients for which a total is released (default 2: a "sum" over one client
            would be that client's update in the clear). 1 only where releasing a single update is acceptable.

    Raises:
        ConfigurationError: ``min_clients`` outside ``[1, K]`` (see :class:`Codec` for the sizing checks).
        PartyCountError: ``servers < 2``.

    Example:
        >>> cfg = AdditiveConfig(codec=Codec(length=3, max_clients=10, clip=2.0), servers=3)
        >>> cfg.length, cfg.ring, cfg.min_clients
        (3, Z2_64, 2)
    """

    codec: Codec
    servers: int = 2
    prg: str = "aes128-ctr"
    min_clients: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.codec, Codec):
            raise TypeError(f"codec must be a refimpl.secagg.Codec, got {type(self.codec).__name__}")
        check_party_count(self.servers, minimum=2)
        check_prg(self.prg)
        if isinstance(self.min_clients, bool) or not isinstance(self.min_clients, numbers.Integral):
            raise TypeError(f"min_clients must be an integer, got {self.min_clients!r}")
        if not 1 <= self.min_clients <= self.max_clients:
            raise ConfigurationError(f"min_clients must lie in [1, max_clients={self.max_clients}], "
                                     f"got {self.min_clients}")

    @property
    def length(self) -> int:
        """d, the coordinates of every contribution (the codec's)."""
        return self.codec.length

    @property
    def max_clients(self) -> int:
        """K, the most clients summed in one round (the codec's)."""
        return self.codec.max_clients

    @property
    def ring(self) -> Ring:
        """The ring of the shares (the codec's)."""
        return self.codec.ring

    @property
    def encoded_nbytes(self) -> int:
        """Bytes of one encoded contribution."""
        return self.codec.encoded_nbytes


@dataclass(frozen=True, eq=False)
class ShareMessage:
    """Message ShareUpload: client ``client``'s share for aggregator ``server`` in round ``round``.

    ``payload`` is the full share array, or the 16/32-byte stream key that expands to the share.
    """

    round: int
    client: int
    server: int
    ring: Ring
    payload: np.ndarray | bytes
    prg: str = "aes128-ctr"

    @property
    def nbytes(self) -> int:
        """Payload bytes on the wire."""
        if isinstance(self.payload, np.ndarray):
            return int(self.payload.size) * self.ring.element_bytes
        return len(self.payload)

    def __repr__(self) -> str:  # never the share or the stream key
        kind = "array" if isinstance(self.payload, np.ndarray) else "stream key"
        return (f"ShareMessage(round={self.round}, client={self.client}, server={self.server}, ring={self.ring!r}, "
                f"payload=<{kind}, {self.nbytes} bytes>)")


class PartialSum(NamedTuple):
    """Message PartialSum: aggregator ``server``'s sum of its shares over the agreed ``clients``."""

    round: int
    server: int
    clients: frozenset[int]
    total: np.ndarray

    def __repr__(self) -> str:  # never the partial sum itself (with the others' it opens the total)
        return (f"PartialSum(round={self.round}, server={self.server}, clients={sorted(self.clients)}, "
                f"total=<{getattr(self.total, 'size', '?')} elements>)")


STAGES = ("ShareUpload", "PartialSum")
"""The stages of an additive round at each aggregator: collect the uploads (ending with the ReceivedReport), then
release the partial sum over the agreed set."""


def server_of(client: int, party: int, servers: int) -> int:
    """The aggregator that receives party ``party`` of client ``client``'s sharing (party 0 = the array)."""
    return (client + party) % servers
