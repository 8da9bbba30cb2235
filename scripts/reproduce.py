"""Regenerate the recorded runs behind the README's figures, and the figures file the README is checked against.

    python scripts/reproduce.py --quick    # the demo and docs/secagg/* (3 x 25 rounds): a few minutes
    python scripts/reproduce.py --full     # + docs/fl/* (Fashion-MNIST, 2NN: 7 runs, 550 rounds): ~15 min on 2 cores
    python scripts/reproduce.py --figures  # only recompute docs/figures.json from the recorded runs
    python scripts/reproduce.py --bench    # + the benchmarks (bench/results/*-<date>.json; figures vary by machine)

Every training run is ``python -m refimpl train`` with the flags listed in :data:`RUNS` (each writes its
``config.json``, ``metrics.jsonl`` and plot into ``docs/<name>/``); the demo's figure is written to
``docs/demo/metrics.json``. Then :func:`figures` reads the recorded runs and writes ``docs/figures.json``: every
training figure the README quotes, with the exact text it quotes. ``tests/test_speed_reproduce.py`` checks that the
README shows each of them and that ``docs/figures.json`` matches the recorded runs.

Reproducibility: training figures (accuracies, losses, bytes, epsilon) are bit-reproducible for the same code,
library versions and machine type -- all randomness is seeded (secure aggregation's fresh keys cancel exactly in the
sum; the DP run uses ``--insecure-derived-keys`` so that its noise is seeded too); across CPUs and library versions
they may differ in the last float bits, which training can amplify to a few hundredths of a percentage point.
Timings and speed ratios vary with the machine and its load: they are recorded with machine information in
``bench/results/`` and never compared by the check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURES = DOCS / "figures.json"

FMNIST = ["--dataset", "fashion_mnist", "--model", "2nn", "--clients", "100", "--fraction", "0.1",
          "--local-epochs", "1", "--batch-size", "10", "--client-lr", "0.1"]
SECAGG = [*FMNIST, "--rounds", "25"]
FEDAVGM = ["--server-opt", "fedavgm", "--server-lr", "0.3"]

# name (under docs/): (flags, in the quick set)
RUNS: dict[str, tuple[list[str], bool]] = {
    "fl/fmnist-iid": ([*FMNIST, "--rounds", "50", "--secure", "none"], False),
    "fl/fmnist-iid-seed1": ([*FMNIST, "--rounds", "50", "--secure", "none", "--seed", "1", "--no-plot"], False),
    "fl/fmnist-iid-seed2": ([*FMNIST, "--rounds", "50", "--secure", "none", "--seed", "2", "--no-plot"], False),
    "fl/fmnist-iid-fedavgm": ([*FMNIST, *FEDAVGM, "--rounds", "50", "--secure", "none"], False),
    "fl/fmnist-iid-fedavgm-seed1": ([*FMNIST, *FEDAVGM, "--rounds", "50", "--secure", "none", "--seed", "1",
                                     "--no-plot"], False),
    "fl/fmnist-iid-fedavgm-seed2": ([*FMNIST, *FEDAVGM, "--rounds", "50", "--secure", "none", "--seed", "2",
                                     "--no-plot"], False),
    "fl/fmnist-shards": ([*FMNIST, "--partition", "shards", "--rounds", "200", "--secure", "none"], False),
    "secagg/plaintext": ([*SECAGG, "--secure", "none"], True),
    "secagg/secure": ([*SECAGG, "--secure", "additive"], True),
    "secagg/secure-dp-z0.3": ([*SECAGG, "--secure", "additive", "--clip", "1.0", "--noise-multiplier", "0.3",
                               "--insecure-derived-keys"], True),
}
BENCHMARKS = [["bench/bench_sharing.py", "--quick"], ["bench/bench_share_limits.py"], ["bench/bench_secagg.py"],
              ["bench/bench_secure_round.py"], ["bench/bench_fedavg.py"], ["bench/bench_jax.py"],
              ["bench/bench_inference.py", "--quick"], ["bench/bench_scale.py"]]


def _metrics(name: str, root: Path = DOCS) -> list[dict[str, Any]]:
    path = root / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _at(rows: list[dict[str, Any]], rnd: int) -> dict[str, Any]:
    return next(r for r in rows if r["round"] == rnd)


def _first_at_least(rows: list[dict[str, Any]], level: float) -> int | None:
    return next((r["round"] for r in rows if (r.get("test_accuracy") or 0) >= level), None)


def _sci(x: float) -> str:
    """1e-05 -> "1e-5" (the README's spelling)."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def figures(root: Path = DOCS) -> dict[str, dict[str, Any]]:
    """Every training figure the README quotes, from the recorded runs: ``{key: {"value": v, "text": quoted}}``,
    where ``text`` is exactly what the README shows."""
    out: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any, text: str) -> None:
        out[key] = {"value": value, "text": text}

    iid = [_metrics(n, root) for n in ("fl/fmnist-iid", "fl/fmnist-iid-seed1", "fl/fmnist-iid-seed2")]
    accs = [_at(rows, 50)["test_accuracy"] for rows in iid]
    first = _first_at_least(iid[0], 0.85)
    reached = f"reached at round {first}" if first else "not reached"
    put("fmnist_iid_acc50", accs, f"{_pct(accs[0])} (seed 0, {reached}); seeds 1, 2: {_pct(accs[1])}, "
        f"{_pct(accs[2])}")
    fedavgm = [_metrics(n, root) for n in ("fl/fmnist-iid-fedavgm", "fl/fmnist-iid-fedavgm-seed1",
                                           "fl/fmnist-iid-fedavgm-seed2")]
    accs = [_at(rows, 50)["test_accuracy"] for rows in fedavgm]
    firsts = [_first_at_least(rows, 0.85) for rows in fedavgm]
    put("fmnist_fedavgm_acc50", {"acc": accs, "first85": firsts},
        " / ".join(map(_pct, accs)) + " (seeds 0/1/2; >= 85% from round " + "/".join(map(str, firsts)) + ")")
    rows = [r for r in _metrics("fl/fmnist-shards", root) if r.get("test_accuracy") is not None]
    best = max(rows, key=lambda r: r["test_accuracy"])
    tail = statistics.mean(r["test_accuracy"] for r in rows if 181 <= r["round"] <= 200)
    last = _at(rows, 200)["test_accuracy"]
    put("fmnist_shards", {"best": best["test_accuracy"], "best_round": best["round"], "mean_181_200": tail,
                          "acc200": last},
        f"{100 * best['test_accuracy']:.1f}% best (round {best['round']}), {100 * tail:.1f}% mean of rounds 181-200, "
        f"{100 * last:.1f}% at round 200")
    runs = {name: _metrics(f"secagg/{name}", root) for name in ("plaintext", "secure", "secure-dp-z0.3")}
    accs = [_at(rows, 25)["test_accuracy"] for rows in runs.values()]
    put("secagg_acc25", accs, "| test accuracy after 25 rounds | " + " | ".join(map(_pct, accs)) + " |")
    dp = _at(runs["secure-dp-z0.3"], 25)
    put("secagg_dp_epsilon25", [dp["epsilon"], dp["delta"]], f"({dp['epsilon']:.1f}, {_sci(dp['delta'])})")
    up = _at(runs["secure"], 25)["bytes_up_per_client"]
    put("secagg_secure_upload", up, f"{int(up):,} B")
    gaps = [abs(a["test_accuracy"] - b["test_accuracy"]) for a, b in zip(runs["plaintext"], runs["secure"])]
    same = next((i for i, g in enumerate(gaps) if g), len(gaps))
    put("secagg_secure_vs_plaintext", {"identical_first_rounds": same, "max_gap_pp": 100 * max(gaps)},
        f"identical for the first {same} rounds and then differ by at most **{100 * max(gaps):.2f} percentage "
        "points**")
    demo = json.loads((root / "demo" / "metrics.json").read_text())
    put("demo_acc", demo["test_accuracy"], _pct(demo["test_accuracy"]))
    return out


