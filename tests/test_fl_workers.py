"""The tutorial's federated loop on workers (refimpl.fl.tutorial): data, loader, model pointers, averaging, and its
agreement with the vmapped FedAvg engine."""

import numpy as np
import pytest

pytest.importorskip("jax", reason="refimpl.fl.tutorial needs the fl extra (jax)")
optax = pytest.importorskip("optax", reason="the engine comparison needs the fl extra (optax)")

from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl.errors import PartyCountError, PointerError
from refimpl.fl import client, data, partition, server
from refimpl.fl import model as mlp
from refimpl.fl.tutorial import (
    FederatedDataLoader,
    Model,
    TensorDataset,
    federate,
    progress_line,
    secure_average,
    train,
    trusted_average,
)
from refimpl.fl.tutorial import test_line as format_test_line
from refimpl.fl.tutorial.instructions import call
from refimpl.workers import Ledger, VirtualWorker, ops, send


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist-10k")


def _workers(*names):
    ledger = Ledger()
    return ledger, [VirtualWorker(n, ledger) for n in names]


def _fetch(ptr):
    return ptr.copy().get()


# ---------------------------------------------------------------- data and loader
@settings(max_examples=20)
@given(n=st.integers(2, 60), k=st.integers(1, 3), b=st.integers(1, 17), shuffle=st.booleans(),
       kind=st.sampled_from(["iid", "shards"]))
