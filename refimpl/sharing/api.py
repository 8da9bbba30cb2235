"""The public entry points of additive sharing: the backend (NumPy or JAX) is decided here, once.

:func:`share` looks at the secret's array type and calls the NumPy path (:func:`refimpl.sharing.additive.share_numpy`)
or the JAX path (:func:`refimpl.sharing.jax_sharing.share`); both give the same shares for the same key and cipher.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_party_count
from refimpl.backend import dispatch
from refimpl.prg import check_cipher
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.additive import Shares, check_ring, share_numpy

__all__ = ["share"]


def share(secret: ArrayLike, n: int, *, ring: Ring = Z2_64, key: bytes | None = None,
          prg: str = "aes128-ctr", out: np.ndarray | None = None) -> Shares:
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
        out: NumPy path only: a writeable, C-contiguous array of shape ``(n, *secret.shape)`` and ``ring.dtype``
            that receives the shares (the result's ``data`` is a read-only view of it). Reusing one buffer across
            calls skips the first-touch page faults of fresh memory, which cost about as much as the keystream;
            writing into ``out`` again changes the Shares returned before, so reuse it only when those are done.

    Returns:
        The :class:`Shares`; the same key always gives the same shares, bit for bit.

    Raises:
        TypeError: non-integer secret, non-Ring ring, non-bytes key.
        OutOfRangeError: a secret outside the ring's range.
        PartyCountError: ``n < 2``.
        KeyFormatError: a key that is not 16 or 32 bytes.
        ShapeMismatchError: ``out`` of the wrong shape (TypeError: wrong type or dtype; ValueError: not writeable,
            not contiguous, or overlapping the secret).
    """
    ring = check_ring(ring)
    prg = check_cipher(prg)
    n = check_party_count(n)
    if dispatch.is_jax(secret):  # JAX arrays and tracers: jax-backed Shares, bit-identical
        if out is not None:
            raise TypeError("share: out= takes a NumPy buffer; JAX arrays are immutable (JAX-backed shares are new)")
        from refimpl.sharing import jax_sharing

        return jax_sharing.share(secret, n, ring=ring, key=key, prg=prg)
    return share_numpy(secret, n, ring=ring, key=key, prg=prg, out=out)
