"""``python -m refimpl worker``: one party in its own process, serving its object store over mutual TLS.

The worker runs only refimpl's instruction set (:mod:`refimpl.workers.ops`: store, get, move, copy, remote_get,
delete and the registered ``exec`` operations) on values decoded from the safe wire format: no pickle, no code
from the network. Messages of one connection run in order; connections run concurrently, so a worker can take
shares pushed by its peers while it computes. It connects to its peers itself (addresses from ``--peer`` or from
the coordinator's session; identities always from certificates): openings and dealer items go between the parties
directly, never through the coordinator.

Besides protocol messages a worker answers ``control`` requests (not counted in the ledger): ``ping``, ``peers``
(the address book), ``objects``/``count``/``peek`` (inspect the store), ``clear``, ``links`` (the bytes it wrote and
read per ``(sender, receiver, kind)``), ``dialed`` (connections it made to each peer: one, kept, unless the peer
moved or restarted).

Example::

    python -m refimpl certs --out certs jake john secure_worker crypto_provider me
    python -m refimpl worker --name jake --listen 127.0.0.1:8777 --tls-dir certs
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from refimpl.errors import ConfigurationError, PointerError, ProtocolError, RefimplError
from refimpl.net import transport, wire
from refimpl.workers import batch
from refimpl.workers.remote import RemoteWorker, Reply, Session, failure
from refimpl.workers.worker import Pointer, VirtualWorker

__all__ = ["ServedWorker", "WorkerServer", "main", "parse_address"]

log = logging.getLogger("refimpl.worker")


class ServedWorker(VirtualWorker):
    """The worker object inside a worker process: a VirtualWorker whose peers are :class:`RemoteWorker` links."""

    def __init__(self, name: str, *, tls_dir: str | os.PathLike[str] | None, insecure_plaintext: bool = False,
                 deadline: float = 60.0, key: bytes | None = None) -> None:
        super().__init__(name, Session(), key=key)
        self.tls_dir, self.insecure_plaintext, self.deadline = tls_dir, insecure_plaintext, deadline
        self.book: dict[str, str] = {}
        self._links: dict[str, RemoteWorker] = {}  # one connection per peer, kept (the ledger's registry is weak)
        self.dialed: dict[str, int] = {}  # connections made to each peer (control ``dialed``)
        self._peer_lock = threading.Lock()
        self._local = threading.local()
        self._arrived = threading.Condition()  # notified when a store lands (an instruction may be waiting)
        self._stopped = False
        self._pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix=f"refimpl-{name}-batch")
        self._later: dict[str, list[Reply]] = {}  # per peer: pushes of its instructions not yet acknowledged
        self._later_lock = threading.Lock()

    def _peer(self, name: str) -> VirtualWorker:
        """The worker ``name``: a peer's connection is made once and reused (a fresh one when the peer's address
        changed or it restarted: its old session is gone)."""
        worker = self.ledger.workers.get(name)
        if worker is not None and not self._stale(worker):
            return worker
        with self._peer_lock:
            worker = self.ledger.workers.get(name)
            if worker is not None and not self._stale(worker):
                return worker
            url = self.book.get(name)
            if url is None:
                raise PointerError(f"worker {self.name!r} does not know where party {name!r} is (no --peer "
                                   "address and none from the coordinator)")
            link = transport.Link(url, name, self.name, tls_dir=self.tls_dir,
                                  insecure_plaintext=self.insecure_plaintext, deadline=self.deadline)
            remote = RemoteWorker(name, self.ledger, link)  # type: ignore[arg-type]
            self._links[name] = remote
            self.dialed[name] = self.dialed.get(name, 0) + 1
            return remote

    def _stale(self, worker: VirtualWorker) -> bool:
        link = getattr(worker, "link", None)
        return link is not None and (link.broken is not None or link.url != self.book.get(worker.name, link.url))

    def handle_store(self, msg: dict[str, Any]) -> None:
        for obj_id in msg["ids"]:
            if obj_id in self._objects:
                raise PointerError(f"object id {obj_id} is already in use at {self.name!r}: two coordinators "
                                   "share a deployment with overlapping ids")

    def _handle(self, msg: dict[str, Any], sender: Any) -> dict[str, Any] | None:
        if getattr(self._local, "store_only", False) and (not isinstance(msg, dict)
                                                           or msg.get("op") not in ("store", "delete")):
            op = msg.get("op") if isinstance(msg, dict) else type(msg).__name__
            return {"error": f"at {self.name!r}: a message of kind {self._local.kind!r} may only store or delete "
                    f"objects, not {op!r}", "type": "ProtocolError"}
        if isinstance(msg, dict) and msg.get("op") == "store":
            try:
                self.handle_store(msg)
            except PointerError as e:
                return {"error": str(e), "type": "PointerError"}
            out = super()._handle(msg, sender)
            with self._arrived:
                self._arrived.notify_all()
            return out
        if isinstance(msg, dict) and msg.get("op") in COMMANDS:
            err = self._settle_later(sender.name)
            if err is not None:
                kind = type(err).__name__ if isinstance(err, RefimplError) else "WorkerUnavailable"
                return {"error": f"at {self.name!r}: a push of an earlier instruction failed: {err}", "type": kind}
            if msg.get("op") == "exec" and msg.get("fn") in LATER_OPS:
                later: list[Reply] = []
                with self.ledger.pipelined(into=later):  # type: ignore[attr-defined]
                    out = super()._handle(msg, sender)
                with self._later_lock:
                    self._later.setdefault(sender.name, []).extend(later)
                return out
        return super()._handle(msg, sender)

    def _settle_later(self, peer: str) -> BaseException | None:
        """Wait for the pushes of ``peer``'s earlier instructions; the first failure (the rest are dropped)."""
        with self._later_lock:
            replies = self._later.pop(peer, [])
        for r in replies:
            err = failure(r)
            if err is not None:
                return err
        return None

    def _later_pending(self, peer: str) -> bool:
        return any(not r.done() for r in self._later.get(peer, ()))

    def stop(self) -> None:
        """Shutting down: instructions waiting for objects fail now (the process exits without waiting for them)."""
        with self._arrived:
            self._stopped = True
            self._arrived.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wait_for(self, ids: list[int]) -> None:
        """Wait (up to the deadline) until objects its peers push for an instruction are here: the coordinator
        sends the instructions of an operation without waiting between them.

        Raises:
            PointerError: one did not arrive in time (the party that should push it failed or is too slow).
        """
        objects = self._objects
        if all(i in objects for i in ids):
            return
        with self._arrived:
            if self._arrived.wait_for(lambda: self._stopped or all(i in objects for i in ids),
                                      timeout=self.deadline) and not self._stopped:
                return
        if self._stopped:
            raise PointerError(f"worker {self.name!r} is shutting down")
        missing = [i for i in ids if i not in objects]
        raise PointerError(f"object(s) {missing} did not arrive at {self.name!r} within the {self.deadline:g} s "
                           "deadline (the party that should send them failed, or an earlier step did)")

    def control(self, msg: Any) -> Any:
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "ping":
            return self.name
        if op == "peers":
            peers = msg.get("peers")
            if not isinstance(peers, dict) or not all(isinstance(v, str) for v in peers.values()):
                raise ValueError("peers takes {name: url}")
            self.book.update({k: v for k, v in peers.items() if k != self.name})
            return None
        if op == "dialed":
            return dict(self.dialed)
        if op == "objects":
            return sorted(self._objects)
        if op == "count":
            return len(self._objects)
        if op == "peek":
            obj = self._take(msg.get("id"))
            return repr(obj) if isinstance(obj, Pointer) else obj
        if op == "clear":
            self.clear_objects()
            return None
        if op == "links":
            return [[list(k), list(v)] for k, v in self.ledger.links().items()]  # type: ignore[attr-defined]
        raise ValueError(f"unknown control request {op!r}")

    def serve_quick(self, peer: str, typ: int, kind: str, payload: bytearray) -> Any:
        """On the network thread: stores, deletes, ``get`` of an array and the :data:`PURE_OPS`, which never wait
        on a peer; anything else returns :data:`~refimpl.net.transport.DEFER` (the thread pool runs it). A batch
        runs here up to its first such message; a thread runs the rest (the reply is then a future)."""
        if kind in STORE_KINDS:
            return self.serve_message(peer, typ, kind, payload)
        if kind == batch.KIND:
            return self._batch(peer, typ, batch.decode(payload), quick=True)
        if kind != "command":
            return transport.DEFER
        try:
            msg = wire.decode(payload)  # type: ignore[arg-type]  # no pointer callback: one inside defers
        except RefimplError:
            return transport.DEFER
        if not isinstance(msg, dict):
            return transport.DEFER
        op = msg.get("op")
        if self._later_pending(peer):  # the answer waits for earlier pushes: not on this thread
            return transport.DEFER
        target = self._objects.get(msg["id"]) if op == "get" and isinstance(msg.get("id"), int) else None
        quick = isinstance(target, np.ndarray) or (op == "exec" and msg.get("fn") in PURE_OPS
                                                   and msg.get("out") is not None
                                                   and all(i in self._objects for i in msg.get("await") or ()))
        if not quick:
            return transport.DEFER
        self.ledger.record(peer, self.name, kind, len(payload))
        out = self._handle(msg, _Sender(peer))
        reply = wire.encode(out)
        if typ == transport.REQUEST:
            self.ledger.record(self.name, peer, "reply", len(reply))
            return reply
        return None

    def _batch(self, peer: str, typ: int, items: list[tuple[str, memoryview]], *, quick: bool,
               done: list[Any] | None = None) -> Any:
        """Handle the messages of a batch in order, each as if it came alone; reply with their replies."""
        replies = [] if done is None else done
        for i, (kind, raw) in enumerate(items):
            if kind in (batch.KIND, "control"):
                raise ProtocolError(f"a batch may not hold a {kind!r} message")
            if quick:
                reply = self.serve_quick(peer, transport.REQUEST, kind, raw)  # type: ignore[arg-type]
                if reply is transport.DEFER:  # the rest in a thread, in order; this connection waits for it
                    return self._pool.submit(self._batch, peer, typ, items[i:], quick=False, done=replies)
            else:
                reply = self.serve_message(peer, transport.REQUEST, kind, raw)  # type: ignore[arg-type]
            replies.append(reply)
        return b"".join(batch.encode_replies(replies)) if typ == transport.REQUEST else None

    def serve_message(self, peer: str, typ: int, kind: str, payload: bytearray) -> bytes | None:
        """The transport handler: one message from ``peer``; returns the reply bytes (None: nothing to say)."""
        if kind == batch.KIND:
            return self._batch(peer, typ, batch.decode(payload), quick=False)  # type: ignore[no-any-return]
        if kind == "control":
            try:
                request = wire.decode(payload)  # type: ignore[arg-type]
                return wire.encode({"value": self.control(request)})
            except (RefimplError, TypeError, ValueError, KeyError) as e:
                return wire.encode({"error": f"at {self.name!r}: {e}"})
        self.ledger.record(peer, self.name, kind, len(payload))
        self._local.store_only, self._local.kind = kind in STORE_KINDS, kind
        try:
            reply = self.receive(payload, _Sender(peer), kind)  # type: ignore[arg-type]
        except RefimplError as e:  # undecodable bytes: answer with the error, keep serving
            log.warning("%s: rejected a %r message from %r: %s", self.name, kind, peer, e)
            reply = wire.encode({"error": f"at {self.name!r}: {e}", "type": type(e).__name__})
        finally:
            self._local.store_only = False
        if reply is not None and typ == transport.REQUEST:
            self.ledger.record(self.name, peer, "reply", len(reply))
            return reply
        return None


