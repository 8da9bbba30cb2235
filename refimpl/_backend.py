"""NumPy or JAX: the one place that decides which array library runs an operation.

The rule is the array's type: an operation runs on JAX when one of its array operands is a ``jax.Array`` (tracers
under ``jax.jit`` / ``jax.vmap`` included), on NumPy otherwise. Nothing here imports JAX: :func:`is_jax` looks in
``sys.modules``, so a program that never imported JAX never pays for it, and a NumPy array is recognised by one
``type`` comparison. The JAX implementations live in :mod:`refimpl._jax_ring`, :mod:`refimpl._jax_chacha`,
:mod:`refimpl._jax_sharing` and :mod:`refimpl._jax_encoding`, imported on first use.

JAX's global configuration is never changed. Which integer types exist depends on it, so:

* Z_2^32 (``uint32``) works in JAX's default 32-bit mode;
* rings stored as ``uint64`` (Z_2^64, other Z_2^k, moduli up to 2**32) need 64-bit mode, enabled by the user with
  ``jax.config.update("jax_enable_x64", True)``, ``JAX_ENABLE_X64=1`` or the ``jax.enable_x64(True)`` context;
  without it they raise :class:`~refimpl._errors.BackendError` naming those switches;
* rings above 2**64 (Python-integer elements) have no JAX dtype and raise :class:`~refimpl._errors.BackendError`.

:class:`~refimpl.sharing.Shares` is registered as a JAX pytree (the ring and party count are static auxiliary data,
the stacked share array the one leaf) as soon as JAX is seen: by the first JAX-path call or the first ``Shares``
built while JAX is imported.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from refimpl._errors import BackendError

if TYPE_CHECKING:
    from refimpl.ring import Ring

__all__ = [
    "any_jax",
    "is_jax",
    "is_tracer",
    "jax_dtype",
    "jax_encoding",
    "jax_loaded",
    "jax_ring",
    "jax_sharing",
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


def register_pytrees() -> None:
    """Register :class:`~refimpl.sharing.Shares` as a JAX pytree node (idempotent; imports JAX)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import jax

    if not hasattr(jax, "tree_util"):  # JAX is still being imported (by another thread): register next time
        return
    from refimpl.sharing import Shares

    def aux(s: Shares) -> tuple[Ring, int]:
        # A Shares rebuilt by JAX keeps its party count: its leaf may be a placeholder or carry a batch axis.
        n = s.__dict__.get("_pytree_n")
        return s.ring, int(s.data.shape[0]) if n is None else n

    def flatten_with_keys(s: Shares) -> tuple[tuple[tuple[Any, Any], ...], tuple[Ring, int]]:
        return ((jax.tree_util.GetAttrKey("data"), s.data),), aux(s)

    def flatten(s: Shares) -> tuple[tuple[Any], tuple[Ring, int]]:
        return (s.data,), aux(s)

    def unflatten(aux_data: tuple[Ring, int], children: Any) -> Shares:
        # No validation: JAX rebuilds pytrees with placeholder leaves (None, object(), axis specs) in transforms.
        obj = object.__new__(Shares)
        object.__setattr__(obj, "ring", aux_data[0])
        object.__setattr__(obj, "data", children[0])
        object.__setattr__(obj, "_pytree_n", aux_data[1])
        return obj

    try:
        jax.tree_util.register_pytree_with_keys(Shares, flatten_with_keys, unflatten, flatten)
    except ValueError:  # already registered (e.g. this module was reloaded)
        pass
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
    if dt == object:
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


def _import(name: str) -> ModuleType:
    module = sys.modules.get(name)
    if module is None:
        import importlib

        register_pytrees()
        module = importlib.import_module(name)
    return module


def jax_ring() -> ModuleType:
    """The JAX implementation of :class:`~refimpl.ring.Ring` arithmetic (imports JAX)."""
    return _import("refimpl._jax_ring")


def jax_sharing() -> ModuleType:
    """The JAX implementation of sharing (imports JAX)."""
    return _import("refimpl._jax_sharing")


def jax_encoding() -> ModuleType:
    """The JAX implementation of fixed-point encoding (imports JAX)."""
    return _import("refimpl._jax_encoding")
