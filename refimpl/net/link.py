"""The client side of a connection between parties: a :class:`Link` from this party to another.

A link holds one mutual-TLS WebSocket to the party (opened on first use, :mod:`refimpl.net.handshake`; reopened
after a drop, the session resumed unless the party restarted) and, for large requests, its blocking bulk channel
(:mod:`refimpl.net.bulk`). :meth:`Link.request` (on the network loop) sends a message as chunks
(:mod:`refimpl.net.framing`) and waits for the reply; :meth:`Link.call` does it from synchronous code, over the bulk
channel from :attr:`Link.bulk_min` bytes; :meth:`Link.start` and :meth:`Link.notify_soon` send without waiting.
Deadlines and liveness: :mod:`refimpl.net.transport` (the overview) and :mod:`refimpl.net.liveness`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from refimpl.errors import ConfigurationError, ProtocolError, ReplayError, WorkerUnavailable
from refimpl.net import bulk, certs
from refimpl.net.eventloop import event_loop, on_network_thread, run_sync
from refimpl.net.framing import ACK, CHUNK, FAIL, FENCE, HEADER, MAX_MESSAGE, NOTIFY, REPLY, REQUEST, Assembler, frames
from refimpl.net.handshake import check_loopback, client_hello
from refimpl.net.liveness import SendWatchdog, ws_options

__all__ = ["Link", "Payload"]

log = logging.getLogger("refimpl.net")

Payload = bytes | bytearray | memoryview | list[bytes | memoryview]
"""A message: one buffer, or a list of buffers whose concatenation it is (sent without joining them)."""
_WEBSOCKET = object()  # "this request takes the WebSocket" (from Link._bulk_call)


@dataclass
class _Pending:
    done: asyncio.Future[Any]
    started: bool = False  # the reply's first chunk arrived: the deadline no longer applies


class Link:
    """A client connection from party ``me`` to party ``name`` at ``url`` (``wss://host:port`` or ``ws://``).

    Args:
        url: where the party listens.
        name: the party expected there (its certificate must name it).
        me: this party's name (the certificate presented).
        tls_dir: the deployment's certificate directory (None only with ``insecure_plaintext``).
        insecure_plaintext: no TLS, loopback only: names are unauthenticated.
        deadline: seconds a party has to start answering a request.
        ping_interval, ping_timeout: liveness (seconds).
        max_message: the largest reply accepted, in bytes.
    """

    def __init__(self, url: str, name: str, me: str, *, tls_dir: str | os.PathLike[str] | None = None,
                 insecure_plaintext: bool = False, deadline: float = 60.0, ping_interval: float = 5.0,
                 ping_timeout: float = 20.0, max_message: int = MAX_MESSAGE) -> None:
        self.url, self.name, self.me = url, certs.check_name(name), certs.check_name(me)
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname or not parts.port:
            raise ConfigurationError(f"a party address is wss://host:port (ws:// only with insecure_plaintext), "
                                     f"got {url!r}")
        if insecure_plaintext:
            if parts.scheme != "ws":
                raise ConfigurationError(f"insecure_plaintext connects with ws://, got {url!r}")
            check_loopback(parts.hostname)
            self._ssl: ssl.SSLContext | None = None
        else:
            if parts.scheme != "wss":
                raise ConfigurationError(f"{url!r} is not TLS: use wss:// (or insecure_plaintext=True on loopback)")
            if tls_dir is None:
                raise ConfigurationError(f"connecting to {name!r} needs tls_dir= (the deployment's certificates)")
            self._ssl = certs.client_context(tls_dir, me)
        self.deadline, self.ping_interval, self.ping_timeout = float(deadline), ping_interval, ping_timeout
        self.max_message = max_message
        self.bulk_min = bulk.BULK_MIN  # call(): requests of at least this many bytes take the bulk channel
        self.boot: str | None = None
        self.broken: str | None = None
        self.bytes_written = self.bytes_read = 0
        self._ws: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock: asyncio.Lock | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost: str | None = None  # why the last WebSocket connection ended
        self._bulk_port: int | None = None  # the party's bulk port (from its HELLO)
        self._bulk: bulk.BulkClient | None = None
        self._bulk_lock = threading.Lock()
        self._started_lock = threading.Lock()
        self._started = 0  # requests started without waiting (start) and not answered yet
        self._ws_busy = 0  # WebSocket requests not answered yet and notifies not written yet
        self._notified = self._fenced = 0  # notifies written; those of them known handled (a later request answered)

    def __repr__(self) -> str:
        return f"Link({self.me!r} -> {self.name!r} at {self.url})"

    def _unavailable(self, why: str) -> WorkerUnavailable:
        return WorkerUnavailable(f"party {self.name!r} at {self.url} is unavailable: {why}")

    async def _connect(self) -> None:
        from websockets.asyncio.client import connect

        if self._connect_lock is None:
            self._connect_lock, self._send_lock = asyncio.Lock(), asyncio.Lock()
        async with self._connect_lock:
            if self._ws is not None:
                return
            if self.broken:
                raise self._unavailable(self.broken)
            try:
                ws = await connect(self.url, ssl=self._ssl, proxy=None, open_timeout=self.deadline,
                                   user_agent_header=None, **ws_options(self.ping_interval, self.ping_timeout))
            except (OSError, asyncio.TimeoutError, TimeoutError) as e:
                raise self._unavailable(f"cannot connect ({type(e).__name__}: {e})") from None
            except Exception as e:  # noqa: BLE001 - handshake rejections of every kind
                raise self._unavailable(f"connection refused ({type(e).__name__}: {e})") from None
            info = await client_hello(ws, self.me, self.name, tls=self._ssl is not None, deadline=self.deadline,
                                      unavailable=self._unavailable)
            if self.boot is not None and info["boot"] != self.boot:
                self.broken = ("it restarted since we last connected: the objects it held are lost and pointers to "
                               "them are stale; connect again for a new session")
                await ws.close()
                raise self._unavailable(self.broken)
            self.boot = info["boot"]
            port = info.get("bulk")
            self._bulk_port = port if isinstance(port, int) and 0 < port < 65536 else None
            self._lost = None
            self._ws = ws
            self._reader = asyncio.get_running_loop().create_task(self._read(ws))

    async def _read(self, ws: Any) -> None:
        asm = Assembler(self.max_message)
        why = "connection closed"
        try:
            while True:
                frame = await ws.recv()
                self.bytes_read += len(frame)
                if len(frame) >= HEADER.size and frame[:2] == b"RN":
                    pend = self._pending.get(HEADER.unpack_from(frame)[3])
                    if pend is not None:
                        pend.started = True
                msg = asm.feed(frame)
                if msg is None:
                    continue
                pend = self._pending.pop(msg.req, None)
                if pend is None or pend.done.done():
                    log.warning("%s: unexpected message %d from %r ignored", self.me, msg.req, self.name)
                    continue
                if msg.typ == REPLY:
                    pend.done.set_result(msg.data)
                elif msg.typ == ACK:
                    pend.done.set_result(None)
                elif msg.typ == FAIL:
                    text = bytes(msg.data).decode(errors="replace")
                    err = ReplayError if text.startswith("replay") else ProtocolError
                    pend.done.set_exception(err(f"party {self.name!r} rejected the request: {text}"))
                else:
                    raise ProtocolError(f"unexpected frame type {msg.typ} from a server")
        except ProtocolError as e:
            why = f"malformed reply ({e})"
            log.error("%s: %s from %r; closing", self.me, why, self.name)
            await ws.close(1002, "malformed frame")
        except Exception as e:  # noqa: BLE001 - ConnectionClosed and friends
            why = f"connection lost ({type(e).__name__}: {e})"
        finally:
            self._lost = why
            if self._ws is ws:
                self._ws = None
            for pend in self._pending.values():
                if not pend.done.done():  # wakes the waiter: it raises the error now, not at its deadline
                    pend.done.set_exception(self._unavailable(why))
                    pend.done.exception()  # the waiter, if still there, raises it; nobody else needs a warning
            self._pending.clear()

    async def request(self, kind: str, payload: Payload, *, notify: bool = False) -> bytearray | None:
        """Send one message (bytes, or a list of buffers whose concatenation it is); return the reply's bytes (None
        for an ``ACK`` or a ``notify``)."""
        self._ws_busy += 1  # until answered (a notify: until written): the bulk channel waits behind it
        try:
            return await self._request(kind, payload, notify)
        finally:
            self._ws_busy -= 1

    async def _request(self, kind: str, payload: Payload, notify: bool) -> bytearray | None:
        if self._ws is None:  # connected: no lock to take (the latency of a small request is mostly hops like it)
            await self._connect()
        ws = self._ws
        req = next(self._ids)
        loop = asyncio.get_running_loop()
        pend = _Pending(loop.create_future())
        if not notify:
            self._pending[req] = pend
        watchdog: SendWatchdog | None = None  # a peer that stops reading fills the buffers: then no ping gets through
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                fence = self._notified  # the notifies written before this request: handled once it is answered
                if not isinstance(payload, (bytes, bytearray)) or len(payload) > CHUNK:  # (several chunks, maybe)
                    watchdog = SendWatchdog(ws, self.ping_timeout)
                for frame in frames(NOTIFY if notify else REQUEST, req, kind, payload):
                    await ws.send(frame)
                    if watchdog is not None:
                        watchdog.progress()
                    self.bytes_written += len(frame)
                if notify:
                    self._notified += 1
        except Exception as e:  # noqa: BLE001
            self._pending.pop(req, None)
            why = (f"no progress sending for {self.ping_timeout:g} s" if watchdog is not None and watchdog.stalled
                   else f"connection lost while sending ({type(e).__name__}: {e})")
            raise self._unavailable(why) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if notify:
            return None
        # the deadline is a timer on the loop, not a wait_for task around an event: one wakeup per reply
        timer = loop.call_later(self.deadline, self._expire, req, pend)
        try:
            result: bytearray | None = await pend.done
        finally:
            timer.cancel()
        self._fenced = max(self._fenced, fence)
        return result

    def _expire(self, req: int, pend: _Pending) -> None:
        """The deadline of request ``req`` passed: fail it unless its reply has started arriving."""
        if pend.started or pend.done.done():
            return
        self._pending.pop(req, None)
        pend.done.set_exception(self._unavailable(f"no answer within the {self.deadline:g} s deadline"))

    def call(self, kind: str, payload: Payload, *, notify: bool = False) -> bytearray | None:
        """:meth:`request` from synchronous code; a request of at least ``bulk_min`` bytes (default
        :data:`~refimpl.net.bulk.BULK_MIN`) goes over the party's bulk channel (:mod:`refimpl.net.bulk`) when it
        has one and it is free (the reply is then a ``bytearray`` or, when large, a writable ``memoryview``)."""
        if not notify:
            parts = list(payload) if isinstance(payload, list) else [payload]
            if sum(memoryview(p).nbytes for p in parts) >= self.bulk_min:
                out = self._bulk_call(kind, parts)
                if out is not _WEBSOCKET:
                    return out  # type: ignore[return-value]
        return run_sync(self.request(kind, payload, notify=notify))

    def _bulk_call(self, kind: str, parts: list[Any]) -> Any:
        """One request over the bulk channel, or :data:`_WEBSOCKET` where it must take the WebSocket instead."""
        if self.broken or on_network_thread():
            return _WEBSOCKET  # (which fails as usual: a closed link, or a blocking call on the network thread)
        if self._ws is None:
            run_sync(self._connect())
        ws = self._ws
        if self._bulk_port is None or ws is None:
            return _WEBSOCKET
        large = sum(memoryview(p).nbytes for p in parts) >= bulk.BULK_MIN
        if not self._bulk_lock.acquire(blocking=large):  # a small one does not wait for another thread's transfer
            return _WEBSOCKET
        try:
            if self._started or self._ws_busy or self._pending or self._notified != self._fenced:
                if not large:  # messages on the WebSocket first (their order holds): this one follows them there
                    return _WEBSOCKET
                run_sync(self._quiesce())  # a large one waits for them (and fences the notifies), then goes bulk
                if self._ws is not ws:
                    raise self._unavailable(self._lost or "connection lost")
            if self._bulk is None:
                host = urlsplit(self.url).hostname
                assert host is not None
                try:
                    self._bulk = bulk.BulkClient.open(host, self._bulk_port, self._ssl, me=self.me, name=self.name,
                                                      timeout=self.deadline)
                except OSError as e:
                    log.warning("%s: no bulk connection to %r on port %d (%s: %s); large messages take the "
                                "WebSocket", self.me, self.name, self._bulk_port, type(e).__name__, e)
                    self._bulk_port = None
                    return _WEBSOCKET
                except (bulk.Lost, ProtocolError, ValueError) as e:
                    raise self._unavailable(str(e)) from None
                if self._bulk.boot != self.boot:
                    self._bulk.close()
                    self._bulk = None
                    self.broken = ("it restarted since we last connected: the objects it held are lost and "
                                   "pointers to them are stale; connect again for a new session")
                    raise self._unavailable(self.broken)
            channel = self._bulk

            def alive() -> str | None:
                return None if self._ws is ws else (self._lost or "connection lost")

            before = (channel.bytes_written, channel.bytes_read)
            try:
                typ, data = channel.call(next(self._ids), kind, parts, deadline=self.deadline,
                                         stall=self.ping_timeout, max_message=self.max_message, alive=alive)
            except bulk.Lost as e:
                channel.close()
                self._bulk = None
                raise self._unavailable(str(e)) from None
            finally:
                self.bytes_written += channel.bytes_written - before[0]
                self.bytes_read += channel.bytes_read - before[1]
        finally:
            self._bulk_lock.release()
        if typ == REPLY:
            return data
        if typ == ACK:
            return None
        text = bytes(data).decode(errors="replace")
        if text.startswith("replay"):
            self._close_bulk()
            raise ReplayError(f"party {self.name!r} rejected the request: {text}")
        raise ProtocolError(f"party {self.name!r} rejected the request: {text}")

    async def _quiesce(self) -> None:
        """Wait until every WebSocket request made so far is answered (or failed) and every notify written is known
        handled (a fence request answered after it)."""
        while self._ws_busy or self._pending or self._started:
            await asyncio.sleep(0.0005)
        if self._notified != self._fenced:
            mark = self._notified
            try:
                await self.request(FENCE, b"")
            except ProtocolError:  # a server without fences refused it: still an answer, after the notifies
                pass
            self._fenced = max(self._fenced, mark)

    def _close_bulk(self) -> None:
        channel, self._bulk = self._bulk, None
        if channel is not None:
            channel.close()

    def start(self, kind: str, payload: bytes) -> concurrent.futures.Future[bytearray | None]:
        """Send a request without waiting; the future holds the reply (requests started in order are sent in
        order)."""
        with self._started_lock:
            self._started += 1  # counted before it is scheduled: a bulk request made next must not overtake it
        fut = asyncio.run_coroutine_threadsafe(self.request(kind, payload), event_loop())
        fut.add_done_callback(self._finished)
        return fut

    def _finished(self, _: object) -> None:
        with self._started_lock:
            self._started -= 1

    def notify_soon(self, kind: str, payload: bytes) -> None:
        """Queue a message that expects no answer without waiting (safe from any thread, finalizers included)."""
        def start() -> None:
            task = event_loop().create_task(self.request(kind, payload, notify=True))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # drop errors: best effort

        event_loop().call_soon_threadsafe(start)

    def drop(self) -> None:
        """Abort the connection (as a network failure would); the next request reconnects."""
        self._close_bulk()

        async def abort() -> None:
            if self._ws is not None:
                self._ws.transport.abort()
        run_sync(abort())

    def close(self) -> None:
        """Close the connection politely; later requests fail (a closed link does not reconnect)."""
        self.broken = "this party closed its connection"
        self._close_bulk()

        async def close() -> None:
            if self._ws is not None:
                await self._ws.close()
        try:
            run_sync(close(), timeout=5)
        except Exception:  # noqa: BLE001, S110 - closing is best effort
            pass
