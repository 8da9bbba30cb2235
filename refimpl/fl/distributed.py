"""Simulations beyond one process: JAX's distributed runtime with CPU collectives (gloo).

Every process runs the same program (multi-controller JAX): ``jax.distributed.initialize`` joins it to a
coordinator, after which ``jax.devices()`` lists the devices of *all* processes and a mesh over them shards a round's
clients across processes exactly as ``--devices N`` shards them across the devices of one (`client.client_mesh`,
`client.shard_clients`). XLA inserts the cross-process sum of the updates; on CPUs it runs over gloo (TCP).

``python -m refimpl train ... --processes P`` starts P such processes on this machine, coordinated on 127.0.0.1
(`launch`); on real hosts start one process per host yourself with ``--coordinator HOST:PORT --num-processes P
--process-id I`` (the same command line otherwise). Process 0 writes the outputs; the others train silently.

Only the training is sharded. A host-side aggregator (secure aggregation) gets every client's update on process 0,
which aggregates (with its own fresh keys) and broadcasts the mean; the server step then runs identically on every
process, so each ends the round with the same parameters.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["broadcast_from_first", "free_port", "gather", "initialize", "launch", "process_count", "process_index"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def initialize(coordinator: str, num_processes: int, process_id: int, *, local_cpu_devices: int | None = None,
               timeout_s: int = 120) -> None:
    """Join this process to a distributed JAX run (call before anything else touches JAX's devices).

    Selects gloo for CPU collectives and, when ``local_cpu_devices`` is given, that many CPU devices in this process
    (``jax_num_cpu_devices``; accelerators are unaffected).

    Args:
        coordinator: ``host:port`` of process 0's coordinator service.
        num_processes: P >= 1.
        process_id: this process, 0 <= id < P.
        local_cpu_devices: CPU devices this process contributes (None: JAX's default).
        timeout_s: how long to wait for every process to join before failing (no hangs).

    Raises:
        ValueError: bad process id or count, or a coordinator that is not ``host:port``.
        RuntimeError: JAX's backends were already initialised in this process.
    """
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process id {process_id} is not in [0, {num_processes}) (num_processes={num_processes})")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"coordinator address must be host:port, got {coordinator!r}")
    import jax

    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        if local_cpu_devices is not None:
            jax.config.update("jax_num_cpu_devices", int(local_cpu_devices))
    except RuntimeError as e:  # JAX refuses these once a backend exists
        raise RuntimeError(f"initialise the distributed run before JAX's devices are used: {e}") from e
    jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout_s)


def process_count() -> int:
    """The number of processes of the run (1 unless `initialize` was called); imports JAX."""
    import jax

    return int(jax.process_count())


def process_index() -> int:
    """This process's index in the run (0 on a single process)."""
    import jax

    return int(jax.process_index())


def gather(tree: Any) -> Any:
    """Every leaf of a pytree as a host NumPy array holding the *global* value.

    Leaves spread over several processes are all-gathered (every process gets all of it); everything else is
    converted in place.
    """
    import jax
    import numpy as np

    def one(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(one, tree)


def broadcast_from_first(tree: Any | None, like: Any) -> Any:
    """Process 0's ``tree`` on every process, as host float32 NumPy arrays of ``like``'s shapes.

    Process 0 passes its value; the others pass None (their ``like`` gives the shapes). A collective: every
    process must call it.
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        if tree is None:
            raise ValueError("process 0 must pass the value to broadcast")
        local = jax.tree_util.tree_map(lambda v: np.asarray(v, dtype=np.float32), tree)
    else:
        local = jax.tree_util.tree_map(lambda v: np.zeros(np.shape(v), np.float32), like)
    return jax.tree_util.tree_map(np.asarray, multihost_utils.broadcast_one_to_all(local))


def launch(argv: Sequence[str], processes: int, *, module: str = "refimpl", timeout_s: float | None = None,
           env: dict[str, str] | None = None) -> int:
    """Run ``python -m refimpl <argv>`` as ``processes`` coordinated processes on 127.0.0.1; their exit status.

    Each child gets ``--coordinator 127.0.0.1:PORT --num-processes P --process-id i`` appended (nothing when
    ``processes`` is 1: one plain child). If one fails, the others are stopped; all are killed when this returns
    or is interrupted.

    Returns:
        0 if every process succeeded, else the first non-zero exit status (124 on ``timeout_s``).
    """
    port = free_port()
    children: list[subprocess.Popen[bytes]] = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM ends the launcher through `finally` too
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for i in range(processes):
            joined = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i)]
            cmd = [sys.executable, "-m", module, *argv, *(joined if processes > 1 else [])]
            children.append(subprocess.Popen(cmd, env={**os.environ, **(env or {})}))
        while True:
            codes = [c.poll() for c in children]
            failed = [rc for rc in codes if rc not in (None, 0)]
            if failed:
                return failed[0]
            if all(rc == 0 for rc in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                return 124
            time.sleep(0.05)
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
        for c in children:
            c.wait()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
