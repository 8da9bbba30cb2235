"""NumPy or JAX: the one place that decides which array library runs an operation.

The rule is the array's type: an operation runs on JAX when one of its array operands is a ``jax.Array`` (tracers
under ``jax.jit`` / ``jax.vmap`` included), on NumPy otherwise. Nothing here imports JAX: :func:`is_jax` looks in
``sys.modules``, so a program that never imported JAX never pays for it, and a NumPy array is recognised by one
``type`` comparison. The JAX implementations live in :mod:`refimpl.backend.jax_ring`, :mod:`refimpl.backend.jax_chacha`,
:mod:`refimpl.backend.jax_encoding` and :mod:`refimpl.sharing.jax_sharing`; each public entry point (``Ring``'s
methods, ``FixedPoint.encode``/``decode``, :func:`refimpl.sharing.share`) imports its implementation on first use.

JAX's global configuration is never changed. Which integer types exist depends on it, so:

* Z_2^32 (``uint32``) works in JAX's default 32-bit mode;
* rings stored as ``uint64`` (Z_2^64, other Z_2^k, moduli up to 2**32) need 64-bit mode, enabled by the user with
  ``jax.config.update("jax_enable_x64", True)``, ``JAX_ENABLE_X64=1`` or the ``jax.enable_x64(True)`` context;
  without it they raise :class:`~refimpl.errors.BackendError` naming those switches;
* rings above 2**64 (Python-integer elements) have no JAX dtype and raise :class:`~refimpl.errors.BackendError`.

Types register themselves as JAX pytrees through :func:`add_pytree_hook` (``Shares``: the ring and party count are
static auxiliary data, the stacked share array the one leaf); the hooks run as soon as JAX is seen, by the first
JAX-path call or the first ``Shares`` built while JAX is imported. This module imports nothing above
:mod:`refimpl.errors`: the implementations call down into it, never the other way round.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from refimpl.errors import BackendError

if TYPE_CHECKING:
    from refimpl.ring import Ring

__all__ = [
    "add_pytree_hook",
    "any_jax",
    "is_jax",
    "is_tracer",
    "jax_dtype",
    "jax_loaded",
    "register_pytrees",
    "x64_enabled",
]

_REGISTERED = False
X64_HINT = ('enable JAX\'s 64-bit mode first: jax.config.update("jax_enable_x64", True) at start-up, '
            'JAX_ENABLE_X64=1 in the environment, or the jax.enable_x64(True) context manager')


def is_jax(x: Any) -> bool:
    """Whether ``x`` is a JAX array (or tracer); never imports JAX."""
    if type(x) is np.ndarray:
        return False
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    if not _REGISTERED:
        register_pytrees()
    return isinstance(x, jax.Array)


def any_jax(*xs: Any) -> bool:
    """Whether any of ``xs`` is a JAX array: then the operation runs on JAX."""
    return any(is_jax(x) for x in xs)


def jax_loaded() -> bool:
    """Whether JAX has been imported (by anyone); registers refimpl's pytrees when it has."""
    if "jax" not in sys.modules:
        return False
    if not _REGISTERED:
        register_pytrees()
    return True


def is_tracer(x: Any) -> bool:
    """Whether ``x`` is an abstract value being traced by ``jax.jit`` / ``jax.vmap`` (its values are unknown)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


_PYTREE_HOOKS: list[Callable[[Any], None]] = []


def add_pytree_hook(hook: Callable[[Any], None]) -> None:
    """Register ``hook(jax)``, run once JAX is loaded, to register a refimpl type as a JAX pytree node.

    The sharing layer registers :class:`~refimpl.sharing.Shares` this way, so this module never imports it.
    A hook added after JAX was seen runs at once.
    """
    _PYTREE_HOOKS.append(hook)
    if _REGISTERED:
        hook(sys.modules["jax"])


def register_pytrees() -> None:
    """Run the pytree hooks (idempotent; imports JAX)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import jax

    if not hasattr(jax, "tree_util"):  # JAX is still being imported (by another thread): register next time
        return
    for hook in _PYTREE_HOOKS:
        hook(jax)
    _REGISTERED = True


def x64_enabled() -> bool:
    """Whether JAX's 64-bit mode is on here (global flag or ``jax.enable_x64`` context); imports JAX."""
    import jax

    return bool(jax.dtypes.canonicalize_dtype(np.int64) == np.dtype(np.int64))


def jax_dtype(ring: Ring) -> np.dtype:
    """The dtype that holds ``ring``'s elements on JAX, which is ``ring.dtype``; raises if JAX cannot hold it.

    Raises:
        BackendError: ``uint64`` rings without JAX's 64-bit mode, or a modulus above 2**64 (no JAX dtype).
    """
    dt = ring.dtype
    if dt == np.dtype(object):
        raise BackendError(
            f"{ring!r} needs {ring.bits}-bit integers, and JAX arrays hold at most 64 bits; use NumPy arrays for "
            "this ring (np.asarray(x)), or a ring of modulus <= 2**64"
        )
    if dt.itemsize == 8 and not x64_enabled():
        raise BackendError(
            f"{ring!r} stores elements as uint64, which JAX has only in 64-bit mode (refimpl never changes JAX's "
            f"global configuration); {X64_HINT}. Z2_32 works in JAX's default 32-bit mode"
        )
    return dt
