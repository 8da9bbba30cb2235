"""Ring arithmetic on JAX arrays: the same results as :class:`refimpl.ring.Ring` on NumPy, bit for bit.

:class:`~refimpl.ring.Ring`'s methods call these functions when an operand is a JAX array. Elements have the
ring's NumPy dtype (``uint32`` for Z_2^32; ``uint64`` for the other rings up to 2**64, which needs JAX's 64-bit
mode: :func:`refimpl.backend.dispatch.jax_dtype` says so in its error). Everything works under ``jax.jit`` and
``jax.vmap``.

Value checks (:meth:`Ring.element`, fixed-point range checks) raise the same exception with the same message as
NumPy on concrete arrays. Under ``jax.jit`` the values are unknown while tracing: the check is compiled into the
function and reports through ``jax.debug.callback``, so a bad value makes the call fail with a
``jax.errors.JaxRuntimeError`` whose message holds refimpl's message. Checks that cannot fail for the input's dtype
(``uint32`` or ``int32`` into Z_2^32, any 64-bit integer into Z_2^64) are skipped entirely.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from refimpl.backend import dispatch
from refimpl.errors import BackendError, OutOfRangeError

if TYPE_CHECKING:  # the ring layer imports this module, never the reverse at run time
    from refimpl.ring import Ring

__all__ = ["add", "element", "lift", "mul", "neg", "reduce", "report", "set_first", "stack", "sub", "sum", "to_jax"]


def to_jax(x: Any, what: str = "value") -> jax.Array:
    """``x`` as a JAX array, refusing host integers that JAX would silently narrow (64-bit without 64-bit mode)."""
    if dispatch.is_jax(x):
        return x
    arr = np.asarray(x)
    if arr.dtype == object:
        raise BackendError(f"{what} holds Python integers beyond 64 bits, which JAX arrays cannot hold")
    if arr.dtype.kind in "iuf" and jax.dtypes.canonicalize_dtype(arr.dtype) != arr.dtype:
        if arr.dtype.kind == "f":
            return jnp.asarray(arr)  # floats are checked and rounded by the caller (fixed point)
        raise BackendError(f"{what} has dtype {arr.dtype}, which JAX holds only in 64-bit mode; {dispatch.X64_HINT}")
    return jnp.asarray(arr)


def _check_int(x: jax.Array, what: str) -> None:
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(
            f"{what} must be an integer array, got dtype {x.dtype}"
            + ("; encode real numbers first with FixedPoint.encode" if jnp.issubdtype(x.dtype, jnp.floating) else "")
        )


def _raise_from_callback(make_message: Callable[[Any], str], error: type[Exception], flag: Any, value: Any) -> None:
    if bool(flag):
        raise error(make_message(np.asarray(value).item()))


def report(bad: jax.Array, values: jax.Array, make_message: Callable[[Any], str],
           error: type[Exception] = OutOfRangeError) -> None:
    """Raise ``error(make_message(v))`` for the first ``v`` of ``values`` where ``bad`` holds.

    Concrete arrays are checked now. Traced arrays get the check compiled in, reporting through
    ``jax.debug.callback`` (the call then fails with a ``JaxRuntimeError`` carrying the message).
    """
    if bad.size == 0:
        return
    if dispatch.is_tracer(bad) or dispatch.is_tracer(values):
        flat_bad = bad.reshape(-1)
        first = jnp.broadcast_to(values, bad.shape).reshape(-1)[jnp.argmax(flat_bad)]
        callback = functools.partial(_raise_from_callback, make_message, error)
        flag = jnp.any(flat_bad)
        # the host callback runs only when a value is bad (under vmap, cond becomes select and it always runs)
        lax.cond(flag, lambda f, v: jax.debug.callback(callback, f, v), lambda f, v: None, flag, first)
        return
    if bool(jnp.any(bad)):
        first = np.asarray(jnp.broadcast_to(values, bad.shape))[np.asarray(bad)].ravel()[0]
        raise error(make_message(first.item()))


def _wrap(ring: Ring, out: jax.Array) -> jax.Array:
    m = ring.modulus
    if ring.is_power_of_two:
        return out if m in (2**32, 2**64) else out & jnp.asarray(m - 1, dtype=out.dtype)
    return out % jnp.asarray(m, dtype=out.dtype)


def reduce(ring: Ring, x: Any) -> jax.Array:
    """:meth:`Ring.reduce` on JAX: any integers modulo M, two's-complement casts for powers of two."""
    dt = dispatch.jax_dtype(ring)
    x = to_jax(x, "Ring.reduce input")
    _check_int(x, "Ring.reduce input")
    m = ring.modulus
    if ring.is_power_of_two:
        return _wrap(ring, x.astype(dt))
    if jnp.issubdtype(x.dtype, jnp.unsignedinteger):
        return (x.astype(jnp.uint64) % jnp.uint64(m)).astype(dt)
    return jnp.mod(x.astype(jnp.int64), jnp.int64(m)).astype(dt)


