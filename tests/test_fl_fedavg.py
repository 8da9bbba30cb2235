"""Tests of refimpl.fl.client and refimpl.fl.server: FedAvg against plain SGD and hand computations."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax", reason="jax is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("optax", reason="optax is not installed (pip install 'refimpl[fl]')")

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.fl import client, model, partition, server

SIZES = (8, 6, 3)


def toy_data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SIZES[0])).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


@functools.cache
def round_update(local_epochs: int, batch_size: int, shuffle: bool):
    """Shared compiled client programs (jit caches by function object, so reuse saves compilations)."""
    return client.make_round_update(optax.sgd(0.1), local_epochs=local_epochs, batch_size=batch_size,
                                    shuffle=shuffle)


def unequal_clients():
    """Three clients of sizes 10, 30 and 20 (shared by several tests, so their compiled programs are reused)."""
    x, y = toy_data(60)
    return partition.federate(x, y, (np.arange(0, 10), np.arange(10, 40), np.arange(40, 60)), pad_multiple=8)


def run_rounds(fed, rounds, *, aggregate=server.weighted_mean, fraction=1.0, seed=0, opt="fedavg",
               local_epochs=1, batch_size=8, shuffle=True):
    fedavg = server.FedAvg(round_update(local_epochs, batch_size, shuffle),
                           server.server_optimizer(opt), fraction=fraction, seed=seed, aggregate=aggregate)
    state = fedavg.init(model.init(SIZES, seed=seed))
    data = server.to_device(fed)
    results = []
    for _ in range(rounds):
        state, r = fedavg.run_round(state, data)
        results.append(r)
    return state, results


def sgd_reference(params, x, y, order, batch_size, lr):
    """Plain minibatch SGD with the NumPy reference gradients, visiting samples in ``order``."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        _, g = model.numpy_loss_and_grad(p, x[rows], y[rows])
        p = {k: p[k] - lr * g[k] for k in p}
    return p


@pytest.mark.parametrize("shuffle, pad_multiple", [(False, 1), (True, 1), (True, 16)])
def test_one_client_one_epoch_is_minibatch_sgd(shuffle, pad_multiple):
    x, y = toy_data(37)  # 4 full batches of 8 and one of 5
    fed = partition.federate(x, y, (np.arange(37),), pad_multiple=pad_multiple)
    state, _ = run_rounds(fed, 1, shuffle=shuffle, seed=3)
    length = fed.index.shape[1]
    if shuffle:
        positions, valid = client.batch_order(client.epoch_keys(3, 0, 0, 1)[0], 37, length, 8)
        order = np.asarray(positions).reshape(-1)[np.asarray(valid).reshape(-1)]
        assert sorted(order.tolist()) == list(range(37)) and order.tolist() != list(range(37))
    else:
        order = np.arange(37)
    expected = sgd_reference(model.init(SIZES, seed=3), x, y, order, 8, 0.1)
    for k in expected:
        np.testing.assert_allclose(np.asarray(state.params[k]), expected[k], rtol=2e-5, atol=2e-6, err_msg=k)


