"""Splitting a dataset across simulated clients: IID, Dirichlet label skew and pathological shards.

A partition is a tuple of index arrays, one per client, that together hold every sample index exactly once.
`FederatedDataset` stores the partition padded and masked so that a round's clients can be vmapped: one global
copy of the images, plus a (clients, max_size) table of indices and a validity mask.

Shuffling here is not secret, so the seeded NumPy generator ``np.random.default_rng(seed)`` is used.

References:
    McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data", AISTATS 2017
    (IID and pathological non-IID shards). Hsu et al., "Measuring the Effects of Non-Identical Data Distribution
    for Federated Visual Classification", 2019 (Dirichlet label skew).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "PARTITIONS",
    "FederatedDataset",
    "dirichlet",
    "drift_window",
    "federate",
    "iid",
    "label_histograms",
    "make_partition",
    "powerlaw",
    "shards",
    "sizes",
]

Partition = tuple[np.ndarray, ...]
PARTITIONS = ("iid", "dirichlet", "shards", "powerlaw")


def _check_labels(labels: ArrayLike) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be non-negative, got {int(y.min())}")
    return y


def _check_clients(num_clients: int, n: int) -> None:
    if not isinstance(num_clients, (int, np.integer)) or isinstance(num_clients, bool):
        raise TypeError(f"num_clients must be an int, got {type(num_clients).__name__}")
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if num_clients > n:
        raise ValueError(f"num_clients={num_clients} exceeds the number of samples {n}")


def iid(labels: ArrayLike, num_clients: int, *, seed: int = 0) -> Partition:
    """Shuffles the samples and deals them into ``num_clients`` parts whose sizes differ by at most one.

    Args:
        labels: 1-D integer labels (only their count is used).
        num_clients: Number of clients K, 1 <= K <= N.
        seed: Seed of the NumPy generator.

    Returns:
        K sorted int64 index arrays.

    Example:
        >>> [len(p) for p in iid([0, 1, 0, 1, 2], 2)]
        [3, 2]
    """
    y = _check_labels(labels)
    _check_clients(num_clients, len(y))
    perm = np.random.default_rng(seed).permutation(len(y))
    return tuple(np.sort(p) for p in np.array_split(perm, num_clients))


def dirichlet(labels: ArrayLike, num_clients: int, alpha: float, *, seed: int = 0, min_size: int = 1,
              max_tries: int = 100) -> Partition:
    """Label-skewed split: each class is divided among clients in proportions drawn from Dirichlet(alpha).

    For each class c, q_c ~ Dir(alpha * 1_K) and the class's shuffled samples are cut at the cumulative
    proportions. Small alpha gives each client few classes; large alpha approaches IID. The draw is repeated
    (up to ``max_tries``) until every client has at least ``min_size`` samples.

    Args:
        labels: 1-D integer labels.
        num_clients: Number of clients K.
        alpha: Concentration, > 0.
        seed: Seed of the NumPy generator.
        min_size: Smallest acceptable client size.
        max_tries: Attempts before giving up.

    Returns:
        K sorted int64 index arrays.

    Raises:
        ValueError: alpha <= 0, min_size * K > N, or no draw met min_size within max_tries.

    Example:
        >>> parts = dirichlet([0, 1] * 50, 4, 0.5, seed=1)
        >>> sum(len(p) for p in parts)
        100
    """
    y = _check_labels(labels)
    _check_clients(num_clients, len(y))
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if min_size * num_clients > len(y):
        raise ValueError(f"min_size={min_size} x num_clients={num_clients} exceeds the {len(y)} samples")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            q = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(q)[:-1] * len(idx)).astype(np.int64)
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
        result = tuple(np.sort(np.concatenate(p)) for p in parts)
        if min(len(p) for p in result) >= min_size:
            return result
    raise ValueError(f"no Dirichlet(alpha={alpha}) draw gave every one of {num_clients} clients >= {min_size} "
                     f"samples in {max_tries} tries; raise alpha or lower min_size")


def shards(labels: ArrayLike, num_clients: int, *, shards_per_client: int = 2, seed: int = 0) -> Partition:
    """McMahan et al.'s pathological non-IID split: sort by label, cut into shards, give each client a few.

    Samples are sorted by label (stable, so ties keep index order), cut into ``num_clients * shards_per_client``
    contiguous shards of (nearly) equal size, and the shards are dealt to clients in a random order. With
    60,000 samples, 100 clients and 2 shards each, every client holds two shards of 300 and so at most two labels.

    Args:
        labels: 1-D integer labels.
        num_clients: Number of clients K.
        shards_per_client: Shards per client, >= 1.
        seed: Seed of the NumPy generator.

    Returns:
        K sorted int64 index arrays.

    Raises:
        ValueError: shards_per_client < 1 or more shards than samples.

    Example:
        >>> parts = shards([0, 0, 1, 1, 2, 2, 3, 3], 2, seed=0)
        >>> sorted(len(p) for p in parts)
        [4, 4]
    """
    y = _check_labels(labels)
    _check_clients(num_clients, len(y))
    total = num_clients * shards_per_client
    if shards_per_client < 1 or total > len(y):
        raise ValueError(f"shards_per_client={shards_per_client} gives {total} shards for {len(y)} samples")
    order = np.argsort(y, kind="stable")
    pieces = np.array_split(order, total)
    assignment = np.random.default_rng(seed).permutation(total).reshape(num_clients, shards_per_client)
    return tuple(np.sort(np.concatenate([pieces[s] for s in row])) for row in assignment)


def powerlaw(labels: ArrayLike, num_clients: int, *, exponent: float = 1.5, seed: int = 0,
             min_size: int = 1) -> Partition:
    """Heavy-tailed client sizes: size_k proportional to a Pareto(exponent) draw, samples dealt at random.

    Draws s_k = (1 - U_k)^(-1 / exponent) (a Pareto tail P(S > s) = s^-exponent, s >= 1), gives each client
    ``min_size`` samples plus a share of the rest proportional to s_k (largest-remainder rounding, so the sizes sum
    to N), then deals a random permutation of the samples in those sizes (labels IID within a client). Smaller
    exponents give heavier tails: at 1.5 with 1,000 clients the largest client holds ~100x the median.

    Args:
        labels: 1-D integer labels (only their count is used).
        num_clients: Number of clients K.
        exponent: Pareto tail index, > 0.
        seed: Seed of the NumPy generator.
        min_size: Smallest client size.

    Raises:
        ValueError: exponent <= 0 or min_size * K > N.

    Example:
        >>> parts = powerlaw(list(range(10)) * 100, 10, seed=0)
        >>> sum(len(p) for p in parts), min(len(p) for p in parts) >= 1
        (1000, True)
    """
    y = _check_labels(labels)
    _check_clients(num_clients, len(y))
    if not exponent > 0:
        raise ValueError(f"exponent must be > 0, got {exponent}")
    if min_size < 0 or min_size * num_clients > len(y):
        raise ValueError(f"min_size={min_size} x num_clients={num_clients} exceeds the {len(y)} samples")
    rng = np.random.default_rng(seed)
    s = (1.0 - rng.random(num_clients)) ** (-1.0 / exponent)
    rest = len(y) - min_size * num_clients
    share = s / s.sum() * rest
    n = np.floor(share).astype(np.int64)
    n[np.argsort(share - n, kind="stable")[::-1][: rest - int(n.sum())]] += 1
    n += min_size
    perm = rng.permutation(len(y))
    return tuple(np.sort(p) for p in np.split(perm, np.cumsum(n)[:-1]))


def make_partition(kind: str, labels: ArrayLike, num_clients: int, *, seed: int = 0, alpha: float = 0.5,
                   shards_per_client: int = 2, exponent: float = 1.5) -> Partition:
    """Dispatches to `iid`, `dirichlet`, `shards` or `powerlaw` by name.

    Raises:
        ValueError: ``kind`` is not one of `PARTITIONS`.
    """
    if kind == "iid":
        return iid(labels, num_clients, seed=seed)
    if kind == "dirichlet":
        return dirichlet(labels, num_clients, alpha, seed=seed)
    if kind == "shards":
        return shards(labels, num_clients, shards_per_client=shards_per_client, seed=seed)
    if kind == "powerlaw":
        return powerlaw(labels, num_clients, exponent=exponent, seed=seed)
    raise ValueError(f"unknown partition {kind!r}; choose one of {PARTITIONS}")


def sizes(partition: Partition) -> np.ndarray:
    """Number of samples of each client, shape (K,)."""
    return np.array([len(p) for p in partition], dtype=np.int64)


def label_histograms(labels: ArrayLike, partition: Partition, num_classes: int | None = None) -> np.ndarray:
    """Per-client label counts, shape (K, num_classes); row k counts the labels of client k.

    Example:
        >>> label_histograms([0, 1, 1, 2], (np.array([0, 1]), np.array([2, 3])))
        array([[1, 1, 0],
               [0, 1, 1]])
    """
    y = _check_labels(labels)
    c = int(y.max()) + 1 if num_classes is None else num_classes
    return np.stack([np.bincount(y[p], minlength=c) for p in partition]) if partition else np.zeros((0, c), int)


@dataclasses.dataclass(frozen=True)
class FederatedDataset:
    """Per-client views of one dataset, padded and masked to a common length so clients can be vmapped.

    Attributes:
        x: float32 (N, D) images, shared by all clients (not copied per client).
        y: int32 (N,) labels.
        index: int32 (K, L) table; row k lists client k's sample indices, then padding (index 0).
            L is the largest client size rounded up to a multiple of ``pad_multiple``.
        mask: bool (K, L); True where ``index`` is a real sample.
        sizes: int32 (K,), the number of real samples per client (the FedAvg weights).
    """

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    mask: np.ndarray
    sizes: np.ndarray

    @property
    def num_clients(self) -> int:
        """Number of clients K."""
        return int(self.index.shape[0])

    def client(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Client k's unpadded (x, y) arrays."""
        if not 0 <= k < self.num_clients:
            raise ValueError(f"client {k} out of range [0, {self.num_clients})")
        idx = self.index[k, : self.sizes[k]]
        return self.x[idx], self.y[idx]

    def padded(self, clients: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Materialised padded arrays (x (m, L, D), y (m, L), mask (m, L)) for the listed clients."""
        sel = np.asarray(clients, dtype=np.int64)
        idx = self.index[sel]
        return self.x[idx], self.y[idx], self.mask[sel]


def federate(x: ArrayLike, y: ArrayLike, partition: Partition, *, pad_multiple: int = 1) -> FederatedDataset:
    """Builds a `FederatedDataset` from arrays and a partition.

    Args:
        x: (N, D) features.
        y: (N,) integer labels.
        partition: Client index arrays (every index in [0, N)).
        pad_multiple: Round the padded length up to a multiple of this (e.g. the batch size).

    Raises:
        ValueError: Shapes disagree, an index is out of range, or the partition is empty.
    """
    xa, ya = np.asarray(x, dtype=np.float32), _check_labels(y)
    if xa.ndim != 2 or len(xa) != len(ya):
        raise ValueError(f"x must be (N, D) with N = len(y) = {len(ya)}, got shape {xa.shape}")
    if not partition:
        raise ValueError("partition has no clients")
    if pad_multiple < 1:
        raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
    n = sizes(partition)
    length = max(1, int(-(-n.max() // pad_multiple) * pad_multiple))
    index = np.zeros((len(partition), length), dtype=np.int32)
    mask = np.zeros((len(partition), length), dtype=bool)
    for k, p in enumerate(partition):
        p = np.asarray(p)
        if p.size and (p.min() < 0 or p.max() >= len(ya)):
            raise ValueError(f"client {k} has index out of range [0, {len(ya)}): {int(p.min())}..{int(p.max())}")
        index[k, : len(p)] = p
        mask[k, : len(p)] = True
    return FederatedDataset(xa, ya.astype(np.int32), index, mask, n.astype(np.int32))


def drift_window(fed: FederatedDataset, round_: int, *, window: float = 0.5, rate: float = 0.1,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Data drift over rounds: in round r each client sees a sliding window of its data, ordered by label.

    Client k's samples are ordered by a per-client random ranking of the labels (so its label mix changes along
    the row); in round r it holds the ``ceil(window * n_k)`` samples starting at position
    ``floor(r * rate * n_k) mod n_k`` (wrapping around). So the local distribution shifts by ``rate`` of the data
    per round and returns after ``1 / rate`` rounds -- the seed's "data change fast", self-correlated in time.

    Args:
        fed: The clients' data.
        round_: Round r >= 0.
        window: Fraction of its samples a client holds at a time, in (0, 1].
        rate: Fraction of its samples the window moves per round, >= 0.
        seed: Seeds the per-client label ranking.

    Returns:
        (index (K, L), sizes (K,)): rows and sizes for the round (same shapes and dtypes as ``fed``'s).

    Raises:
        ValueError: window not in (0, 1], rate < 0 or round_ < 0.

    Example:
        >>> fed = federate(np.zeros((8, 1)), np.array([0, 1, 0, 1, 0, 1, 0, 1]), (np.arange(8),))
        >>> [fed.y[drift_window(fed, r, window=0.5, rate=0.5)[0][0, :4]].tolist() for r in (0, 1, 2)]
        [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    """
    if not 0 < window <= 1 or not rate >= 0 or round_ < 0:
        raise ValueError(f"need 0 < window <= 1, rate >= 0, round >= 0; got {window}, {rate}, {round_}")
    k, length = fed.index.shape
    rank = np.random.default_rng([seed, 7]).random((k, int(fed.y.max()) + 1))
    key = np.where(fed.mask, np.take_along_axis(rank, fed.y[fed.index].astype(np.int64), axis=1), 2.0)
    ordered = np.take_along_axis(fed.index, np.argsort(key, axis=1, kind="stable"), axis=1)
    n = fed.sizes.astype(np.int64)
    size = np.ceil(window * n).astype(np.int64)
    start = np.floor(round_ * rate * n).astype(np.int64) % np.maximum(n, 1)
    pos = (start[:, None] + np.arange(length)[None, :]) % np.maximum(n, 1)[:, None]
    index = np.where(np.arange(length)[None, :] < size[:, None], np.take_along_axis(ordered, pos, axis=1), 0)
    return index.astype(fed.index.dtype), size.astype(fed.sizes.dtype)
