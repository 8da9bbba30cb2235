"""A shared-tensor operation's instructions go to worker processes without waiting between them.

The workers wait for the objects their peers push (``await`` ids, up to their deadline), and a failure among the
messages sent without waiting is raised by the coordinator's next synchronous request. The worker processes bind
127.0.0.1 and are killed by the fixtures, whatever happens.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from refimpl.errors import PointerError
from refimpl.net import certs
from refimpl.workers import Ledger, VirtualWorker, send, share_among
from refimpl.workers.remote import Session, connect
from tests._net import Processes

DEADLINE = 2.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    certs.make_deployment(d, ["jake", "john", "crypto_provider", "me"])
    return d


@pytest.fixture(scope="module")
def procs(tls):
    with Processes() as ps:
        for name in ("jake", "john", "crypto_provider"):
            ps.worker(name, tls, "--deadline", str(DEADLINE))
        yield {name: p for name, p in zip(("jake", "john", "crypto_provider"), ps.procs)}


def _exec(fn, args, out, **extra):
    return {"op": "exec", "fn": fn, "args": args, "kw": {}, "out": out, **extra}


def test_an_instruction_waits_for_an_object_a_peer_pushes_later(procs, tls):
    a, b = Session(), Session()
    jake_a = connect(procs["jake"].url, name="jake", tls_dir=tls, session=a)
    jake_b = connect(procs["jake"].url, name="jake", tls_dir=tls, session=b)  # another connection to jake
    try:
        x_id, y_id = a.new_id(), a.new_id()
        reply = a.me.post(jake_a, "command", _exec("add", [{"ref": x_id}, 5], y_id, **{"await": [x_id]}))
        time.sleep(0.2)  # jake is waiting for x now
        b.me.deliver(jake_b, "store", {"op": "store", "ids": [x_id], "objs": [np.array([1, 2])]})
        assert reply.result() is None
        assert a.me.pointer(jake_a, y_id).get().tolist() == [6, 7]
        jake_a.control("clear")
    finally:
        jake_a.close()
        jake_b.close()


def test_a_failure_sent_without_waiting_is_raised_by_the_next_request_once(procs, tls):
    s = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=s)
    try:
        missing = s.new_id()
        s.me.post(jake, "command", _exec("add", [{"ref": missing}, 1], s.new_id()))  # no such object: fails there
        with pytest.raises(PointerError, match=f"object {missing} does not exist at 'jake'"):
            send(np.arange(2), jake).get()  # the next synchronous request reports it
        assert send(np.arange(2), jake).get().tolist() == [0, 1]  # reported once
    finally:
        jake.clear_objects()
        jake.close()


def test_an_object_that_never_arrives_fails_within_the_worker_deadline(procs, tls):
    s = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=s)
    try:
        never = s.new_id()
        t0 = time.perf_counter()
        s.me.post(jake, "command", _exec("add", [{"ref": never}, 1], s.new_id(), **{"await": [never]}))
        with pytest.raises(PointerError, match=rf"\[{never}\] did not arrive at 'jake' within the 2 s deadline"):
            jake.control("count")
        assert time.perf_counter() - t0 < DEADLINE + 10
    finally:
        jake.clear_objects()
        jake.close()


def test_shared_products_pipelined_over_processes_equal_in_process(procs, tls):
    """Beaver products, a truncated fixed-point matmul and a comparison (its replies drive the program) sent without
    waiting between instructions give the in-process values; a bad operand fails at the coordinator first."""
    def run(w):
        jake, john, cp = w
        x = share_among(np.array([3, -4, 5, 0]), (jake, john), crypto_provider=cp)
        y = share_among(np.array([7, 8, -9, 2]), (jake, john), crypto_provider=cp)
        z = x * y - 2 * x
        out = [z.get().tolist(), ((x * x) * y).get().tolist(), (x > y).get().tolist(), x.refresh().get().tolist()]
        from refimpl.encoding import FixedPoint

        fp = FixedPoint()
        a = share_among(np.linspace(-1, 1, 6).reshape(2, 3), (jake, john), crypto_provider=cp, encoding=fp)
        b = share_among(np.linspace(0.5, 2, 6).reshape(3, 2), (jake, john), crypto_provider=cp, encoding=fp)
        out.append((a @ b / 3).get().tolist())
        return out

    local = Ledger()
    expected = run([VirtualWorker(n, local) for n in ("jake", "john", "crypto_provider")])
    s = Session()
    w = [connect(procs[n].url, name=n, tls_dir=tls, session=s) for n in ("jake", "john", "crypto_provider")]
    try:
        got = run(w)
        assert got[:4] == expected[:4] == [[15, -24, -55, 0], [63, 128, -225, 0], [0, 0, 1, 0], [3, -4, 5, 0]]
        assert np.allclose(got[4], expected[4], atol=1e-4)
    finally:
        for x in w:
            x.clear_objects()
            x.close()


def test_in_process_an_awaited_object_must_already_be_there():
    ledger = Ledger()
    jake = VirtualWorker("jake", ledger)
    with pytest.raises(PointerError, match="object 99 does not exist at 'jake'"):
        ledger.me.deliver(jake, "command", _exec("add", [{"ref": 99}, 1], 100, **{"await": [99]}))


# ---------------------------------------------------------------- batches: several messages in one transport message
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from refimpl.errors import ProtocolError  # noqa: E402
from refimpl.workers import batch  # noqa: E402

_kinds = st.sampled_from(["command", "store", "share", "dealer", "open", "delete"])


@given(st.lists(st.tuples(_kinds, st.binary(max_size=64)), min_size=1, max_size=8))
def test_a_batch_decodes_to_its_messages(messages):
    raw = b"".join(batch.encode(messages))
    assert [(k, bytes(m)) for k, m in batch.decode(raw)] == messages
    replies = [None if i % 3 == 0 else m for i, (_, m) in enumerate(messages)]
    got = batch.decode_replies(b"".join(batch.encode_replies(replies)), len(replies))
    assert [None if r is None else bytes(r) for r in got] == replies


@given(st.lists(st.tuples(_kinds, st.binary(min_size=1, max_size=64)), min_size=1, max_size=4), st.data())
def test_a_truncated_batch_or_reply_is_refused(messages, data):
    raw = b"".join(batch.encode(messages))
    cut = data.draw(st.integers(1, len(raw) - 1))
    try:
        got = batch.decode(raw[:cut])
    except ProtocolError:
        pass
    else:  # a cut that falls exactly between messages leaves a shorter, well-formed batch
        assert [(k, bytes(m)) for k, m in got] == messages[: len(got)] and len(got) < len(messages)
    reply = b"".join(batch.encode_replies([m for _, m in messages]))
    with pytest.raises(ProtocolError, match="malformed batch reply|answered with"):
        batch.decode_replies(reply[: len(reply) - 1], len(messages))
    with pytest.raises(ProtocolError, match="answered with"):
        batch.decode_replies(reply, len(messages) + 1)


def test_a_worker_refuses_a_batch_holding_a_control_request_and_keeps_serving(procs, tls):
    s = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=s)
    try:
        raw = b"".join(batch.encode([("control", b"x"), ("delete", b"y")]))
        with pytest.raises(ProtocolError, match="may not hold a 'control' message"):
            jake.link.call(batch.KIND, raw)
        assert send(np.arange(3), jake).get().tolist() == [0, 1, 2]
    finally:
        jake.close()


def test_messages_sent_without_waiting_travel_in_batches_and_are_counted_one_by_one(procs, tls):
    s = Session(keep=None)
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=s)
    try:
        before = dict(jake.control("links") and {tuple(k): tuple(v) for k, v in jake.control("links")})
        ids = [s.new_id() for _ in range(50)]
        x = send(np.arange(4), jake)
        replies = [s.me.post(jake, "command", _exec("add", [{"ref": x.id}, i], ids[i])) for i in range(50)]
        assert [r.result() for r in replies] == [None] * 50
        assert [s.me.pointer(jake, ids[i]).get().tolist() for i in (0, 49)] == [[0, 1, 2, 3], [49, 50, 51, 52]]
        after = {tuple(k): tuple(v) for k, v in jake.control("links")}
        got = after[("me", "jake", "command")][0] - before.get(("me", "jake", "command"), (0, 0))[0]
        assert got == 52  # every command recorded as itself at the worker, batched or not
        assert s.links()[("me", "jake", "command")][0] == 52
    finally:
        jake.clear_objects()
        jake.close()


def test_a_failed_push_of_an_opening_is_reported_by_the_next_command_at_its_sender(procs, tls):
    """mask_push replies before john acknowledged the piece; john refuses it (the id is taken), and jake reports
    that with its next command from the same coordinator."""
    s = Session()
    jake = connect(procs["jake"].url, name="jake", tls_dir=tls, session=s)
    john = connect(procs["john"].url, name="john", tls_dir=tls, session=s)
    try:
        taken = send(np.array([9]), john)
        x, m = send(np.array([5, 6]), jake), send(np.array([1, 1]), jake)
        own = s.new_id()
        s.me.post(jake, "command", {"op": "exec", "fn": "mask_push", "args": [], "kw": {
            "xs": [{"ref": x.id}], "masks": [{"ref": m.id}], "sign": -1, "party": 0, "modulus": 2**64,
            "peers": ["john"], "ids": [taken.id], "own": own}})
        with pytest.raises(PointerError, match=f"at 'jake': a push of an earlier instruction failed: .*object id "
                                               f"{taken.id} is already in use at 'john'"):
            x.copy()
        assert taken.get().tolist() == [9]  # never overwritten
        assert x.get().tolist() == [5, 6]  # reported once; jake keeps serving
    finally:
        for w in (jake, john):
            w.clear_objects()
            w.close()


def test_large_messages_sent_without_waiting_stay_in_order_with_small_ones(procs, tls):
    """Shares of 80,000 elements (640 kB: the bulk channel, by a helper thread) and the small instructions and
    deletes around them reach each worker in the order they were made."""
    s = Session()
    w = [connect(procs[n].url, name=n, tls_dir=tls, session=s) for n in ("jake", "john", "crypto_provider")]
    try:
        n = 80_000
        for _ in range(3):
            x = share_among(np.arange(n) % 1000, w[:2], crypto_provider=w[2])
            y = share_among(np.arange(n) % 777, w[:2], crypto_provider=w[2])
            z = (x * y + 3) * 2
            del x, y
            assert (z.get() == ((np.arange(n) % 1000) * (np.arange(n) % 777) + 3) * 2).all()
        assert [len(v.objects) for v in w] == [0, 0, 0]  # the deletes landed before these counts
    finally:
        for v in w:
            v.clear_objects()
            v.close()


def test_a_worker_stopped_while_an_instruction_waits_exits_at_once(tls):
    import signal

    with Processes() as ps:
        bob = ps.worker("jake", tls, "--deadline", "60")
        s = Session()
        jake = connect(bob.url, name="jake", tls_dir=tls, session=s)
        never = s.new_id()
        s.me.post(jake, "command", _exec("add", [{"ref": never}, 1], s.new_id(), **{"await": [never]}))
        time.sleep(0.3)  # jake is waiting for it now
        t0 = time.perf_counter()
        bob.proc.send_signal(signal.SIGTERM)
        assert bob.wait(20) == 0
        assert time.perf_counter() - t0 < 10  # not the 60 s deadline
