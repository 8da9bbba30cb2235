"""The tutorial's pointer world on refimpl: workers, pointers, chains, shared values, and an encrypted prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.mpc.inference import EncryptedMLP, plaintext_logits, train_mlp
from refimpl.workers.shared_tensor import LedgerChannel, share_among
from refimpl.workers.worker import Ledger, VirtualWorker, send

__all__ = ["workers_demo"]


def _store(*workers: VirtualWorker) -> str:
    return ", ".join(f"{w.name}: {len(w.objects)} object(s)" for w in workers)


def workers_demo(out: Callable[[str], None] = print, *, images: int = 5) -> None:
    """Print the pointer walkthrough (send/get, move, the jake -> john chain, remote_get, freeing, sharing among
    jake, john and secure_worker with a crypto provider) and an encrypted MNIST prediction.

    Args:
        out: where each line goes.
        images: how many MNIST test images to classify on shares (0 skips the encrypted prediction).

    Example:
        >>> lines = []
        >>> workers_demo(lines.append, images=0)
        >>> [line.strip() for line in lines if line.strip().startswith("(x * y).get()")]
        ['(x * y).get() = [25, 100, 225]']
    """
    ledger = Ledger()
    bob, alice = VirtualWorker("bob", ledger), VirtualWorker("alice", ledger)
    out("== Virtual workers and pointers ==")
    x = send(np.array([1, 2, 3, 4, 5]), bob)
    out(f"  x = send([1, 2, 3, 4, 5], bob) -> {x!r}; {_store(bob)}")
    y = x + x
    out(f"  y = x + x runs at bob -> {y!r}; {_store(bob)}")
    out(f"  y.get() = {y.get().tolist()}  (the object leaves bob: {_store(bob)})")
    z = x.move(alice)
    out(f"  x.move(alice) -> {z!r}; {_store(bob, alice)}")
    del z
    out(f"  del the last pointer -> alice frees the object: {_store(alice)}")

    jake, john = VirtualWorker("jake", ledger), VirtualWorker("john", ledger)
    secure_worker, provider = VirtualWorker("secure_worker", ledger), VirtualWorker("crypto_provider", ledger)
    out("\n== A pointer chain: me -> john -> jake ==")
    c = send(np.array([1, 2, 3]), jake).send(john)
    out(f"  send([1, 2, 3], jake).send(john) -> {c!r}; john holds {john.objects[c.id]!r}")
    c.remote_get()
    out(f"  .remote_get(): john fetched the tensor from jake; {_store(jake, john)}")
    out(f"  .get() = {c.get().tolist()}; {_store(jake, john)}")

    out("\n== Sharing among jake, john and secure_worker, with a crypto provider ==")
    xs = send(np.array([25, 50, 75]), bob).share(jake, john, secure_worker, crypto_provider=provider)
    ys = share_among(np.array([1, 2, 3]), (jake, john, secure_worker), crypto_provider=provider)
    out("  x = send([25, 50, 75], bob).share(jake, john, secure_worker, crypto_provider=crypto_provider)")
    out("  y = share_among([1, 2, 3], (jake, john, secure_worker), crypto_provider=crypto_provider)")
    out(f"    -> {xs!r}")
    out(f"  jake's share alone: {jake.objects[xs.pointers[0].id].tolist()} (uniform in Z_2^64)")
    out(f"  (x + y).get() = {(xs + ys).get().tolist()}")
    before = ledger.summary()
    product = xs * ys
    after = ledger.summary()
    out(f"  (x * y).get() = {product.get().tolist()}")
    opened = after["messages_by_kind"].get("open", 0) - before["messages_by_kind"].get("open", 0)
    dealt = after["messages_by_kind"].get("dealer", 0) - before["messages_by_kind"].get("dealer", 0)
    out(f"    Beaver: {dealt} dealer messages (one triple part per worker), {opened} opening messages in one round")
    fp = FixedPoint()
    a = share_among(np.array([[0.5, -1.25]]), (jake, john), crypto_provider=provider, encoding=fp)
    b = share_among(np.array([[2.0], [4.0]]), (jake, john), crypto_provider=provider, encoding=fp)
    out(f"  fixed point: [[0.5, -1.25]] @ [[2.0], [4.0]] on shares = {(a @ b).get().tolist()}")
    del xs, ys, a, b
    out(f"  after del: {_store(bob, jake, john, secure_worker, provider)}")
    out(f"  ledger: {ledger.messages} messages, {ledger.bytes} bytes; sent per worker: "
        + ", ".join(f"{k} {v}" for k, v in sorted(ledger.bytes_sent.items())))

    if images <= 0:
        return
    from refimpl.fl.data import load

    out("\n== Encrypted prediction: the model and the image are secret-shared between bob and alice ==")
    data = load("mnist-10k")
    params = train_mlp(data.x_train[:2000], data.y_train[:2000], (784, 128, 10), epochs=1)
    out("  a 784-128-10 MLP, trained for the demo in one epoch on 2,000 images (bench/ uses the full model)")
    net = Ledger()
    servers = [VirtualWorker("bob", net), VirtualWorker("alice", net)]
    channel = LedgerChannel(servers, VirtualWorker("crypto_provider", net))
    model = EncryptedMLP(params, n=2, channel=channel)
    setup_open, setup_dealer = net.bytes_by_kind["open"], net.bytes_by_kind["dealer"]
    batch = data.x_test[:images]
    logits = model.logits(batch)
    plain = plaintext_logits(params, batch)
    out(f"  true labels:            {data.y_test[:images].tolist()}")
    out(f"  plaintext predictions:  {plain.argmax(1).tolist()}")
    out(f"  encrypted predictions:  {logits.argmax(1).tolist()}  (largest logit error "
        f"{np.abs(logits - plain).max():.1e})")
    online = (net.bytes_by_kind["open"] - setup_open) / images
    dealer = (net.bytes_by_kind["dealer"] - setup_dealer) / images
    out(f"  traffic per image: {online / 1e3:.1f} kB between the servers in {net.rounds_by_kind['open'] - 2} rounds, "
        f"{dealer / 1e3:.1f} kB from the crypto provider")
    out(f"  (plus, once per model: {(setup_open + setup_dealer) / 1e6:.1f} MB to mask the weights)")
    out("  only the client reconstructs the logits; the servers only ever open uniformly masked values")
