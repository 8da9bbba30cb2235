"""Tests of refimpl.fl.model: the JAX MLP against the hand-written NumPy reference."""

from __future__ import annotations

import pytest

pytest.importorskip("jax", reason="jax is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("optax", reason="optax is not installed (pip install 'refimpl[fl]')")

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.fl import model


def test_named_models():
    assert model.num_params(model.init("2nn")) == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10 == 199210
    assert model.num_params(model.init("small")) == 101770
    p = model.init("small", seed=5)
    assert all(v.dtype == np.float32 for v in p.values())
    assert np.abs(p["w0"]).max() <= 1 / np.sqrt(784)
    np.testing.assert_array_equal(p["w1"], model.init("small", seed=5)["w1"])
    assert not np.array_equal(p["w1"], model.init("small", seed=6)["w1"])


@pytest.mark.parametrize("spec, message", [("3nn", "unknown model '3nn'"), ((784,), "got \\(784,\\)"),
                                           ((4, 0, 2), "got \\(4, 0, 2\\)")])
def test_bad_model_spec(spec, message):
    with pytest.raises(ValueError, match=message):
        model.init(spec)


def test_bad_param_keys():
    with pytest.raises(ValueError, match="keys w0, b0"):
        model.apply({"w0": jnp.ones((2, 2))}, jnp.ones((1, 2)))


_value_and_grad = jax.jit(jax.value_and_grad(model.loss))  # one compilation per shape, not one per operation


@settings(max_examples=8)
@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=4), n=st.integers(1, 9),
       seed=st.integers(0, 10_000), masked=st.booleans())
def test_gradients_match_numpy_reference(sizes, n, seed, masked):
    rng = np.random.default_rng(seed)
    params = model.init(sizes, seed=seed)
    x = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n).astype(np.int32)
    mask = rng.random(n) < 0.6 if masked else None
    ref_loss, ref_grads = model.numpy_loss_and_grad(params, x, y, mask)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    jloss, jgrads = _value_and_grad(jp, jnp.asarray(x), jnp.asarray(y), None if mask is None else jnp.asarray(mask))
    np.testing.assert_allclose(float(jloss), ref_loss, rtol=1e-5, atol=1e-6)
    assert set(jgrads) == set(ref_grads)
    for k in ref_grads:
        np.testing.assert_allclose(np.asarray(jgrads[k]), ref_grads[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_gradients_match_on_the_2nn():
    rng = np.random.default_rng(0)
    params = model.init("2nn", seed=0)
    x, y = rng.random((32, 784)).astype(np.float32), rng.integers(0, 10, 32)
    ref_loss, ref_grads = model.numpy_loss_and_grad(params, x, y)
    jloss, jgrads = _value_and_grad({k: jnp.asarray(v) for k, v in params.items()}, x, y)
    np.testing.assert_allclose(float(jloss), ref_loss, rtol=1e-5)
    for k in ref_grads:
        np.testing.assert_allclose(np.asarray(jgrads[k]), ref_grads[k], rtol=1e-3, atol=1e-6, err_msg=k)


def test_numpy_reference_against_finite_differences():
    rng = np.random.default_rng(1)
    params = {k: v.astype(np.float64) for k, v in model.init((3, 4, 2), seed=1).items()}
    x, y = rng.normal(size=(5, 3)), rng.integers(0, 2, 5)
    _, grads = model.numpy_loss_and_grad(params, x, y)
    eps = 1e-6
    for k, value in params.items():
        flat = value.reshape(-1)
        for i in range(flat.size):
            plus = {**params, k: flat.copy()}
            minus = {**params, k: flat.copy()}
            plus[k][i] += eps
            minus[k][i] -= eps
            plus[k], minus[k] = plus[k].reshape(value.shape), minus[k].reshape(value.shape)
            fd = (model.numpy_loss_and_grad(plus, x, y)[0] - model.numpy_loss_and_grad(minus, x, y)[0]) / (2 * eps)
            assert abs(fd - grads[k].reshape(-1)[i]) < 1e-6, (k, i)


def test_masked_loss_ignores_masked_examples_and_handles_empty_mask():
    params = {k: jnp.asarray(v) for k, v in model.init((4, 3), seed=0).items()}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)), dtype=jnp.float32)
    y = jnp.array([0, 1, 2, 0])
    mask = jnp.array([True, False, True, False])
    np.testing.assert_allclose(model.loss(params, x, y, mask), model.loss(params, x[::2], y[::2]), rtol=1e-6)
    assert float(model.loss(params, x, y, jnp.zeros(4, bool))) == 0.0


def test_accuracy():
    params = {"w0": jnp.eye(3), "b0": jnp.zeros(3)}
    x = jnp.eye(3)
    assert float(model.accuracy(params, x, jnp.array([0, 1, 2]))) == 1.0
    assert float(model.accuracy(params, x, jnp.array([0, 2, 2]))) == pytest.approx(2 / 3)