def train(name: str, flags: list[str], root: Path = DOCS) -> None:
    out = root / name
    cmd = [sys.executable, "-m", "refimpl", "train", *flags, "--no-progress", "--out", str(out)]
    (out / "metrics.jsonl").unlink(missing_ok=True)
    (out / "checkpoint.npz").unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    (out / "checkpoint.npz").unlink(missing_ok=True)  # 2.4 MB of parameters: not kept in the repository
    print(f"# {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def demo(root: Path = DOCS) -> None:
    """The demo's federated part (mnist-10k, 2 workers, 5 rounds), its final accuracy to docs/demo/metrics.json."""
    from refimpl.demos.federated import federated_demo

    lines: list[str] = []
    acc = federated_demo(lines.append)
    (root / "demo").mkdir(parents=True, exist_ok=True)
    (root / "demo" / "metrics.json").write_text(json.dumps(
        {"command": "python -m refimpl demo (federated part: mnist-10k, 2 workers, 5 rounds, seed 0)",
         "test_accuracy": float(acc), "report": lines}, indent=1) + "\n")
    print(f"# demo: test accuracy {acc:.2%}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="the demo and the secure-aggregation runs")
    mode.add_argument("--full", action="store_true", help="every recorded run")
    mode.add_argument("--figures", action="store_true", help="only recompute docs/figures.json")
    p.add_argument("--bench", action="store_true", help="also run the benchmarks (machine-dependent figures)")
    p.add_argument("--only", default=None, help="comma-separated run names (e.g. fl/fmnist-iid) instead of a set")
    args = p.parse_args(argv)
    if not args.figures:
        names = args.only.split(",") if args.only else [n for n, (_, quick) in RUNS.items() if args.full or quick]
        for name in names:
            train(name, RUNS[name][0])
        if args.full or args.quick:
            demo()
        subprocess.run([sys.executable, "scripts/plot_secagg.py", "docs/secagg"], check=True, cwd=ROOT)
    if args.bench:
        for cmd in BENCHMARKS:
            subprocess.run([sys.executable, *cmd], check=True, cwd=ROOT)
    figs = figures()
    FIGURES.write_text(json.dumps(figs, indent=1, sort_keys=True) + "\n")
    for key, f in sorted(figs.items()):
        print(f"{key:<36} {f['text']}")
    print(f"# wrote {FIGURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
