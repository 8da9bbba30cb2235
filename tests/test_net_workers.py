"""Workers in their own processes: the tutorial's pointer world, shared tensors and their ledger over mutual TLS.

The worker processes bind 127.0.0.1 and are killed by the fixtures, whatever happens.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import numpy as np
import pytest

from refimpl.encoding import FixedPoint
from refimpl.errors import PointerError, WorkerUnavailable
from refimpl.net import certs, wire
from refimpl.workers import VirtualWorker, send, share_among
from refimpl.workers.remote import RemoteWorker, Session, connect, deployment_links
from tests._net import Processes

PARTIES = ["jake", "john", "secure_worker", "crypto_provider"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    certs.make_deployment(d, [*PARTIES, "bob", "me"])
    return d


@pytest.fixture(scope="module")
def procs(tls):
    with Processes() as ps:
        for name in PARTIES:
            ps.worker(name, tls)
        yield {name: p for name, p in zip(PARTIES, ps.procs)}


def _connect(procs, tls, session, **kw):
    return {n: connect(p.url, name=n, tls_dir=tls, session=session, **kw) for n, p in procs.items()}


def _close(workers):
    for w in workers.values():
        w.clear_objects()
        w.close()


def test_the_tutorials_pointer_steps_run_across_processes(procs, tls):
    w = _connect(procs, tls, Session())
    jake, john = w["jake"], w["john"]
    try:
        x = send(np.array([1, 2, 3, 4, 5]), jake)
        assert isinstance(jake, RemoteWorker) and len(jake.objects) == 1
        assert (x + x).get().tolist() == [2, 4, 6, 8, 10]
        assert (np.array([1, 1, 1, 1, 1]) - x).get().tolist() == [0, -1, -2, -3, -4]
        y = x.move(john)  # straight from jake's process to john's
        assert len(jake.objects) == 0 and y.id in john.objects
        with pytest.raises(PointerError, match="stale"):
            x.get()
        c = send(np.array([7, 8]), jake).send(john)  # me -> john -> jake
        assert john.objects[c.id].startswith("Pointer(john -> jake")
        c.remote_get()  # john fetches from jake directly
        assert john.objects[c.id].tolist() == [7, 8]
        assert c.get().tolist() == [7, 8]
        d = y.copy()
        assert d.get().tolist() == y.get().tolist() == [1, 2, 3, 4, 5]
        chain = send(np.array([5]), jake).send(john)
        assert chain.get().get().tolist() == [5]  # the pointer comes back, then the object
        z = send(np.arange(3), jake)
        del z
        gc.collect()
        assert len(jake.objects) == 0  # the last pointer went: jake freed it
        gone = send(np.arange(3), john)
        john.clear_objects()
        assert len(john.objects) == 0
        with pytest.raises(PointerError, match="does not exist at 'john'"):
            gone.get()
    finally:
        _close(w)


def test_errors_raised_by_a_remote_worker_keep_their_type(procs, tls):
    w = _connect(procs, tls, Session())
    try:
        p = send(np.arange(3), w["jake"])
        q = send(np.arange(4), w["jake"])
        with pytest.raises(ValueError, match="at 'jake'"):
            (p + q).get()  # shapes (3,) and (4,) do not broadcast: reported by jake, raised here
        with pytest.raises(ValueError, match="different ledgers|not a worker"):
            p.move(VirtualWorker("local"))
        # a command disguised as a share push (run on the network thread) is refused, not executed
        out = wire.decode(w["jake"].link.call("share", wire.encode({"op": "get", "id": p.id})))
        assert "may only store or delete objects, not 'get'" in out["error"]
        assert p.get().tolist() == [0, 1, 2]
    finally:
        _close(w)


def _computation(w, me_sends=True):
    """The same shared-tensor computation, in process or across processes."""
    jake, john, sw, cp = (w[n] for n in PARTIES)
    x = send(np.array([25, 50, 75]), jake).share(jake, john, sw, crypto_provider=cp)
    y = share_among(np.array([1, 2, 3]), (jake, john, sw), crypto_provider=cp)
    out = [(x + y).get().tolist(), (x * y).get().tolist(), (x * y - 10 * x + 1).get().tolist()]
    fp = FixedPoint()
    a = share_among(np.array([[0.5, -1.25]]), (jake, john), crypto_provider=cp, encoding=fp)
    b = share_among(np.array([[2.0], [4.0]]), (jake, john), crypto_provider=cp, encoding=fp)
    out.append((a @ b).get().tolist())
    del x, y, a, b
    gc.collect()
    return out


def test_shared_tensors_run_unchanged_and_the_ledgers_match_in_process(procs, tls):
    """Openings go between the workers directly; every byte each socket carried, per (sender, receiver, kind),
    equals the in-process ledger of the same computation."""
    first = 10**9
    local = Session(first_id=first, keep=None)
    lw = {n: VirtualWorker(n, local) for n in PARTIES}
    _ = local.me
    expected = _computation(lw)
    remote = Session(first_id=first, keep=None)
    w = _connect(procs, tls, remote)
    try:
        before = deployment_links(remote, *w.values(), me="me")  # the worker processes served earlier tests
        got = _computation(w)
        assert got == expected == [[26, 52, 78], [25, 100, 225], [-224, -399, -524], [[-4.0]]]
        after, end = None, time.monotonic() + 20
        while time.monotonic() < end:  # deletes are sent without waiting: read the counters once they have landed
            now = deployment_links(remote, *w.values(), me="me")
            if now == after and all(len(x.objects) == 0 for x in w.values()):
                break
            after = now
            time.sleep(0.1)
        net = {k: (m - before.get(k, (0, 0))[0], b - before.get(k, (0, 0))[1]) for k, (m, b) in after.items()}
        net = {k: v for k, v in net.items() if v != (0, 0)}
        assert net == local.links()
        opened = {k: v for k, v in net.items() if k[2] == "open"}
        assert opened and all(k[0] != "me" and k[1] != "me" for k in opened)  # never through the coordinator
        assert all(k[0] == "crypto_provider" for k in net if k[2] == "dealer")
        assert all(len(obj) == 0 for obj in (x.objects for x in w.values()))  # every share freed
    finally:
        _close(w)


def test_pushes_in_a_round_are_concurrent_but_their_failures_are_raised(procs, tls):
    session = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=session)
    try:
        x = send(np.array([1]), jake)
        with pytest.raises(PointerError, match=f"object id {x.id} is already in use at 'jake'"):
            with session.round():
                session.me.deliver(jake, "share", {"op": "store", "ids": [x.id], "objs": [np.array([2])]})
                assert session.pending_pushes()  # sent, not yet acknowledged
        assert x.get().tolist() == [1]  # refused: never overwritten
        assert session.pending_pushes() is None
    finally:
        jake.close()


def test_a_worker_keeps_one_connection_per_peer(procs, tls):
    w = _connect(procs, tls, Session())
    try:
        before = w["jake"].control("dialed").get("john", 0)
        x = send(np.arange(5), w["jake"])
        for _ in range(10):
            x = x.move(w["john"] if x.location is w["jake"] else w["jake"])
        assert x.get().tolist() == [0, 1, 2, 3, 4]
        assert w["jake"].control("dialed")["john"] == max(before, 1)  # not one TLS handshake per message
        assert w["john"].control("dialed")["jake"] >= 1
    finally:
        _close(w)


def test_no_remote_leak_after_10000_send_drop_cycles(procs, tls):
    session = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=session)
    try:
        base = len(jake.objects)
        for i in range(10_000):
            p = send(np.array([i]), jake)
            del p
        assert len(jake.objects) == base  # the deletes were sent before this request, on the same connection
        assert session.messages_by_kind["delete"] == 10_000
    finally:
        jake.close()


def test_reconnection_resumes_the_session_with_the_objects_kept(procs, tls):
    session = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=session)
    try:
        x = send(np.array([4, 2]), jake)
        jake.link.drop()  # as a network failure would
        time.sleep(0.1)
        assert x.get().tolist() == [4, 2]  # reconnected: same worker process, same objects
    finally:
        jake.close()


def test_a_restarted_worker_fails_clearly_instead_of_resuming(tls):
    with Processes() as ps:
        bob = ps.worker("bob", tls)
        port = bob.port
        w = connect(bob.url, name="bob", tls_dir=tls, session=Session(), deadline=10)
        x = send(np.array([1]), w)
        bob.kill()
        with pytest.raises(WorkerUnavailable, match="party 'bob'"):
            x.get()
        ps.start("worker", "--name", "bob", "--listen", f"127.0.0.1:{port}", "--tls-dir", str(tls))
        with pytest.raises(WorkerUnavailable, match="restarted .* objects it held are lost"):
            x.copy()


def test_a_killed_worker_gives_an_error_within_the_deadline_never_a_hang(tls):
    with Processes() as ps:
        bob = ps.worker("bob", tls)
        w = connect(bob.url, name="bob", tls_dir=tls, session=Session(), deadline=20)
        big = np.zeros(48 << 20, dtype=np.uint8)
        box: dict[str, object] = {}

        def transfer():
            t0 = time.perf_counter()
            try:
                for _ in range(50):
                    send(big, w).get()
                box["result"] = "finished"
            except WorkerUnavailable as e:
                box["result"] = e
            box["seconds"] = time.perf_counter() - t0

        t = threading.Thread(target=transfer)
        t.start()
        time.sleep(0.5)
        killed = time.perf_counter()
        os.kill(bob.proc.pid, signal.SIGKILL)  # mid-transfer
        t.join(20)
        assert not t.is_alive(), "the caller hung"
        assert isinstance(box["result"], WorkerUnavailable) and "party 'bob'" in str(box["result"])
        assert time.perf_counter() - killed < 20


def test_a_frozen_worker_is_detected_by_ping_not_by_message_size(tls):
    """SIGSTOP: the TCP connection stays up but nothing answers; pings expire long before the 60 s deadline."""
    with Processes() as ps:
        bob = ps.worker("bob", tls)
        w = connect(bob.url, name="bob", tls_dir=tls, session=Session(), deadline=60, ping_interval=0.2,
                    ping_timeout=2.0)
        x = send(np.array([3]), w)
        os.kill(bob.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(100):
                if "T (stopped)" in open(f"/proc/{bob.proc.pid}/status").read():
                    break
                time.sleep(0.01)
            t0 = time.perf_counter()
            with pytest.raises(WorkerUnavailable, match="party 'bob'"):
                x.get()
            assert time.perf_counter() - t0 < 20  # the pings' 2 s, not the 60 s deadline
        finally:
            os.kill(bob.proc.pid, signal.SIGCONT)


def _mlp_bound(params, x, frac_bits=16):
    """Worst-case logit error of the shared MLP: each weight, bias and input is encoded within half a unit
    (2**-17), each product's truncation adds under one unit (2**-16), ReLU is exact and 1-Lipschitz."""
    half, unit = 2.0 ** -(frac_bits + 1), 2.0 ** -frac_bits
    h, err = np.abs(np.asarray(x, np.float64)), np.full(np.shape(x), half)
    layers = sum(1 for k in params if k.startswith("w"))
    for i in range(layers):
        w = np.abs(np.asarray(params[f"w{i}"], np.float64))
        err = err @ (w + half) + h @ np.full(w.shape, half) + unit + half
        h = h @ w + np.abs(params[f"b{i}"])
    return err


