"""The bulk channel (refimpl.net.bulk): large requests on a blocking mutual-TLS socket, with the WebSocket's rules.

Servers bind 127.0.0.1 in this process (closed by their fixtures); the process tests start worker processes that
the ``Processes`` context kills whatever happens.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl.errors import ReplayError, WorkerUnavailable
from refimpl.net import bulk, certs, framing
from refimpl.net.bulk import BULK_MIN
from refimpl.net.framing import BULK, FAIL, HELLO, REPLY, REQUEST
from refimpl.net.transport import Link, serve
from refimpl.workers import VirtualWorker, send
from refimpl.workers.remote import Session, connect, deployment_links
from tests._net import Processes

NAMES = ["jake", "mallory", "me", "bob", "alice"]
MiB = 1 << 20


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    certs.make_deployment(d, NAMES)
    return d


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("other")
    certs.make_deployment(d, NAMES)
    return d


SEEN: list[tuple[str, str, int]] = []  # (kind, the handling thread's name, payload length)


def _handler(peer, typ, kind, payload):
    SEEN.append((kind, threading.current_thread().name, len(payload)))
    if kind == "sleep":
        time.sleep(float(bytes(payload[:8]).decode()))
        return None
    if kind == "fail":
        raise ValueError("refused on purpose")
    if kind == "ack":
        return None
    return bytes(peer.encode()) + b"|" + bytes(payload[:16]) + len(payload).to_bytes(8, "little") + bytes(
        payload[-16:]) if kind == "digest" else bytes(payload)


@pytest.fixture(scope="module")
def jake(tls):
    server = serve("jake", _handler, tls_dir=tls, max_message=64 * MiB)
    try:
        yield server
    finally:
        server.close()


def _link(server, tls, me="me", **kw):
    return Link(f"wss://127.0.0.1:{server.port}", "jake", me, tls_dir=tls, **kw)


def _last_thread(kind):
    return [t for k, t, _ in SEEN if k == kind][-1]


@settings(max_examples=6, deadline=None)
@given(size=st.integers(BULK_MIN, 6 * MiB), pieces=st.integers(1, 4))
@example(size=BULK_MIN, pieces=1)
@example(size=4 * MiB, pieces=3)  # from 4 MiB the receive buffer is an uninitialised NumPy array
def test_large_requests_go_over_the_bulk_channel_and_arrive_whole(jake, tls, size, pieces):
    data = np.frombuffer(os.urandom(size), np.uint8)
    cuts = sorted({0, size, *np.linspace(0, size, pieces + 1).astype(int).tolist()})
    parts = [memoryview(data[a:b]) for a, b in zip(cuts, cuts[1:])]
    link = _link(jake, tls)
    try:
        out = link.call("echo", parts)
        assert "bulk" in _last_thread("echo")  # handled on the server's bulk connection, not its WebSocket pool
        assert bytes(out) == data.tobytes()
        assert isinstance(out, (bytearray, memoryview)) and not memoryview(out).readonly
        assert link.bytes_written >= size and link.bytes_read >= size  # counted on top of the payload
        assert link.call("echo", b"small") == b"small" and "bulk" not in _last_thread("echo")
    finally:
        link.close()
    with pytest.raises(WorkerUnavailable, match="closed its connection"):  # a closed link does not reconnect
        link.call("echo", parts)


def test_answers_failures_and_acks_come_back_as_on_the_websocket(jake, tls):
    link = _link(jake, tls)
    try:
        big = bytes(BULK_MIN)
        assert link.call("ack", big) is None
        with pytest.raises(Exception, match="refused on purpose"):
            link.call("fail", big)
        assert link.call("digest", big)[:3] == b"me|"  # the connection serves on after a failed request
        assert "bulk" in _last_thread("digest")
    finally:
        link.close()


def test_the_answer_must_start_within_the_deadline(jake, tls):
    link = _link(jake, tls, deadline=0.5)
    try:
        link.call("ack", b"x")  # connected
        t0 = time.perf_counter()
        with pytest.raises(WorkerUnavailable, match="party 'jake' .* no answer within the 0.5 s deadline"):
            link.call("sleep", b"3.0     " + bytes(BULK_MIN))
        assert time.perf_counter() - t0 < 2.5  # at the deadline, long before the handler returns
        assert "bulk" in _last_thread("sleep")
        assert link.call("digest", bytes(BULK_MIN))[:3] == b"me|"  # a fresh bulk connection serves on
    finally:
        link.close()


def test_waiting_for_an_answer_stops_when_the_partys_websocket_dies(jake, tls):
    """While a bulk request waits for its answer, the party's liveness is its WebSocket (pings, a broken
    connection): losing it ends the wait at once, not at the deadline."""
    from refimpl.net import transport

    link = _link(jake, tls, deadline=60)
    try:
        link.call("ack", b"x")

        async def cut():
            link._ws.transport.abort()  # as a dead party's connection, or expired pings, would end

        threading.Timer(0.5, lambda: transport.run_sync(cut())).start()
        t0 = time.perf_counter()
        with pytest.raises(WorkerUnavailable, match="party 'jake' .* connection lost"):
            link.call("sleep", b"5.0     " + bytes(BULK_MIN))
        assert time.perf_counter() - t0 < 3  # long before the handler's 5 s or the 60 s deadline
    finally:
        link.close()


def test_requests_in_flight_on_the_websocket_keep_their_order(jake, tls):
    link = _link(jake, tls)
    link.bulk_min = 0
    try:
        link.call("ack", b"x")
        fut = link.start("sleep", b"0.5     ")  # on the WebSocket, unanswered for 0.5 s
        link.call("digest", bytes(BULK_MIN))  # at once: must not overtake it on the bulk channel
        assert fut.done()  # it waited for the answer, then took the bulk channel
        kinds = [k for k, _, _ in SEEN[-2:]]
        assert kinds == ["sleep", "digest"] and "bulk" in _last_thread("digest")
        fut = link.start("sleep", b"0.3     ")
        link.call("digest", b"small")  # a small request does not wait: it follows on the WebSocket
        fut.result(10)
        kinds = [k for k, _, _ in SEEN[-2:]]
        assert kinds == ["sleep", "digest"] and "bulk" not in _last_thread("digest")
    finally:
        link.close()


def test_messages_sent_without_an_answer_are_handled_before_a_later_bulk_request(jake, tls):
    """A ``notify`` (e.g. a ``delete``) written on the WebSocket has no answer to wait for: a later request takes
    the WebSocket (answered in order after it) before the bulk channel is used again."""
    from refimpl.net import transport

    link = _link(jake, tls)
    link.bulk_min = 0  # every synchronous request may take the bulk channel
    try:
        link.call("ack", b"x")
        for i in range(20):
            transport.run_sync(link.request("sleep", b"0.02    ", notify=True))  # written, not yet handled
            link.call("digest", b"after")
            kinds = [k for k, _, _ in SEEN[-2:]]
            assert kinds == ["sleep", "digest"], (i, kinds)
        link.call("digest", b"again")
        assert "bulk" in _last_thread("digest")  # the fence passed: the bulk channel again
    finally:
        link.close()


def test_concurrent_large_requests_share_the_link(jake, tls):
    link = _link(jake, tls)
    results: list[bool] = []
    try:
        link.call("ack", b"x")

        def one(i):
            payload = bytes([i]) * (2 * MiB)
            results.append(bytes(link.call("echo", payload)) == payload)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [True] * 4
    finally:
        link.close()


# ---------------------------------------------------------------- hostile and broken peers
def _bulk_socket(server, tls, me="mallory"):
    raw = socket.create_connection(("127.0.0.1", server.bulk_port), timeout=10)
    return certs.client_context(tls, me).wrap_socket(raw) if tls is not None else raw


def _hello(party, to="jake"):
    body = json.dumps({"party": party, "to": to}).encode()
    return framing.bulk_header(HELLO, 0, "hello", len(body)) + body


def _read(sock):
    """One bulk message from the server: (type, request id, payload), or None once it closed the connection."""
    head = b""
    try:
        while len(head) < BULK.size:
            chunk = sock.recv(BULK.size - len(head))
            if not chunk:
                return None
            head += chunk
        typ, req, length, klen = framing.parse_bulk_header(head, 1 << 20)
        body = b""
        while len(body) < klen + length:
            chunk = sock.recv(klen + length - len(body))
            if not chunk:
                return None
            body += chunk
        return typ, req, body[klen:]
    except (ConnectionError, OSError):
        return None


def test_a_hostile_length_is_refused_before_anything_is_allocated(jake, tls, monkeypatch, caplog):
    sizes: list[int] = []
    real = bulk.buffer
    monkeypatch.setattr(bulk, "buffer", lambda n: sizes.append(n) or real(n))
    before = jake.rejected
    with caplog.at_level(logging.WARNING, logger="refimpl.net"), _bulk_socket(jake, tls) as s:
        s.sendall(_hello("mallory"))
        assert _read(s)[0] == HELLO
        s.sendall(framing.bulk_header(REQUEST, 1, "store", 1 << 40))  # 1 TiB announced
        assert _read(s) is None  # connection closed
    assert jake.rejected == before + 1 and "exceeds the limit" in caplog.text
    assert max(sizes, default=0) < 1 << 20  # only the small hello was ever allocated
    link = _link(jake, tls)  # everyone else is still served
    try:
        assert link.call("digest", bytes(BULK_MIN))[:3] == b"me|"
    finally:
        link.close()


def test_names_malformed_headers_and_replays_are_refused_and_logged(jake, tls, other_ca, caplog):
    with caplog.at_level(logging.WARNING, logger="refimpl.net"):
        with _bulk_socket(jake, tls) as s:  # mallory's certificate, claiming to be jake
            s.sendall(_hello("jake"))
            typ, _, why = _read(s)
            assert typ == FAIL and b"certificate names 'mallory'" in why
        with _bulk_socket(jake, tls) as s:
            s.sendall(_hello("mallory", to="john"))
            assert _read(s)[0] == FAIL
        with pytest.raises((ConnectionError, OSError)):  # another deployment's certificate: no TLS at all
            with _bulk_socket(jake, other_ca) as s:
                s.sendall(_hello("mallory"))
                assert _read(s) is None
                raise ConnectionError("closed")
        with _bulk_socket(jake, tls) as s:
            s.sendall(_hello("mallory"))
            assert _read(s)[0] == HELLO
            s.sendall(b"XX" + bytes(BULK.size))
            assert _read(s) is None
        with _bulk_socket(jake, tls) as s:  # a replayed request id
            s.sendall(_hello("mallory"))
            assert _read(s)[0] == HELLO
            for _ in range(2):
                s.sendall(framing.bulk_header(REQUEST, 7, "echo", 3) + b"abc")
            assert _read(s) == (REPLY, 7, b"abc")
            typ, req, why = _read(s)
            assert (typ, req) == (FAIL, 7) and why.startswith(b"replay")
            assert _read(s) is None
    assert "claims to be 'jake' but its certificate names 'mallory'" in caplog.text
    assert "replayed or reordered request 7" in caplog.text and "malformed bulk header" in caplog.text


def test_a_replay_refusal_reaches_the_caller_as_replay_error(jake, tls):
    link = _link(jake, tls)
    try:
        link.call("digest", bytes(BULK_MIN))
        link._ids = iter([1, 1_000_000])  # as if a request id were reused
        with pytest.raises(ReplayError, match="party 'jake' rejected the request: replay"):
            link.call("digest", bytes(BULK_MIN))
        assert link.call("digest", bytes(BULK_MIN))[:3] == b"me|"  # a fresh bulk connection
    finally:
        link.close()


def test_a_peer_that_stops_reading_is_reported_after_the_stall_timeout(jake, tls):
    """A bulk port that accepts and then reads nothing (a frozen receiver): no progress for ``ping_timeout``."""
    srv = socket.create_server(("127.0.0.1", 0))
    ctx = certs.server_context(tls, "jake")
    held: list[socket.socket] = []

    def frozen():
        conn, _ = srv.accept()
        s = ctx.wrap_socket(conn, server_side=True)
        held.append(s)
        _read(s)
        body = json.dumps({"party": "jake", "boot": jake.boot}).encode()
        s.sendall(framing.bulk_header(HELLO, 0, "hello", len(body)) + body)

    t = threading.Thread(target=frozen, daemon=True)
    t.start()
    link = _link(jake, tls, ping_timeout=1.0)
    try:
        link.call("ack", b"x")
        link._bulk_port = srv.getsockname()[1]
        t0 = time.perf_counter()
        with pytest.raises(WorkerUnavailable, match="party 'jake' .* no progress sending for 1 s"):
            link.call("ack", bytes(64 * MiB))
        assert time.perf_counter() - t0 < 10
    finally:
        link.close()
        for s in held:
            s.close()
        srv.close()
        t.join(5)


def test_an_unreachable_bulk_port_falls_back_to_the_websocket(jake, tls, caplog):
    jake._bulk.max_connections = 0  # the listener closes every new bulk connection at once
    link = _link(jake, tls)
    try:
        with caplog.at_level(logging.WARNING, logger="refimpl.net"):
            payload = os.urandom(BULK_MIN)
            assert bytes(link.call("echo", payload)) == payload and "bulk" not in _last_thread("echo")
        assert "no bulk connection to 'jake'" in caplog.text and link._bulk_port is None
    finally:
        jake._bulk.max_connections = 256
        link.close()


def test_a_bulk_port_presenting_another_partys_certificate_is_refused(jake, tls):
    srv = socket.create_server(("127.0.0.1", 0))
    ctx = certs.server_context(tls, "mallory")
    held: list[socket.socket] = []

    def impostor():
        conn, _ = srv.accept()
        try:
            held.append(ctx.wrap_socket(conn, server_side=True))
        except OSError:
            conn.close()

    t = threading.Thread(target=impostor, daemon=True)
    t.start()
    link = _link(jake, tls)
    try:
        link.call("ack", b"x")
        link._bulk_port = srv.getsockname()[1]
        with pytest.raises(WorkerUnavailable, match="party 'jake' .* bulk port's certificate names 'mallory'"):
            link.call("ack", bytes(BULK_MIN))
    finally:
        link.close()
        t.join(5)
        for s in held:
            s.close()
        srv.close()


def test_plaintext_bulk_on_loopback(tls):
    server = serve("jake", _handler, insecure_plaintext=True)
    try:
        link = Link(f"ws://127.0.0.1:{server.port}", "jake", "anyone", insecure_plaintext=True)
        payload = os.urandom(BULK_MIN + 3)
        assert bytes(link.call("echo", payload)) == payload and "bulk" in _last_thread("echo")
        link.close()
    finally:
        server.close()


def test_a_server_without_a_bulk_port_takes_large_requests_on_the_websocket(tls):
    server = serve("jake", _handler, tls_dir=tls, bulk_port=None)
    try:
        link = _link(server, tls)
        payload = os.urandom(BULK_MIN + 3)
        assert bytes(link.call("echo", payload)) == payload and "bulk" not in _last_thread("echo")
        link.close()
    finally:
        server.close()


# ---------------------------------------------------------------- worker processes
def test_moves_between_worker_processes_use_the_bulk_channel_and_the_ledgers_match(tls):
    """A 3 MiB array sent, moved worker -> worker and fetched: the same bytes per (sender, receiver, kind) on every
    socket as the in-process ledger of the same steps."""
    arr = np.arange(3 * MiB // 8, dtype=np.int64)

    def steps(a, b):
        return send(arr, a).move(b).get()

    local = Session(first_id=10**9, keep=None)
    lw = [VirtualWorker(n, local) for n in ("alice", "bob")]
    _ = local.me
    assert (steps(*lw) == arr).all()
    with Processes() as ps:
        procs = [ps.worker(n, tls) for n in ("alice", "bob")]
        remote = Session(first_id=10**9, keep=None)
        w = [connect(p.url, name=n, tls_dir=tls, session=remote) for n, p in zip(("alice", "bob"), procs)]
        assert (steps(*w) == arr).all()
        links = {}
        for _ in range(100):  # the deletes are sent without waiting
            links = deployment_links(remote, *w, me="me")
            if links == local.links():
                break
            time.sleep(0.05)
        assert links == local.links()
        assert w[0].link._bulk is not None  # the coordinator's send took the bulk channel
        assert max(n for _, n in wire_sizes(links, "store")) >= arr.nbytes


def wire_sizes(links, kind):
    return [(k, b) for k, (_, b) in links.items() if k[2] == kind]


def test_a_frozen_worker_stops_a_bulk_transfer_within_the_stall_timeout(tls):
    with Processes() as ps:
        bob = ps.worker("bob", tls)
        w = connect(bob.url, name="bob", tls_dir=tls, session=Session(), deadline=60, ping_interval=0.2,
                    ping_timeout=2.0)
        send(np.zeros(BULK_MIN, np.uint8), w)  # the bulk connection is up
        os.kill(bob.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.perf_counter()
            with pytest.raises(WorkerUnavailable, match="party 'bob' .* (no progress sending for 2 s|ping timeout)"):
                send(np.zeros(128 * MiB, np.uint8), w)
            assert time.perf_counter() - t0 < 20  # the 2 s stall / ping timeout, not the 60 s deadline
        finally:
            os.kill(bob.proc.pid, signal.SIGCONT)


def test_a_worker_started_without_a_bulk_port_takes_large_messages_on_the_websocket(tls):
    with Processes() as ps:
        bob = ps.worker("bob", tls, "--bulk-port", "-1")
        w = connect(bob.url, name="bob", tls_dir=tls, session=Session())
        arr = np.arange(BULK_MIN, dtype=np.int32)
        assert (send(arr, w).get() == arr).all()
        assert w.link._bulk_port is None and w.link._bulk is None


def test_a_frozen_worker_stops_a_large_websocket_transfer_too(tls):
    """Without a bulk channel a large message streams over the WebSocket; once the frozen peer's buffers are full
    no ping gets through either, so the sender's own watchdog ends it after ``ping_timeout`` without progress."""
    with Processes() as ps:
        bob = ps.worker("bob", tls, "--bulk-port", "-1")
        w = connect(bob.url, name="bob", tls_dir=tls, session=Session(), deadline=60, ping_interval=0.2,
                    ping_timeout=2.0)
        send(np.zeros(16, np.uint8), w)
        os.kill(bob.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.perf_counter()
            with pytest.raises(WorkerUnavailable, match="party 'bob'"):
                send(np.zeros(128 * MiB, np.uint8), w)
            assert time.perf_counter() - t0 < 20  # the 2 s stall / ping timeout, not the 60 s deadline
        finally:
            os.kill(bob.proc.pid, signal.SIGCONT)
