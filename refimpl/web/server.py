"""A secure-FedAvg round server for browser tabs and Python clients, over WebSocket on one loopback port.

One port serves the page (``GET /``, its ES modules and the known-answer vectors, by a fixed whitelist) and the
WebSocket endpoint ``/ws``. The ``S`` aggregators of refimpl's multi-server additive secure aggregation
(:class:`refimpl.secagg.AdditiveServer`) run inside this process: a client's upload carries one share array and
``S - 1`` stream keys, each addressed to one aggregator, which validates and stores it exactly as in the in-process
simulation; the round's total is the sum of the S partial sums over the agreed set of clients.

**Protocol** (every WebSocket message is one binary :mod:`refimpl.net.wire` message, a dict with a ``type``)::

    client -> server  hello   {token, agent: "browser" | "python", protocol: 1}        (first, within 10 s)
    server -> client  welcome {client: id, config: {length, servers, max_clients, clip, frac_bits, ring: {modulus},
                               prg, min_clients}, task: {kind: "softmax" | "synthetic", epochs, batch, lr},
                               data: {images: uint8 (n * 784), labels: uint8 (n)} (softmax), rounds}
    server -> client  round   {round, weights: float64 (d), clients: roster size}
    client -> server  upload  {round, client, shares: [{server, array: uint64 (d)} | {server, key: 16 bytes}]}
    server -> client  ack     {round, bytes}            the upload was stored by every aggregator it addressed
    server -> all     result  {round, clients: agreed ids, aggregate: float64 (d), ring_total: uint64 (d), accuracy}
    server -> client  error   {message}                 a rejected message (the server keeps serving)
    server -> all     done    {}

A round begins with every connected client (the roster), waits until each has uploaded or disconnected (or
``round_timeout`` passes), then takes the agreed set (clients whose shares reached every aggregator); a client that
closed its tab mid-round is simply not in it. With at least ``min_clients`` agreed the total is released and the
model moves by the mean update (equal weights); with fewer, every client is told why and the model stays.

**Trust model** (honestly: weaker than the mutual TLS of the networked parties). A browser cannot present a client
certificate in a headless test, so a tab is admitted by a per-run enrolment token (128 bits from the OS, in the URL
fragment, which browsers never send in HTTP requests) and the server accepts WebSocket handshakes only from its own
origin (or no origin: non-browser clients), so another web page open in the same browser cannot join. The client's
id is bound to its connection: it cannot upload as another client. The server listens on loopback only, over plain
HTTP/WS (``http://127.0.0.1`` is a secure context, so WebCrypto works). The aggregators live in one process here, so
this server could add up a client's shares: it demonstrates the client, not non-collusion; deployments run each
aggregator as its own party (see "Deploying parties").
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refimpl.errors import ProtocolError, RefimplError, ThresholdError, WireFormatError
from refimpl.net import wire
from refimpl.net.accounting import Ledger
from refimpl.ring import Z2_64, Ring
from refimpl.secagg import AdditiveConfig, AdditiveServer, Codec, ShareMessage, agree, combine_partial_sums
from refimpl.web.assets import asset
from refimpl.web.model import PARAMS, accuracy, load_task_data

__all__ = ["PROTOCOL", "RoundResult", "RunConfig", "WebRoundServer"]

log = logging.getLogger("refimpl.web")

PROTOCOL = 1
HELLO_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunConfig:
    """A run of secure FedAvg rounds.

    Args:
        rounds: rounds to run.
        clients: clients to wait for before round 0.
        servers: S aggregators of the additive scheme.
        max_clients: K, the sizing bound of the fixed-point encoding (and the most clients admitted).
        min_clients: fewest agreed clients for which a round's total is released.
        clip, frac_bits, ring, prg: the encoding and share streams (see :class:`refimpl.secagg.Codec`).
        task: ``"softmax"`` (784-10 softmax regression on MNIST slices, d = 7850) or ``"synthetic"`` (a fixed
            pseudo-update of ``length`` coordinates: benchmarks of the upload path).
        length: d for the synthetic task.
        samples: training images per client (softmax).
        epochs, batch, lr: local SGD.
        join_timeout, round_timeout: seconds to wait for the clients to join / for a round's uploads.
    """

    rounds: int = 3
    clients: int = 2
    servers: int = 2
    max_clients: int = 16
    min_clients: int = 2
    clip: float = 1.0
    frac_bits: int = 16
    ring: Ring = Z2_64
    prg: str = "aes128-ctr"
    task: str = "softmax"
    length: int = 1000
    samples: int = 400
    epochs: int = 1
    batch: int = 32
    lr: float = 0.5
    join_timeout: float = 120.0
    round_timeout: float = 120.0

    def additive(self) -> AdditiveConfig:
        d = PARAMS if self.task == "softmax" else self.length
        codec = Codec(length=d, max_clients=self.max_clients, clip=self.clip, frac_bits=self.frac_bits,
                      ring=self.ring)
        return AdditiveConfig(codec=codec, servers=self.servers, prg=self.prg, min_clients=self.min_clients)

    def public(self) -> dict[str, Any]:
        """The configuration a client receives."""
        return {"length": self.additive().length, "servers": self.servers, "max_clients": self.max_clients,
                "clip": float(self.clip), "frac_bits": self.frac_bits, "ring": {"modulus": str(self.ring.modulus)},
                "prg": self.prg, "min_clients": self.min_clients}


@dataclass
class RoundResult:
    """A finished round: the agreed clients, the released total (ring and decoded), accuracy, upload sizes."""

    round: int
    clients: list[int]
    aggregate: np.ndarray | None
    ring_total: np.ndarray | None
    accuracy: float | None
    upload_bytes: dict[int, int]
    seconds: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "clients": self.clients, "accuracy": self.accuracy, "error": self.error,
                "upload_bytes": {str(k): v for k, v in self.upload_bytes.items()}, "seconds": self.seconds,
                "aggregate_hex": None if self.aggregate is None else [float(v).hex() for v in self.aggregate],
                "ring_total": None if self.ring_total is None else [str(int(v)) for v in self.ring_total]}


@dataclass
class _Peer:
    id: int
    conn: Any
    agent: str
    uploaded: set[int] = field(default_factory=set)


class WebRoundServer:
    """Serve the page and run ``config.rounds`` secure FedAvg rounds for the clients that join.

    Args:
        config: the run.
        host, port: where to listen (loopback only; port 0 picks a free one).
        token: the enrolment token; None draws 128 bits from the OS.
    """

    def __init__(self, config: RunConfig, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ProtocolError(f"the browser round server speaks plain HTTP/WebSocket and binds loopback only, "
                                f"not {host!r}")
        self.config = config
        self.additive = config.additive()
        self.host, self.port = host, port
        self.token = token if token is not None else secrets.token_urlsafe(16)
        self.ledger = Ledger()
        self.results: list[RoundResult] = []
        self._peers: dict[int, _Peer] = {}
        self._next_id = 1
        self._upload_bytes: dict[int, dict[int, int]] = {}
        self._changed = asyncio.Event()
        self._round: int | None = None
        self._aggs = [AdditiveServer(self.additive, s) for s in range(config.servers)]
        self._weights = np.zeros(self.additive.length)
        self._data = load_task_data(config) if config.task == "softmax" else None
        self._server: Any = None

    @property
    def url(self) -> str:
        """The page's address, with the enrolment token in the fragment."""
        return f"http://{self.host}:{self.port}/#token={self.token}"

    async def start(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._handle, self.host, self.port, process_request=self._http,
                                   compression=None, max_size=64 * 2**20, ping_interval=20, ping_timeout=60)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ------------------------------------------------------------------ HTTP and connections
    def _http(self, conn: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path = request.path.split("?", 1)[0]
        if path == "/ws":
            origin = request.headers.get("Origin")
            allowed = {f"http://{self.host}:{self.port}", f"http://localhost:{self.port}"}
            if origin is not None and origin not in allowed:
                log.warning("refused a WebSocket handshake from origin %r", origin)
                return conn.respond(403, "cross-origin WebSocket refused\n")
            return None  # the WebSocket handshake proceeds
        found = asset(path)
        if found is None:
            return conn.respond(404, "not found\n")
        body, ctype = found
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                           ("X-Content-Type-Options", "nosniff")])
        return Response(200, "OK", headers, body)

    async def _send(self, peer: _Peer, msg: dict[str, Any], kind: str) -> int:
        raw = wire.encode(msg)
        try:
            await peer.conn.send(raw)
        except Exception as e:  # a closed connection: the peer is dropped by its handler
            log.info("send to client %d failed: %s", peer.id, e)
            return 0
        self.ledger.record("server", f"client {peer.id}", kind, len(raw),
                           round=self._round if self._round is not None else 0)
        return len(raw)

    async def _handle(self, conn: Any) -> None:
        try:
            raw = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT)
            hello = wire.decode(raw) if isinstance(raw, bytes) else None
        except (TimeoutError, asyncio.TimeoutError, WireFormatError, Exception) as e:
            log.warning("no valid hello: %s", e)
            await conn.close(1008, "expected a hello message")
            return
        if (not isinstance(hello, dict) or hello.get("type") != "hello" or not isinstance(hello.get("token"), str)
                or not hmac.compare_digest(hello["token"].encode(), self.token.encode())):
            log.warning("refused a client: bad hello or enrolment token")
            await conn.close(1008, "bad enrolment token")
            return
        if hello.get("protocol") != PROTOCOL:
            await conn.close(1008, f"protocol {hello.get('protocol')!r} unsupported; this server speaks {PROTOCOL}")
            return
        if len(self._peers) >= self.config.max_clients:
            await conn.close(1013, f"the run is full ({self.config.max_clients} clients)")
            return
        peer = _Peer(self._next_id, conn, str(hello.get("agent", "unknown"))[:16])
        self._next_id += 1
        await self._send(peer, self._welcome(peer), "welcome")
        self._peers[peer.id] = peer
        log.info("client %d (%s) joined", peer.id, peer.agent)
        self._changed.set()
        try:
            async for raw in conn:
                await self._on_message(peer, raw)
        except Exception as e:  # connection closed abruptly (a tab closed mid-round): a dropout
            log.info("client %d: connection ended: %s", peer.id, e)
        finally:
            self._peers.pop(peer.id, None)
            log.info("client %d left", peer.id)
            self._changed.set()

    def _welcome(self, peer: _Peer) -> dict[str, Any]:
        cfg = self.config
        msg: dict[str, Any] = {"type": "welcome", "client": peer.id, "config": cfg.public(), "rounds": cfg.rounds,
                               "task": {"kind": cfg.task, "epochs": cfg.epochs, "batch": cfg.batch,
                                        "lr": float(cfg.lr)}}
        if self._data is not None:
            images, labels = self._data.client_slice(peer.id)
            msg["data"] = {"images": images, "labels": labels}
        return msg

    async def _on_message(self, peer: _Peer, raw: Any) -> None:
        try:
            if not isinstance(raw, bytes):
                raise ProtocolError("text frames are not part of the protocol")
            msg = wire.decode(raw)
            if not isinstance(msg, dict) or msg.get("type") != "upload":
                raise ProtocolError(f"unexpected message {str(msg)[:60]!r}")
            self._upload(peer, msg, len(raw))
        except RefimplError as e:
            log.warning("client %d: rejected: %s", peer.id, e)
            await self._send(peer, {"type": "error", "message": f"{type(e).__name__}: {e}"}, "error")
            return
        await self._send(peer, {"type": "ack", "round": msg["round"], "bytes": len(raw)}, "ack")
        self._changed.set()

    def _upload(self, peer: _Peer, msg: dict[str, Any], nbytes: int) -> None:
        rnd = msg.get("round")
        if self._round is None or rnd != self._round:
            raise ProtocolError(f"upload for round {rnd!r}, but the server is in round {self._round}")
        if msg.get("client") != peer.id:
            raise ProtocolError(f"client {peer.id} sent an upload in the name of client {msg.get('client')!r}")
        if rnd in peer.uploaded:
            raise ProtocolError(f"client {peer.id} already uploaded in round {rnd}")
        shares = msg.get("shares")
        if not isinstance(shares, list) or len(shares) != self.config.servers:
            raise ProtocolError(f"an upload carries {self.config.servers} shares, one per aggregator")
        cfg = self.additive
        parsed = []
        for s in shares:
            if not isinstance(s, dict) or not isinstance(s.get("server"), int) or \
                    not 0 <= s["server"] < cfg.servers or ("array" in s) == ("key" in s):
                raise ProtocolError(f"malformed share entry {str(s)[:60]!r}")
            payload = s["array"] if "array" in s else s["key"]
            if not isinstance(payload, (np.ndarray, bytes)):
                raise ProtocolError(f"a share is an array or a key, got {type(payload).__name__}")
            parsed.append(ShareMessage(rnd, peer.id, s["server"], cfg.ring, payload, cfg.prg))
        if sorted(m.server for m in parsed) != list(range(cfg.servers)):
            raise ProtocolError("an upload addresses each aggregator exactly once")
        for m in parsed:  # each aggregator validates its own share (wrong kind, shape, dtype, key length, replay)
            self._aggs[m.server].receive(m)
        peer.uploaded.add(rnd)
        self._upload_bytes.setdefault(rnd, {})[peer.id] = nbytes
        self.ledger.record(f"client {peer.id}", "aggregators", "upload", nbytes, round=rnd)

    # ------------------------------------------------------------------ rounds
    async def _wait(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        return True

    async def run(self) -> list[RoundResult]:
        """Wait for ``config.clients`` clients, run the rounds, tell everyone ``done``; returns the results.

        Raises:
            ProtocolError: too few clients joined within ``join_timeout``.
        """
        cfg = self.config
        if not await self._wait(lambda: len(self._peers) >= cfg.clients, cfg.join_timeout):
            raise ProtocolError(f"only {len(self._peers)} of {cfg.clients} clients joined within {cfg.join_timeout} s")
        for rnd in range(cfg.rounds):
            self.results.append(await self._run_round(rnd))
        for peer in list(self._peers.values()):
            await self._send(peer, {"type": "done"}, "done")
        return self.results

    async def _run_round(self, rnd: int) -> RoundResult:
        t0 = time.perf_counter()
        roster = dict(self._peers)
        self._round = rnd
        for agg in self._aggs:
            agg.begin_round(rnd, roster)
        for peer in roster.values():
            await self._send(peer, {"type": "round", "round": rnd, "weights": self._weights,
                                    "clients": len(roster)}, "round")
        await self._wait(lambda: all(rnd in p.uploaded or pid not in self._peers for pid, p in roster.items()),
                         self.config.round_timeout)
        reports = [agg.finish_stage() for agg in self._aggs]
        agreed = agree(reports)
        upload_bytes = dict(self._upload_bytes.get(rnd, {}))
        try:
            partials = [agg.partial_sum(agreed) for agg in self._aggs]
        except ThresholdError as e:
            result = RoundResult(rnd, sorted(agreed), None, None, None, upload_bytes, time.perf_counter() - t0, str(e))
            for peer in list(self._peers.values()):
                await self._send(peer, {"type": "error", "message": f"round {rnd} released nothing: {e}"}, "error")
            return result
        ring_total = combine_partial_sums(self.additive, partials)
        aggregate = self.additive.codec.decode_sum(ring_total)
        self._weights = self._weights + aggregate / len(agreed)
        acc = accuracy(self._weights, *self._data.test) if self._data is not None else None
        result = RoundResult(rnd, sorted(agreed), aggregate, ring_total, acc, upload_bytes, time.perf_counter() - t0)
        for peer in list(self._peers.values()):
            await self._send(peer, {"type": "result", "round": rnd, "clients": sorted(agreed), "aggregate": aggregate,
                                    "ring_total": ring_total, "accuracy": acc}, "result")
        log.info("round %d: %d clients agreed, accuracy %s", rnd, len(agreed), acc)
        return result
