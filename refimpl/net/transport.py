"""Authenticated WebSocket connections between parties: mutual TLS, chunked messages, deadlines, liveness.

This module is the transport's front: it names what callers use, made in small modules --
:mod:`~refimpl.net.eventloop` (the process's network loop: :func:`event_loop`, :func:`run_sync`),
:mod:`~refimpl.net.link` (the client side: :class:`Link`), :mod:`~refimpl.net.server` (the server side:
:class:`Server`, :func:`serve`), :mod:`~refimpl.net.handshake` (who is who: ``HELLO``, :func:`check_loopback`),
:mod:`~refimpl.net.liveness` (keepalive options, the send watchdog), :mod:`~refimpl.net.framing` (chunks) and
:mod:`~refimpl.net.bulk` (the bulk channel).

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

from refimpl.net.eventloop import event_loop, on_network_thread, run_sync
from refimpl.net.framing import CHUNK, FENCE, REQUEST
from refimpl.net.handshake import check_loopback
from refimpl.net.link import Link, Payload
from refimpl.net.server import DEFER, Handler, Server, serve

__all__ = ["CHUNK", "DEFER", "FENCE", "REQUEST", "Handler", "Link", "Payload", "Server", "check_loopback",
           "event_loop", "on_network_thread", "run_sync", "serve"]
