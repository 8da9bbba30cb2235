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

Example:
    >>> cfg = AdditiveConfig(servers=3, max_clients=4, length=2, clip=1.0)
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
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key, check_party_count
from refimpl.errors import (
    ConfigurationError,
    KeyFormatError,
    OutOfRangeError,
    ProtocolError,
    ReplayError,
    RingMismatchError,
    ShapeMismatchError,
    ThresholdError,
)
from refimpl.prg import Stream, check_cipher, derive_key, fresh_key, key_length
from refimpl.ring import Z2_64, Ring
from refimpl.secagg.codec import Codec, Traffic, check_round
from refimpl.sharing.additive import apply_keystreams, share_compressed_owned

__all__ = [
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


@dataclass(frozen=True)
class AdditiveConfig:
    """Public parameters of multi-server additive aggregation, checked when constructed.

    The encoding fields are those of :class:`Codec` (fixed point with ``clip``/``frac_bits``, or integers in
    ``[0, 2^bits)``, plus ``headroom``); :attr:`codec` holds them and the methods below delegate to it.

    Args:
        length: d, the number of coordinates of every contribution.
        servers: S >= 2 aggregators.
        max_clients: K, the most clients whose contributions are summed in one round.
        clip, frac_bits, bits, headroom, ring: see :class:`Codec`.
        prg: the share streams' cipher.
        min_clients: fewest agreed clients for which a total is released.

    Raises:
        ConfigurationError: ``K * B`` does not fit the ring (the ``K * 2^b <= M`` rule), a clip that is not
            positive and finite, ``bits < 1``, ``min_clients`` outside ``[1, K]``, ``length < 1``.
        PartyCountError: ``servers < 2``.
    """

    length: int
    servers: int = 2
    max_clients: int = 100
    clip: float | None = 1.0
    frac_bits: int = 16
    bits: int | None = None
    headroom: int = 0
    ring: Ring = Z2_64
    prg: str = "aes128-ctr"
    min_clients: int = 1

    def __post_init__(self) -> None:
        check_party_count(self.servers, minimum=2)
        check_cipher(self.prg)
        codec = Codec(self.length, self.max_clients, self.clip, self.frac_bits, self.bits, self.headroom, self.ring)
        if isinstance(self.min_clients, bool) or not isinstance(self.min_clients, numbers.Integral):
            raise TypeError(f"min_clients must be an integer, got {self.min_clients!r}")
        if not 1 <= self.min_clients <= self.max_clients:
            raise ConfigurationError(f"min_clients must lie in [1, max_clients={self.max_clients}], "
                                     f"got {self.min_clients}")
        object.__setattr__(self, "codec", codec)

    codec: Codec = field(init=False, repr=False, compare=False)

    @property
    def per_client_bound(self) -> int:
        """B, see :attr:`Codec.per_client_bound`."""
        return self.codec.per_client_bound

    @property
    def encoded_nbytes(self) -> int:
        """Bytes of one encoded contribution."""
        return self.codec.encoded_nbytes

    def encode(self, values: ArrayLike) -> np.ndarray:
        """See :meth:`Codec.encode`."""
        return self.codec.encode(values)

    def check_encoded(self, k: ArrayLike) -> np.ndarray:
        """See :meth:`Codec.check_encoded`."""
        return self.codec.check_encoded(k)

    def decode_sum(self, total: np.ndarray) -> np.ndarray:
        """See :meth:`Codec.decode_sum`."""
        return self.codec.decode_sum(total)


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


class PartialSum(NamedTuple):
    """Message PartialSum: aggregator ``server``'s sum of its shares over the agreed ``clients``."""

    round: int
    server: int
    clients: frozenset[int]
    total: np.ndarray


def _server_of(client: int, party: int, servers: int) -> int:
    """The aggregator that receives party ``party`` of client ``client``'s sharing (party 0 = the array)."""
    return (client + party) % servers


class AdditiveClient:
    """A client of multi-server additive aggregation.

    Args:
        config: the round's public parameters.
        client_id: a non-negative integer id.
        key: the client's 16/32-byte master key (reproducible shares), or None for a fresh one.
    """

    def __init__(self, config: AdditiveConfig, client_id: int, key: bytes | None = None) -> None:
        self.config = config
        self.id = int(client_id)
        self._key = fresh_key(16) if key is None else check_key(key)
        self._rounds_sent: set[int] = set()

    def contribute(self, round_: int, values: ArrayLike | None = None, *, encoded: ArrayLike | None = None
                   ) -> list[ShareMessage]:
        """Messages ShareUpload of round ``round_``, one per aggregator, for ``values`` (or pre-``encoded`` ints).

        Raises:
            ProtocolError: the client already contributed to this round (its round key would be reused).
        """
        if round_ in self._rounds_sent:
            raise ProtocolError(f"client {self.id} already contributed to round {round_}; a round key is used once")
        cfg = self.config
        if (values is None) == (encoded is None):
            raise TypeError("give exactly one of values and encoded")
        x = cfg.check_encoded(encoded) if encoded is not None else cfg.encode(values)  # type: ignore[arg-type]
        round_key = derive_key(self._key, "secagg/additive", int(round_), self.id)
        # x is a new array (check_encoded / encode return fresh ring elements): shared in place, no copy
        cs = share_compressed_owned(x, cfg.servers, cfg.ring, round_key, cfg.prg)
        self._rounds_sent.add(round_)
        msgs = [ShareMessage(round_, self.id, _server_of(self.id, 0, cfg.servers), cfg.ring, cs.first, cfg.prg)]
        msgs += [ShareMessage(round_, self.id, _server_of(self.id, p, cfg.servers), cfg.ring, k, cfg.prg)
                 for p, k in enumerate(cs.keys, start=1)]
        return msgs


class AdditiveServer:
    """One of the S aggregators.

    Call :meth:`begin_round` with the round's clients, :meth:`receive` each ShareUpload, report :attr:`received`,
    then answer :meth:`partial_sum` for the agreed set.
    """

    def __init__(self, config: AdditiveConfig, server_id: int) -> None:
        if not 0 <= server_id < config.servers:
            raise ConfigurationError(f"server id must lie in [0, {config.servers}), got {server_id}")
        self.config = config
        self.id = int(server_id)
        self.round: int | None = None
        self._roster: frozenset[int] = frozenset()
        self._shares: dict[int, np.ndarray | bytes] = {}
        self._spare: list[np.ndarray] = []  # the previous round's share copies, reused as this round's buffers

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

    @property
    def received(self) -> frozenset[int]:
        """Message ReceivedReport: the clients whose share reached this aggregator in the current round."""
        return frozenset(self._shares)

    def receive(self, msg: ShareMessage) -> None:
        """Validate and store one ShareUpload; on any error nothing changes.

        Raises:
            TypeError: not a ShareMessage.
            ProtocolError: wrong round or aggregator, unknown client, wrong kind of payload, no round begun.
            ReplayError: this client's share was already received this round.
            RingMismatchError / ShapeMismatchError / KeyFormatError / OutOfRangeError: a malformed payload.
        """
        if not isinstance(msg, ShareMessage):
            raise TypeError(f"expected a ShareMessage, got {type(msg).__name__}")
        if self.round is None:
            raise ProtocolError(f"server {self.id} has not begun a round")
        check_round(self.round, msg.round, f"share from client {msg.client}")
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
            self._shares[msg.client] = bytes(p)

    def partial_sum(self, agreed: Iterable[int]) -> PartialSum:
        """Message PartialSum: the sum of this aggregator's shares over the agreed clients.

        Raises:
            ProtocolError: an agreed client whose share this aggregator never received.
            ThresholdError: fewer than ``min_clients`` agreed clients (the total would expose too few).
        """
        if self.round is None:
            raise ProtocolError(f"server {self.id} has not begun a round")
        clients = frozenset(int(c) for c in agreed)
        missing = sorted(clients - self.received)
        if missing:
            raise ProtocolError(f"server {self.id} has no share from clients {missing} of the agreed set")
        if len(clients) < self.config.min_clients:
            raise ThresholdError(f"only {len(clients)} clients agreed, fewer than min_clients="
                                 f"{self.config.min_clients}; no total is released")
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
    """A completed round: the decoded total over ``clients``, the ring total, and the traffic."""

    total: np.ndarray
    ring_total: np.ndarray
    clients: frozenset[int]
    traffic: Traffic


def run_additive_round(config: AdditiveConfig, contributions: Mapping[int, ArrayLike], *, round_: int = 0,
                       keys: Mapping[int, bytes] | None = None, encoded: bool = False,
                       lost: Iterable[tuple[int, int]] = (), servers: Sequence[AdditiveServer] | None = None,
                       traffic: Traffic | None = None) -> AdditiveResult:
    """Run one round in process: upload, report, agree, partial sums, combine, decode; count every message.

    Args:
        config: the public parameters.
        contributions: ``{client_id: values}`` (reals / integers, or pre-encoded integers if ``encoded``).
        round_: the round number.
        keys: optional per-client master keys (reproducible); fresh keys otherwise.
        encoded: contributions are already encoded integers (see :meth:`AdditiveConfig.check_encoded`).
        lost: ``(client, server)`` pairs whose upload is lost (the client drops before reaching that server).
        servers: persistent aggregators (they then see round numbers increase); new ones by default.
        traffic: a ledger to extend; a new one by default.

    Returns:
        :class:`AdditiveResult`; its total is exactly the sum over the agreed clients.
    """
    traffic = Traffic() if traffic is None else traffic
    servers = [AdditiveServer(config, s) for s in range(config.servers)] if servers is None else list(servers)
    lost_set = {(int(c), int(s)) for c, s in lost}
    for srv in servers:
        srv.begin_round(round_, contributions)
    for cid, values in contributions.items():
        client = AdditiveClient(config, cid, None if keys is None else keys[cid])
        msgs = client.contribute(round_, encoded=values) if encoded else client.contribute(round_, values)
        for m in msgs:
            if (cid, m.server) in lost_set:
                continue
            servers[m.server].receive(m)
            traffic.record(round_, f"client {cid}", f"server {m.server}", m.nbytes)
    reports = [srv.received for srv in servers]
    for srv in servers:  # every aggregator sends its report to the others
        for other in servers:
            if other is not srv:
                traffic.record(round_, f"server {srv.id}", f"server {other.id}", 4 * len(srv.received))
    agreed = agree(reports)
    partials = [srv.partial_sum(agreed) for srv in servers]
    for p in partials:
        traffic.record(round_, f"server {p.server}", "output", p.total.size * config.ring.element_bytes)
    ring_total = combine_partial_sums(config, partials)
    return AdditiveResult(config.decode_sum(ring_total), ring_total, agreed, traffic)