def test_padding_does_not_change_a_client_update():
    x, y = toy_data(60)
    parts = (np.arange(0, 13), np.arange(13, 60))  # sizes 13 and 47: client 0 is padded to 47 (or 48)
    fed_pad = partition.federate(x, y, parts, pad_multiple=8)
    fed_own = partition.federate(x, y, parts[:1])
    update = client.make_round_update(optax.sgd(0.1, momentum=0.9), local_epochs=2, batch_size=4)
    p = model.init(SIZES, seed=0)
    d_pad, l_pad = update(p, x, y, fed_pad.index, fed_pad.sizes, 0, 0, np.array([0, 1]))
    d_own, l_own = update(p, x, y, fed_own.index, fed_own.sizes, 0, 0, np.array([0]))
    for k in p:
        np.testing.assert_allclose(d_pad[k][0], d_own[k][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(l_pad[0], l_own[0], rtol=1e-5)


def test_empty_client_update_is_exactly_zero():
    x, y = toy_data(20)
    fed = partition.federate(x, y, (np.arange(20),))
    update = client.make_round_update(optax.adam(0.1), local_epochs=2, batch_size=4)
    deltas, losses = update(model.init(SIZES), x, y, fed.index, np.array([0]), 0, 0, np.array([0]))
    assert all(float(jnp.abs(d).max()) == 0.0 for d in deltas.values()) and float(losses[0]) == 0.0


def test_vmap_chunked_and_loop_agree():
    x, y = toy_data(80)
    fed = partition.federate(x, y, partition.dirichlet(y, 5, 1.0, seed=0), pad_multiple=4)
    p = model.init(SIZES, seed=1)
    ids = np.arange(5, dtype=np.int32)
    outs = [make(optax.sgd(0.05), local_epochs=2, batch_size=4, **kw)(p, x, y, fed.index, fed.sizes, 7, 2, ids)
            for make, kw in [(client.make_round_update, {}), (client.make_round_update, {"clients_per_chunk": 2}),
                             (client.make_loop_update, {})]]
    for d, l in outs[1:]:
        np.testing.assert_allclose(l, outs[0][1], rtol=1e-5)
        for k in p:
            np.testing.assert_allclose(d[k], outs[0][0][k], rtol=1e-4, atol=1e-6)


def test_client_update_arguments():
    with pytest.raises(ValueError, match="local_epochs must be >= 1, got 0"):
        client.make_client_update(optax.sgd(0.1), local_epochs=0, batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="clients_per_chunk must be None or >= 1, got 0"):
        client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=1, clients_per_chunk=0)


@settings(max_examples=30)
@given(st.integers(1, 6).flatmap(lambda m: st.tuples(
    hnp.arrays(np.float32, (m, 3, 2), elements=st.floats(-1e3, 1e3, width=32)),
    st.lists(st.integers(0, 1000), min_size=m, max_size=m).filter(lambda w: sum(w) > 0))))
def test_weighted_mean_against_hand_computation(case):
    u, w = case
    got = np.asarray(server.weighted_mean({"a": u, "b": u[:, 0]}, w)["a"])
    hand = sum(w[k] * u[k].astype(np.float64) for k in range(len(w))) / sum(w)
    np.testing.assert_allclose(got, hand, rtol=1e-5, atol=1e-3)


def test_weighted_mean_worked_example_and_errors():
    u = {"w": np.array([[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]], np.float32)}
    np.testing.assert_array_equal(np.asarray(server.weighted_mean(u, [1, 3, 0])["w"]), [2.5, 5.0])
    with pytest.raises(ValueError, match="sum to 0.0"):
        server.weighted_mean(u, [0, 0, 0])
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        server.weighted_mean(u, [1, -1, 0])
    with pytest.raises(ValueError, match=r"one entry per client \(\[3\]\), got shape \(2,\)"):
        server.weighted_mean(u, [1, 1])


def test_round_weights_updates_by_client_sizes():
    fed = unequal_clients()
    seen = []

    def spy(updates, weights):
        seen.append((updates, np.array(weights)))
        return server.weighted_mean(updates, weights)

    state, (result,) = run_rounds(fed, 1, aggregate=spy, seed=5)
    updates, weights = seen[0]
    np.testing.assert_array_equal(weights, [10, 30, 20])
    np.testing.assert_array_equal(result.clients, [0, 1, 2])
    init = model.init(SIZES, seed=5)
    for k in init:
        assert updates[k].shape == (3, *init[k].shape)
        hand = (10 * np.asarray(updates[k][0], np.float64) + 30 * np.asarray(updates[k][1], np.float64)
                + 20 * np.asarray(updates[k][2], np.float64)) / 60
        np.testing.assert_allclose(np.asarray(state.params[k]), init[k] + hand, rtol=1e-5, atol=1e-6)
    assert result.train_loss == pytest.approx(np.dot([10, 30, 20], result.client_losses) / 60)


def test_aggregation_is_pluggable_and_may_return_numpy():
    fed = unequal_clients()
    calls = []

    def plain_numpy_mean(updates, weights):  # e.g. a secure aggregator working on host arrays
        calls.append(len(weights))
        return {k: np.mean(np.asarray(v), axis=0) for k, v in updates.items()}

    state, _ = run_rounds(fed, 2, aggregate=plain_numpy_mean, fraction=0.6)
    assert calls == [2, 2]
    zero, _ = run_rounds(fed, 2, aggregate=lambda u, w: {k: np.zeros(v.shape[1:], np.float64) for k, v in u.items()})
    assert all(v.dtype == np.float32 for v in zero.params.values())
    for k, v in model.init(SIZES, seed=0).items():
        np.testing.assert_array_equal(np.asarray(zero.params[k]), v)
        assert not np.array_equal(np.asarray(state.params[k]), v)


def test_bad_aggregator_output_is_reported():
    fed = unequal_clients()
    with pytest.raises(ValueError, match=r"parameter keys \['b0', 'b1', 'w0', 'w1'\], got \['w0'\]"):
        run_rounds(fed, 1, aggregate=lambda u, w: {"w0": u["w0"][0]})
    with pytest.raises(ValueError, match=r"returned shape \(3, 6\) for 'b0', expected \(6,\)"):
        run_rounds(fed, 1, aggregate=lambda u, w: u)


def test_server_optimizers():
    mean = {"w": jnp.array([0.5, -1.0])}
    params = {"w": jnp.array([1.0, 1.0])}
    for name, first, second in [("fedavg", [1.5, 0.0], [2.0, -1.0]), ("fedavgm", [1.5, 0.0], [2.45, -1.9])]:
        opt = server.server_optimizer(name)
        s = opt.init(params)
        p = params
        got = []
        for _ in range(2):
            u, s = opt.update(jax.tree_util.tree_map(jnp.negative, mean), s, p)
            p = optax.apply_updates(p, u)
            got.append(np.asarray(p["w"]))
        np.testing.assert_allclose(got, [first, second], rtol=1e-6, err_msg=name)
    adam = server.server_optimizer("fedadam", 0.1)
    u, _ = adam.update({"w": -mean["w"]}, adam.init(params), params)
    np.testing.assert_allclose(np.sign(np.asarray(u["w"])), [1.0, -1.0])
    with pytest.raises(ValueError, match="unknown server optimizer 'sgd'"):
        server.server_optimizer("sgd")
    with pytest.raises(ValueError, match="must be > 0, got -1"):
        server.server_optimizer("fedavg", -1)


def test_fedavg_m_and_adam_train():
    fed = unequal_clients()
    for opt in ("fedavgm", "fedadam"):
        state, results = run_rounds(fed, 3, opt=opt)
        assert state.round == 3 and np.isfinite(results[-1].train_loss)
        assert len(jax.tree_util.tree_leaves(state.opt_state)) >= len(state.params)


def test_fedavg_arguments():
    update = round_update(1, 8, True)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*31\), got -1"):
        server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.5, seed=-1)
    with pytest.raises(ValueError, match="fraction must be in"):
        server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.0, seed=0)


