"""Client updates: E local epochs of minibatch SGD (any optax optimizer), jit-compiled and vmapped over clients.

A client is described by a row of a `~refimpl.fl.partition.FederatedDataset`: its padded index row (L,) into the
shared images and its true size n. Each epoch visits the n real samples in a fresh random order (padding last)
in ceil(L / B) steps of B positions; an example counts only if its position is < n, and a step whose batch is
all padding leaves parameters and optimizer state untouched. So a client of size n trains exactly as it would
unpadded: ceil(n / B) steps per epoch, the last one on n mod B examples. This lets clients of different sizes
share one compiled, vmapped program.

The shuffling key of client c in round r is ``fold_in(fold_in(key(seed), r), c)``: it depends only on
(seed, round, client), so runs are reproducible and resumable. Nothing here is secret, so jax.random is fine.

Three interchangeable round programs with one signature are provided:

* `make_round_update` -- one jit of ``vmap`` over the round's clients (the fast path);
* `make_loop_update` -- one jit per client called in a Python loop (how FedJAX and Flower simulate; the baseline);
* either one, fed inputs placed by `shard_clients`, runs the clients sharded across the devices of a mesh.

Signature: ``fn(params, x, y, index (m, L), sizes (m,), seed, round, client_ids (m,)) -> (deltas, losses)``
where ``deltas`` is the params pytree with a leading client axis (local params minus global params) and
``losses`` (m,) is each client's mean training loss over its local steps.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from refimpl.fl import model as mlp

__all__ = [
    "RoundUpdate",
    "batch_order",
    "client_key",
    "client_mesh",
    "epoch_keys",
    "make_client_update",
    "MeanRound",
    "make_loop_update",
    "make_round_mean",
    "make_round_update",
    "shard_clients",
]

RoundUpdate = Callable[..., tuple[dict[str, jax.Array], jax.Array]]


def client_key(seed: jax.Array | int, round_: jax.Array | int, client: jax.Array | int) -> jax.Array:
    """The shuffling key of one client in one round: fold_in(fold_in(PRNGKey(seed), round), client)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), round_), client)


def epoch_keys(seed: jax.Array | int, round_: jax.Array | int, client: jax.Array | int,
               local_epochs: int) -> jax.Array:
    """The shuffling keys of a client's local epochs: ``split(client_key(seed, round, client), E)``."""
    return jax.random.split(client_key(seed, round_, client), local_epochs)


def batch_order(key: jax.Array, n: jax.Array | int, length: int, batch_size: int,
                shuffle: bool = True) -> tuple[jax.Array, jax.Array]:
    """Positions visited in one epoch, as (steps, B) position and validity arrays.

    Real positions [0, n) come first (shuffled when ``shuffle``), padding positions after; the order is padded
    to ``steps * B`` with ``steps = ceil(length / B)``.
    """
    steps = -(-length // batch_size)
    pos = jnp.arange(length)
    if shuffle:
        r = jnp.where(pos < n, jax.random.uniform(key, (length,)), 2.0)
        order = jnp.argsort(r, stable=True)
    else:
        order = pos
    order = jnp.concatenate([order, jnp.zeros(steps * batch_size - length, order.dtype)])
    valid = jnp.arange(steps * batch_size) < n
    return order.reshape(steps, batch_size), valid.reshape(steps, batch_size)


def _tree_where(cond: jax.Array, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), a, b)


