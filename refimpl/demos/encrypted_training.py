"""The tutorial's "protecting the model" part on refimpl: train an MLP with encrypted weights on encrypted data, then
predict encrypted with the never-opened weights."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from refimpl import nn
from refimpl.fl.data import load
from refimpl.mpc.training import PlaintextTwin, batch_order
from refimpl.workers.encrypted_training import WorkerTrainer
from refimpl.workers.worker import Ledger, VirtualWorker

__all__ = ["encrypted_training_demo"]


def encrypted_training_demo(out: Callable[[str], None] = print, *, steps: int = 200, hidden: int = 32,
                            batch: int = 32, lr: float = 0.1) -> dict[str, float]:
    """Train a 784-``hidden``-10 MLP for ``steps`` SGD steps on shares, then classify test images on shares.

    ``jake`` and ``john`` each hold half of mnist-10k's training images; the model owner (``me``) shares the
    initial weights; ``secure_worker`` and ``alice`` train; ``crypto_provider`` deals. Prints accuracy (encrypted
    training, encrypted prediction, and the plaintext twin), rounds and bytes.

    Returns:
        The printed figures.

    Example:
        >>> lines = []
        >>> figures = encrypted_training_demo(lines.append, steps=4, hidden=4)
        >>> figures["steps"], lines[0]
        (4, '== Protecting the model: encrypted training ==')
    """
    out("== Protecting the model: encrypted training ==")
    data = load("mnist-10k")
    ledger = Ledger()
    jake, john = VirtualWorker("jake", ledger), VirtualWorker("john", ledger)
    secure_worker, alice = VirtualWorker("secure_worker", ledger), VirtualWorker("alice", ledger)
    crypto_provider = VirtualWorker("crypto_provider", ledger)
    params = nn.init_params((784, hidden, 10), seed=0)
    run = WorkerTrainer(params, compute=(secure_worker, alice), crypto_provider=crypto_provider, lr=lr, loss="xent")
    twin = PlaintextTwin(params, lr=lr, loss="xent", step_bits=run.trainer.step_bits)
    x, y = data.x_train, data.y_train
    half = len(x) // 2
    out(f"  model owner (me) shares a 784-{hidden}-10 MLP among secure_worker and alice; jake and john each share "
        f"their {half} images and labels; crypto_provider deals")
    t0 = time.perf_counter()
    for step in range(steps):
        epoch, pos = divmod(step * batch, len(x))
        idx = batch_order(len(x), epoch)[pos : pos + batch]
        run.step_parts([(owner, x[rows], y[rows]) for owner, rows in
                        ((jake, idx[idx < half]), (john, idx[idx >= half])) if len(rows)])
        twin.step(x[idx], y[idx])
    seconds = time.perf_counter() - t0
    summary = run.summary()
    model = run.trainer.to_inference()  # the trained shares go straight to encrypted inference, never opened
    before = model.channel.summary()
    test = slice(0, 500)
    pred = model.predict(data.x_test[test])
    after = model.channel.summary()
    enc_acc = float((pred == data.y_test[test]).mean())
    weights = run.get()  # only now, and only the model owner, reconstructs the weights
    train_acc = float((nn.logits(weights, data.x_test[test]).argmax(1) == data.y_test[test]).mean())
    twin_acc = float((nn.logits(twin.params, data.x_test[test]).argmax(1) == data.y_test[test]).mean())
    out(f"  trained {steps} steps of {batch} in {seconds:.1f} s: {summary['rounds']} rounds "
        f"({summary['rounds'] // max(steps, 1)} per step), {summary['online_bytes'] / 1e6:.1f} MB opened between "
        f"the parties, {summary['dealer_bytes'] / 1e6:.1f} MB from the crypto provider")
    out(f"  encrypted prediction of {pred.size} test images: accuracy {enc_acc:.3f} "
        f"({after['rounds'] - before['rounds']} rounds, {(after['bytes'] - before['bytes']) / 1e6:.1f} MB)")
    out(f"  model owner's reconstructed weights: accuracy {train_acc:.3f}; plaintext twin: {twin_acc:.3f}; "
        f"max weight difference {max(float(np.abs(weights[k] - twin.params[k]).max()) for k in weights):.1e}")
    out(f"  ledger: {ledger.messages} messages, {ledger.bytes / 1e6:.1f} MB; jake sent "
        f"{ledger.bytes_sent['jake'] / 1e6:.1f} MB and received {ledger.bytes_received['jake']} bytes")
    return {"steps": steps, "encrypted_prediction_accuracy": enc_acc, "accuracy": train_acc, "twin_accuracy": twin_acc,
            "rounds": summary["rounds"], "online_bytes": summary["online_bytes"],
            "dealer_bytes": summary["dealer_bytes"], "seconds": seconds}
