"""Encrypted MNIST inference: agreement with plaintext, time per image, bytes and rounds per inference.

The model is refimpl's 784-128-10 MLP (:func:`refimpl.demos.models.mnist_mlp`, trained deterministically on
the 8,000 training images of the built-in ``mnist-10k``). Its weights are secret-shared among the servers and the
client's images are secret-shared; the forward pass runs on shares (Beaver matmul with weights masked once,
dealer-assisted truncation, exact ReLU by A2B + Kogge-Stone + daBit B2A).

Figures, all measured in this process:

* agreement: arg-max of the decoded encrypted logits vs. the float64 plaintext logits, on all 10,000 official
  MNIST test images (8,000 of them trained the model; the test accuracy is reported on the other 2,000), and the
  largest absolute logit error;
* time: wall-clock (best of ``--repeats``) and CPU time per image at several batch sizes, next to the plaintext
  float64 NumPy forward pass on the same batch (the obvious alternative), with the ratio;
* communication: bytes and rounds per inference from a :class:`refimpl.workers.Ledger` (every opening and every
  dealer item encoded with the wire format), split into online openings, dealer (offline) traffic, the client's
  input shares and the logits' shares returned to it; the one-off set-up (masking the weights) is reported apart.

The tutorial's PySyft implementation reported about 33 ms per image on a laptop.

Run: ``OPENBLAS_NUM_THREADS=1 nice python bench/bench_inference.py`` (a few minutes on a loaded 2-core machine) or
``--quick``. With one BLAS thread the Z_2^64 matmuls take the exact float64 split-limb path
(:func:`refimpl.mpc.limb.limb_matmul`, its products spread over the cores), the configuration bench_mpc.py
measures; the JSON records the BLAS thread settings and ``LIMB_MATMUL``. The side-by-side comparison with CrypTen
and the limb-vs-integer matmul figures are bench_mpc.py's; this benchmark adds agreement on all 10,000 images,
more batch sizes, the online-only time and the ledger's bytes and rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import _common
import numpy as np

from refimpl.demos.models import mnist_mlp
from refimpl.fl.data import load
from refimpl.mpc import Dealer
from refimpl.mpc import limb as limb_mod
from refimpl.mpc.inference import EncryptedMLP, plaintext_logits
from refimpl.net import wire
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.shared_tensor import LedgerChannel

TUTORIAL_MS_PER_IMAGE = 33.0


def _best(fn: Any, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of ``repeats`` calls (no untimed warm-up)."""
    return _common.best_of(fn, repeats, warm=False)


def agreement(params: dict[str, np.ndarray], x: np.ndarray, n: int, truncation: str, batch: int) -> dict[str, Any]:
    model = EncryptedMLP(params, n=n, truncation=truncation)
    agree, max_err, start = 0, 0.0, time.perf_counter()
    for i in range(0, len(x), batch):
        got, want = model.logits(x[i : i + batch]), plaintext_logits(params, x[i : i + batch])
        agree += int((got.argmax(1) == want.argmax(1)).sum())
        max_err = max(max_err, float(np.abs(got - want).max()))
    return {"n": n, "truncation": truncation, "images": len(x), "agree": agree, "agree_fraction": agree / len(x),
            "max_logit_error": max_err, "seconds": time.perf_counter() - start}


class _Replay:
    """Stands in for the dealer with items made beforehand, in the order the forward pass asks for them, so that
    the timed run is the online phase only (the dealer's work is offline preprocessing in a deployment).

    A dry run through :meth:`recorder` notes the dealer calls (their items are used up there); :meth:`prepare`
    then makes fresh items for the same calls, which the timed run takes in order, each once.
    """

    def __init__(self, dealer: Dealer) -> None:
        self._dealer = dealer
        self.n, self.ring, self._masks = dealer.n, dealer.ring, dealer._masks
        self._calls: list[tuple[str, tuple[Any, ...]]] = []
        self._items: list[Any] = []

    def recorder(self) -> Any:
        dealer, calls = self._dealer, self._calls

        class _Recorder:
            n, ring, _masks = dealer.n, dealer.ring, dealer._masks

            def __getattr__(self, name: str) -> Any:
                def call(*args: Any) -> Any:
                    calls.append((name, args))
                    return getattr(dealer, name)(*args)
                return call
        return _Recorder()

    def prepare(self) -> None:
        self._items = [getattr(self._dealer, name)(*args) for name, args in self._calls]

    def __getattr__(self, name: str) -> Any:
        def next_item(*args: Any) -> Any:
            return self._items.pop(0)
        return next_item


