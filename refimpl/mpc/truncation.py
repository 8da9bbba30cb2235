"""Truncation of fixed-point products on shares: local (2 parties) and dealer-assisted (any n)."""

from __future__ import annotations

import numpy as np

from refimpl.errors import PartyCountError, ShapeMismatchError
from refimpl.mpc.arithmetic import check_pair, with_public
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Dealer, Triple, check_frac_bits
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares

__all__ = [
    "local_truncation_failure_probability",
    "truncate",
    "truncate_local",
    "truncation_offset",
    "truncation_parts",
]



def truncate_local(x: Shares, frac_bits: int) -> Shares:
    """Two-party local truncation (SecureML): divide a sharing by ``2**frac_bits`` without communication.

    Party 0 shifts its share, party 1 shifts the negation of its share and negates back. With ``l`` ring bits and
    ``x`` the signed value, the result is ``floor(x / 2**f)`` or ``floor(x / 2**f) + 1`` unless ``x + (-s1 mod M)``
    leaves ``[0, M)``, which for a uniform share ``s1`` happens with probability exactly ``|x| / 2**l``
    (:func:`local_truncation_failure_probability`); then the result is off by about ``2**(l - f)``.

    Raises:
        PartyCountError: ``x`` is not shared between exactly two parties.
        ValueError: the ring is not Z_2^l, or ``frac_bits`` is outside ``[0, l - 2]``.

    Example:
        >>> from refimpl import Z2_64
        >>> x = Shares(Z2_64, np.array([[2**20 + 3], [2**64 - 3]], dtype=np.uint64))   # 2**20, shares wrap
        >>> Z2_64.lift(truncate_local(x, 16).reconstruct())
        array([16])
    """
    if x.n != 2:
        raise PartyCountError(f"local truncation works for exactly 2 parties, got {x.n}; use truncate()")
    check_frac_bits(x.ring, frac_bits)
    ring, f = x.ring, np.uint64(frac_bits)
    t0 = x.data[0] >> f.astype(x.data.dtype)
    t1 = ring.neg(ring.neg(x.data[1]) >> f.astype(x.data.dtype))
    return Shares(ring, np.stack([t0, t1]))


def local_truncation_failure_probability(value: float, ring_bits: int = 64) -> float:
    """Probability that :func:`truncate_local` fails on the integer ``value`` (signed, before truncation).

    Exactly ``|value| / 2**ring_bits`` for a uniform share; it does not depend on ``frac_bits``.

    Example:
        >>> local_truncation_failure_probability(2**52)        # |x| < 2**10 at 2 * 16 fractional bits
        0.000244140625
    """
    return min(1.0, abs(float(value)) / 2.0**ring_bits)


def truncate(x: Shares, frac_bits: int, dealer: Dealer, channel: Channel | None = None, *,
             pair: Triple | None = None) -> Shares:
    """Dealer-assisted truncation by ``2**frac_bits`` for any number of parties, in one round.

    For every signed ``x`` in ``[-2**(l-2), 2**(l-2))`` the result is ``floor(x / 2**f)`` or
    ``floor(x / 2**f) + 1`` (error below one unit in the last place, never a wrap), and the ``+1`` happens with
    probability ``(x mod 2**f) / 2**f`` (unbiased stochastic rounding). Outside that range the result is
    undefined.

    Protocol: with ``y = x + 2**(l-2)`` (so ``0 <= y < 2**(l-1)``) and the dealer's ``[r]``,
    ``[r_hi] = [(r mod 2**(l-1)) >> f]`` and ``[r_msb] = [r >> (l-1)]``, open ``c = y + r``; the carry into
    the top bit is ``w = msb(c) xor r_msb`` (linear in ``[r_msb]``) and
    ``[y >> f] ~ ((c mod 2**(l-1)) >> f) - [r_hi] + 2**(l-1-f) [w]``.

    Raises:
        ValueError: a ring that is not Z_2^l, or ``frac_bits`` outside ``[0, l - 2]``.
        RingMismatchError, PartyCountError: ``x`` does not match the dealer.

    Example:
        >>> from refimpl import share, Z2_64
        >>> x = share([5 * 2**16 + 2**15, -3 * 2**16], 4)
        >>> Z2_64.lift(truncate(x, 16, Dealer(4)).reconstruct()).tolist() in ([5, -3], [6, -3])
        True
    """
    check_pair(x, x, dealer)
    check_frac_bits(x.ring, frac_bits)
    channel = channel or Channel()
    if pair is None:
        pair = dealer.trunc_pair(x.shape, frac_bits)
    elif pair.kind != "trunc" or pair.shapes != (x.shape,):
        raise ShapeMismatchError(f"{pair!r} does not fit a truncation of shape {x.shape}")
    r, r_hi, r_msb = channel.take(pair)
    (c,) = channel.open(x + truncation_offset(x.ring) + r)
    return with_public(x.ring, *truncation_parts(x.ring, frac_bits, c, r_hi.data, r_msb.data))


def truncation_offset(ring: Ring) -> int:
    """The public offset ``2**(l-2)`` that party 0 adds before the opening of :func:`truncate`."""
    return 2 ** (ring.bits - 2)


def truncation_parts(ring: Ring, frac_bits: int, c: np.ndarray, r_hi: np.ndarray,
                     r_msb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local step of :func:`truncate` after opening ``c``: ``(local, public)`` as in :func:`beaver_parts`.

    ``local = 2**(l-1-f) * r_msb * (1 - 2 msb(c)) - r_hi`` for every party, and party 0 adds
    ``public = 2**(l-1-f) * msb(c) + ((c mod 2**(l-1)) >> f) - 2**(l-2-f)``.
    """
    l_bits = ring.bits
    c = np.asarray(c).astype(np.uint64)
    c_msb = (c >> np.uint64(l_bits - 1)).astype(np.int64)
    c_low_hi = (c & np.uint64(2 ** (l_bits - 1) - 1)) >> np.uint64(frac_bits)
    top = ring.dtype.type(2 ** (l_bits - 1 - frac_bits))
    local = ring.sub(ring.mul(ring.mul(r_msb, ring.reduce(1 - 2 * c_msb)), top), r_hi)
    public = ring.add(ring.mul(ring.reduce(c_msb), top),
                      ring.sub(ring.reduce(c_low_hi), ring.reduce(truncation_offset(ring) >> frac_bits)))
    return local, public
