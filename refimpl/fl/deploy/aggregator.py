"""Secure FedAvg over the network: the lead aggregator and the client protocol (``python -m refimpl aggregator``).

The lead is :class:`Lead`; the additive protocol's share servers are :mod:`refimpl.fl.deploy.share_server`; the command
line is :mod:`refimpl.fl.deploy.cli`; clients are :mod:`refimpl.fl.deploy.client`.

Processes of a deployment (each with its certificate from ``python -m refimpl certs``)::

    aggregator               the lead: holds the model, runs the rounds, sees only the aggregate
    aggregator-0..S-1        additive protocol only: the S non-colluding share servers
    client-1..client-K       clients (``python -m refimpl client``), each with its own data partition

Client protocol (what a client implementation, in Python or a browser, speaks)
==============================================================================

Transport: :mod:`refimpl.net.transport` framing over a WebSocket (``wss://``, mutual TLS: the client's certificate
names it ``client-<id>``, ids ``1..K``; ``ws://`` only with ``--insecure-plaintext`` on loopback, where the name in
the HELLO is an unauthenticated claim). Every request is a ``REQUEST`` frame whose payload is one
:mod:`refimpl.net.wire` message: a dict with an ``"op"``; every answer is a ``REPLY`` with one wire dict, or
``{"error": text, "type": exception name}`` when the request is rejected (wrong round or stage, replay, malformed,
wrong client name; the aggregator logs it and keeps serving). A request may stay unanswered for a whole stage: the
reply comes when the stage closes (clients set a long deadline; pings keep the connection alive).

Dict keys are strings on the wire: client ids in maps are decimal strings (``"3"``).

1. ``{"op": "join", "size": n_k}`` (kind ``join``) -- ``size``: the client's number of training examples (public;
   FedAvg weights). Answered when a round starts that includes the client, by the *round message*::

       {"op": "round", "round": r, "protocol": "secagg" | "additive", "params": float64 (d,),
        "sizes": [layer sizes], "weight": w_k (float), "lr": float, "epochs": int, "batch": int,
        "codec": {"length": d, "max_clients": K, "clip": c, "frac_bits": f},
        "secagg": {"num_clients": K, "threshold": t, "degree": k | None, "graph_key": bytes, "prg": str},   # secagg
        "additive": {"servers": [url_0, ..., url_{S-1}], "prg": str, "min_clients": m}}                  # additive

   or ``{"op": "finished", "reason": text}`` (no more rounds: the client exits).
2. The client trains locally from ``params`` and contributes ``clip(w_k * (local - params), -c, c)`` (d floats).
3. **secagg** -- four submits (kind ``submit``), each answered when that stage closes::

       {"op": "submit", "round": r, "stage": "AdvertiseKeys", "c_public": 32 bytes, "s_public": 32 bytes}
         -> {"op": "stage", "round": r, "stage": "ShareKeys", "roster": {"v": [c_pk, s_pk], ...}}
       {"op": "submit", "round": r, "stage": "ShareKeys", "ciphertexts": {"v": bytes, ...}}
         -> {"op": "stage", "round": r, "stage": "MaskedInputCollection", "inbox": {"u": bytes, ...}}
       {"op": "submit", "round": r, "stage": "MaskedInputCollection", "masked": uint64 (d,)}
         -> {"op": "stage", "round": r, "stage": "Unmasking", "survivors": [u, ...]}
       {"op": "submit", "round": r, "stage": "Unmasking", "key_shares": {"v": uint64 limbs}, "seed_shares": {...}}
         -> the next round message, or finished

   (payloads exactly those of :class:`~refimpl.secagg.SecAggClient`'s stage methods).
   **additive** -- the client shares its contribution with :class:`~refimpl.secagg.AdditiveClient` and sends share
   ``s`` to share server ``aggregator-s`` (kind ``upload``)::

       {"op": "upload", "round": r, "client": k, "server": s, "payload": uint64 (d,) | 16-byte key, "prg": str}
         -> {"ok": true}

   then tells the lead ``{"op": "submit", "round": r, "stage": "ShareUpload"}``, answered by the next round message.
4. Any stage may instead be answered ``{"op": "abort", "round": r, "reason": text}`` (too few clients left: the
   round cannot complete; the reason says why); the client then sends ``join`` again for the next round.

A stage closes when every connected client of the stage has submitted, or after ``--stage-timeout`` seconds; a client
whose connection drops (a killed process) is not waited for. The total released is exactly the sum over the
surviving clients (SecAgg: U3; additive: the clients whose shares reached every share server), provided the
threshold allows; otherwise the round aborts and says why.

Lead <-> share server (kind ``control``, only from the certificate ``aggregator``): ``{"op": "begin", "round",
"clients", "codec", "servers", "prg", "min_clients"}``, ``{"op": "report"}`` -> ``{"received": [...]}``,
``{"op": "partial", "agreed": [...]}`` -> ``{"round", "server", "clients", "total"}``.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refimpl import nn
from refimpl.errors import ConfigurationError, ProtocolError, RefimplError, ThresholdError
from refimpl.net import transport, wire
from refimpl.net.accounting import Ledger
from refimpl.secagg import (
    AdditiveConfig,
    AdvertiseKeys,
    Codec,
    MaskedInput,
    PartialSum,
    SecAggConfig,
    SecAggServer,
    ShareKeys,
    UnmaskingResponse,
    agree,
    combine_partial_sums,
)

__all__ = ["Lead", "LeadConfig", "client_id_of", "default_threshold", "error_reply", "flatten", "unflatten"]

log = logging.getLogger("refimpl.aggregator")


def client_id_of(name: str) -> int:
    """``"client-7"`` -> 7 (the id a client's certificate proves)."""
    prefix, _, num = name.partition("-")
    if prefix != "client" or not num.isdigit():
        raise ProtocolError(f"party {name!r} is not a client (clients are named client-<id>)")
    return int(num)


def flatten(params: dict[str, np.ndarray]) -> np.ndarray:
    """The MLP parameters as one float64 vector (w0, b0, w1, b1, ...)."""
    n = len(params) // 2
    return np.concatenate([np.ravel(params[f"{k}{i}"]) for i in range(n) for k in ("w", "b")]).astype(np.float64)


def unflatten(vector: np.ndarray, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten` for layer ``sizes``."""
    out, pos = {}, 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        out[f"w{i}"] = vector[pos : pos + a * b].reshape(a, b).copy()
        pos += a * b
        out[f"b{i}"] = vector[pos : pos + b].copy()
        pos += b
    if pos != len(vector):
        raise ConfigurationError(f"a model of layer sizes {list(sizes)} has {pos} parameters, got {len(vector)}")
    return out


def error_reply(e: Exception) -> bytes:
    """The wire reply that rejects a request: ``{"error": text, "type": exception name}``."""
    return wire.encode({"error": str(e), "type": type(e).__name__})


def _keys(d: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in d.items()}


def _ints(d: Any, what: str) -> dict[int, Any]:
    if not isinstance(d, dict) or not all(isinstance(k, str) and k.isdigit() for k in d):
        raise ProtocolError(f"{what} must map client ids (decimal strings) to values")
    return {int(k): v for k, v in d.items()}


def default_threshold(clients: int, degree: int | None) -> int:
    """More than half of a client's neighbourhood: ``K // 2 + 1`` (SecAgg), ``(degree + 1) // 2 + 1`` (SecAgg+)."""
    size = clients if degree is None or degree >= clients - 1 else degree + 1
    return size // 2 + 1


@dataclass(frozen=True, kw_only=True)
class LeadConfig:
    """What the lead aggregator runs: protocol, clients, rounds, model and training parameters."""

    protocol: str = "secagg"
    clients: int = 10
    rounds: int = 3
    sizes: tuple[int, ...] = (784, 32, 10)
    threshold: int | None = None
    degree: int | None = None
    share_servers: tuple[str, ...] = ()
    min_clients: int = 2
    clip: float = 1.0
    frac_bits: int = 16
    lr: float = 0.1
    server_lr: float = 1.0
    epochs: int = 1
    batch: int = 32
    stage_timeout: float = 60.0
    join_timeout: float = 120.0
    seed: int = 0
    synthetic: int | None = None  # a vector length: clients contribute test vectors instead of training

    def __post_init__(self) -> None:
        if self.protocol not in ("secagg", "additive"):
            raise ConfigurationError(f"protocol must be 'secagg' or 'additive', got {self.protocol!r}")
        if self.protocol == "additive" and len(self.share_servers) < 2:
            raise ConfigurationError("the additive protocol needs at least 2 share servers (--share-server URL ...)")
        if self.clients < 2 or self.rounds < 1:
            raise ConfigurationError(f"need >= 2 clients and >= 1 round, got {self.clients} and {self.rounds}")

    @property
    def length(self) -> int:
        if self.synthetic is not None:
            return int(self.synthetic)
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))


@dataclass
class RoundRecord:
    round: int
    protocol: str
    clients: list[int]
    seconds: float
    total: list[float] | None = None
    aborted: str | None = None
    accuracy: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    rejected: dict[str, str] = field(default_factory=dict)


class Lead:
    """The lead aggregator: a transport server named ``aggregator`` plus the thread that drives the rounds."""

    def __init__(self, config: LeadConfig, *, tls_dir: str | None, host: str = "127.0.0.1", port: int = 0,
                 insecure_plaintext: bool = False, name: str = "aggregator", test_data: Any = None) -> None:
        self.config, self.name, self.test_data = config, name, test_data
        self.codec = Codec(length=config.length, max_clients=config.clients, clip=config.clip,
                           frac_bits=config.frac_bits)
        self.params = flatten(nn.init_params(config.sizes, seed=config.seed)) if config.synthetic is None \
            else np.zeros(config.length)
        self.ledger = Ledger(keep=None)
        self.lock = threading.Condition()
        self.sizes: dict[int, int] = {}
        self.waiting: dict[int, concurrent.futures.Future[bytes]] = {}
        self.got: dict[int, Any] = {}
        self.round = -1
        self.stage = ""
        self.history: list[RoundRecord] = []
        self.finished: str | None = None
        self.done = threading.Event()
        self.share_links = [transport.Link(url, f"aggregator-{s}", name, tls_dir=tls_dir,
                                           insecure_plaintext=insecure_plaintext, deadline=config.stage_timeout)
                            for s, url in enumerate(config.share_servers)]
        self.server = transport.serve(name, self._handle, host, port, tls_dir=tls_dir,
                                      insecure_plaintext=insecure_plaintext, workers=8)
        self.url = f"{'ws' if insecure_plaintext else 'wss'}://{host}:{self.server.port}"
        self.thread = threading.Thread(target=self._drive, name="refimpl-lead", daemon=True)

    def start(self) -> Lead:
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop: clients still waiting are told the aggregator is finished; the server closes."""
        self.done.set()
        with self.lock:
            self.finished = self.finished or "the aggregator was stopped"
            reason = self.finished
            self._reply(list(self.waiting), lambda u: {"op": "finished", "reason": reason})
        time.sleep(0.05)
        self.server.close()

    # ------------------------------------------------------------------ requests from clients
    def _handle(self, peer: str, typ: int, kind: str, payload: bytearray) -> Any:
        self.ledger.record(peer, self.name, kind, len(payload))
        try:
            u = client_id_of(peer)
            if not 1 <= u <= self.config.clients:
                raise ProtocolError(f"client id {u} is outside 1..{self.config.clients}")
            msg = wire.decode(payload)  # type: ignore[arg-type]
            if not isinstance(msg, dict):
                raise ProtocolError("a request is a dict")
            with self.lock:
                if self.finished is not None:
                    return wire.encode({"op": "finished", "reason": self.finished})
                if msg.get("op") == "join":
                    size = msg.get("size", 1)
                    if isinstance(size, bool) or not isinstance(size, (int, float)) or not size > 0:
                        raise ProtocolError(f"join: size must be a positive number, got {size!r}")
                    self.sizes[u] = int(size)
                elif msg.get("op") == "submit":
                    self._submit(u, msg)
                else:
                    raise ProtocolError(f"unknown request {msg.get('op')!r}")
                fut: concurrent.futures.Future[bytes] = concurrent.futures.Future()
                old = self.waiting.get(u)
                if old is not None and not old.done():
                    old.set_result(error_reply(ProtocolError("superseded by a newer request")))
                self.waiting[u] = fut
                self.lock.notify_all()
            return fut
        except (RefimplError, TypeError, KeyError) as e:
            log.warning("%s: rejected a %r request from %r: %s", self.name, kind, peer, e)
            return error_reply(e)

    def _submit(self, u: int, msg: dict[str, Any]) -> None:
        if msg.get("round") != self.round or msg.get("stage") != self.stage:
            raise ProtocolError(f"client {u}: submission for round {msg.get('round')} stage {msg.get('stage')!r}, "
                                f"the aggregator is in round {self.round} stage {self.stage!r}")
        if u in self.got:
            raise ProtocolError(f"client {u} already submitted stage {self.stage!r} of round {self.round} (replay)")
        r = self.round
        if self.stage == "ShareUpload":
            m: Any = True
        elif self.stage == "AdvertiseKeys":
            m = AdvertiseKeys(r, u, msg["c_public"], msg["s_public"])
        elif self.stage == "ShareKeys":
            m = ShareKeys(r, u, _ints(msg["ciphertexts"], "ciphertexts"))
        elif self.stage == "MaskedInputCollection":
            m = MaskedInput(r, u, msg["masked"])
        elif self.stage == "Unmasking":
            m = UnmaskingResponse(r, u, _ints(msg["key_shares"], "key_shares"), _ints(msg["seed_shares"],
                                                                                       "seed_shares"))
        else:
            raise ProtocolError(f"nothing to submit in stage {self.stage!r}")
        if self.secagg is not None:
            self.secagg.receive(m)
        self.got[u] = m

    # ------------------------------------------------------------------ the rounds
    def _alive(self, u: int) -> bool:
        return self.server.connected(f"client-{u}")

    def _reply(self, clients: Sequence[int], make: Any) -> None:
        for u in clients:
            fut = self.waiting.pop(u, None)
            if fut is not None and not fut.done():
                msg = make(u)
                raw = wire.encode(msg)
                self.ledger.record(self.name, f"client-{u}", str(msg.get("stage", msg.get("op"))), len(raw))
                fut.set_result(raw)

    def _wait(self, expected: set[int], timeout: float) -> None:
        """Until every connected client in ``expected`` has submitted (or joined), or ``timeout``."""
        end = time.monotonic() + timeout
        with self.lock:
            while not self.done.is_set():
                pending = {u for u in expected if u not in self.got and self._alive(u)}
                if not pending or time.monotonic() >= end:
                    return
                self.lock.wait(0.05)

    def _drive(self) -> None:
        cfg = self.config
        try:
            end = time.monotonic() + cfg.join_timeout
            with self.lock:
                while len(self.waiting) < cfg.clients and time.monotonic() < end and not self.done.is_set():
                    self.lock.wait(0.05)
            for r in range(cfg.rounds):
                self._one_round(r)
        except Exception as e:  # noqa: BLE001
            log.exception("%s: the rounds stopped", self.name)
            reason = f"aggregator failed: {type(e).__name__}: {e}"
        else:
            reason = f"{cfg.rounds} rounds done"
        with self.lock:
            self.finished = reason
            self._reply(list(self.waiting), lambda u: {"op": "finished", "reason": reason})
        self.done.set()

    def _one_round(self, r: int) -> None:
        cfg, t0 = self.config, time.perf_counter()
        b0 = (self.ledger.bytes_received.get(self.name, 0), self.ledger.bytes_sent.get(self.name, 0))
        end = time.monotonic() + cfg.join_timeout
        with self.lock:  # every connected client back in the queue (after an abort they join again)
            while not self.done.is_set() and time.monotonic() < end and any(
                    self._alive(u) and u not in self.waiting for u in range(1, cfg.clients + 1)):
                self.lock.wait(0.05)
            roster = sorted(u for u in self.waiting if self._alive(u) and u in self.sizes)
            self.round, self.got = r, {}
        log.info("%s: round %d starts with %d clients", self.name, r, len(roster))
        rec = RoundRecord(r, cfg.protocol, roster, 0.0)
        try:
            if len(roster) < max(2, cfg.min_clients):
                raise ThresholdError(f"round {r}: only {len(roster)} clients connected, fewer than "
                                     f"min_clients={max(2, cfg.min_clients)}")
            total, summed = self._secagg_round(r, roster) if cfg.protocol == "secagg" else \
                self._additive_round(r, roster)
            rec.clients = sorted(summed)
            rec.total = total.tolist() if cfg.synthetic is not None else None
            self._apply(total, summed)
        except (ThresholdError, ProtocolError, ConfigurationError) as e:
            reason = rec.aborted = str(e)
            log.warning("%s: round %d aborted: %s", self.name, r, e)
            with self.lock:
                self.stage = ""
                self._reply(list(self.waiting), lambda u: {"op": "abort", "round": r, "reason": reason})
        rec.seconds = time.perf_counter() - t0
        rec.bytes_in = self.ledger.bytes_received.get(self.name, 0) - b0[0]
        rec.bytes_out = self.ledger.bytes_sent.get(self.name, 0) - b0[1]
        rec.accuracy = self._accuracy()
        self.history.append(rec)
        log.info("%s: round %d: %s", self.name, r, json.dumps({k: v for k, v in rec.__dict__.items()
                                                                if k != "total"}))

    def _round_message(self, r: int, roster: Sequence[int]) -> Any:
        cfg = self.config
        wmax = max(self.sizes[u] for u in roster)
        base = {"op": "round", "round": r, "protocol": cfg.protocol, "params": self.params, "sizes": list(cfg.sizes),
                "lr": cfg.lr, "epochs": cfg.epochs, "batch": cfg.batch, "synthetic": cfg.synthetic,
                "codec": {"length": cfg.length, "max_clients": cfg.clients, "clip": cfg.clip,
                          "frac_bits": cfg.frac_bits}}
        if cfg.protocol == "secagg":
            assert self.secagg is not None
            sc = self.secagg.config
            base["secagg"] = {"num_clients": sc.num_clients, "threshold": sc.threshold, "degree": sc.degree,
                              "graph_key": sc.graph_key, "prg": sc.prg}
        else:
            base["additive"] = {"servers": list(cfg.share_servers), "prg": "aes128-ctr",
                                "min_clients": cfg.min_clients}
        return lambda u: {**base, "weight": self.sizes[u] / wmax}

    secagg: SecAggServer | None = None

    def _open(self, name: str, clients: Sequence[int], make: Any) -> None:
        """Open stage ``name`` (under the lock), then answer ``clients`` with what they need for it."""
        self.stage, self.got = name, {}
        self._reply(clients, make)
        self.lock.notify_all()

    def _collect(self, expected: set[int]) -> dict[int, Any]:
        """Wait for the stage's submissions (every connected expected client, or the stage timeout); close it."""
        self._wait(expected, self.config.stage_timeout)
        with self.lock:
            self.stage = ""
            return dict(self.got)

    def _secagg_round(self, r: int, roster: list[int]) -> tuple[np.ndarray, set[int]]:
        cfg = self.config
        t = cfg.threshold if cfg.threshold is not None else default_threshold(cfg.clients, cfg.degree)
        if self.secagg is None:
            self.secagg = SecAggServer(SecAggConfig(num_clients=cfg.clients, threshold=t, codec=self.codec,
                                                    degree=cfg.degree))
        srv = self.secagg
        srv.begin_round(r, roster)
        with self.lock:
            self._open("AdvertiseKeys", roster, self._round_message(r, roster))
        got = self._collect(set(roster))
        with self.lock:
            keys: Any = srv.finish_stage()
            self._open("ShareKeys", sorted(got), lambda u: {"op": "stage", "round": r, "stage": "ShareKeys",
                                                             "roster": {str(v): list(k) for v, k in keys.items()}})
        got = self._collect(set(got))
        with self.lock:
            inboxes: Any = srv.finish_stage()
            self._open("MaskedInputCollection", sorted(got),
                       lambda u: {"op": "stage", "round": r, "stage": "MaskedInputCollection",
                                  "inbox": _keys(inboxes.get(u, {}))})
        got = self._collect(set(got))
        with self.lock:
            u3: Any = srv.finish_stage()
            self._open("Unmasking", sorted(got), lambda u: {"op": "stage", "round": r, "stage": "Unmasking",
                                                            "survivors": sorted(u3)})
        self._collect(set(got))
        with self.lock:
            ring_total: Any = srv.finish_stage()
        return self.codec.decode_sum(ring_total), set(u3)

    def _additive_round(self, r: int, roster: list[int]) -> tuple[np.ndarray, set[int]]:
        cfg = self.config
        begin = {"op": "begin", "round": r, "clients": roster,
                 "codec": {"length": cfg.length, "max_clients": cfg.clients, "clip": cfg.clip,
                           "frac_bits": cfg.frac_bits},
                 "servers": len(self.share_links), "prg": "aes128-ctr", "min_clients": cfg.min_clients}
        for link in self.share_links:
            _check(link.call("control", wire.encode(begin)))
        with self.lock:
            self._open("ShareUpload", roster, self._round_message(r, roster))
        self._collect(set(roster))
        reports = [_check(link.call("control", wire.encode({"op": "report"})))["received"]
                   for link in self.share_links]
        agreed = agree(reports)
        acfg = AdditiveConfig(codec=self.codec, servers=len(self.share_links), min_clients=cfg.min_clients)
        if len(agreed) < acfg.min_clients:
            raise ThresholdError(f"round {r}: only {len(agreed)} clients' shares reached every share server, fewer "
                                 f"than min_clients={acfg.min_clients}; no total is released")
        partials = []
        for link in self.share_links:
            p = _check(link.call("control", wire.encode({"op": "partial", "agreed": sorted(agreed)})))
            partials.append(PartialSum(p["round"], p["server"], frozenset(p["clients"]), p["total"]))
        return self.codec.decode_sum(combine_partial_sums(acfg, partials)), set(agreed)

    def _apply(self, total: np.ndarray, summed: set[int]) -> None:
        if self.config.synthetic is not None:
            return
        weight = sum(self.sizes[u] for u in summed) / max(self.sizes[u] for u in summed)
        self.params = self.params + self.config.server_lr * total / weight

    def _accuracy(self) -> float | None:
        if self.test_data is None or self.config.synthetic is not None:
            return None
        x, y = self.test_data
        logits = nn.logits(unflatten(self.params, self.config.sizes), x)
        return float((logits.argmax(1) == y).mean())


def _check(raw: Any) -> dict[str, Any]:
    out = wire.decode(raw) if raw is not None else {}
    if "error" in out:
        raise ProtocolError(f"share server: {out['error']}")
    return out  # type: ignore[no-any-return]
