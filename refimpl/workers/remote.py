"""Workers in other processes: :func:`connect` returns a :class:`RemoteWorker` with the VirtualWorker interface.

A :class:`RemoteWorker` is a proxy: every message addressed to it is encoded by :mod:`refimpl.net.wire` exactly as
in process, counted in the session's ledger, and carried over an authenticated WebSocket connection
(:mod:`refimpl.net.transport`) to the worker's process (``python -m refimpl worker``), which decodes it and runs it
on its own object store. Pointers, chains, ``move`` (straight from worker to worker), ``remote_get``, ``copy``,
arithmetic, :class:`~refimpl.workers.SharedTensor` sharing, Beaver products and truncation run unchanged; a pointer's
last reference going away sends a ``delete`` (without waiting) that frees the remote object.

How messages travel: a request whose answer the caller needs now (``send``, ``get``, ``move``, ...) is written and
read by the calling thread on the transport's blocking bulk channel (no hop through the network thread); messages
sent without waiting (a shared-tensor operation's instructions, :meth:`~refimpl.workers.VirtualWorker.post`, the
pushes of a round inside :meth:`Session.pipelined`, deletes) go through the connection's
:class:`~refimpl.workers.batch.Outbox`, in order, small ones together as one ``batch``; their failures are raised
by the session's next synchronous request (:meth:`Session.settle`).

Where ``connect`` lives: the issue sketched ``refimpl.net.connect``, but a RemoteWorker hands out
:class:`~refimpl.workers.Pointer` objects, and ``net`` sits below ``workers`` in the layer contract; ``net`` keeps
the byte-level transport, and ``connect`` is :func:`refimpl.workers.connect`.

A :class:`Session` is the coordinator's ledger: the workers it is connected to by name, the object ids it hands
out (starting at a random offset so that two coordinators of one deployment do not collide), and the count of
every message written to or read from each socket, per ``(sender, receiver, kind)`` (:meth:`Session.links`).
Worker processes keep the same record of their own sockets; :func:`deployment_links` merges them.

Example (two worker processes on this machine; see the README's "Deploying parties" for the commands)::

    jake = connect("wss://127.0.0.1:8777", name="jake", tls_dir="certs")
    x = send(np.array([1, 2, 3]), jake)
    (x + x).get()                      # array([2, 4, 6]), computed in jake's process
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from refimpl.errors import ProtocolError
from refimpl.net import wire
from refimpl.net.transport import Link
from refimpl.workers.batch import Outbox
from refimpl.workers.worker import Ledger, VirtualWorker

__all__ = ["RemoteWorker", "Session", "connect", "default_session", "deployment_links"]


class Session(Ledger):
    """A thread-safe ledger of one party's connections: workers by name, object ids, per-socket message counts.

    Args:
        first_id: the first object id handed out (default: a random offset below 2**44).
        keep: recent message records kept in ``log``.
    """

    def __init__(self, *, first_id: int | None = None, keep: int | None = 10_000) -> None:
        super().__init__(keep=keep)  # type: ignore[arg-type]  # None keeps every record
        self._lock = threading.RLock()
        self._ids = itertools.count(1 + secrets.randbelow(1 << 44) if first_id is None else int(first_id))
        self._links: Counter[tuple[str, str, str]] = Counter()
        self._link_bytes: Counter[tuple[str, str, str]] = Counter()
        self._local = threading.local()
        self._outstanding: list[Reply] = []

    def record(self, sender: str, receiver: str, kind: str, nbytes: int, *, round: int | None = None) -> None:
        with self._lock:
            super().record(sender, receiver, kind, nbytes, round=round)
            self._links[(sender, receiver, kind)] += 1
            self._link_bytes[(sender, receiver, kind)] += int(nbytes)

    def new_id(self) -> int:
        with self._lock:
            return next(self._ids)

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        """One communication round; pushes (share, dealer, open, store) made in it by this thread to remote
        workers travel concurrently, and the round ends when every one is acknowledged (the first failure is
        raised then, unless the block is already raising). Inside :meth:`pipelined` the round does not wait: its
        pushes are settled at the next synchronous request."""
        local = self._local
        if getattr(local, "pending", None) is not None:  # nested: the outer round waits
            with super().round():
                yield
            return
        local.pending = []
        try:
            with super().round():
                yield
        finally:
            pending, local.pending = local.pending, None
            into = getattr(local, "pipelined", False)
            if isinstance(into, list):
                into.extend(pending)
            elif into:
                with self._lock:
                    self._outstanding.extend(pending)
            else:
                errors = [e for e in (failure(r) for r in pending) if e is not None]
                if errors and sys.exc_info()[0] is None:
                    raise errors[0]

    @contextlib.contextmanager
    def pipelined(self, into: list[Reply] | None = None) -> Iterator[None]:
        """Messages sent by this thread in the block do not wait for their acknowledgements (a shared-tensor
        operation's instructions: the workers wait for the objects their peers push, ``await`` ids); any failure
        among them is raised by the session's next synchronous request (:meth:`settle`), or, with ``into``, the
        replies of its rounds' pushes are appended there for the caller to settle."""
        local = self._local
        outer = getattr(local, "pipelined", False)
        local.pipelined = True if into is None else into
        try:
            yield
        finally:
            local.pipelined = outer

    def pending_pushes(self) -> list[Reply] | None:
        """This thread's unacknowledged pushes in the current round (None outside a round)."""
        return getattr(self._local, "pending", None)  # type: ignore[no-any-return]

    def outstanding(self, reply: Reply) -> None:
        """Keep ``reply`` (a message sent without waiting) until the next :meth:`settle`."""
        with self._lock:
            self._outstanding.append(reply)

    def settle(self) -> None:
        """Wait for every message sent without waiting; raise the first failure among them (the others of the
        failed computation are dropped: their errors follow from it)."""
        with self._lock:
            if not self._outstanding:
                return
            replies, self._outstanding = self._outstanding, []
        for r in replies:
            err = failure(r)
            if err is not None:
                raise err

    def links(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """``{(sender, receiver, kind): (messages, bytes)}`` of every message this party wrote or read."""
        with self._lock:
            return {k: (n, self._link_bytes[k]) for k, n in self._links.items()}


PUSH_KINDS = frozenset({"store", "share", "dealer", "open"})
_BIG = 1 << 16
"""A message sent without waiting of at least this many bytes goes at once, on the bulk channel, after the
connection's earlier messages are answered (:class:`~refimpl.workers.batch.Outbox`): its bytes cost less CPU there
than through the WebSocket (the 784x10 inference batch: ~22-23 vs ~26 ms CPU over the 4 processes at 1 MiB)."""
"""Message kinds that only store objects at the receiver (no reply but an acknowledgement)."""


class Reply:
    """The reply to a message sent without waiting (:meth:`VirtualWorker.post`, a push in a round): ``result()``
    waits for it and returns its decoded value, raising the error it carries (or the link's failure)."""

    __slots__ = ("_future", "_sender", "_state")

    def __init__(self, future: concurrent.futures.Future[Any], sender: VirtualWorker) -> None:
        self._future, self._sender = future, sender
        self._state: tuple[bool, Any] | None = None

    def done(self) -> bool:
        """Whether the reply is in (``result()`` would not wait)."""
        return self._state is not None or self._future.done()

    def result(self) -> Any:
        if self._state is None:
            try:
                raw = self._future.result()
                self._state = (True, None if raw is None else self._sender.decode_reply(raw))
            except BaseException as e:  # noqa: BLE001 - kept, raised to every reader
                self._state = (False, e)
        ok, value = self._state
        if not ok:
            raise value
        return value


def _size(parts: list[Any]) -> int:
    return sum(memoryview(p).nbytes for p in parts)


def failure(reply: Reply) -> BaseException | None:
    """Wait for one reply; its failure as an exception (None when it succeeded)."""
    try:
        reply.result()
    except BaseException as e:  # noqa: BLE001 - WorkerUnavailable, ProtocolError, a remote error: reported
        return e
    return None


_default: Session | None = None


def default_session() -> Session:
    """The session :func:`connect` uses when given none (one per process)."""
    global _default
    if _default is None:
        _default = Session()
    return _default


class _RemoteObjects(Mapping[int, Any]):
    """A live, read-only view of a remote worker's object store (each access asks the worker)."""

    def __init__(self, worker: RemoteWorker) -> None:
        self._worker = worker

    def _ids(self) -> list[int]:
        return list(self._worker.control("objects"))

    def __len__(self) -> int:
        return int(self._worker.control("count"))

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids())

    def __contains__(self, key: object) -> bool:
        return key in self._ids()

    def __getitem__(self, key: int) -> Any:
        """A copy of the object (a pointer shows as its description string; ownership stays put)."""
        return self._worker.control("peek", id=key)


class RemoteWorker(VirtualWorker):
    """A worker in another process, reached over a :class:`~refimpl.net.transport.Link`; made by :func:`connect`.

    It has the VirtualWorker interface: pass it to :func:`~refimpl.workers.send`, ``Pointer.move``,
    ``Pointer.share``, :func:`~refimpl.workers.share_among` and as a crypto provider.
    """

    def __init__(self, name: str, ledger: Session, link: Link) -> None:
        super().__init__(name, ledger)
        self.link = link
        self.outbox = Outbox(link)  # messages sent without waiting, gathered into batches
        # a request answered before the caller goes on takes the blocking bulk channel whatever its size: the
        # calling thread writes and reads the socket itself (no hop through the network thread: a small send+get
        # took ~2.3x less time and ~2.9x less CPU here); the WebSocket when the channel is busy or absent
        link.bulk_min = 0

    def __repr__(self) -> str:
        return f"RemoteWorker({self.name!r} at {self.link.url})"

    @property
    def objects(self) -> Mapping[int, Any]:  # type: ignore[override]
        """A live read-only view of the remote object store (``len`` and ids ask the worker)."""
        return _RemoteObjects(self)

    def clear_objects(self) -> RemoteWorker:
        """Drop every object stored at the remote worker."""
        self.control("clear")
        return self

    def receive_parts(self, parts: list[bytes | memoryview], sender: VirtualWorker, kind: str) -> bytes | None:
        """Carry a message given as buffers (views of the arrays sent); a request answered before this returns
        streams them as they are (no copy of the message), one sent without waiting is joined first."""
        pending = self.ledger.pending_pushes() if kind in PUSH_KINDS else None  # type: ignore[attr-defined]
        if pending is not None and _size(parts) >= _BIG:  # a large push: the bulk channel, after the rest
            pending.append(self._start(parts, sender, kind, big=True))
            return None
        if kind == "delete" or pending is not None:
            return self.receive(b"".join(parts), sender, kind)
        return self._call(kind, parts)  # type: ignore[return-value]  # decoding may keep views of the buffer

    def receive(self, raw: bytes | bytearray, sender: VirtualWorker, kind: str) -> bytes | None:
        """Carry an encoded message to the worker; return its encoded reply (``delete`` is sent without waiting)."""
        if kind == "delete":
            self.outbox.put(kind, bytes(raw), reply=False)
            return None
        pending = self.ledger.pending_pushes() if kind in PUSH_KINDS else None  # type: ignore[attr-defined]
        if pending is not None:  # inside a round: concurrently with the round's other pushes
            pending.append(self._start(bytes(raw), sender, kind))
            return None
        reply = self._call(kind, raw)
        return None if reply is None else bytes(reply)

    def _call(self, kind: str, payload: Any) -> bytearray | None:
        """A request answered before this returns; then the messages sent earlier without waiting are settled
        (the first failure among them is raised: it explains this request's failure, if any)."""
        self.outbox.wait_sent()  # the request may take the bulk channel: after what was sent without waiting
        try:
            reply = self.link.call(kind, payload)
        except BaseException:
            self.ledger.settle()  # type: ignore[attr-defined]
            raise
        self.ledger.settle()  # type: ignore[attr-defined]
        return reply

    def _start(self, raw: Any, sender: VirtualWorker, kind: str, *, big: bool = False) -> Reply:
        fut = self.outbox.put(kind, raw, big=big)
        assert fut is not None
        ledger, name = self.ledger, self.name

        def done(f: concurrent.futures.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None and f.result() is not None:
                ledger.record(name, sender.name, "reply", len(f.result()))

        fut.add_done_callback(done)
        return Reply(fut, sender)

    def start_parts(self, parts: list[bytes | memoryview], sender: VirtualWorker, kind: str) -> Reply:
        """Send a message without waiting (:meth:`VirtualWorker.post`); its reply is settled later. The message is
        copied first (the caller may reuse its arrays at once)."""
        reply = self._start(b"".join(parts), sender, kind, big=_size(parts) >= _BIG)
        self.ledger.outstanding(reply)  # type: ignore[attr-defined]
        return reply

    def control(self, op: str, **fields: Any) -> Any:
        """A session-management request (not a protocol message: not counted in the ledger)."""
        raw = self._call("control", wire.encode({"op": op, **fields}))
        if raw is None:
            return None
        out = wire.decode(raw)  # type: ignore[arg-type]
        if "error" in out:
            raise ProtocolError(out["error"])
        return out.get("value")

    def close(self) -> None:
        """Close the connection (the worker keeps its objects)."""
        self.link.close()
        if self.ledger.workers.get(self.name) is self:
            del self.ledger.workers[self.name]


def connect(url: str, *, name: str, tls_dir: str | os.PathLike[str] | None = None, me: str = "me",
            session: Session | None = None, insecure_plaintext: bool = False, deadline: float = 60.0,
            ping_interval: float = 5.0, ping_timeout: float = 20.0) -> RemoteWorker:
    """Connect to the worker ``name`` listening at ``url``; return its :class:`RemoteWorker`.

    Every worker connected in one ``session`` (default: this process's) can be used together: shares, moves and
    openings then go between the workers directly, each of which learns the others' addresses from the session.

    Args:
        url: ``wss://host:port`` (``ws://`` with ``insecure_plaintext``).
        name: the worker's party name (its certificate must name it).
        tls_dir: the deployment's certificates (``python -m refimpl certs``); this process presents ``me``'s.
        me: this party's name.
        insecure_plaintext: no TLS, loopback only, unauthenticated: for experiments.
        deadline: seconds a worker has to start answering a request before :class:`~refimpl.errors.WorkerUnavailable`.
        ping_interval, ping_timeout: liveness of the connection (seconds).

    Raises:
        WorkerUnavailable: the worker cannot be reached or is not who it should be.
        ConfigurationError: a bad address, name or certificate directory.
        ValueError: a worker of that name is already connected in the session.
    """
    session = default_session() if session is None else session
    link = Link(url, name, me, tls_dir=tls_dir, insecure_plaintext=insecure_plaintext, deadline=deadline,
                ping_interval=ping_interval, ping_timeout=ping_timeout)
    if session.workers.get(name) is not None:
        raise ValueError(f"a worker named {name!r} is already connected in this session")
    link.call("control", wire.encode({"op": "ping"}))
    if session._me is None:
        session._me = VirtualWorker(me, session)
    worker = RemoteWorker(name, session, link)
    book = {w.name: w.link.url for w in list(session.workers.values()) if isinstance(w, RemoteWorker)}
    for w in list(session.workers.values()):
        if isinstance(w, RemoteWorker):
            w.control("peers", peers=book)
    return worker


def deployment_links(*parties: Session | RemoteWorker, me: str | None = None) -> dict[tuple[str, str, str],
                                                                                       tuple[int, int]]:
    """Merge per-socket counts: each party contributes the messages it *wrote* ``{(sender, receiver, kind):
    (messages, bytes)}``. Pass the coordinator's session and its RemoteWorkers (which report their own)."""
    total: dict[tuple[str, str, str], tuple[int, int]] = {}
    for p in parties:
        if isinstance(p, RemoteWorker):
            rows = {tuple(k): tuple(v) for k, v in p.control("links")}
            owner = p.name
        else:
            rows = p.links()  # type: ignore[assignment]
            owner = me if me is not None else (p._me.name if p._me is not None else "me")
        for key, (n, b) in rows.items():
            if key[0] == owner:
                m0, b0 = total.get(key, (0, 0))  # type: ignore[arg-type]
                total[key] = (m0 + n, b0 + b)  # type: ignore[index]
    return total  # type: ignore[return-value]


