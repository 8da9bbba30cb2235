"""Authenticated WebSocket connections between parties: mutual TLS, chunked messages, deadlines, liveness.

One process runs one asyncio event loop in a background thread (:func:`event_loop`); synchronous callers (a
:class:`~refimpl.workers.remote.RemoteWorker`, a worker executing an instruction) hand it coroutines and wait.

**Frames** (:mod:`refimpl.net.framing`). A message (the bytes of one :mod:`refimpl.net.wire` message) travels as
WebSocket binary messages of at most ``CHUNK`` payload bytes, each behind a 16-byte header ``b"RN" | type u8 | flags
u8 | request id u64 | chunk index u32``; the first chunk starts with ``total length u64 | kind length u8 | kind``.
Writing awaits the
socket's drain after each chunk (back-pressure: the sender never queues more than the 4 MiB write limit), the receiver
assembles the chunks into one buffer of the announced length (at most ``max_message`` bytes), and the WebSocket
ping/pong keepalive runs between chunks: liveness does not depend on message size. Types: ``HELLO`` (the handshake),
``REQUEST`` (answered by ``REPLY``, ``ACK`` = empty reply, or ``FAIL`` = rejected), ``NOTIFY`` (not answered).

**Bulk channel.** A request of at least ``Link.bulk_min`` bytes (1 MiB unless set lower: a moved or sent array)
made with :meth:`Link.call` goes instead over
a second, blocking mutual-TLS socket to the same party (:mod:`refimpl.net.bulk`): its buffers are written straight
into TLS and received straight into the buffer the array will live in, with the same names, limits, deadlines and
liveness; the WebSocket's pings keep watching the party meanwhile. Order holds across the two connections: a
large request waits until the link's WebSocket requests are answered and, after messages that expect no answer
(``notify``), until a ``FENCE`` request (answered by the server itself, in order) proves them handled; a smaller
request made while the WebSocket is busy follows on the WebSocket.

**Who is who.** With TLS (the default) both ends present certificates of the deployment CA
(:mod:`refimpl.net.certs`); the client checks that the server's certificate names the party it wanted, the server
that the client's certificate names the party it claims in its ``HELLO``. ``insecure_plaintext=True`` drops TLS
(names are then unauthenticated claims) and is refused for anything but loopback addresses.

**Deadlines.** A request fails with :class:`~refimpl.errors.WorkerUnavailable` naming the party when the party
does not start answering within ``deadline`` seconds after the request was written, when the connection breaks
(a killed process), when pings go unanswered for ``ping_timeout`` seconds, or when writing a message makes no
progress for ``ping_timeout`` seconds (a peer that stopped reading: behind its full buffers no ping gets through
either). A transfer that keeps flowing is never cut off by the deadline, however large.

**Sessions.** A server has a random boot id, sent in its ``HELLO``. A client reconnects by itself after a dropped
connection (the request in flight fails; objects stay on the server); if the server restarted meanwhile (new boot
id: its objects are gone) the link fails clearly instead of resuming.

**Rejected input.** A malformed frame closes that connection (code 1002) and is logged; a request id that does not
increase (a replayed or reordered request) is answered with ``FAIL`` and logged; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import itertools
import json
import logging
import os
import secrets
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from refimpl.errors import ConfigurationError, ProtocolError, ReplayError, WorkerUnavailable
from refimpl.net import bulk, certs
from refimpl.net.framing import ACK, CHUNK, FAIL, HEADER, HELLO, MAX_MESSAGE, NOTIFY, REPLY, REQUEST, Assembler, frames

__all__ = ["CHUNK", "DEFER", "REQUEST", "Link", "Server", "check_loopback", "event_loop", "run_sync", "serve"]

log = logging.getLogger("refimpl.net")

_T = TypeVar("_T")
Payload = bytes | bytearray | memoryview | list[bytes | memoryview]
"""A message: one buffer, or a list of buffers whose concatenation it is (sent without joining them)."""
DEFER = b"\x00defer"  # a quick handler's "not me: run the full handler" (compared by identity)
_WEBSOCKET = object()  # "this request takes the WebSocket" (from Link._bulk_call)
FENCE = "\x00fence"  # a request kind the server answers itself (ACK), in order: all before it is handled


# ---------------------------------------------------------------- the process's event loop
class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="refimpl-net", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


_loop_lock = threading.Lock()
_loop: _LoopThread | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """This process's network event loop (started on first use, in a daemon thread)."""
    global _loop
    with _loop_lock:
        if _loop is None or not _loop.thread.is_alive() or _loop.pid != os.getpid():  # type: ignore[attr-defined]
            _loop = _LoopThread()
            _loop.pid = os.getpid()  # type: ignore[attr-defined]
        return _loop.loop


def run_sync(coro: Awaitable[_T], timeout: float | None = None) -> _T:
    """Run ``coro`` on the network loop and wait for its result (from any thread but the loop's own)."""
    lt = _loop
    if lt is not None and lt.pid == os.getpid() and lt.thread.is_alive():  # type: ignore[attr-defined]
        loop = lt.loop  # the common case: no lock to take
    else:
        loop = event_loop()
    if threading.current_thread() is _loop.thread:  # type: ignore[union-attr]
        if asyncio.iscoroutine(coro):
            coro.close()
        raise RuntimeError("a blocking network call was made on the network thread itself")
    fut: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise


def check_loopback(host: str) -> None:
    """Refuse a non-loopback address for an unauthenticated (``insecure_plaintext``) endpoint."""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ConfigurationError(f"insecure plaintext is for loopback experiments only; refusing address {host!r} "
                                 "(use TLS certificates: python -m refimpl certs)")


