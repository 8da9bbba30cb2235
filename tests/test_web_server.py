"""The browser round server's protocol checks, driven by raw WebSocket clients (no browser): enrolment token,
same-origin handshakes, connection-bound client ids, replays, wrong rounds, and a round that too few clients survive."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the websockets package (pip install 'refimpl[web]') is not installed")

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from refimpl.net import wire  # noqa: E402
from refimpl.web.pyclient import config_from_json  # noqa: E402
from refimpl.web.server import RunConfig, WebRoundServer  # noqa: E402


def _cfg(**kw: Any) -> RunConfig:
    base = {"task": "synthetic", "length": 8, "clients": 2, "rounds": 1, "servers": 2, "min_clients": 2,
            "max_clients": 4, "round_timeout": 10.0, "join_timeout": 10.0}
    return RunConfig(**{**base, **kw})


async def _hello(server: WebRoundServer, token: str | None = None) -> tuple[Any, dict[str, Any]]:
    ws = await connect(f"ws://127.0.0.1:{server.port}/ws", compression=None)
    await ws.send(wire.encode({"type": "hello", "token": token or server.token, "agent": "python", "protocol": 1}))
    return ws, wire.decode(await ws.recv())


async def _recv(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg = wire.decode(await asyncio.wait_for(ws.recv(), 10))
        if msg["type"] == kind:
            return msg


def _upload(welcome: dict[str, Any], rnd: int, values: np.ndarray, claim: int | None = None) -> bytes:
    from refimpl.secagg import AdditiveClient

    client = AdditiveClient(config_from_json(welcome["config"]), welcome["client"])
    client.begin_round(rnd)
    shares = [{"server": m.server, "array": m.payload} if isinstance(m.payload, np.ndarray)
              else {"server": m.server, "key": m.payload} for m in client.contribute(values)]
    return wire.encode({"type": "upload", "round": rnd, "client": welcome["client"] if claim is None else claim,
                        "shares": shares})


def test_bad_token_and_cross_origin_handshakes_are_refused() -> None:
    async def scenario() -> None:
        server = WebRoundServer(_cfg())
        await server.start()
        try:
            ws = await connect(f"ws://127.0.0.1:{server.port}/ws", compression=None)
            await ws.send(wire.encode({"type": "hello", "token": "guess", "agent": "python", "protocol": 1}))
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            with pytest.raises(InvalidStatus) as status:
                await connect(f"ws://127.0.0.1:{server.port}/ws", origin="http://evil.example")  # type: ignore[arg-type]
            assert status.value.response.status_code == 403
            assert server._peers == {}
        finally:
            await server.close()

    asyncio.run(scenario())


def test_impersonation_replay_and_wrong_round_are_rejected_and_the_round_completes() -> None:
    async def scenario() -> None:
        server = WebRoundServer(_cfg())
        await server.start()
        try:
            (a, wa), (b, wb) = await _hello(server), await _hello(server)
            run = asyncio.create_task(server.run())
            await _recv(a, "round")
            await _recv(b, "round")
            xa, xb = np.linspace(-1, 1, 8), np.full(8, 0.25)
            await a.send(_upload(wa, 0, xa, claim=wb["client"]))  # in the name of b
            assert "in the name of client" in (await _recv(a, "error"))["message"]
            await b.send(_upload(wb, 5, xb))  # a round that is not running
            assert "round 5" in (await _recv(b, "error"))["message"]
            await a.send(_upload(wa, 0, xa))
            assert (await _recv(a, "ack"))["round"] == 0
            await a.send(_upload(wa, 0, xa))  # a replay
            assert "already uploaded" in (await _recv(a, "error"))["message"]
            await b.send(_upload(wb, 0, xb))
            result = await _recv(b, "result")
            assert result["clients"] == sorted([wa["client"], wb["client"]])
            assert np.max(np.abs(result["aggregate"] - (xa + xb))) <= 2 / 2**17
            assert (await run)[0].error is None
            await a.close()
            await b.close()
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_round_too_few_clients_survive_releases_nothing_and_says_why() -> None:
    async def scenario() -> None:
        server = WebRoundServer(_cfg(min_clients=2))
        await server.start()
        try:
            (a, wa), (b, _) = await _hello(server), await _hello(server)
            run = asyncio.create_task(server.run())
            await _recv(a, "round")
            await b.close()  # b drops out before uploading
            await a.send(_upload(wa, 0, np.zeros(8)))
            msg = await _recv(a, "error")
            assert "released nothing" in msg["message"] and "min_clients=2" in msg["message"]
            results = await run
            assert results[0].error is not None and results[0].aggregate is None
            await a.close()
        finally:
            await server.close()

    asyncio.run(scenario())
