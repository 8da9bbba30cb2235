"""Secure FedAvg round time against plaintext, in alternating pairs, on both the wall clock and the CPU clock.

Setting (the README's): Fashion-MNIST (falls back to mnist-10k and says so), 2NN 784-200-200-10, 100 IID clients,
C = 0.1, E = 1, B = 10, client SGD lr 0.1. One process; the same FedAvg engine and seeds, only the aggregator
differs: ``server.weighted_mean`` (plaintext) or ``fl.secure.make_secure_aggregator("additive", servers=2)``
(fresh OS keys, as ``train`` uses by default).

A *pair* runs the plaintext and the secure engine ``--rounds`` rounds each, from the same initial model, their rounds
interleaved: one plaintext round, one secure round, then the other order, and so on (this machine's speed changes
from one second to the next -- whole stretches of rounds run at half speed -- so runs timed one after the other
differed by several percent for the same code; interleaved rounds see the same machine). Per engine and pair: the
median wall seconds and the median process CPU seconds (every thread: JAX's and the sharing kernels') per round,
rounds after the first (which compiles). Per pair: secure / plaintext on each clock. Reported: each pair's ratios,
their median, min and max (the spread), and the pooled medians.

Target (issue 17): secure <= 1.1x plaintext. Printed, never asserted.

Then, on one round's captured updates, where the secure step's CPU time goes: the aggregator (fused, as ``train``
runs it, and the unfused definition, ``fused=False``) timed stage by stage in one thread (``set_threads(1)``, so the
stages add up), median over ``--profile-calls`` calls, beside the plaintext ``weighted_mean``.

Run: ``nice python bench/bench_secure_round.py [--pairs 5] [--rounds 8]``
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import _common
import jax
import numpy as np
import optax

from refimpl import jit
from refimpl.fl import client, model, partition, server
from refimpl.fl.secure import make_secure_aggregator


def switched(setter: Callable[[bool | None], bool | None], value: bool) -> Callable[[Any, Any], Any]:
    """A fresh secure aggregator (as ``train`` makes it) with one refimpl.jit setting -- ``setter(value)`` -- in force
    during each of its calls, and the previous setting restored after it."""
    agg = make_secure_aggregator("additive", servers=2)

    def call(updates: Any, weights: Any) -> Any:
        previous = setter(value)
        try:
            return agg(updates, weights)
        finally:
            setter(previous)

    return call


def run_block(engines: dict[str, server.FedAvg], cdata: Any, rounds: int, flip: bool) -> dict[str, dict[str, Any]]:
    """One pair (block): every engine from the same initial model, ``rounds`` timed rounds each after one compiling
    round, the engines' rounds interleaved -- one round of each in turn, the order reversed every round (and
    ``flip`` starts the other way) -- so that a change in the machine's speed falls on all of them alike."""
    states = {}
    for name, fedavg in engines.items():
        state = fedavg.init(model.init("2nn", seed=0))
        state, _ = fedavg.run_round(state, cdata)  # compiles
        states[name] = jax.block_until_ready(state)
    times: dict[str, dict[str, list[float]]] = {name: {"wall_s": [], "cpu_s": []} for name in engines}
    names = list(engines)
    for r in range(rounds):
        for name in (names if (r % 2 == 0) != flip else names[::-1]):
            w0, c0 = time.perf_counter(), time.process_time()
            states[name], _ = engines[name].run_round(states[name], cdata)
            jax.block_until_ready(states[name].params)
            times[name]["wall_s"].append(time.perf_counter() - w0)
            times[name]["cpu_s"].append(time.process_time() - c0)
    return {name: {**t, "median_wall_s": statistics.median(t["wall_s"]), "median_cpu_s": statistics.median(t["cpu_s"])}
            for name, t in times.items()}


# (object, attribute, stage name): the aggregator's steps, fused and unfused, timed where they are called
def _stage_points() -> list[tuple[Any, str, str]]:
    from refimpl.fl import secure
    from refimpl.secagg import codec
    from refimpl.secagg.additive import client as aclient
    from refimpl.secagg.additive import server as aserver
    from refimpl.secagg.additive import simulation

    return [
        (secure.SecureAggregator, "_call_fused", "total (fused)"),
        (secure.SecureAggregator, "_encode_rows", "encode (unfused)"),
        (secure, "_check_finite", "finite check (unfused)"),
        (secure._PendingUpdates, "_load", "read updates (fused)"),
        (aclient.AdditiveClient, "share_keys", "client: stream keys"),
        (codec.Codec, "check_encoded", "client: range check + ring copy (unfused)"),
        (aclient, "share_compressed_owned", "client: mask (unfused)"),
        (codec.Codec, "mask_scaled", "client: encode + check + mask (fused)"),
        (aserver.AdditiveServer, "receive", "servers: receive + running sums"),
        (aserver.AdditiveServer, "fold_received", "servers: expand stream keys"),
        (aserver.AdditiveServer, "partial_sum", "servers: partial sums"),
        (simulation, "combine_partial_sums", "combine"),
        (codec.Codec, "decode_sum", "decode"),
        (secure, "_mean_leaves", "mean + float32 leaves"),
    ]