def timing(params: dict[str, np.ndarray], x: np.ndarray, n: int, truncation: str, batch: int,
           repeats: int) -> dict[str, Any]:
    model = EncryptedMLP(params, n=n, truncation=truncation)
    xb = x[:batch]
    repeats = repeats * 5 if batch <= 10 else repeats  # small batches are quick: more samples, steadier minimum
    model.logits(xb)  # warm-up
    wall, cpu = _best(lambda: model.logits(xb), repeats)
    # online phase only: the dealer's items for each run are made beforehand (outside the timer)
    replay, dealer = _Replay(model.dealer), model.dealer
    model.dealer = replay.recorder()
    model.forward(model.share_input(xb))
    model.dealer = replay  # type: ignore[assignment]
    online = []
    for _ in range(repeats):
        replay.prepare()
        shared = model.share_input(xb)
        t0 = time.perf_counter()
        model.encoding.decode(model.forward(shared).reconstruct())
        online.append(time.perf_counter() - t0)
    model.dealer = dealer
    p_wall, _ = _best(lambda: plaintext_logits(params, xb), 100 if batch < 1000 else 20)
    return {"n": n, "truncation": truncation, "batch": batch,
            "ms_per_image": 1e3 * wall / batch, "cpu_ms_per_image": 1e3 * cpu / batch,
            "online_ms_per_image": 1e3 * min(online) / batch,
            "images_per_s": batch / wall, "plaintext_ms_per_image": 1e3 * p_wall / batch,
            "slowdown_vs_plaintext": wall / p_wall, "speedup_vs_tutorial": TUTORIAL_MS_PER_IMAGE / (1e3 * wall / batch)}