@example(n=2, k=2, b=1, shuffle=True, kind="iid")
def test_loader_visits_every_example_once_per_epoch(n, k, b, shuffle, kind):
    k = min(k, n)
    _, people = _workers(*[f"w{i}" for i in range(k)])
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) % 4
    fed = federate((x, y), people, partition=kind, seed=1, shards_per_client=1)
    assert len(fed) == n and sum(fed.sizes) == n
    loader = FederatedDataLoader(fed, batch_size=b, shuffle=shuffle, seed=3)
    seen, locations = [], []
    for d, t in loader:
        assert d.location is t.location
        xs, ys = d.get(), t.get()
        rows = (xs[:, 0] // 3).astype(int)
        assert 1 <= len(ys) <= b and np.array_equal(ys, rows % 4)  # targets stay paired with their examples
        seen += rows.tolist()
        locations.append(d.location.name)
    assert sorted(seen) == list(range(n)) and len(locations) == len(loader)
    assert locations == sorted(locations, key=lambda name: int(name[1:]))  # worker after worker
    for w, p in zip(people, fed.partition):  # each worker holds exactly its part of the partition
        assert np.array_equal(_fetch(fed[w.name][0]), x[p]) and np.array_equal(_fetch(fed[w.name][1]), y[p])


def test_loader_order_is_the_engines_and_changes_per_epoch():
    _, people = _workers("bob", "alice")
    y = np.arange(50) % 10
    fed = TensorDataset(np.zeros((50, 2)), y).federate(people, partition="dirichlet", seed=0, alpha=1.0)
    loader = FederatedDataLoader(fed, batch_size=4, shuffle=True, seed=7)
    length = max(fed.sizes)
    for k, n in enumerate(fed.sizes):
        positions, valid = client.batch_order(client.epoch_keys(7, 2, k, 1)[0], n, length, 4)
        expected = np.asarray(positions)[np.asarray(valid)]
        assert np.array_equal(np.concatenate(loader.order(2, k)), expected)
    assert not np.array_equal(np.concatenate(loader.order(0, 0)), np.concatenate(loader.order(1, 0)))
    assert np.array_equal(np.concatenate(FederatedDataLoader(fed, batch_size=4).order(5, 1)), np.arange(fed.sizes[1]))


def test_federate_and_loader_reject_bad_input():
    _, (bob, alice) = _workers("bob", "alice")
    x, y = np.zeros((6, 2)), np.arange(6)
    with pytest.raises(TypeError, match="workers"):
        federate((x, y), [bob, "alice"])
    with pytest.raises(ValueError, match="distinct"):
        federate((x, y), [bob, bob])
    with pytest.raises(PartyCountError):
        federate((x, y), [])
    with pytest.raises(ValueError, match="unknown partition"):
        federate((x, y), [bob, alice], partition="nope")
    with pytest.raises(TypeError, match="integer labels"):
        TensorDataset(x, np.zeros(6))
    with pytest.raises(ValueError, match="batch_size"):
        FederatedDataLoader(federate((x, y), [bob, alice]), batch_size=0)
    with pytest.raises(ValueError, match="average_every"):
        FederatedDataLoader(federate((x, y), [bob, alice]), average_every=0)


# ---------------------------------------------------------------- model pointers and train_step
def test_train_step_is_registered_and_only_registered_instructions_run():
    assert {"train_step", "take_rows", "model_mean", "model_vector"} <= set(ops.instructions())
    _, (bob,) = _workers("bob")
    with pytest.raises(ValueError, match="unknown operation"):
        call("exec_python", bob, "print(1)")


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_train_step_is_one_sgd_step_of_the_reference_gradient(backend):
    _, (bob,) = _workers("bob")
    rng = np.random.default_rng(0)
    x, y = rng.random((9, 5)).astype(np.float32), rng.integers(0, 3, 9)
    model = Model.init((5, 4, 3), seed=1)
    ptr = model.send(bob)
    loss_ptr = ptr.train_step(send(x, bob), send(y, bob), lr=0.5, backend=backend)
    trained = ptr.get()
    ref_loss, grads = mlp.numpy_loss_and_grad(model.params, x, y)
    assert float(loss_ptr.get()) == pytest.approx(ref_loss, rel=1e-5)
    for k, p in model.params.items():
        np.testing.assert_allclose(trained.params[k], p - 0.5 * grads[k], atol=2e-6)
    with pytest.raises(PointerError):
        ptr.get()


def test_model_pointer_errors():
    _, (bob, alice) = _workers("bob", "alice")
    ptr = Model.init((2, 2), seed=0).send(bob)
    x, y = send(np.ones((1, 2), np.float32), alice), send(np.array([0]), alice)
    with pytest.raises(ValueError, match="move it first"):
        ptr.train_step(x, y, lr=0.1)
    with pytest.raises(ValueError, match="backend"):
        ptr.train_step(x, y, lr=0.1, backend="torch")
    bx, by = send(np.ones((1, 3), np.float32), bob), send(np.array([0]), bob)
    with pytest.raises(ValueError, match="features"):
        ptr.train_step(bx, by, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        ptr.train_step(send(np.ones((1, 2), np.float32), bob), send(np.array([0]), bob), lr=-1.0)


def test_tutorial_loop_is_sequential_sgd_across_workers():
    """Without averaging, one model visits each batch's worker in the loader's order: the same as local SGD."""
    _, people = _workers("bob", "alice")
    rng = np.random.default_rng(1)
    x, y = rng.random((30, 6)).astype(np.float32), rng.integers(0, 3, 30)
    fed = federate((x, y), people, seed=2)
    loader = FederatedDataLoader(fed, batch_size=4, shuffle=True, seed=2)
    lines = []
    trained = train(Model.init((6, 5, 3), seed=0), loader, epoch=1, lr=0.3, backend="numpy", log_interval=3,
                    out=lines.append)
    p = Model.init((6, 5, 3), seed=0).params
    for k, part in enumerate(fed.partition):
        for rows in loader.order(0, k):
            _, g = mlp.numpy_loss_and_grad(p, x[part][rows], y[part][rows])
            p = {n: (v.astype(np.float64) - 0.3 * g[n]).astype(np.float32) for n, v in p.items()}
    for n in p:
        np.testing.assert_array_equal(trained.params[n], p[n])
    assert len(lines) == -(-len(loader) // 3) and lines[0].startswith(f"Train Epoch: 1 [0/{len(loader) * 4} (0%)]")


@pytest.mark.parametrize("every", [1, 2, 5])
def test_averaging_every_n_batches_is_fedavg_over_those_batches(every):
    """Each round every worker trains the current model on its next ``every`` batches; the copies are averaged
    weighted by the workers' sizes (a worker with no batches left sits the round out)."""
    ledger, (w0, w1, w2, sw) = _workers("w0", "w1", "w2", "secure_worker")
    rng = np.random.default_rng(4)
    x, y = rng.random((41, 6)).astype(np.float32), rng.integers(0, 3, 41)
    fed = federate((x, y), (w0, w1, w2), partition="dirichlet", alpha=2.0, seed=3)
    loader = FederatedDataLoader(fed, batch_size=3, shuffle=True, seed=1)
    lines = []
    loader = FederatedDataLoader(fed, batch_size=3, shuffle=True, seed=1, average_every=every)  # or train(average_every=)
    trained = train(Model.init((6, 4, 3), seed=0), loader, epoch=1, lr=0.2, backend="numpy", aggregator=sw,
                    out=lines.append, log_interval=1)
    assert len(lines) == len(loader)  # every batch trained once
    p = {k: v.astype(np.float64) for k, v in Model.init((6, 4, 3), seed=0).params.items()}
    orders = [loader.order(0, k) for k in range(3)]
    for r in range(-(-max(map(len, orders)) // every)):
        copies, weights = [], []
        for k, part in enumerate(fed.partition):
            if not orders[k][r * every:(r + 1) * every]:
                continue
            q = {n: v.astype(np.float32) for n, v in p.items()}
            for rows in orders[k][r * every:(r + 1) * every]:
                _, g = mlp.numpy_loss_and_grad(q, x[part][rows], y[part][rows])
                q = {n: (v.astype(np.float64) - 0.2 * g[n]).astype(np.float32) for n, v in q.items()}
            copies.append(q)
            weights.append(len(part))
        w = np.asarray(weights, np.float64) / sum(weights)
        p = {n: sum(wk * c[n].astype(np.float64) for wk, c in zip(w, copies)).astype(np.float32) for n in p}
    for n in p:
        np.testing.assert_allclose(trained.params[n], p[n], rtol=0, atol=1e-6)


def test_progress_bar_mode_and_bad_arguments(capsys):
    _, (bob, alice, sw) = _workers("bob", "alice", "sw")
    fed = federate((np.zeros((8, 2), np.float32), np.arange(8) % 2), (bob, alice))
    loader = FederatedDataLoader(fed, batch_size=2)
    lines = []
    train(Model.init((2, 2)), loader, progress="bar", out=lines.append)
    assert lines == [] and "Train Epoch 1" in capsys.readouterr().err  # tqdm writes to stderr
    with pytest.raises(ValueError, match="progress"):
        train(Model.init((2, 2)), loader, progress="dots")
    with pytest.raises(ValueError, match="aggregator"):
        train(Model.init((2, 2)), loader, average_every=1)
    with pytest.raises(ValueError, match="average must be"):
        train(Model.init((2, 2)), loader, average="median")
    with pytest.raises(ValueError, match="average_every"):
        train(Model.init((2, 2)), loader, average_every=0, aggregator=sw)


def test_progress_and_test_lines_have_the_tutorials_format():
    assert progress_line(1, 0, 60032, 0.0, 2.3068091) == "Train Epoch: 1 [0/60032 (0%)]  Loss: 2.306809"
    assert format_test_line(0.24281, 9300, 10000) == "Test set: Average loss: 0.2428, Accuracy: 9300/10000 (93%)"


# ---------------------------------------------------------------- averaging
def _spread_models(people, seed):
    models = [Model.init((7, 4, 3), seed=seed + i) for i in range(len(people))]
    return models, [m.send(w) for m, w in zip(models, people)]


def test_trusted_average_moves_the_models_and_averages_at_the_aggregator():
    ledger, (bob, alice, sw) = _workers("bob", "alice", "secure_worker")
    models, ptrs = _spread_models([bob, alice], 0)
    before = ledger.received("secure_worker")
    avg = trusted_average(ptrs, sw, weights=[1, 3])
    for k in avg.params:
        expected = (models[0].params[k].astype(np.float64) + 3 * models[1].params[k]) / 4
        np.testing.assert_allclose(avg.params[k], expected, rtol=1e-6, atol=1e-7)
    assert ledger.received("secure_worker") - before >= 2 * models[0].num_params * 4  # both models reached it
    assert all(p.pointer.stale for p in ptrs) and len(sw.objects) == 0 and len(bob.objects) == 0


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), weights=st.lists(st.integers(1, 5000), min_size=2, max_size=3),
       frac_bits=st.sampled_from([16, 24]))
@example(seed=0, weights=[1, 1], frac_bits=16)
def test_secure_average_is_within_its_documented_bound(seed, weights, frac_bits):
    from refimpl.encoding import FixedPoint

    ledger, people = _workers(*[f"w{i}" for i in range(len(weights))], "crypto_provider")
    *holders, provider = people
    models, ptrs = _spread_models(holders, seed)
    avg = secure_average(ptrs, provider, weights, encoding=FixedPoint(frac_bits=frac_bits))
    w = np.asarray(weights, np.float64) / sum(weights)
    expected = sum(wk * m.vector() for wk, m in zip(w, models))
    bound = len(weights) * 2.0 ** -(frac_bits + 1) + np.abs(expected) * 2.0 ** -24  # + final float32 rounding
    assert np.all(np.abs(avg.vector() - expected) <= bound)
    assert ledger.messages_by_kind["share"] > 0 and ledger.received("crypto_provider") == 0
    assert not any(p.pointer.stale for p in ptrs)  # the models stay at their workers


def test_secure_average_needs_two_distinct_holders():
    _, (bob, cp) = _workers("bob", "cp")
    with pytest.raises(PartyCountError):
        secure_average([Model.init((2, 2)).send(bob)], cp)
    with pytest.raises(ValueError, match="own worker"):
        secure_average([Model.init((2, 2)).send(bob), Model.init((2, 2)).send(bob)], cp)


# ---------------------------------------------------------------- agreement with the vmapped engine
@pytest.mark.parametrize("average", ["trusted", "secure"])
def test_worker_loop_reaches_the_vmapped_engines_model(mnist, average):
    """Same initial model, partition, batch order and lr: averaging once per epoch is a FedAvg round (E=1, C=1)."""
    x, y = mnist.x_train[:600], mnist.y_train[:600]
    lr, b, seed, epochs = 0.1, 32, 0, 2
    ledger, (bob, alice, sw, cp) = _workers("bob", "alice", "secure_worker", "crypto_provider")
    fed = federate((x, y), (bob, alice), partition="dirichlet", seed=seed)
    loader = FederatedDataLoader(fed, batch_size=b, shuffle=True, seed=seed)
    model = Model.init((784, 16, 10), seed=seed)
    for epoch in range(1, epochs + 1):
        model = train(model, loader, epoch=epoch, lr=lr, average_every="epoch", average=average, aggregator=sw,
                      crypto_provider=cp, progress=None)
    parts = partition.make_partition("dirichlet", y, 2, seed=seed)
    engine = server.FedAvg(client.make_round_update(optax.sgd(lr), local_epochs=1, batch_size=b),
                           server.server_optimizer("fedavg"), fraction=1.0, seed=seed)
    state = engine.init(mlp.init((784, 16, 10), seed=seed))
    cdata = server.to_device(partition.federate(x, y, parts))
    for _ in range(epochs):
        state, _ = engine.run_round(state, cdata)
    expected = Model({k: np.asarray(v) for k, v in state.params.items()}).vector()
    tolerance = 1e-6 if average == "trusted" else 2e-6  # float rounding; fixed point (24 bits) for secure
    assert np.abs(model.vector() - expected).max() <= tolerance
