"""Command-line encrypted training: ``python -m refimpl train-encrypted [flags]`` calls `main`.

An MLP is trained by SGD with its weights AND the data secret-shared (:mod:`refimpl.mpc.training`): the model owner
(``me``) shares the initial weights, the data owners ``jake`` and ``john`` (each holding half of the training set)
share their rows of every batch, the compute parties ``secure_worker``, ``alice`` (``--parties`` > 2 adds
``party2``, ...) train on shares, ``crypto_provider`` deals; every message is in the workers' ledger
(:mod:`refimpl.workers.encrypted_training`). With ``--twin`` (default) the plaintext twin trains beside it in
float64 NumPy (same initial weights, batch order and step) and the weight drift is recorded after every step.

After every epoch the model owner -- and only it -- reconstructs the weights to evaluate them on the test set (its
own model; it never sees the training data). Writes into ``--out``: ``metrics.jsonl`` (one JSON object per epoch:
epoch, step, test_accuracy, test_loss, twin_test_accuracy, drift_max, seconds, twin_seconds, rounds,
online_bytes, dealer_bytes), ``drift.jsonl`` (per step: step, drift_max), ``curves.png``, ``config.json`` and
``checkpoint/``: one file per party holding only that party's secrets -- ``<compute party>.npz`` its shares of
the weights, ``crypto_provider.json`` the dealer's key, ``data_owners.json`` the data owners' sharing key,
``model_owner.json`` its key -- and ``state.json`` (public: epoch, step, counters), plus ``twin.npz`` (the
plaintext reference). ``--resume`` continues bit for bit as the uninterrupted run would (all randomness is a
function of the keys and the step number).

Example:

    python -m refimpl train-encrypted --model small --epochs 3 --batch-size 64 --lr 0.1 --out runs/enc
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_parser", "main"]

_RUNTIME_ONLY = ("epochs", "resume", "out", "progress", "plot", "data_dir")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``refimpl train-encrypted``."""
    p = argparse.ArgumentParser(prog="refimpl train-encrypted", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Train an MLP on secret-shared data with secret-shared weights.")
    p.add_argument("--dataset", default="mnist-10k", choices=("mnist-10k", "mnist", "fashion_mnist"))
    p.add_argument("--data-dir", default=None, help="directory with the IDX files")
    p.add_argument("--model", default="small", help="small (784-128-10), 2nn (784-200-200-10) or sizes 784,64,10")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of the mean loss over a batch")
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="multiply the learning rate by this after every epoch (the twin follows the same schedule)")
    p.add_argument("--loss", choices=("mse", "xent"), default="xent",
                   help="xent: softmax cross-entropy on shares; mse: squared error (no extra rounds)")
    p.add_argument("--parties", type=int, default=2, help="number of compute parties (>= 2)")
    p.add_argument("--frac-bits", type=int, default=16, help="fixed-point fractional bits (base 2, Z_2^64)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training examples")
    p.add_argument("--seed", type=int, default=0, help="public seed of the initial weights and the batch order")
    p.add_argument("--insecure-keys-from-seed", action="store_true",
                   help="derive every party's key from --seed (reproducible runs for tests; INSECURE: anyone who "
                        "knows the seed can reconstruct every share)")
    p.add_argument("--no-twin", dest="twin", action="store_false", help="do not train the plaintext twin")
    p.add_argument("--out", default="runs/encrypted", help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not write curves.png")
    return p


def _sizes(text: str) -> list[int]:
    from refimpl.fl.model import MODELS

    if text in MODELS:
        return list(MODELS[text])
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"refimpl train-encrypted: unknown --model {text!r}; choose one of {', '.join(MODELS)} "
                         "or give sizes like 784,64,10") from None


