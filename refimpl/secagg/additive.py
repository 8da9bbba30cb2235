"""Multi-server additive secure aggregation: clients share their updates among S >= 2 non-colluding aggregators.

Protocol of one round ``r`` (the PySyft tutorial's model, made dropout-tolerant and seed-compressed):

1. **ShareUpload** -- client ``k`` encodes its (weighted) update ``x_k`` as ring elements (fixed point, or
   quantized integers), and shares it with :func:`refimpl.sharing.share_compressed` under the round key
   ``derive_key(client_key, "secagg/additive", r)``: ``S - 1`` aggregators receive a 16-byte stream key, one receives
   the array ``x_k - sum(masks)`` (which aggregator gets the array rotates with ``k``). Upload: one encoded update
   plus ``16 (S - 1)`` bytes.
2. **ReceivedReport** -- each aggregator reports the set of clients whose share reached it; the agreed set ``A`` is
   the intersection (a client whose upload reached only some aggregators is left out everywhere).
3. **PartialSum** -- aggregator ``s`` sends ``sum_{k in A} share_{k,s}``; the sum of the ``S`` partial sums is
   ``sum_{k in A} x_k mod M``, decoded to reals. No single aggregator's view depends on any ``x_k``: every share it
   holds is uniform on its own (Z_M one-time pad).

Every message carries the round number; the share streams are domain-separated by round and client through the KDF
labels. An aggregator rejects, with a specific error and no change to its state, a message for another round or
aggregator, from a client outside the round, a replay, a wrong ring, shape, key length or kind of payload.

Every round goes through the same lifecycle as a SecAgg round: ``begin_round`` on each party, the stage methods
(client: :meth:`AdditiveClient.contribute`; aggregator: :meth:`AdditiveServer.receive`, then
:meth:`AdditiveServer.finish_stage` for the ReceivedReport and :meth:`AdditiveServer.partial_sum`).

Example:
    >>> cfg = AdditiveConfig(codec=Codec(length=2, max_clients=4, clip=1.0), servers=3)
    >>> res = run_additive_round(cfg, {1: [0.5, -0.25], 2: [0.25, 1.0], 3: [-1.0, 0.0]}, round_=0,
    ...                          lost={(3, 2)})           # client 3's share never reaches aggregator 2
    >>> sorted(res.clients), res.total.tolist()
    ([1, 2], [0.75, 0.75])

References:
    K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017, sec. 3.
    H. Corrigan-Gibbs, D. Boneh, "Prio: Private, Robust, and Scalable Computation of Aggregate Statistics",
    NSDI 2017 (the multi-server additive model).
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key, check_party_count
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
from refimpl.net.accounting import Ledger
from refimpl.prg import Stream, derive_key, fresh_key, key_length
from refimpl.ring import Ring
from refimpl.secagg.codec import HEADER_BYTES, Codec, check_distinct_keys, check_prg, check_round
from refimpl.sharing.additive import apply_keystreams, share_compressed_owned

__all__ = [
    "STAGES",
    "AdditiveConfig",
    "ShareMessage",
    "PartialSum",
    "AdditiveClient",
    "AdditiveServer",
    "AdditiveResult",
    "agree",
    "combine_partial_sums",
    "run_additive_round",
]


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


def _server_of(client: int, party: int, servers: int) -> int:
    """The aggregator that receives party ``party`` of client ``client``'s sharing (party 0 = the array)."""
    return (client + party) % servers


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
        msgs = [ShareMessage(round_, self.id, _server_of(self.id, 0, cfg.servers), cfg.ring, cs.first, cfg.prg)]
        msgs += [ShareMessage(round_, self.id, _server_of(self.id, p, cfg.servers), cfg.ring, k, cfg.prg)
                 for p, k in enumerate(cs.keys, start=1)]
        return msgs