# ---------------------------------------------------------------- client side
def _ws_options(ping_interval: float, ping_timeout: float, max_queue: int = 16) -> dict[str, Any]:
    return {"compression": None, "max_size": CHUNK + 512, "ping_interval": ping_interval,
            "ping_timeout": ping_timeout, "max_queue": max_queue, "write_limit": 1 << 22,
            "close_timeout": min(2.0, ping_timeout)}


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
                                   user_agent_header=None, **_ws_options(self.ping_interval, self.ping_timeout))
            except (OSError, asyncio.TimeoutError, TimeoutError) as e:
                raise self._unavailable(f"cannot connect ({type(e).__name__}: {e})") from None
            except Exception as e:  # noqa: BLE001 - handshake rejections of every kind
                raise self._unavailable(f"connection refused ({type(e).__name__}: {e})") from None
            try:
                if self._ssl is not None:
                    seen = certs.peer_name(ws.transport.get_extra_info("ssl_object"))
                    if seen != self.name:
                        raise self._unavailable(f"its certificate names {seen!r}, not {self.name!r}")
                hello = json.dumps({"party": self.me, "to": self.name, "version": 1}).encode()
                await ws.send(next(frames(HELLO, 0, "hello", hello)))
                asm = Assembler(1 << 16)
                msg = None
                while msg is None:
                    msg = asm.feed(await asyncio.wait_for(ws.recv(), self.deadline))
                info = json.loads(bytes(msg.data)) if msg.typ == HELLO else {}
                if msg.typ == FAIL:
                    raise self._unavailable(f"it refused us: {bytes(msg.data).decode(errors='replace')}")
                if info.get("party") != self.name or not isinstance(info.get("boot"), str):
                    raise self._unavailable(f"unexpected handshake {info!r}")
            except WorkerUnavailable:
                await ws.close()
                raise
            except Exception as e:  # noqa: BLE001
                await ws.close()
                raise self._unavailable(f"handshake failed ({type(e).__name__}: {e})") from None
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
        progress = [loop.time(), False]  # the last chunk written; stalled
        watchdog: asyncio.TimerHandle | None = None

        def watch() -> None:  # a peer that stops reading fills the buffers: then pings cannot get through either
            nonlocal watchdog
            if loop.time() - progress[0] > self.ping_timeout:
                progress[1] = True
                ws.transport.abort()
            else:
                watchdog = loop.call_later(self.ping_timeout / 4, watch)

        try:
            assert self._send_lock is not None
            async with self._send_lock:
                fence = self._notified  # the notifies written before this request: handled once it is answered
                if not isinstance(payload, (bytes, bytearray)) or len(payload) > CHUNK:  # (several chunks, maybe)
                    watchdog = loop.call_later(self.ping_timeout / 4, watch)
                for frame in frames(NOTIFY if notify else REQUEST, req, kind, payload):
                    await ws.send(frame)
                    progress[0] = loop.time()
                    self.bytes_written += len(frame)
                if notify:
                    self._notified += 1
        except Exception as e:  # noqa: BLE001
            self._pending.pop(req, None)
            why = (f"no progress sending for {self.ping_timeout:g} s" if progress[1] else
                   f"connection lost while sending ({type(e).__name__}: {e})")
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
        if self.broken or (_loop is not None and threading.current_thread() is _loop.thread):
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


# ---------------------------------------------------------------- server side
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
                                      **_ws_options(self.ping_interval, self.ping_timeout))
        self.port = self._server.sockets[0].getsockname()[1]
        if self.bulk_port is not None:
            self._bulk = bulk.BulkListener(self.name, self.handler, self.ssl, host=host, port=self.bulk_port,
                                           boot=self.boot, max_message=self.max_message, stall=self.ping_timeout,
                                           reject=self._reject)
            self.bulk_port = self._bulk.port

    def _reject(self, peer: str, why: str) -> None:
        self.rejected += 1
        log.warning("%s: rejected %s: %s", self.name, peer, why)

    async def _hello(self, ws: Any) -> str | None:
        addr = ws.remote_address or ("?", "?")
        remote = f"{addr[0]}:{addr[1]}"
        try:
            msg = Assembler(1 << 16).feed(await asyncio.wait_for(ws.recv(), 30))
            info = json.loads(bytes(msg.data)) if msg is not None and msg.typ == HELLO else None
        except Exception as e:  # noqa: BLE001
            self._reject(remote, f"bad handshake ({type(e).__name__}: {e})")
            return None
        claimed = info.get("party") if isinstance(info, dict) else None
        try:
            certs.check_name(claimed)
        except Exception:  # noqa: BLE001
            self._reject(remote, f"bad handshake {str(info)[:80]!r}")
            return None
        assert isinstance(claimed, str)
        why = None
        if self.ssl is not None:
            proven = certs.peer_name(ws.transport.get_extra_info("ssl_object"))
            if proven != claimed:
                why = f"claims to be {claimed!r} but its certificate names {proven!r}"
        if info.get("to") != self.name:  # type: ignore[union-attr]
            why = f"wanted party {info.get('to')!r}, this is {self.name!r}"  # type: ignore[union-attr]
        if why:
            self._reject(f"{claimed!r} from {remote}", why)
            await ws.send(next(frames(FAIL, 0, "hello", why.encode())))
            await ws.close(1008, "refused")
            return None
        info = {"party": self.name, "boot": self.boot, **({"bulk": self.bulk_port} if self._bulk else {})}
        await ws.send(next(frames(HELLO, 0, "hello", json.dumps(info).encode())))
        return claimed

    async def _connection(self, ws: Any) -> None:
        peer = await self._hello(ws)
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
