"""Checkpoints of a federated run as plain ``.npz`` files (no pickle): parameters, optimizer state, round, config.

Layout of the archive: ``params/<name>`` for each parameter, ``opt_state/<i>`` for the i-th leaf of the server
optimizer state (in ``jax.tree_util`` flattening order), ``round`` (int64 scalar) and ``config`` (a JSON string).
The optimizer state's structure is not stored: it is rebuilt from the optimizer, which the config determines, and
the stored leaves are checked against it leaf by leaf.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.fl.server import ServerState

__all__ = ["CheckpointError", "load", "save"]


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the run that tries to resume from it."""


def save(path: str | os.PathLike[str], state: ServerState, config: dict[str, Any]) -> None:
    """Writes ``state`` and ``config`` to ``path`` atomically (write a temporary file, then rename).

    Args:
        path: Destination ``.npz`` path.
        state: Server state to save.
        config: JSON-serialisable run configuration.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {f"params/{k}": np.asarray(v) for k, v in state.params.items()}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state.opt_state)):
        arrays[f"opt_state/{i}"] = np.asarray(leaf)
    arrays["round"] = np.asarray(state.round, dtype=np.int64)
    arrays["config"] = np.asarray(json.dumps(config, sort_keys=True))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load(path: str | os.PathLike[str], optimizer: optax.GradientTransformation
         ) -> tuple[ServerState, dict[str, Any]]:
    """Reads a checkpoint written by `save`.

    Args:
        path: The ``.npz`` file.
        optimizer: The server optimizer of the run, used to rebuild the optimizer state's structure.

    Returns:
        (state, config).

    Raises:
        CheckpointError: The file is unreadable or its optimizer state does not match ``optimizer``.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    try:
        config = json.loads(str(arrays["config"]))
        round_ = int(arrays["round"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: missing or bad 'round'/'config' entry ({e})") from e
    params = {k.split("/", 1)[1]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")}
    template = optimizer.init(params)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    names = [f"opt_state/{i}" for i in range(len(leaves))]
    if sum(1 for k in arrays if k.startswith("opt_state/")) != len(leaves) or any(n not in arrays for n in names):
        raise CheckpointError(f"{path}: optimizer state has a different number of leaves than the optimizer "
                              f"expects ({len(leaves)}); was it saved with another server optimizer?")
    stored = [arrays[n] for n in names]
    for i, (t, s) in enumerate(zip(leaves, stored)):
        if np.shape(t) != s.shape or jnp.asarray(t).dtype != s.dtype:
            raise CheckpointError(f"{path}: optimizer state leaf {i} is {s.dtype}{s.shape}, expected "
                                  f"{jnp.asarray(t).dtype}{np.shape(t)}")
    opt_state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(s) for s in stored])
    return ServerState(params, opt_state, round_), config
