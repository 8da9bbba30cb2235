"""CrypTen's side of bench_mpc.py (run in an environment with crypten 0.4.1 + torch, see bench/install_crypten.sh).

Usage: ``python bench/crypten_mpc.py WEIGHTS.npz OUT.json [--elements 1000000] [--repeats 3]``. Two parties in two
processes (``crypten.mpc.run_multiprocess``), CrypTen's default (trusted first party) provider and 16-bit encoding:

* ``mul``: ``x * y`` of two encrypted tensors of ``--elements`` elements (Beaver product and truncation), best of
  ``--repeats``; elements per second;
* ``inference``: the 784-128-10 MLP of ``WEIGHTS.npz`` (``w0, b0, w1, b1``, refimpl's ``(in, out)`` layout) on
  encrypted batches of 250 and 1 images from ``x`` in the same file: time per image (best of ``--repeats``), and
  the arg-max agreement with the plaintext logits.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _party(path: str, elements: int, repeats: int) -> dict:
    import crypten
    import crypten.communicator as comm
    import crypten.nn as cnn
    import torch

    torch.set_num_threads(1)
    data = np.load(path)
    out: dict = {"rank": comm.get().get_rank()}
    x = crypten.cryptensor(torch.rand(elements) * 4 - 2, src=0)
    y = crypten.cryptensor(torch.rand(elements) * 4 - 2, src=1)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        z = x * y
        best = min(best, time.perf_counter() - t0)
    del z
    out["mul"] = {"elements": elements, "seconds": best, "elements_per_s": elements / best}

    layers = [cnn.Linear(784, data["w0"].shape[1]), cnn.Linear(data["w0"].shape[1], 10)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.data = torch.tensor(data[f"w{i}"].T.copy(), dtype=torch.float32)
            layer.bias.data = torch.tensor(data[f"b{i}"].copy(), dtype=torch.float32)
    model = cnn.Sequential(layers[0], cnn.ReLU(), layers[1])
    model.encrypt()
    model.eval()
    images = torch.tensor(data["x"], dtype=torch.float32)
    out["inference"] = {}
    for batch in (250, 1):
        xb = images[:batch]
        model(crypten.cryptensor(xb, src=0)).get_plain_text()  # warm-up, as bench_mpc does for refimpl
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            logits = model(crypten.cryptensor(xb, src=0)).get_plain_text()
            best = min(best, time.perf_counter() - t0)
        want = np.maximum(data["x"][:batch] @ data["w0"] + data["b0"], 0) @ data["w1"] + data["b1"]
        out["inference"][str(batch)] = {
            "ms_per_image": 1e3 * best / batch,
            "agree": float((logits.numpy().argmax(1) == want.argmax(1)).mean()),
            "max_logit_error": float(np.abs(logits.numpy() - want).max())}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("--elements", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import crypten
    import torch

    run = crypten.mpc.run_multiprocess(world_size=2)(_party)
    parties = run(args.weights, args.elements, args.repeats)
    result = {"crypten": crypten.__version__, "torch": torch.__version__, "threads_per_party": 1,
              "parties": parties}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
