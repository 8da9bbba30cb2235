"""Who is who on a new WebSocket connection: the ``HELLO`` exchange, and the loopback rule for plaintext.

The client checks that the server's certificate names the party it wanted, then sends ``HELLO`` ``{"party": me,
"to": name, "version": 1}``; the server checks that the client's certificate names the party it claims and that it
wanted this party, and answers ``HELLO`` ``{"party": name, "boot": boot id[, "bulk": bulk port]}`` or ``FAIL`` with
the reason (then closes, code 1008). Without TLS (``insecure_plaintext``, loopback only: :func:`check_loopback`)
the names are unauthenticated claims.

Example:
    >>> check_loopback("127.0.0.1")
    >>> check_loopback("10.0.0.1")
    Traceback (most recent call last):
    ...
    refimpl.errors.ConfigurationError: insecure plaintext is for loopback experiments only; refusing address '10.0.0.1' (use TLS certificates: python -m refimpl certs)
"""  # noqa: E501

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable
from typing import Any

from refimpl.errors import ConfigurationError, WorkerUnavailable
from refimpl.net import certs
from refimpl.net.framing import FAIL, HELLO, Assembler, frames

__all__ = ["check_loopback", "client_hello", "server_hello"]


def check_loopback(host: str) -> None:
    """Refuse a non-loopback address for an unauthenticated (``insecure_plaintext``) endpoint."""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ConfigurationError(f"insecure plaintext is for loopback experiments only; refusing address {host!r} "
                                 "(use TLS certificates: python -m refimpl certs)")


async def client_hello(ws: Any, me: str, name: str, *, tls: bool, deadline: float,
                       unavailable: Callable[[str], WorkerUnavailable]) -> dict[str, Any]:
    """The client's half on the open WebSocket ``ws``: returns the server's ``HELLO`` (``party``, ``boot``, maybe
    ``bulk``); on any failure closes ``ws`` and raises ``unavailable(why)``."""
    try:
        if tls:
            seen = certs.peer_name(ws.transport.get_extra_info("ssl_object"))
            if seen != name:
                raise unavailable(f"its certificate names {seen!r}, not {name!r}")
        hello = json.dumps({"party": me, "to": name, "version": 1}).encode()
        await ws.send(next(frames(HELLO, 0, "hello", hello)))
        asm = Assembler(1 << 16)
        msg = None
        while msg is None:
            msg = asm.feed(await asyncio.wait_for(ws.recv(), deadline))
        info = json.loads(bytes(msg.data)) if msg.typ == HELLO else {}
        if msg.typ == FAIL:
            raise unavailable(f"it refused us: {bytes(msg.data).decode(errors='replace')}")
        if info.get("party") != name or not isinstance(info.get("boot"), str):
            raise unavailable(f"unexpected handshake {info!r}")
    except WorkerUnavailable:
        await ws.close()
        raise
    except Exception as e:  # noqa: BLE001
        await ws.close()
        raise unavailable(f"handshake failed ({type(e).__name__}: {e})") from None
    return info  # type: ignore[no-any-return]


async def server_hello(ws: Any, name: str, *, tls: bool, boot: str, bulk_port: int | None,
                       reject: Callable[[str, str], None]) -> str | None:
    """The server's half on the accepted WebSocket ``ws``: the name of the party proven (or, without TLS, claimed)
    there, or None after ``reject(who, why)`` and refusing it."""
    addr = ws.remote_address or ("?", "?")
    remote = f"{addr[0]}:{addr[1]}"
    try:
        msg = Assembler(1 << 16).feed(await asyncio.wait_for(ws.recv(), 30))
        info = json.loads(bytes(msg.data)) if msg is not None and msg.typ == HELLO else None
    except Exception as e:  # noqa: BLE001
        reject(remote, f"bad handshake ({type(e).__name__}: {e})")
        return None
    claimed = info.get("party") if isinstance(info, dict) else None
    try:
        certs.check_name(claimed)
    except Exception:  # noqa: BLE001
        reject(remote, f"bad handshake {str(info)[:80]!r}")
        return None
    assert isinstance(claimed, str)
    why = None
    if tls:
        proven = certs.peer_name(ws.transport.get_extra_info("ssl_object"))
        if proven != claimed:
            why = f"claims to be {claimed!r} but its certificate names {proven!r}"
    if info.get("to") != name:  # type: ignore[union-attr]
        why = f"wanted party {info.get('to')!r}, this is {name!r}"  # type: ignore[union-attr]
    if why:
        reject(f"{claimed!r} from {remote}", why)
        await ws.send(next(frames(FAIL, 0, "hello", why.encode())))
        await ws.close(1008, "refused")
        return None
    answer = {"party": name, "boot": boot, **({"bulk": bulk_port} if bulk_port is not None else {})}
    await ws.send(next(frames(HELLO, 0, "hello", json.dumps(answer).encode())))
    return claimed
