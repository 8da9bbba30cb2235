"""The client of multi-server additive secure aggregation: one seed-compressed sharing per round."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key
from refimpl.errors import (
    ProtocolError,
)
from refimpl.prg import derive_key, fresh_key
from refimpl.secagg.additive.config import AdditiveConfig, ShareMessage, server_of
from refimpl.secagg.codec import ScaledPieces
from refimpl.sharing.additive import party_keys, share_compressed_owned

__all__ = ["AdditiveClient"]


class AdditiveClient:
    """A client of multi-server additive aggregation; one object serves many rounds.

    Lifecycle per round (the same as :class:`~refimpl.secagg.bonawitz.client.SecAggClient`'s): :meth:`begin_round`,
    then the stage method :meth:`contribute`. ShareUpload may also go in two parts: :meth:`share_keys` first (the
    S - 1 stream-key messages do not depend on the update, so they can be sent -- and expanded by their aggregators
    -- before the update exists), then :meth:`contribute`, which returns only the array message.

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
        self.round, self._sent, self._keys_sent = int(round_), False, False
        self._party: list[bytes] | None = None  # this round's stream keys, once derived

    def _check_open(self) -> None:
        if self.round is None:
            raise ProtocolError(f"client {self.id} has not begun a round")
        if self._sent:
            raise ProtocolError(f"client {self.id} already contributed to round {self.round}; a round key is used "
                                "once")

    def _round_key(self) -> bytes:
        return derive_key(self._key, "secagg/additive", self.round, self.id)  # type: ignore[arg-type]

    def _party_keys(self) -> list[bytes]:
        """The S - 1 stream keys of this round's sharing (derived from the round key, as share_compressed does)."""
        if self._party is None:
            cfg = self.config
            self._party = party_keys(self._round_key(), cfg.servers, cfg.prg)
        return self._party

    def share_keys(self) -> list[ShareMessage]:
        """Stage ShareUpload, first part: the S - 1 stream-key messages, one per aggregator that expands its share
        itself (the same keys :meth:`contribute` uses; they carry nothing about the update).

        Raises:
            ProtocolError: no round begun, already contributed, or the keys already sent this round.
        """
        self._check_open()
        if self._keys_sent:
            raise ProtocolError(f"client {self.id} already sent its share keys for round {self.round}")
        msgs = self._key_messages()
        self._keys_sent = True
        return msgs

    def _key_messages(self) -> list[ShareMessage]:
        cfg, round_ = self.config, self.round
        assert round_ is not None
        return [ShareMessage(round_, self.id, server_of(self.id, p, cfg.servers), cfg.ring, k, cfg.prg)
                for p, k in enumerate(self._party_keys(), start=1)]

    def contribute(self, values: ArrayLike | None = None, *, encoded: ArrayLike | ScaledPieces | None = None
                   ) -> list[ShareMessage]:
        """Stage ShareUpload: one message per aggregator for ``values`` (or pre-``encoded`` integers); only the
        array message when :meth:`share_keys` has sent the keys already.

        ``encoded`` may be a :class:`~refimpl.secagg.codec.ScaledPieces` (float pieces and a factor): encoded,
        range-checked and masked in one fused pass (:meth:`Codec.mask_scaled`), the same share as for
        ``encoded=x.encoded()``.

        Raises:
            ProtocolError: no round begun, or the client already contributed to this round (its round key would
                pad a second secret).
        """
        self._check_open()
        cfg, round_ = self.config, self.round
        assert round_ is not None
        if (values is None) == (encoded is None):
            raise TypeError("give exactly one of values and encoded")
        codec = cfg.codec
        first: np.ndarray | None = None
        if isinstance(encoded, ScaledPieces):  # encode, check and mask in one fused pass where it applies
            first = codec.mask_scaled(encoded, self._party_keys(), cfg.prg)
            if first is None:
                encoded = encoded.encoded()  # the unfused definition (and its errors)
        if first is None:
            x = codec.check_encoded(encoded) if encoded is not None else codec.encode(values)  # type: ignore[arg-type]
            # x is a new array (check_encoded / encode return fresh ring elements): shared in place, no copy
            first = share_compressed_owned(x, cfg.servers, cfg.ring, self._round_key(), cfg.prg).first
        self._sent = True
        msgs = [ShareMessage(round_, self.id, server_of(self.id, 0, cfg.servers), cfg.ring, first, cfg.prg)]
        if not self._keys_sent:
            msgs += self._key_messages()
        return msgs
