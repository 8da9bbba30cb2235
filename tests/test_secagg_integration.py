"""Secure aggregation as FedAvg's aggregation step (refimpl.fl.secure): equal to plaintext within the documented
encoding bound, dropout-tolerant, DP and quantization options, reproducible."""

import numpy as np
import pytest

from refimpl.errors import ConfigurationError
from refimpl.fl.secure import make_secure_aggregator


def _updates(m=6, seed=0):
    rng = np.random.default_rng(seed)
    upd = {"w": rng.normal(0, 0.1, (m, 20, 5)).astype(np.float32), "b": rng.normal(0, 0.1, (m, 5)).astype(np.float32)}
    return upd, rng.integers(50, 600, m).astype(np.float64)


def _weighted(upd, w, clients=None):
    idx = np.arange(len(w)) if clients is None else np.array(sorted(clients))
    ww = w[idx] / w[idx].sum()
    return {k: np.tensordot(ww, v[idx].astype(np.float64), axes=1) for k, v in upd.items()}


@pytest.mark.parametrize("protocol,servers", [("additive", 2), ("additive", 4), ("secagg", 2)])
def test_secure_mean_equals_plaintext_weighted_mean_within_the_fixed_point_bound(protocol, servers):
    upd, w = _updates()
    agg = make_secure_aggregator(protocol, servers=servers, key=b"a" * 16)
    out = agg(upd, w)
    ref = _weighted(upd, w)
    # each client's weighted coordinate is rounded once (error <= 2^-17); the mean divides the sum of m such errors
    # by sum_k w_k / max w, which is >= 1
    bound = len(w) * 2.0**-33
    for k in ref:
        assert out[k].dtype == np.float32 and out[k].shape == ref[k].shape
        assert np.max(np.abs(out[k] - ref[k])) <= bound + 1e-6  # + float32 rounding of the output
    assert agg.history[0].upload_ratio <= 1.05 or upd["w"][0].size < 1000


@pytest.mark.parametrize("protocol", ["additive", "secagg"])
def test_thirty_percent_dropout_every_round_completes_with_the_survivors_mean(protocol):
    upd, w = _updates(m=10, seed=1)
    agg = make_secure_aggregator(protocol, dropout=0.3, threshold=4, key=b"d" * 16)
    dropped_any = False
    for r in range(6):
        out = agg(upd, w)
        rep = agg.history[-1]
        assert not rep.aborted and rep.round == r
        dropped_any |= rep.survivors < 10
        drops = agg._dropouts(10, r)
        if protocol == "additive":
            survivors = set(range(10)) - set(drops)
        else:  # SecAgg: clients dropping at Unmasking (stage 3) are still in the sum
            survivors = {i for i in range(10) if drops.get(i, 3) == 3}
        assert rep.survivors == len(survivors)
        ref = _weighted(upd, w, survivors)
        assert all(np.max(np.abs(out[k] - ref[k])) < 1e-4 for k in ref)
    assert dropped_any


def test_quantized_and_rotated_aggregation_is_close_and_cheaper_ring():
    upd, w = _updates()
    agg = make_secure_aggregator("additive", bits=16, clip=2.0, rotate=True, key=b"q" * 16)
    out = agg(upd, w)
    ref = _weighted(upd, w)
    step = 4.0 / (2**16 - 1)
    assert all(np.max(np.abs(out[k] - ref[k])) < len(w) * step for k in ref)


def test_distributed_and_central_noise_have_the_configured_scale():
    upd, w = _updates(m=8)
    zero = {k: np.zeros_like(v) for k, v in upd.items()}
    for noise in ("distributed", "central"):
        agg = make_secure_aggregator("additive", clip=1.0, noise_multiplier=2.0, noise=noise, key=b"n" * 16)
        out = np.concatenate([v.ravel() for v in agg(zero, w).values()])
        # the mean of 8 clients carries noise of std z * C / 8 = 0.25; 105 coordinates: std estimate within 30%
        assert 0.7 * 0.25 < out.std() < 1.3 * 0.25, (noise, out.std())
    a = make_secure_aggregator("additive", clip=1.0, noise_multiplier=1.0, key=b"r" * 16)(upd, w)
    b = make_secure_aggregator("additive", clip=1.0, noise_multiplier=1.0, key=b"r" * 16)(upd, w)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same key, same noise: reproducible


def test_abort_returns_zero_update_and_bad_options_raise():
    upd, w = _updates(m=4)
    agg = make_secure_aggregator("secagg", threshold=4, dropout=0.9, key=b"x" * 16)
    out = agg(upd, w)
    assert agg.history[-1].aborted and all(not v.any() for v in out.values())
    with pytest.raises(ConfigurationError, match="protocol"):
        make_secure_aggregator("magic")
    with pytest.raises(ConfigurationError, match="needs an L2 clip"):
        make_secure_aggregator(noise_multiplier=1.0)
    with pytest.raises(ConfigurationError, match="dropout"):
        make_secure_aggregator(dropout=1.0)


