"""Overhead of the population layer at 100 clients per round, against the round's compute (one run, interleaved).

Per round, ``train --population seed`` adds planning on the host (eligibility of every client at the simulated
time, selection among eligible clients, each selected client's timeline, dropout causes, bytes): timed here as
`Orchestrator.next_round`, next to the plain simulator's `sample_clients` and to the round's compute -- the
vmapped local training of the 100 counted clients (Fashion-MNIST if installed, else synthetic data of the same
shape; 2NN, E=1, B=10) -- sampled in interleaved rounds on both clocks (best of ``--repeats``).

    python bench/bench_population.py --out docs/population/bench_population.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, measure, write_result  # noqa: E402

from refimpl.fl import client, model, partition, server  # noqa: E402
from refimpl.fl.population.model import Population  # noqa: E402
from refimpl.fl.population.orchestration import OrchestrationConfig, Orchestrator  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--target", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    try:
        from refimpl.fl import data
        ds = data.load("fashion_mnist")
        x, y, source = ds.x_train, ds.y_train, "fashion_mnist"
    except Exception as e:  # noqa: BLE001 - any missing dataset: synthetic data of the same shape
        rng = np.random.default_rng(0)
        x, y, source = rng.random((60_000, 784), np.float32), rng.integers(0, 10, 60_000), f"synthetic ({e})"
    fed = partition.federate(x, y, partition.dirichlet(y, args.clients, 0.3, seed=0), pad_multiple=10)
    cd = server.to_device(fed)
    params = {k: jax.numpy.asarray(v) for k, v in model.init("2nn", seed=0).items()}
    update = client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=10)
    pop = Population.synthetic(args.clients, seed=0)
    orch = Orchestrator(pop, OrchestrationConfig(target=args.target), seed=0)
    ids = server.sample_clients(args.clients, args.target / args.clients, 0, 0)
    state = {"r": 0}

    def compute() -> None:
        state["r"] += 1
        d, losses = update(params, cd.x, cd.y, fed.index[ids], fed.sizes[ids], 0, state["r"], ids)
        jax.block_until_ready(d)

    def plan() -> None:
        pl = orch.next_round(fed.sizes, model_bytes=796_840, update_bytes=796_840)
        _ = fed.index[pl.counted], fed.sizes[pl.counted]

    def plain() -> None:
        state["r"] += 1
        s = server.sample_clients(args.clients, args.target / args.clients, 0, state["r"])
        _ = fed.index[s], fed.sizes[s]

    best, number = measure({"round compute (100 clients)": compute, "population plan": plan,
                            "plain sampling": plain}, args.repeats)
    res = {"benchmark": "population", "source": source, "clients": args.clients, "per_round": args.target,
           "calls_per_sample": number, "seconds": best, "machine": machine_info(),
           "overhead_vs_compute_wall": best["wall"]["population plan"] / best["wall"]["round compute (100 clients)"],
           "overhead_vs_compute_cpu": best["cpu"]["population plan"] / best["cpu"]["round compute (100 clients)"]}
    print(f"{'operation':32s} {'wall ms':>10s} {'cpu ms':>10s}")
    for name in best["wall"]:
        print(f"{name:32s} {best['wall'][name] * 1e3:10.3f} {best['cpu'][name] * 1e3:10.3f}")
    print(f"population layer / round compute: {res['overhead_vs_compute_wall']:.2%} wall, "
          f"{res['overhead_vs_compute_cpu']:.2%} cpu")
    write_result(res, args.out, "population")


if __name__ == "__main__":
    main()
