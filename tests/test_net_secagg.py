"""Secure aggregation over the network: lead aggregator, share servers and client processes on 127.0.0.1.

Clients contribute the public test vectors of :func:`synthetic_contribution`, so each released total is checked
exactly against the sum over the clients the aggregator says it summed.
"""

from __future__ import annotations

import json
import random
import threading
import time

import numpy as np
import pytest

from refimpl.errors import ProtocolError
from refimpl.fl.deploy.aggregator import Lead, LeadConfig, client_id_of
from refimpl.fl.deploy.client import NetClient, synthetic_contribution
from refimpl.fl.deploy.share_server import ShareServer
from refimpl.net import certs, transport, wire
from tests._net import Processes

K = 10
D = 64


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    certs.make_deployment(d, ["aggregator", "aggregator-0", "aggregator-1", *(f"client-{i}" for i in range(1, K + 1))])
    return d


def _exact(rec, length=D, clip=1.0):
    expected = sum(synthetic_contribution(u, rec.round, length, clip) for u in rec.clients)
    return rec.total == np.asarray(expected).tolist()


def _run_clients(lead, tls, ids):
    clients = [NetClient(i, lead.url, tls_dir=str(tls), data=None, deadline=60) for i in ids]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    return clients, threads


@pytest.mark.parametrize("degree", [None, 4])
def test_secagg_rounds_release_the_exact_sum(tls, degree):
    lead = Lead(LeadConfig(protocol="secagg", clients=6, rounds=2, synthetic=D, degree=degree, join_timeout=30),
                tls_dir=str(tls)).start()
    try:
        clients, threads = _run_clients(lead, tls, range(1, 7))
        assert lead.done.wait(60)
        for t in threads:
            t.join(10)
        assert [r.aborted for r in lead.history] == [None, None]
        assert all(r.clients == [1, 2, 3, 4, 5, 6] and _exact(r) for r in lead.history)
        assert all(c.rounds_done == 2 and "2 rounds done" in c.finished for c in clients)
    finally:
        lead.close()


def test_additive_rounds_with_two_share_server_processes(tls):
    with Processes() as ps:
        servers = [ps.start("aggregator", "--share-server-index", str(s), "--listen", "127.0.0.1:0", "--tls-dir",
                            str(tls)) for s in range(2)]
        lead = Lead(LeadConfig(protocol="additive", clients=5, rounds=2, synthetic=D, join_timeout=30,
                               share_servers=tuple(s.url for s in servers)), tls_dir=str(tls)).start()
        try:
            clients, threads = _run_clients(lead, tls, range(1, 6))
            assert lead.done.wait(60)
            assert [r.aborted for r in lead.history] == [None, None]
            assert all(r.clients == [1, 2, 3, 4, 5] and _exact(r) for r in lead.history)
        finally:
            lead.close()


def test_a_round_that_cannot_complete_says_why(tls):
    lead = Lead(LeadConfig(protocol="secagg", clients=4, threshold=4, rounds=1, synthetic=D, join_timeout=1.0),
                tls_dir=str(tls)).start()
    try:
        clients, threads = _run_clients(lead, tls, range(1, 4))  # 3 of 4 clients: fewer than t = 4
        assert lead.done.wait(30)
        (rec,) = lead.history
        assert rec.aborted and "fewer than the threshold t=4" in rec.aborted
        for t in threads:
            t.join(10)
        assert all(c.finished is not None for c in clients)  # told, not left hanging
    finally:
        lead.close()


def test_out_of_round_replayed_and_misnamed_messages_are_rejected(tls):
    lead = Lead(LeadConfig(protocol="secagg", clients=3, rounds=1, synthetic=D, join_timeout=3.0), tls_dir=str(tls))
    share = ShareServer(0, tls_dir=str(tls))
    try:
        intruder = transport.Link(lead.url, "aggregator", "client-2", tls_dir=tls, deadline=5)
        out = wire.decode(intruder.call("submit", wire.encode({"op": "submit", "round": 7, "stage": "ShareKeys"})))
        assert out["type"] == "ProtocolError" and "round 7" in out["error"]
        out = wire.decode(intruder.call("submit", wire.encode(["not", "a", "dict"])))
        assert out["type"] == "ProtocolError"
        up = transport.Link(share.url, "aggregator-0", "client-2", tls_dir=tls, deadline=5)
        out = wire.decode(up.call("upload", wire.encode({"op": "upload", "round": 0, "client": 3, "server": 0,
                                                        "payload": b"k" * 16, "prg": "aes128-ctr"})))
        assert "in the name of client 3" in out["error"]
        out = wire.decode(up.call("control", wire.encode({"op": "begin"})))  # only the lead may steer
        assert "may only upload" in out["error"]
        with pytest.raises(ProtocolError, match="not a client"):
            client_id_of("aggregator-1")
        lead.start()  # the aggregator keeps serving the honest clients
        clients, threads = _run_clients(lead, tls, range(1, 4))
        assert lead.done.wait(30)
        assert lead.history[0].aborted is None and _exact(lead.history[0])
    finally:
        lead.close()
        share.close()


def test_30_percent_of_client_processes_killed_at_random_moments(tls, tmp_path):
    """Three of ten client processes are SIGKILLed at random moments of random early rounds: every round either
    releases exactly the sum over the clients it reports or aborts saying why, and the last rounds finish with the
    survivors (t = 6 of K = 10 permits losing 3)."""
    rng = random.Random(13)
    out = tmp_path / "rounds.json"
    with Processes() as ps:
        lead = ps.start("aggregator", "--protocol", "secagg", "--clients", str(K), "--rounds", "10", "--synthetic",
                        "20000", "--tls-dir", str(tls), "--stage-timeout", "20", "--join-timeout", "60", "--out",
                        str(out), "--log-level", "INFO")
        clients = {i: ps.start("client", "--ids", str(i), "--aggregator", lead.url, "--tls-dir", str(tls),
                               "--clients", str(K), "--data", "synthetic", wait_for_url=False)
                   for i in range(1, K + 1)}
        victims = rng.sample(sorted(clients), 3)
        plan = sorted((rng.randrange(0, 3), rng.uniform(0.0, 0.05), v) for v in victims)
        end = time.monotonic() + 90
        for round_, delay, victim in plan:  # at a random moment of a random early round
            mark = f"round {round_} starts with"
            while mark not in "".join(lead.output) and time.monotonic() < end:
                time.sleep(0.005)
            time.sleep(delay)
            clients[victim].kill()
        assert lead.wait(120) in (0, 1)
        records = json.loads(out.read_text())
    assert len(records) == 10
    finished = [r for r in records if r["aborted"] is None]
    for r in records:
        if r["aborted"] is not None:
            assert "fewer than" in r["aborted"]
            continue
        expected = sum(synthetic_contribution(u, r["round"], 20000, 1.0) for u in r["clients"])
        assert r["total"] == np.asarray(expected).tolist()
    last = finished[-1]
    assert last["round"] == 9 and sorted(last["clients"]) == sorted(set(clients) - set(victims))
