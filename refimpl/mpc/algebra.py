"""The fixed-point algebra on shares, written once over a handful of protocol primitives.

:class:`TensorAlgebra` gives a shared tensor real-number semantics from its :class:`~refimpl.encoding.FixedPoint`
(``x + 2``, ``x * 0.5``, ``x / 3``), the tensor operations of NumPy (reductions, ``@`` with batches and
broadcasting, ``.T``, reshape, indexing, concatenation), exact comparisons and selection, and the non-linear
functions of :mod:`refimpl.mpc.functions`. Two classes implement its primitives: the stacked
:class:`refimpl.mpc.StackedTensor` (every party's share in one array, a :class:`~refimpl.mpc.Dealer` and a
:class:`~refimpl.mpc.Channel`) and the pointer-world :class:`refimpl.workers.SharedTensor` (one share per worker).

Encodings. A tensor with ``encoding=None`` holds ring integers; with a ``FixedPoint`` it holds reals scaled by
``S = base**frac_bits``. A product of two encoded values is divided by ``S`` with the dealer-assisted
:func:`~refimpl.mpc.divide` (any base, one round, result within one unit in the last place); a product of an
encoded value and an integer one (e.g. a 0/1 comparison result) needs no division and is exact. Before any value
is computed, :func:`check_product_headroom` refuses encodings whose products cannot fit the ring.

Comparisons (``<, <=, >, >=, ==, !=``), :meth:`~TensorAlgebra.drelu` and :meth:`~TensorAlgebra.sign` return
exact integer sharings (``encoding=None``) of 0/1 (or +-1); they cost one sign-bit extraction (CrypTen's A2B
adder, :mod:`refimpl.mpc.comparison`): ``1 + ceil(log2(l - 1))`` AND rounds plus one B2A round (plus
carry-save rounds for ``n > 2``), and they are exact for every pair whose difference fits the ring's signed range.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.errors import RingMismatchError, ShapeMismatchError
from refimpl.mpc.dealer import broadcast_shape, matmul_shape
from refimpl.mpc.headroom import MIN_PRODUCT_INTEGER_BITS, check_product_headroom
from refimpl.mpc.shape_ops import concatenate, encode_index
from refimpl.ring import Ring

__all__ = ["MIN_PRODUCT_INTEGER_BITS", "TensorAlgebra", "check_product_headroom"]

TA = TypeVar("TA", bound="TensorAlgebra")

def _is_int_like(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "iub" or arr.dtype == object


class TensorAlgebra:
    """The algebra of a shared tensor over protocol primitives (see the module docstring).

    Subclasses provide ``ring``, ``shape``, ``encoding`` and the primitives ``_local``, ``_concat``,
    ``_raw_linear`` (ring add/sub of two tensors, broadcasting), ``_raw_public`` (``add``, ``sub``, ``rsub``,
    ``neg``, ``mul``, ``matmul``, ``rmatmul`` with public ring elements), ``_raw_beaver`` (``mul``/``matmul``
    without division), ``_raw_divide`` (dealer-assisted division by a positive integer), ``_raw_msb`` (integer 0/1
    sharing of the sign bits), ``_with`` (same shares, another encoding), ``refresh`` and ``get``.
    """

    __array_ufunc__ = None  # ndarray <op> shared defers to the shared tensor's reflected operator
    __hash__ = None  # type: ignore[assignment]  # == is elementwise (a shared comparison), as NumPy's

    ring: Ring
    shape: tuple[int, ...]
    encoding: FixedPoint | None

    # ---------------------------------------------------------------- primitives (subclasses)
    def _local(self: TA, op: str, shape: tuple[int, ...], **kw: Any) -> TA:
        raise NotImplementedError

    def _concat(self: TA, others: Sequence[TA], axis: int, stack: bool, shape: tuple[int, ...]) -> TA:
        raise NotImplementedError

    def _raw_linear(self: TA, other: TA, fn: str, shape: tuple[int, ...]) -> TA:
        raise NotImplementedError

    def _raw_public(self: TA, value: np.ndarray, fn: str, shape: tuple[int, ...]) -> TA:
        raise NotImplementedError

    def _raw_beaver(self: TA, other: TA, kind: str, shape: tuple[int, ...]) -> TA:
        raise NotImplementedError

    def _raw_divide(self: TA, divisor: int) -> TA:
        raise NotImplementedError

    def _raw_msb(self: TA) -> TA:
        raise NotImplementedError

    def _with(self: TA, encoding: FixedPoint | None) -> TA:
        raise NotImplementedError

    def refresh(self: TA) -> TA:
        """The same value under fresh, independent shares (re-randomised)."""
        raise NotImplementedError

    def get(self) -> np.ndarray:
        raise NotImplementedError

    # ---------------------------------------------------------------- basics
    def __bool__(self) -> bool:
        raise TypeError("the truth value of a shared tensor is secret; reconstruct it first (.get())")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d shared tensor")
        return self.shape[0]

    @property
    def scale(self) -> int:
        """The encoding's scale (1 for integer tensors)."""
        return 1 if self.encoding is None else self.encoding.scale

    def _check_ring(self, other: TensorAlgebra) -> None:
        if other.ring != self.ring:
            raise RingMismatchError(f"cannot combine values shared over {self.ring!r} and {other.ring!r}")

    def _encode_public(self, value: Any) -> tuple[np.ndarray, bool]:
        """Ring elements of a public value and whether they carry the encoding's scale."""
        arr = np.asarray(value)
        if _is_int_like(arr):
            return self.ring.element(arr.astype(np.int64) if arr.dtype.kind == "b" else arr), False
        if self.encoding is None:
            raise TypeError(f"a real public value ({arr.dtype}) with an integer sharing: share with an encoding "
                            "(FixedPoint) for real arithmetic")
        return self.encoding.encode(arr), True

    def _align(self: TA, other: TA) -> tuple[TA, TA, FixedPoint | None]:
        """Bring two tensors to one encoding for addition (an integer tensor is scaled up exactly)."""
        self._check_ring(other)
        if self.encoding == other.encoding:
            return self, other, self.encoding
        if other.encoding is None and self.encoding is not None:
            return self, other._raw_public(self.ring.element(self.scale), "mul", other.shape)._with(
                self.encoding), self.encoding
        if self.encoding is None and other.encoding is not None:
            return self._raw_public(self.ring.element(other.scale), "mul", self.shape)._with(
                other.encoding), other, other.encoding
        raise ValueError(f"cannot combine encodings {self.encoding!r} and {other.encoding!r}")

    # ---------------------------------------------------------------- linear operations
    def _linear(self: TA, other: Any, fn: str) -> TA:
        if isinstance(other, TensorAlgebra):
            a, b, enc = self._align(other)  # type: ignore[arg-type]
            shape = broadcast_shape(a.shape, b.shape)
            if fn == "rsub":
                return b._raw_linear(a, "sub", shape)._with(enc)
            return a._raw_linear(b, fn, shape)._with(enc)
        arr = np.asarray(other)
        if self.encoding is not None:
            value = self.encoding.encode(arr)
        elif _is_int_like(arr):
            value = self.ring.element(arr.astype(np.int64) if arr.dtype.kind == "b" else arr)
        else:
            raise TypeError(f"adding a real public value ({arr.dtype}) to an integer sharing: share with an "
                            "encoding (FixedPoint) for real arithmetic")
        return self._raw_public(value, fn, broadcast_shape(self.shape, value.shape))

    def __add__(self: TA, other: Any) -> TA:
        return self._linear(other, "add")

    __radd__ = __add__

    def __sub__(self: TA, other: Any) -> TA:
        return self._linear(other, "sub")

    def __rsub__(self: TA, other: Any) -> TA:
        return self._linear(other, "rsub")

    def __neg__(self: TA) -> TA:
        return self._raw_public(self.ring.element(0), "neg", self.shape)

    def __pos__(self: TA) -> TA:
        return self

    # ---------------------------------------------------------------- products
    def _rescale(self: TA, both_encoded: bool, encoding: FixedPoint | None) -> TA:
        out = self._with(encoding)
        if both_encoded and encoding is not None:
            check_product_headroom(encoding)
            return out._raw_divide(encoding.scale)
        return out

    def _product(self: TA, other: Any, kind: str) -> TA:
        if isinstance(other, TensorAlgebra):
            self._check_ring(other)
            if self.encoding is not None and other.encoding is not None and self.encoding != other.encoding:
                raise ValueError(f"cannot combine encodings {self.encoding!r} and {other.encoding!r}")
            shape = broadcast_shape(self.shape, other.shape) if kind == "mul" else matmul_shape(self.shape,
                                                                                                other.shape)
            both = self.encoding is not None and other.encoding is not None
            enc = self.encoding if self.encoding is not None else other.encoding
            if both:
                check_product_headroom(enc)  # type: ignore[arg-type]
            return self._raw_beaver(other, kind, shape)._rescale(both, enc)  # type: ignore[arg-type]
        value, scaled = self._encode_public(other)
        if kind == "mul":
            shape = broadcast_shape(self.shape, value.shape)
        elif kind == "matmul":
            shape = matmul_shape(self.shape, value.shape)
        else:
            shape = matmul_shape(value.shape, self.shape)
        if scaled:
            check_product_headroom(self.encoding)  # type: ignore[arg-type]
        return self._raw_public(value, kind, shape)._rescale(scaled, self.encoding)

    def __mul__(self: TA, other: Any) -> TA:
        return self._product(other, "mul")

    __rmul__ = __mul__

    def __matmul__(self: TA, other: Any) -> TA:
        return self._product(other, "matmul")

    def __rmatmul__(self: TA, other: Any) -> TA:
        return self._product(other, "rmatmul")

    def dot(self: TA, other: Any) -> TA:
        """The 1-D inner product (``@`` of two vectors): one Beaver round (+ one division when encoded)."""
        if self.ndim != 1 or np.ndim(other.shape if isinstance(other, TensorAlgebra) else other) != 1 and not (
                isinstance(other, TensorAlgebra) and other.ndim == 1):
            raise ShapeMismatchError(f"dot takes two 1-d operands, got {self.shape} and "
                                     f"{other.shape if isinstance(other, TensorAlgebra) else np.shape(other)}")
        return self @ other

    def square(self: TA) -> TA:
        """``x * x``."""
        return self * self

    def divide_exact(self: TA, divisor: int) -> TA:
        """Division by a positive public integer: ``floor(v / d)`` or one more in units of the encoding (one
        round, dealer-assisted; any encoding, any ``n``)."""
        return self._raw_divide(int(divisor))

    def __truediv__(self: TA, other: Any) -> TA:
        """``x / d``: a public integer divides exactly to within one unit in the last place (one round); a public
        real multiplies by its encoded reciprocal (error ``<= |x| * resolution / (2 |d|)`` + 1 ulp); a shared
        divisor goes through :meth:`reciprocal` (its bound and input range)."""
        if isinstance(other, TensorAlgebra):
            return self * other.reciprocal()
        arr = np.asarray(other)
        if arr.ndim == 0 and (arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and float(arr).is_integer())):
            d = int(arr)
            if d == 0:
                raise ZeroDivisionError("division of a shared tensor by zero")
            if abs(d) == 1:
                return self if d == 1 else -self
            out = self._raw_divide(abs(d))
            return out if d > 0 else -out
        if self.encoding is None:
            raise TypeError("dividing an integer sharing by a non-integer needs an encoding (FixedPoint)")
        if np.any(arr == 0):
            raise ZeroDivisionError("division of a shared tensor by zero")
        return self * (1.0 / arr.astype(np.float64))

    # ---------------------------------------------------------------- shapes
    @property
    def T(self: TA) -> TA:  # noqa: N802 - NumPy's name
        return self.transpose()

    def transpose(self: TA, *axes: Any) -> TA:
        """Permute the axes (reversed by default), as ``ndarray.transpose``; local."""
        ax = None if not axes else list(axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)
        order = list(range(self.ndim - 1, -1, -1)) if ax is None else [int(a) % max(self.ndim, 1) for a in ax]
        if sorted(order) != list(range(self.ndim)):
            raise ValueError(f"axes {ax} are not a permutation of the {self.ndim} axes of {self.shape}")
        shape = tuple(self.shape[a] for a in order)
        return self._local("transpose", shape, axes=ax)

    def reshape(self: TA, *shape: Any) -> TA:
        """A new shape with the same elements (``-1`` allowed); local."""
        sh = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        dims = [int(d) for d in sh]
        if dims.count(-1) > 1 or any(d < -1 for d in dims):
            raise ShapeMismatchError(f"cannot reshape {self.shape} into {tuple(dims)}")
        if -1 in dims:
            known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
            if known == 0 or self.size % known:
                raise ShapeMismatchError(f"cannot reshape {self.shape} into {tuple(dims)}")
            dims[dims.index(-1)] = self.size // known
        new = tuple(dims)
        if int(np.prod(new, dtype=np.int64)) != self.size:
            raise ShapeMismatchError(f"cannot reshape {self.shape} into {new}")
        return self._local("reshape", new, to=list(new))

    def flatten(self: TA) -> TA:
        return self.reshape(-1)

    def __getitem__(self: TA, index: Any) -> TA:
        """Indexing and slicing as NumPy (ints, slices, None, ..., int/bool arrays); local."""
        shape = np.lib.stride_tricks.as_strided(np.empty(1, np.int8), self.shape, (0,) * self.ndim)[index].shape
        return self._local("getitem", tuple(shape), index=encode_index(index))

    def broadcast_to(self: TA, shape: Sequence[int]) -> TA:
        shape = tuple(int(d) for d in shape)
        if broadcast_shape(self.shape, shape) != shape:
            raise ShapeMismatchError(f"cannot broadcast {self.shape} to {shape}")
        return self._local("broadcast_to", shape, to=list(shape))

    def clone(self: TA) -> TA:
        """An independent copy of the shares (same value, same shares; see :meth:`refresh` for new ones)."""
        return self._local("copy", self.shape)

    def _axes(self, axis: Any) -> tuple[int, ...] | None:
        if axis is None:
            return None
        axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
        for a in axes:
            if not -self.ndim <= int(a) < self.ndim:
                raise ValueError(f"axis {a} out of range for shape {self.shape}")
        return tuple(int(a) % self.ndim for a in axes)

    def sum(self: TA, axis: Any = None, keepdims: bool = False) -> TA:
        """The sum over ``axis`` (all by default); local and exact (mod M)."""
        axes = self._axes(axis)
        dims = [(1 if keepdims else -1) if (axes is None or i in axes) else d for i, d in enumerate(self.shape)]
        shape = tuple(d for d in dims if d != -1)
        return self._local("sum", tuple(shape), axis=None if axes is None else list(axes), keepdims=keepdims)

    def mean(self: TA, axis: Any = None, keepdims: bool = False) -> TA:
        """The mean over ``axis``: the exact sum divided by the public count (one division round, error below
        one unit in the last place of the encoding)."""
        axes = self._axes(axis)
        count = self.size if axes is None else int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        total = self.sum(axis=axis, keepdims=keepdims)
        return total if count == 1 else total._raw_divide(count)

    # ---------------------------------------------------------------- comparisons and selection
    def _diff(self: TA, other: Any) -> TA:
        return self - other

    def _lt_zero(self: TA) -> TA:
        """Integer 0/1 sharing of ``self < 0``."""
        return self._raw_msb()

    def __lt__(self: TA, other: Any) -> TA:
        return self._diff(other)._lt_zero()

    def __gt__(self: TA, other: Any) -> TA:
        return (-self._diff(other))._lt_zero()

    def __le__(self: TA, other: Any) -> TA:
        return 1 - (-self._diff(other))._lt_zero()

    def __ge__(self: TA, other: Any) -> TA:
        return 1 - self._diff(other)._lt_zero()

    def __eq__(self: TA, other: Any) -> TA:  # type: ignore[override]
        d = self._diff(other)
        both = concatenate([d.reshape(-1), (-d).reshape(-1)])._lt_zero()
        size = d.size
        return (1 - both[:size] - both[size:]).reshape(d.shape)

    def __ne__(self: TA, other: Any) -> TA:  # type: ignore[override]
        return 1 - (self == other)

    def drelu(self: TA) -> TA:
        """The derivative of ReLU, ``[x >= 0]`` (``drelu(0) = 1``), as an exact integer 0/1 sharing."""
        return 1 - self._lt_zero()

    def relu(self: TA) -> TA:
        """``max(x, 0)``, exact: ``x * drelu(x)`` (one comparison + one Beaver round, no division)."""
        return self * self.drelu()

    def sign(self: TA) -> TA:
        """+1 for ``x >= 0``, -1 for ``x < 0`` (``sign(0) = +1``, as CrypTen), an exact integer sharing."""
        return 1 - 2 * self._lt_zero()

    def abs(self: TA) -> TA:
        """``|x|``, exact: ``x * sign(x)``."""
        return self * self.sign()

    __abs__ = abs

    def where(self: TA, a: Any, b: Any) -> TA:
        """``a`` where this 0/1 integer sharing is 1, else ``b``: ``b + self * (a - b)`` (one Beaver round)."""
        if self.encoding is not None:
            raise TypeError("where() takes an integer 0/1 condition (a comparison's result)")
        diff = a - b
        return b + (self * diff if isinstance(diff, TensorAlgebra) else diff * self)

    def _tree(self: TA, axis: int, with_index: bool) -> tuple[TA, TA | None]:
        """Pairwise tournament along ``axis`` (moved last): ``ceil(log2 k)`` levels of one comparison and one
        Beaver round each. With ``with_index`` a one-hot integer sharing of the (first) maximum rides along."""
        x = self._moveaxis_last(axis)
        k = x.shape[-1]
        onehot: TA | None = None
        if with_index:
            eye = np.eye(k, dtype=np.int64).reshape((1,) * (x.ndim - 1) + (k, k))
            onehot = x._zeros_like_int((*x.shape, k)) + np.broadcast_to(eye, (*x.shape, k))
        while x.shape[-1] > 1:
            m = x.shape[-1]
            half = m // 2
            left, right = x[..., 0 : 2 * half : 2], x[..., 1 : 2 * half : 2]
            take_left = left >= right  # ties keep the first
            if onehot is not None:
                ol, orr = onehot[..., 0 : 2 * half : 2, :], onehot[..., 1 : 2 * half : 2, :]
                # one Beaver round for the values and the one-hot vectors together
                both = concatenate([(left - right)._with(None).reshape(-1), (ol - orr).reshape(-1)])
                sel = concatenate([take_left.reshape(-1), take_left[..., None].broadcast_to(
                    ol.shape).reshape(-1)])
                prod = both * sel
                nv = int(np.prod(left.shape, dtype=np.int64))
                best = right + prod[:nv].reshape(left.shape)._with(left.encoding)
                best_oh = orr + prod[nv:].reshape(ol.shape)._with(None)
            else:
                best = right + take_left * (left - right)
            if m % 2:
                best = concatenate([best, x[..., m - 1 :]], axis=-1)
                if onehot is not None:
                    best_oh = concatenate([best_oh, onehot[..., m - 1 :, :]], axis=-2)
            x = best
            if onehot is not None:
                onehot = best_oh
        return x[..., 0], (onehot[..., 0, :] if onehot is not None else None)

    def _moveaxis_last(self: TA, axis: int) -> TA:
        axis = int(axis) % self.ndim
        if axis == self.ndim - 1:
            return self
        order = [a for a in range(self.ndim) if a != axis] + [axis]
        return self.transpose(order)

    def _zeros_like_int(self: TA, shape: tuple[int, ...]) -> TA:
        zero = self.reshape(-1)[:1]._with(None)
        zero = zero - zero  # an integer sharing of 0, no communication
        return zero.reshape(()).broadcast_to(shape)

    def max(self: TA, axis: Any = None, keepdims: bool = False) -> TA:
        """The maximum over ``axis`` (all elements when None) by a tree of comparisons: ``ceil(log2 k)`` levels,
        each one comparison and one Beaver round. Exact."""
        x = self.reshape(-1) if axis is None else self
        ax = -1 if axis is None else self._axes(axis)[0]  # type: ignore[index]
        out, _ = x._tree(ax, False)
        if keepdims:
            out = out.reshape(tuple(1 if (axis is None or i == ax % self.ndim) else d
                                    for i, d in enumerate(self.shape)))
        return out

    def min(self: TA, axis: Any = None, keepdims: bool = False) -> TA:
        """``-max(-x)``."""
        return -(-self).max(axis=axis, keepdims=keepdims)

    def argmax(self: TA, axis: Any = None, one_hot: bool = True) -> TA:
        """The position of the maximum along ``axis`` (all elements when None) as an exact one-hot integer
        sharing (ties: the first), by the same tree as :meth:`max` (CrypTen returns one-hot too). With
        ``one_hot=False`` the index itself (the one-hot vector dotted with ``0..k-1``, local)."""
        x = self.reshape(-1) if axis is None else self
        ax = -1 if axis is None else self._axes(axis)[0]  # type: ignore[index]
        _, onehot = x._tree(ax, True)
        assert onehot is not None
        if one_hot:
            return onehot
        return onehot @ np.arange(onehot.shape[-1], dtype=np.int64)

    # ---------------------------------------------------------------- non-linear functions
    def exp(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.exp(self)

    def log(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.log(self)

    def reciprocal(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.reciprocal(self)

    def sqrt(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.sqrt(self)

    def inv_sqrt(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.inv_sqrt(self)

    def sigmoid(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.sigmoid(self)

    def tanh(self: TA) -> TA:
        from refimpl.mpc import functions
        return functions.tanh(self)

    def softmax(self: TA, axis: int = -1) -> TA:
        from refimpl.mpc import functions
        return functions.softmax(self, axis=axis)
