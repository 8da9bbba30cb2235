"""The authenticated transport: certificates, chunked messages, deadlines, and rejection of bad peers and frames.

Every server here binds 127.0.0.1 in this process and is closed by its fixture.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl.errors import ConfigurationError, WorkerUnavailable
from refimpl.net import certs, framing, transport, wire
from refimpl.net.framing import CHUNK, REQUEST
from refimpl.net.transport import Link, serve
from tests import _net  # noqa: F401  (skips without websockets)

NAMES = ["jake", "john", "mallory", "me"]


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


def _echo(peer, typ, kind, payload):
    if kind == "sleep":
        time.sleep(float(payload.decode()))
        return b"late"
    if kind == "ack":
        return None
    if kind == "zeros":  # a large reply to a small request: answering starts at once, transferring takes long
        return bytes(int(payload.decode()))
    return bytes(peer.encode()) + b"|" + bytes(payload)


@pytest.fixture(scope="module")
def jake(tls):
    server = serve("jake", _echo, tls_dir=tls)
    try:
        yield server
    finally:
        server.close()


def _link(jake, tls, me="me", **kw):
    return Link(f"wss://127.0.0.1:{jake.port}", "jake", me, tls_dir=tls, **kw)


def test_certificates_name_parties_and_refuse_bad_names(tmp_path, tls):
    assert certs.party_name(certs.load_certificate(tls / "john.pem")) == "john"
    assert (tls / "john-key.pem").stat().st_mode & 0o077 == 0  # private keys are not group/world readable
    for bad in ["", "a b", "../x", "x" * 65, 7]:
        with pytest.raises(ConfigurationError):
            certs.make_deployment(tmp_path / "bad", [bad])
    with pytest.raises(ConfigurationError, match="already holds"):
        certs.make_deployment(tls, ["zed"])
    with pytest.raises(ConfigurationError, match="no certificate for party 'nobody'"):
        certs.client_context(tls, "nobody")


@settings(max_examples=12)
@given(size=st.integers(0, 3 * CHUNK + 5))
@example(size=0)
@example(size=CHUNK - 13)  # the first chunk carries a 13-byte prefix (length, kind) before the payload
@example(size=CHUNK)
@example(size=2 * CHUNK - 13)
def test_messages_of_any_size_arrive_whole_and_in_order(jake, tls, size):
    link = _link(jake, tls)
    try:
        payload = bytes((i * 7) % 251 for i in range(min(size, 4096))) * (size // 4096 + 1)
        payload = payload[:size]
        assert link.call("echo", payload) == b"me|" + payload
        assert link.call("ack", b"x") is None
    finally:
        link.close()


def _seconds(link, kind, payload):
    t0 = time.perf_counter()
    out = link.call(kind, payload)
    return time.perf_counter() - t0, out


def test_a_large_message_is_not_cut_off_by_the_deadline(jake, tls, monkeypatch):
    """A reply whose chunks keep arriving for three deadlines arrives whole: deadlines bound waiting for an answer
    to start, not transferring it (liveness is the pings' job).

    Independent of the machine's speed and load: the deadline is set well above the measured time this server
    takes to start answering, and the server spaces the reply's ten chunks a third of a deadline apart, so the
    transfer outlasts the deadline three times over by construction.
    """
    probe = _link(jake, tls, deadline=60)
    try:
        probe.call("zeros", b"0")  # connected
        start = max(_seconds(probe, "zeros", str(CHUNK).encode())[0] for _ in range(3))
    finally:
        probe.close()
    deadline = max(0.5, 20 * start)
    gap = deadline / 3

    async def spaced(ws, typ, req, kind, payload):
        for i, frame in enumerate(framing.frames(typ, req, kind, payload)):
            if i:
                await asyncio.sleep(gap)
            await ws.send(frame)

    monkeypatch.setattr(transport.Server, "_send", staticmethod(spaced))
    link = _link(jake, tls, deadline=deadline, ping_interval=gap / 2, ping_timeout=30)
    try:
        link.call("zeros", b"0")  # connected
        size = 10 * CHUNK - 100  # ten chunks
        seconds, out = _seconds(link, "zeros", str(size).encode())
        assert len(out) == size and not any(out[:: 1 << 16])
        assert seconds >= 3 * deadline * 0.99  # it really outlasted its deadline
        assert link.bytes_read > size  # framing counted on top of the payload
    finally:
        link.close()


def test_a_missed_deadline_names_the_party(jake, tls):
    link = _link(jake, tls, deadline=0.3)
    try:
        t0 = time.perf_counter()
        with pytest.raises(WorkerUnavailable, match="party 'jake' .* no answer within the 0.3 s deadline"):
            link.call("sleep", b"4")
        assert time.perf_counter() - t0 < 3.5  # failed at the deadline, long before the reply would come
    finally:
        link.close()


def test_a_certificate_from_another_deployment_is_refused(jake, tls, other_ca):
    stranger = Link(f"wss://127.0.0.1:{jake.port}", "jake", "me", tls_dir=other_ca, deadline=5)
    with pytest.raises(WorkerUnavailable, match="party 'jake'"):
        stranger.call("echo", b"hi")
    link = _link(jake, tls)  # the server keeps serving the others
    try:
        assert link.call("echo", b"still here") == b"me|still here"
    finally:
        link.close()


def test_the_server_must_be_the_party_we_asked_for(jake, tls):
    wrong = Link(f"wss://127.0.0.1:{jake.port}", "john", "me", tls_dir=tls, deadline=5)
    with pytest.raises(WorkerUnavailable, match="certificate names 'jake', not 'john'"):
        wrong.call("echo", b"hi")


async def _raw(jake, tls, frames, me="mallory"):
    """Speak to the server directly with ``me``'s certificate; return what came back (frames) and the close code."""
    from websockets.asyncio.client import connect

    ctx = certs.client_context(tls, me)
    got = []
    async with connect(f"wss://127.0.0.1:{jake.port}", ssl=ctx, proxy=None, compression=None) as ws:
        for f in frames:
            await ws.send(f)
        try:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 5))
        except Exception:  # noqa: BLE001 - closed by the server, or nothing more to read
            pass
        return got, ws.close_code


