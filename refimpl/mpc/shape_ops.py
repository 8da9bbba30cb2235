"""Party-local shape operations on shares (transpose, reshape, indexing, sums, broadcasting, concatenation).

Every one is linear, so each party applies it to its own share with no communication; :func:`local_op` runs on a
party's share (``lead = 0``) or on stacked shares (``lead = 1``), and :func:`encode_index` carries an indexing key
over the wire as plain data.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from refimpl.errors import ShapeMismatchError
from refimpl.ring import Ring

if TYPE_CHECKING:
    from refimpl.mpc.algebra import TensorAlgebra

__all__ = ["concatenate", "decode_index", "encode_index", "local_op", "stack"]

T = TypeVar("T", bound="TensorAlgebra")


def encode_index(index: Any) -> list[Any]:
    """An indexing key as plain data for the wire: ints, None, slices, Ellipsis, integer or boolean arrays."""
    items = index if isinstance(index, tuple) else (index,)
    out: list[Any] = []
    for it in items:
        if it is None:
            out.append(["none"])
        elif it is Ellipsis:
            out.append(["ellipsis"])
        elif isinstance(it, slice):
            out.append(["slice", it.start, it.stop, it.step])
        elif isinstance(it, numbers.Integral) and not isinstance(it, bool):
            out.append(["int", int(it)])
        else:
            arr = np.asarray(it)
            if arr.dtype.kind not in "iub":
                raise TypeError(f"index a shared tensor with ints, slices, None, ... or int/bool arrays, got {it!r}")
            out.append(["array", arr.astype(bool) if arr.dtype.kind == "b" else arr.astype(np.int64)])
    return out


def decode_index(items: Sequence[Any]) -> tuple[Any, ...]:
    """The inverse of :func:`encode_index`."""
    out: list[Any] = []
    for it in items:
        tag = it[0]
        if tag == "none":
            out.append(None)
        elif tag == "ellipsis":
            out.append(Ellipsis)
        elif tag == "slice":
            out.append(slice(*it[1:4]))
        elif tag == "int":
            out.append(int(it[1]))
        elif tag == "array":
            out.append(np.asarray(it[1]))
        else:
            raise ValueError(f"unknown index item {tag!r}")
    return tuple(out)


def local_op(ring: Ring, data: np.ndarray, op: str, kw: dict[str, Any], lead: int) -> np.ndarray:
    """A party-local shape operation on share data with ``lead`` leading party axes (1 stacked, 0 per party).

    ``op`` is ``transpose`` (``axes``), ``reshape`` (``to``), ``getitem`` (``index`` as :func:`encode_index`),
    ``sum`` (``axis``, ``keepdims``; mod M), ``broadcast_to`` (``to``) or ``copy``. Every one is linear, so each
    party applies it to its own share.
    """
    pre = data.shape[:lead]
    nd = data.ndim - lead
    if op == "transpose":
        axes = kw.get("axes")
        axes = list(range(nd))[::-1] if axes is None else [int(a) % max(nd, 1) for a in axes]
        return np.transpose(data, list(range(lead)) + [a + lead for a in axes]).copy()
    if op == "reshape":
        return data.reshape(tuple(pre) + tuple(kw["to"])).copy()
    if op == "getitem":
        index = decode_index(kw["index"])
        if lead == 0:
            return np.array(data[index], dtype=ring.dtype)
        # party by party: advanced indices next to a leading slice would move the party axis
        return np.stack([np.asarray(part[index]) for part in data]).astype(ring.dtype, copy=False)
    if op == "sum":
        axis = kw.get("axis")
        axes = tuple(range(lead, data.ndim)) if axis is None else tuple(int(a) % nd + lead for a in axis)
        if axes:
            rest = [a for a in range(data.ndim) if a not in axes]
            moved = np.transpose(data, list(axes) + rest)
            flat = moved.reshape(-1, *[data.shape[a] for a in rest])
            out = ring.sum(flat, axis=0)
        else:
            out = data.copy()
        if kw.get("keepdims"):
            out = np.expand_dims(out, axes)
        return np.asarray(out, dtype=ring.dtype)
    if op == "broadcast_to":
        to = tuple(kw["to"])
        data = data.reshape(tuple(pre) + (1,) * (len(to) - nd) + data.shape[lead:])
        return np.ascontiguousarray(np.broadcast_to(data, tuple(pre) + to))
    if op == "copy":
        return data.copy()
    raise ValueError(f"unknown local operation {op!r}")



def concatenate(items: Sequence[T], axis: int = 0) -> T:
    """Join shared tensors along an existing axis (same parties, ring and encoding); local."""
    items = list(items)
    if not items:
        raise ValueError("concatenate needs at least one shared tensor")
    first = items[0]
    for t in items[1:]:
        first._check_ring(t)
        if t.encoding != first.encoding:
            raise ValueError(f"cannot concatenate encodings {first.encoding!r} and {t.encoding!r}")
    shape = _concat_shape([t.shape for t in items], axis)
    return first._concat(items[1:], axis, False, tuple(shape))


def stack(items: Sequence[T], axis: int = 0) -> T:
    """Join shared tensors along a new axis; local."""
    items = list(items)
    if not items:
        raise ValueError("stack needs at least one shared tensor")
    first = items[0]
    for t in items[1:]:
        first._check_ring(t)
        if t.shape != first.shape:
            raise ShapeMismatchError(f"stack needs equal shapes, got {first.shape} and {t.shape}")
        if t.encoding != first.encoding:
            raise ValueError(f"cannot stack encodings {first.encoding!r} and {t.encoding!r}")
    nd = first.ndim + 1
    ax = int(axis) % nd
    shape = (*first.shape[:ax], len(items), *first.shape[ax:])
    return first._concat(items[1:], ax, True, shape)


def _concat_shape(shapes: list[tuple[int, ...]], axis: int) -> tuple[int, ...]:
    nd = len(shapes[0])
    if nd == 0:
        raise ShapeMismatchError("zero-dimensional shared tensors cannot be concatenated")
    ax = int(axis) % nd
    for s in shapes:
        if len(s) != nd or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != ax):
            raise ShapeMismatchError(f"cannot concatenate shapes {shapes} along axis {axis}")
    return (*shapes[0][:ax], sum(s[ax] for s in shapes), *shapes[0][ax + 1 :])
