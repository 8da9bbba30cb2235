"""The tutorial's opening: a tensor shared among jake, john and secure_worker, added on shares, reconstructed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.additive import reconstruct
from refimpl.sharing.api import share

__all__ = ["sharing_demo", "TUTORIAL_Q", "LARGE_PRIME"]

WORKERS = ("jake", "john", "secure_worker")
TUTORIAL_Q = 23740629843760239486723  # the tutorial's "large prime" Q: composite, divisible by 3
LARGE_PRIME = 2**127 - 1  # a Mersenne prime: a real field of the same spirit


def _show(out: Callable[[str], None], title: str, shares: object, parts: list[np.ndarray]) -> None:
    out(f"  {title}: {shares}")
    for name, part in zip(WORKERS, parts):
        out(f"    {name:>13} holds {np.asarray(part).tolist()}")


def sharing_demo(out: Callable[[str], None] = print) -> None:
    """Print the sharing walkthrough: integers in Z_2^64, a large field, and fixed-point reals.

    Example:
        >>> lines = []
        >>> sharing_demo(lines.append)
        >>> [line for line in lines if "reconstruct(x + y)" in line][0]
        '  reconstruct(x + y) = [11, 22, 33, 44, 55]'
    """
    x_plain, y_plain = np.array([1, 2, 3, 4, 5]), np.array([10, 20, 30, 40, 50])
    out("== Additive secret sharing among three workers ==")
    out(f"  x = {x_plain.tolist()}, y = {y_plain.tolist()}; workers: {', '.join(WORKERS)}; ring Z_2^64")
    x, y = share(x_plain, 3), share(y_plain, 3)
    _show(out, "share(x, 3)", x, list(x))
    out("  Each share alone is uniform in Z_2^64: it says nothing about x.")
    z = x + y
    _show(out, "x + y, computed by each worker on its own shares", z, list(z))
    out(f"  reconstruct(x + y) = {Z2_64.lift(reconstruct(z)).tolist()}")

    out("\n== The same in a large prime field ==")
    field = Ring.prime(LARGE_PRIME)
    out(f"  The tutorial's Q = {TUTORIAL_Q} is not prime (it is divisible by 3): "
        f"Ring(Q) works for sharing, Ring.prime(Q) refuses it. Here: Ring.prime(2**127 - 1).")
    xf, yf = share(x_plain, 3, ring=field), share(y_plain, 3, ring=field)
    _show(out, "share(x, 3, ring=Ring.prime(2**127 - 1))", xf, list(xf))
    out(f"  reconstruct(x + y) = {field.lift(reconstruct(xf + yf)).tolist()}")

    out("\n== Fixed-point reals (base 2, 16 fractional bits, Z_2^64) ==")
    fp = FixedPoint()
    a, b = np.array([0.5, -1.25, 3.14159]), np.array([2.0, 0.75, -0.00001])
    xa, xb = share(fp.encode(a), 3), share(fp.encode(b), 3)
    out(f"  a = {a.tolist()}, b = {b.tolist()}")
    total = fp.decode(reconstruct(xa + xb))
    out(f"  decode(reconstruct(share(encode(a)) + share(encode(b)))) = {total.tolist()}")
    out(f"  |error| <= 2 * 1/(2 * 2**16) = {1 / 2**16:.3g} (one rounding per encoded input): "
        f"max error {np.max(np.abs(total - (a + b))):.3g}")
