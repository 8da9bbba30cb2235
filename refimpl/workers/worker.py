"""Virtual workers holding objects behind pointers, with every message serialised and counted in a Ledger.

This is the tutorial's pointer world, in one process but with real messages: every request, reply, share and
protocol opening between two workers is encoded to bytes by :mod:`refimpl.net.wire` (a tagged JSON header plus raw
array bytes and a CRC-32; no pickle), recorded in the :class:`Ledger` and decoded by the receiver.

* ``VirtualWorker(name, ledger)`` has an object store (``worker.objects``, read only; ``worker.clear_objects()``).
* ``send(obj, worker)`` stores ``obj`` at ``worker`` and returns a :class:`Pointer` owned by the ledger's local
  worker ``"me"``. ``ptr.get()`` fetches the object and removes it; ``ptr.move(other)`` moves it between workers;
  ``ptr.send(other)`` sends the *pointer* to ``other``, making a chain (``me -> other -> worker``);
  ``ptr.remote_get()`` pulls the end of a chain one hop closer; ``ptr.copy()`` makes a second object remotely.
* Ownership: each remote object has exactly one pointer. When that pointer is garbage-collected a ``delete``
  message frees the object (and, down a chain, the objects behind it). Sending, getting or moving a pointer makes
  it stale; using a stale pointer raises :class:`~refimpl.errors.PointerError`.
* Arithmetic on pointers at the same worker (``+ - * @``) runs there and returns a pointer to the result.
* ``ptr.share(*workers, crypto_provider=...)`` secret-shares the pointed-to object among workers
  (:class:`refimpl.workers.shared_tensor.SharedTensor`).

A :class:`Ledger` is one simulated network: its workers by name, a counter of object ids, and the record of every
message (bytes sent and received per worker, messages and rounds per kind). Messages sent inside
``with ledger.round():`` are concurrent (one round); any other message is a round by itself.

Example:
    >>> import numpy as np
    >>> ledger = Ledger()
    >>> bob, alice = VirtualWorker("bob", ledger), VirtualWorker("alice", ledger)
    >>> x = send(np.array([1, 2, 3]), bob)
    >>> x
    Pointer(me -> bob:1)
    >>> y = (x + x).move(alice)
    >>> y.get(), len(alice.objects)
    (array([2, 4, 6]), 0)
    >>> chain = send(np.array([5]), bob).send(alice)        # me -> alice -> bob
    >>> chain.get().get()
    array([5])
    >>> del x; len(bob.objects)                              # the last pointer is gone: bob frees the object
    0
    >>> ledger.messages > 0 and ledger.bytes_sent["me"] > 0
    True
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from refimpl import errors
from refimpl._checks import check_key
from refimpl.errors import PointerError, RefimplError
from refimpl.net import accounting, wire
from refimpl.net.accounting import Message
from refimpl.prg import fresh_key

__all__ = ["Ledger", "Message", "Pointer", "VirtualWorker", "send"]


class Ledger(accounting.Ledger):
    """The record of one simulated network: the accounting :class:`~refimpl.net.accounting.Ledger` of every message,
    plus the workers by name and the object ids they share.

    Args:
        keep: how many recent message records to keep in ``log`` (totals are always exact).
    """

    def __init__(self, *, keep: int = 10_000) -> None:
        super().__init__(keep=keep)
        self.workers: weakref.WeakValueDictionary[str, VirtualWorker] = weakref.WeakValueDictionary()
        self._ids = itertools.count(1)
        self._me: VirtualWorker | None = None

    @property
    def me(self) -> VirtualWorker:
        """The local worker (``"me"``) that owns the pointers made by :func:`send`."""
        if self._me is None:
            self._me = VirtualWorker("me", self)
        return self._me

    def new_id(self) -> int:
        """A fresh object id, unique in this ledger."""
        return next(self._ids)

    def __repr__(self) -> str:
        return f"Ledger(workers={sorted(self.workers)}, messages={self.messages}, bytes={self.bytes}, " \
               f"rounds={self.rounds})"


_REMOTE_ERRORS = {name: getattr(errors, name) for name in errors.__all__}
_REMOTE_ERRORS.update(TypeError=TypeError, ValueError=ValueError, IndexError=IndexError)


class VirtualWorker:
    """An in-process party with an object store; it talks to other workers only through serialised messages.

    Args:
        name: unique within its ledger.
        ledger: the network it belongs to (None: a new :class:`Ledger` of its own; workers that talk to each
            other must share one).
        key: the worker's 16- or 32-byte secret key, the root of the randomness it uses (shares it makes, the
            triples it deals as a crypto provider); None draws one from the OS.

    Raises:
        TypeError: ``name`` is not a non-empty string.
        ValueError: a live worker of that name already exists in ``ledger``.
    """

    def __init__(self, name: str, ledger: Ledger | None = None, *, key: bytes | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"worker name must be a non-empty string, got {name!r}")
        self.ledger = Ledger() if ledger is None else ledger
        if name in self.ledger.workers:
            raise ValueError(f"a worker named {name!r} already exists in this ledger")
        self.name = name
        self.key = fresh_key(16) if key is None else check_key(key, what="worker key")
        self._objects: dict[int, Any] = {}
        self._dealers: dict[tuple[int, int], Any] = {}
        self._counter = itertools.count()
        self.ledger.workers[name] = self

    @property
    def objects(self) -> Mapping[int, Any]:
        """A read-only view of the object store (id -> object)."""
        return MappingProxyType(self._objects)

    def clear_objects(self) -> VirtualWorker:
        """Drop every stored object (pointers to them become dangling; stored pointers free their targets)."""
        self._objects.clear()
        return self

    def __repr__(self) -> str:
        return f"VirtualWorker({self.name!r}, objects={len(self._objects)})"

    # ---------------------------------------------------------------- messaging
    def _peer(self, name: str) -> VirtualWorker:
        worker = self.ledger.workers.get(name)
        if worker is None:
            raise PointerError(f"no worker named {name!r} in {self.name!r}'s ledger")
        return worker

    def _adopt(self, location: str, obj_id: int) -> Pointer:
        return Pointer(self._peer(location), obj_id, self)

    def pointer(self, location: VirtualWorker, obj_id: int) -> Pointer:
        """A pointer owned by this worker to object ``obj_id`` held by ``location``."""
        return Pointer(location, obj_id, self)

    def deliver(self, receiver: VirtualWorker, kind: str, message: dict[str, Any]) -> Any:
        """Serialise ``message``, record it, and have ``receiver`` decode and handle it; return its decoded reply.

        Raises:
            ValueError: ``receiver`` is on another ledger.
            PointerError, ...: the receiver reported an error (re-raised here with its type and message).
        """
        if receiver.ledger is not self.ledger:
            raise ValueError(f"workers {self.name!r} and {receiver.name!r} are on different ledgers; create them "
                             "with the same Ledger")
        parts = wire.encode_parts(message, pointer_ref=_transfer_ref)  # views of the arrays: no copy yet
        self.ledger.record(self.name, receiver.name, kind, sum(len(p) for p in parts))
        raw_reply = receiver.receive_parts(parts, self, kind)
        if raw_reply is None:
            return None
        self.ledger.record(receiver.name, self.name, "reply", len(raw_reply))
        return self.decode_reply(raw_reply)

    def decode_reply(self, raw_reply: bytes) -> Any:
        """The value of an encoded reply to this worker; an error reply is raised with its type."""
        out = wire.decode(raw_reply, pointer=self._adopt)
        if "error" in out:
            raise _REMOTE_ERRORS.get(out.get("type"), RefimplError)(out["error"])
        return out.get("value")

    def post(self, receiver: VirtualWorker, kind: str, message: dict[str, Any]) -> Any:
        """:meth:`deliver` without waiting for the reply where the receiver is in another process: returns a
        :class:`~refimpl.workers.remote.Reply` whose ``result()`` is the decoded value (an unread reply's error is
        raised at the session's next synchronous request). In process the message is handled now, as by
        :meth:`deliver`, and its value (or error) is had at once."""
        start = getattr(receiver, "start_parts", None)
        if start is None or receiver.ledger is not self.ledger:
            return Done(self.deliver(receiver, kind, message))
        parts = wire.encode_parts(message, pointer_ref=_transfer_ref)
        self.ledger.record(self.name, receiver.name, kind, sum(len(p) for p in parts))
        return start(parts, self, kind)

    def wait_for(self, ids: list[int]) -> None:
        """Objects an instruction needs from peers (``await`` ids): in process they are already here, or missing.

        Raises:
            PointerError: one is missing.
        """
        for obj_id in ids:
            self._take(obj_id)

    def receive_parts(self, parts: list[bytes | memoryview], sender: VirtualWorker, kind: str) -> bytes | None:
        """:meth:`receive` of the message whose bytes are ``parts`` joined (:func:`refimpl.net.wire.encode_parts`;
        a networked worker streams them without joining)."""
        return self.receive(b"".join(parts), sender, kind)

    def receive(self, raw: bytes | bytearray, sender: VirtualWorker, kind: str) -> bytes | None:
        """Handle one encoded message from ``sender``; return the encoded reply (None: no reply).

        In process this decodes, handles and encodes; a networked worker (:mod:`refimpl.workers.remote`) overrides
        it to carry the bytes over its connection instead.
        """
        reply = self._handle(wire.decode(raw, pointer=self._adopt), sender)  # type: ignore[arg-type]
        return None if reply is None else wire.encode(reply, pointer_ref=_transfer_ref)

    def _handle(self, msg: dict[str, Any], sender: VirtualWorker) -> dict[str, Any] | None:
        op = msg.get("op")
        try:
            if op == "store":
                for obj_id, obj in zip(msg["ids"], msg["objs"]):
                    self._objects[obj_id] = obj
                return None
            if op == "delete":
                for obj_id in msg["ids"]:
                    self._objects.pop(obj_id, None)
                return None
            value = self._command(op, msg)
            return {"value": value}
        except (RefimplError, TypeError, ValueError, IndexError, KeyError) as e:
            kind = type(e).__name__ if type(e).__name__ in _REMOTE_ERRORS else "ValueError"
            return {"error": f"at {self.name!r}: {e}", "type": kind}

    def _take(self, obj_id: Any, *, pop: bool = False) -> Any:
        if obj_id not in self._objects:
            raise PointerError(f"object {obj_id} does not exist at {self.name!r} (fetched, moved, deleted or "
                               "cleared)")
        return self._objects.pop(obj_id) if pop else self._objects[obj_id]

    def _command(self, op: Any, msg: dict[str, Any]) -> Any:
        if op == "get":
            return self._take(msg["id"], pop=True)
        if op == "move":
            obj = self._take(msg["id"], pop=True)
            self.deliver(self._peer(msg["to"]), "store", {"op": "store", "ids": [msg["new"]], "objs": [obj]})
            return None
        if op == "copy":
            obj = self._take(msg["id"])
            self._objects[msg["new"]] = obj.copy() if isinstance(obj, (Pointer, np.ndarray)) else _copy(obj)
            return None
        if op == "remote_get":
            obj = self._take(msg["id"])
            if isinstance(obj, Pointer):
                self._objects[msg["id"]] = obj.get()
            return None
        if op == "exec":
            from refimpl.workers import ops

            return ops.run(self, msg)
        raise ValueError(f"unknown command {op!r}")

    def _dealer(self, n: int, modulus: int) -> Any:
        """The crypto-provider state of this worker for ``n`` parties over Z_modulus (keyed by the worker key)."""
        from refimpl.mpc.dealer import Dealer
        from refimpl.prg import derive_key
        from refimpl.ring import Ring

        if (n, modulus) not in self._dealers:
            key = derive_key(self.key, "refimpl/worker-dealer", n, str(modulus))
            self._dealers[(n, modulus)] = Dealer(n, ring=Ring(modulus), key=key)
        return self._dealers[(n, modulus)]

    def _next_key(self, purpose: str) -> bytes:
        from refimpl.prg import derive_key

        return derive_key(self.key, "refimpl/worker", purpose, next(self._counter))


class Done:
    """The reply of a message handled at once (in process): ``result()`` is its value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def _copy(obj: Any) -> Any:
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    return obj  # immutable scalars, strings, bytes, Shares


def _transfer_ref(obj: Any) -> tuple[str, int] | None:
    """Serialise a pointer inside a message: ownership moves with the message, so the sender's copy goes stale."""
    if not isinstance(obj, Pointer):
        return None
    obj._check()
    ref = (obj.location.name, obj.id)
    obj._detach()
    return ref


def _release(owner: VirtualWorker, location: VirtualWorker, obj_id: int) -> None:
    try:
        owner.deliver(location, "delete", {"op": "delete", "ids": [obj_id]})
    except Exception:  # noqa: BLE001, S110 - a finalizer must never raise (e.g. during interpreter shutdown)
        pass


class Pointer:
    """A reference, owned by one worker, to an object stored at another (or the same) worker.

    Not constructed directly: :func:`send` and the methods below make pointers.
    """

    __slots__ = ("__weakref__", "_finalizer", "id", "location", "owner")
    __array_ufunc__ = None  # ndarray + pointer defers to Pointer.__radd__

    def __init__(self, location: VirtualWorker, obj_id: int, owner: VirtualWorker) -> None:
        self.location, self.id, self.owner = location, obj_id, owner
        self._finalizer: weakref.finalize | None = weakref.finalize(self, _release, owner, location, obj_id)
        self._finalizer.atexit = False

    @property
    def stale(self) -> bool:
        """True once the pointer was fetched, moved or sent: it no longer owns a remote object."""
        return self._finalizer is None

    def _check(self) -> None:
        if self._finalizer is None:
            raise PointerError(f"{self!r} is stale: its object was fetched, moved or sent on")

    def _detach(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def _request(self, op: str, **fields: Any) -> Any:
        self._check()
        return self.owner.deliver(self.location, "command", {"op": op, "id": self.id, **fields})

    def __repr__(self) -> str:
        state = ", stale" if self._finalizer is None else ""
        return f"Pointer({self.owner.name} -> {self.location.name}:{self.id}{state})"

    def get(self) -> Any:
        """Fetch the object and remove it from its worker; the pointer goes stale.

        Down a chain this returns the next pointer (call ``.get()`` again), as in the tutorial.
        """
        value = self._request("get")
        self._detach()
        return value

    def move(self, worker: VirtualWorker) -> Pointer:
        """Move the object to ``worker`` (it travels directly from its location); returns the new pointer."""
        if not isinstance(worker, VirtualWorker) or worker.ledger is not self.owner.ledger:
            raise ValueError(f"cannot move to {worker!r}: it is not a worker on this pointer's ledger (workers on "
                             "different ledgers cannot talk)")
        new = self.owner.ledger.new_id()
        self._request("move", to=worker.name, new=new)
        self._detach()
        return Pointer(worker, new, self.owner)

    def send(self, worker: VirtualWorker) -> Pointer:
        """Send this pointer to ``worker``: returns a pointer to it there (a chain); this one goes stale."""
        return send(self, worker, sender=self.owner)

    def remote_get(self) -> Pointer:
        """At the end of a chain ``me -> a -> b``: ``a`` fetches the object from ``b``; returns this pointer."""
        self._request("remote_get")
        return self

    def copy(self) -> Pointer:
        """A new object at the same worker, equal to this one (down a chain, each hop is copied)."""
        new = self.owner.ledger.new_id()
        self._request("copy", new=new)
        return Pointer(self.location, new, self.owner)

    def share(self, *workers: VirtualWorker, crypto_provider: VirtualWorker | None = None, **kwargs: Any) -> Any:
        """Secret-share the pointed-to value among ``workers`` (see :func:`~refimpl.workers.share_pointer`)."""
        from refimpl.workers.shared_tensor import share_pointer

        return share_pointer(self, workers, crypto_provider=crypto_provider, **kwargs)

    def _binary(self, op: str, other: Any, swap: bool = False) -> Pointer:
        self._check()
        if isinstance(other, Pointer):
            other._check()
            if other.location is not self.location:
                raise ValueError(f"cannot combine objects at {self.location.name!r} and {other.location.name!r}; "
                                 "move one of them first")
            arg: Any = {"ref": other.id}
        else:
            arg = other
        args = [arg, {"ref": self.id}] if swap else [{"ref": self.id}, arg]
        out = self.owner.ledger.new_id()
        self.owner.deliver(self.location, "command", {"op": "exec", "fn": op, "args": args, "out": out})
        return Pointer(self.location, out, self.owner)

    def __add__(self, other: Any) -> Pointer:
        return self._binary("add", other)

    def __radd__(self, other: Any) -> Pointer:
        return self._binary("add", other, swap=True)

    def __sub__(self, other: Any) -> Pointer:
        return self._binary("sub", other)

    def __rsub__(self, other: Any) -> Pointer:
        return self._binary("sub", other, swap=True)

    def __mul__(self, other: Any) -> Pointer:
        return self._binary("mul", other)

    def __rmul__(self, other: Any) -> Pointer:
        return self._binary("mul", other, swap=True)

    def __matmul__(self, other: Any) -> Pointer:
        return self._binary("matmul", other)

    def __rmatmul__(self, other: Any) -> Pointer:
        return self._binary("matmul", other, swap=True)

    def __truediv__(self, other: Any) -> Pointer:
        """``ptr / v`` at the pointer's worker: ``(alice_model + bob_model) / 2`` averages remotely."""
        return self._binary("truediv", other)

    def __rtruediv__(self, other: Any) -> Pointer:
        return self._binary("truediv", other, swap=True)


def send(obj: Any, worker: VirtualWorker, *, sender: VirtualWorker | None = None) -> Pointer:
    """Store ``obj`` at ``worker``; return a pointer to it owned by ``sender`` (default: the ledger's ``me``).

    Sending a :class:`Pointer` sends the pointer itself (the tutorial's chains) and makes the original stale.

    Raises:
        TypeError: ``obj`` cannot be serialised, or ``worker`` is not a VirtualWorker.
    """
    if not isinstance(worker, VirtualWorker):
        raise TypeError(f"send needs a VirtualWorker, got {type(worker).__name__}")
    sender = worker.ledger.me if sender is None else sender
    new = worker.ledger.new_id()
    sender.deliver(worker, "store", {"op": "store", "ids": [new], "objs": [obj]})
    return Pointer(worker, new, sender)