def _hello(party, to="jake"):
    return next(framing.frames(framing.HELLO, 0, "hello", json.dumps({"party": party, "to": to}).encode()))


def _request(req, kind, payload):
    return next(framing.frames(framing.REQUEST, req, kind, payload))


def _run(coro):
    return transport.run_sync(coro, timeout=30)


def test_a_party_claiming_another_name_is_refused_and_logged(jake, tls, caplog):
    before = jake.rejected
    with caplog.at_level("WARNING", logger="refimpl.net"):
        got, code = _run(_raw(jake, tls, [_hello("jake"), _request(1, "echo", b"x")]))
    assert code == 1008 and jake.rejected > before
    assert any(b"certificate names 'mallory'" in bytes(g) for g in got)
    assert "claims to be 'jake' but its certificate names 'mallory'" in caplog.text
    got, code = _run(_raw(jake, tls, [_hello("mallory", to="john")]))
    assert code == 1008 and any(b"this is 'jake'" in bytes(g) for g in got)


def test_malformed_frames_close_only_that_connection(jake, tls):
    link = _link(jake, tls)
    try:
        assert link.call("echo", b"a") == b"me|a"
        for bad in [b"garbage", b"RN" + bytes(14),
                    framing.HEADER.pack(b"RN", framing.REQUEST, 0, 5, 3) + b"chunk 3 first",
                    framing.HEADER.pack(b"RN", framing.REQUEST, 0x80, 5, 0) + bytes(9),
                    framing.HEADER.pack(b"RN", framing.REQUEST, 1, 5, 0) + framing.FIRST.pack(1 << 40, 0)]:
            before = jake.rejected
            got, code = _run(_raw(jake, tls, [_hello("mallory"), bad]))
            assert code == 1002 and jake.rejected > before, (bad[:20], code)
        assert link.call("echo", b"b") == b"me|b"  # other connections unaffected
    finally:
        link.close()


def test_replayed_and_reordered_requests_are_rejected(jake, tls):
    frames = [_hello("mallory"), _request(1, "echo", b"one"), _request(1, "echo", b"again"),
              _request(3, "echo", b"three"), _request(2, "echo", b"two")]
    got, code = _run(_raw(jake, tls, frames))
    kinds = [(framing.HEADER.unpack_from(g)[1], framing.HEADER.unpack_from(g)[3]) for g in got[1:]]
    assert kinds == [(framing.REPLY, 1), (framing.FAIL, 1), (framing.REPLY, 3), (framing.FAIL, 2)]
    assert b"replay" in bytes(got[2])


def test_plaintext_is_for_loopback_only(tls, monkeypatch):
    # The non-loopback addresses below are refused before any socket exists: bind / connect are guarded to prove it.
    import socket

    touched: list[object] = []
    for method in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, method, lambda self, addr, _m=method: touched.append((_m, addr)))
    with pytest.raises(ConfigurationError, match="loopback"):
        serve("jake", _echo, host="0.0.0.0", insecure_plaintext=True)
    with pytest.raises(ConfigurationError, match="loopback"):
        Link("ws://10.1.2.3:80", "jake", "me", insecure_plaintext=True)
    assert touched == []
    monkeypatch.undo()
    with pytest.raises(ConfigurationError, match="not TLS"):
        Link("ws://127.0.0.1:80", "jake", "me", tls_dir=tls)
    with pytest.raises(ConfigurationError, match="tls_dir"):
        serve("jake", _echo)
    server = serve("jake", _echo, insecure_plaintext=True)
    try:
        link = Link(f"ws://127.0.0.1:{server.port}", "jake", "anyone", insecure_plaintext=True)
        assert link.call("echo", b"hi") == b"anyone|hi"  # names are unauthenticated claims here
        link.close()
    finally:
        server.close()


