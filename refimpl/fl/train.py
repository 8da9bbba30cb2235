"""Command-line federated training: ``python -m refimpl train [flags]`` calls `main`.

Writes into ``--out``: ``partition.json`` (per-client sizes and label histograms), ``metrics.jsonl`` (one JSON
object per round: round, test_accuracy, test_loss, train_loss, seconds, eval_seconds, clients,
bytes_up_per_client, bytes_down_per_client; with secure aggregation -- ``--secure additive`` by default, see
`refimpl.fl.secure` -- also secure, survivors, aborted, upload_ratio and the measured bytes_up_per_client; with
``--noise-multiplier`` > 0 also epsilon and delta after that round), ``curves.png`` (test accuracy and
loss against rounds), ``config.json`` and ``checkpoint.npz`` (every ``--checkpoint-every`` rounds and at the end).
``--resume`` continues from ``checkpoint.npz`` to the bit-identical result of an uninterrupted run: all training
randomness is a function of (seed, round, client) and the checkpoint holds the full server state (never a key). The
secure-aggregation keys are fresh from the OS (``--insecure-derived-keys`` derives them from the seed); an exact
secure sum does not depend on them, DP noise and quantization dither do (then a resumed run continues correctly with
another draw of the noise).

Example (the README's Fashion-MNIST run):

    python -m refimpl train --dataset fashion_mnist --model 2nn --clients 100 --fraction 0.1 \\
        --local-epochs 1 --batch-size 10 --client-lr 0.1 --rounds 50 --out runs/fmnist-iid
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

# Flags that may differ between a run and its resumption.
_RUNTIME_ONLY = ("rounds", "resume", "out", "checkpoint_every", "progress", "plot", "data_dir", "eval_every",
                 "coordinator", "num_processes", "process_id")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it informs: not for on/off switches (``--no-plot``), not for None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.nargs == 0 or action.default is None:
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``refimpl train``."""
    from refimpl.fl.data import DATASETS
    from refimpl.fl.model import MODELS
    from refimpl.fl.partition import PARTITIONS
    from refimpl.fl.server import SERVER_OPTIMIZERS

    p = argparse.ArgumentParser(prog="refimpl train", description="Federated averaging of an MLP.",
                                formatter_class=_HelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="fashion_mnist",
                   help="training data (mnist-10k ships with refimpl; python -m refimpl data fetch mnist)")
    p.add_argument("--data-dir", default=None, help="directory with the IDX files (else $REFIMPL_DATA_DIR, ...)")
    p.add_argument("--partition", choices=PARTITIONS, default="iid", help="how the training set is split among clients")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (--partition dirichlet)")
    p.add_argument("--shards-per-client", type=int, default=2, help="for --partition shards")
    p.add_argument("--clients", type=int, default=100, help="number of clients K")
    p.add_argument("--fraction", type=float, default=0.1, help="fraction C of clients per round")
    p.add_argument("--local-epochs", type=int, default=1, help="local epochs E")
    p.add_argument("--batch-size", type=int, default=10, help="local batch size B")
    p.add_argument("--client-lr", type=float, default=0.1, help="client SGD learning rate")
    p.add_argument("--client-momentum", type=float, default=0.0, help="client SGD momentum (0: plain SGD)")
    p.add_argument("--server-opt", choices=SERVER_OPTIMIZERS, default="fedavg",
                   help="server optimizer on the mean update (fedavg: w += mean update)")
    p.add_argument("--server-lr", type=float, default=None, help="default: 1.0 (fedavg, fedavgm), 0.01 (fedadam)")
    p.add_argument("--rounds", type=int, default=50, help="FedAvg rounds to run")
    p.add_argument("--model", default="2nn", help=f"one of {tuple(MODELS)} or layer sizes like 784,64,10")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the split, the initial model, client sampling and shuffling")
    p.add_argument("--devices", type=int, default=1,
                   help="shard clients over this many devices (0: all; with --processes, counted over all processes)")
    p.add_argument("--processes", type=int, default=1,
                   help="run as this many coordinated processes on 127.0.0.1 (jax.distributed, gloo); --devices "
                        "then counts the devices of all processes (1: one per process)")
    p.add_argument("--coordinator", default=None,
                   help="real hosts: host:port of process 0 (start one process per host with the same flags)")
    p.add_argument("--num-processes", type=int, default=None, help="real hosts: the number of processes P")
    p.add_argument("--process-id", type=int, default=None, help="real hosts: this process, 0 .. P-1")
    p.add_argument("--fused-mean", action="store_true",
                   help="average the updates inside the compiled round program (no per-client updates in memory: "
                        "for cohorts of thousands; plaintext only, --secure none)")
    p.add_argument("--clients-per-chunk", type=int, default=None,
                   help="vmap this many clients at a time (default: all of a round's clients)")
    p.add_argument("--out", default="runs/fedavg", help="output directory")
    p.add_argument("--checkpoint-every", type=int, default=10, help="rounds between checkpoints (0: only at end)")
    p.add_argument("--eval-every", type=int, default=1, help="rounds between test evaluations")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not write curves.png")
    from refimpl.fl import secure_cli
    from refimpl.fl.population import cli as population_cli
    secure_cli.add_arguments(p)
    population_cli.add_arguments(p)  # --population, orchestration, drift, personalization (issue 16)
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("clients", "local_epochs", "batch_size", "rounds", "shards_per_client"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("checkpoint_every", "devices"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    _check_processes(args, parser)
    from refimpl.fl.population import cli as population_cli
    population_cli.check(args, parser)
    if args.eval_every < 1:
        parser.error(f"--eval-every must be >= 1, got {args.eval_every}")
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
    if not 0 <= args.seed < 2**31:
        parser.error(f"--seed must be in [0, 2**31), got {args.seed}")
    _check_numbers(args, parser)
    try:
        from refimpl.fl.model import sizes_of
        sizes_of(_model_spec(args.model))
    except ValueError as e:
        parser.error(f"--model {args.model!r}: {e}")


def _check_numbers(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Finite, in-range learning rates, momentum, alpha; the secure-aggregation flags against the round size."""
    import math

    if not (math.isfinite(args.client_lr) and args.client_lr > 0):
        parser.error(f"--client-lr must be a finite number > 0, got {args.client_lr}")
    if not (math.isfinite(args.client_momentum) and 0 <= args.client_momentum < 1):
        parser.error(f"--client-momentum must lie in [0, 1), got {args.client_momentum}")
    if args.server_lr is not None and not (math.isfinite(args.server_lr) and args.server_lr > 0):
        parser.error(f"--server-lr must be a finite number > 0, got {args.server_lr}")
    if not (math.isfinite(args.alpha) and args.alpha > 0):
        parser.error(f"--alpha must be a finite number > 0, got {args.alpha}")
    from refimpl.errors import ConfigurationError
    from refimpl.fl import secure_cli, server
    try:
        secure_cli.check_args(args, server.num_sampled(args.clients, args.fraction))
    except ConfigurationError as e:
        parser.error(str(e))


def _check_processes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks the multi-process flags; with ``--coordinator``, ``--processes`` becomes ``--num-processes``."""
    joined = (args.coordinator, args.num_processes, args.process_id)
    if any(v is not None for v in joined) and any(v is None for v in joined):
        parser.error("--coordinator, --num-processes and --process-id go together (one process per host)")
    if args.coordinator is not None:
        if args.processes not in (1, args.num_processes):
            parser.error(f"--processes {args.processes} disagrees with --num-processes {args.num_processes}")
        args.processes = args.num_processes
    if args.processes < 1:
        parser.error(f"--processes must be >= 1, got {args.processes}")
    if args.fused_mean and args.secure != "none":
        parser.error("--fused-mean averages in plaintext inside the round program: use it with --secure none")
    if args.processes > 1:
        if args.devices not in (0, 1) and args.devices % args.processes:
            parser.error(f"--devices {args.devices} counts devices across all {args.processes} processes: give a "
                         f"multiple of --processes")


def _model_spec(text: str) -> str | list[int]:
    from refimpl.fl.model import MODELS
    if text in MODELS:
        return text
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(f"unknown model; choose one of {', '.join(MODELS)} or give layer sizes like 784,64,10"
                         ) from None


def write_plot(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    """Writes test accuracy and test loss against rounds to a PNG (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = [m for m in metrics if m.get("test_accuracy") is not None]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    rounds = [m["round"] for m in rows]
    ax_acc.plot(rounds, [m["test_accuracy"] for m in rows], color="tab:blue")
    ax_acc.set(xlabel="round", ylabel="test accuracy")
    fig.suptitle(title)
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    ax_acc.grid(alpha=0.3)
    ax_loss.plot(rounds, [m["test_loss"] for m in rows], color="tab:red", label="test")
    ax_loss.plot(rounds, [m["train_loss"] for m in rows], color="tab:gray", label="train (clients)")
    ax_loss.set(xlabel="round", ylabel="cross-entropy loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def _read_metrics(path: Path, up_to: int) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` up to round ``up_to``. A torn last line (a run killed while writing it) is
    dropped with a warning -- the rows are rewritten from the checkpoint's round anyway; a bad line before the last
    is an error naming the file and line."""
    if not path.exists():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    rows = []
    for k, (i, line) in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("round"), int):
                raise ValueError("not a metrics row with an integer 'round'")
        except ValueError as e:
            if k == len(lines) - 1:
                print(f"refimpl train: warning: {path}:{i}: dropping a torn last line ({e})", file=sys.stderr)
                break
            raise ValueError(f"{path}:{i}: not a metrics line ({e}); fix or delete that line") from None
        rows.append(row)
    return [r for r in rows if r["round"] <= up_to]


@dataclasses.dataclass
class _Run:
    """Everything one training run holds: its output paths, data, engine and (optional) secure aggregation."""

    args: argparse.Namespace
    config: dict[str, Any]
    out: Path
    dataset: Any
    client_data: Any
    fedavg: Any
    agg: Any
    acct: Any
    population: Any = None  # refimpl.fl.population.run.PopulationRounds with --population

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.npz"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"


def _setup(args: argparse.Namespace) -> _Run:
    """Load and partition the data (writing ``partition.json``), place it on the devices, build the FedAvg engine."""
    import optax

    from refimpl.fl import client, data, model, partition, secure_cli, server

    agg, acct = secure_cli.from_args(args)  # fresh OS keys unless --insecure-derived-keys (then derived from --seed)
    if agg is not None and agg.insecure_derived_keys:
        print("refimpl train: WARNING: --insecure-derived-keys: every secure-aggregation key (shares, masks, dither, "
              "DP noise) is derived from --seed; anyone who knows the seed recovers each client's update and the "
              "DP guarantee is void. Use only to reproduce a run.", file=sys.stderr, flush=True)
    config = {k: v for k, v in sorted(vars(args).items()) if k not in _RUNTIME_ONLY}
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    ds = data.load(args.dataset, data_dir=args.data_dir)
    sizes = model.sizes_of(_model_spec(args.model))
    if sizes[0] != ds.x_train.shape[1] or sizes[-1] != ds.num_classes:
        raise ValueError(f"--model {args.model}: layer sizes {sizes} must start with {ds.x_train.shape[1]} (the "
                         f"{ds.name} inputs) and end with {ds.num_classes} (its classes), e.g. "
                         f"{ds.x_train.shape[1]},64,{ds.num_classes}")
    parts = partition.make_partition(args.partition, ds.y_train, args.clients, seed=args.seed, alpha=args.alpha,
                                     shards_per_client=args.shards_per_client, exponent=args.size_exponent)
    fed = partition.federate(ds.x_train, ds.y_train, parts, pad_multiple=args.batch_size)
    hist = partition.label_histograms(ds.y_train, parts, ds.num_classes)
    (out / "partition.json").write_text(json.dumps({
        "dataset": ds.name, "source": ds.source, "sizes": partition.sizes(parts).tolist(),
        "label_histograms": hist.tolist(), "labels_per_client": (hist > 0).sum(axis=1).tolist()}) + "\n")
    mesh = None
    if args.devices != 1 or args.processes > 1:
        total = args.processes if args.devices == 1 else args.devices
        mesh = client.client_mesh(None if total == 0 else total)
    client_opt = optax.sgd(args.client_lr, momentum=args.client_momentum or None)
    if args.fused_mean:
        program: Any = client.make_round_mean(client_opt, local_epochs=args.local_epochs, batch_size=args.batch_size,
                                              clients_per_chunk=args.clients_per_chunk or 1, mesh=mesh)
    else:
        program = client.make_round_update(client_opt, local_epochs=args.local_epochs, batch_size=args.batch_size,
                                           clients_per_chunk=args.clients_per_chunk)
    fedavg = server.FedAvg(
        program,
        server.server_optimizer(args.server_opt, args.server_lr), fraction=args.fraction, seed=args.seed,
        aggregate=agg or server.weighted_mean)
    from refimpl.fl.population import cli as population_cli
    population = population_cli.from_args(args, fed, model.sizes_of(_model_spec(args.model)))
    return _Run(args, config, out, ds, server.to_device(fed, mesh), fedavg, agg, acct, population)


def _initial_state(run: _Run) -> tuple[Any, list[dict[str, Any]]]:
    """A fresh state, or the checkpoint's with ``--resume``; the metrics history up to that round (rewritten)."""
    from refimpl.fl import checkpoint, model

    args = run.args
    if args.resume:
        if not run.checkpoint_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {run.checkpoint_path}")
        state, saved = checkpoint.load(run.checkpoint_path, run.fedavg.optimizer)
        config = json.loads(json.dumps(run.config))
        if saved != config:
            diff = {k: (saved.get(k), config.get(k)) for k in set(saved) | set(config) if saved.get(k) != config.get(k)}
            raise ValueError(f"--resume: checkpoint was written with other settings (saved, now): {diff}")
    else:
        state = run.fedavg.init(model.init(_model_spec(args.model), seed=args.seed))
    if run.agg:  # streams are domain-separated by round; epsilon accumulates over the whole run
        run.agg.round = state.round
    if run.acct:
        run.acct.rounds = state.round
    history = _read_metrics(run.metrics_path, state.round)
    if run.population is not None:  # the simulated clock and participation of the rounds already run
        run.population.replay(state.round, run.client_data, history)
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    (run.out / "config.json").write_text(json.dumps(run.config, indent=2, sort_keys=True) + "\n")
    return state, history


def _peak_rss_mib() -> float | None:
    """This process's peak resident memory so far in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


def _round_row(run: _Run, state: Any, result: Any, seconds: float, param_bytes: int) -> dict[str, Any]:
    """The metrics line of one finished round (evaluation added by the caller)."""
    from refimpl.fl import secure_cli

    row: dict[str, Any] = {"round": state.round, "test_accuracy": None, "test_loss": None,
                           "train_loss": result.train_loss, "seconds": seconds,
                           "clients": len(result.clients), "bytes_up_per_client": param_bytes,
                           "bytes_down_per_client": param_bytes, "peak_rss_mib": _peak_rss_mib()}
    row.update(secure_cli.round_metrics(run.agg, run.acct))  # survivors, measured upload bytes, (epsilon, delta)
    if run.population is not None:
        from refimpl.fl.population import cli as population_cli
        row.update(population_cli.round_metrics(run.population))  # simulated time, dropouts by cause, bytes
    return row


def _train(run: _Run, state: Any, history: list[dict[str, Any]]) -> None:
    """Run rounds until ``--rounds``: one metrics line per round, evaluations and checkpoints as configured."""
    import jax
    from tqdm import tqdm

    from refimpl.fl import checkpoint, model

    args, ds = run.args, run.dataset
    x_test, y_test = jax.device_put(ds.x_test), jax.device_put(ds.y_test)
    evaluate = jax.jit(lambda p: (model.accuracy(p, x_test, y_test), model.loss(p, x_test, y_test)))
    param_bytes = int(sum(v.size * 4 for v in state.params.values()))
    bar = tqdm(total=args.rounds, initial=state.round, disable=not args.progress, unit="round", file=sys.stderr)
    postfix: dict[str, str] = {}
    with run.metrics_path.open("a") as log:
        while state.round < args.rounds:
            t0 = time.perf_counter()
            if run.population is not None:
                state, result = run.population.run_round(run.fedavg, state, run.client_data)
            else:
                state, result = run.fedavg.run_round(state, run.client_data)
            jax.block_until_ready(state.params)
            _check_finite(state)
            row = _round_row(run, state, result, time.perf_counter() - t0, param_bytes)
            if state.round % args.eval_every == 0 or state.round == args.rounds:
                t1 = time.perf_counter()
                acc, test_loss = evaluate(state.params)
                row.update(test_accuracy=float(acc), test_loss=float(test_loss),
                           eval_seconds=time.perf_counter() - t1)
                postfix["acc"], postfix["loss"] = f"{float(acc):.4f}", f"{float(test_loss):.3f}"
            if "epsilon" in row:
                postfix["eps"] = f"{row['epsilon']:.3g}"
            if "sim_hours" in row:
                postfix["sim_h"] = f"{row['sim_hours']:.2f}"
            if postfix:
                bar.set_postfix(postfix)
            log.write(json.dumps(row) + "\n")
            log.flush()
            history.append(row)
            bar.update(1)
            if state.round == args.rounds or (args.checkpoint_every and state.round % args.checkpoint_every == 0):
                checkpoint.save(run.checkpoint_path, state, run.config)
    bar.close()


def _check_finite(state: Any) -> None:
    """Stop before a diverged model (NaN or infinity) reaches a checkpoint."""
    import jax.numpy as jnp

    bad = sorted(k for k, v in state.params.items() if not bool(jnp.isfinite(v).all()))
    if bad:
        from refimpl.errors import OutOfRangeError
        raise OutOfRangeError(f"round {state.round}: the model update is not finite (NaN or infinity in {bad}): "
                              "local training diverged")


def _report(run: _Run, history: list[dict[str, Any]]) -> None:
    """Write ``curves.png`` (with ``--plot``) and print the last evaluated round."""
    args = run.args
    if args.plot and history:
        write_plot(history, run.out / "curves.png", f"{args.dataset}, {args.partition}, {args.model}; {_privacy(args)}")
    from refimpl.fl.population import cli as population_cli
    population_cli.report(run, history)  # population.json/png, personalization (with their flags)
    last = next((r for r in reversed(history) if r["test_accuracy"] is not None), None)
    if last is not None and not args.process_id:
        privacy = f", (epsilon, delta) = ({last['epsilon']:.3g}, {last['delta']:g})" if "epsilon" in last else ""
        print(f"round {last['round']}: test accuracy {last['test_accuracy']:.4f}, test loss "
              f"{last['test_loss']:.4f}{privacy}; outputs in {run.out}")


def _privacy(args: argparse.Namespace) -> str:
    """``secure aggregation: additive (2 servers), DP: off`` -- the privacy settings in a few words."""
    secure = "off (plaintext)" if args.secure == "none" else \
        f"{args.secure} ({args.servers} servers)" if args.secure == "additive" else args.secure
    dp = f"z={args.noise_multiplier:g}, clip {args.clip:g}, {args.noise} noise" if args.noise_multiplier > 0 else "off"
    return f"secure aggregation: {secure}, DP: {dp}"


def summary(run: _Run) -> str:
    """The start-up line: data, clients, model, local training, rounds, secure aggregation and DP."""
    from refimpl.fl import model, server

    a, ds = run.args, run.dataset
    m = server.num_sampled(a.clients, a.fraction)
    sizes = model.sizes_of(_model_spec(a.model))
    params = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    return (f"refimpl train: {ds.name} ({len(ds.x_train)} train / {len(ds.x_test)} test, {ds.source}); "
            f"{a.clients} clients ({a.partition}), {m} per round; model {a.model} ({params:,} parameters); "
            f"E={a.local_epochs} B={a.batch_size} lr={a.client_lr:g}; {a.rounds} rounds ({a.server_opt}); "
            f"{_privacy(a)}")


def _join(args: argparse.Namespace) -> None:
    """In a multi-process run: join the coordinator; processes other than 0 write to ``OUT/.process-<id>``."""
    from refimpl.fl import distributed

    per_process = None if args.devices == 0 else max(1, args.devices // args.processes)
    distributed.initialize(args.coordinator, args.num_processes, args.process_id, local_cpu_devices=per_process)
    if args.process_id > 0:  # same files, kept apart (each process resumes from its own checkpoint)
        args.out = str(Path(args.out) / f".process-{args.process_id}")
        args.progress = args.plot = False


def _run(args: argparse.Namespace) -> int:
    if args.coordinator is not None:
        _join(args)
    run = _setup(args)
    if not args.process_id:  # in a multi-process run, process 0 speaks for all
        print(summary(run), flush=True)
    state, history = _initial_state(run)
    _train(run, state, history)
    _report(run, history)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs federated training from command-line arguments.

    Args:
        argv: Arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
        0 on success; 2 with a one-line error naming the flag or file (never a traceback) for bad flags, data
        that cannot be found or read, an unreadable or foreign checkpoint, an unwritable ``--out`` (a file, a
        full disk), or an update that is not finite (training diverged).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    if args.processes > 1 and args.coordinator is None:  # launch the processes here, coordinated on 127.0.0.1
        from refimpl.fl.distributed import launch
        return launch(["train", *(sys.argv[1:] if argv is None else argv)], args.processes)
    from refimpl.fl.checkpoint import CheckpointError
    from refimpl.fl.data import DataError, DatasetNotFoundError
    try:
        return _run(args)
    except (DatasetNotFoundError, DataError, CheckpointError, ValueError, ModuleNotFoundError, OSError) as e:
        message = " ".join(str(e).split())
        if "not finite" in message:
            message += (f" (a --client-lr of {args.client_lr:g} or --client-momentum of {args.client_momentum:g} that "
                        "is too large usually causes this; lower it, or set --clip)")
        print(f"refimpl train: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