def make_client_update(optimizer: optax.GradientTransformation, *, local_epochs: int, batch_size: int,
                       shuffle: bool = True) -> Callable[..., tuple[dict[str, jax.Array], jax.Array]]:
    """Builds the (un-jitted) update of a single client.

    Args:
        optimizer: Client optimizer; its state starts fresh every round.
        local_epochs: E >= 1.
        batch_size: B >= 1.
        shuffle: Visit samples in a random order each epoch (False: index order, for tests).

    Returns:
        ``update(params, x, y, index (L,), n, seed, round, client) -> (delta, mean_loss)``.

    Raises:
        ValueError: local_epochs or batch_size < 1.
    """
    if local_epochs < 1:
        raise ValueError(f"local_epochs must be >= 1, got {local_epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    grad_fn = jax.value_and_grad(mlp.loss)

    def update(params, x, y, index, n, seed, round_, client):
        length = index.shape[0]
        keys = epoch_keys(seed, round_, client, local_epochs)

        def step(carry, batch):
            p, s, loss_sum, count = carry
            positions, valid = batch
            rows = index[positions]
            value, grads = grad_fn(p, x[rows], y[rows], valid)
            upd, s_new = optimizer.update(grads, s, p)
            live = jnp.any(valid)
            p = _tree_where(live, optax.apply_updates(p, upd), p)
            s = _tree_where(live, s_new, s)
            return (p, s, loss_sum + jnp.where(live, value, 0.0), count + live), None

        def epoch(carry, key):
            positions, valid = batch_order(key, n, length, batch_size, shuffle)
            return jax.lax.scan(step, carry, (positions, valid))[0], None

        init = (params, optimizer.init(params), jnp.float32(0.0), jnp.int32(0))
        (local, _, loss_sum, count), _ = jax.lax.scan(epoch, init, keys)
        delta = jax.tree_util.tree_map(jnp.subtract, local, params)
        return delta, loss_sum / jnp.maximum(count, 1).astype(jnp.float32)

    return update


def make_round_update(optimizer: optax.GradientTransformation, *, local_epochs: int, batch_size: int,
                      shuffle: bool = True, clients_per_chunk: int | None = None) -> RoundUpdate:
    """One jit-compiled program that trains all of a round's clients at once with ``jax.vmap``.

    With ``clients_per_chunk=k`` the program instead vmaps k clients at a time and loops over the chunks inside
    the compiled program (``jax.lax.map(..., batch_size=k)``). On a CPU, full vmap wins while the round's
    stacked parameters and gradients fit in cache (e.g. 10 clients of a 784-128-10 MLP) and loses to k=1 or 2
    beyond (10 clients of the 2NN: 8 MB); see ``bench/bench_fedavg.py``.

    Args:
        optimizer: Client optimizer.
        local_epochs: E >= 1.
        batch_size: B >= 1.
        shuffle: Shuffle every epoch.
        clients_per_chunk: None (vmap all clients) or k >= 1.

    Raises:
        ValueError: clients_per_chunk < 1 (and see `make_client_update`).

    Example:
        >>> import optax, numpy as np
        >>> from refimpl.fl import model
        >>> fn = make_round_update(optax.sgd(0.1), local_epochs=1, batch_size=2)
        >>> p = model.init((4, 3), seed=0)
        >>> x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
        >>> deltas, losses = fn(p, x, y, np.array([[0, 1, 2], [3, 4, 0]]), np.array([3, 2]), 0, 0, np.array([0, 1]))
        >>> deltas["w0"].shape, losses.shape
        ((2, 4, 3), (2,))
    """
    single = make_client_update(optimizer, local_epochs=local_epochs, batch_size=batch_size, shuffle=shuffle)
    if clients_per_chunk is None:
        return jax.jit(jax.vmap(single, in_axes=(None, None, None, 0, 0, None, None, 0)))
    if clients_per_chunk < 1:
        raise ValueError(f"clients_per_chunk must be None or >= 1, got {clients_per_chunk}")

    def chunked(params, x, y, index, sizes, seed, round_, client_ids):
        def one(args):
            return single(params, x, y, args[0], args[1], seed, round_, args[2])
        return jax.lax.map(one, (index, sizes, client_ids), batch_size=clients_per_chunk)

    return jax.jit(chunked)


class MeanRound:
    """A round program that averages inside: ``fn(params, x, y, index, sizes, seed, round, client_ids, weights)
    -> (mean_update, losses)`` with ``weights`` (m,) already normalised (sum 1; 0 for padding clients).

    Built by `make_round_mean`. `refimpl.fl.server.FedAvg` recognises it and skips the separate aggregation step.
    """

    def __init__(self, fn: Callable[..., tuple[dict[str, jax.Array], jax.Array]], clients_per_chunk: int,
                 mesh: Mesh | None) -> None:
        self.fn, self.clients_per_chunk, self.mesh = fn, clients_per_chunk, mesh

    @property
    def multiple(self) -> int:
        """The client count is padded to a multiple of this (chunk size times mesh size)."""
        return self.clients_per_chunk * (1 if self.mesh is None else self.mesh.size)

    def __call__(self, *args: object) -> tuple[dict[str, jax.Array], jax.Array]:
        return self.fn(*args)


def make_round_mean(optimizer: optax.GradientTransformation, *, local_epochs: int, batch_size: int,
                    shuffle: bool = True, clients_per_chunk: int = 1, mesh: Mesh | None = None,
                    axis: str = "clients") -> MeanRound:
    """A round program that returns the weighted mean update without materialising per-client updates.

    Each device trains its clients ``clients_per_chunk`` at a time (vmapped) in a ``lax.scan`` whose carry is the
    running sum ``sum_k w_k delta_k``; with a ``mesh`` the devices' partial sums are added by ``lax.psum`` (across
    processes in a ``jax.distributed`` run). Memory is O(clients_per_chunk) updates instead of O(m): this is the
    program for cohorts of thousands of clients. It computes the plaintext FedAvg mean (to float rounding: the sum
    runs in another order than `refimpl.fl.server.weighted_mean`), so it cannot be used with secure aggregation.

    Raises:
        ValueError: clients_per_chunk < 1 (and see `make_client_update`).

    Example:
        >>> import optax, numpy as np
        >>> from refimpl.fl import model
        >>> fn = make_round_mean(optax.sgd(0.1), local_epochs=1, batch_size=2)
        >>> p = model.init((4, 3), seed=0)
        >>> x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
        >>> mean, losses = fn(p, x, y, np.array([[0, 1, 2], [3, 4, 0]]), np.array([3, 2]), 0, 0, np.array([0, 1]),
        ...                   np.array([0.6, 0.4], np.float32))
        >>> mean["w0"].shape, losses.shape
        ((4, 3), (2,))
    """
    if isinstance(clients_per_chunk, bool) or not isinstance(clients_per_chunk, int) or clients_per_chunk < 1:
        raise ValueError(f"clients_per_chunk must be an int >= 1, got {clients_per_chunk!r}")
    single = make_client_update(optimizer, local_epochs=local_epochs, batch_size=batch_size, shuffle=shuffle)
    vmapped = jax.vmap(single, in_axes=(None, None, None, 0, 0, None, None, 0))
    k = clients_per_chunk

    def local(params, x, y, index, sizes, seed, round_, client_ids, weights):
        chunks = index.shape[0] // k

        def body(acc, chunk):
            idx, n, cid, w = chunk
            deltas, losses = vmapped(params, x, y, idx, n, seed, round_, cid)
            acc = jax.tree_util.tree_map(lambda a, d: a + jnp.tensordot(w, d, axes=1), acc, deltas)
            return acc, losses

        split = (index.reshape(chunks, k, -1), sizes.reshape(chunks, k), client_ids.reshape(chunks, k),
                 weights.reshape(chunks, k))
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        total, losses = jax.lax.scan(body, zeros, split)
        if mesh is not None:
            total = jax.lax.psum(total, axis)  # the cross-device (and cross-process) sum
        return total, losses.reshape(-1)

    if mesh is None:
        return MeanRound(jax.jit(local), k, None)
    rows, rep = PartitionSpec(axis), PartitionSpec()
    sharded = jax.shard_map(local, mesh=mesh, in_specs=(rep, rep, rep, rows, rows, rep, rep, rows, rows),
                            out_specs=(rep, rows), check_vma=False)  # the client program's scans mix both
    return MeanRound(jax.jit(sharded), k, mesh)


def make_loop_update(optimizer: optax.GradientTransformation, *, local_epochs: int, batch_size: int,
                     shuffle: bool = True) -> RoundUpdate:
    """The per-client baseline: one jit-compiled client program called in a Python loop, outputs stacked.

    Computes the same thing as `make_round_update` (to float rounding), one client at a time.
    """
    single = jax.jit(make_client_update(optimizer, local_epochs=local_epochs, batch_size=batch_size,
                                        shuffle=shuffle))

    def loop(params, x, y, index, sizes, seed, round_, client_ids):
        outs = [single(params, x, y, index[i], sizes[i], seed, round_, client_ids[i]) for i in range(len(sizes))]
        deltas = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[o[0] for o in outs])
        return deltas, jnp.stack([o[1] for o in outs])

    return loop


