"""Fixed-point encoding on JAX arrays: :meth:`FixedPoint.encode` / :meth:`FixedPoint.decode` for ``jax.Array``.

Encode gives exactly NumPy's ring elements: ``k = round_half_even(x * scale)`` of the exact product, with the same
range and finiteness checks (see :mod:`refimpl.backend.jax_ring` for how checks report under ``jax.jit``). The float
arithmetic is done in the widest float JAX has in the current mode:

* 64-bit mode: float64 and int64, for every ring up to 2**64, bit-identical to NumPy.
* JAX's default 32-bit mode (Z_2^32 only): float32 and int32. Inputs are float32 (or narrower), so ``x * scale``
  is exact for a power-of-two scale and recovered exactly by Dekker's product otherwise (scale exact in float32,
  i.e. below 2**24 for non-powers of two; larger ones raise), and beyond 2**24, where float32 holds only even
  integers, the rounding is finished in int32. The integers are NumPy's for the same float32 inputs. What float32
  cannot do is hold more than 24 significant bits: a float64 value's extra bits are lost when JAX makes the array
  (``jnp.asarray(np.float64(...))`` rounds to float32), before refimpl sees it.

Decode returns float64 in 64-bit mode, NumPy's values bit for bit: ``k / scale`` correctly rounded, also where
``|k| > 2**53`` and the scale is not a power of two (there the float quotient is corrected with exact integer
midpoint tests, see :func:`_exact_quotient`). In 32-bit mode it returns float32: for a power-of-two scale exactly
NumPy's float64 result rounded to float32; for other scales within 1 float32 ulp of it (``k`` itself may not be
exact in float32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from refimpl.backend import dispatch
from refimpl.backend import jax_ring as R
from refimpl.errors import BackendError, OutOfRangeError

if TYPE_CHECKING:  # the encoding layer imports this module, never the reverse at run time
    from refimpl.encoding import FixedPoint

__all__ = ["decode", "encode"]


def _message_of(raiser: Callable[[Any], None], value: Any) -> str:
    """The message refimpl's NumPy path raises for ``value`` (one text for both backends)."""
    try:
        raiser(value)
    except OutOfRangeError as err:
        return str(err)
    raise AssertionError("unreachable: the raiser did not raise")  # pragma: no cover


def _float_types(fp: FixedPoint) -> tuple[Any, Any, int, float]:
    """(float dtype, int dtype, int width, Veltkamp splitter) of the current mode; checks the scale is exact."""
    if dispatch.x64_enabled():
        return jnp.float64, jnp.int64, 64, 134217729.0  # 2**27 + 1
    scale = fp.scale
    if scale & (scale - 1) and int(np.float32(scale)) != scale:
        raise BackendError(f"scale {fp.base}**{fp.frac_bits} = {scale} is not exact in float32; {dispatch.X64_HINT}")
    return jnp.float32, jnp.int32, 32, 4097.0  # 2**12 + 1


