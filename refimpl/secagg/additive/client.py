"""The client of multi-server additive secure aggregation: one seed-compressed sharing per round."""

from __future__ import annotations

from numpy.typing import ArrayLike

from refimpl._checks import check_key
from refimpl.errors import (
    ProtocolError,
)
from refimpl.prg import derive_key, fresh_key
from refimpl.secagg.additive.config import AdditiveConfig, ShareMessage, server_of
from refimpl.sharing.additive import share_compressed_owned

__all__ = ["AdditiveClient"]


class AdditiveClient:
    """A client of multi-server additive aggregation; one object serves many rounds.

    Lifecycle per round (the same as :class:`~refimpl.secagg.bonawitz.client.SecAggClient`'s): :meth:`begin_round`,
    then the stage method :meth:`contribute`.

    Args:
        config: the round's public parameters.
        client_id: a non-negative integer id (part of every stream label: two ids never share a stream).
        key: the client's 16/32-byte master key (reproducible shares: the caller guarantees it is never used for
            two different secrets in one round), or None (default) for a fresh key from the OS.
    """

    def __init__(self, config: AdditiveConfig, client_id: int, *, key: bytes | None = None) -> None:
        self.config = config
        self.id = int(client_id)
        self._key = fresh_key(16) if key is None else check_key(key)
        self.round: int | None = None
        self._sent = False

    def __repr__(self) -> str:
        return f"AdditiveClient(id={self.id}, round={self.round}, key=<hidden>)"

    def begin_round(self, round_: int) -> None:
        """Start round ``round_`` (strictly after this client's previous round: a round key is used once)."""
        if self.round is not None and round_ <= self.round:
            raise ProtocolError(f"round numbers must increase: client {self.id} was in round {self.round}, asked "
                                f"to begin round {round_} (its round key would pad a second secret)")
        self.round, self._sent = int(round_), False

    def contribute(self, values: ArrayLike | None = None, *, encoded: ArrayLike | None = None
                   ) -> list[ShareMessage]:
        """Stage ShareUpload: one message per aggregator for ``values`` (or pre-``encoded`` integers).

        Raises:
            ProtocolError: no round begun, or the client already contributed to this round (its round key would
                pad a second secret).
        """
        if self.round is None:
            raise ProtocolError(f"client {self.id} has not begun a round")
        if self._sent:
            raise ProtocolError(f"client {self.id} already contributed to round {self.round}; a round key is used "
                                "once")
        cfg, round_ = self.config, self.round
        if (values is None) == (encoded is None):
            raise TypeError("give exactly one of values and encoded")
        codec = cfg.codec
        x = codec.check_encoded(encoded) if encoded is not None else codec.encode(values)  # type: ignore[arg-type]
        round_key = derive_key(self._key, "secagg/additive", round_, self.id)
        # x is a new array (check_encoded / encode return fresh ring elements): shared in place, no copy
        cs = share_compressed_owned(x, cfg.servers, cfg.ring, round_key, cfg.prg)
        self._sent = True
        msgs = [ShareMessage(round_, self.id, server_of(self.id, 0, cfg.servers), cfg.ring, cs.first, cfg.prg)]
        msgs += [ShareMessage(round_, self.id, server_of(self.id, p, cfg.servers), cfg.ring, k, cfg.prg)
                 for p, k in enumerate(cs.keys, start=1)]
        return msgs
