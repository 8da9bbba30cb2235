"""The tutorial's federated part: two workers train an MLP on ``mnist-10k`` with FedAvg, offline, in seconds.

``python -m refimpl demo`` calls `federated_demo`. Alice and Bob each hold half of the 8,000 training images (an
IID split); each of 5 rounds, both train one local epoch from the global model and the server averages their
updates weighted by sample counts, so every image is seen 5 times -- the tutorial's 5 epochs. The server never sees
an individual update: by default they are aggregated with two-server additive secret sharing (`refimpl.fl.secure`,
fresh keys from the OS), and only the weighted sum is reconstructed. The PySyft tutorial reached about 93% test
accuracy; this reaches 95.10% on the 2,000 held-out images.

Then `workers_loop_demo` trains on the same split the tutorial's way, with pointers (`refimpl.fl.tutorial`): PySyft's
loop, where the model travels to each batch's worker, and federated averaging on the workers under secret sharing,
which reaches the vmapped engine's model (to float rounding after one epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["federated_demo"]


def federated_demo(out: Callable[[str], Any] = print, *, rounds: int = 5, seed: int = 0,
                   secure: bool = True) -> float:
    """Runs the two-worker federated demo and reports progress through ``out``.

    Args:
        out: Called with each line of the report (``print`` by default).
        rounds: FedAvg rounds, one local epoch each.
        seed: Seed of the split, the initial model, the shuffling and the secure-aggregation keys.
        secure: Aggregate with two-server additive secret sharing (False: plaintext weighted mean).

    Returns:
        Final test accuracy in [0, 1].
    """

    import jax
    import optax

    from refimpl.fl import client, data, model, partition, server
    from refimpl.fl import secure as secure_agg

    ds = data.load("mnist-10k")
    parts = partition.iid(ds.y_train, 2, seed=seed)
    fed = partition.federate(ds.x_train, ds.y_train, parts)
    names = ("alice", "bob")
    hist = partition.label_histograms(ds.y_train, parts, ds.num_classes)
    out("")
    out("== Federated learning: two workers, FedAvg on MNIST ==")
    out(f"{ds.name} ({ds.source}): {len(ds.x_train)} train / {len(ds.x_test)} test images")
    for name, size, h in zip(names, partition.sizes(parts), hist):
        out(f"  {name:5s} holds {size} images; label counts {h.tolist()}")
    params = model.init("2nn", seed=seed)
    agg = None
    if secure:
        # fresh OS keys for every party, every round (the secure default); the sum, hence the demo's output, is
        # exact and does not depend on them
        agg = secure_agg.make_secure_aggregator("additive", servers=2)
    fedavg = server.FedAvg(
        client.make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=16),
        server.server_optimizer("fedavg"), fraction=1.0, seed=seed, aggregate=agg or server.weighted_mean)
    state = fedavg.init(params)
    cdata = server.to_device(fed)
    x_test, y_test = jax.device_put(ds.x_test), jax.device_put(ds.y_test)
    evaluate = jax.jit(lambda p: model.accuracy(p, x_test, y_test))
    out(f"Model 784-200-200-10 ({model.num_params(params)} parameters); {rounds} rounds x 1 local epoch, "
        "batch 16, SGD lr 0.1")
    if agg is not None:
        out("Secure aggregation: each worker splits its weighted update (fixed point, 32 fractional bits, Z_2^64) "
            "into additive shares for 2 non-colluding servers (one key + one array); only the sum is reconstructed")
    else:
        out("Plaintext aggregation: the server sees each worker's update")
    acc = float(evaluate(state.params))
    engine_models = []
    for _ in range(rounds):
        state, result = fedavg.run_round(state, cdata)
        engine_models.append(state.params)
        acc = float(evaluate(state.params))
        out(f"  round {state.round}: train loss {result.train_loss:.4f}  test accuracy {acc:.2%}")
    down = model.num_params(params) * 4
    up = agg.history[-1].upload_bytes_per_client if agg is not None else down
    if agg is not None:
        out(f"Upload per worker per round: {up / 1e6:.3f} MB of shares ({agg.history[-1].upload_ratio:.4f}x the "
            f"encoded update, {up / down:.2f}x its float32 size); download {down / 1e6:.3f} MB of float32 parameters")
    sent = 2 * rounds * (up + down)
    out(f"Test accuracy after {rounds} rounds: {acc:.2%} (the PySyft tutorial: 93%); "
        f"{sent / 1e6:.1f} MB exchanged")
    loop_acc = workers_loop_demo(out, epochs=rounds, seed=seed, engine_models=engine_models)
    out(f"Test accuracy after {rounds} rounds: vmapped engine {acc:.2%}, the same on workers {loop_acc:.2%} "
        "(the PySyft tutorial: 93%)")
    return acc


def workers_loop_demo(out: Callable[[str], Any] = print, *, epochs: int = 5, seed: int = 0,
                      engine_models: Any = None) -> float:
    """The same data, trained the tutorial's way: the model travels to the workers' data (`refimpl.fl.tutorial`).

    First PySyft's loop (one model sent to each batch's worker, ``loss.get()``, ``model.get()``) with the tutorial's
    batch size 64 and learning rate 0.3 (its 0.01 reaches only 72% in 5 epochs of 8,000 images); then federated
    averaging on the workers with the vmapped part's settings, averaged under secret sharing each epoch, compared
    with ``engine_models`` (the vmapped engine's model after each round) when given.

    Returns:
        The final test accuracy of the second part.
    """
    import time

    import numpy as np

    from refimpl.fl import data
    from refimpl.fl.tutorial import FederatedDataLoader, Model, federate, test, train
    from refimpl.workers import Ledger, VirtualWorker

    ds = data.load("mnist-10k")
    ledger = Ledger(keep=0)
    alice, bob = VirtualWorker("alice", ledger), VirtualWorker("bob", ledger)
    crypto_provider = VirtualWorker("crypto_provider", ledger)
    out("")
    out("== The tutorial's loop on workers: the model travels to the data ==")
    fed = federate(ds, (alice, bob), seed=seed)
    out(f"federate(mnist-10k, (alice, bob)) -> {fed}; the data stays at the workers, only pointers come back")

    def traffic() -> list[int]:
        return [ledger.sent(w.name) + ledger.received(w.name) for w in (alice, bob)]

    def cost(before: list[int], seconds: float) -> str:
        per = [(b - a) / epochs / 1e6 for a, b in zip(before, traffic())]
        return f"{seconds / epochs:.2f} s and {per[0]:.1f} / {per[1]:.1f} MB (alice / bob, sent + received) per epoch"

    loader = FederatedDataLoader(fed, batch_size=64, shuffle=True, seed=seed)
    out("PySyft's loop (batch 64, lr 0.3): for data, target in loader: model.send(data.location); train_step; "
        "loss.get(); model.get()")
    net, t0, before = Model.init("2nn", seed=seed), time.perf_counter(), traffic()
    for epoch in range(1, epochs + 1):
        net = train(net, loader, epoch=epoch, lr=0.3, log_interval=len(loader) // 2, out=out)
        test(net, ds.x_test, ds.y_test, out)
    out(f"  cost: {cost(before, time.perf_counter() - t0)}")
    loader = FederatedDataLoader(fed, batch_size=16, shuffle=True, seed=seed)
    out("Federated averaging on the workers (batch 16, lr 0.1, as above): each worker trains its own copy for an "
        "epoch; the copies are averaged under secret sharing (only the average is opened)")
    net, t0, before, correct = Model.init("2nn", seed=seed), time.perf_counter(), traffic(), 0
    diffs: list[Any] = []
    for epoch in range(1, epochs + 1):
        net = train(net, loader, epoch=epoch, lr=0.1, average_every="epoch", average="secure",
                    crypto_provider=crypto_provider, progress=None)
        _, correct = test(net, ds.x_test, ds.y_test, out)
        if engine_models is not None:
            diffs.append(np.abs(net.vector() - Model(engine_models[epoch - 1]).vector()))
    out(f"  cost: {cost(before, time.perf_counter() - t0)}")
    if diffs:
        out(f"Against the vmapped engine above (same start, split, batch order, lr): max |difference| of the "
            f"{net.num_params} parameters {diffs[0].max():.1e} after epoch 1 (float rounding); {diffs[-1].max():.1e} "
            f"(mean {diffs[-1].mean():.1e}) after epoch {epochs}, as SGD amplifies rounding differences")
    return correct / len(ds.y_test)
