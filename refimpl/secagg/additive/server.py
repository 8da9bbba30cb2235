"""An aggregator (one of S) of multi-server additive secure aggregation, and how the S combine their sums."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import numpy as np

from refimpl.errors import (
    ConfigurationError,
    KeyFormatError,
    KeyReuseError,
    OutOfRangeError,
    ProtocolError,
    ReplayError,
    RingMismatchError,
    ShapeMismatchError,
    ThresholdError,
)
from refimpl.prg import Stream, key_length
from refimpl.secagg.additive.config import STAGES, AdditiveConfig, PartialSum, ShareMessage, server_of
from refimpl.secagg.codec import check_round
from refimpl.sharing.additive import apply_keystreams
from refimpl.sharing.kernels import fold_keystreams

__all__ = ["AdditiveServer", "agree", "combine_partial_sums"]


class AdditiveServer:
    """One of the S aggregators.

    Lifecycle per round (the same as :class:`~refimpl.secagg.bonawitz.server.SecAggServer`'s): :meth:`begin_round`
    with the round's clients; :meth:`receive` each ShareUpload; :meth:`finish_stage` closes ShareUpload and returns
    the ReceivedReport (also :attr:`received`); :meth:`partial_sum` over the agreed set is the last stage.

    Over Z_2^32 / Z_2^64 each accepted share array is added to a running sum as it arrives, and the stream keys are
    expanded into it chunk by chunk (:meth:`fold_received`, all received keys in one pass), so the work spreads
    over the upload stage -- keys sent ahead of the updates are folded while the clients still train -- and the
    partial sum only takes out the shares of clients left out of the agreed set (exact: the ring is a group).
    """

    STAGES = STAGES

    def __init__(self, config: AdditiveConfig, server_id: int) -> None:
        if not 0 <= server_id < config.servers:
            raise ConfigurationError(f"server id must lie in [0, {config.servers}), got {server_id}")
        self.config = config
        self.id = int(server_id)
        self.round: int | None = None
        self.stage = 0
        self._roster: frozenset[int] = frozenset()
        self._shares: dict[int, np.ndarray | bytes] = {}
        self._key_owner: dict[bytes, int] = {}
        self._spare: list[np.ndarray] = []  # the previous round's share copies, reused as this round's buffers
        # the running sum of this round's accepted shares (native rings), None before the first one
        self._acc: np.ndarray | None = None
        self._keys: list[bytes] = []  # stream keys accepted but not yet folded into the running sum
        self._fold = config.ring.modulus in (2**32, 2**64) and sys.byteorder == "little"

    def __repr__(self) -> str:
        return f"AdditiveServer(id={self.id}, round={self.round}, stage={self.stage_name!r})"

    @property
    def stage_name(self) -> str:
        """The current stage ("done" after the partial sum)."""
        return STAGES[self.stage] if self.stage < len(STAGES) else "done"

    def begin_round(self, round_: int, clients: Iterable[int]) -> None:
        """Start round ``round_`` (strictly after the previous one) with the given client ids."""
        if self.round is not None and round_ <= self.round:
            raise ProtocolError(f"round numbers must increase: server {self.id} was in round {self.round}, "
                                f"asked to begin round {round_}")
        roster = frozenset(int(c) for c in clients)
        if len(roster) > self.config.max_clients:
            raise ConfigurationError(f"{len(roster)} clients exceed max_clients={self.config.max_clients} "
                                     "(the sizing check assumed at most that many)")
        # the share arrays this aggregator copied last round (never handed out) hold this round's copies
        spare = [s for s in self._shares.values() if isinstance(s, np.ndarray)]
        self.round, self._roster, self._shares, self._spare = int(round_), roster, {}, spare
        self._key_owner, self.stage, self._acc, self._keys = {}, 0, None, []

    @property
    def received(self) -> frozenset[int]:
        """Message ReceivedReport: the clients whose share reached this aggregator in the current round."""
        return frozenset(self._shares)

    def finish_stage(self) -> frozenset[int]:
        """Close ShareUpload; return this aggregator's ReceivedReport (the clients whose share arrived)."""
        if self.round is None:
            raise ProtocolError(f"server {self.id} has not begun a round")
        if self.stage != 0:
            raise ProtocolError(f"server {self.id} is at stage {self.stage_name}, not ShareUpload")
        self.stage = 1
        return self.received

    def receive(self, msg: ShareMessage, *, take: bool = False) -> None:
        """Validate and store one ShareUpload; on any error nothing changes.

        ``take=True``: keep the payload array itself instead of a copy -- only for a caller that hands over an
        array no one else holds or changes (the in-process simulation, whose clients share into fresh arrays).

        Raises:
            TypeError: not a ShareMessage.
            ProtocolError: wrong round, stage or aggregator, unknown client, wrong kind of payload, no round begun.
            ReplayError: this client's share was already received this round.
            KeyReuseError: the stream key equals another client's (one key would pad two secrets).
            RingMismatchError / ShapeMismatchError / KeyFormatError / OutOfRangeError: a malformed payload.
        """
        if not isinstance(msg, ShareMessage):
            raise TypeError(f"expected a ShareMessage, got {type(msg).__name__}")
        if self.round is None:
            raise ProtocolError(f"server {self.id} has not begun a round")
        check_round(self.round, msg.round, f"share from client {msg.client}")
        if self.stage != 0:
            raise ProtocolError(f"share from client {msg.client} arrived during stage {self.stage_name} of server "
                                f"{self.id}")
        cfg = self.config
        if msg.server != self.id:
            raise ProtocolError(f"share addressed to server {msg.server} reached server {self.id}")
        if msg.client not in self._roster:
            raise ProtocolError(f"client {msg.client} is not in round {self.round}")
        if msg.client in self._shares:
            raise ReplayError(f"share from client {msg.client} for round {msg.round} already received by "
                              f"server {self.id}; replay rejected")
        if msg.ring != cfg.ring:
            raise RingMismatchError(f"share from client {msg.client} is over {msg.ring!r}, the round uses {cfg.ring!r}")
        expects_array = server_of(msg.client, 0, cfg.servers) == self.id
        p = msg.payload
        if expects_array:
            if not isinstance(p, np.ndarray):
                raise ProtocolError(f"server {self.id} expects client {msg.client}'s share array, got "
                                    f"{type(p).__name__}")
            if p.dtype != cfg.ring.dtype:
                raise RingMismatchError(f"share from client {msg.client} has dtype {p.dtype}, {cfg.ring!r} uses "
                                        f"{cfg.ring.dtype}")
            if p.shape != (cfg.length,):
                raise ShapeMismatchError(f"share from client {msg.client} has shape {p.shape}, expected "
                                         f"({cfg.length},)")
            if not cfg.ring.is_power_of_two and p.size and p.max() >= cfg.ring.modulus:
                raise OutOfRangeError(f"share from client {msg.client} holds {p.max()}, not an element of "
                                      f"{cfg.ring!r}")
            if take and p.flags.c_contiguous and p.flags.writeable:
                self._shares[msg.client] = p  # handed over: no copy
                self._spare.clear()  # last round's arrays are not needed as buffers: free them now
            else:
                buf = self._spare.pop() if self._spare else np.empty(p.shape, dtype=p.dtype)
                np.copyto(buf, p)  # a copy, as p.copy(), into a buffer from last round when there is one
                self._shares[msg.client] = buf
            self._add(self._shares[msg.client], np.add)
        else:
            if not isinstance(p, (bytes, bytearray)):
                raise ProtocolError(f"server {self.id} expects client {msg.client}'s stream key, got "
                                    f"{type(p).__name__}")
            if msg.prg != cfg.prg:
                raise ProtocolError(f"share key from client {msg.client} is for {msg.prg!r}, the round uses "
                                    f"{cfg.prg!r}")
            if len(p) != key_length(cfg.prg):
                raise KeyFormatError(f"share key from client {msg.client} has {len(p)} bytes, {cfg.prg} keys have "
                                     f"{key_length(cfg.prg)}")
            k = bytes(p)
            if k in self._key_owner:
                raise KeyReuseError(f"client {msg.client} sent the same stream key as client {self._key_owner[k]} in "
                                    f"round {self.round}: one key would pad two secrets; share rejected")
            self._key_owner[k] = msg.client
            self._shares[msg.client] = k
            if self._fold:
                self._keys.append(k)  # expanded by fold_received: several keys in one pass over the sum

    def fold_received(self) -> None:
        """Expand the stream keys received so far into the running sum, all in one chunked pass (each chunk of the
        sum stays in cache while every key's keystream is added). :meth:`receive` defers them to here; the
        in-process round calls this once the keys are in, while the clients still train, and :meth:`partial_sum`
        calls it anyway. Nothing to do for rings without native wrap-around."""
        keys, self._keys = self._keys, []
        if not keys:
            return
        cfg = self.config
        if self._acc is None:  # the first keystream is written, not added
            self._acc = np.empty(cfg.length, dtype=cfg.ring.dtype)
            Stream(keys[0], cipher=cfg.prg).read_into(self._acc)
            keys = keys[1:]
        fold_keystreams(self._acc, [(k, np.add) for k in keys], cfg.prg)

    def _add(self, share: np.ndarray | bytes, op: np.ufunc) -> None:
        """Fold one accepted share into the running sum (``op``: np.add, or np.subtract to take it out again)."""
        if not self._fold:
            return
        cfg = self.config
        if self._acc is None:  # the first share is written, not added: no zero-filled buffer to read
            self._acc = np.empty(cfg.length, dtype=cfg.ring.dtype)
            if isinstance(share, np.ndarray):
                np.copyto(self._acc, share)
            else:
                Stream(share, cipher=cfg.prg).read_into(self._acc)
            return
        if isinstance(share, np.ndarray):
            op(self._acc, share, out=self._acc)
        else:
            apply_keystreams(self._acc, [share], cfg.prg, op)  # chunk by chunk, never materialised

    def partial_sum(self, agreed: Iterable[int]) -> PartialSum:
        """Message PartialSum: the sum of this aggregator's shares over the agreed clients.

        Raises:
            ProtocolError: an agreed client whose share this aggregator never received.
            ThresholdError: fewer than ``min_clients`` agreed clients (the total would expose too few).
        """
        if self.round is None:
            raise ProtocolError(f"server {self.id} has not begun a round")
        if self.stage > 1:
            raise ProtocolError(f"server {self.id} already released its partial sum of round {self.round}")
        clients = frozenset(int(c) for c in agreed)
        missing = sorted(clients - self.received)
        if missing:
            raise ProtocolError(f"server {self.id} has no share from clients {missing} of the agreed set")
        if len(clients) < self.config.min_clients:
            raise ThresholdError(f"only {len(clients)} clients agreed, fewer than min_clients="
                                 f"{self.config.min_clients}; no total is released")
        self.stage = 2  # ShareUpload (if still open) and PartialSum end here
        cfg, ring = self.config, self.config.ring
        if self._fold:  # native wrap-around: the running sum, less the shares of clients left out
            self.fold_received()
            for c in sorted(self.received - clients):
                self._add(self._shares[c], np.subtract)
            total, self._acc = self._acc, None  # handed out: this server no longer writes to it
            assert total is not None  # min_clients >= 1 agreed clients, every one received
            return PartialSum(self.round, self.id, clients, total)
        total = ring.zeros(cfg.length)
        for c in sorted(clients):
            s = self._shares[c]
            part = s if isinstance(s, np.ndarray) else ring.sample(Stream(s, cipher=cfg.prg), cfg.length)
            total = ring.add(total, part)
        return PartialSum(self.round, self.id, clients, np.asarray(total, dtype=ring.dtype))


def agree(reports: Sequence[Iterable[int]]) -> frozenset[int]:
    """The agreed set: clients whose shares reached every aggregator (the intersection of the ReceivedReports)."""
    sets = [frozenset(r) for r in reports]
    if not sets:
        raise ValueError("agree needs at least one report")
    return frozenset.intersection(*sets)


def combine_partial_sums(config: AdditiveConfig, partials: Sequence[PartialSum]) -> np.ndarray:
    """The ring total from the S PartialSums: one from each aggregator, same round, same client set.

    Raises:
        ProtocolError: a missing or duplicate aggregator, mixed rounds, or mixed client sets.
    """
    servers = sorted(p.server for p in partials)
    if servers != list(range(config.servers)):
        raise ProtocolError(f"need one partial sum from each of servers 0..{config.servers - 1}, got {servers}")
    if len({p.round for p in partials}) != 1:
        raise ProtocolError(f"partial sums from different rounds: {sorted({p.round for p in partials})}")
    if len({p.clients for p in partials}) != 1:
        raise ProtocolError("partial sums over different client sets; the aggregators must agree first")
    ring = config.ring
    total = ring.zeros(config.length)
    for p in partials:
        if ring.modulus in (2**32, 2**64) and isinstance(p.total, np.ndarray) and p.total.dtype == ring.dtype \
                and p.total.shape == total.shape:
            np.add(total, p.total, out=total)  # native wrap-around: in place
        else:
            total = ring.add(total, p.total)
    return np.asarray(total, dtype=ring.dtype)
