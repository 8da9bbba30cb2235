"""The tutorial's federated loop with workers in their own processes (mutual TLS on 127.0.0.1): the same code as
with VirtualWorkers reaches the same model. Every process is killed by the fixture."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax", reason="refimpl.fl.tutorial needs the fl extra (jax)")

from refimpl.fl import data
from refimpl.fl.tutorial import FederatedDataLoader, Model, federate, train
from refimpl.net import certs
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.remote import Session, connect
from tests._net import Processes

PARTIES = ["bob", "alice", "secure_worker", "crypto_provider"]


@pytest.fixture(scope="module")
def remote():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, Processes() as ps:
        certs.make_deployment(tmp, [*PARTIES, "me"])
        procs = {n: ps.worker(n, tmp, "--instructions", "refimpl.fl.tutorial") for n in PARTIES}
        session = Session()
        workers = {n: connect(p.url, name=n, tls_dir=tmp, session=session) for n, p in procs.items()}
        try:
            yield workers, session
        finally:
            for w in workers.values():
                w.close()


def _train(workers, x, y):
    bob, alice, sw, cp = (workers[n] for n in PARTIES)
    loader = FederatedDataLoader(federate((x, y), (bob, alice), seed=0), batch_size=32, shuffle=True, seed=0)
    model = Model.init((784, 16, 10), seed=0)
    model = train(model, loader, epoch=1, lr=0.1, progress=None)  # the tutorial's loop: the model travels
    model = train(model, loader, epoch=2, lr=0.1, average_every=3, aggregator=sw, progress=None)
    return train(model, loader, epoch=3, lr=0.1, average_every="epoch", average="secure", crypto_provider=cp,
                 progress=None)


def test_the_worker_loop_runs_unchanged_on_networked_workers(remote):
    workers, session = remote
    ds = data.load("mnist-10k")
    x, y = ds.x_train[:300], ds.y_train[:300]
    over_network = _train(workers, x, y)
    ledger = Ledger()
    in_process = _train({n: VirtualWorker(n, ledger) for n in PARTIES}, x, y)
    np.testing.assert_allclose(over_network.vector(), in_process.vector(), rtol=0, atol=1e-6)
    assert session.bytes_sent["me"] > 0 and session.messages_by_kind["command"] > 0  # counted in the session
