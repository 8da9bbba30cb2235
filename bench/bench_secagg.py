"""Client and server cost of secure aggregation at K clients, d coordinates, against a plaintext sum.

Measured in one process (a shared, noisy machine: only ratios from the same run mean something):

* ``plaintext_sum``   -- ``np.sum`` of the K float64 updates (what an insecure server does);
* ``memcpy``          -- copying the K updates once (memory bandwidth: the floor of any aggregation);
* ``aes_keystream``   -- AES-128-CTR keystream for one d-vector of 64-bit words (the floor of any masking);
* ``additive S=2/3``  -- multi-server additive sharing, fixed point in Z_2^64: per-client time (encode + seed-
  compressed sharing), per-server time (validate, expand keys, sum over the agreed set), upload bytes per client;
* ``secagg``          -- Bonawitz et al., n = K, t = K/2 + 1, complete graph: per-client time over all four stages,
  server time, with no dropout and with 30% of the clients dropping before MaskedInputCollection (the server then
  rebuilds their X25519 keys and regenerates their pairwise masks);
* ``secagg+``         -- the same on the SecAgg+ graph (degree 4) when K >= 6.

Flower's SecAgg+ (``flwr``) and TenSEAL's CKKS are benchmarked only when installed; otherwise the JSON says so.

Usage: ``python bench/bench_secagg.py [--clients 10] [--dim 100000] [--repeat 3] [--out bench/results/...]``
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import refimpl.secagg_additive as additive
import refimpl.secagg_bonawitz as bonawitz
import refimpl.secagg_bonawitz_server as bonawitz_server
from refimpl.prg import Stream
from refimpl.secagg import (
    AdditiveConfig,
    SecAggConfig,
    run_additive_round,
    run_secagg_round,
)

ACC: dict[str, float] = defaultdict(float)


def _instrument(cls: type, names: tuple[str, ...], bucket: str) -> None:
    for name in names:
        orig = getattr(cls, name)

        def timed(*a, __orig=orig, **k):
            t = time.perf_counter()
            try:
                return __orig(*a, **k)
            finally:
                ACC[bucket] += time.perf_counter() - t

        setattr(cls, name, timed)


_instrument(additive.AdditiveClient, ("contribute",), "client")
_instrument(additive.AdditiveServer, ("receive", "partial_sum"), "server")
_instrument(bonawitz.SecAggClient, ("advertise_keys", "share_keys", "masked_input", "unmask"), "client")
_instrument(bonawitz_server.SecAggServer, ("receive", "finish_stage"), "server")
_orig_combine = additive.combine_partial_sums


def _combine(*a, **k):
    t = time.perf_counter()
    try:
        return _orig_combine(*a, **k)
    finally:
        ACC["output"] += time.perf_counter() - t


additive.combine_partial_sums = _combine


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run_protocol(fn, repeat, k, servers):
    """min over repeats of (per-client seconds, per-server seconds, total seconds, result)."""
    rows = []
    for _ in range(repeat):
        ACC.clear()
        t = time.perf_counter()
        res = fn()
        total = time.perf_counter() - t
        rows.append((ACC["client"] / k, (ACC["server"] + ACC["output"]) / servers, total, res))
    return min(r[0] for r in rows), min(r[1] for r in rows), min(r[2] for r in rows), rows[-1][3]


def fedavg_section(rounds: int, repeat_rounds: int) -> dict:
    """FedAvg round time and test accuracy: plaintext weighted mean vs secure aggregation (McMahan et al.'s 2NN,
    100 IID clients, C = 0.1, E = 1, B = 10, client lr 0.1), same seeds, in this process."""
    import statistics

    import jax
    import optax

    from refimpl.fl import client, data, model, partition, server
    from refimpl.fl.secure import make_secure_aggregator

    try:
        ds, note = data.load("fashion_mnist", use_tfds=False), "Fashion-MNIST"
    except data.DatasetNotFoundError:
        ds, note = data.load("mnist-10k"), "mnist-10k (Fashion-MNIST absent)"
    fed = partition.federate(ds.x_train, ds.y_train, partition.iid(ds.y_train, 100, seed=0), pad_multiple=10)
    cdata = server.to_device(fed)
    update = client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=10)
    x_test, y_test = jax.device_put(ds.x_test), jax.device_put(ds.y_test)
    acc_fn = jax.jit(lambda p: model.accuracy(p, x_test, y_test))
    variants = {
        "plaintext": server.weighted_mean,
        "additive_S2": make_secure_aggregator("additive", servers=2, key=b"b" * 16),
        "secagg_t6": make_secure_aggregator("secagg", threshold=6, key=b"b" * 16),
        "additive_S2_dropout30": make_secure_aggregator("additive", servers=2, dropout=0.3, key=b"b" * 16),
    }
    out = {"data": note, "rounds": rounds}
    for name, agg in variants.items():
        fedavg = server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.1, seed=0, aggregate=agg)
        state = fedavg.init(model.init("2nn", seed=0))
        times, accs = [], []
        for r in range(rounds):
            t = time.perf_counter()
            state, _ = fedavg.run_round(state, cdata)
            jax.block_until_ready(state.params)
            if r:  # round 0 compiles
                times.append(time.perf_counter() - t)
            accs.append(float(acc_fn(state.params)))
        out[name] = {"median_round_s": statistics.median(times), "accuracy": accs}
        print(f"  fedavg {name:22s} {out[name]['median_round_s']*1e3:8.1f} ms/round, accuracy after {rounds} "
              f"rounds {accs[-1]:.4f}", file=sys.stderr)
    base = out["plaintext"]
    for name in variants:
        out[name]["round_time_ratio"] = out[name]["median_round_s"] / base["median_round_s"]
        out[name]["max_accuracy_gap_pp"] = 100 * max(abs(a - b) for a, b in zip(out[name]["accuracy"],
                                                                                 base["accuracy"]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--dim", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default="bench/results/bench_secagg.json")
    p.add_argument("--fedavg-rounds", type=int, default=0,
                   help="also time FedAvg rounds (2NN, 100 clients, C=0.1) plaintext vs secure (needs jax)")
    args = p.parse_args(argv)
    k, d, rep = args.clients, args.dim, args.repeat
    rng = np.random.default_rng(0)
    xs = {c + 1: rng.uniform(-1, 1, d) for c in range(k)}
    stacked = np.stack(list(xs.values()))
    keys = {c: bytes([c]) * 16 for c in xs}

    res: dict[str, dict] = {}
    t_plain = best(lambda: stacked.sum(axis=0), rep)
    res["plaintext_sum"] = {"server_s": t_plain, "client_s": 0.0, "upload_bytes": d * 8}
    buf = np.empty_like(stacked)
    res["memcpy"] = {"server_s": best(lambda: np.copyto(buf, stacked), rep), "bytes": stacked.nbytes}
    word = np.empty(d, dtype=np.uint64)
    res["aes_keystream"] = {"client_s": best(lambda: Stream(bytes(16)).read_into(word), rep), "bytes": d * 8}

    for s in (2, 3):
        cfg = AdditiveConfig(length=d, servers=s, max_clients=k, clip=1.0)
        c_s, s_s, tot, r = run_protocol(lambda cfg=cfg: run_additive_round(cfg, xs, keys=keys), rep, k, s)
        up = r.traffic.sent("client 1")
        assert np.allclose(r.total, stacked.sum(axis=0), atol=k * 2.0**-16)
        res[f"additive_S{s}"] = {"client_s": c_s, "server_s": s_s, "round_s": tot, "upload_bytes": up,
                                 "upload_ratio": up / cfg.encoded_nbytes}

    t = k // 2 + 1
    cfg2 = SecAggConfig(num_clients=k, threshold=t, length=d, clip=1.0)
    drops = {c: "MaskedInputCollection" for c in list(xs)[: max(1, (3 * k) // 10)]}
    for name, dr, c2 in [("secagg", {}, cfg2), ("secagg_30pct_dropout", drops, cfg2)] + (
            [("secagg+_deg4", {}, SecAggConfig(num_clients=k, threshold=3, length=d, clip=1.0, degree=4))]
            if k >= 6 else []):
        c_s, s_s, tot, r = run_protocol(lambda c2=c2, dr=dr: run_secagg_round(c2, xs, keys=keys, dropouts=dr),
                                        rep, k, 1)
        alive = [u for u in xs if u not in dr]
        c_s = c_s * k / len(alive)  # dropped clients stop early: average over the ones that ran every stage
        up = r.traffic.sent(f"client {alive[0]}")
        assert np.allclose(r.total, sum(xs[u] for u in r.clients), atol=k * 2.0**-16)
        res[name] = {"client_s": c_s, "server_s": s_s, "round_s": tot, "upload_bytes": up,
                     "upload_ratio": up / c2.codec.encoded_nbytes, "threshold": c2.threshold}

    peers = {}
    for mod, label in (("flwr", "Flower SecAgg+"), ("tenseal", "TenSEAL CKKS")):
        peers[label] = "installed, not yet benchmarked" if importlib.util.find_spec(mod) else "not installed"

    print(f"secure aggregation, K={k} clients, d={d:,} coordinates (min of {rep}); plaintext sum {t_plain*1e3:.2f} ms")
    print(f"{'protocol':<24}{'client ms':>11}{'server ms':>11}{'round ms':>10}{'upload B':>12}{'up/enc':>8}"
          f"{'server/plain':>14}")
    for name, r in res.items():
        if "upload_ratio" not in r:
            continue
        print(f"{name:<24}{r['client_s']*1e3:>11.2f}{r['server_s']*1e3:>11.2f}{r['round_s']*1e3:>10.1f}"
              f"{r['upload_bytes']:>12,}{r['upload_ratio']:>8.4f}{r['server_s']/t_plain:>14.1f}")
    print(f"limits: memcpy of all updates {res['memcpy']['server_s']*1e3:.2f} ms, AES-CTR keystream per d-vector "
          f"{res['aes_keystream']['client_s']*1e3:.2f} ms; peers: {peers}")

    fed = fedavg_section(args.fedavg_rounds, rep) if args.fedavg_rounds > 1 else None
    if fed:
        print(f"FedAvg ({fed['data']}, {fed['rounds']} rounds): " + ", ".join(
            f"{n} x{fed[n]['round_time_ratio']:.2f} time, max acc gap {fed[n]['max_accuracy_gap_pp']:.2f} pp"
            for n in ("additive_S2", "secagg_t6", "additive_S2_dropout30")))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "bench_secagg", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": {"numpy": np.__version__, "cryptography": __import__("cryptography").__version__},
        "clients": k, "dim": d, "repeat": rep, "results": res, "peers": peers, "fedavg": fed}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
