"""Several protocol messages to one worker carried as one transport message (a ``batch``), and their replies.

Messages a party sends without waiting (:meth:`~refimpl.workers.VirtualWorker.post`, the pushes of a round,
``delete``) go into the :class:`Outbox` of their connection; the network thread sends whatever has gathered there
when it next runs: one message as itself, several as one ``batch`` (one WebSocket message, one TLS write, one
thread hop at the worker instead of one per message). The worker handles the messages in order, each exactly as if
it had come alone, and answers with one reply per message.

**Accounting.** The ledgers count the protocol messages, not their envelope: each message of a batch is recorded
with its own kind and wire size (and each reply likewise), so a computation's ledger is the same whether its
messages travelled alone, in batches, or in process. The envelope (per message: a 4-byte length, a 1-byte kind
length and the kind; per reply: a 4-byte length) is framing, like the transport's chunk headers.

Format (little-endian): a batch is ``(u32 length | u8 kind length | kind | message)*``; its reply is ``(u32 length |
reply)*`` with length ``0xFFFFFFFF`` for a message answered by an acknowledgement only.

Example:
    >>> raw = b"".join(encode([("command", b"abc"), ("delete", b"de")]))
    >>> [(k, bytes(m)) for k, m in decode(raw)]
    [('command', b'abc'), ('delete', b'de')]
    >>> [None if r is None else bytes(r) for r in decode_replies(b"".join(encode_replies([b"ok", None])), 2)]
    [b'ok', None]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import threading
from collections.abc import Sequence
from typing import Any

from refimpl.errors import ProtocolError
from refimpl.net import transport

__all__ = ["KIND", "Outbox", "decode", "decode_replies", "encode", "encode_replies"]

KIND = "batch"
MAX_MESSAGES = 1 << 16
_LEN = struct.Struct("<I")
_NONE = 0xFFFFFFFF
Buffer = bytes | bytearray | memoryview


def encode(messages: Sequence[tuple[str, Buffer]]) -> list[Buffer]:
    """The buffers of a batch of ``(kind, message)`` (the messages themselves are not copied)."""
    out: list[Buffer] = []
    for kind, raw in messages:
        k = kind.encode("ascii")
        out += [_LEN.pack(len(raw)) + bytes([len(k)]) + k, raw]
    return out


def decode(raw: Buffer) -> list[tuple[str, memoryview]]:
    """The ``(kind, message)`` of a batch (views of ``raw``).

    Raises:
        ProtocolError: the batch is truncated or malformed.
    """
    view, at = memoryview(raw).cast("B"), 0
    out: list[tuple[str, memoryview]] = []
    while at < len(view):
        if at + 5 > len(view) or len(out) >= MAX_MESSAGES:
            raise ProtocolError(f"malformed batch: truncated header or too many messages at byte {at}")
        (n,), klen = _LEN.unpack_from(view, at), view[at + 4]
        start = at + 5 + klen
        if not 0 < klen <= 32 or start + n > len(view):
            raise ProtocolError(f"malformed batch: a message of {n} bytes (kind of {klen}) runs past byte {len(view)}")
        try:
            kind = bytes(view[at + 5 : start]).decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("malformed batch: a kind is not ASCII") from None
        out.append((kind, view[start : start + n]))
        at = start + n
    return out


def encode_replies(replies: Sequence[Buffer | None]) -> list[Buffer]:
    """The buffers of a batch's reply (None: acknowledged only)."""
    out: list[Buffer] = []
    for r in replies:
        out += [_LEN.pack(_NONE)] if r is None else [_LEN.pack(len(r)), r]
    return out


def decode_replies(raw: Buffer, count: int) -> list[memoryview | None]:
    """The ``count`` replies in a batch's reply.

    Raises:
        ProtocolError: not exactly ``count`` well-formed replies.
    """
    view, at = memoryview(raw).cast("B"), 0
    out: list[memoryview | None] = []
    while at < len(view) and len(out) < count:
        if at + 4 > len(view):
            raise ProtocolError("malformed batch reply: truncated length")
        (n,) = _LEN.unpack_from(view, at)
        at += 4
        if n == _NONE:
            out.append(None)
            continue
        if at + n > len(view):
            raise ProtocolError(f"malformed batch reply: a reply of {n} bytes runs past byte {len(view)}")
        out.append(view[at : at + n])
        at += n
    if len(out) != count or at != len(view):
        raise ProtocolError(f"a batch of {count} messages was answered with {len(out)} replies")
    return out


