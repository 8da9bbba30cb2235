"""Share and reconstruct a whole pytree of arrays (a model's parameters) in one call, on NumPy or JAX.

A *tree* is nested dicts, lists, tuples and named tuples (and, once JAX is imported, any JAX pytree: flax/equinox
containers, custom nodes) whose leaves are arrays or numbers. :func:`share_tree` shares every leaf with its own
key, ``derive_key(key, "refimpl/share_tree", *path)``, where ``path`` names the leaf: dict keys, sequence indices,
attribute names (``{"dense": [w, b]}`` gives ``("dense", 0)`` and ``("dense", 1)``). Distinct leaves have distinct
paths, so no stream is used twice, and the same tree and key give the same shares on both backends, bit for bit
(with ``prg="chacha20"``), since the key depends on the path only, not on the flattening order or the backend.

Without JAX imported, trees are walked here (dict, list, tuple, namedtuple, None); with JAX imported,
``jax.tree_util`` walks them, with the same paths for those containers. Leaves that are JAX arrays take the JAX path
(jit- and vmap-able), others NumPy's.

Example:
    >>> import numpy as np
    >>> from refimpl import FixedPoint, Z2_32
    >>> params = {"dense": [np.array([[0.5, -1.25]]), np.array([2.0])], "scale": np.float64(0.75)}
    >>> fp = FixedPoint(ring=Z2_32)
    >>> shared = share_tree(params, 3, key=bytes(16), encoding=fp)
    >>> shared["dense"][0]
    Shares(ring=Z2_32, n=3, shape=(1, 2))
    >>> opened = reconstruct_tree(shared, encoding=fp)
    >>> opened["dense"][0].tolist(), float(opened["scale"])
    ([[0.5, -1.25]], 0.75)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from refimpl._checks import check_key, check_party_count
from refimpl.backend import dispatch
from refimpl.encoding import FixedPoint
from refimpl.errors import KeyFormatError, RingMismatchError
from refimpl.prg import check_cipher, derive_key, fresh_key
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.additive import CompressedShares, Shares, check_ring, reconstruct
from refimpl.sharing.api import share

__all__ = ["reconstruct_tree", "share_tree"]

def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _dict_label(k: Any) -> str | int:
    if isinstance(k, bool) or not isinstance(k, (str, int)):
        raise TypeError(f"share_tree needs dict keys that are str or int (they name the leaf's key), got {k!r}")
    return k


def _flatten_builtin(tree: Any, is_leaf: Callable[[Any], bool]) -> tuple[list[tuple[tuple, Any]],
                                                                         Callable[[list[Any]], Any]]:
    """(path, leaf) pairs and a rebuild function, for dicts, lists, tuples, namedtuples and None."""
    if tree is None:
        return [], lambda leaves: None
    if not is_leaf(tree):
        if isinstance(tree, dict):
            keys = sorted(tree, key=lambda k: (type(k).__name__, k))
            labels = [_dict_label(k) for k in keys]
            parts = [_flatten_builtin(tree[k], is_leaf) for k in keys]

            def rebuild_dict(leaves: list[Any]) -> Any:
                out, pos = {}, 0
                for k, (items, sub) in zip(keys, parts):
                    out[k] = sub(leaves[pos: pos + len(items)])
                    pos += len(items)
                return type(tree)(out) if type(tree) is not dict else out

            return [((lab, *p), v) for lab, (items, _) in zip(labels, parts) for p, v in items], rebuild_dict
        if isinstance(tree, (list, tuple)):
            named = _is_namedtuple(tree)
            cls: Any = type(tree)
            labels = list(cls._fields) if named else list(range(len(tree)))
            parts = [_flatten_builtin(v, is_leaf) for v in tree]

            def rebuild_seq(leaves: list[Any]) -> Any:
                vals, pos = [], 0
                for items, sub in parts:
                    vals.append(sub(leaves[pos: pos + len(items)]))
                    pos += len(items)
                return type(tree)(*vals) if named else type(tree)(vals)

            return [((lab, *p), v) for lab, (items, _) in zip(labels, parts) for p, v in items], rebuild_seq
    return [((), tree)], lambda leaves: leaves[0]


def _jax_label(entry: Any) -> str | int:
    import jax

    tu = jax.tree_util
    if isinstance(entry, tu.DictKey):
        return _dict_label(entry.key)
    if isinstance(entry, tu.SequenceKey):
        return int(entry.idx)
    if isinstance(entry, tu.GetAttrKey):
        return str(entry.name)
    if isinstance(entry, tu.FlattenedIndexKey):
        return int(entry.key)
    return repr(entry)


def _flatten(tree: Any, is_leaf: Callable[[Any], bool]) -> tuple[list[tuple[tuple, Any]],
                                                                 Callable[[list[Any]], Any]]:
    if not dispatch.jax_loaded():
        return _flatten_builtin(tree, is_leaf)
    import jax

    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    items = [(tuple(_jax_label(e) for e in path), leaf) for path, leaf in pairs]
    return items, lambda leaves: jax.tree_util.tree_unflatten(treedef, leaves)


def share_tree(tree: Any, n: int, *, ring: Ring | None = None, key: bytes | None = None, prg: str = "aes128-ctr",
               encoding: FixedPoint | None = None) -> Any:
    """Share every leaf of ``tree`` among ``n`` parties; returns the same tree with :class:`Shares` leaves.

    Args:
        tree: nested dicts / lists / tuples (any JAX pytree once JAX is imported) of arrays or numbers; leaves
            are ring elements (integers), or reals when ``encoding`` is given.
        n: number of parties, at least 2.
        ring: the ring (default ``encoding.ring``, else Z_2^64).
        key: 16 or 32 bytes, the master key of this sharing; leaf ``path`` is shared under
            ``derive_key(key, "refimpl/share_tree", *path)``. None draws a fresh key (not allowed under ``jax.jit``).
        prg: ``"aes128-ctr"`` or ``"chacha20"`` (use ``"chacha20"`` for JAX leaves under ``jax.jit``).
        encoding: a :class:`FixedPoint` that encodes each leaf first.

    Returns:
        The tree of :class:`Shares` (one per leaf, jax-backed for JAX leaves).

    Raises:
        RingMismatchError: ``ring`` differs from ``encoding.ring``.
        TypeError: dict keys that are not str or int; the errors of :func:`share` and :meth:`FixedPoint.encode`.
    """
    if encoding is not None and not isinstance(encoding, FixedPoint):
        raise TypeError(f"encoding must be a FixedPoint, got {encoding!r}")
    if ring is None:
        ring = encoding.ring if encoding is not None else Z2_64
    ring = check_ring(ring)
    if encoding is not None and encoding.ring != ring:
        raise RingMismatchError(f"ring {ring!r} differs from the encoding's ring {encoding.ring!r}")
    n = check_party_count(n)
    prg = check_cipher(prg)
    items, rebuild = _flatten(tree, lambda x: False)
    if key is None:
        if any(dispatch.is_tracer(leaf) for _, leaf in items):
            raise KeyFormatError("under jax.jit / jax.vmap pass an explicit key=...: a fresh key drawn while tracing "
                                 "would be baked into the compiled function and reused by every call")
        key = fresh_key(16)
    key = check_key(key)
    out = []
    for path, leaf in items:
        value = encoding.encode(leaf) if encoding is not None else leaf
        leaf_key = derive_key(key, "refimpl/share_tree", *path, length=16)
        out.append(share(value, n, ring=ring, key=leaf_key, prg=prg))
    return rebuild(out)


def reconstruct_tree(tree: Any, *, encoding: FixedPoint | None = None) -> Any:
    """Open every sharing in a tree made by :func:`share_tree` (decoding with ``encoding`` if given).

    Raises:
        TypeError: a leaf that is not a sharing.
        RingMismatchError: a sharing whose ring is not ``encoding.ring``.
    """
    def is_sharing(x: Any) -> bool:
        return isinstance(x, (Shares, CompressedShares))

    items, rebuild = _flatten(tree, is_sharing)
    out = []
    for path, leaf in items:
        if not is_sharing(leaf):
            raise TypeError(f"reconstruct_tree needs Shares at every leaf; the leaf at {path} is "
                            f"{type(leaf).__name__}")
        value = reconstruct(leaf)
        if encoding is not None:
            if encoding.ring != leaf.ring:
                raise RingMismatchError(f"the sharing at {path} is over {leaf.ring!r}, the encoding over "
                                        f"{encoding.ring!r}")
            value = encoding.decode(value)
        out.append(value)
    return rebuild(out)