class AdditiveServer:
    """One of the S aggregators.

    Lifecycle per round (the same as :class:`~refimpl.secagg.bonawitz.server.SecAggServer`'s): :meth:`begin_round`
    with the round's clients; :meth:`receive` each ShareUpload; :meth:`finish_stage` closes ShareUpload and returns
    the ReceivedReport (also :attr:`received`); :meth:`partial_sum` over the agreed set is the last stage.
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
        self._key_owner, self.stage = {}, 0

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

    def receive(self, msg: ShareMessage) -> None:
        """Validate and store one ShareUpload; on any error nothing changes.

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
        expects_array = _server_of(msg.client, 0, cfg.servers) == self.id
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
            buf = self._spare.pop() if self._spare else np.empty(p.shape, dtype=p.dtype)
            np.copyto(buf, p)  # a copy, as p.copy(), into a buffer from last round when there is one
            self._shares[msg.client] = buf
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
        total = ring.zeros(cfg.length)
        if ring.modulus in (2**32, 2**64) and sys.byteorder == "little":  # native wrap-around: sum in place
            shares = [self._shares[c] for c in sorted(clients)]
            for s in shares:
                if isinstance(s, np.ndarray):
                    np.add(total, s, out=total)
            # the keys' expansions are folded into the total chunk by chunk, never materialised
            apply_keystreams(total, [s for s in shares if not isinstance(s, np.ndarray)], cfg.prg, np.add)
            return PartialSum(self.round, self.id, clients, total)
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


class AdditiveResult(NamedTuple):
    """A completed round: the decoded total over ``clients``, the ring total, the traffic ledger, and the uploads
    the aggregators rejected (``{client: reason}``: that client was left out of the round)."""

    total: np.ndarray
    ring_total: np.ndarray
    clients: frozenset[int]
    ledger: Ledger
    rejected: dict[int, str]


def run_additive_round(config: AdditiveConfig, contributions: Mapping[int, ArrayLike], *, round_: int = 0,
                       keys: Mapping[int, bytes] | None = None, encoded: bool = False,
                       lost: Iterable[tuple[int, int]] = (), servers: Sequence[AdditiveServer] | None = None,
                       ledger: Ledger | None = None) -> AdditiveResult:
    """Run one round in process: upload, report, agree, partial sums, combine, decode; count every message.

    An upload an aggregator rejects (a malformed or replayed share) leaves that client out of the agreed set; the
    reason is in :attr:`AdditiveResult.rejected`.

    Args:
        config: the public parameters.
        contributions: ``{client_id: values}`` (reals / integers, or pre-encoded integers if ``encoded``).
        round_: the round number.
        keys: optional per-client master keys (reproducible; distinct per client); fresh OS keys otherwise.
        encoded: contributions are already encoded integers (see :meth:`Codec.check_encoded`).
        lost: ``(client, server)`` pairs whose upload is lost (the client drops before reaching that server).
        servers: persistent aggregators (they then see round numbers increase); new ones by default.
        ledger: a :class:`~refimpl.net.accounting.Ledger` to extend (``keep=None`` for per-round figures); a new
            one by default. Each message counts its payload plus the :data:`HEADER_BYTES` header.

    Returns:
        :class:`AdditiveResult`; its total is exactly the sum over the agreed clients.

    Raises:
        KeyReuseError: two clients given the same key. ThresholdError: fewer than ``min_clients`` agreed.
    """
    ledger = Ledger(keep=None) if ledger is None else ledger
    check_distinct_keys(keys, contributions)
    servers = [AdditiveServer(config, s) for s in range(config.servers)] if servers is None else list(servers)
    lost_set = {(int(c), int(s)) for c, s in lost}
    rejected: dict[int, str] = {}
    for srv in servers:
        srv.begin_round(round_, contributions)
    with ledger.round():
        for cid, values in contributions.items():
            client = AdditiveClient(config, cid, key=None if keys is None else keys[cid])
            client.begin_round(round_)
            msgs = client.contribute(encoded=values) if encoded else client.contribute(values)
            for m in msgs:
                if (cid, m.server) in lost_set or cid in rejected:
                    continue
                ledger.record(f"client {cid}", f"server {m.server}", "share", m.nbytes + HEADER_BYTES, round=round_)
                try:
                    servers[m.server].receive(m)
                except ProtocolError as err:  # replay / key reuse: the client is left out everywhere
                    rejected[cid] = str(err)
    reports = [srv.finish_stage() for srv in servers]
    with ledger.round():
        for srv, rep in zip(servers, reports):  # every aggregator sends its report to the others
            for other in servers:
                if other is not srv:
                    ledger.record(f"server {srv.id}", f"server {other.id}", "report", 4 * len(rep) + HEADER_BYTES,
                                  round=round_)
    agreed = agree(reports) - set(rejected)
    partials = [srv.partial_sum(agreed) for srv in servers]
    with ledger.round():
        for p in partials:
            ledger.record(f"server {p.server}", "output", "partial_sum",
                          p.total.size * config.ring.element_bytes + HEADER_BYTES, round=round_)
    ring_total = combine_partial_sums(config, partials)
    return AdditiveResult(config.codec.decode_sum(ring_total), ring_total, agreed, ledger, rejected)