def communication(params: dict[str, np.ndarray], x: np.ndarray, n: int, truncation: str,
                  batch: int) -> dict[str, Any]:
    ledger = Ledger()
    servers = [VirtualWorker(f"server{i}", ledger) for i in range(n)]
    client, provider = VirtualWorker("client", ledger), VirtualWorker("crypto_provider", ledger)
    channel = LedgerChannel(servers, provider)
    model = EncryptedMLP(params, n=n, truncation=truncation, channel=channel)
    setup = {"bytes": ledger.bytes, "rounds_open": ledger.rounds_by_kind["open"], "messages": ledger.messages}
    before = ledger.summary()
    compressed = model.share_input_compressed(x[:batch])  # the client sends one array and n - 1 keys
    channel.transfer(compressed, client, servers, "input")
    xs = compressed.expand()
    logits = model.forward(xs)
    with ledger.round():  # the servers return the logits' shares to the client only
        for i, s in enumerate(servers):
            ledger.record(s.name, client.name, "output", len(wire.encode(logits.data[i])))
    after = ledger.summary()

    def delta(key: str, kind: str) -> int:
        return after[key].get(kind, 0) - before[key].get(kind, 0)

    kinds = ("open", "dealer", "input", "output")
    per = {k: delta("bytes_by_kind", k) / batch for k in kinds}
    return {"n": n, "truncation": truncation, "batch": batch,
            "bytes_per_inference": per, "online_bytes_per_inference": per["open"] + per["input"] + per["output"],
            "online_rounds": delta("rounds_by_kind", "open"), "dealer_rounds": delta("rounds_by_kind", "dealer"),
            "messages_per_batch": {k: delta("messages_by_kind", k) for k in kinds}, "setup": setup}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 images for agreement, fewer repeats")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None,
                    help="JSON path (default bench/results/inference-<UTC date>.json); '-': none")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats

    started = time.time()
    data = load("mnist-10k")
    params = mnist_mlp()
    x_all = np.concatenate([data.x_train, data.x_test]).astype(np.float64)  # all 10,000 official test images
    if args.quick:
        x_all = x_all[:1000]
    test_acc = float((plaintext_logits(params, data.x_test).argmax(1) == data.y_test).mean())
    print(f"model 784-128-10, plaintext accuracy on the 2,000 held-out images: {test_acc:.4f}")

    agree = [agreement(params, x_all, 2, "dealer", 1000)]
    if not args.quick:
        agree.append(agreement(params, x_all[:2000], 3, "dealer", 1000))
        agree.append(agreement(params, x_all[:2000], 2, "local", 1000))
    print("\nagreement of encrypted and plaintext predictions")
    print(f"{'n':>2} {'truncation':>10} {'images':>7} {'agree':>7} {'fraction':>9} {'max |logit err|':>16}")
    for a in agree:
        print(f"{a['n']:>2} {a['truncation']:>10} {a['images']:>7} {a['agree']:>7} {a['agree_fraction']:>9.4f} "
              f"{a['max_logit_error']:>16.3e}")

    times = []
    for n, trunc, batches in ((2, "dealer", (1, 10, 100, 1000)), (3, "dealer", (1, 100)), (2, "local", (1, 100))):
        for b in batches:
            times.append(timing(params, x_all, n, trunc, b, repeats if b < 1000 else max(1, repeats - 1)))
    print("\ntime per image (wall: best of repeats; CPU: process time)")
    print(f"{'n':>2} {'trunc':>6} {'batch':>6} {'ms/img':>8} {'cpu ms':>8} {'online':>8} {'img/s':>8} "
          f"{'plain ms':>9} {'x plain':>8} {'vs 33ms':>8}")
    for t in times:
        print(f"{t['n']:>2} {t['truncation']:>6} {t['batch']:>6} {t['ms_per_image']:>8.2f} "
              f"{t['cpu_ms_per_image']:>8.2f} "
              f"{t['online_ms_per_image']:>8.2f} {t['images_per_s']:>8.0f} {t['plaintext_ms_per_image']:>9.4f} "
              f"{t['slowdown_vs_plaintext']:>8.0f} {t['speedup_vs_tutorial']:>7.1f}x")
    print("(ms/img: wall clock, dealer included; cpu ms: process time; online: wall clock with the dealer's items "
          "made beforehand)")

    comms = [communication(params, x_all, 2, "dealer", b) for b in (1, 100)]
    comms += [communication(params, x_all, 3, "dealer", 100), communication(params, x_all, 2, "local", 100)]
    print("\ncommunication per inference (ledger; bytes on the wire incl. headers and checksums)")
    print(f"{'n':>2} {'trunc':>6} {'batch':>6} {'online B':>10} {'open B':>10} {'dealer B':>10} {'rounds':>7} "
          f"{'set-up B':>10}")
    for c in comms:
        per = c["bytes_per_inference"]
        print(f"{c['n']:>2} {c['truncation']:>6} {c['batch']:>6} {c['online_bytes_per_inference']:>10.0f} "
              f"{per['open']:>10.0f} {per['dealer']:>10.0f} {c['online_rounds']:>7} {c['setup']['bytes']:>10}")

    blas = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    result = {"benchmark": "inference", "machine": _common.machine_info(), "model": "784-128-10 MLP (mnist_mlp)",
              "blas_threads_env": blas, "limb_matmul": limb_mod.LIMB_MATMUL,
              "plaintext_test_accuracy": test_acc,
              "tutorial_ms_per_image": TUTORIAL_MS_PER_IMAGE, "agreement": agree, "timing": times,
              "communication": comms, "seconds": time.time() - started}
    _common.write_result(result, args.out, "inference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