def test_plugs_into_fedavg_and_tracks_plaintext_training():
    jax = pytest.importorskip("jax", reason="jax is not installed (pip install 'refimpl[fl]')")
    optax = pytest.importorskip("optax", reason="optax is not installed (pip install 'refimpl[fl]')")
    from refimpl.fl import client, model, partition, server

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    fed = partition.federate(x, y, partition.iid(y, 6, seed=0), pad_multiple=8)
    data = server.to_device(fed)
    upd = client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=8)
    results = {}
    for name, agg in [("plain", server.weighted_mean), ("secure", make_secure_aggregator(key=b"f" * 16))]:
        fedavg = server.FedAvg(upd, server.server_optimizer("fedavg"), fraction=1.0, seed=0, aggregate=agg)
        state = fedavg.init(model.init((8, 6, 3), seed=0))
        for _ in range(3):
            state, _ = fedavg.run_round(state, data)
        results[name] = {k: np.asarray(v) for k, v in state.params.items()}
    for k in results["plain"]:
        np.testing.assert_allclose(results["secure"][k], results["plain"][k], atol=1e-3)
    del jax


def test_command_line_helpers_build_reproducible_aggregators_and_report_epsilon():
    import argparse

    from refimpl.fl.secure_cli import add_arguments, from_args, round_metrics

    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraction", type=float, default=0.1)
    add_arguments(p)
    sys_args = ["--secure", "additive", "--servers", "3", "--clip", "1.0", "--noise-multiplier", "1.1"]
    args = p.parse_args(sys_args)
    agg, acct = from_args(args, start_round=5)
    assert agg.servers == 3 and agg.round == 5 and acct.rounds == 5
    upd, w = _updates()
    out1 = agg(upd, w)
    m = round_metrics(agg, acct)
    assert m["survivors"] == 6 and not m["aborted"] and m["epsilon"] > 0 and m["delta"] == 1e-5
    assert m["keys"] == "os" and m["min_clients"] == 2 and not agg.insecure_derived_keys
    agg2, _ = from_args(args, start_round=5)  # secure default: fresh OS keys, so fresh noise
    out2 = agg2(upd, w)
    assert not all(np.array_equal(out1[k], out2[k]) for k in out1)
    derived = p.parse_args([*sys_args, "--insecure-derived-keys"])
    agg3, _ = from_args(derived, start_round=5)  # opt-in: same seed, same keys, same noise
    agg4, _ = from_args(derived, start_round=5)
    out3, out4 = agg3(upd, w), agg4(upd, w)
    assert all(np.array_equal(out3[k], out4[k]) for k in out3)
    assert round_metrics(agg3, None)["keys"] == "insecure-derived"
    none, no_acct = from_args(p.parse_args(["--secure", "none"]))
    assert none is None and no_acct is None and round_metrics(None, None) == {}
    with pytest.raises(ConfigurationError, match="needs secure aggregation"):
        from_args(p.parse_args(["--secure", "none", "--clip", "1", "--noise-multiplier", "1"]))


def test_every_fedavg_round_is_within_the_fixed_point_bound_of_the_plaintext_mean():
    """Each round of secure FedAvg (no DP): the secure mean is within m 2^-33 (plus float32 output rounding) of the
    exact float64 weighted mean of the same updates, and within float32 rounding of `server.weighted_mean`."""
    pytest.importorskip("jax", reason="jax is not installed (pip install 'refimpl[fl]')")
    optax = pytest.importorskip("optax", reason="optax is not installed (pip install 'refimpl[fl]')")
    from refimpl.fl import client, model, partition, server

    rng = np.random.default_rng(1)
    x = rng.normal(size=(160, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    fed = partition.federate(x, y, partition.dirichlet(y, 8, alpha=1.0, seed=0), pad_multiple=8)
    secure = make_secure_aggregator("additive", servers=2, key=b"b" * 16)
    gaps: list[tuple[float, float]] = []

    def checked(updates, weights):
        out = secure(updates, weights)
        plain = server.weighted_mean(updates, weights)
        w = np.asarray(weights, np.float64)
        m = len(w)
        for k, v in updates.items():
            exact = np.tensordot(w / w.sum(), np.asarray(v, np.float64), axes=1)
            ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
            gaps.append((float(np.max(np.abs(out[k] - exact) - ulp)),
                         float(np.max(np.abs(out[k] - np.asarray(plain[k]))))))
            assert np.all(np.abs(out[k] - exact) <= m * 2.0**-33 + ulp), k
        return out

    fedavg = server.FedAvg(client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=8),
                           server.server_optimizer("fedavg"), fraction=0.5, seed=0, aggregate=checked)
    state = fedavg.init(model.init((8, 6, 3), seed=0))
    for _ in range(4):
        state, _ = fedavg.run_round(state, server.to_device(fed))
    assert len(gaps) == 4 * 4 and secure.round == 4  # 4 rounds x 4 leaves, each checked
    assert max(g for g, _ in gaps) <= 4 * 2.0**-33
    assert max(u for _, u in gaps) <= 1e-6  # vs float32 weighted_mean: its own float32 accumulation error
