"""``train`` flags for the simulated population, its outputs and its plots (used by `refimpl.fl.train`).

With ``--population seed`` (the seed's description: see `refimpl.fl.population.model`) or ``ideal`` (always eligible,
equally fast), ``train`` runs population-driven rounds (`refimpl.fl.population.run`) and writes, besides the
usual outputs: per-round fields in ``metrics.jsonl`` (sim_hours, round_seconds, waited_seconds, eligible,
selected, counted, abandoned, dropouts by cause, bytes up/down per selected client; with secure aggregation the
protocol's report), ``population.json`` (summary; per-client counted/selected counts and bytes up/down; opted-out
and retired clients) and ``population.png`` (accuracy against simulated hours, participation histogram,
dropouts per round by cause, bytes per client).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "from_args", "round_metrics", "write_outputs", "write_plot"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the population flags (one argument group)."""
    g = parser.add_argument_group("client population and orchestration (refimpl.fl.population.model, .orchestration)")
    g.add_argument("--population", choices=("none", "seed", "ideal"), default="none",
                   help="simulate device availability, speed and bandwidth (seed: charging + Wi-Fi + idle windows "
                        "across time zones, opt-outs, slow uplinks; ideal: always on); none: fixed-fraction sampling")
    g.add_argument("--availability-trace", default=None,
                   help="CSV of eligibility intervals (client_id,start_s,end_s) replacing the synthetic windows")
    g.add_argument("--target", type=int, default=None, help="clients counted per round (default: fraction x clients)")
    g.add_argument("--overselect", type=float, default=1.3, help="select this many times the target")
    g.add_argument("--deadline", type=float, default=120.0,
                   help="reporting deadline in simulated seconds (0: wait for every selected client)")
    g.add_argument("--wait-all", action="store_true",
                   help="select exactly the target and wait for all of them (no over-selection, no deadline)")
    g.add_argument("--min-reports", type=int, default=1, help="fewer counted clients abandon the round")
    g.add_argument("--drift-rate", type=float, default=0.0,
                   help="data drift: each client's window moves by this fraction of its data per round (0: off)")
    g.add_argument("--drift-window", type=float, default=0.5, help="fraction of its data a drifting client holds")
    g.add_argument("--secagg-degree", type=int, default=None, help="SecAgg+ graph degree with --population")
    g.add_argument("--size-exponent", type=float, default=1.5,
                   help="Pareto tail index of client sizes for --partition powerlaw (smaller: heavier tail)")
    from refimpl.fl.population import personalize
    personalize.add_arguments(parser)


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuses inconsistent population flags (argparse exit 2)."""
    if args.fused_mean and args.population != "none":
        parser.error("--fused-mean cannot run population rounds (they need the per-client updates)")
    if not args.size_exponent > 0:
        parser.error(f"--size-exponent must be > 0, got {args.size_exponent}")
    from refimpl.fl.population import personalize
    personalize.check(args, parser)
    if args.population == "none":
        used = [f for f, on in (("--availability-trace", args.availability_trace is not None),
                                ("--wait-all", args.wait_all), ("--drift-rate", args.drift_rate > 0)) if on]
        if used:
            parser.error(f"{', '.join(used)} need --population seed|ideal")
        return
    if args.target is not None and not 1 <= args.target <= args.clients:
        parser.error(f"--target must be in [1, --clients={args.clients}], got {args.target}")
    if not (args.overselect >= 1 and math.isfinite(args.overselect)):
        parser.error(f"--overselect must be >= 1, got {args.overselect}")
    if not (args.deadline >= 0 and math.isfinite(args.deadline)):
        parser.error(f"--deadline must be >= 0 seconds, got {args.deadline}")
    if not 0 < args.drift_window <= 1 or not args.drift_rate >= 0:
        parser.error(f"need 0 < --drift-window <= 1 and --drift-rate >= 0, got {args.drift_window}, {args.drift_rate}")
    if getattr(args, "processes", 1) > 1 or args.devices != 1:
        parser.error("--population runs on one process and one device (--devices 1)")
    if args.dropout > 0:
        parser.error("--dropout draws random dropouts; with --population the population makes the dropouts")
    if args.secure != "none" and (args.noise_multiplier > 0 or args.bits is not None):
        parser.error("--population with --secure supports fixed-point secure aggregation only (no DP noise, no --bits)")


def target_of(args: argparse.Namespace) -> int:
    """Clients counted per round."""
    return args.target if args.target is not None else max(1, round(args.fraction * args.clients))


def from_args(args: argparse.Namespace, fed: Any, layer_sizes: tuple[int, ...]) -> Any:
    """The `PopulationRounds` for parsed flags, or None without ``--population``."""
    from refimpl.fl import partition
    from refimpl.fl.population import model as population
    from refimpl.fl.population import orchestration
    from refimpl.fl.population import run as population_run
    from refimpl.fl.population import secure as secure_population

    if args.population == "none":
        return None
    num_params = sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
    avail = None
    if args.availability_trace is not None:
        avail = population.Availability.from_csv(args.availability_trace, num_clients=args.clients)
    pop = population.Population.synthetic(args.clients, population.preset(args.population), seed=args.seed,
                                          availability=avail)
    secure = None
    param_bytes = 4.0 * num_params
    update_bytes = param_bytes
    setup = finish = 0
    if args.secure != "none":
        insecure = getattr(args, "insecure_derived_keys", False)  # keys from the OS unless this opt-in
        key = (hashlib.sha256(f"refimpl/population/{args.seed}".encode()).digest()[:16] if insecure else None)
        kw: dict[str, Any] = {} if key is None else {"key": key}
        secure = secure_population.PopulationSecureAggregator(
            args.secure, servers=args.servers, threshold=args.threshold, degree=args.secagg_degree,
            min_clients=args.min_clients, frac_bits=args.frac_bits, **kw)
        update_bytes = num_params * args.ring_bits / 8.0
        if args.secure == "secagg":
            setup, finish = 2, 1
    target = target_of(args)
    cfg = orchestration.OrchestrationConfig(
        target=target, overselect=1.0 if args.wait_all else args.overselect,
        deadline_s=None if args.wait_all or args.deadline == 0 else args.deadline,
        min_reports=min(args.min_reports, target), local_epochs=args.local_epochs, setup_rounds=setup,
        finish_rounds=finish)
    orch = orchestration.Orchestrator(pop, cfg, seed=args.seed,
                                      model_scale=num_params / orchestration.REFERENCE_PARAMS)
    drift = None
    if args.drift_rate > 0:
        def drift(r: int) -> tuple[np.ndarray, np.ndarray]:
            return partition.drift_window(fed, r, window=args.drift_window, rate=args.drift_rate, seed=args.seed)
    return population_run.PopulationRounds(orch, param_bytes, update_bytes, secure=secure, drift=drift)


def report(run: Any, history: list[dict[str, Any]]) -> None:
    """End of a ``train`` run: population outputs, then personalization (which retires the clients it served)."""
    from refimpl.fl.population import personalize

    args = run.args
    if args.personalize_steps > 0:
        personalize.run_from_args(run)
    if run.population is not None:
        s = write_outputs(run.population, history, run.out, f"{args.dataset}, {args.partition}, {args.model}",
                          args.plot)
        print(f"population: {s['simulated_hours']:.2f} simulated hours over {s['rounds']} rounds; "
              f"{s['never_counted_fraction']:.1%} of clients never counted; hours to 85%: {s['hours_to_85']}")


def round_metrics(rounds: Any) -> dict[str, Any]:
    """The population's (and its secure aggregation's) fields of the last round's metrics line."""
    if rounds is None:
        return {}
    row = rounds.metrics()
    if rounds.secure is not None and rounds.secure.history:
        rep = rounds.secure.history[-1]
        if rep.round == rounds.last.round:
            row.update(secure=rep.protocol, survivors=rep.counted, aborted=not rep.completed,
                       secure_exact=rep.exact, secure_stages=rep.stages, secure_reason=rep.reason,
                       bytes_up_per_client=rep.upload_bytes_per_client)
    return row