class _Checkpoint:
    """One file per party under ``out/checkpoint``; each holds only that party's own secret."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "checkpoint"

    def save(self, run: Any, twin: Any, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tr = run.trainer
        for i, w in enumerate(run.compute):
            ps = tr.party_state(i)
            _write_npz(self.dir / f"{w.name}.npz", {f"shares/{k}": v for k, v in ps["shares"].items()},
                       {k: ps[k] for k in ("party", "n", "steps", "sizes")})
        _write_json(self.dir / "crypto_provider.json", {"dealer_key": tr.dealer_key.hex()})
        _write_json(self.dir / "data_owners.json", {"data_key": tr.data_key.hex()})
        _write_json(self.dir / "model_owner.json", {"key": tr.model_key.hex()})
        if twin is not None:
            _write_npz(self.dir / "twin.npz", twin.params, {"steps": twin.steps})
        _write_json(self.dir / "state.json", state)

    def load(self, names: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        states = []
        for name in names:
            with np.load(self.dir / f"{name}.npz") as z:
                meta = json.loads(str(z["meta"]))
                meta["shares"] = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("shares/")}
            states.append(meta)
        return states, json.loads((self.dir / "state.json").read_text())

    def key(self, who: str, field: str) -> bytes:
        return bytes.fromhex(json.loads((self.dir / f"{who}.json").read_text())[field])


def _private_file(path: Path) -> Any:
    """Open ``path`` for writing, readable by its owner only (it holds a party's shares or key)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _write_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with _private_file(tmp) as f:
        np.savez(f, meta=np.asarray(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with _private_file(tmp) as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True).encode())
    tmp.replace(path)


def write_plot(history: list[dict[str, Any]], drift: list[dict[str, Any]], path: Path, title: str) -> None:
    """Test accuracy per epoch (encrypted vs twin) and the weight drift per step, as a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_acc, ax_drift = fig.subplots(1, 2)
    epochs = [m["epoch"] for m in history]
    ax_acc.plot(epochs, [m["test_accuracy"] for m in history], "o-", label="encrypted")
    if history and history[0].get("twin_test_accuracy") is not None:
        ax_acc.plot(epochs, [m["twin_test_accuracy"] for m in history], "s--", label="plaintext twin")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    if drift:
        ax_drift.plot([d["step"] for d in drift], [d["drift_max"] for d in drift], color="tab:red")
    ax_drift.set(xlabel="step", ylabel="max |w_encrypted - w_twin|", yscale="log" if drift else "linear")
    ax_drift.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)


def _evaluate(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, float]:
    from refimpl import nn

    z = nn.logits(params, x)
    value, _ = nn.loss_delta(z, y, np.full(len(y), 1.0 / len(y)), loss)
    return float((z.argmax(1) == y).mean()), value


def main(argv: list[str] | None = None) -> int:
    """Run ``refimpl train-encrypted``; returns the exit code."""
    from tqdm import tqdm

    from refimpl import nn
    from refimpl.encoding import FixedPoint
    from refimpl.fl.data import load
    from refimpl.mpc.training import PlaintextTwin, batch_order
    from refimpl.workers import Ledger, VirtualWorker
    from refimpl.workers.encrypted_training import WorkerTrainer

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = _Checkpoint(out)
    config = {k: v for k, v in vars(args).items() if k not in _RUNTIME_ONLY}
    if args.resume:
        saved = json.loads((out / "config.json").read_text())
        if saved != config:
            diff = {k: (saved.get(k), config.get(k)) for k in set(saved) | set(config) if saved.get(k) != config.get(k)}
            print(f"refimpl train-encrypted: --resume with different settings {diff}", file=sys.stderr)
            return 2
    (out / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    if args.parties < 2:
        print("refimpl train-encrypted: --parties must be >= 2", file=sys.stderr)
        return 2
    data = load(args.dataset, data_dir=args.data_dir)
    x_train, y_train = data.x_train[: args.train_limit], data.y_train[: args.train_limit]
    sizes = _sizes(args.model)
    ledger = Ledger(keep=1000)
    jake, john = VirtualWorker("jake", ledger), VirtualWorker("john", ledger)
    compute = [VirtualWorker(n, ledger) for n in ["secure_worker", "alice"] +
               [f"party{i}" for i in range(2, args.parties)]]
    provider = VirtualWorker("crypto_provider", ledger)
    params = nn.init_params(sizes, seed=args.seed)
    keys: dict[str, Any] = {}
    if args.insecure_keys_from_seed:
        from refimpl.prg import derive_key

        keys = {k: derive_key(bytes(16), "refimpl/insecure-seed-keys", args.seed, k)
                for k in ("key", "dealer_key", "data_key")}
    if args.resume:
        keys = {"key": ckpt.key("model_owner", "key"), "dealer_key": ckpt.key("crypto_provider", "dealer_key"),
                "data_key": ckpt.key("data_owners", "data_key")}
    run = WorkerTrainer(params, compute=compute, crypto_provider=provider, lr=args.lr, loss=args.loss,
                        encoding=FixedPoint(frac_bits=args.frac_bits), **keys)
    twin = PlaintextTwin(params, lr=args.lr, loss=args.loss, step_bits=run.trainer.step_bits) if args.twin else None
    history: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    start_epoch, totals = 0, {"rounds": 0, "online_bytes": 0, "dealer_bytes": 0}
    if args.resume:
        states, state = ckpt.load([w.name for w in compute])
        run.trainer.load_party_states(states)
        start_epoch, totals = state["epoch"], state["totals"]
        history = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines() if r.strip()]
        drift = [json.loads(r) for r in (out / "drift.jsonl").read_text().splitlines() if r.strip()]
        if twin is not None:
            with np.load(ckpt.dir / "twin.npz") as z:
                twin.params = {k: z[k].astype(np.float64) for k in z.files if k != "meta"}
                twin.steps = int(json.loads(str(z["meta"]))["steps"])
    else:
        for name in ("metrics.jsonl", "drift.jsonl"):
            (out / name).write_text("")
    half = len(x_train) // 2
    per_epoch = -(-len(x_train) // args.batch_size)
    bar = tqdm(total=per_epoch * args.epochs, initial=per_epoch * start_epoch, disable=not args.progress,
               unit="step", file=sys.stderr)
    base = run.summary()
    for epoch in range(start_epoch, args.epochs):
        order = batch_order(len(x_train), epoch, seed=args.seed)
        run.trainer.lr = args.lr * args.lr_decay**epoch  # the public schedule, the same for the twin
        if twin is not None:
            twin.lr = run.trainer.lr
        t_enc = t_twin = 0.0
        for start in range(0, len(x_train), args.batch_size):
            idx = order[start : start + args.batch_size]
            parts = [(owner, idx[sel]) for owner, sel in ((jake, idx < half), (john, idx >= half)) if sel.any()]
            t0 = time.perf_counter()
            run.step_parts([(owner, x_train[rows], y_train[rows]) for owner, rows in parts])
            t_enc += time.perf_counter() - t0
            if twin is not None:
                t0 = time.perf_counter()
                twin.step(x_train[idx], y_train[idx])
                t_twin += time.perf_counter() - t0
                w = run.trainer.reconstruct()  # the test oracle's look, not a party's: drift against the twin
                drift.append({"step": run.trainer.steps,
                              "drift_max": max(float(np.abs(w[k] - twin.params[k]).max()) for k in w)})
                with open(out / "drift.jsonl", "a") as f:
                    f.write(json.dumps(drift[-1]) + "\n")
            now = run.summary()
            bar.set_postfix(epoch=epoch + 1, rounds=totals["rounds"] + now["rounds"] - base["rounds"],
                            MB=round((totals["online_bytes"] + now["online_bytes"] - base["online_bytes"]) / 1e6))
            bar.update(1)
        now = run.summary()
        totals = {k: totals[k] + now[k] - base[k] for k in totals}
        base = now
        acc, test_loss = _evaluate(run.get(), data.x_test, data.y_test, args.loss)
        row = {"epoch": epoch + 1, "step": run.trainer.steps, "test_accuracy": acc, "test_loss": test_loss,
               "seconds": t_enc, **totals}
        if twin is not None:
            row.update(twin_test_accuracy=_evaluate(twin.params, data.x_test, data.y_test, args.loss)[0],
                       twin_seconds=t_twin, drift_max=drift[-1]["drift_max"])
        history.append(row)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        bar.write(f"epoch {epoch + 1}: test accuracy {acc:.4f}, test loss {test_loss:.4f}, "
                  f"{totals['rounds']} rounds, {totals['online_bytes'] / 1e9:.2f} GB online so far"
                  + (f" (twin {row['twin_test_accuracy']:.4f}, drift {row['drift_max']:.2e})" if twin else ""))
        ckpt.save(run, twin, {"epoch": epoch + 1, "step": run.trainer.steps, "totals": totals})
    bar.close()
    if args.plot:
        write_plot(history, drift, out / "curves.png",
                   f"encrypted training, {args.model}, {args.loss}, batch {args.batch_size}, lr {args.lr}")
    if history:
        print(json.dumps(history[-1]))
    return 0
