"""CrypTen's encrypted training of the same MLP, for bench_training.py (run in an environment with crypten).

Usage: ``python bench/crypten_training.py DATA.npz OUT.json --epochs 1 --batch 64 --lr 0.1``. ``DATA.npz`` holds
``x_train``, ``y_train``, ``x_test``, ``y_test`` and the initial weights ``w0, b0, w1, b1`` (refimpl's layout,
``(in, out)``). Two parties in two processes (``crypten.mpc.run_multiprocess``), CrypTen's default provider and
settings; its communicator counts rounds and bytes (``cfg.communicator.verbose``). Also times the plaintext PyTorch
epoch of the same model on the same data. Install CrypTen with ``bench/install_crypten.sh``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _model(params, crypten_nn):
    import torch

    hidden = params["w0"].shape[1]
    layers = [crypten_nn.Linear(784, hidden), crypten_nn.Linear(hidden, 10)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.data = torch.tensor(params[f"w{i}"].T.copy(), dtype=torch.float32)
            layer.bias.data = torch.tensor(params[f"b{i}"].copy(), dtype=torch.float32)
    model = crypten_nn.Sequential(layers[0], crypten_nn.ReLU(), layers[1])
    return model


def _party(path: str, epochs: int, batch: int, lr: float) -> dict:
    import crypten
    import crypten.communicator as comm
    import crypten.nn as cnn
    import torch

    crypten.cfg.communicator.verbose = True
    data = np.load(path)
    x, y = torch.tensor(data["x_train"]), torch.tensor(data["y_train"]).long()
    onehot = torch.nn.functional.one_hot(y, 10).float()
    model = _model(data, cnn)
    model.encrypt()
    model.train()
    loss_fn = cnn.CrossEntropyLoss()
    per_epoch = []
    for _ in range(epochs):
        comm.get().reset_communication_stats()
        t0 = time.perf_counter()
        for start in range(0, len(x), batch):
            xe = crypten.cryptensor(x[start : start + batch], src=0)
            ye = crypten.cryptensor(onehot[start : start + batch], src=0)
            out = model(xe)
            loss = loss_fn(out, ye)
            model.zero_grad()
            loss.backward()
            model.update_parameters(lr)
        stats = comm.get().get_communication_stats()
        per_epoch.append({"seconds": time.perf_counter() - t0, "rounds": stats["rounds"], "bytes": stats["bytes"]})
    model.decrypt()
    with torch.no_grad():
        logits = model(torch.tensor(data["x_test"]))
    acc = float((logits.argmax(1).numpy() == data["y_test"]).mean())
    return {"rank": comm.get().get_rank(), "epochs": per_epoch, "test_accuracy": acc}


def _plaintext_epoch(path: str, batch: int, lr: float) -> dict:
    import torch

    data = np.load(path)
    x, y = torch.tensor(data["x_train"]), torch.tensor(data["y_train"]).long()
    model = torch.nn.Sequential(torch.nn.Linear(784, data["w0"].shape[1]), torch.nn.ReLU(),
                                torch.nn.Linear(data["w0"].shape[1], 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for start in range(0, len(x), batch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[start : start + batch]), y[start : start + batch])
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - t0)
    return {"seconds": best, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    args = p.parse_args()
    import crypten
    import torch

    run = crypten.mpc.run_multiprocess(world_size=2)(_party)
    t0 = time.perf_counter()
    parties = run(args.data, args.epochs, args.batch, args.lr)
    wall = time.perf_counter() - t0
    result = {"crypten": crypten.__version__, "torch": torch.__version__, "parties": parties, "wall_s": wall,
              "plaintext_epoch": _plaintext_epoch(args.data, args.batch, args.lr)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
