"""Encrypted training across processes: PointerTrainer drives networked workers (mutual TLS on 127.0.0.1) with the
same code as in process; every worker process is killed by the fixture, whatever happens."""

from __future__ import annotations

import numpy as np

from refimpl import nn
from refimpl.mpc.training import PlaintextTwin
from refimpl.workers.encrypted_training import PointerTrainer
from tests._net import Processes

PARTIES = ["jake", "secure_worker", "alice", "crypto_provider"]


def test_pointer_trainer_runs_unchanged_over_networked_workers(tmp_path):
    from refimpl.net import certs
    from refimpl.workers.remote import Session, connect, deployment_links

    certs.make_deployment(tmp_path, [*PARTIES, "me"])
    rng = np.random.default_rng(4)  # test data only
    params = nn.init_params((6, 4, 3), seed=3)
    x, y = rng.uniform(0, 1, (5, 6)), rng.integers(0, 3, 5)
    with Processes() as ps:
        procs = {name: ps.worker(name, tmp_path) for name in PARTIES}
        session = Session(keep=None)
        w = {n: connect(p.url, name=n, tls_dir=tmp_path, session=session) for n, p in procs.items()}
        try:
            run = PointerTrainer(params, compute=(w["secure_worker"], w["alice"]),
                                 crypto_provider=w["crypto_provider"], lr=0.5, loss="mse")
            run.step(w["jake"], x, y)
            got = run.get()
            links = deployment_links(session, *w.values(), me="me")  # every socket's count, from every process
        finally:
            for worker in w.values():
                worker.close()
    twin = PlaintextTwin(params, lr=0.5, loss="mse", step_bits=run.step_bits)
    twin.step(x, y)
    assert max(np.abs(got[k] - twin.params[k]).max() for k in params) < 1e-3
    opened = {k for k in links if k[2] == "open"}
    assert opened and {k[0] for k in opened} == {k[1] for k in opened} == {"secure_worker", "alice"}
    assert any(k[0] == "crypto_provider" and k[2] == "dealer" for k in links)
    # the data owner gets its batch placed and the instruction to share it, and sends shares to the parties only
    # (the deletes freeing its batch are sent without waiting, so they may not be counted yet)
    received = {k for k in links if k[1] == "jake"}
    assert {("me", "jake", "store"), ("me", "jake", "command")} <= received
    assert received <= {("me", "jake", kind) for kind in ("store", "command", "delete")}
    assert {k for k in links if k[0] == "jake"} <= {("jake", "secure_worker", "share"), ("jake", "alice", "share"),
                                                   ("jake", "me", "reply")}
    assert {("jake", "secure_worker", "share"), ("jake", "alice", "share")} <= set(links)
