"""The server side of connections between parties: a :class:`Server` listening as one party (made by :func:`serve`).

It accepts mutual-TLS WebSocket connections (:mod:`refimpl.net.handshake`), reassembles each connection's messages
(:mod:`refimpl.net.framing`), refuses malformed frames and replayed request ids, and hands each message to the
party's handler, in order per connection; with a bulk port it also serves :mod:`refimpl.net.bulk` connections. The
overview (frames, deadlines, sessions): :mod:`refimpl.net.transport`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import ssl
from collections.abc import Callable
from typing import Any

from refimpl.errors import ConfigurationError, ProtocolError
from refimpl.net import bulk, certs
from refimpl.net.eventloop import run_sync
from refimpl.net.framing import ACK, FAIL, FENCE, MAX_MESSAGE, NOTIFY, REPLY, REQUEST, Assembler, frames
from refimpl.net.handshake import check_loopback, server_hello
from refimpl.net.liveness import ws_options

__all__ = ["DEFER", "Handler", "Server", "serve"]

log = logging.getLogger("refimpl.net")

DEFER = b"\x00defer"  # a quick handler's "not me: run the full handler" (compared by identity)
Handler = Callable[[str, int, str, bytearray], "bytes | bytearray | concurrent.futures.Future[bytes] | None"]


class Server:
    """A listening party: accepts authenticated connections and runs ``handler(peer, type, kind, payload)``.

    Made by :func:`serve`. ``handler`` runs in a thread pool, one message at a time per connection (messages of a
    connection are handled in order; connections concurrently); its return value is the reply (None: ``ACK``), or
    a :class:`concurrent.futures.Future` of the reply when the answer comes later (the thread is freed meanwhile).
    ``quick``, if given, is first offered each message of at most ``inline_limit`` bytes on the network thread
    itself (no thread hop): it must never block, and returns :data:`DEFER` for what ``handler`` should do instead.
    A payload is a ``bytearray``, or from 4 MiB up a writable ``memoryview`` (:func:`~refimpl.net.framing.buffer`).

    Unless ``bulk_port`` is None the server also listens on that port (0: any free one; ``Server.bulk_port`` says
    which, and its ``HELLO`` announces it) for :mod:`refimpl.net.bulk` connections: a client's requests of at least
    :data:`~refimpl.net.bulk.BULK_MIN` bytes arrive there, are handled by ``handler`` in that connection's thread,
    in order, and answered there; same certificates, names, size limit and replay rule as the WebSocket.
    """

    def __init__(self, name: str, handler: Handler, *, ssl_context: ssl.SSLContext | None, workers: int = 32,
                 max_message: int = MAX_MESSAGE, ping_interval: float = 5.0, ping_timeout: float = 20.0,
                 quick: Handler | None = None, inline_limit: int = 1 << 18, bulk_port: int | None = 0) -> None:
        self.name, self.handler, self.ssl = name, handler, ssl_context
        self.bulk_port, self._bulk = bulk_port, None  # type: tuple[int | None, bulk.BulkListener | None]
        self.quick, self.inline_limit = quick, inline_limit
        self.boot = secrets.token_hex(8)
        self.max_message, self.ping_interval, self.ping_timeout = max_message, ping_interval, ping_timeout
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=f"refimpl-{name}")
        self.rejected = 0
        self.peers: dict[str, int] = {}
        self._server: Any = None
        self.port = 0

    def connected(self, peer: str) -> bool:
        """Whether party ``peer`` has an open connection to this server now."""
        return self.peers.get(peer, 0) > 0

    async def _start(self, host: str, port: int) -> None:
        from websockets.asyncio.server import serve as ws_serve

        self._server = await ws_serve(self._connection, host, port, ssl=self.ssl, server_header=None,
                                      **ws_options(self.ping_interval, self.ping_timeout))
        self.port = self._server.sockets[0].getsockname()[1]
        if self.bulk_port is not None:
            self._bulk = bulk.BulkListener(self.name, self.handler, self.ssl, host=host, port=self.bulk_port,
                                           boot=self.boot, max_message=self.max_message, stall=self.ping_timeout,
                                           reject=self._reject)
            self.bulk_port = self._bulk.port

    def _reject(self, peer: str, why: str) -> None:
        self.rejected += 1
        log.warning("%s: rejected %s: %s", self.name, peer, why)

    async def _connection(self, ws: Any) -> None:
        peer = await server_hello(ws, self.name, tls=self.ssl is not None, boot=self.boot,
                                  bulk_port=self.bulk_port if self._bulk is not None else None, reject=self._reject)
        if peer is None:
            return
        self.peers[peer] = self.peers.get(peer, 0) + 1
        asm, last, loop = Assembler(self.max_message), 0, asyncio.get_running_loop()
        try:
            while True:
                try:
                    msg = asm.feed(await ws.recv())
                except ProtocolError as e:
                    self._reject(repr(peer), str(e))
                    await ws.close(1002, "malformed frame")
                    return
                if msg is None:
                    continue
                if msg.typ not in (REQUEST, NOTIFY):
                    self._reject(repr(peer), f"frame type {msg.typ} is not a request")
                    await ws.close(1002, "unexpected frame")
                    return
                if msg.req <= last:
                    why = f"replayed or reordered request {msg.req} (the last was {last})"
                    self._reject(repr(peer), why)
                    if msg.typ == REQUEST:
                        await self._send(ws, FAIL, msg.req, "fail", f"replay: {why}".encode())
                    continue
                last = msg.req
                if msg.kind == FENCE and msg.typ == REQUEST:  # everything before it on this connection is handled
                    await self._send(ws, ACK, msg.req, "reply", b"")
                    continue
                try:
                    reply: Any = DEFER
                    if self.quick is not None and len(msg.data) <= self.inline_limit:
                        reply = self.quick(peer, msg.typ, msg.kind, msg.data)  # type: ignore[arg-type]  # no hop
                    if reply is DEFER:
                        reply = await loop.run_in_executor(self.pool, self.handler, peer, msg.typ,  # type: ignore[arg-type]
                                                           msg.kind, msg.data)
                except Exception as e:  # noqa: BLE001 - a handler failure answers this request only
                    log.exception("%s: handling %r from %r failed", self.name, msg.kind, peer)
                    if msg.typ == REQUEST:
                        await self._send(ws, FAIL, msg.req, "fail", f"{type(e).__name__}: {e}".encode())
                    continue
                if isinstance(reply, concurrent.futures.Future):  # answered later (e.g. when a stage closes)
                    try:
                        reply = await asyncio.wrap_future(reply)
                    except Exception as e:  # noqa: BLE001
                        if msg.typ == REQUEST:
                            await self._send(ws, FAIL, msg.req, "fail", f"{type(e).__name__}: {e}".encode())
                        continue
                if msg.typ == REQUEST:
                    await self._send(ws, ACK if reply is None else REPLY, msg.req, "reply", reply or b"")
        except Exception:  # noqa: BLE001, S110 - the peer went away; its objects stay (sessions resume)
            pass
        finally:
            self.peers[peer] -= 1

    @staticmethod
    async def _send(ws: Any, typ: int, req: int, kind: str, payload: bytes | bytearray) -> None:
        for frame in frames(typ, req, kind, payload):
            await ws.send(frame)

    def close(self) -> None:
        """Stop listening and close every connection."""
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
        if self._bulk is not None:
            self._bulk.close()
        run_sync(close(), timeout=10)
        self.pool.shutdown(wait=False, cancel_futures=True)


def serve(name: str, handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
          tls_dir: str | os.PathLike[str] | None = None, insecure_plaintext: bool = False, **kwargs: Any) -> Server:
    """Listen as party ``name`` on ``host:port`` (0: any free port, see ``Server.port``) on the network loop.

    Raises:
        ConfigurationError: no ``tls_dir`` without ``insecure_plaintext``, or plaintext on a non-loopback address.
    """
    certs.check_name(name)
    if insecure_plaintext:
        check_loopback(host)
        ctx = None
        log.warning("%s: INSECURE PLAINTEXT on %s:%s: no encryption, names are unauthenticated claims (loopback "
                    "experiments only)", name, host, port)
    elif tls_dir is None:
        raise ConfigurationError(f"party {name!r} needs tls_dir= (its certificate) or insecure_plaintext=True")
    else:
        ctx = certs.server_context(tls_dir, name)
    server = Server(name, handler, ssl_context=ctx, **kwargs)
    run_sync(server._start(host, port), timeout=30)
    return server