def test_an_mlp_with_relu_runs_on_worker_processes_as_in_process(procs, tls):
    """A ReLU MLP on shares held by two worker processes: logits within the bound of plaintext, as in process
    (and as :class:`~refimpl.mpc.inference.EncryptedMLP`), with the same messages and bytes on every link."""
    from refimpl.demos.network import shared_mlp_logits
    from refimpl.mpc.inference import EncryptedMLP, plaintext_logits

    params = {"w0": np.sin(np.arange(60.0)).reshape(12, 5) / 3, "b0": np.linspace(-0.4, 0.4, 5),
              "w1": np.cos(np.arange(15.0)).reshape(5, 3), "b1": np.array([0.1, -0.2, 0.0])}
    x = np.vstack([(np.arange(72.0).reshape(6, 12) % 5) / 5 - 0.4, np.zeros((1, 12))])
    plain, bound = plaintext_logits(params, x), _mlp_bound(params, x)
    hidden = x @ params["w0"] + params["b0"]
    assert (hidden < 0).any() and (hidden > 0).any()  # the ReLU matters

    first = 10**9
    local = Session(first_id=first, keep=None)
    lw = {n: VirtualWorker(n, local) for n in PARTIES}
    _ = local.me
    in_process = shared_mlp_logits(params, x, (lw["jake"], lw["john"]), lw["crypto_provider"])
    remote = Session(first_id=first, keep=None)
    w = _connect(procs, tls, remote)
    try:
        before = deployment_links(remote, *w.values(), me="me")
        got = shared_mlp_logits(params, x, (w["jake"], w["john"]), w["crypto_provider"])
        after, end = None, time.monotonic() + 20
        while time.monotonic() < end:
            now = deployment_links(remote, *w.values(), me="me")
            if now == after and all(len(v.objects) == 0 for v in w.values()):
                break
            after = now
            time.sleep(0.1)
        net = {k: (m - before.get(k, (0, 0))[0], b - before.get(k, (0, 0))[1]) for k, (m, b) in after.items()}
        assert {k: v for k, v in net.items() if v != (0, 0)} == local.links()
        assert all(len(v.objects) == 0 for v in w.values())  # every share and comparison state freed
    finally:
        _close(w)
    assert (np.abs(got - plain) <= bound).all() and (np.abs(in_process - plain) <= bound).all()
    assert np.abs(got - EncryptedMLP(params, n=2).logits(x)).max() <= 2 * bound.max()
    assert (got.argmax(1) == plain.argmax(1)).all()