def test_client_sampling():
    a = server.sample_clients(100, 0.1, seed=1, round_=4)
    assert len(a) == 10 and len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 100
    np.testing.assert_array_equal(a, server.sample_clients(100, 0.1, seed=1, round_=4))
    assert not np.array_equal(a, server.sample_clients(100, 0.1, seed=1, round_=5))
    assert server.num_sampled(7, 0.01) == 1 and server.num_sampled(7, 1.0) == 7
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 1.5"):
        server.sample_clients(10, 1.5, 0, 0)


def test_same_seed_same_parameters_bit_for_bit():
    fed = unequal_clients()
    a, _ = run_rounds(fed, 3, fraction=0.6, seed=9, opt="fedavgm")
    b, _ = run_rounds(fed, 3, fraction=0.6, seed=9, opt="fedavgm")
    c, _ = run_rounds(fed, 3, fraction=0.6, seed=10, opt="fedavgm")
    for k in a.params:
        np.testing.assert_array_equal(np.asarray(a.params[k]), np.asarray(b.params[k]))
    assert any(not np.array_equal(np.asarray(a.params[k]), np.asarray(c.params[k])) for k in a.params)


SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np, optax
    from refimpl.fl import client, model, partition, server
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 8)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int32)
    fed = partition.federate(x, y, partition.iid(y, 6, seed=0), pad_multiple=4)
    update = client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=4)
    p = model.init((8, 6, 3), seed=0)
    mesh = client.client_mesh()
    idx, n, ids, m = client.shard_clients(mesh, fed.index, fed.sizes, np.arange(6, dtype=np.int32))
    cd = server.to_device(fed, mesh)
    xs, ys = cd.x, cd.y
    d_sh, l_sh = update(p, xs, ys, idx, n, 0, 0, ids)
    d, l = update(p, x, y, fed.index, fed.sizes, 0, 0, np.arange(6, dtype=np.int32))
    fedavg = server.FedAvg(update, server.server_optimizer("fedavg"), fraction=1.0, seed=0)
    s1, _ = fedavg.run_round(fedavg.init(p), server.to_device(fed, mesh))
    s0, _ = fedavg.run_round(fedavg.init(p), server.to_device(fed))
    from refimpl.fl import checkpoint, train
    base = ["--dataset", "mnist-10k", "--clients", "8", "--fraction", "0.75", "--rounds", "2",
            "--model", "784,16,10", "--batch-size", "50", "--no-progress", "--no-plot"]
    cli = {}
    for dev in ("1", "4"):
        assert train.main([*base, "--devices", dev, "--out", f"{sys.argv[1]}/d{dev}"]) == 0
        cli[dev] = checkpoint.load(f"{sys.argv[1]}/d{dev}/checkpoint.npz", server.server_optimizer("fedavg"))[0]
    print(json.dumps({
        "cli_diff": max(float(np.abs(np.asarray(cli["1"].params[k]) - np.asarray(cli["4"].params[k])).max())
                        for k in cli["1"].params),
        "devices": jax.device_count(), "m": m, "padded": int(n.shape[0]),
        "out_devices": len(d_sh["w0"].sharding.device_set),
        "delta_diff": max(float(np.abs(np.asarray(d_sh[k])[:6] - np.asarray(d[k])).max()) for k in p),
        "pad_delta": max(float(np.abs(np.asarray(d_sh[k])[6:]).max()) for k in p),
        "loss_diff": float(np.abs(np.asarray(l_sh)[:6] - np.asarray(l)).max()),
        "param_diff": max(float(np.abs(np.asarray(s1.params[k]) - np.asarray(s0.params[k])).max()) for k in p),
    }))
""")


def test_clients_sharded_across_four_host_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["devices"] == 4 and r["m"] == 6 and r["padded"] == 8 and r["out_devices"] == 4
    assert r["delta_diff"] < 1e-5 and r["loss_diff"] < 1e-5 and r["param_diff"] < 1e-5
    assert r["pad_delta"] == 0.0
    assert r["cli_diff"] < 1e-5  # `refimpl train --devices 4` trains as --devices 1 does
