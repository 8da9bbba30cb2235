"""Headroom of fixed-point products on shares: refuse, before computing, encodings whose products cannot fit."""

from __future__ import annotations

import math

from refimpl.encoding import FixedPoint
from refimpl.errors import ConfigurationError
from refimpl.ring import Ring

__all__ = ["MIN_PRODUCT_INTEGER_BITS", "check_product_headroom"]

#: A fixed-point product must leave at least this many integer bits: ``|x * y| < 2**MIN_PRODUCT_INTEGER_BITS``.
MIN_PRODUCT_INTEGER_BITS = 4


def _fits(scale: int, ring: Ring) -> bool:
    """Whether products at ``scale**2`` leave ``MIN_PRODUCT_INTEGER_BITS`` below the division range 2**(l-2)."""
    return scale * scale * 2**MIN_PRODUCT_INTEGER_BITS <= 2 ** (ring.bits - 2)


def check_product_headroom(encoding: FixedPoint) -> None:
    """Refuse an encoding whose fixed-point products cannot fit its ring, before any value is computed.

    A product of two encoded values carries ``scale**2`` and must lie in the range of
    :func:`~refimpl.mpc.divide` (``|x * y| * scale**2 < 2**(l-2)``); at least ``MIN_PRODUCT_INTEGER_BITS``
    integer bits must remain.

    Raises:
        ConfigurationError: the encoding does not fit; the message says which ``frac_bits`` would.
        RefimplError: the ring is not Z_2^l (l <= 64): division on shares needs one.

    Example:
        >>> from refimpl import FixedPoint, Z2_32
        >>> check_product_headroom(FixedPoint(ring=Z2_32))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        refimpl.errors.ConfigurationError: FixedPoint(frac_bits=16, base=2, ring=Z2_32) cannot multiply: ...
    """
    ring, scale = encoding.ring, encoding.scale
    if not ring.is_power_of_two or ring.dtype == object:
        raise ConfigurationError(f"fixed-point products on shares need a ring Z_2^l (l <= 64), got {ring!r}")
    if _fits(scale, ring):
        return
    best = 0
    while _fits(encoding.base ** (best + 1), ring):
        best += 1
    room = (ring.bits - 2) - 2 * math.log2(scale)
    raise ConfigurationError(
        f"{encoding!r} cannot multiply: a product carries scale**2 = {encoding.base}**{2 * encoding.frac_bits} and "
        f"must stay below 2**{ring.bits - 2} to be divided back, leaving {room:.1f} integer bits (at least "
        f"{MIN_PRODUCT_INTEGER_BITS} needed). What fits: frac_bits <= {best} in base {encoding.base} with "
        f"{ring!r} (|x * y| < {2 ** (ring.bits - 2) / encoding.base ** (2 * best):.4g}), or a ring with more bits "
        f"(Z_2^64)")