def test_an_unreachable_party_is_reported_quickly(tls):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed: nothing listens there
    link = Link(f"wss://127.0.0.1:{port}", "jake", "me", tls_dir=tls, deadline=5)
    t0 = time.perf_counter()
    with pytest.raises(WorkerUnavailable, match="party 'jake' .* cannot connect"):
        link.call("echo", b"x")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ConfigurationError):
        Link(f"wss://127.0.0.1:{port}", "jake", "me")  # no certificates given


def test_the_network_thread_refuses_blocking_calls_on_itself():
    loop = transport.event_loop()
    box = {}

    def inside():
        try:
            transport.run_sync(asyncio.sleep(0))
        except RuntimeError as e:
            box["err"] = str(e)
        done.set()

    done = threading.Event()
    loop.call_soon_threadsafe(inside)
    assert done.wait(5) and "network thread" in box["err"]


def test_ssl_contexts_require_tls13_and_peer_certificates(tls):
    s, c = certs.server_context(tls, "jake"), certs.client_context(tls, "me")
    assert s.verify_mode == c.verify_mode == ssl.CERT_REQUIRED
    assert s.minimum_version == c.minimum_version == ssl.TLSVersion.TLSv1_3


def test_the_commands_make_certificates_and_refuse_public_plaintext(tmp_path):
    import subprocess
    import sys

    run = [sys.executable, "-m", "refimpl"]
    out = subprocess.run([*run, "certs", "--out", str(tmp_path / "c"), "jake", "me"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and (tmp_path / "c" / "jake-key.pem").exists() and "keep ca-key.pem offline" in out.stdout
    # refused by the address check before the worker opens any socket (nothing binds outside loopback)
    out = subprocess.run([*run, "worker", "--name", "jake", "--listen", "0.0.0.0:0", "--insecure-plaintext"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "loopback experiments only; refusing address '0.0.0.0'" in out.stdout
    out = subprocess.run([*run, "worker", "--name", "jake"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--tls-dir" in out.stderr


_dtypes = st.sampled_from(["<i1", "<i2", ">i4", "<i8", "<u1", ">u8", "<f4", ">f8", "|b1"])
_arrays = _dtypes.flatmap(lambda d: st.tuples(st.integers(0, 3), st.integers(0, 5)).map(
    lambda s: (np.arange(s[0] * s[1] * 2) % 7).astype(d).reshape(s[0], 2 * s[1])))
_leaves = st.one_of(st.none(), st.integers(-2**70, 2**70), st.text(max_size=4), st.binary(max_size=12),
                    st.binary(max_size=12).map(bytearray), st.binary(max_size=12).map(lambda b: memoryview(b)[::2]),
                    _arrays, _arrays.map(lambda a: a.T), _arrays.map(lambda a: a[:, ::2]))


@settings(max_examples=60)
@given(msg=st.lists(_leaves, max_size=5), cut=st.integers(1, 40))
def test_encode_parts_are_the_bytes_of_encode_and_frame_alike(msg, cut):
    """The zero-copy path puts exactly :func:`wire.encode`'s bytes on the wire, however the buffers fall."""
    raw = wire.encode(msg)
    parts = wire.encode_parts(msg)
    assert b"".join(parts) == raw
    pieces = [raw[i : i + cut] for i in range(0, len(raw), cut)]  # the same message in arbitrary buffers
    assert list(framing.frames(REQUEST, 3, "k", parts)) == list(framing.frames(REQUEST, 3, "k", raw)) == list(
        framing.frames(REQUEST, 3, "k", pieces))


def test_frames_of_buffers_across_chunk_boundaries_reassemble():
    big = np.arange(CHUNK // 2 + 5, dtype=np.uint32)  # a buffer spanning two chunks between two small ones
    msg = {"a": b"x" * 11, "big": big, "b": np.ones(3)}
    parts = wire.encode_parts(msg)
    asm = framing.Assembler(1 << 30)
    got = [asm.feed(f) for f in framing.frames(REQUEST, 5, "store", parts)]
    assert got[-1] is not None and bytes(got[-1].data) == wire.encode(msg)
    out = wire.decode(got[-1].data)  # a received bytearray: the big array may be a view of it, still writable
    assert (out["big"] == big).all() and out["big"].flags.writeable and out["b"].tolist() == [1.0, 1.0, 1.0]
    out["big"][0] = 7
    assert big[0] == 0 and wire.decode(wire.encode(msg))["big"][0] == 0


@settings(max_examples=40)
@given(data=st.binary(max_size=3000), start=st.integers(0, 2**32 - 1))
@example(data=b"", start=0)
def test_the_wire_checksum_is_zlibs_crc32_whichever_library_computes_it(data, start):
    """wire uses ISA-L's CRC-32 when ``isal`` is installed (the ``net`` extra), else zlib's: the same function."""
    import zlib

    assert wire.crc32(data, start) == zlib.crc32(data, start)
    assert wire.crc32(memoryview(np.frombuffer(data, np.uint8))) == zlib.crc32(data)
