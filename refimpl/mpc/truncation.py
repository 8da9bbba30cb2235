"""Truncation of fixed-point products on shares: local (2 parties) and dealer-assisted (any n)."""

from __future__ import annotations

import numpy as np

from refimpl.errors import PartyCountError, ShapeMismatchError
from refimpl.mpc.arithmetic import check_pair, with_public
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Dealer, Triple, check_divisor, check_frac_bits
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares

__all__ = [
    "divide",
    "divide_local",
    "division_offset",
    "division_parts",
    "division_range",
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
    undefined. This is :func:`divide` by ``2**frac_bits``.

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
    return divide(x, 2 ** int(frac_bits), dealer, channel, pair=pair)


def divide(x: Shares, divisor: int, dealer: Dealer, channel: Channel | None = None, *,
           pair: Triple | None = None) -> Shares:
    """Dealer-assisted division by a public positive integer ``divisor`` (e.g. ``10**3``), any ``n``, one round.

    For every signed ``x`` in :func:`division_range` (``[-2**(l-2), 2**(l-1) - B)`` with ``B`` the multiple of
    ``divisor`` at or above ``2**(l-2)``: at least ``[-2**(l-2), 2**(l-2) - divisor)``) the result is
    ``floor(x / d)`` or ``floor(x / d) + 1``, never anything else; the ``+1`` happens with probability
    ``(x mod d) / d`` (unbiased stochastic rounding). Outside that range the result is undefined.

    Protocol (generalising :func:`truncate`): ``y = x + B`` (``0 <= y < 2**(l-1)``), the dealer shares ``r``,
    ``r_hi = floor((r mod 2**(l-1)) / d)`` and ``r_msb = r >> (l-1)``; open ``c = y + r``. With ``c' = c mod
    2**(l-1)`` and the carry ``w = msb(c) xor r_msb``, ``y + r' = c' + 2**(l-1) w``, so
    ``floor(y / d) + [(C mod d) < (r' mod d)] = floor(C / d) - r_hi`` where ``C = c' + 2**(l-1) w``, and
    ``floor(C / d) = floor(c' / d) + w (floor((c' + 2**(l-1)) / d) - floor(c' / d))`` is linear in ``[w]``.

    Raises:
        RefimplError: a ring that is not Z_2^l (l <= 64).
        TypeError, ValueError: ``divisor`` is not an integer in ``[1, 2**(l-2)]``.
        RingMismatchError, PartyCountError, ShapeMismatchError: ``x`` does not match the dealer or ``pair``.

    Example:
        >>> from refimpl import share, Z2_64
        >>> z = divide(share([7000, -7001, 1999], 3), 1000, Dealer(3))
        >>> [v in (f, f + 1) for v, f in zip(Z2_64.lift(z.reconstruct()).tolist(), [7, -8, 1])]
        [True, True, True]
    """
    check_pair(x, x, dealer)
    d = check_divisor(x.ring, divisor)
    channel = channel or Channel()
    if pair is None:
        pair = dealer.div_pair(x.shape, d)
    elif pair.kind != "trunc" or pair.shapes != (x.shape,) or pair.divisor not in (None, d):
        raise ShapeMismatchError(f"{pair!r} does not fit a division by {d} of shape {x.shape}")
    r, r_hi, r_msb = channel.take(pair)
    (c,) = channel.open(x + division_offset(x.ring, d) + r)
    return with_public(x.ring, *division_parts(x.ring, d, c, r_hi.data, r_msb.data))


def divide_local(x: Shares, divisor: int) -> Shares:
    """Two-party local division by a public positive integer (SecureML's truncation, generalised).

    Party 0 computes ``floor(s0 / d)``, party 1 ``-floor((-s1 mod 2**l) / d)``. The result is ``floor(x / d)``
    or one more unless the shares wrap, which for a uniform share happens with probability exactly
    ``|x| / 2**l`` (:func:`local_truncation_failure_probability`), independent of ``d``; then it is off by
    about ``2**l / d``.

    Raises:
        PartyCountError: ``x`` is not shared between exactly two parties.
        RefimplError, TypeError, ValueError: the ring is not Z_2^l, or a bad divisor.

    Example:
        >>> from refimpl import Z2_64
        >>> x = Shares(Z2_64, np.array([[7003], [2**64 - 3]], dtype=np.uint64))   # 7000, shares wrap
        >>> Z2_64.lift(divide_local(x, 1000).reconstruct())
        array([7])
    """
    if x.n != 2:
        raise PartyCountError(f"local division works for exactly 2 parties, got {x.n}; use divide()")
    d = check_divisor(x.ring, divisor)
    ring = x.ring
    s0 = x.data[0].astype(np.uint64)
    s1 = ring.neg(x.data[1]).astype(np.uint64)
    t0 = (s0 // np.uint64(d)).astype(ring.dtype)
    t1 = ring.neg((s1 // np.uint64(d)).astype(ring.dtype))
    return Shares(ring, np.stack([t0, t1]))


def truncation_offset(ring: Ring) -> int:
    """The public offset ``2**(l-2)`` that party 0 adds before the opening of :func:`truncate`."""
    return 2 ** (ring.bits - 2)


def division_offset(ring: Ring, divisor: int) -> int:
    """The public offset ``B`` of :func:`divide`: the least multiple of ``divisor`` at or above ``2**(l-2)``."""
    return -(-(2 ** (ring.bits - 2)) // int(divisor)) * int(divisor)


def division_range(ring: Ring, divisor: int) -> tuple[int, int]:
    """The signed inputs ``[lo, hi)`` on which :func:`divide` is exact to ``floor(x / d)`` or one more.

    Example:
        >>> from refimpl import Z2_32
        >>> division_range(Z2_32, 2**16), division_range(Z2_32, 1000)
        ((-1073741824, 1073741824), (-1073741824, 1073741648))
    """
    return -(2 ** (ring.bits - 2)), 2 ** (ring.bits - 1) - division_offset(ring, divisor)


def truncation_parts(ring: Ring, frac_bits: int, c: np.ndarray, r_hi: np.ndarray,
                     r_msb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local step of :func:`truncate` after opening ``c``: ``(local, public)`` as in :func:`beaver_parts`.

    ``local = 2**(l-1-f) * r_msb * (1 - 2 msb(c)) - r_hi`` for every party, and party 0 adds
    ``public = 2**(l-1-f) * msb(c) + ((c mod 2**(l-1)) >> f) - 2**(l-2-f)``.
    """
    return division_parts(ring, 2 ** int(frac_bits), c, r_hi, r_msb)


def division_parts(ring: Ring, divisor: int, c: np.ndarray, r_hi: np.ndarray,
                   r_msb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local step of :func:`divide` after opening ``c``: ``(local, public)`` as in :func:`beaver_parts`.

    With ``c' = c mod 2**(l-1)``, ``lo = floor(c' / d)``, ``jump = floor((c' + 2**(l-1)) / d) - lo`` and the
    carry ``w = msb(c) + r_msb - 2 msb(c) r_msb``: ``local = jump * r_msb * (1 - 2 msb(c)) - r_hi`` for every
    party, and party 0 adds ``public = lo + jump * msb(c) - B / d``.
    """
    if ring.modulus == 2**64 and ring.dtype == np.uint64:
        return _division_parts_u64(int(divisor), np.asarray(c), np.asarray(r_hi), np.asarray(r_msb))
    l_bits, d = ring.bits, np.uint64(divisor)
    c = np.asarray(c).astype(np.uint64)
    c_msb = (c >> np.uint64(l_bits - 1)).astype(np.int64)
    c_low = c & np.uint64(2 ** (l_bits - 1) - 1)
    lo = c_low // d
    jump = (c_low + np.uint64(2 ** (l_bits - 1))) // d - lo  # c_low + 2**(l-1) < 2**l fits uint64
    jump_r = ring.reduce(jump) if ring.dtype != np.uint64 else jump
    local = ring.sub(ring.mul(ring.mul(r_msb, ring.reduce(1 - 2 * c_msb)), jump_r), r_hi)
    public = ring.add(ring.add(ring.reduce(lo), ring.mul(ring.reduce(c_msb), jump_r)),
                      ring.neg(ring.reduce(division_offset(ring, divisor) // divisor)))
    return local, public


def _division_parts_u64(divisor: int, c: np.ndarray, r_hi: np.ndarray,
                        r_msb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`division_parts` for Z_2^64 in native wrap-around uint64 arithmetic, with fewer passes (and shifts
    for a power-of-two divisor); the same values mod 2**64 (the known-answer vectors pin them)."""
    shape, local_shape = np.shape(c), np.shape(r_hi)  # r_hi, r_msb: one party's or stacked (n, *shape)
    lead = local_shape[: len(local_shape) - len(shape)]
    c = c.astype(np.uint64, copy=False).reshape(-1)  # flat: no NumPy scalars (their wrap-around warns)
    r_hi, r_msb = np.asarray(r_hi).reshape(*lead, -1), np.asarray(r_msb).reshape(*lead, -1)
    c_msb = c >> np.uint64(63)
    c_low = c & np.uint64(2**63 - 1)
    offset = np.uint64(division_offset_bits(64, divisor) // divisor)
    if divisor & (divisor - 1) == 0:
        f = np.uint64(divisor.bit_length() - 1)
        lo = c_low >> f
        jump: np.ndarray | np.uint64 = np.uint64(2 ** 63 // divisor)
    else:
        d = np.uint64(divisor)
        lo = c_low // d
        jump = (c_low + np.uint64(2**63)) // d - lo
    sign = np.uint64(1) - (c_msb << np.uint64(1))  # 1 - 2 msb(c): 1 or 2**64 - 1
    local = np.multiply(r_msb.astype(np.uint64, copy=False), np.multiply(sign, jump))
    local -= r_hi.astype(np.uint64, copy=False)
    public = np.multiply(c_msb, jump)
    public += lo
    public -= offset
    return local.reshape(local_shape), public.reshape(shape)


def division_offset_bits(bits: int, divisor: int) -> int:
    """:func:`division_offset` for a ring of ``bits`` bits."""
    return -(-(2 ** (bits - 2)) // int(divisor)) * int(divisor)
