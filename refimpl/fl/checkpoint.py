"""Checkpoints of a federated run as plain ``.npz`` files (no pickle): parameters, optimizer state, round, config.

Layout of the archive: ``params/<name>`` for each parameter, ``opt_state/<i>`` for the i-th leaf of the server
optimizer state (in ``jax.tree_util`` flattening order), ``round`` (int64 scalar) and ``config`` (a JSON string).
The optimizer state's structure is not stored: it is rebuilt from the optimizer, which the config determines, and
the stored leaves are checked against it leaf by leaf.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.errors import CheckpointError
from refimpl.fl.server import ServerState

__all__ = ["CheckpointError", "load", "save"]


def save(path: str | os.PathLike[str], state: ServerState, config: dict[str, Any]) -> None:
    """Writes ``state`` and ``config`` to ``path`` atomically and durably.

    The archive is written to ``path.tmp``, flushed and fsync'ed, renamed over ``path``, and the directory is
    fsync'ed, so a crash (even SIGKILL or power loss) leaves the old checkpoint or the new one, never a torn file.
    The bytes depend only on the contents (entries in a fixed order with a fixed timestamp): an interrupted and
    resumed run writes the very same file as an uninterrupted one.

    Args:
        path: Destination ``.npz`` path.
        state: Server state to save (parameters, optimizer state, round -- never any key).
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
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():  # what np.savez writes, minus its wall-clock timestamps
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, struct.error,
            NotImplementedError, UnicodeDecodeError, RuntimeError) as e:  # truncated, bit-flipped, not a zip
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {' '.join(str(e).split())}); "
                              "the file is truncated or corrupted") from e
    try:
        config = json.loads(str(arrays["config"]))
        round_ = int(arrays["round"])
        if not isinstance(config, dict) or round_ < 0:
            raise ValueError("config must be a JSON object and round >= 0")
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: missing or bad 'round'/'config' entry ({e})") from e
    params = {k.split("/", 1)[1]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")}
    bad = sorted(k for k, v in params.items() if v.dtype.kind != "f" or not bool(jnp.isfinite(v).all()))
    if not params or bad:
        raise CheckpointError(f"{path}: parameters {bad or 'missing'} are not finite float arrays")
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
