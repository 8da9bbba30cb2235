"""Non-linear functions on fixed-point shares, after CrypTen (Knott et al. 2021), with documented bounds.

Every function takes any :class:`~refimpl.mpc.algebra.TensorAlgebra` (a stacked
:class:`~refimpl.mpc.StackedTensor` or a pointer-world :class:`~refimpl.workers.SharedTensor`) with a fixed-point
encoding, and is built from its products, public divisions and exact comparisons only.

Working precision. The functions run at a working encoding with at least ``WORKING_SCALE = 2**20`` (the same base,
more fractional digits: entering is a local multiplication, leaving is one division round), so a coarse encoding
such as PySyft's ``base=10, frac_bits=3`` gets results accurate to its own resolution. This needs the product
headroom of Z_2^64: in Z_2^32 the functions raise :class:`~refimpl.errors.ConfigurationError` before computing.

Bounds. ``|f_mpc(x) - f(x)| <= bound(x) + 1 / scale`` where ``1 / scale`` is one unit in the last place of the
caller's encoding (the final division) and ``bound`` is listed per function over its input range (also as data in
:data:`BOUNDS`). They combine the methods' analytic error (the limit approximation's relative error is about
``x^2 / 512``, and log, sigmoid and softmax inherit it through exp) with the fixed-point rounding observed over the
whole range, and each one is checked by a property test (tests/test_mpc_functions.py) for base 2 and base 10
encodings and n = 2, 3, 5. Outside the stated ranges the methods lose accuracy (exp's base ``1 + x/256`` turns
negative below -256; Newton's initial guesses stop converging).

==========  ===========================  ===============  =====================================  =============
function    method (CrypTen)             input range      bound (absolute, + one unit)           rounds (n=2)
==========  ===========================  ===============  =====================================  =============
exp         limit (1 + x/2^8)^(2^8)      [-16, 6]         ``e^x (x^2/500 + 2^-9) + 2^-14``       18
reciprocal  Newton-Raphson, 12 iter.,    0.05 <= |x|      ``2^-9 / |x| + 2^-14``                 76 (sign incl.)
            y0 = 3 e^(1/2 - x) + 0.003   <= 200
log         Householder order 8,         [0.05, 200]      ``ln(x)^2 / 400 + 2^-10``              139
            3 iterations
inv_sqrt    Newton-Raphson, 5 iter.      [0.05, 128]      ``2^-10 / sqrt(x) + 2^-14``            56
sqrt        x * inv_sqrt(x)              [0.05, 128]      ``2^-10 sqrt(x) + 2^-14``              58
sigmoid     1 / (1 + e^-|x|), reflected  [-16, 16]        ``2^-9``                               93 (n=2)
            by the exact sign            (saturates)
tanh        2 sigmoid(2x) - 1            [-8, 8]          ``2^-8``                               93 (n=2)
softmax     max-subtracted exp, sum,     any              ``2^-6`` per entry                     86 (10
            Newton reciprocal from a                                                             classes)
            linear start on [1, k]
==========  ===========================  ===============  =====================================  =============

References:
    B. Knott, S. Venkataraman, A. Hannun, S. Sengupta, M. Ibrahim, L. van der Maaten, "CrypTen: Secure
    Multi-Party Computation Meets Machine Learning", NeurIPS 2021 (Appendix C: exp by the limit approximation,
    reciprocal by Newton-Raphson, log by Householder iterations, inverse square root by Newton-Raphson).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.mpc.headroom import check_product_headroom

if TYPE_CHECKING:
    from refimpl.mpc.algebra import TensorAlgebra

__all__ = ["BOUNDS", "EXP_ITERATIONS", "WORKING_SCALE", "exp", "inv_sqrt", "log", "reciprocal", "sigmoid", "softmax",
           "softmax_newton_steps",
           "sqrt",
           "tanh", "working_encoding"]

T = TypeVar("T", bound="TensorAlgebra")

WORKING_SCALE = 2**20

#: ``name: (low, high, bound(x))``: each function's documented input range and absolute error bound (add one unit
#: in the last place of the caller's encoding). ``softmax``'s range is any input; its bound is per entry.
BOUNDS: dict[str, tuple[float, float, Callable[[np.ndarray], np.ndarray]]] = {
    "exp": (-16.0, 6.0, lambda x: np.exp(x) * (x**2 / 500 + 2**-9) + 2**-14),
    "reciprocal": (0.05, 200.0, lambda x: 2**-9 / np.abs(x) + 2**-14),
    "log": (0.05, 200.0, lambda x: np.log(x) ** 2 / 400 + 2**-10),
    "inv_sqrt": (0.05, 128.0, lambda x: 2**-10 / np.sqrt(x) + 2**-14),
    "sqrt": (0.05, 128.0, lambda x: 2**-10 * np.sqrt(x) + 2**-14),
    "sigmoid": (-16.0, 16.0, lambda x: np.full(np.shape(x), 2.0**-9)),
    "tanh": (-8.0, 8.0, lambda x: np.full(np.shape(x), 2.0**-8)),
    "softmax": (-np.inf, np.inf, lambda x: np.full(np.shape(x), 2.0**-6)),
}
EXP_ITERATIONS = 8
RECIPROCAL_ITERATIONS = 12
LOG_ITERATIONS = 3
LOG_ORDER = 8
INV_SQRT_ITERATIONS = 5


def working_encoding(encoding: FixedPoint | None) -> FixedPoint:
    """The encoding the functions compute in: ``encoding``'s base with enough digits for ``WORKING_SCALE``.

    Raises:
        TypeError: an integer (unencoded) tensor.
        ConfigurationError: the ring cannot hold products at that precision (Z_2^32).
    """
    if encoding is None:
        raise TypeError("non-linear functions need a fixed-point tensor (share it with encoding=FixedPoint(...))")
    k = 0
    while encoding.base ** (encoding.frac_bits + k) < WORKING_SCALE:
        k += 1
    work = FixedPoint(frac_bits=encoding.frac_bits + k, base=encoding.base, ring=encoding.ring)
    check_product_headroom(work)
    return work


def _enter(x: T) -> tuple[T, FixedPoint]:
    enc = x.encoding
    work = working_encoding(enc)
    assert enc is not None
    if work == enc:
        return x, enc
    factor = enc.base ** (work.frac_bits - enc.frac_bits)
    return (x._with(None) * factor)._with(work), enc


def _leave(y: T, enc: FixedPoint) -> T:
    if y.encoding == enc:
        return y
    assert y.encoding is not None
    return y._with(None)._raw_divide(enc.base ** (y.encoding.frac_bits - enc.frac_bits))._with(enc)


def _exp(x: T) -> T:
    """Limit approximation at the working precision: ``(1 + x / 2**t) ** (2**t)`` by ``t`` squarings."""
    y = x / (2**EXP_ITERATIONS) + 1
    for _ in range(EXP_ITERATIONS):
        y = y.square()
    return y


def exp(x: T) -> T:
    """``e**x`` by CrypTen's limit approximation ``(1 + x/256)**256`` (8 squarings).

    Range ``[-16, 6]``; bound ``e^x (x^2/500 + 2^-9) + 2^-14`` (+ one unit of the caller's encoding). Below
    ``-256`` the base turns negative and the result is wrong: :func:`softmax` clamps its (non-positive) inputs.
    Rounds: 17 (+1 to leave the working precision).

    Example:
        >>> from refimpl import FixedPoint
        >>> from refimpl.mpc import Dealer, share_tensor
        >>> x = share_tensor([0.0, 1.0, -2.0], Dealer(2), encoding=FixedPoint())
        >>> bool(abs(exp(x).get() - np.exp([0.0, 1.0, -2.0])).max() < 0.01)
        True
    """
    xw, enc = _enter(x)
    return _leave(_exp(xw), enc)


def _reciprocal_pos(x: T) -> T:
    """Newton-Raphson ``y <- y (2 - x y)`` from CrypTen's initial guess ``3 e^(1/2 - x) + 0.003``."""
    y = _exp(0.5 - x) * 3 + 0.003
    for _ in range(RECIPROCAL_ITERATIONS):
        y = y * (2 - x * y)  # (x y) first: x y is near 1, y**2 can be a few units of the working precision
    return y


def reciprocal(x: T, *, positive: bool = False) -> T:
    """``1 / x`` by Newton-Raphson (CrypTen): ``y <- 2y - x y^2`` from ``y0 = 3 e^(1/2 - |x|) + 0.003``.

    Range ``0.05 <= |x| <= 200``; bound ``2^-9 / |x| + 2^-14`` (+ one unit of the caller's encoding). The sign is
    handled exactly (``sign(x) / |x|``, one comparison) unless ``positive=True`` promises ``x > 0``.
    """
    xw, enc = _enter(x)
    if positive:
        return _leave(_reciprocal_pos(xw), enc)
    s = xw.sign()
    return _leave(_reciprocal_pos(xw * s) * s, enc)


def log(x: T) -> T:
    """Natural logarithm by CrypTen's Householder iterations of order 8 on ``h = 1 - x e^-y``:
    ``y <- y - sum_k h^k / k`` from ``y0 = x/120 - 20 e^(-2x - 1) + 3``.

    Range ``[0.05, 200]`` (positive inputs); bound ``ln(x)^2 / 400 + 2^-10`` (+ one unit of the caller's
    encoding): the iteration converges to the root of ``x exp_approx(-y) = 1``, so it inherits exp's error.
    """
    xw, enc = _enter(x)
    y = xw / 120 - _exp(-2 * xw - 1) * 20 + 3
    for _ in range(LOG_ITERATIONS):
        h = 1 - xw * _exp(-y)
        term = h
        acc = h
        for k in range(2, LOG_ORDER + 1):
            term = term * h
            acc = acc + term / k
        y = y - acc
    return _leave(y, enc)


def _inv_sqrt(x: T) -> T:
    y = _exp(-(x / 2 + 0.2)) * 2.2 + 0.2 - x / 1024
    for _ in range(INV_SQRT_ITERATIONS):
        y = y * (3 - (x * y) * y) / 2
    return y


def inv_sqrt(x: T) -> T:
    """``1 / sqrt(x)`` by Newton-Raphson ``y <- y (3 - x y^2) / 2`` from CrypTen's
    ``y0 = 2.2 e^(-(x/2 + 0.2)) + 0.2 - x/1024``.

    Range ``[0.05, 128]``; bound ``2^-10 / sqrt(x) + 2^-14`` (+ one unit of the caller's encoding).
    """
    xw, enc = _enter(x)
    return _leave(_inv_sqrt(xw), enc)


def sqrt(x: T) -> T:
    """``sqrt(x) = x * inv_sqrt(x)``. Range ``[0.05, 128]``; bound ``2^-10 sqrt(x) + 2^-14`` (+ one unit)."""
    xw, enc = _enter(x)
    return _leave(xw * _inv_sqrt(xw), enc)


def _sigmoid(x: T) -> T:
    s = x.sign()
    pos = x * s
    p = _reciprocal_pos(_exp(-pos) + 1)  # 1 / (1 + e^-|x|), the denominator in [1, 2]
    # sign +1: p; sign -1: 1 - p; both are  s p + (1 - s) / 2  (s an exact integer sharing, no division)
    return p * s + ((1 - s) * (x.scale // 2))._with(x.encoding) if x.scale % 2 == 0 else p * s + (1 - s) * 0.5


def sigmoid(x: T) -> T:
    """``1 / (1 + e^-x)`` as CrypTen: the reciprocal of ``1 + e^-|x|`` (in [1, 2]) reflected by the exact sign.

    Range ``[-16, 16]``, saturating correctly beyond; bound ``2^-9`` (+ one unit of the caller's encoding).
    """
    xw, enc = _enter(x)
    return _leave(_sigmoid(xw), enc)


def tanh(x: T) -> T:
    """``tanh(x) = 2 sigmoid(2x) - 1``. Range ``[-8, 8]`` (saturates beyond); bound ``2^-8`` (+ one unit)."""
    xw, enc = _enter(x)
    return _leave(_sigmoid(xw * 2) * 2 - 1, enc)


def softmax(x: T, axis: int = -1) -> T:
    """The stable softmax: ``e^(x - max) / sum e^(x - max)`` along ``axis``.

    The max is exact (a comparison tree); differences below ``-2^8`` are clamped to give ``e^d = 0`` (one
    comparison), the exponentials use :func:`exp`'s method and the sum (in ``[1, k]``) its reciprocal by
    Newton-Raphson from a linear start fitted to ``[1, k]`` (:func:`_reciprocal_pos_scaled`; 5 steps for 10
    classes). Any inputs; bound ``2^-6`` per entry (+ one unit of the caller's encoding) for up to 200 classes
    (the sum must stay in the reciprocal's range).
    """
    xw, enc = _enter(x)
    d = xw - xw.max(axis=axis, keepdims=True)
    base = (d / (2**EXP_ITERATIONS) + 1).relu()  # clamp: differences below -256 would turn the base negative
    e = base
    for _ in range(EXP_ITERATIONS):
        e = e.square()
    total = e.sum(axis=axis, keepdims=True)
    return _leave(e * _reciprocal_pos_scaled(total, int(d.shape[axis])), enc)


def softmax_newton_steps(k: int, target: float = 2.0**-24) -> int:
    """Newton steps for ``1 / s``, ``s`` in ``[1, k]``, from :func:`_reciprocal_pos_scaled`'s linear start: the
    relative error ``e = 1 - s y`` squares at each step, from ``|e0| <= E = (k-1)^2 / (k^2 + 6k + 1)``, so
    ``ceil(log2(ln(target) / ln(E)))`` steps bring it below ``target`` (5 for k = 10, 9 for k = 200)."""
    worst = (k - 1) ** 2 / (k * k + 6 * k + 1)
    if worst <= target:
        return 0
    return max(0, int(np.ceil(np.log2(np.log(target) / np.log(worst)))))


def _reciprocal_pos_scaled(s: T, k: int = 200) -> T:
    """``1 / s`` for ``s`` in ``[1, k]`` (a softmax denominator: the max's term is 1, each of the ``k`` at most 1).

    Newton-Raphson ``y <- y (2 - s y)`` from the minimax linear start ``y0 = b (k + 1 - s)``,
    ``b = 8 / (k^2 + 6k + 1)`` (one public product instead of CrypTen's exp-based guess), whose relative error
    ``|1 - s y0|`` is at most ``(k-1)^2 / (k^2 + 6k + 1)`` on ``[1, k]`` (0.50 for k = 10), and
    :func:`softmax_newton_steps` steps (4 rounds each)."""
    b = 8 / (k * k + 6 * k + 1)
    y = (s * -b) + b * (k + 1)
    for _ in range(softmax_newton_steps(k)):
        y = y * (2 - s * y)
    return y
