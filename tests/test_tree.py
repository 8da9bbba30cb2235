"""share_tree / reconstruct_tree: whole pytrees (model parameters) in one call, per-leaf keys by path, on NumPy
without JAX and on JAX (identical shares with prg="chacha20", jit-able)."""

import collections
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import (
    Z2_32,
    Z2_64,
    FixedPoint,
    KeyFormatError,
    RingMismatchError,
    Shares,
    derive_key,
    reconstruct,
    reconstruct_tree,
    share,
    share_tree,
)

KEY = bytes(range(16))
Pair = collections.namedtuple("Pair", "w b")


def params(lib=np):
    return {"dense": [lib.asarray([[1, -2], [3, 4]], dtype=lib.int32), lib.asarray([5, -6], dtype=lib.int32)],
            "head": Pair(lib.asarray([7, 8], dtype=lib.int32), lib.asarray([-9, 10], dtype=lib.int32)),
            "extra": (lib.asarray([11, 12], dtype=lib.int32),), "none": None}


def leaves(tree):
    out = []

    def walk(t):
        if isinstance(t, dict):
            for k in sorted(t):
                walk(t[k])
        elif isinstance(t, (list, tuple)):
            for v in t:
                walk(v)
        elif t is not None:
            out.append(t)

    walk(tree)
    return out


def test_numpy_round_trip_and_structure():
    shared = share_tree(params(), 3, ring=Z2_32, key=KEY, prg="chacha20")
    assert isinstance(shared["head"], Pair) and isinstance(shared["extra"], tuple) and shared["none"] is None
    assert all(isinstance(s, Shares) and s.n == 3 for s in leaves(shared))
    opened = reconstruct_tree(shared)
    for got, want in zip(leaves(opened), leaves(params())):
        assert np.array_equal(Z2_32.lift(got), want)


def test_leaf_keys_are_derived_from_the_path():
    shared = share_tree(params(), 3, ring=Z2_32, key=KEY, prg="chacha20")
    expected = share(params()["dense"][1], 3, ring=Z2_32, key=derive_key(KEY, "refimpl/share_tree", "dense", 1),
                     prg="chacha20")
    assert np.array_equal(shared["dense"][1].data, expected.data)
    head_b = share(params()["head"].b, 3, ring=Z2_32, key=derive_key(KEY, "refimpl/share_tree", "head", "b"),
                   prg="chacha20")
    assert np.array_equal(shared["head"].b.data, head_b.data)
    # no two leaves share a stream: their masks differ everywhere it matters
    masks = [s.data[1].tobytes()[:8] for s in leaves(shared)]
    assert len(set(masks)) == len(masks)


@settings(max_examples=20)
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
                       min_size=1, max_size=4))
def test_round_trip_any_dict_of_lists(tree):
    tree = {k: np.array(v, dtype=np.int64) for k, v in tree.items()}
    shared = share_tree(tree, 2, key=KEY)
    opened = reconstruct_tree(shared)
    assert opened.keys() == tree.keys()
    for k in tree:
        assert np.array_equal(Z2_64.lift(opened[k]), tree[k])


def test_encoding_and_errors():
    fp = FixedPoint(ring=Z2_32)
    tree = {"w": np.array([0.5, -1.25]), "b": [np.float64(3.0)]}
    opened = reconstruct_tree(share_tree(tree, 2, key=KEY, encoding=fp), encoding=fp)
    assert opened["w"].tolist() == [0.5, -1.25] and opened["b"][0] == 3.0
    with pytest.raises(RingMismatchError):
        share_tree(tree, 2, ring=Z2_64, key=KEY, encoding=fp)
    with pytest.raises(RingMismatchError):
        reconstruct_tree(share_tree({"a": np.arange(2)}, 2, key=KEY), encoding=fp)
    with pytest.raises(TypeError, match="dict keys"):
        share_tree({(1, 2): np.arange(2)}, 2, key=KEY)
    with pytest.raises(TypeError, match="Shares at every leaf"):
        reconstruct_tree({"a": np.arange(2)})
    fresh = share_tree({"a": np.arange(3)}, 2)  # fresh key from the OS
    assert np.array_equal(reconstruct_tree(fresh)["a"], np.arange(3))


def test_numpy_trees_never_import_jax():
    code = ("import sys, numpy as np, refimpl\n"
            "t = refimpl.share_tree({'w': [np.arange(3), (np.ones(2, np.int64),)]}, 3, key=bytes(16))\n"
            "refimpl.reconstruct_tree(t)\n"
            "assert 'jax' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------- JAX
@pytest.fixture
def jax_strict():
    jax = pytest.importorskip("jax", reason="the JAX tree tests need jax (pip install -e '.[jax]')")
    with jax.numpy_dtype_promotion("strict"), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        yield jax


def test_jax_tree_identical_to_numpy_eager_and_jit(jax_strict):
    jax = jax_strict
    import jax.numpy as jnp

    ref = share_tree(params(), 3, ring=Z2_32, key=KEY, prg="chacha20")
    eager = share_tree(params(jnp), 3, ring=Z2_32, key=KEY, prg="chacha20")
    jitted = jax.jit(lambda t: share_tree(t, 3, ring=Z2_32, key=KEY, prg="chacha20"))(params(jnp))
    for a, b, c in zip(leaves(ref), leaves(eager), leaves(jitted)):
        assert isinstance(b.data, jax.Array) and isinstance(c.data, jax.Array)
        assert np.array_equal(a.data, np.asarray(b.data)) and np.array_equal(a.data, np.asarray(c.data))
    opened = jax.jit(reconstruct_tree)(jitted)
    for got, want in zip(leaves(opened), leaves(params())):
        assert np.array_equal(np.asarray(Z2_32.lift(got)), want)
    # a tree of Shares is a pytree: its leaves are the stacked share arrays
    assert len(jax.tree_util.tree_leaves(jitted)) == len(leaves(params()))


def test_jax_tree_fresh_key_refused_under_jit(jax_strict):
    jax = jax_strict
    import jax.numpy as jnp

    with pytest.raises(KeyFormatError, match="explicit key"):
        jax.jit(lambda t: share_tree(t, 2, ring=Z2_32, prg="chacha20"))({"a": jnp.arange(3, dtype=jnp.uint32)})


def test_secure_aggregation_of_trees(jax_strict):
    """The FL use: each client shares its update tree; servers add share-wise; the sum opens to the total."""
    import jax.numpy as jnp

    fp = FixedPoint(ring=Z2_32)
    updates = [{"w": jnp.asarray([0.25 * c, -1.0]), "b": [jnp.asarray([float(c)])]} for c in range(3)]
    shared = [share_tree(u, 2, key=bytes([c]) * 16, prg="chacha20", encoding=fp) for c, u in enumerate(updates)]
    total = {"w": shared[0]["w"] + shared[1]["w"] + shared[2]["w"],
             "b": [shared[0]["b"][0] + shared[1]["b"][0] + shared[2]["b"][0]]}
    opened = reconstruct_tree(total, encoding=fp)
    assert np.asarray(opened["w"]).tolist() == [0.75, -3.0] and np.asarray(opened["b"][0]).tolist() == [3.0]
    assert np.array_equal(np.asarray(reconstruct(total["w"])), np.asarray(fp.encode(jnp.asarray([0.75, -3.0]))))
