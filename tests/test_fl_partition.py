"""Tests of refimpl.fl.partition: every sample assigned exactly once, skew properties, padded federated data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.fl import partition


@st.composite
def labels_and_clients(draw, min_per_client: int = 1):
    n_classes = draw(st.integers(1, 10))
    labels = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=2, max_size=300)), dtype=np.int64)
    k = draw(st.integers(1, max(1, len(labels) // max(1, min_per_client))))
    return labels, k


def assert_exact_cover(parts, n):
    allidx = np.concatenate(parts)
    assert len(allidx) == n
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


@given(labels_and_clients(), st.integers(0, 2**32 - 1))
def test_iid_assigns_every_sample_once(lk, seed):
    labels, k = lk
    parts = partition.iid(labels, k, seed=seed)
    assert len(parts) == k
    assert_exact_cover(parts, len(labels))
    s = partition.sizes(parts)
    assert s.max() - s.min() <= 1


@given(labels_and_clients(min_per_client=2), st.integers(1, 3), st.integers(0, 1000))
def test_shards_assign_every_sample_once(lk, spc, seed):
    labels, k = lk
    if k * spc > len(labels):
        with pytest.raises(ValueError, match="shards"):
            partition.shards(labels, k, shards_per_client=spc, seed=seed)
        return
    parts = partition.shards(labels, k, shards_per_client=spc, seed=seed)
    assert len(parts) == k
    assert_exact_cover(parts, len(labels))


@given(labels_and_clients(), st.floats(0.05, 100.0), st.integers(0, 1000))
def test_dirichlet_assigns_every_sample_once(lk, alpha, seed):
    labels, k = lk
    try:
        parts = partition.dirichlet(labels, k, alpha, seed=seed, min_size=0)
    except ValueError:
        pytest.fail("min_size=0 must always succeed")
    assert len(parts) == k
    assert_exact_cover(parts, len(labels))


def test_pathological_shards_give_at_most_two_labels():
    labels = np.repeat(np.arange(10), 600)  # like Fashion-MNIST at 1/10 scale
    parts = partition.shards(labels, 10, seed=3)
    hist = partition.label_histograms(labels, parts, 10)
    assert ((hist > 0).sum(axis=1) <= 2).all() and (hist.sum(axis=1) == 600).all()
    assert set(np.unique(hist)) <= {0, 300, 600}


def test_dirichlet_skew_and_min_size():
    labels = np.repeat(np.arange(10), 100)
    skewed = partition.label_histograms(labels, partition.dirichlet(labels, 10, 0.05, seed=0), 10)
    flat = partition.label_histograms(labels, partition.dirichlet(labels, 10, 1000.0, seed=0), 10)
    assert (skewed > 0).sum(axis=1).mean() < (flat > 0).sum(axis=1).mean()
    assert (flat > 0).all()
    parts = partition.dirichlet(labels, 20, 0.1, seed=1, min_size=10)
    assert partition.sizes(parts).min() >= 10
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        partition.dirichlet(labels, 5, 0.0)
    with pytest.raises(ValueError, match="in 3 tries"):
        partition.dirichlet(labels, 100, 0.001, min_size=10, max_tries=3)


def test_seeded():
    labels = np.arange(100) % 7
    for kind in partition.PARTITIONS:
        a = partition.make_partition(kind, labels, 5, seed=11)
        b = partition.make_partition(kind, labels, 5, seed=11)
        c = partition.make_partition(kind, labels, 5, seed=12)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_histograms_and_sizes():
    labels = np.array([0, 1, 1, 2, 2, 2])
    parts = (np.array([0, 3]), np.array([1, 2, 4, 5]))
    np.testing.assert_array_equal(partition.sizes(parts), [2, 4])
    np.testing.assert_array_equal(partition.label_histograms(labels, parts, 4), [[1, 0, 1, 0], [0, 2, 2, 0]])


@pytest.mark.parametrize("call, exc, message", [
    (lambda: partition.iid(np.zeros(5, int), 0), ValueError, "num_clients must be >= 1, got 0"),
    (lambda: partition.iid(np.zeros(5, int), 6), ValueError, "num_clients=6 exceeds"),
    (lambda: partition.iid(np.zeros(5), 2), TypeError, "integer"),
    (lambda: partition.iid(np.zeros(5, int), 2.0), TypeError, "num_clients must be an int, got float"),
    (lambda: partition.iid(np.array([0, -1]), 1), ValueError, "non-negative, got -1"),
    (lambda: partition.make_partition("random", np.zeros(5, int), 2), ValueError, "unknown partition 'random'"),
])
def test_bad_arguments(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


@given(labels_and_clients(), st.integers(1, 7))
def test_federated_dataset_padding_and_mask(lk, pad_multiple):
    labels, k = lk
    x = np.arange(len(labels) * 3, dtype=np.float32).reshape(-1, 3)
    parts = partition.iid(labels, k, seed=0)
    fed = partition.federate(x, labels, parts, pad_multiple=pad_multiple)
    assert fed.num_clients == k and fed.index.shape[1] % pad_multiple == 0
    np.testing.assert_array_equal(fed.sizes, partition.sizes(parts))
    np.testing.assert_array_equal(fed.mask.sum(axis=1), fed.sizes)
    for c, p in enumerate(parts):
        np.testing.assert_array_equal(fed.index[c][fed.mask[c]], p)
        xc, yc = fed.client(c)
        np.testing.assert_array_equal(xc, x[p])
        np.testing.assert_array_equal(yc, labels[p])
    xs, _, ms = fed.padded([0])
    assert xs.shape == (1, fed.index.shape[1], 3) and ms.dtype == bool
    np.testing.assert_array_equal(xs[0][ms[0]], x[parts[0]])


def test_federate_errors():
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"got shape \(3, 2\)"):
        partition.federate(x[:3], y, (np.arange(3),))
    with pytest.raises(ValueError, match="client 0 has index out of range"):
        partition.federate(x, y, (np.array([0, 4]),))
    with pytest.raises(ValueError, match="client 5 out of range"):
        partition.federate(x, y, (np.arange(4),)).client(5)
