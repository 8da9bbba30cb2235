"""The server of single-server SecAgg (Bonawitz et al., CCS 2017; SecAgg+, Bell et al., CCS 2020) and a round driver.

The protocol, its four named stages and the client live in :mod:`refimpl.secagg.bonawitz.client`.
The server collects each
stage's messages (rejecting malformed, misaddressed, out-of-stage and replayed ones without changing state), closes
the stage when told, and in Unmasking rebuilds from ``t`` Shamir shares the self-mask seeds of the survivors and the
mask private keys of the clients that dropped after ShareKeys, removing every mask from the sum.

References:
    K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning", ACM CCS 2017.
    J. H. Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", ACM CCS 2020.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from numpy.typing import ArrayLike

from refimpl.errors import ProtocolError, ReplayError, RingMismatchError, ShapeMismatchError, ThresholdError
from refimpl.secagg.bonawitz.client import SecAggClient
from refimpl.secagg.bonawitz.config import STAGES, SecAggConfig
from refimpl.secagg.bonawitz.masks import mask, pair_seed
from refimpl.secagg.bonawitz.messages import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskingResponse, message_nbytes
from refimpl.secagg.codec import Traffic, check_round
from refimpl.sharing.shamir import DEFAULT_FIELD, ShamirShares, reconstruct_bytes

__all__ = ["SecAggResult", "SecAggServer", "run_secagg_round"]


class SecAggResult(NamedTuple):
    """A completed SecAgg round: the decoded total over ``clients`` (= U3), the ring total, the traffic and the
    client sets after each stage."""

    total: np.ndarray
    ring_total: np.ndarray
    clients: frozenset[int]
    traffic: Traffic
    stage_sets: tuple[frozenset[int], ...]


class SecAggServer:
    """The server of one SecAgg round: collects each stage's messages, validates them, and finishes the stage.

    :meth:`receive` rejects a message for another round, from an unknown client or a client outside the stage's
    set, at the wrong stage, malformed, or replayed -- with a specific error and no change of state.
    """

    def __init__(self, config: SecAggConfig, round_: int) -> None:
        self.config, self.round = config, int(round_)
        self.stage = 0
        self.sets: list[frozenset[int]] = [frozenset(range(1, config.num_clients + 1))]
        self._got: dict[int, object] = {}
        self._keys: dict[int, tuple[bytes, bytes]] = {}
        self._cts: dict[int, Mapping[int, bytes]] = {}
        self._masked: dict[int, np.ndarray] = {}

    @property
    def stage_name(self) -> str:
        """The stage whose messages the server is collecting ("done" after Unmasking)."""
        return STAGES[self.stage] if self.stage < len(STAGES) else "done"

    def receive(self, msg: AdvertiseKeys | ShareKeys | MaskedInput | UnmaskingResponse) -> None:
        """Validate and store one client message of the current stage.

        Raises:
            TypeError: not a SecAgg message. ProtocolError: wrong round, stage or sender, malformed content.
            ReplayError: the sender already sent this stage's message. ShapeMismatchError / RingMismatchError:
            a masked input of the wrong shape or dtype.
        """
        expected = (AdvertiseKeys, ShareKeys, MaskedInput, UnmaskingResponse)
        if not isinstance(msg, expected):
            raise TypeError(f"expected a SecAgg message, got {type(msg).__name__}")
        check_round(self.round, msg.round, f"{type(msg).__name__} from client {msg.client}")
        if self.stage >= len(STAGES) or not isinstance(msg, expected[self.stage]):
            raise ProtocolError(f"{type(msg).__name__} from client {msg.client} arrived during stage "
                                f"{self.stage_name}")
        if msg.client not in self.sets[-1]:
            raise ProtocolError(f"client {msg.client} is not in the set of stage {self.stage_name}")
        if msg.client in self._got:
            raise ReplayError(f"{type(msg).__name__} from client {msg.client} in round {self.round} already "
                              "received; replay rejected")
        cfg = self.config
        if isinstance(msg, AdvertiseKeys):
            if not (isinstance(msg.c_public, bytes) and isinstance(msg.s_public, bytes)
                    and len(msg.c_public) == len(msg.s_public) == 32):
                raise ProtocolError(f"client {msg.client}'s public keys must be 32-byte X25519 keys")
        elif isinstance(msg, ShareKeys):
            extra = sorted(set(msg.ciphertexts) - (cfg.graph[msg.client] & self.sets[-1]))
            if extra:
                raise ProtocolError(f"client {msg.client} sent ciphertexts for clients {extra} outside its "
                                    "neighbourhood in U1")
        elif isinstance(msg, MaskedInput):
            y = msg.masked
            if not isinstance(y, np.ndarray) or y.dtype != cfg.ring.dtype:
                raise RingMismatchError(f"masked input from client {msg.client} must be a {cfg.ring.dtype} array "
                                        f"of {cfg.ring!r}, got {getattr(y, 'dtype', type(y).__name__)}")
            if y.shape != (cfg.length,):
                raise ShapeMismatchError(f"masked input from client {msg.client} has shape {y.shape}, expected "
                                         f"({cfg.length},)")
        else:
            both = set(msg.key_shares) & set(msg.seed_shares)
            if both:
                raise ProtocolError(f"client {msg.client} revealed both key and seed shares of {sorted(both)}")
            hood = cfg.closed_neighbourhood(msg.client)
            bad = sorted(set(msg.key_shares) - ((self.sets[2] - self.sets[3]) & hood)) + \
                sorted(set(msg.seed_shares) - (self.sets[3] & hood))
            if bad:
                raise ProtocolError(f"client {msg.client} sent shares for clients {bad} the server did not ask for")
        self._got[msg.client] = msg

    def finish_stage(self) -> object:
        """Close the current stage; return what the server broadcasts next (or the result after Unmasking).

        Returns:
            After AdvertiseKeys: U1's public keys ``{v: (c_pk, s_pk)}``. After ShareKeys: each client's inbox
            ``{v: {u: ciphertext}}``. After MaskedInputCollection: U3. After Unmasking: the ring total.

        Raises:
            ThresholdError: fewer than ``t`` clients sent this stage's message, or a secret cannot be rebuilt.
        """
        cfg, got = self.config, self._got
        name = self.stage_name
        if self.stage >= len(STAGES):
            raise ProtocolError("the round is already finished")
        senders = frozenset(got)
        if self.stage < 3 and len(senders) < cfg.threshold:
            raise ThresholdError(f"only {len(senders)} clients completed stage {name} of round {self.round}, fewer "
                                 f"than the threshold t={cfg.threshold}; the round aborts")
        if name == "Unmasking":
            total = self._unmask(got)  # type: ignore[arg-type]  # may abort: the state is left untouched
            self._got, self.stage = {}, self.stage + 1
            self.sets.append(senders)
            return total
        self._got = {}
        self.stage += 1
        if name == "AdvertiseKeys":
            self._keys = {u: (m.c_public, m.s_public) for u, m in got.items()}  # type: ignore[attr-defined]
            self.sets.append(senders)
            return dict(self._keys)
        if name == "ShareKeys":
            self._cts = {u: m.ciphertexts for u, m in got.items()}  # type: ignore[attr-defined]
            self.sets.append(senders)
            return {v: {u: c[v] for u, c in self._cts.items() if v in c} for v in senders}
        if name == "MaskedInputCollection":
            self._masked = {u: m.masked for u, m in got.items()}  # type: ignore[attr-defined]
            self.sets.append(senders)
            return senders
        raise AssertionError(name)  # pragma: no cover

    def _rebuild(self, owner: int, responses: Mapping[int, UnmaskingResponse], kind: str) -> bytes:
        cfg = self.config
        pts, rows = [], []
        for v, r in sorted(responses.items()):
            shares = r.key_shares if kind == "key" else r.seed_shares
            if owner in shares:
                pts.append(v)
                rows.append(np.asarray(shares[owner], dtype=np.uint64))
        if len(pts) < cfg.threshold:
            what = "mask private key" if kind == "key" else "self-mask seed"
            raise ThresholdError(f"only {len(pts)} shares of client {owner}'s {what} came back, fewer than "
                                 f"t={cfg.threshold}; the round aborts")
        return reconstruct_bytes(ShamirShares(DEFAULT_FIELD, cfg.threshold, tuple(pts), np.stack(rows)))

    def _unmask(self, responses: Mapping[int, UnmaskingResponse]) -> np.ndarray:
        cfg, ring = self.config, self.config.ring
        u2, u3 = self.sets[2], self.sets[3]
        total = ring.sum(np.stack([self._masked[u] for u in sorted(u3)]), axis=0)
        for u in sorted(u3):
            total = ring.sub(total, mask(self._rebuild(u, responses, "seed"), cfg))
        for u in sorted(u2 - u3):
            sk = X25519PrivateKey.from_private_bytes(self._rebuild(u, responses, "key"))
            for v in sorted(cfg.graph[u] & u3):
                secret = sk.exchange(X25519PublicKey.from_public_bytes(self._keys[v][1]))
                p = mask(pair_seed(secret, self.round, u, v, cfg), cfg)
                total = ring.sub(total, p) if v < u else ring.add(total, p)  # v added +p iff v < u
        return np.asarray(total, dtype=ring.dtype)


def run_secagg_round(config: SecAggConfig, contributions: Mapping[int, ArrayLike], *, round_: int = 0,
                     keys: Mapping[int, bytes] | None = None, encoded: bool = False,
                     dropouts: Mapping[int, str] | None = None, traffic: Traffic | None = None) -> SecAggResult:
    """Run one SecAgg round in process, with clients dropping out before the named stage.

    Args:
        config: the public parameters.
        contributions: ``{u: values}`` for the clients taking part (ids in ``1..n``); others count as dropped.
        round_: the round number.
        keys: optional per-client master keys.
        encoded: contributions are pre-encoded integers.
        dropouts: ``{u: stage}``: client ``u`` sends nothing from stage ``stage`` (one of :data:`STAGES`) on.
        traffic: a ledger to extend.

    Returns:
        :class:`SecAggResult`, whose total is exactly the sum over U3.

    Raises:
        ThresholdError: too few clients remain at some stage.
    """
    dropouts = dict(dropouts or {})
    bad = {u: s for u, s in dropouts.items() if s not in STAGES}
    if bad:
        raise ValueError(f"dropout stages must be among {STAGES}, got {bad}")
    traffic = Traffic() if traffic is None else traffic
    server = SecAggServer(config, round_)
    clients = {u: SecAggClient(config, u, round_, None if keys is None else keys[u]) for u in sorted(contributions)}

    def alive(stage: int) -> list[int]:
        return [u for u in clients if u not in dropouts or STAGES.index(dropouts[u]) > stage]

    def send(u: int, msg: object) -> None:
        server.receive(msg)  # type: ignore[arg-type]
        traffic.record(round_, f"client {u}", "server", message_nbytes(msg))

    def reached(stage: int) -> list[int]:
        return sorted(u for u in alive(stage) if u in server.sets[-1])

    for u in reached(0):
        send(u, clients[u].advertise_keys())
    roster = server.finish_stage()
    for u in reached(1):
        traffic.record(round_, "server", f"client {u}", 68 * len(roster))  # type: ignore[arg-type]
        send(u, clients[u].share_keys(roster))  # type: ignore[arg-type]
    inboxes = server.finish_stage()
    for u in reached(2):
        inbox = inboxes[u]  # type: ignore[index]
        traffic.record(round_, "server", f"client {u}", sum(4 + len(c) for c in inbox.values()))
        vals = contributions[u]
        send(u, clients[u].masked_input(inbox, encoded=vals) if encoded else clients[u].masked_input(inbox, vals))
    u3 = server.finish_stage()
    for u in reached(3):
        traffic.record(round_, "server", f"client {u}", 4 * len(u3))  # type: ignore[arg-type]
        send(u, clients[u].unmask(u3))  # type: ignore[arg-type]
    ring_total = server.finish_stage()
    assert isinstance(ring_total, np.ndarray) and isinstance(u3, frozenset)
    return SecAggResult(config.codec.decode_sum(ring_total), ring_total, u3, traffic, tuple(server.sets))
