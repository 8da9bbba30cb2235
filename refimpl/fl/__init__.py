"""Federated learning: datasets, client partitions, a JAX MLP, vmapped FedAvg, training CLI and demo.

Submodules (imported on first access, so ``import refimpl.fl`` stays light; ``data`` and ``partition`` need only
NumPy, the others need the ``fl`` extra: jax, optax, tqdm, matplotlib):

* `refimpl.fl.data` -- ``load("mnist" | "fashion_mnist" | "mnist-10k")``;
* `refimpl.fl.partition` -- IID, Dirichlet and shard partitions, `FederatedDataset`;
* `refimpl.fl.model` -- MLP init/apply/loss/accuracy, and a NumPy reference gradient;
* `refimpl.fl.client` -- local training, vmapped / looped / sharded across devices;
* `refimpl.fl.server` -- client sampling, pluggable aggregation, FedAvg / FedAvgM / FedAdam;
* `refimpl.fl.distributed` -- multi-process runs on jax.distributed (gloo CPU collectives), ``train --processes``;
* `refimpl.fl.checkpoint` -- npz checkpoints;
* `refimpl.fl.population` -- a simulated device population (availability, opt-out, speed, bandwidth, CSV traces)
  and the rounds run over it: orchestration (over-selection, deadlines, dropouts by cause, simulated wall clock),
  secure aggregation under those dropouts, personalization;
* `refimpl.fl.deploy` -- secure aggregation across processes: ``aggregator``, share servers, ``client`` processes;
* `refimpl.fl.tutorial` -- the PySyft tutorial's loop on workers: ``federate``, ``FederatedDataLoader``,
  ``Model.send`` / ``train_step`` / ``get``, trusted and secure averaging;
* `refimpl.fl.fetch` -- ``python -m refimpl data fetch mnist`` (IDX files to the cache, SHA-256 verified);
* `refimpl.fl.train` -- ``main(argv)`` behind ``python -m refimpl train``;
* `refimpl.demos.federated` -- ``federated_demo()`` behind ``python -m refimpl demo``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["checkpoint", "client", "data", "deploy", "distributed", "fetch", "model", "partition", "population",
           "server", "train", "tutorial"]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"refimpl.fl.{name}")
    raise AttributeError(f"module 'refimpl.fl' has no attribute {name!r}")
