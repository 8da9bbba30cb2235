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
    """Messages for one :class:`~refimpl.net.transport.Link` sent without waiting, gathered until the network
    thread next runs (see the module docstring). :meth:`put` is safe from any thread, finalizers included."""

    def __init__(self, link: transport.Link) -> None:
        self.link = link
        self._items: list[tuple[str, Buffer, concurrent.futures.Future[Any] | None]] = []
        self._lock = threading.RLock()  # re-entrant: a finalizer may run while it is held and post a delete
        self.dirty = False  # something was put since the last drain()
        self._inflight: set[concurrent.futures.Future[Any]] = set()  # replies not yet in

    def put(self, kind: str, raw: Buffer, *, reply: bool = True) -> concurrent.futures.Future[Any] | None:
        """Queue a message; the future holds its reply bytes (None: acknowledged only), or None with
        ``reply=False`` (a ``delete``: nobody waits)."""
        fut: concurrent.futures.Future[Any] | None = concurrent.futures.Future() if reply else None
        with self._lock:
            self._items.append((kind, raw, fut))
            first = len(self._items) == 1
            self.dirty = True
            if fut is not None:
                self._inflight.add(fut)
        if fut is not None:
            fut.add_done_callback(self._inflight.discard)
        if first:
            transport.event_loop().call_soon_threadsafe(self._flush)
        return fut

    def drain(self) -> None:
        """Return once everything put so far is on its way (its request started on the network thread): a request
        that does not go through the network thread (the transport's bulk channel) is then ordered after it."""
        if self.dirty:
            self.dirty = False
            transport.run_sync(_started())

    def wait_idle(self) -> None:
        """Return once every message put so far that expects a reply has its reply (or failed)."""
        with self._lock:
            waiting = list(self._inflight)
        if waiting:
            concurrent.futures.wait(waiting)

    def _flush(self) -> None:
        """On the network thread: send what has gathered (in order, before any request started after it)."""
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return
        wanted = any(fut is not None for _, _, fut in items)
        if len(items) == 1:
            kind, raw, _ = items[0]
            coro = self.link.request(kind, raw, notify=not wanted)
        else:
            coro = self.link.request(KIND, encode([(k, r) for k, r, _ in items]), notify=not wanted)  # type: ignore[arg-type]
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(lambda t: _settle(t, items))


async def _started() -> None:
    """Nothing: run after the flushes and request starts queued before it on the network loop."""


def _settle(task: asyncio.Task[Any], items: list[tuple[str, Buffer, concurrent.futures.Future[Any] | None]]) -> None:
    futures = [fut for _, _, fut in items]
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
