"""Encrypted training of the 784-128-10 MLP on mnist-10k: accuracy and drift vs the plaintext twin, time, rounds,
bytes, and CrypTen side by side.

Measured in this process (the encrypted trainer, :class:`refimpl.mpc.training.EncryptedTrainer`, 2 compute
parties, 16 fractional bits in Z_2^64, and its float64 NumPy twin with the same initial weights, batch order and
step):

* test accuracy of both after every epoch on the 2,000 test images, and the weight drift
  ``max |w_encrypted - w_twin|`` after every step (plotted to ``docs/encrypted-training/drift.png``);
* wall-clock seconds per epoch of both (the twin's as the best of 3 separate epochs) and their ratio;
* rounds and bytes per step: online (openings between the parties) and from the crypto provider, for the
  cross-entropy loss (softmax on shares) and for the squared error.

With ``--crypten-python PATH`` (a Python with crypten 0.4.1 and torch 2.8.0, see ``bench/install_crypten.sh``)
CrypTen trains the same model from the same initial weights on the same batches (epoch 0's order) for
``--crypten-images`` images, 2 parties in 2 processes, and its time, rounds and bytes per step are reported next
to refimpl's; its per-epoch time is extrapolated from those steps (said so in the output).

Run: ``nice python bench/bench_training.py`` (3 epochs; about 2-3 minutes here, plus CrypTen) or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, machine_info, write_result

from refimpl import nn
from refimpl.fl.data import load
from refimpl.mpc.training import EncryptedTrainer, PlaintextTwin, batch_order


def _acc(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((nn.logits(params, x).argmax(1) == y).mean())


def _twin_epoch_seconds(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, batch: int, lr: float,
                        loss: str, bits: int, repeats: int = 3) -> tuple[float, float]:
    best, best_cpu = float("inf"), float("inf")
    order = batch_order(len(x), 0)
    for _ in range(repeats):
        twin = PlaintextTwin(params, lr=lr, loss=loss, step_bits=bits)
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            twin.step(x[idx], y[idx])
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def _cost_per_step(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, loss: str, lr: float,
                   steps: int) -> dict[str, float]:
    trainer = EncryptedTrainer(params, lr=lr, loss=loss)
    t0 = time.perf_counter()
    for s in range(steps):
        rows = slice(s * 64, (s + 1) * 64)
        trainer.step(*trainer.share_batch(x[rows], y[rows]))
    sec = (time.perf_counter() - t0) / steps
    c = trainer.channel.summary()
    return {"seconds": sec, "rounds": c["rounds"] / steps, "online_bytes": c["bytes"] / steps,
            "online_bytes_per_party": c["bytes"] / steps / 2, "dealer_bytes": c["dealer_bytes"] / steps}


def _run(args: argparse.Namespace, data: Any, params: dict[str, np.ndarray]) -> dict[str, Any]:
    x, y = data.x_train[: args.train], data.y_train[: args.train]
    trainer = EncryptedTrainer(params, lr=args.lr, loss=args.loss)
    twin = PlaintextTwin(params, lr=args.lr, loss=args.loss, step_bits=trainer.step_bits)
    drift, epochs = [], []
    for epoch in range(args.epochs):
        order = batch_order(len(x), epoch)
        t_enc = c_enc = 0.0
        before = trainer.channel.summary()
        for start in range(0, len(x), args.batch):
            idx = order[start : start + args.batch]
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.step(*trainer.share_batch(x[idx], y[idx]))
            t_enc += time.perf_counter() - t0
            c_enc += time.process_time() - c0
            twin.step(x[idx], y[idx])
            w = trainer.reconstruct()
            drift.append(max(float(np.abs(w[k] - twin.params[k]).max()) for k in w))
        after = trainer.channel.summary()
        steps = -(-len(x) // args.batch)
        w = trainer.reconstruct()
        row = {"epoch": epoch + 1, "encrypted_accuracy": _acc(w, data.x_test, data.y_test),
               "twin_accuracy": _acc(twin.params, data.x_test, data.y_test), "encrypted_seconds": t_enc,
               "encrypted_cpu_seconds": c_enc,
               "drift_max": drift[-1], "steps": steps,
               **{f"{k}_per_step": (after[k] - before[k]) / steps for k in ("rounds", "bytes", "dealer_bytes")}}
        epochs.append(row)
        print(f"epoch {epoch + 1}: encrypted {row['encrypted_accuracy']:.4f}  twin {row['twin_accuracy']:.4f}  "
              f"drift {row['drift_max']:.2e}  {t_enc:.1f} s", flush=True)
    model = trainer.to_inference()  # encrypted prediction on the never-opened shares
    enc_pred = float((model.predict(data.x_test[:500]) == data.y_test[:500]).mean())
    return {"epochs": epochs, "drift_per_step": drift, "encrypted_inference_accuracy_first500": enc_pred}


def _crypten(args: argparse.Namespace, data: Any, params: dict[str, np.ndarray]) -> dict[str, Any] | None:
    if not args.crypten_python:
        return None
    order = batch_order(args.train, 0)[: args.crypten_images]
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = Path(tmp) / "data.npz", Path(tmp) / "out.json"
        np.savez(npz, x_train=data.x_train[order], y_train=data.y_train[order], x_test=data.x_test,
                 y_test=data.y_test, **{k: v.astype(np.float32) for k, v in params.items()})
        cmd = [args.crypten_python, str(ROOT / "bench" / "crypten_training.py"), str(npz), str(out),
               "--epochs", "1", "--batch", str(args.batch), "--lr", str(args.lr)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0 or not out.exists():
            print(proc.stderr[-2000:], file=sys.stderr)
            return {"error": f"crypten run failed with exit code {proc.returncode}"}
        result = json.loads(out.read_text())
    if not result.get("parties"):
        return {"error": "crypten parties failed", **result}
    steps = -(-args.crypten_images // args.batch)
    ep = result["parties"][0]["epochs"][0]
    full = -(-args.train // args.batch)
    result["summary"] = {"images": args.crypten_images, "steps": steps, "seconds_per_step": ep["seconds"] / steps,
                         "rounds_per_step": ep["rounds"] / steps, "bytes_per_step_per_party": ep["bytes"] / steps,
                         "epoch_seconds_extrapolated": ep["seconds"] / steps * full,
                         "plaintext_epoch_seconds_extrapolated": result["plaintext_epoch"]["seconds"] / steps * full}
    return result


def _plot(run: dict[str, Any], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_d, ax_a = fig.subplots(1, 2)
    ax_d.plot(np.arange(1, len(run["drift_per_step"]) + 1), run["drift_per_step"], color="tab:red", lw=0.8)
    ax_d.set(xlabel="step", ylabel="max |w_encrypted - w_twin|", yscale="log")
    ax_d.grid(alpha=0.3)
    e = [r["epoch"] for r in run["epochs"]]
    ax_a.plot(e, [r["encrypted_accuracy"] for r in run["epochs"]], "o-", label="encrypted (shares)")
    ax_a.plot(e, [r["twin_accuracy"] for r in run["epochs"]], "s--", label="plaintext twin (float64)")
    ax_a.set(xlabel="epoch", ylabel="test accuracy")
    ax_a.legend()
    ax_a.grid(alpha=0.3)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train", type=int, default=8000, help="training images (mnist-10k has 8,000)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--loss", choices=("xent", "mse"), default="xent")
    p.add_argument("--crypten-python", default=None, help="a Python with crypten installed (else CrypTen is skipped)")
    p.add_argument("--crypten-images", type=int, default=1280, help="images CrypTen trains on (timing prefix)")
    p.add_argument("--quick", action="store_true", help="1 epoch on 1,280 images, CrypTen on 256")
    p.add_argument("--out", default=None, help="result JSON (default bench/results/training-<date>.json)")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.train, args.crypten_images = 1, 1280, 256
    data = load("mnist-10k")
    params = nn.init_params((784, 128, 10), seed=0)
    result: dict[str, Any] = {"benchmark": "training", "machine": machine_info(), "config": vars(args)}
    result["run"] = _run(args, data, params)
    bits = EncryptedTrainer(params).step_bits
    twin_epoch, twin_cpu = _twin_epoch_seconds(params, data.x_train[: args.train], data.y_train[: args.train],
                                               args.batch, args.lr, args.loss, bits)
    enc_epoch = float(np.mean([r["encrypted_seconds"] for r in result["run"]["epochs"]]))
    enc_cpu = float(np.mean([r["encrypted_cpu_seconds"] for r in result["run"]["epochs"]]))
    result["time"] = {"encrypted_epoch_s": enc_epoch, "twin_epoch_s": twin_epoch, "ratio": enc_epoch / twin_epoch,
                      "encrypted_epoch_cpu_s": enc_cpu, "twin_epoch_cpu_s": twin_cpu, "cpu_ratio": enc_cpu / twin_cpu}
    result["cost"] = {loss: _cost_per_step(params, data.x_train, data.y_train, loss, args.lr, 8)
                      for loss in ("mse", "xent")}
    result["crypten"] = _crypten(args, data, params)
    _plot(result["run"], ROOT / "docs" / "encrypted-training" / ("drift-quick.png" if args.quick else "drift.png"),
          f"784-128-10 on mnist-10k, batch {args.batch}, lr {args.lr}, {args.loss}, 2 parties")
    last = result["run"]["epochs"][-1]
    print(f"\naccuracy: encrypted {last['encrypted_accuracy']:.4f} vs twin {last['twin_accuracy']:.4f} "
          f"({100 * (last['encrypted_accuracy'] - last['twin_accuracy']):+.2f} pp); max drift "
          f"{max(result['run']['drift_per_step']):.2e}")
    print(f"time per epoch: encrypted {enc_epoch:.1f} s, twin {twin_epoch:.3f} s, ratio {enc_epoch / twin_epoch:.0f}x "
          f"(CPU: {enc_cpu:.1f} s vs {twin_cpu:.3f} s, {enc_cpu / twin_cpu:.0f}x)")
    for loss, c in result["cost"].items():
        print(f"{loss:>5} per step: {c['rounds']:.0f} rounds, {c['online_bytes'] / 1e6:.2f} MB online "
              f"({c['online_bytes_per_party'] / 1e6:.2f} MB per party), {c['dealer_bytes'] / 1e6:.2f} MB from the "
              f"dealer, {c['seconds'] * 1e3:.0f} ms")
    cr = result["crypten"]
    if cr and "summary" in cr:
        s = cr["summary"]
        ours = result["cost"][args.loss]
        print(f"CrypTen ({s['images']} images, {s['steps']} steps): {s['seconds_per_step']:.2f} s/step, "
              f"{s['rounds_per_step']:.0f} rounds/step, {s['bytes_per_step_per_party'] / 1e6:.1f} MB/step per party; "
              f"epoch ~{s['epoch_seconds_extrapolated']:.0f} s (extrapolated) vs refimpl {enc_epoch:.1f} s: "
              f"{s['epoch_seconds_extrapolated'] / enc_epoch:.1f}x; "
              f"rounds {s['rounds_per_step'] / ours['rounds']:.1f}x, "
              f"bytes per party {s['bytes_per_step_per_party'] / ours['online_bytes_per_party']:.1f}x")
    elif cr:
        print(f"CrypTen: {cr.get('error')}")
    write_result(result, args.out, "training", "quick" if args.quick else None)


if __name__ == "__main__":
    main()