STORE_KINDS = frozenset({"store", "share", "dealer", "open", "delete"})
"""Message kinds that only store or delete objects: handled on the network thread (they never wait on a peer)."""

COMMANDS = frozenset({"get", "move", "copy", "remote_get", "exec"})
"""Messages that compute or answer: they run after the pushes of the same peer's earlier instructions landed."""

LATER_OPS = frozenset({"deal", "mask_push", "div_push", "prog_push"})
"""Instructions whose pushes the receivers always await (``await`` ids): their acknowledgements are waited for
before the next command from the same peer, not before the instruction's own reply (one round trip less on the
critical path); a failed push is reported as that next command's error."""

PURE_OPS = frozenset({"add", "sub", "mul", "matmul", "ring_binary", "ring_public", "ring_local", "ring_concat",
                      "beaver_finish", "trunc_finish", "div_finish"})
"""Instructions that compute on stored objects without talking to any peer (safe on the network thread)."""


class _Sender:
    def __init__(self, name: str) -> None:
        self.name = name


class WorkerServer:
    """A :class:`ServedWorker` listening on ``host:port`` (see :func:`refimpl.net.transport.serve`)."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0, *,
                 tls_dir: str | os.PathLike[str] | None = None, insecure_plaintext: bool = False,
                 peers: dict[str, str] | None = None, deadline: float = 60.0, **kwargs: Any) -> None:
        self.worker = ServedWorker(name, tls_dir=tls_dir, insecure_plaintext=insecure_plaintext, deadline=deadline)
        self.worker.book.update(peers or {})
        self.server = transport.serve(name, self.worker.serve_message, host, port, tls_dir=tls_dir,
                                      insecure_plaintext=insecure_plaintext, quick=self.worker.serve_quick, **kwargs)
        self.url = f"{'ws' if insecure_plaintext else 'wss'}://{host}:{self.server.port}"

    def close(self) -> None:
        self.worker.stop()  # first: a connection whose instruction waits for an object then closes at once
        self.server.close()


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` -> ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigurationError(f"an address is host:port, got {text!r}")
    return host.strip("[]"), int(port)


def _peer_arg(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--peer takes name=wss://host:port, got {text!r}")
    return name, url


def main(argv: Sequence[str]) -> int:
    """``python -m refimpl worker --name NAME --listen HOST:PORT --tls-dir DIR [--peer NAME=URL ...]``."""
    p = argparse.ArgumentParser(prog="refimpl worker", description="Run one party (a worker) in this process.")
    p.add_argument("--name", required=True, help="this party's name (its certificate must name it)")
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (default 127.0.0.1, any port)")
    p.add_argument("--tls-dir", help="the deployment's certificates (python -m refimpl certs)")
    p.add_argument("--insecure-plaintext", action="store_true",
                   help="INSECURE: no TLS, unauthenticated names; refused except on loopback addresses")
    p.add_argument("--peer", action="append", type=_peer_arg, default=[], help="NAME=URL of a peer (repeatable)")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds a peer has to start answering")
    p.add_argument("--ping-interval", type=float, default=5.0)
    p.add_argument("--ping-timeout", type=float, default=20.0)
    p.add_argument("--bulk-port", type=int, default=0,
                   help="port of the bulk channel for large messages, on the --listen address (default any free one, "
                        "announced to connecting parties; -1: none, large messages take the WebSocket)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--instructions", action="append", default=[], metavar="MODULE",
                   help="import this refimpl module first, so the instructions it registers run here "
                        "(e.g. refimpl.fl.tutorial for the federated training loop; repeatable)")
    args = p.parse_args(argv)
    for module in args.instructions:  # a local choice of refimpl's own code; messages still only name instructions
        if not module.startswith("refimpl."):
            p.error(f"--instructions takes a refimpl module, got {module!r}")
        importlib.import_module(module)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.tls_dir and not args.insecure_plaintext:
        p.error("give --tls-dir (mutual TLS) or, for loopback experiments only, --insecure-plaintext")
    host, port = parse_address(args.listen)
    try:
        server = WorkerServer(args.name, host, port, tls_dir=args.tls_dir, insecure_plaintext=args.insecure_plaintext,
                              peers=dict(args.peer), deadline=args.deadline, ping_interval=args.ping_interval,
                              ping_timeout=args.ping_timeout, bulk_port=None if args.bulk_port < 0 else args.bulk_port)
    except (RefimplError, OSError) as e:
        print(f"refimpl worker: {e}", flush=True)
        return 2
    if args.insecure_plaintext:
        print("WARNING: insecure plaintext: no encryption, no authentication (loopback experiments only)", flush=True)
    print(f"worker {args.name} listening on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.close()
    return 0
