"""The public entry points of additive sharing: the backend (NumPy or JAX) is decided here, once.

:func:`share` looks at the secret's array type and calls the NumPy path (:func:`refimpl.sharing.additive.share_numpy`)
or the JAX path (:func:`refimpl.sharing.jax_sharing.share`); both give the same shares for the same key and cipher.
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from refimpl._checks import check_party_count
from refimpl.backend import dispatch
from refimpl.prg import check_cipher
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.additive import Shares, check_ring, share_numpy

__all__ = ["share"]


def share(secret: ArrayLike, n: int, *, ring: Ring = Z2_64, key: bytes | None = None,
          prg: str = "aes128-ctr") -> Shares:
    """Split ``secret`` into ``n`` additive shares over ``ring``.

    Args:
        secret: integers in ``[-floor(M/2), M)`` (negatives are read in the signed view); encode reals first with
            :class:`~refimpl.encoding.FixedPoint`. A JAX array gives jax-backed Shares, bit-identical to NumPy's
            with ``prg="chacha20"`` and usable under ``jax.jit`` / ``jax.vmap``
            (see :mod:`refimpl.sharing.jax_sharing`).
        n: number of parties, at least 2.
        ring: the ring (default Z_2^64).
        key: 16 or 32 bytes, the master key of this sharing (for reproducible shares; never reuse a key for two
            secrets), or None for a fresh key from the OS.
        prg: ``"aes128-ctr"`` (default) or ``"chacha20"``.

    Returns:
        The :class:`Shares`; the same key always gives the same shares, bit for bit.

    Raises:
        TypeError: non-integer secret, non-Ring ring, non-bytes key.
        OutOfRangeError: a secret outside the ring's range.
        PartyCountError: ``n < 2``.
        KeyFormatError: a key that is not 16 or 32 bytes.
    """
    ring = check_ring(ring)
    prg = check_cipher(prg)
    n = check_party_count(n)
    if dispatch.is_jax(secret):  # JAX arrays and tracers: jax-backed Shares, bit-identical
        from refimpl.sharing import jax_sharing

        return jax_sharing.share(secret, n, ring=ring, key=key, prg=prg)
    return share_numpy(secret, n, ring=ring, key=key, prg=prg)
