"""``python -m refimpl demo --network``: the tutorial's parties as separate processes on 127.0.0.1.

Makes a throw-away deployment CA and certificates, starts ``jake``, ``john``, ``secure_worker``,
``crypto_provider``, ``bob`` and ``alice`` as worker processes (``python -m refimpl worker``), connects to them over
mutual TLS, runs the seed's pointer and sharing walkthrough, an encrypted prediction (a 784-128-10 ReLU MLP whose
weights, biases and input images are secret-shared between bob and alice: products by Beaver triples from the
crypto-provider process, ReLU by the party-local comparison program with its openings going between bob and alice;
:func:`shared_mlp_logits`), and a few secure FedAvg rounds (``python -m refimpl aggregator`` + ``client``
processes, SecAgg).
Every process it starts is stopped at the end, whatever happens.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Party", "network_demo", "shared_mlp_logits"]

_URL = re.compile(r"listening on (wss?://[\w.]+:\d+)")


class Party:
    """A ``python -m refimpl ARGS`` child process; :attr:`url` is the address it printed (when it listens)."""

    def __init__(self, args: Sequence[str], *, listen: bool = True, timeout: float = 60.0) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen([sys.executable, "-m", "refimpl", *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = ""
        end = time.monotonic() + timeout
        while listen and not self.url:
            try:
                m = _URL.search(self._lines.get(timeout=max(0.01, end - time.monotonic())))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"refimpl {' '.join(self.args[:3])} did not start: {''.join(self.output)}") from None
            if m:
                self.url = m.group(1)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)

    def stop(self) -> None:
        """Kill the process (if still running) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _store(*workers: object) -> str:
    return ", ".join(f"{w.name}: {len(w.objects)} object(s)" for w in workers)  # type: ignore[attr-defined]


def network_demo(out: Callable[[str], None] = print, *, rounds: int = 3, clients: int = 4) -> None:
    """Start the parties, run the walkthrough across them, stop them."""
    from refimpl.encoding import FixedPoint
    from refimpl.net.certs import make_deployment
    from refimpl.workers import send, share_among
    from refimpl.workers.remote import Session, connect, deployment_links

    names = ["jake", "john", "secure_worker", "crypto_provider", "bob", "alice"]
    parties: list[Party] = []
    with tempfile.TemporaryDirectory(prefix="refimpl-demo-") as tmp:
        tls = Path(tmp) / "certs"
        make_deployment(tls, [*names, "me", "aggregator", *(f"client-{i}" for i in range(1, clients + 1))])
        try:
            out("== Parties in their own processes, over mutual TLS on 127.0.0.1 ==")
            out(f"  python -m refimpl certs --out {tls} {' '.join(names)} me aggregator client-1 ...")
            for n in names:
                parties.append(Party(["worker", "--name", n, "--listen", "127.0.0.1:0", "--tls-dir", str(tls),
                                      "--log-level", "WARNING"]))
                out(f"  python -m refimpl worker --name {n} --tls-dir ...  -> pid {parties[-1].proc.pid}, "
                    f"{parties[-1].url}")
            session = Session(keep=None)
            w = {n: connect(p.url, name=n, tls_dir=tls, session=session) for n, p in zip(names, parties)}
            jake, john, sw, cp, bob, alice = (w[n] for n in names)

            out("\n== Pointers ==")
            x = send(np.array([1, 2, 3, 4, 5]), bob)
            out(f"  x = send([1, 2, 3, 4, 5], bob) -> {x!r}; {_store(bob)}")
            out(f"  (x + x).get() = {(x + x).get().tolist()}  (computed in bob's process)")
            z = x.move(alice)
            out(f"  x.move(alice) -> {z!r} (bob sent it to alice directly); {_store(bob, alice)}")
            del z
            out(f"  del the last pointer -> alice frees it: {_store(alice)}")
            c = send(np.array([1, 2, 3]), jake).send(john)
            out(f"  send([1, 2, 3], jake).send(john) -> {c!r}; john holds {john.objects[c.id]}")
            c.remote_get()
            out(f"  .remote_get(): john fetched it from jake; {_store(jake, john)}; .get() = {c.get().tolist()}")

            out("\n== Sharing among jake, john and secure_worker; Beaver triples from crypto_provider ==")
            xs = send(np.array([25, 50, 75]), bob).share(jake, john, sw, crypto_provider=cp)
            ys = share_among(np.array([1, 2, 3]), (jake, john, sw), crypto_provider=cp)
            out(f"  x = {xs!r}")
            out(f"  (x + y).get() = {(xs + ys).get().tolist()};  (x * y).get() = {(xs * ys).get().tolist()}")
            fp = FixedPoint()
            a = share_among(np.array([[0.5, -1.25]]), (jake, john), crypto_provider=cp, encoding=fp)
            b = share_among(np.array([[2.0], [4.0]]), (jake, john), crypto_provider=cp, encoding=fp)
            out(f"  fixed point [[0.5, -1.25]] @ [[2.0], [4.0]] on shares = {(a @ b).get().tolist()}")
            del xs, ys, a, b
            links = deployment_links(session, *w.values())
            opened = sum(b for (s, r, k), (_, b) in links.items() if k == "open")
            out(f"  openings went worker to worker: {opened} bytes, none through 'me'; after del: "
                f"{_store(jake, john, sw)}")

            _encrypted_prediction(out, bob, alice, cp)
            for worker in w.values():
                worker.close()
        finally:
            for p in parties:
                p.stop()
        _secure_fedavg(out, tls, rounds=rounds, clients=clients)