def _two_product(a: jax.Array, b: float, splitter: float) -> tuple[jax.Array, jax.Array]:
    """``p, e`` with ``p = fl(a * b)`` and ``a * b = p + e`` exactly (Dekker), in ``a``'s float type."""
    dt = a.dtype
    b_ = jnp.asarray(b, dtype=dt)
    sp = jnp.asarray(splitter, dtype=dt)

    def split(v: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = sp * v
        hi = c - (c - v)
        return hi, v - hi

    p = a * b_
    ah, al = split(a)
    bh, bl = split(b_)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def encode(fp: FixedPoint, x: Any) -> jax.Array:
    """:meth:`FixedPoint.encode` for a JAX array: the same ring elements as NumPy."""
    ring = fp.ring
    dt = dispatch.jax_dtype(ring)
    x = R.to_jax(x, "FixedPoint.encode input")
    if jnp.issubdtype(x.dtype, jnp.integer):
        return _encode_integers(fp, x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"FixedPoint.encode takes real numbers, got dtype {x.dtype}")
    F, Int, width, splitter = _float_types(fp)
    x = x.astype(F)
    finite = jnp.isfinite(x)
    R.report(~finite, x, lambda v: f"cannot encode non-finite value {v!r} in {fp!r}")
    scale = fp.scale
    mantissa = jnp.finfo(F).nmant + 1  # 24 or 53: from 2**mantissa on, floats are even integers
    if scale & (scale - 1) == 0:  # power of two: the float product is exact
        k = jnp.rint(x * jnp.asarray(scale, dtype=F))
        corr = jnp.zeros(x.shape, dtype=Int)
    else:
        p, e = _two_product(x, float(scale), splitter)
        r = jnp.rint(p)
        d = p - r  # exact
        fix = (jnp.abs(d) == 0.5) & (e != 0) & (jnp.sign(e) == jnp.sign(d))
        k = jnp.where(fix, r + jnp.sign(d), r)
        # From 2**mantissa on p is an even integer and the rounding of p + e is that of e: finish it in integers.
        big = (jnp.abs(p) >= 2.0**mantissa) & (jnp.abs(p) < 2.0 ** (width - 1))
        corr = jnp.where(big, jnp.rint(jnp.where(big, e, 0)), 0).astype(Int)
    pre = ~(jnp.abs(k) < 2.0 ** (width - 1))  # beyond the int type (or NaN): out of range for every ring here
    k_int = jnp.where(pre, jnp.zeros((), dtype=F), k).astype(Int) + corr
    limit = fp.max_abs_integer
    over = finite & (pre | (k_int > jnp.asarray(limit, dtype=Int)) | (k_int < jnp.asarray(-limit, dtype=Int)))
    R.report(over, x, lambda v: _message_of(fp._raise_range, v))
    return R.reduce(ring, k_int).astype(dt)


def _encode_integers(fp: FixedPoint, x: jax.Array) -> jax.Array:
    ring = fp.ring
    bound = fp.max_abs_integer // fp.scale  # |x * scale| <= limit  <=>  |x| <= bound, for integers x
    info = jnp.iinfo(x.dtype)
    bad = None
    if info.max > bound:
        bad = x > jnp.asarray(bound, dtype=x.dtype)
    if info.min < -bound:
        under = x < jnp.asarray(-bound, dtype=x.dtype)
        bad = under if bad is None else bad | under
    if bad is not None:
        R.report(bad, x, lambda v: _message_of(fp._raise_range, v))
    scale = jnp.asarray(fp.scale % ring.modulus, dtype=dispatch.jax_dtype(ring))
    return R.mul(ring, R.reduce(ring, x), scale)


def decode(fp: FixedPoint, r: Any) -> jax.Array:
    """:meth:`FixedPoint.decode` for a JAX array: float64 in 64-bit mode, float32 in JAX's default mode."""
    ring = fp.ring
    dispatch.jax_dtype(ring)
    r = R.to_jax(r, "FixedPoint.decode input")
    F, _, _, _ = _float_types(fp)
    if jnp.issubdtype(r.dtype, jnp.signedinteger) and r.size:
        smallest = jnp.broadcast_to(jnp.min(r), r.shape)
        R.report(r < 0, smallest, lambda v: f"decode takes ring elements in [0, {ring.modulus}), got negative "
                 f"value {v}")
    k_int = R.lift(ring, R.element(ring, r))
    k = k_int.astype(F)
    scale = fp.scale
    if scale & (scale - 1) == 0:
        return k * jnp.asarray(1.0 / scale, dtype=F)  # exact: a power of two
    # XLA turns a division by a broadcast scalar into a multiplication by its (rounded) reciprocal, which is not
    # the correctly rounded quotient NumPy computes. A full divisor array hidden behind an optimization barrier
    # keeps the true IEEE division.
    out = lax.div(k, lax.optimization_barrier(jnp.full(k.shape, scale, dtype=F)))
    if F == jnp.float64 and ring.modulus > 2**53:  # |k| may exceed 2**53: float(k) rounded, so round k / scale again
        wide = (k_int > jnp.int64(2**53)) | (k_int < jnp.int64(-(2**53)))
        out = jnp.where(wide, _exact_quotient(k_int, scale, out), out)
    return out


def _exact_quotient(k: jax.Array, scale: int, approx: jax.Array) -> jax.Array:
    """The float64 nearest ``k / scale`` (ties to even) for int64 ``k`` and an integer ``scale < 2**53``, given an
    approximation within 2 ulps (``float(k) / scale``): corrected twice by exact midpoint tests, then tie-broken.

    A midpoint of ``x`` and its upper neighbour ``x + u`` (``u = 2**E``, ``x = X u``) lies below ``K / scale`` iff
    ``2 K 2**-E > (2 X + 1) scale`` (``E < 0``; ``2 K > ((2 X + 1) scale) 2**E`` for ``E >= 0``). Both sides may
    pass 2**64, but their true difference is below ``8 scale`` (``8 scale u`` resp.) in magnitude, so wrapping
    uint64 arithmetic gives it exactly.
    """
    neg = k < 0
    mag = jnp.where(neg, -k, k).astype(jnp.uint64)  # |k|, exact even for -2**63
    two_k = mag << jnp.uint64(1)
    s = jnp.uint64(scale)
    a = jnp.abs(approx)

    def above_mid(x: jax.Array) -> jax.Array:
        """sign(K / scale - (x + next_up(x)) / 2): -1, 0 or 1."""
        u = jnp.nextafter(x, jnp.inf) - x  # a power of two
        _, e = jnp.frexp(u)
        e = (e - 1).astype(jnp.int64)  # u = 2**e
        big_x = (x / u).astype(jnp.uint64)
        rhs = (big_x * jnp.uint64(2) + jnp.uint64(1)) * s
        up = jnp.clip(e, 0, 63).astype(jnp.uint64)
        down = jnp.clip(-e, 0, 63).astype(jnp.uint64)
        diff = jnp.where(e >= 0, two_k - (rhs << up), (two_k << down) - rhs)
        signed = lax.bitcast_convert_type(diff, jnp.int64)
        return jnp.sign(signed)

    for _ in range(2):
        lo, hi = jnp.nextafter(a, 0.0), jnp.nextafter(a, jnp.inf)
        a = jnp.where(above_mid(a) > 0, hi, jnp.where(above_mid(lo) < 0, lo, a))
    lo, hi = jnp.nextafter(a, 0.0), jnp.nextafter(a, jnp.inf)
    odd = (lax.bitcast_convert_type(a, jnp.uint64) & jnp.uint64(1)) == 1
    a = jnp.where((above_mid(a) == 0) & odd, hi, jnp.where((above_mid(lo) == 0) & odd, lo, a))
    return jnp.where(neg, -a, a)
