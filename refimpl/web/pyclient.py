"""A Python client of the browser round server (:mod:`refimpl.web.server`), speaking the page's protocol.

It does what a tab does, with refimpl itself: trains the softmax regression on its slice (:mod:`refimpl.web.model`),
encodes and shares its update with :class:`refimpl.secagg.AdditiveClient` (a fresh OS key) and uploads the same
message, byte for byte in layout, that ``static/client.mjs`` sends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from refimpl.errors import ProtocolError
from refimpl.net import wire
from refimpl.ring import Ring
from refimpl.secagg import AdditiveClient, AdditiveConfig, Codec
from refimpl.web.model import train_local

__all__ = ["ClientReport", "config_from_json", "run_client", "split_url", "synthetic_update"]

PROTOCOL = 1


def synthetic_update(length: int, client_id: int, round_: int, clip: float) -> np.ndarray:
    """The synthetic task's stand-in update (as ``syntheticUpdate`` in client.mjs)."""
    return 0.9 * clip * np.sin(0.001 * np.arange(length) + client_id + 7 * round_)


def split_url(url: str) -> tuple[str, str]:
    """``(ws:// endpoint, token)`` from the page address the server prints (``http://host:port/#token=...``)."""
    parts = urlsplit(url)
    token = parse_qs(parts.fragment).get("token", [""])[0]
    if parts.scheme not in ("http", "https") or not token:
        raise ValueError(f"expected the server's page address http://HOST:PORT/#token=TOKEN, got {url!r}")
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws", token


@dataclass
class ClientReport:
    """What one client did: its id, its own plaintext updates, timings and upload sizes per round, the results."""

    id: int | None = None
    updates: dict[int, np.ndarray] = field(default_factory=dict)
    timings: dict[int, dict[str, float]] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    done: bool = False


def config_from_json(c: dict[str, Any]) -> AdditiveConfig:
    """The :class:`AdditiveConfig` of a welcome message's ``config``."""
    codec = Codec(length=int(c["length"]), max_clients=int(c["max_clients"]), clip=float(c["clip"]),
                  frac_bits=int(c["frac_bits"]), ring=Ring(int(c["ring"]["modulus"])))
    return AdditiveConfig(codec=codec, servers=int(c["servers"]), prg=str(c["prg"]), min_clients=int(c["min_clients"]))


async def run_client(url: str, *, timeout: float = 300.0) -> ClientReport:
    """Join the run at ``url`` (the page address with its token) and take part until ``done``.

    Raises:
        ProtocolError: the server refused the client or sent something unexpected.
        TimeoutError: nothing arrived for ``timeout`` seconds.
    """
    from websockets.asyncio.client import connect

    endpoint, token = split_url(url)
    report = ClientReport()
    async with connect(endpoint, compression=None, max_size=64 * 2**20) as ws:
        await ws.send(wire.encode({"type": "hello", "token": token, "agent": "python", "protocol": PROTOCOL}))
        cfg: AdditiveConfig | None = None
        client: AdditiveClient | None = None
        task: dict[str, Any] = {}
        data: dict[str, Any] | None = None
        while not report.done:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            t_arrival = time.perf_counter()
            if not isinstance(raw, bytes):
                raise ProtocolError("the server sent a text frame")
            msg = wire.decode(raw)
            kind = msg.get("type")
            if kind == "welcome":
                report.id = int(msg["client"])
                cfg = config_from_json(msg["config"])
                client = AdditiveClient(cfg, report.id)
                task, data = msg["task"], msg.get("data")
            elif kind == "round":
                if cfg is None or client is None or report.id is None:
                    raise ProtocolError("round before welcome")
                rnd = int(msg["round"])
                t0 = time.perf_counter()
                if task["kind"] == "softmax" and data is not None:
                    update = train_local(msg["weights"], data["images"], data["labels"], epochs=int(task["epochs"]),
                                         batch=int(task["batch"]), lr=float(task["lr"]), clip=cfg.codec.clip or 1.0)
                else:
                    update = synthetic_update(cfg.length, report.id, rnd, float(cfg.codec.clip or 1.0))
                t1 = time.perf_counter()
                client.begin_round(rnd)
                msgs = client.contribute(update)
                shares = [{"server": m.server, "array": m.payload} if isinstance(m.payload, np.ndarray)
                          else {"server": m.server, "key": m.payload} for m in msgs]
                t2 = time.perf_counter()
                raw_up = wire.encode({"type": "upload", "round": rnd, "client": report.id, "shares": shares})
                await ws.send(raw_up)
                report.updates[rnd] = update
                report.timings[rnd] = {"train_ms": 1e3 * (t1 - t0), "encode_share_ms": 1e3 * (t2 - t1),
                                       "upload_bytes": len(raw_up), "t_sent": t2}
            elif kind == "ack":
                t = report.timings.get(int(msg["round"]))
                if t is not None:
                    t["upload_ms"] = 1e3 * (t_arrival - t["t_sent"])
            elif kind == "result":
                report.results[int(msg["round"])] = {"clients": [int(c) for c in msg["clients"]],
                                                     "accuracy": msg["accuracy"]}
            elif kind == "error":
                report.errors.append(str(msg["message"]))
            elif kind == "done":
                report.done = True
            else:
                raise ProtocolError(f"unexpected message type {kind!r}")
    return report
