"""Seconds per FedAvg round, vmapped clients against per-client loops, in one process.

Setting (McMahan et al.'s): Fashion-MNIST (IDX files from Debian's dataset-fashion-mnist; falls back to the
built-in mnist-10k, and says so, when absent), 2NN 784-200-200-10, 100 IID clients, C = 0.1, E = 1, B = 10,
client SGD lr 0.1. Every variant runs the same FedAvg round (sampling, local training, weighted aggregation,
server step); only the client program differs:

* ``vmap``          -- one jit of vmap over the round's 10 clients (refimpl's default);
* ``vmap_chunk1``   -- one jit that loops over clients inside the program (``clients_per_chunk=1``);
* ``jit_per_client``-- one jitted client program (local epochs as a lax.scan) called per client from Python;
* ``jit_per_step``  -- one jitted SGD step called per client and per minibatch from Python, batches gathered on
  the host: the way FedJAX's ``for_each_client`` and Flower's simulation drive a client.

The 2NN is the target setting; the ``small`` 784-128-10 model is timed too because on a CPU the outcome turns
on whether the round's stacked parameters and gradients fit in cache.

Next to them: the FLOPs a round needs and the throughput of one large float32 matmul measured in the same
process (the machine's practical limit for this work).

Usage: ``python bench/bench_fedavg.py [--rounds 8] [--models 2nn small] [--out PATH]`` (default
``bench/results/fedavg-<UTC date>.json``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import _common
import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.fl import client, model, partition, server

E, B, K, C, LR = 1, 10, 100, 0.1, 0.1


def jit_per_step_update(optimizer: optax.GradientTransformation):
    """A FedJAX/Flower-style client loop: Python loops over clients and batches, one jitted step per batch."""

    @jax.jit
    def step(p, s, xb, yb, mb):
        loss, g = jax.value_and_grad(model.loss)(p, xb, yb, mb)
        u, s = optimizer.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    def update(params, x, y, index, sizes, seed, round_, client_ids):
        x_host, y_host = np.asarray(x), np.asarray(y)
        deltas, losses = [], []
        for row, n, cid in zip(np.asarray(index), np.asarray(sizes), np.asarray(client_ids)):
            rng = np.random.default_rng([seed, round_, int(cid)])
            p, s, total, steps = params, optimizer.init(params), 0.0, 0
            for _ in range(E):
                order = row[rng.permutation(int(n))]
                for start in range(0, int(n), B):
                    rows = order[start: start + B]
                    mask = np.zeros(B, bool)
                    mask[: len(rows)] = True
                    rows = np.pad(rows, (0, B - len(rows)))
                    p, s, loss = step(p, s, x_host[rows], y_host[rows], mask)
                    total, steps = total + loss, steps + 1
            deltas.append(jax.tree_util.tree_map(jnp.subtract, p, params))
            losses.append(total / max(steps, 1))
        return jax.tree_util.tree_map(lambda *d: jnp.stack(d), *deltas), jnp.stack(losses)

    return update


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    """Throughput of an n x n float32 matmul under jit (best of ``reps``)."""
    a = jnp.asarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds per variant (after one warm-up)")
    parser.add_argument("--models", nargs="+", default=["2nn", "small"], help="models to time (2nn: the target)")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/fedavg-<date>.json); '-': none")
    args = parser.parse_args(argv)

    ds, note = _common.fedavg_dataset()
    fed = partition.federate(ds.x_train, ds.y_train, partition.iid(ds.y_train, K, seed=0), pad_multiple=B)
    cdata = server.to_device(fed)
    peak = matmul_gflops()
    sections = {m: time_variants(m, fed, cdata, args.rounds) for m in args.models}
    report = {
        "benchmark": "fedavg",
        "machine": _common.machine_info(optax=optax.__version__),
        "setting": {"data": note, "clients": K, "fraction": C, "local_epochs": E, "batch_size": B,
                    "client_lr": LR, "clients_per_round": server.num_sampled(K, C),
                    "steps_per_client": E * int(np.ceil(fed.sizes.mean() / B)), "timed_rounds": args.rounds},
        "matmul_1024_gflops": peak, "load_average_1min": os.getloadavg()[0],
        "models": sections,
    }
    out = _common.write_result(report, args.out, "fedavg")

    setting = report["setting"]
    print(f"FedAvg round, {note}; K={K}, C={C}, E={E}, B={B} ({setting['clients_per_round']} clients x "
          f"{setting['steps_per_client']} steps); {args.rounds} timed rounds per variant, interleaved")
    for name, sec in sections.items():
        print(f"\nmodel {name} ({sec['params']} parameters, {sec['round_gflop']:.2f} GFLOP per round)")
        print(f"{'variant':16s} {'median s':>9s} {'min s':>7s} {'first s':>8s} {'GFLOP/s':>8s} "
              f"{'vmap speedup':>13s}")
        for v, r in sec["variants"].items():
            print(f"{v:16s} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['first_round_s']:8.2f} "
                  f"{sec['round_gflop'] / r['min_s']:8.1f} {sec['speedup_of_vmap_over'].get(v, 1.0):12.2f}x")
    print(f"\n{'1024^2 matmul':16s} {peak:8.1f} GFLOP/s (practical limit, same process)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0 if out or args.out == "-" else 1


def time_variants(model_name: str, fed, cdata, rounds: int) -> dict:
    """Times every client program on one model; timed rounds are interleaved across variants so that load from
    other processes on a shared machine falls on all of them alike."""
    params0 = model.init(model_name, seed=0)
    opt = optax.sgd(LR)
    variants = {
        "vmap": client.make_round_update(opt, local_epochs=E, batch_size=B),
        "vmap_chunk1": client.make_round_update(opt, local_epochs=E, batch_size=B, clients_per_chunk=1),
        "vmap_chunk2": client.make_round_update(opt, local_epochs=E, batch_size=B, clients_per_chunk=2),
        "jit_per_client": client.make_loop_update(opt, local_epochs=E, batch_size=B),
        "jit_per_step": jit_per_step_update(opt),
    }
    runs, results = {}, {}
    for name, update in variants.items():
        fedavg = server.FedAvg(update, server.server_optimizer("fedavg"), fraction=C, seed=0)
        state = fedavg.init(params0)
        t0 = time.perf_counter()
        jax.block_until_ready(fedavg.run_round(state, cdata)[0].params)  # compiles
        runs[name] = (fedavg, state)
        results[name] = {"first_round_s": time.perf_counter() - t0, "rounds_s": []}
    for _ in range(rounds):
        for name, (fedavg, state) in runs.items():
            t0 = time.perf_counter()
            state, _ = fedavg.run_round(state, cdata)
            jax.block_until_ready(state.params)
            results[name]["rounds_s"].append(time.perf_counter() - t0)
            runs[name] = (fedavg, state)
    for name, r in results.items():
        r.update(median_s=statistics.median(r["rounds_s"]), min_s=min(r["rounds_s"]))
        print(f"  {model_name} {name:15s} median {r['median_s']:.3f} s/round, min {r['min_s']:.3f}",
              file=sys.stderr)
    steps = E * int(np.ceil(fed.sizes.mean() / B))
    weights = sum(int(np.prod(v.shape)) for k, v in params0.items() if k.startswith("w"))
    flops = 6 * server.num_sampled(K, C) * steps * B * weights  # forward + backward: ~6 flops/weight/example
    base = results["vmap"]["median_s"]
    return {"params": model.num_params(params0), "round_gflop": flops / 1e9, "variants": results,
            "speedup_of_vmap_over": {n: r["median_s"] / base for n, r in results.items() if n != "vmap"}}


if __name__ == "__main__":
    raise SystemExit(main())
