"""10,000 clients per round across processes: seconds per round, 1 -> 2 process scaling, peak memory per process.

Setting (issue 17): Fashion-MNIST split into 10,000 equal IID clients (6 images each), every client in every round
(C = 1), 2NN 784-200-200-10, E = 1, B = 10, client SGD lr 0.1, plaintext mean computed inside the compiled round
program (``--fused-mean --clients-per-chunk 50``: per-client updates are never held in memory, which at 10,000 x
199,210 float32 would be 8 GB). Each configuration is one ``python -m refimpl train`` run (launched and coordinated
on 127.0.0.1, every process stopped at the end):

* ``1x2``: 1 process x 2 CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2 ... --devices 2``);
* ``2x2``: 2 processes x 2 CPU devices each (``--processes 2 --devices 4``; jax.distributed, gloo collectives).

Reported: median seconds per round after the first (which compiles), the peak resident memory of each process
(``peak_rss_mib`` in each process's metrics), and ``1x2`` time / ``2x2`` time. On one machine the two processes
share its cores: the 2-process figure measures the cost of distribution (collectives over TCP, one more copy of
the data), not a speed-up; across two hosts each process would bring its own cores.

Run: ``nice python bench/bench_scale.py [--rounds 3] [--clients 10000]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

from refimpl.fl import data, distributed

CONFIGS = {"1x2": (1, 2), "2x2": (2, 2)}


def run_config(name: str, processes: int, per_process: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    flags = ["train", "--dataset", "fashion_mnist", "--model", "2nn", "--clients", str(args.clients),
             "--fraction", "1.0", "--local-epochs", "1", "--batch-size", "10", "--client-lr", "0.1",
             "--rounds", str(args.rounds), "--secure", "none", "--fused-mean", "--clients-per-chunk",
             str(args.chunk), "--devices", str(processes * per_process), "--no-plot", "--no-progress",
             "--checkpoint-every", "0", "--eval-every", str(args.rounds), "--out", str(out)]
    env = {"JAX_PLATFORMS": "cpu"}
    if processes == 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={per_process}"
    else:
        flags += ["--processes", str(processes)]
    t0 = time.perf_counter()
    rc = distributed.launch(flags, processes, timeout_s=args.timeout, env=env)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"configuration {name} failed with exit status {rc}")
    dirs = [out] + [out / f".process-{i}" for i in range(1, processes)]
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in dirs]
    seconds = [r["seconds"] for r in rows[0][1:]] or [rows[0][0]["seconds"]]
    return {"processes": processes, "devices_per_process": per_process, "run_wall_s": wall,
            "first_round_s": rows[0][0]["seconds"], "round_s": seconds, "median_round_s": statistics.median(seconds),
            "peak_rss_mib_per_process": [max(r.get("peak_rss_mib") or 0 for r in proc) for proc in rows],
            "final_test_accuracy": rows[0][-1]["test_accuracy"], "clients_per_round": rows[0][-1]["clients"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds per configuration (the first compiles)")
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--chunk", type=int, default=50, help="--clients-per-chunk")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per configuration before it is killed")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/scale-<date>.json); '-': none")
    args = p.parse_args(argv)
    try:
        data.load("fashion_mnist", use_tfds=False)
    except data.DatasetNotFoundError as e:
        raise SystemExit(f"bench_scale needs Fashion-MNIST ({e})") from None
    info = _common.machine_info()
    print(f"# {args.clients} clients per round, 2NN, E=1, B=10; {args.rounds} rounds per configuration; "
          f"{info['cores_available']} cores, load {info['loadavg_start']}", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="refimpl-scale-") as tmp:
        for name in args.configs.split(","):
            processes, per_process = CONFIGS[name.strip()]
            r = run_config(name, processes, per_process, args, Path(tmp) / name)
            results[name] = r
            print(f"{name}: {r['median_round_s']:.2f} s/round (first {r['first_round_s']:.1f} s), peak RSS per "
                  f"process {', '.join(f'{m:.0f}' for m in r['peak_rss_mib_per_process'])} MiB, test accuracy "
                  f"{r['final_test_accuracy']:.4f}", flush=True)
    if "1x2" in results and "2x2" in results:
        results["scaling_1x2_over_2x2"] = results["1x2"]["median_round_s"] / results["2x2"]["median_round_s"]
        print(f"1 -> 2 processes: {results['scaling_1x2_over_2x2']:.2f}x the rounds per second (same machine)")
    result = {"benchmark": "scale", "machine": info,
              "setting": {"clients": args.clients, "fraction": 1.0, "model": "2nn", "local_epochs": 1,
                          "batch_size": 10, "client_lr": 0.1, "clients_per_chunk": args.chunk, "rounds": args.rounds,
                          "data": "Fashion-MNIST, IID, equal partitions"},
              "results": results}
    _common.write_result(result, args.out, "scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
