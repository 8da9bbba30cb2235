"""Personalization after training (refimpl.fl.population.personalize)."""

import numpy as np
import pytest

from refimpl.fl import model
from refimpl.fl.population.personalize import client_test_sets, personalize

X = np.eye(4, dtype=np.float32).repeat(10, axis=0) + np.float32(0.01)
Y = np.arange(4).repeat(10)
# two clients, each holding two labels only
INDEX = np.array([np.r_[0:10, 10:20], np.r_[20:30, 30:40]])
SIZES = np.array([20, 20])


def test_test_sets_follow_each_clients_label_mix():
    t = client_test_sets(INDEX, SIZES, Y, Y, 50, seed=1)
    assert set(Y[t[0]]) <= {0, 1} and set(Y[t[1]]) <= {2, 3}
    assert np.array_equal(t, client_test_sets(INDEX, SIZES, Y, Y, 50, seed=1))


def test_zero_steps_changes_nothing_and_fine_tuning_helps_skewed_clients():
    p = model.init((4, 4), seed=0)
    zero = personalize(p, X, Y, INDEX, SIZES, X, Y, steps=0, test_size=40)
    assert np.array_equal(zero.before, zero.after)
    acc = float(model.accuracy(p, X, Y))
    assert np.all(np.abs(zero.before - acc) <= 0.5 + 1e-6)
    tuned = personalize(p, X, Y, INDEX, SIZES, X, Y, steps=60, batch_size=5, learning_rate=1.0, test_size=40)
    assert np.array_equal(tuned.before, zero.before) and np.all(tuned.after >= 0.95)
    s = tuned.summary()
    assert s["mean_after"] >= s["mean_before"] and s["p10_after"] >= 0.95


def test_bad_arguments_are_refused():
    p = model.init((4, 4), seed=0)
    with pytest.raises(ValueError, match="steps"):
        personalize(p, X, Y, INDEX, SIZES, X, Y, steps=-1)
    with pytest.raises(ValueError, match="client 1"):
        personalize(p, X, Y, INDEX, np.array([20, 0]), X, Y, steps=1)
    with pytest.raises(ValueError, match="test_size"):
        client_test_sets(INDEX, SIZES, Y, Y, 0)