def _range_mask(ring: Ring, x: jax.Array) -> jax.Array | None:
    lo, hi = ring.signed_min, ring.modulus
    info = jnp.iinfo(x.dtype)
    bad = None
    if info.min < lo:
        bad = x < jnp.asarray(lo, dtype=x.dtype)
    if info.max >= hi:
        over = x >= jnp.asarray(hi, dtype=x.dtype)
        bad = over if bad is None else bad | over
    return bad


def element(ring: Ring, x: Any) -> jax.Array:
    """:meth:`Ring.element` on JAX: integers in ``[-floor(M/2), M)`` as ring elements; anything else raises."""
    dispatch.jax_dtype(ring)
    x = to_jax(x, "ring element")
    _check_int(x, "ring element")
    bad = _range_mask(ring, x)
    if bad is not None:
        lo, hi = ring.signed_min, ring.modulus
        report(bad, x, lambda v: f"value {v} is outside {ring!r}'s range [{lo}, {hi})")
    return reduce(ring, x)


def lift(ring: Ring, x: Any) -> jax.Array:
    """:meth:`Ring.lift` on JAX: the signed view, ``int64`` (``int32`` for Z_2^32 in JAX's 32-bit mode)."""
    dt = dispatch.jax_dtype(ring)
    x = to_jax(x, "ring element").astype(dt)
    m = ring.modulus
    if m == 2**32:
        signed = lax.bitcast_convert_type(x, jnp.int32)
        return signed.astype(jnp.int64) if dispatch.x64_enabled() else signed
    if m == 2**64:
        return lax.bitcast_convert_type(x, jnp.int64)
    signed = x.astype(jnp.int64)  # M <= 2**63 here
    return jnp.where(signed >= jnp.int64((m + 1) // 2), signed - jnp.int64(m), signed)


def _operands(ring: Ring, *xs: Any) -> list[jax.Array]:
    dt = dispatch.jax_dtype(ring)
    out = []
    for x in xs:
        a = to_jax(x, "ring element")
        if a.dtype != dt:
            raise TypeError(f"{ring!r} elements have dtype {dt}, got {a.dtype}; convert with ring.element first")
        out.append(a)
    return out


def add(ring: Ring, a: Any, b: Any) -> jax.Array:
    """``(a + b) mod M``."""
    a, b = _operands(ring, a, b)
    return _wrap(ring, a + b)


def sub(ring: Ring, a: Any, b: Any) -> jax.Array:
    """``(a - b) mod M``."""
    a, b = _operands(ring, a, b)
    if ring.is_power_of_two:
        return _wrap(ring, a - b)
    return _wrap(ring, a + (jnp.asarray(ring.modulus, dtype=b.dtype) - b))


def neg(ring: Ring, a: Any) -> jax.Array:
    """``-a mod M``."""
    (a,) = _operands(ring, a)
    return sub(ring, jnp.zeros_like(a), a)


def mul(ring: Ring, a: Any, b: Any) -> jax.Array:
    """``(a * b) mod M`` (the dtype table guarantees exact products for moduli up to 2**32)."""
    a, b = _operands(ring, a, b)
    return _wrap(ring, a * b)


def sum(ring: Ring, x: Any, axis: int = 0) -> jax.Array:
    """Sum along ``axis`` mod M: wrap-around sums for powers of two; exact ``uint64`` sums otherwise (each element
    is below 2**32, so up to 2**32 of them cannot overflow)."""
    (x,) = _operands(ring, x)
    return _wrap(ring, jnp.sum(x, axis=axis, dtype=x.dtype))


def set_first(data: Any, first: jax.Array) -> jax.Array:
    """``data`` with party 0's share replaced by ``first`` (a new array; JAX arrays are immutable)."""
    return to_jax(data).at[0].set(first)


def stack(arrays: list[Any]) -> jax.Array:
    """Stack arrays (NumPy or JAX) along a new leading axis, on JAX."""
    return jnp.stack([to_jax(a) for a in arrays])
