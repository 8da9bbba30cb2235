"""Pieces shared by the secure-aggregation protocols: the fixed-point / integer :class:`Codec` and sizing checks.

Both protocols count their traffic in the one ledger of the package, :class:`refimpl.net.accounting.Ledger`
(``record(sender, receiver, kind, nbytes, round=r)``); a message's size there is its payload plus a fixed
:data:`HEADER_BYTES` = 16-byte header (round number 8 bytes, sender and receiver ids 4 bytes each), added by the
protocol driver that records it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from refimpl.encoding import FixedPoint
from refimpl.errors import ConfigurationError, KeyReuseError, OutOfRangeError, ProtocolError, ShapeMismatchError
from refimpl.prg import check_cipher
from refimpl.ring import Z2_64, Ring

__all__ = ["HEADER_BYTES", "Codec", "ScaledPieces", "check_clip", "check_distinct_keys", "check_prg", "check_round",
           "check_sum_fits"]

HEADER_BYTES = 16
"""Bytes of a message's header on the wire: round number (8), sender id (4), receiver id (4)."""


def check_distinct_keys(keys: Mapping[int, bytes] | None, clients: Iterable[int]) -> None:
    """Raise :class:`KeyReuseError` naming the clients if two of ``clients`` were given the same master key."""
    if keys is None:
        return
    seen: dict[bytes, int] = {}
    for c in clients:
        k = bytes(keys[c])
        if k in seen:
            raise KeyReuseError(f"clients {seen[k]} and {c} were given the same master key; one key must never "
                                "pad two secrets (give each client its own key, or None for fresh OS keys)")
        seen[k] = c


def check_prg(prg: Any) -> str:
    """``prg`` if it names a stream cipher refimpl has, else :class:`ConfigurationError` listing them."""
    try:
        return check_cipher(prg)
    except ValueError as err:
        raise ConfigurationError(str(err)) from None


def check_round(expected: int, got: Any, what: str) -> None:
    """Raise :class:`ProtocolError` unless ``got`` is the round number ``expected``."""
    if isinstance(got, bool) or not isinstance(got, numbers.Integral) or int(got) != expected:
        raise ProtocolError(f"{what} carries round {got!r}, but this party is in round {expected}")


def check_clip(clip: Any) -> float:
    """Return ``clip`` as a float, or raise :class:`ConfigurationError` unless it is positive and finite."""
    if isinstance(clip, bool) or not isinstance(clip, numbers.Real):
        raise TypeError(f"clip must be a real number, got {clip!r} of type {type(clip).__name__}")
    c = float(clip)
    if not (math.isfinite(c) and c > 0):
        raise ConfigurationError(f"clip range must be positive and finite, got clip={clip!r}")
    return c


def check_sum_fits(num_clients: int, per_client: int, ring: Ring, *, signed: bool, what: str) -> None:
    """Check that a sum of ``num_clients`` values of magnitude <= ``per_client`` cannot wrap in ``ring``.

    Signed values (fixed point) need ``K * B <= floor((M - 1) / 2)``; unsigned ones (quantized, in ``[0, B]``) need
    ``K * B <= M - 1``; with ``B = 2^(b-1)`` resp. ``2^b - 1`` this is the ``K * 2^b <= M`` rule.

    Raises:
        ConfigurationError: the sum could wrap, naming K, the per-client bound and the ring.
    """
    limit = (ring.modulus - 1) // 2 if signed else ring.modulus - 1
    if num_clients * per_client > limit:
        bits = math.log2(2 * per_client + 1 if signed else per_client + 1)
        raise ConfigurationError(
            f"sizing: {num_clients} clients x per-client bound {per_client} ({what}, {bits:.1f} bits) = "
            f"{num_clients * per_client} exceeds {'the signed range' if signed else 'the range'} {limit} of "
            f"{ring!r}, so the sum could wrap; use fewer clients, a smaller clip / fewer bits, or a larger ring"
        )