def shared_mlp_logits(params: Mapping[str, Any], x: Any, servers: Sequence[Any], crypto_provider: Any, *,
                      encoding: Any = None) -> np.ndarray:
    """An MLP's logits computed on secret shares held by ``servers`` (workers: in process or other processes).

    The weights ``w0, w1, ...``, biases ``b0, b1, ...`` and the batch ``x`` are shared among ``servers`` (fixed
    point, default :class:`~refimpl.encoding.FixedPoint`); each layer is ``relu(h @ W + b)`` (no ReLU after the
    last): Beaver products with triples from ``crypto_provider`` and a dealer-assisted truncation (error below one
    ulp), ReLU exact (``x * [x >= 0]``, the comparison run by every server on its own share). Only the logits
    are reconstructed, here.

    Example:
        >>> from refimpl.workers import Ledger, VirtualWorker
        >>> ledger = Ledger()
        >>> bob, alice, cp = (VirtualWorker(n, ledger) for n in ("bob", "alice", "crypto_provider"))
        >>> params = {"w0": np.array([[1.0, -1.0]]), "b0": np.zeros(2), "w1": np.array([[2.0], [3.0]]),
        ...           "b1": np.array([0.5])}
        >>> shared_mlp_logits(params, np.array([[2.0], [-1.0]]), (bob, alice), cp).round(3).tolist()
        [[4.5], [3.5]]
    """
    from refimpl.encoding import FixedPoint
    from refimpl.workers import share_among

    fp = encoding if encoding is not None else FixedPoint()
    layers = sum(1 for k in params if k.startswith("w"))
    h = share_among(np.asarray(x, dtype=np.float64), servers, crypto_provider=crypto_provider, encoding=fp)
    for i in range(layers):
        w = share_among(np.asarray(params[f"w{i}"], dtype=np.float64), servers, crypto_provider=crypto_provider,
                        encoding=fp)
        b = share_among(np.asarray(params[f"b{i}"], dtype=np.float64), servers, crypto_provider=crypto_provider,
                        encoding=fp)
        h = h @ w + b
        if i < layers - 1:
            h = h.relu()
    return np.asarray(h.get())


def _encrypted_prediction(out: Callable[[str], None], bob: object, alice: object, cp: object) -> None:
    from refimpl.fl.data import load
    from refimpl.mpc.inference import plaintext_logits, train_mlp

    out("\n== Encrypted prediction across processes: a 784-128-10 ReLU MLP, weights and images shared ==")
    data = load("mnist-10k")
    params = train_mlp(data.x_train[:2000], data.y_train[:2000], (784, 128, 10), epochs=2)
    images = data.x_test[:8].astype(np.float64)
    t0 = time.perf_counter()
    logits = shared_mlp_logits(params, images, (bob, alice), cp)
    seconds = time.perf_counter() - t0
    plain = plaintext_logits(params, images)
    out(f"  true labels:           {data.y_test[:8].tolist()}")
    out(f"  plaintext predictions: {plain.argmax(1).tolist()}")
    out(f"  encrypted predictions: {logits.argmax(1).tolist()}  (largest logit error "
        f"{np.abs(logits - plain).max():.1e}, {seconds:.2f} s over loopback: 2 Beaver products, 2 truncations "
        "and an exact ReLU on bob's and alice's shares)")


def _secure_fedavg(out: Callable[[str], None], tls: Path, *, rounds: int, clients: int) -> None:
    out(f"\n== Secure FedAvg: an aggregator process and {clients} client processes (SecAgg) ==")
    procs: list[Party] = []
    try:
        lead = Party(["aggregator", "--protocol", "secagg", "--clients", str(clients), "--rounds", str(rounds),
                      "--tls-dir", str(tls), "--log-level", "WARNING", "--model", "784,32,10", "--lr", "0.1"])
        procs.append(lead)
        out(f"  python -m refimpl aggregator --protocol secagg --clients {clients} --rounds {rounds} ... -> "
            f"{lead.url}")
        for i in range(1, clients + 1):
            procs.append(Party(["client", "--ids", str(i), "--aggregator", lead.url, "--tls-dir", str(tls),
                                "--clients", str(clients)], listen=False))
        out(f"  python -m refimpl client --ids I --aggregator {lead.url} ... (I = 1..{clients}, each its own "
            "MNIST partition)")
        lead.proc.wait(300)
        time.sleep(0.2)
        for line in lead.output:
            if line.startswith("round "):
                out("  " + line.rstrip())
    finally:
        for p in procs:
            p.stop()
