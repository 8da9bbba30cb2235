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

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import NamedTuple

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import ArrayLike

from refimpl.errors import (
    ConfigurationError,
    KeyReuseError,
    ProtocolError,
    ReplayError,
    RingMismatchError,
    ShapeMismatchError,
    ThresholdError,
)
from refimpl.net.accounting import Ledger
from refimpl.prg import key_length
from refimpl.secagg.bonawitz.client import SecAggClient
from refimpl.secagg.bonawitz.config import KEY_LIMBS, STAGES, SecAggConfig
from refimpl.secagg.bonawitz.masks import check_public_key, exchange, fold_masks, pair_seed
from refimpl.secagg.bonawitz.messages import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskingResponse, message_nbytes
from refimpl.secagg.codec import HEADER_BYTES, check_distinct_keys, check_round
from refimpl.sharing.shamir import DEFAULT_FIELD, reconstruct_limbs_many

__all__ = ["SecAggResult", "SecAggServer", "run_secagg_round"]


class SecAggResult(NamedTuple):
    """A completed SecAgg round: the decoded total over ``clients`` (= U3), the ring total, the traffic ledger, the
    client sets after each stage, and the messages the server rejected (``{client: reason}``; such a client is
    dropped from that stage on)."""

    total: np.ndarray
    ring_total: np.ndarray
    clients: frozenset[int]
    ledger: Ledger
    stage_sets: tuple[frozenset[int], ...]
    rejected: dict[int, str]


