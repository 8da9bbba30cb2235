"""The bulk channel: large requests on a blocking mutual-TLS socket per peer, below asyncio and WebSocket framing.

A :class:`~refimpl.net.transport.Link` sends a request of at least :data:`BULK_MIN` bytes (a moved or sent array)
over a second connection to the same party instead of its WebSocket: the party's server listens for it on a second
port, announced in its WebSocket ``HELLO``. Each side uses the socket from one thread, blocking: the sender
``sendall``\\ s the message's buffers (:func:`refimpl.net.wire.encode_parts`: the array's own memory) straight into
TLS, the receiver ``recv_into``\\ s one preallocated buffer of the announced length, which the wire decoder then
views as the array. No chunk headers, WebSocket masking, memory-BIO copies or reassembly: a raw TLS stream (see
``bench/bench_net.py`` for what that buys).

Same guarantees as the WebSocket path:

* **Who is who.** The same deployment certificates and TLS 1.3 contexts (:mod:`refimpl.net.certs`); the client
  checks the certificate names the party it wanted, the server that it names the party claimed in the bulk
  ``HELLO``, which also carries the server's boot id (a restarted server is not resumed). Plaintext only where the
  WebSocket is plaintext (loopback experiments).
* **Framing.** :data:`~refimpl.net.framing.BULK` headers; a length over the receiver's ``max_message`` is refused
  before anything is allocated; a malformed header, a non-request or a request id that does not increase (replay)
  is refused, logged, and closes that bulk connection (the server keeps serving everyone else).
* **Deadlines and liveness.** Every send and receive fails after ``stall`` seconds without progress (a frozen peer);
  a killed peer's socket errors at once; the answer must start within ``deadline`` seconds after the request was
  written, while the party's WebSocket pings keep proving it alive; a transfer that keeps flowing is never cut off.
  Every failure is a :class:`Lost` that the link turns into :class:`~refimpl.errors.WorkerUnavailable`.
* **Back-pressure** is the kernel's: a blocking ``sendall`` waits for the socket buffer to drain.

One message at a time per bulk connection, in order: a link whose bulk connection is busy (another thread) or that
has WebSocket requests in flight (their order must hold) uses its WebSocket instead.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from refimpl.errors import ProtocolError
from refimpl.net import certs
from refimpl.net.framing import ACK, BULK, FAIL, HELLO, REPLY, REQUEST, buffer, bulk_header, parse_bulk_header

__all__ = ["BULK_MIN", "BulkClient", "BulkListener", "Lost"]

log = logging.getLogger("refimpl.net")

BULK_MIN = 1 << 20
"""Requests of at least this many bytes travel over the bulk channel (smaller ones over the WebSocket)."""
_HELLO_MAX = 1 << 16
Handler = Callable[[str, int, str, Any], Any]


class Lost(Exception):  # noqa: N818 - the link raises WorkerUnavailable(why) from it
    """The bulk connection failed; the text says why (the link names the party)."""


def _recv_exact(sock: socket.socket, view: memoryview, first: float | None, stall: float | None) -> None:
    """Fill ``view`` from ``sock``: the first bytes may take ``first`` seconds, every later read ``stall``."""
    got, n = 0, len(view)
    sock.settimeout(first)
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise Lost(f"connection closed after {got} of {n} bytes")
        if got == 0 and first != stall:
            sock.settimeout(stall)
        got += k


def _recv_message(sock: socket.socket, max_message: int, first: float | None,
                  stall: float | None) -> tuple[int, int, str, bytearray | memoryview]:
    head = bytearray(BULK.size)
    _recv_exact(sock, memoryview(head), first, stall)
    typ, req, length, klen = parse_bulk_header(head, max_message)
    kb = bytearray(klen)
    _recv_exact(sock, memoryview(kb), stall, stall)
    try:
        kind = kb.decode()
    except UnicodeDecodeError:
        raise ProtocolError("message kind is not UTF-8") from None
    data = buffer(length)
    _recv_exact(sock, memoryview(data), stall, stall)
    return typ, req, kind, data


def _send(sock: socket.socket, typ: int, req: int, kind: str, parts: Sequence[bytes | bytearray | memoryview]) -> int:
    """Write one message; return the bytes written."""
    views = [memoryview(p).cast("B") for p in parts]
    total = sum(len(v) for v in views)
    head = bulk_header(typ, req, kind, total)
    small = 0  # the header and any small leading buffers (the wire header) go out in one record
    while small < len(views) and len(views[small]) < 1 << 16:
        small += 1
    sock.sendall(b"".join((head, *views[:small])))
    for v in views[small:]:
        sock.sendall(v)
    return len(head) + total


def _close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # wakes a thread blocked on it (not TLS's own shutdown)
    except OSError:
        pass
    sock.close()


# ---------------------------------------------------------------- server side
class BulkListener:
    """A server's bulk port: one thread per connection, running ``handler(peer, REQUEST, kind, payload)`` for each
    request in order and writing its reply (None: ``ACK``; a Future: its result; an exception: ``FAIL``)."""

    def __init__(self, name: str, handler: Handler, ssl_context: ssl.SSLContext | None, *, host: str, port: int,
                 boot: str, max_message: int, stall: float, reject: Callable[[str, str], None],
                 max_connections: int = 256) -> None:
        self.name, self.handler, self.ssl, self.boot = name, handler, ssl_context, boot
        self.max_message, self.stall, self.reject = max_message, stall, reject
        self.max_connections = max_connections
        self.sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.settimeout(0.25)
        self.port: int = self.sock.getsockname()[1]
        self.closed = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name=f"refimpl-{name}-bulk", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._conns) >= self.max_connections:
                    self.reject(f"{addr[0]}:{addr[1]}", f"more than {self.max_connections} bulk connections")
                    conn.close()
                    continue
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn, f"{addr[0]}:{addr[1]}"), daemon=True,
                             name=f"refimpl-{self.name}-bulk-conn").start()

    def _serve(self, conn: socket.socket, remote: str) -> None:
        sock = conn
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn.settimeout(30.0)
            if self.ssl is not None:
                try:
                    sock = self.ssl.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError) as e:
                    self.reject(f"{remote} (bulk)", f"TLS handshake failed ({type(e).__name__}: {e})")
                    return
                with self._lock:
                    self._conns.discard(conn)
                    self._conns.add(sock)
            peer = self._hello(sock, remote)
            if peer is not None:
                self._requests(sock, peer)
        except TimeoutError:
            log.warning("%s: bulk connection from %s stalled for %g s; closed", self.name, remote, self.stall)
        except (OSError, Lost, ssl.SSLError) as e:
            log.debug("%s: bulk connection from %s ended: %s", self.name, remote, e)
        finally:
            with self._lock:
                self._conns.discard(sock)
                self._conns.discard(conn)
            _close(sock)

    def _hello(self, sock: socket.socket, remote: str) -> str | None:
        try:
            typ, _, _, data = _recv_message(sock, _HELLO_MAX, 30.0, 30.0)
            info = json.loads(bytes(data)) if typ == HELLO else None
            claimed = certs.check_name(info.get("party") if isinstance(info, dict) else None)
        except Exception as e:  # noqa: BLE001 - refused, whatever was wrong
            self.reject(remote, f"bad bulk handshake ({type(e).__name__}: {e})")
            return None
        assert isinstance(info, dict)
        why = None
        if self.ssl is not None:
            proven = certs.peer_name(sock)  # type: ignore[arg-type]
            if proven != claimed:
                why = f"claims to be {claimed!r} but its certificate names {proven!r}"
        if info.get("to") != self.name:
            why = f"wanted party {info.get('to')!r}, this is {self.name!r}"
        if why:
            self.reject(f"{claimed!r} from {remote} (bulk)", why)
            _send(sock, FAIL, 0, "hello", [why.encode()])
            return None
        _send(sock, HELLO, 0, "hello", [json.dumps({"party": self.name, "boot": self.boot}).encode()])
        return claimed

    def _requests(self, sock: socket.socket, peer: str) -> None:
        last = 0
        while not self.closed:
            try:  # idle between messages: no timeout (keepalive notices a vanished peer), then `stall` per read
                typ, req, kind, data = _recv_message(sock, self.max_message, None, self.stall)
            except ProtocolError as e:
                self.reject(f"{peer!r} (bulk)", str(e))
                return
            if typ != REQUEST:
                self.reject(f"{peer!r} (bulk)", f"frame type {typ} is not a request")
                return
            if req <= last:
                why = f"replayed or reordered request {req} (the last was {last})"
                self.reject(f"{peer!r} (bulk)", why)
                _send(sock, FAIL, req, "fail", [f"replay: {why}".encode()])
                return
            last = req
            try:
                reply = self.handler(peer, REQUEST, kind, data)
                if isinstance(reply, concurrent.futures.Future):
                    reply = reply.result()
            except Exception as e:  # noqa: BLE001 - a handler failure answers this request only
                log.exception("%s: handling %r from %r failed", self.name, kind, peer)
                _send(sock, FAIL, req, "fail", [f"{type(e).__name__}: {e}".encode()])
                continue
            del data  # the handler kept what it needed (views of it, for a stored array)
            sock.settimeout(self.stall)
            _send(sock, ACK if reply is None else REPLY, req, "reply", [] if reply is None else [reply])

    def close(self) -> None:
        """Stop accepting and close every bulk connection."""
        self.closed = True
        self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            _close(c)


# ---------------------------------------------------------------- client side
class BulkClient:
    """One bulk connection from party ``me`` to party ``name`` (see :meth:`open`); used by one thread at a time."""

    def __init__(self, sock: socket.socket, boot: str) -> None:
        self.sock, self.boot = sock, boot
        self.bytes_written = self.bytes_read = 0

    @classmethod
    def open(cls, host: str, port: int, ssl_context: ssl.SSLContext | None, *, me: str, name: str,
             timeout: float) -> BulkClient:
        """Connect, check the server's certificate names ``name``, and exchange ``HELLO``\\ s.

        Raises:
            OSError: no connection, TLS failed, or it closed or stalled before answering: the caller may fall back
                to the WebSocket, which is as secure (its server's identity is checked there).
            Lost: a certificate naming another party, a refusal, a handshake that is not one.
            ProtocolError, ValueError: a malformed answer.
        """
        raw = socket.create_connection((host, port), timeout=min(timeout, 5.0))  # a filtered port: fall back soon
        sock = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(raw)
                seen = certs.peer_name(sock)  # type: ignore[arg-type]
                if seen != name:
                    raise Lost(f"its bulk port's certificate names {seen!r}, not {name!r}")
            _send(sock, HELLO, 0, "hello", [json.dumps({"party": me, "to": name, "version": 1}).encode()])
            try:
                typ, _, _, data = _recv_message(sock, _HELLO_MAX, timeout, timeout)
            except Lost as e:  # closed before answering (e.g. the server's connection limit)
                raise ConnectionError(str(e)) from None
            if typ == FAIL:
                raise Lost(f"it refused our bulk connection: {bytes(data).decode(errors='replace')}")
            info = json.loads(bytes(data)) if typ == HELLO else None
            if not isinstance(info, dict) or info.get("party") != name or not isinstance(info.get("boot"), str):
                raise Lost(f"unexpected bulk handshake {info!r}")
            return cls(sock, info["boot"])
        except BaseException:
            _close(sock)
            raise

    def call(self, req: int, kind: str, parts: Sequence[bytes | bytearray | memoryview], *, deadline: float,
             stall: float, max_message: int, alive: Callable[[], str | None]
             ) -> tuple[int, bytearray | memoryview]:
        """Send request ``req``; return the answer's ``(type, payload)``.

        Raises:
            Lost: no progress for ``stall`` seconds, a broken connection, ``alive()`` reporting the party gone
                while we wait, or no answer starting within ``deadline`` seconds of the request being written.
        """
        sock = self.sock
        sock.settimeout(stall)
        try:
            self.bytes_written += _send(sock, REQUEST, req, kind, parts)
        except TimeoutError:
            raise Lost(f"no progress sending for {stall:g} s") from None
        except OSError as e:
            raise Lost(f"connection lost while sending ({type(e).__name__}: {e})") from None
        end = time.monotonic() + deadline
        head = bytearray(BULK.size)
        while True:  # wait for the answer to start, watching the party's liveness (its WebSocket pings)
            left = end - time.monotonic()
            if left <= 0:
                raise Lost(f"no answer within the {deadline:g} s deadline")
            sock.settimeout(min(0.25, left))
            try:
                got = sock.recv_into(head)
            except TimeoutError:
                why = alive()
                if why is not None:
                    raise Lost(why) from None
                continue
            except OSError as e:
                raise Lost(f"connection lost ({type(e).__name__}: {e})") from None
            if not got:
                raise Lost("connection closed")
            break
        try:
            if got < len(head):
                _recv_exact(sock, memoryview(head)[got:], stall, stall)
            typ, _, length, klen = parse_bulk_header(head, max_message)
            _recv_exact(sock, memoryview(bytearray(klen)), stall, stall)
            data = buffer(length)
            _recv_exact(sock, memoryview(data), stall, stall)
        except TimeoutError:
            raise Lost(f"the answer stalled for {stall:g} s") from None
        except OSError as e:
            raise Lost(f"connection lost while receiving ({type(e).__name__}: {e})") from None
        except ProtocolError as e:
            raise Lost(f"malformed answer ({e})") from None
        self.bytes_read += BULK.size + klen + length
        if typ not in (REPLY, ACK, FAIL):
            raise Lost(f"unexpected frame type {typ} from a server")
        return typ, data

    def close(self) -> None:
        _close(self.sock)
