"""Exception types and the shared input checks of refimpl.

Every check that more than one module needs lives here, so that the same bad input gets the same exception and the
same message everywhere.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "RefimplError",
    "RingMismatchError",
    "PartyCountError",
    "ShapeMismatchError",
    "OutOfRangeError",
    "NotAFieldError",
    "KeyFormatError",
    "BackendError",
    "TripleReuseError",
    "WireFormatError",
    "PointerError",
    "ThresholdError",
    "ConfigurationError",
    "ProtocolError",
    "ReplayError",
]


class RefimplError(ValueError):
    """Base class of refimpl's value errors (a ValueError, so ``except ValueError`` catches it)."""


class RingMismatchError(RefimplError):
    """Two operands live in different rings."""


class PartyCountError(RefimplError):
    """Two sharings have different numbers of parties, or a party count is invalid."""


class ShapeMismatchError(RefimplError):
    """Operands have shapes that do not match."""


class OutOfRangeError(RefimplError):
    """A value does not fit the ring or the fixed-point range; refimpl never wraps it silently."""


class NotAFieldError(RefimplError):
    """A modulus that must be prime is not."""


class KeyFormatError(RefimplError):
    """A key or nonce has the wrong length or type."""


class BackendError(RefimplError):
    """The array backend cannot do an operation exactly: a ring whose elements JAX cannot hold (Z_2^64 without
    JAX's 64-bit mode, moduli above 2**64), or a stream cipher with no JAX implementation under ``jax.jit``."""


class ThresholdError(RefimplError):
    """A threshold is invalid, or fewer than the threshold of shares (or surviving parties) are available."""


class ConfigurationError(RefimplError):
    """A protocol is configured with parameters that cannot work (bad sizes, clip ranges, party counts)."""


class ProtocolError(RefimplError):
    """A protocol message is malformed, addressed to the wrong round or party, or arrives out of order."""


class ReplayError(ProtocolError):
    """A protocol message was already received (a replay); it is rejected and changes nothing."""


class TripleReuseError(RefimplError):
    """A crypto provider's correlated randomness (a Beaver triple, truncation pair, daBit) was used twice."""


class WireFormatError(RefimplError):
    """Bytes received from another party do not decode: truncated, corrupted, or not a refimpl message."""


class PointerError(RefimplError):
    """A pointer is stale (its object was fetched, moved or deleted) or names no object at its worker."""


def _describe(value: Any, limit: int = 6) -> str:
    """Short text naming a bad value (a few elements of an array, never a huge dump)."""
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        head = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in flat[:limit])
        more = ", ..." if flat.size > limit else ""
        return f"array(shape={value.shape}, dtype={value.dtype}, values=[{head}{more}])"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def check_key(key: Any, *, lengths: tuple[int, ...] = (16, 32), what: str = "key") -> bytes:
    """Return ``key`` as bytes, or raise if it is not bytes of an accepted length."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes of length {' or '.join(map(str, lengths))}, got {type(key).__name__}")
    key = bytes(key)
    if len(key) not in lengths:
        raise KeyFormatError(f"{what} must be {' or '.join(map(str, lengths))} bytes long, got {len(key)} bytes")
    return key


def check_party_axis(data: Any, what: str) -> None:
    """Raise unless ``data`` is a stack of shares: a leading party axis holding at least 2 parties."""
    if data.ndim < 1:
        raise ShapeMismatchError(f"{what} data must have a leading party axis")
    check_party_count(data.shape[0])


def read_only_view(data: np.ndarray) -> np.ndarray:
    """A view of ``data`` that cannot be written through (sharings are immutable)."""
    view = data.view()
    view.flags.writeable = False
    return view


def check_party_count(n: Any, *, minimum: int = 2) -> int:
    """Return ``n`` as an int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"the number of parties must be an integer, got {n!r} of type {type(n).__name__}")
    if n < minimum:
        raise PartyCountError(f"the number of parties must be at least {minimum}, got {n}")
    return int(n)