class ScaledPieces(NamedTuple):
    """A pre-encoded fixed-point contribution handed over unencoded: float ``pieces`` (e.g. a model's leaves, 1-D)
    and a ``factor`` >= 0 (weight times ``2^frac_bits``). Its encoding is :meth:`encoded` -- what
    :meth:`Codec.check_encoded` then checks -- and a client encodes, checks and masks it in one fused pass
    (:func:`refimpl.secagg.fused.encode_mask`), bit for bit the same share.

    ``bounds``: the pieces' exact (minimum, maximum), in their dtype, when the caller has them already (saves a
    pass); ``out``: a C-contiguous buffer of ``length`` ring words the share is written into, reused round after
    round by its owner (it goes to the aggregator with the message: do not change it before the round ends).

    Example:
        >>> x = ScaledPieces((np.array([0.25, -0.5], np.float32), np.array([1.0])), 2.0**4)
        >>> x.encoded().tolist()
        [4, -8, 16]
    """

    pieces: tuple[np.ndarray, ...]
    factor: float
    bounds: tuple[Any, Any] | None = None
    out: np.ndarray | None = None

    @property
    def size(self) -> int:
        """The number of coordinates (the pieces' sizes added)."""
        return sum(int(np.size(p)) for p in self.pieces)

    def encoded(self) -> np.ndarray:
        """The unfused definition: ``rint(concat(pieces) * factor)`` computed in float64, as int64.

        Raises:
            OutOfRangeError: a piece holds NaN or infinity (it has no encoding).
        """
        u = np.concatenate([np.asarray(p).reshape(-1) for p in self.pieces]) if self.pieces else np.zeros(0)
        t = np.multiply(u, np.float64(self.factor), dtype=np.float64)
        if not np.isfinite(t).all():
            raise OutOfRangeError(f"a contribution holds {u[~np.isfinite(t)][0]!r} (times {self.factor!r}): not "
                                  "finite, no fixed-point encoding")
        return np.rint(t).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class Codec:
    """How contributions become ring elements, and how the total comes back; sizing-checked when constructed.

    Two encodings: **fixed point** (default): reals with ``|x| <= clip`` encode as ``round(x * 2^frac_bits)``
    (signed); **integers** (``bits`` set): integers in ``[0, 2^bits)`` (e.g. from stochastic quantization) are used
    as they are. ``headroom`` widens the per-client integer bound (for noise added after encoding).

    Args:
        length: d, the number of coordinates of every contribution.
        max_clients: K, the most clients summed in one round.
        clip: fixed point: the largest ``|x|`` of any coordinate (positive, finite).
        frac_bits: fixed point: fractional bits.
        bits: integer mode: contributions lie in ``[0, 2^bits)``.
        headroom: extra integer magnitude allowed per client and coordinate.
        ring: the ring of the shares / masked inputs.

    Raises:
        ConfigurationError: ``K * B`` does not fit the ring (the ``K * 2^b <= M`` rule), a clip that is not
            positive and finite, ``bits < 1``, ``length < 1``, ``headroom < 0``.

    Example:
        >>> Codec(length=4, max_clients=2**20, clip=1.0, frac_bits=16, ring=Ring(2**32))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        refimpl.errors.ConfigurationError: sizing: 1048576 clients x per-client bound 65536 ... of Z2_32, ...
    """

    length: int
    max_clients: int
    clip: float | None = 1.0
    frac_bits: int = 16
    bits: int | None = None
    headroom: int = 0
    ring: Ring = Z2_64

    def __post_init__(self) -> None:
        if not isinstance(self.ring, Ring):
            raise TypeError(f"ring must be a refimpl Ring, got {self.ring!r}")
        for name in ("length", "max_clients", "headroom"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {v!r}")
        if self.length < 1:
            raise ConfigurationError(f"length must be at least 1, got {self.length}")
        if self.max_clients < 1:
            raise ConfigurationError(f"max_clients must be at least 1, got {self.max_clients}")
        if self.headroom < 0:
            raise ConfigurationError(f"headroom must be >= 0, got {self.headroom}")
        if self.bits is not None:
            if isinstance(self.bits, bool) or not isinstance(self.bits, numbers.Integral) or self.bits < 1:
                raise ConfigurationError(f"bits must be a positive integer, got {self.bits!r}")
            check_sum_fits(self.max_clients, self.per_client_bound, self.ring, signed=False,
                           what=f"integers in [0, 2^{self.bits}) + headroom {self.headroom}")
        else:
            clip = check_clip(self.clip)
            try:
                _ = self.fixed_point  # validates frac_bits against the ring
            except ValueError as err:
                raise ConfigurationError(f"frac_bits={self.frac_bits}: {err}") from None
            check_sum_fits(self.max_clients, self.per_client_bound, self.ring, signed=True,
                           what=f"clip {clip} x 2^{self.frac_bits} + headroom {self.headroom}")

    @property
    def fixed_point(self) -> FixedPoint:
        """The fixed-point encoding (fixed-point mode)."""
        return FixedPoint(frac_bits=self.frac_bits, ring=self.ring)

    @property
    def per_client_bound(self) -> int:
        """B: the largest magnitude of one client's encoded coordinate (``2^bits - 1`` or ``ceil(clip 2^f)``),
        plus ``headroom``."""
        if self.bits is not None:
            return 2 ** int(self.bits) - 1 + self.headroom
        return math.ceil(float(self.clip) * 2 ** self.frac_bits) + self.headroom  # type: ignore[arg-type]

    @property
    def encoded_nbytes(self) -> int:
        """Bytes of one encoded contribution: ``length`` ring elements."""
        return self.length * self.ring.element_bytes

    def encode(self, values: ArrayLike) -> np.ndarray:
        """Encode one contribution (reals with ``|x| <= clip``, or integers in ``[0, 2^bits)``), range-checked.

        Raises:
            ShapeMismatchError: not ``length`` coordinates.
            OutOfRangeError: a coordinate beyond the clip range / bit width (never wrapped or clipped silently).
        """
        x = np.asarray(values)
        if x.shape != (self.length,):
            raise ShapeMismatchError(f"a contribution has shape ({self.length},), got {x.shape}")
        if self.bits is not None:
            if x.dtype.kind not in "iu":
                raise TypeError(f"integer mode takes integer contributions, got dtype {x.dtype}")
            bad = (x < 0) | (x >= 2**self.bits)
            if bad.any():
                raise OutOfRangeError(f"value {x[bad][0].item()} is outside [0, 2^{self.bits})")
            return self.ring.element(x.astype(np.int64))
        xf = np.asarray(x, dtype=np.float64)  # no copy for float64 input: encode below only reads it
        clip = float(self.clip)  # type: ignore[arg-type]
        if xf.size and not (-clip <= np.minimum.reduce(xf) and np.maximum.reduce(xf) <= clip):  # NaN fails too
            bad = ~(np.abs(xf) <= clip)
            raise OutOfRangeError(f"value {xf[bad][0].item()!r} is outside the clip range [-{self.clip}, {self.clip}]")
        return self.fixed_point.encode(xf)

    def check_encoded(self, k: ArrayLike) -> np.ndarray:
        """Check pre-encoded integers (signed in fixed-point mode, ``[0, B]`` in integer mode) against the
        per-client bound B and return them as ring elements.

        Raises:
            OutOfRangeError: a value outside ``[-B, B]`` (fixed point) or ``[0, B]`` (integers).
        """
        arr = np.asarray(k)
        if arr.shape != (self.length,):
            raise ShapeMismatchError(f"a contribution has shape ({self.length},), got {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"encoded contributions are integers, got dtype {arr.dtype}")
        a = arr if arr.dtype == np.int64 else arr.astype(np.int64)  # ring.element below copies: no copy here
        lo, hi = (0 if self.bits is not None else -self.per_client_bound), self.per_client_bound
        if a.size and (np.minimum.reduce(a, axis=None) < lo or np.maximum.reduce(a, axis=None) > hi):
            bad = (a < lo) | (a > hi)
            fix = "fewer bits" if self.bits is not None else (
                f"clip updates to |x| <= {hi / 2**self.frac_bits:g} or use fewer fractional bits (frac_bits="
                f"{self.frac_bits})")
            raise OutOfRangeError(f"encoded value {a[bad][0]} is outside [{lo}, {hi}], the per-client bound that keeps "
                                  f"the sum of {self.max_clients} contributions inside {self.ring!r}: {fix}, fewer "
                                  "clients per round, or a larger ring")
        return self.ring.element(a)

    def mask_scaled(self, x: ScaledPieces, keys: list[bytes], prg: str) -> np.ndarray | None:
        """``check_encoded(x.encoded())`` minus the keystreams of ``keys`` (the share array of party 0), in one fused
        pass into ``x.out`` (or a new array); None where the fused pass does not apply (integer mode, a ring other
        than Z_2^32 / Z_2^64, a wrong shape or buffer, a value beyond the per-client bound, NaN): the caller then
        takes the unfused path, which raises what it raises.

        The range check uses the pieces' minimum and maximum only (:func:`refimpl.secagg.fused.scaled_bounds`):
        the same accept/refuse decision as :meth:`check_encoded` on every coordinate."""
        from refimpl.secagg import fused  # the kernels sit above the codec in this package

        words = self.ring.dtype
        if self.bits is not None or not fused.native(words) or x.size != self.length or not x.factor >= 0:
            return None
        out = x.out
        if out is not None and not (type(out) is np.ndarray and out.dtype == words and out.shape == (self.length,)
                                    and out.flags.c_contiguous and out.flags.writeable):
            return None
        bound = self.per_client_bound
        pieces = [np.asarray(p) for p in x.pieces]
        out = np.empty(self.length, words) if out is None else out
        if x.bounds is None and bound < fused.MAGIC_LIMIT:  # checked as the fused pass goes
            return out if fused.encode_mask(pieces, float(x.factor), out, keys, prg, bound=bound) else None
        if x.bounds is not None:
            lo, hi = x.bounds
        else:
            flat = [p.reshape(-1) for p in pieces if p.size]
            lo = np.array([np.minimum.reduce(p) for p in flat]).min()  # NaN propagates (Python's min would drop it)
            hi = np.array([np.maximum.reduce(p) for p in flat]).max()
        low, high = fused.scaled_bounds(lo, hi, x.factor)
        if not (-bound <= low and high <= bound):  # NaN fails too
            return None
        fused.encode_mask(pieces, float(x.factor), out, keys, prg, limit=max(abs(low), abs(high)))
        return out

    def decode_sum(self, total: np.ndarray) -> np.ndarray:
        """Decode a reconstructed total: reals (fixed point) or exact integers (integer mode)."""
        if self.bits is not None:
            return np.asarray(total).astype(np.int64) if self.ring.modulus <= 2**63 else np.asarray(total)
        return self.fixed_point.decode(total)
