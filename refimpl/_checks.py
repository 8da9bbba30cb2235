"""Shared argument validators: the same bad input gets the same exception and the same message everywhere."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from refimpl.errors import KeyFormatError, PartyCountError, ShapeMismatchError

__all__ = ["MAX_PARTIES", "check_key", "check_party_axis", "check_party_count", "describe", "read_only_view"]


def describe(value: Any, limit: int = 6) -> str:
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


MAX_PARTIES = 2**16
"""The most parties one sharing or protocol takes (65,536): every party costs a key and a share of the secret's
size, so n = 10**7 would mean ~10**7 keys and shares before anything useful happens; refused up front."""


def check_party_count(n: Any, *, minimum: int = 2, maximum: int = MAX_PARTIES) -> int:
    """Return ``n`` as an int, or raise if it is not an integer in ``[minimum, maximum]``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"the number of parties must be an integer, got {n!r} of type {type(n).__name__}")
    n = int(n)
    if n < minimum:
        raise PartyCountError(f"the number of parties must be at least {minimum}, got {n}")
    if n > maximum:
        raise PartyCountError(f"the number of parties must be at most {maximum} (refimpl's bound: each party "
                              f"costs a key and a share of the secret's size), got {n}")
    return n