def client_mesh(num_devices: int | None = None, axis: str = "clients") -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (all if None), for `shard_clients`.

    In a ``jax.distributed`` run (`refimpl.fl.distributed`) the devices are those of every process, so the same
    mesh shards the clients across processes (hosts).

    The axis is of type ``Auto``, so XLA's partitioner propagates the client sharding through the vmapped
    program (no sharding annotations are needed inside it).

    Raises:
        ValueError: num_devices < 1 or more than the available devices.
    """
    available = jax.devices()
    n = len(available) if num_devices is None else num_devices
    if not 1 <= n <= len(available):
        raise ValueError(f"num_devices must be in [1, {len(available)}] (the devices of every process of the run; "
                         f"more CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count=N), got {num_devices}")
    return Mesh(np.array(available[:n]), (axis,), axis_types=(AxisType.Auto,))


def shard_clients(mesh: Mesh, index: np.ndarray, sizes: np.ndarray, client_ids: np.ndarray,
                  axis: str = "clients", *, multiple: int | None = None
                  ) -> tuple[jax.Array, jax.Array, jax.Array, int]:
    """Places a round's per-client inputs on a device mesh, split along the client axis.

    The client count is padded up to a multiple of the mesh size with empty clients (size 0, whose update is
    exactly zero and whose FedAvg weight is zero). A jitted round program given these inputs runs each device's
    clients on that device (XLA SPMD partitioning follows the input shardings).

    Args:
        mesh: A 1-D mesh, e.g. from `client_mesh`.
        index: (m, L) padded index rows.
        sizes: (m,) client sizes.
        client_ids: (m,) client ids.
        axis: Name of the mesh axis.
        multiple: pad the client count to a multiple of this (default: the mesh size).

    Returns:
        (index, sizes, client_ids, m): the sharded, padded arrays and the real client count m.
    """
    m = len(sizes)
    pad = (-m) % (mesh.size if multiple is None else multiple)
    index = np.concatenate([index, np.zeros((pad, index.shape[1]), index.dtype)])
    sizes = np.concatenate([sizes, np.zeros(pad, sizes.dtype)])
    client_ids = np.concatenate([client_ids, np.zeros(pad, client_ids.dtype)])
    rows = NamedSharding(mesh, PartitionSpec(axis))
    return (jax.device_put(index, NamedSharding(mesh, PartitionSpec(axis, None))),
            jax.device_put(sizes, rows), jax.device_put(client_ids, rows), m)