class SecAggServer:
    """The SecAgg server: per round, collects each stage's messages, validates them, and finishes the stage.

    Lifecycle per round (the same as :class:`~refimpl.secagg.additive.AdditiveServer`'s): :meth:`begin_round`;
    then for each of the four :data:`STAGES`, :meth:`receive` the clients' messages and :meth:`finish_stage`
    (which returns what the server broadcasts next, and after Unmasking the ring total).

    :meth:`receive` rejects a message for another round, from an unknown client or a client outside the stage's
    set, at the wrong stage, malformed (an invalid X25519 key, shares of the wrong length), or replayed -- with a
    specific error naming the client, and no change of state: that client has dropped out of the stage.
    """

    STAGES = STAGES

    def __init__(self, config: SecAggConfig) -> None:
        self.config = config
        self.round: int | None = None
        self.stage = len(STAGES)
        self.sets: list[frozenset[int]] = []

    def __repr__(self) -> str:
        return f"SecAggServer(round={self.round}, stage={self.stage_name!r})"

    def begin_round(self, round_: int, clients: Iterable[int] | None = None) -> None:
        """Start round ``round_`` (strictly after the previous one) with ``clients`` (default: all ``1..n``)."""
        if self.round is not None and round_ <= self.round:
            raise ProtocolError(f"round numbers must increase: the server was in round {self.round}, asked to "
                                f"begin round {round_}")
        n = self.config.num_clients
        roster = frozenset(range(1, n + 1)) if clients is None else frozenset(int(c) for c in clients)
        outside = sorted(c for c in roster if not 1 <= c <= n)
        if outside:
            raise ConfigurationError(f"client ids {outside} are outside 1..{n}")
        self.round, self.stage, self.sets = int(round_), 0, [roster]
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
        if self.round is None:
            raise ProtocolError("the server has not begun a round")
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
            check_public_key(msg.c_public, msg.client, "encryption")
            check_public_key(msg.s_public, msg.client, "masking")
            for v, m in self._got.items():
                same = {msg.c_public, msg.s_public} & {m.c_public, m.s_public}  # type: ignore[attr-defined]
                if same:
                    raise KeyReuseError(f"client {msg.client} advertised the same X25519 public key as client {v} "
                                        f"in round {self.round}: one key would mask two inputs; client dropped")
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
            self._check_share_shapes(msg)
        self._got[msg.client] = msg

    def _check_share_shapes(self, msg: UnmaskingResponse) -> None:
        """Every share is a 1-D array of field elements of the secret's limb count (else a ProtocolError naming
        the client: the message is rejected before it could reach the reconstruction)."""
        limbs = {"key": KEY_LIMBS, "seed": key_length(self.config.prg) // 2}
        for kind, shares in (("key", msg.key_shares), ("seed", msg.seed_shares)):
            arrs = list(shares.values())
            if arrs and all(type(a) is np.ndarray and a.shape == (limbs[kind],) and a.dtype == arrs[0].dtype
                            for a in arrs) and arrs[0].dtype.kind in "iu":  # the common case, in one reduction
                every = np.concatenate(arrs)
                if not every.size or (int(every.min()) >= 0 and int(every.max()) < DEFAULT_FIELD.modulus):
                    continue
            for owner, share in shares.items():  # share by share: the first bad one named
                a = share if isinstance(share, np.ndarray) else None
                if a is None or a.shape != (limbs[kind],) or a.dtype.kind not in "iu":
                    got = f"shape {a.shape}, dtype {a.dtype}" if a is not None else type(share).__name__
                    raise ProtocolError(f"client {msg.client}'s share of client {owner}'s {kind} must be "
                                        f"{limbs[kind]} integer limbs, got {got}; response rejected")
                if a.size and (int(a.min()) < 0 or int(a.max()) >= DEFAULT_FIELD.modulus):
                    raise ProtocolError(f"client {msg.client}'s share of client {owner}'s {kind} holds values "
                                        f"outside {DEFAULT_FIELD!r}; response rejected")

    def finish_stage(self) -> object:
        """Close the current stage; return what the server broadcasts next (or the result after Unmasking).

        Returns:
            After AdvertiseKeys: U1's public keys ``{v: (c_pk, s_pk)}``. After ShareKeys: each client's inbox
            ``{v: {u: ciphertext}}``. After MaskedInputCollection: U3. After Unmasking: the ring total.

        Raises:
            ThresholdError: fewer than ``t`` clients sent this stage's message, or a secret cannot be rebuilt.
        """
        if self.round is None:
            raise ProtocolError("the server has not begun a round")
        if self.stage >= len(STAGES):
            raise ProtocolError(f"round {self.round} is already finished")
        cfg, got = self.config, self._got
        name = self.stage_name
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

    def _rebuild(self, owners: Iterable[int], responses: Mapping[int, UnmaskingResponse], kind: str
                 ) -> dict[int, bytes]:
        """The secrets of ``owners`` (mask private keys or self-mask seeds), each from the first ``t`` shares (in
        client order) that came back: owners whose shares come from the same ``t`` clients are rebuilt together
        (one Lagrange combination for all of them), bit for bit what rebuilding them one by one gives. Errors name
        the first failing owner in ``owners``' order."""
        t = self.config.threshold
        table = {v: r.key_shares if kind == "key" else r.seed_shares for v, r in sorted(responses.items())}
        holders = {u: [v for v, shares in table.items() if u in shares] for u in owners}
        groups: dict[tuple[int, ...], list[int]] = {}
        for u, pts in holders.items():
            if len(pts) >= t:
                groups.setdefault(tuple(pts[:t]), []).append(u)
        limbs: dict[int, np.ndarray] = {}
        block = max(1, (1 << 20) // (t * KEY_LIMBS))  # owners per combination: at most ~8 MiB of shares at once
        for first, grp in groups.items():
            for i in range(0, len(grp), block):
                part = grp[i:i + block]
                data = np.array([[np.asarray(table[v][u], dtype=np.uint64) for u in part] for v in first],
                                dtype=np.uint64)  # (t, owners, limbs)
                limbs.update(zip(part, reconstruct_limbs_many(first, data, DEFAULT_FIELD)))
        what = "mask private key" if kind == "key" else "self-mask seed"
        out = {}
        for u, pts in holders.items():
            if len(pts) < t:
                raise ThresholdError(f"only {len(pts)} shares of client {u}'s {what} came back, fewer than "
                                     f"t={t}; the round aborts")
            if int(limbs[u].max(initial=0)) >= 2**16:  # shares of the right form that do not belong together
                raise ProtocolError(f"the shares of client {u}'s {what} from clients {pts} are inconsistent "
                                    "(a client sent a wrong share); the round aborts")
            out[u] = limbs[u].astype("<u2").tobytes()
        return out

    def _unmask(self, responses: Mapping[int, UnmaskingResponse]) -> np.ndarray:
        cfg, ring = self.config, self.config.ring
        assert self.round is not None
        u2, u3 = self.sets[2], self.sets[3]
        ys = [self._masked[u] for u in sorted(u3)]
        if ring.modulus in (2**32, 2**64):  # native wrap-around: accumulate in place, no K x d stack
            total = np.array(ys[0], dtype=ring.dtype)
            for y in ys[1:]:
                np.add(total, y, out=total)
        else:
            total = ring.sum(np.stack(ys), axis=0)
        minus = list(self._rebuild(sorted(u3), responses, "seed").values())  # the survivors' self masks
        plus: list[bytes] = []
        for u, key in self._rebuild(sorted(u2 - u3), responses, "key").items():
            sk = X25519PrivateKey.from_private_bytes(key)
            for v in sorted(cfg.graph[u] & u3):
                seed = pair_seed(exchange(sk, self._keys[v][1], v), self.round, u, v, cfg)
                (minus if v < u else plus).append(seed)  # v added +PRG(seed) iff v < u
        total = np.asarray(total, dtype=ring.dtype)
        return fold_masks(total, plus, minus, cfg, in_place=total.flags.writeable)


def run_secagg_round(config: SecAggConfig, contributions: Mapping[int, ArrayLike], *, round_: int = 0,
                     keys: Mapping[int, bytes] | None = None, encoded: bool = False,
                     dropouts: Mapping[int, str] | None = None, ledger: Ledger | None = None,
                     clients: Mapping[int, SecAggClient] | None = None) -> SecAggResult:
    """Run one SecAgg round in process, with clients dropping out before the named stage.

    A message the server rejects (an invalid X25519 key, a replay, shares of the wrong length, ...) drops its
    sender from that stage on, named in :attr:`SecAggResult.rejected`; the round finishes with the others while
    at least ``t`` remain.

    Args:
        config: the public parameters.
        contributions: ``{u: values}`` for the clients taking part (ids in ``1..n``); others count as dropped.
        round_: the round number.
        keys: optional per-client master keys (reproducible; distinct per client); fresh OS keys otherwise.
        encoded: contributions are pre-encoded integers.
        dropouts: ``{u: stage}``: client ``u`` sends nothing from stage ``stage`` (one of :data:`STAGES`) on.
        ledger: a :class:`~refimpl.net.accounting.Ledger` to extend (``keep=None`` for per-round figures); a new one
            by default. Each message counts its payload plus the :data:`HEADER_BYTES` header.
        clients: the client objects to use (e.g. a misbehaving one in a test); new ones by default.

    Returns:
        :class:`SecAggResult`, whose total is exactly the sum over U3.

    Raises:
        ThresholdError: too few clients remain at some stage. KeyReuseError: two clients given the same key.
    """
    dropouts = dict(dropouts or {})
    bad = {u: s for u, s in dropouts.items() if s not in STAGES}
    if bad:
        raise ConfigurationError(f"dropout stages must be among {STAGES}, got {bad}")
    check_distinct_keys(keys, contributions)
    ledger = Ledger(keep=None) if ledger is None else ledger
    server = SecAggServer(config)
    server.begin_round(round_)
    if clients is None:
        clients = {u: SecAggClient(config, u, key=None if keys is None else keys[u]) for u in sorted(contributions)}
    else:
        clients = {u: clients[u] for u in sorted(contributions)}
    rejected: dict[int, str] = {}
    for c in clients.values():
        c.begin_round(round_)

    def alive(stage: int) -> list[int]:
        return [u for u in clients if (u not in dropouts or STAGES.index(dropouts[u]) > stage) and u not in rejected]

    def send(u: int, make: Callable[[], object], stage: int) -> None:
        try:
            msg = make()
        except ProtocolError as err:  # the client refuses (e.g. a neighbour's invalid key): it drops out
            rejected[u] = f"client {u} gave up: {err}"
            return
        ledger.record(f"client {u}", "server", STAGES[stage], message_nbytes(msg) + HEADER_BYTES, round=round_)
        try:
            server.receive(msg)  # type: ignore[arg-type]
        except ProtocolError as err:  # rejected, named: that client is out of the round from here on
            rejected[u] = str(err)

    def broadcast(u: int, kind: str, nbytes: int) -> None:
        ledger.record("server", f"client {u}", kind, nbytes + HEADER_BYTES, round=round_)

    def reached(stage: int) -> list[int]:
        return sorted(u for u in alive(stage) if u in server.sets[-1])

    with ledger.round():
        for u in reached(0):
            send(u, clients[u].advertise_keys, 0)
    roster = server.finish_stage()
    with ledger.round():
        for u in reached(1):
            broadcast(u, "roster", 68 * len(roster))  # type: ignore[arg-type]
            send(u, partial(clients[u].share_keys, roster), 1)  # type: ignore[arg-type]
    inboxes = server.finish_stage()
    with ledger.round():
        for u in reached(2):
            inbox = inboxes[u]  # type: ignore[index]
            broadcast(u, "inbox", sum(4 + len(c) for c in inbox.values()))
            vals = contributions[u]
            send(u, partial(clients[u].masked_input, inbox, encoded=vals) if encoded
                 else partial(clients[u].masked_input, inbox, vals), 2)
    u3 = server.finish_stage()
    with ledger.round():
        for u in reached(3):
            broadcast(u, "survivors", 4 * len(u3))  # type: ignore[arg-type]
            send(u, partial(clients[u].unmask, u3), 3)  # type: ignore[arg-type]
    ring_total = server.finish_stage()
    assert isinstance(ring_total, np.ndarray) and isinstance(u3, frozenset)
    return SecAggResult(config.codec.decode_sum(ring_total), ring_total, u3, ledger, tuple(server.sets), rejected)