def write_outputs(rounds: Any, history: list[dict[str, Any]], out: Path, title: str, plot: bool) -> dict[str, Any]:
    """Writes ``population.json`` (and ``population.png`` with ``plot``); returns the summary."""
    orch = rounds.orchestrator
    summary = orch.summary()
    reached = [r for r in history if r.get("test_accuracy") is not None]
    summary["final_test_accuracy"] = reached[-1]["test_accuracy"] if reached else None
    for goal in (0.8, 0.85):
        hit = next((r for r in reached if r["test_accuracy"] >= goal), None)
        summary[f"hours_to_{round(goal * 100)}"] = hit["sim_hours"] if hit else None
        summary[f"rounds_to_{round(goal * 100)}"] = hit["round"] if hit else None
    doc = {"summary": summary, "counted_times": orch.counted_times.tolist(),
           "selected_times": orch.selected_times.tolist(), "bytes_down": orch.bytes_down.round().tolist(),
           "bytes_up": orch.bytes_up.round().tolist(), "opted_out": np.flatnonzero(orch.population.opted_out).tolist(),
           "retired": np.flatnonzero(orch.retired).tolist()}
    (out / "population.json").write_text(json.dumps(doc) + "\n")
    if plot:
        write_plot(history, orch, out / "population.png", title)
    return summary


def write_plot(history: list[dict[str, Any]], orch: Any, path: Path, title: str) -> None:
    """Accuracy vs simulated hours, participation histogram, dropouts per round by cause, bytes per client."""
    from matplotlib.figure import Figure

    from refimpl.fl.population.orchestration import CAUSES

    fig = Figure(figsize=(12, 7.5), layout="constrained")
    (a1, a2), (a3, a4) = fig.subplots(2, 2)
    rows = [r for r in history if r.get("test_accuracy") is not None and "sim_hours" in r]
    a1.plot([r["sim_hours"] for r in rows], [r["test_accuracy"] for r in rows], color="tab:blue")
    a1.set(xlabel="simulated hours", ylabel="test accuracy", title=title)
    a1.grid(alpha=0.3)
    live = ~orch.population.opted_out
    counts = orch.counted_times[live]
    a2.hist(counts, bins=min(40, int(counts.max()) + 1) if counts.size else 1, color="tab:green")
    a2.set(xlabel="rounds in which a client was counted", ylabel="clients", yscale="log",
           title=f"participation ({np.mean(counts == 0):.1%} never counted)" if counts.size else "participation")
    rounds = [r["round"] for r in history if "dropouts" in r]
    bottom = np.zeros(len(rounds))
    for cause in CAUSES:
        v = np.array([r["dropouts"].get(cause, 0) for r in history if "dropouts" in r], float)
        if v.any():
            a3.bar(rounds, v, bottom=bottom, width=1.0, label=cause)
            bottom += v
    a3.set(xlabel="round", ylabel="dropouts", title="dropouts per round by cause")
    a3.legend(fontsize=8)
    mb = 1e6
    a4.hist([orch.bytes_down[live] / mb, orch.bytes_up[live] / mb], bins=30, label=["down", "up"],
            color=["tab:blue", "tab:orange"])
    a4.set(xlabel="MB per client over the run", ylabel="clients", title="bytes per client", yscale="log")
    a4.legend()
    fig.savefig(path, dpi=100)