@contextmanager
def _timed(points: list[tuple[Any, str, str]], acc: dict[str, float]) -> Iterator[None]:
    saved = []
    for obj, name, label in points:
        if not hasattr(obj, name):
            continue
        fn = getattr(obj, name)
        saved.append((obj, name, fn))

        def wrapper(*a: Any, _fn: Callable[..., Any] = fn, _label: str = label, **k: Any) -> Any:
            c0 = time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                acc[_label] += time.process_time() - c0
        setattr(obj, name, functools.wraps(fn)(wrapper))
    try:
        yield
    finally:
        for obj, name, fn in reversed(saved):
            setattr(obj, name, fn)


def profile_stages(updates: dict[str, Any], weights: Any, calls: int) -> dict[str, dict[str, float]]:
    """Median CPU ms per call of each stage, fused and unfused, in one thread; plus the whole call and the
    plaintext weighted mean."""
    from refimpl.sharing import kernels

    previous = kernels.set_threads(1)
    try:
        out: dict[str, dict[str, float]] = {}
        for variant, fused in (("fused", True), ("unfused", False)):
            agg = make_secure_aggregator("additive", servers=2)
            agg.fused = fused
            for _ in range(3):
                agg(updates, weights)
            samples: dict[str, list[float]] = collections.defaultdict(list)
            for _ in range(calls):
                acc: dict[str, float] = collections.defaultdict(float)
                c0 = time.process_time()
                with _timed(_stage_points(), acc):
                    agg(updates, weights)
                acc["whole call (stage timers included)"] = time.process_time() - c0
                c0 = time.process_time()
                agg(updates, weights)
                acc["whole call, no timers"] = time.process_time() - c0
                for k, v in acc.items():
                    samples[k].append(v)
            out[variant] = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        cpus = []
        for _ in range(calls):
            c0 = time.process_time()
            jax.block_until_ready(server.weighted_mean(updates, weights))
            cpus.append(time.process_time() - c0)
        out["plaintext"] = {"weighted_mean": statistics.median(cpus) * 1e3}
        return out
    finally:
        kernels.set_threads(previous)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=8, help="timed rounds per run (after one compiling round)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for the sharing kernels and the in-process clients (default: the cores)")
    p.add_argument("--serial", action="store_true",
                   help="also time 'secure (serial)' in every pair: the same aggregator reading the updates before "
                        "it starts (no overlap with training) and in one thread (what the overlap and threads buy)")
    p.add_argument("--parallel-clients", action="store_true",
                   help="also time 'secure (parallel clients)' in every pair: the same overlapped round with its "
                        "in-process clients computed side by side (parallel_clients=True: what the second "
                        "client thread costs or buys)")
    p.add_argument("--no-jit", action="store_true",
                   help="also time 'secure (NumPy pass)': the clients' pass and the key expansion in NumPy and "
                        "OpenSSL, without the compiled loops (refimpl.jit), as without numba installed")
    p.add_argument("--openssl-keystream", action="store_true",
                   help="also time 'secure (OpenSSL keystream)': the compiled client loop with OpenSSL making every "
                        "keystream (REFIMPL_JIT_AES=0) instead of the compiled AES-CTR")
    p.add_argument("--profile-calls", type=int, default=20, help="calls per variant in the stage profile (0: none)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/secure_round-<date>.json); '-'")
    args = p.parse_args(argv)
    from refimpl.sharing import kernels

    kernels.set_threads(args.threads)
    ds, note = _common.fedavg_dataset()
    fed = partition.federate(ds.x_train, ds.y_train, partition.iid(ds.y_train, 100, seed=0), pad_multiple=10)
    cdata = server.to_device(fed)
    update = client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=10)
    engines = {
        "plaintext": server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.1, seed=0),
        "secure": server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.1, seed=0,
                                aggregate=make_secure_aggregator("additive", servers=2)),
    }
    variants = []  # (engine name, result tag): the other settings timed in every pair beside "secure"
    if args.serial:
        serial_agg = make_secure_aggregator("additive", servers=2)

        def serial(updates: Any, weights: Any) -> Any:
            host = {k: np.asarray(v) for k, v in updates.items()}  # waits for training: nothing overlaps it
            previous = kernels.set_threads(1)
            try:
                return serial_agg(host, weights)
            finally:
                kernels.set_threads(previous)

        engines["secure (serial)"] = server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.1, seed=0,
                                                   aggregate=serial)
        variants.append(("secure (serial)", "serial"))
    if args.parallel_clients:
        two_agg = make_secure_aggregator("additive", servers=2)
        two_agg.parallel_clients = True
        engines["secure (parallel clients)"] = server.FedAvg(update, server.server_optimizer("fedavg"),
                                                             fraction=0.1, seed=0, aggregate=two_agg)
        variants.append(("secure (parallel clients)", "parallel_clients"))
    if args.no_jit:
        engines["secure (NumPy pass)"] = server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.1,
                                                       seed=0, aggregate=switched(jit.set_enabled, False))
        variants.append(("secure (NumPy pass)", "numpy_pass"))
    if args.openssl_keystream:
        engines["secure (OpenSSL keystream)"] = server.FedAvg(update, server.server_optimizer("fedavg"),
                                                              fraction=0.1, seed=0,
                                                              aggregate=switched(jit.set_aes, False))
        variants.append(("secure (OpenSSL keystream)", "openssl_keystream"))
    info = _common.machine_info(optax=optax.__version__)
    print(f"# secure vs plaintext FedAvg round ({note}, 2NN, K=100, C=0.1, E=1, B=10); {args.pairs} pairs x "
          f"{args.rounds} rounds; load {info['loadavg_start']}")
    pairs = []
    for i in range(args.pairs):
        order = tuple(engines) if i % 2 == 0 else tuple(reversed(engines))
        runs = run_block(engines, cdata, args.rounds, flip=i % 2 == 1)
        pair = {"order": list(order), "runs": runs,
                "wall_ratio": runs["secure"]["median_wall_s"] / runs["plaintext"]["median_wall_s"],
                "cpu_ratio": runs["secure"]["median_cpu_s"] / runs["plaintext"]["median_cpu_s"]}
        for name, tag in variants:
            for clock in ("wall", "cpu"):
                pair[f"{tag}_{clock}_ratio"] = runs[name][f"median_{clock}_s"] / runs["plaintext"][f"median_{clock}_s"]
        pairs.append(pair)
        print(f"pair {i + 1}: plaintext {runs['plaintext']['median_wall_s']*1e3:7.1f} ms wall "
              f"{runs['plaintext']['median_cpu_s']*1e3:7.1f} ms cpu | secure {runs['secure']['median_wall_s']*1e3:7.1f}"
              f" ms wall {runs['secure']['median_cpu_s']*1e3:7.1f} ms cpu | ratio wall {pair['wall_ratio']:.3f}x "
              f"cpu {pair['cpu_ratio']:.3f}x" + "".join(f" | {tag}: wall {pair[f'{tag}_wall_ratio']:.3f}x cpu "
                                                       f"{pair[f'{tag}_cpu_ratio']:.3f}x" for _, tag in variants),
              flush=True)
    pooled = {name: {clock: statistics.median([t for pr in pairs for t in pr["runs"][name][f"{clock}_s"]])
                     for clock in ("wall", "cpu")} for name in engines}
    summary = {clock: {"pair_ratios": _common.spread([pr[f"{clock}_ratio"] for pr in pairs]),
                       "pooled_ratio": pooled["secure"][clock] / pooled["plaintext"][clock]}
               for clock in ("wall", "cpu")}
    for name, tag in variants:
        for clock in ("wall", "cpu"):
            summary[f"{tag}_{clock}"] = {"pair_ratios": _common.spread([pr[f"{tag}_{clock}_ratio"] for pr in pairs]),
                                         "pooled_ratio": pooled[name][clock] / pooled["plaintext"][clock]}
    for clock, s in summary.items():
        r = s["pair_ratios"]
        print(f"{clock:>11}: pooled {s['pooled_ratio']:.3f}x; per pair median {r['median']:.3f}x, spread "
              f"{r['min']:.3f}-{r['max']:.3f}x (target <= 1.1x: {'met' if r['max'] <= 1.1 else 'not on every pair'})")
    stages: dict[str, dict[str, float]] = {}
    if args.profile_calls:
        captured: dict[str, Any] = {}

        def capture(updates: Any, weights: Any) -> Any:
            captured.update(updates=jax.device_get(updates), weights=weights)
            return server.weighted_mean(updates, weights)

        grab = server.FedAvg(update, server.server_optimizer("fedavg"), fraction=0.1, seed=0, aggregate=capture)
        grab.run_round(grab.init(model.init("2nn", seed=0)), cdata)
        stages = profile_stages(captured["updates"], captured["weights"], args.profile_calls)
        print("# secure step, CPU ms per round by stage (one thread, median of "
              f"{args.profile_calls} calls; a stage timer costs ~1 us)")
        for variant, table in stages.items():
            for k, v in table.items():
                print(f"  {variant:>9} {k:<45} {v:7.3f}")
    result = {"benchmark": "secure_round", "machine": info,
              "setting": {"data": note, "model": "2nn", "clients": 100, "fraction": 0.1, "local_epochs": 1,
                          "batch_size": 10, "client_lr": 0.1, "secure": "additive, 2 servers, fresh OS keys",
                          "pairs": args.pairs, "rounds_per_run": args.rounds, "threads": kernels.threads(),
                          "engines": list(engines)},
              "pairs": pairs, "pooled_median_s": pooled, "summary": summary, "stages_cpu_ms": stages}
    _common.write_result(result, args.out, "secure_round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