class Outbox:
    """Messages for one :class:`~refimpl.net.transport.Link` sent without waiting, in order (see the module
    docstring). :meth:`put` is safe from any thread, finalizers included.

    A sender task on the network thread takes what has gathered: small messages leave together as one request (a
    ``delete`` too is answered, by an acknowledgement: a later request on the bulk channel is then never handled
    before it); a large one (``big``) waits until every earlier request is
    answered and is then written by a helper thread on the transport's bulk channel (less CPU per byte), later
    messages waiting behind it. :meth:`wait_sent` returns once everything put so far has left (a synchronous
    request, which may take the bulk channel itself, is then ordered after it).
    """

    def __init__(self, link: transport.Link) -> None:
        self.link = link
        self._items: list[tuple[str, Any, concurrent.futures.Future[Any] | None, bool]] = []
        self._lock = threading.RLock()  # re-entrant: a finalizer may run while it is held and post a delete
        self.dirty = False  # something was put since the last wait_sent()
        self._running = False  # a sender task is scheduled or running
        self._idle = threading.Event()
        self._idle.set()
        self._sent: set[concurrent.futures.Future[Any]] = set()  # replies of requests sent, not yet in
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    def put(self, kind: str, raw: Any, *, reply: bool = True, big: bool = False
            ) -> concurrent.futures.Future[Any] | None:
        """Queue a message (bytes; with ``big``, a list of buffers that must stay unchanged until it is sent); the
        future holds its reply bytes (None: acknowledged only), or None with ``reply=False`` (a ``delete``)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()  # a delete's too: order (see _send_big)
        with self._lock:
            self._items.append((kind, raw, fut, big))
            self.dirty = True
            start = not self._running
            if start:
                self._running = True
                self._idle.clear()
        if start:
            transport.event_loop().call_soon_threadsafe(self._start)
        return fut if reply or big else None

    def wait_sent(self) -> None:
        """Return once every message put so far has left (a large one: answered)."""
        if self.dirty:
            self.dirty = False
            self._idle.wait()

    def _start(self) -> None:
        asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """The sender task: until nothing is left, send what has gathered, in order."""
        while True:
            with self._lock:
                items, self._items = self._items, []
                if not items:
                    self._running = False
                    self._idle.set()
                    return
            small: list[tuple[str, Any, concurrent.futures.Future[Any] | None, bool]] = []
            for item in items:
                if item[3]:
                    self._send(small)
                    small = []
                    await self._send_big(item)
                else:
                    small.append(item)
            self._send(small)
            await asyncio.sleep(0)  # the requests just created take their first step (their ids, in order)

    def _send(self, items: list[tuple[str, Any, concurrent.futures.Future[Any] | None, bool]]) -> None:
        if not items:
            return
        if len(items) == 1:  # a request even for a delete alone: a bulk request made after it must not overtake it
            kind, raw, _, _ = items[0]
            coro = self.link.request(kind, raw)
        else:
            coro = self.link.request(KIND, encode([(k, r) for k, r, _, _ in items]))  # type: ignore[arg-type]
        for _, _, fut, _ in items:
            if fut is not None:
                self._sent.add(fut)
                fut.add_done_callback(self._sent.discard)
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(lambda t: _settle(t, items))

    async def _send_big(self, item: tuple[str, Any, concurrent.futures.Future[Any] | None, bool]) -> None:
        kind, parts, fut, _ = item
        assert fut is not None
        earlier = [asyncio.wrap_future(f) for f in list(self._sent)]
        if earlier:  # the bulk channel is taken only when nothing is in flight on the WebSocket (order holds)
            await asyncio.wait(earlier)
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="refimpl-outbox")
        loop = asyncio.get_running_loop()
        try:
            fut.set_result(await loop.run_in_executor(self._thread, self.link.call, kind, parts))
        except BaseException as e:  # noqa: BLE001 - the message's failure, reported to whoever reads its reply
            fut.set_exception(e)


def _settle(task: asyncio.Task[Any],
            items: list[tuple[str, Any, concurrent.futures.Future[Any] | None, bool]]) -> None:
    futures = [fut for _, _, fut, _ in items]
    if task.cancelled():
        err: BaseException | None = ProtocolError("the request was cancelled")
    else:
        err = task.exception()
    if err is None and len(items) > 1 and any(f is not None for f in futures):
        try:
            replies: list[Any] = decode_replies(task.result(), len(items))
        except ProtocolError as e:
            err = e
    elif err is None:
        replies = [task.result()]
    for i, fut in enumerate(futures):
        if fut is None:
            continue
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(replies[i])  # a view of the batch's reply: decoding may keep views of it
