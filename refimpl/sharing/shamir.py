"""t-of-n Shamir secret sharing over a prime field Z_p, vectorised, with Lagrange reconstruction.

A secret ``s`` in Z_p is the constant term of a random polynomial ``f(X) = s + a_1 X + ... + a_{t-1} X^{t-1}``
whose coefficients are uniform in Z_p, drawn from a keyed cryptographic stream (:mod:`refimpl.prg`). Party ``i``
(evaluation point ``x_i``, by default ``x_i = i`` for ``i = 1..n``) holds ``f(x_i)``. Any ``t`` shares determine
``f`` and so ``s = f(0) = sum_i lambda_i f(x_i)`` with Lagrange coefficients
``lambda_i = prod_{j != i} x_j / (x_j - x_i) mod p``. Any ``t - 1`` shares are jointly uniform over Z_p^{t-1} and
independent of ``s``: for every candidate secret ``s'`` exactly one polynomial of degree ``< t`` passes through
``(0, s')`` and the ``t - 1`` points, so each ``s'`` is equally consistent with what ``t - 1`` parties see.

Arrays of secrets are shared element-wise in one vectorised pass; :func:`share_bytes` / :func:`reconstruct_bytes`
share byte strings (stream keys, X25519 private keys) as 16-bit limbs, which is how secure aggregation protects its
mask seeds.

Example:
    >>> from refimpl.sharing.shamir import shamir_share, shamir_reconstruct
    >>> sh = shamir_share([7, 42, 2**31 - 2], n=5, t=3, key=bytes(16))
    >>> sh
    ShamirShares(field=Ring.prime(2147483647), t=3, parties=(1, 2, 3, 4, 5), shape=(3,))
    >>> shamir_reconstruct(sh.subset([2, 4, 5]))
    array([         7,         42, 2147483646], dtype=uint64)
    >>> shamir_reconstruct(sh.subset([1, 3]))
    Traceback (most recent call last):
    ...
    refimpl.errors.ThresholdError: need at least t=3 shares to reconstruct, got 2 (parties [1, 3])

References:
    A. Shamir, "How to share a secret", Communications of the ACM 22(11), 1979.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key, check_party_count, describe
from refimpl.errors import NotAFieldError, PartyCountError, RingMismatchError, ShapeMismatchError, ThresholdError
from refimpl.prg import Stream, check_cipher, derive_key, fresh_key, key_length
from refimpl.ring import Ring

__all__ = [
    "DEFAULT_FIELD",
    "ShamirShares",
    "shamir_share",
    "shamir_reconstruct",
    "lagrange_coefficients",
    "combine",
    "share_bytes",
    "share_bytes_many",
    "reconstruct_bytes",
    "reconstruct_limbs_many",
]

DEFAULT_FIELD = Ring.prime(2**31 - 1)
"""Z_p with the Mersenne prime p = 2^31 - 1: elements are uint64 and products fit in 64 bits."""

_LIMB_BITS = 16  # byte strings travel as 16-bit limbs, which every field with p > 2**16 holds


def _check_field(field: Any) -> Ring:
    if not isinstance(field, Ring):
        raise TypeError(f"field must be a refimpl Ring, got {field!r} of type {type(field).__name__}")
    if not field.is_field:
        raise NotAFieldError(f"Shamir sharing needs a prime field; {field.modulus} is not prime (use Ring.prime)")
    return field


def _check_int(value: Any, what: str) -> int:
    if type(value) is int:  # the common case, without the ABC check below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {value!r} of type {type(value).__name__}")
    return int(value)


def _check_points(points: Iterable[Any], field: Ring) -> tuple[int, ...]:
    xs = tuple(_check_int(x, "an evaluation point") for x in points)
    bad = [x for x in xs if not 0 < x < field.modulus]
    if bad:
        raise ValueError(f"evaluation points must lie in [1, {field.modulus - 1}], got {bad[0]}")
    if len(set(xs)) != len(xs):
        dup = next(x for x in xs if xs.count(x) > 1)
        raise ValueError(f"evaluation points must be distinct, got {dup} twice in {list(xs)}")
    return xs


@dataclass(frozen=True, eq=False, repr=False)
class ShamirShares:
    """Shamir shares held by some parties: ``data[j]`` is the share of the party at evaluation point ``xs[j]``.

    Args:
        field: the prime field Z_p.
        threshold: t, the number of shares that reconstruct.
        xs: the parties' evaluation points (distinct, in ``[1, p - 1]``).
        data: shape ``(len(xs), *shape)``, dtype ``field.dtype``.
    """

    field: Ring
    threshold: int
    xs: tuple[int, ...]
    data: np.ndarray

    def __post_init__(self) -> None:
        _check_field(self.field)
        object.__setattr__(self, "xs", _check_points(self.xs, self.field))
        t = _check_int(self.threshold, "threshold")
        if t < 1:
            raise ThresholdError(f"threshold must be at least 1, got {t}")
        if not isinstance(self.data, np.ndarray) or self.data.dtype != self.field.dtype:
            got = self.data.dtype if isinstance(self.data, np.ndarray) else type(self.data).__name__
            raise TypeError(f"Shamir share data must be a numpy array of dtype {self.field.dtype}, got {got}")
        if self.data.ndim < 1 or self.data.shape[0] != len(self.xs):
            raise ShapeMismatchError(
                f"Shamir share data has leading axis {self.data.shape[:1]}, expected one row per party ({len(self.xs)})"
            )
        view = self.data.view()
        view.flags.writeable = False
        object.__setattr__(self, "data", view)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the shared secret."""
        return tuple(self.data.shape[1:])

    def share_of(self, party: int) -> np.ndarray:
        """The share of the party at evaluation point ``party``."""
        if party not in self.xs:
            raise KeyError(f"no share for party {party}; parties are {list(self.xs)}")
        return self.data[self.xs.index(party)]

    def subset(self, parties: Sequence[int]) -> ShamirShares:
        """The shares of the parties at the given evaluation points (what those parties could pool)."""
        missing = [p for p in parties if p not in self.xs]
        if missing:
            raise KeyError(f"no share for parties {missing}; parties are {list(self.xs)}")
        rows = [self.xs.index(p) for p in parties]
        return ShamirShares(self.field, self.threshold, tuple(parties), self.data[rows])

    def __repr__(self) -> str:
        return f"ShamirShares(field={self.field!r}, t={self.threshold}, parties={self.xs}, shape={self.shape})"


def _evaluate(coeffs: np.ndarray, xs: Sequence[int], field: Ring) -> np.ndarray:
    """``f(x)`` for every point (rows) and every coefficient column: Horner's rule, vectorised over both.

    ``coeffs`` has shape ``(t, *shape)`` with ``coeffs[0]`` the secret. For ``p < 2^32`` (uint64 elements) each
    step is ``(acc * x + c) mod p`` in place: ``(p - 1)^2 + (p - 1) < 2^64``, so nothing wraps and the result is
    the field arithmetic's, bit for bit.
    """
    shape = coeffs.shape[1:]
    if field.dtype == np.uint64 and field.modulus < 2**32:
        pts = np.array(list(xs), dtype=np.uint64).reshape((len(xs),) + (1,) * len(shape))
        out = np.empty((len(xs), *shape), dtype=np.uint64)
        out[...] = coeffs[-1]
        p = np.uint64(field.modulus)
        for c in coeffs[-2::-1]:
            np.multiply(out, pts, out=out)
            np.add(out, c, out=out)
            np.remainder(out, p, out=out)
        return out
    pts = np.array(list(xs), dtype=field.dtype if field.dtype != object else object)
    pts = pts.reshape((len(xs),) + (1,) * len(shape))
    acc = np.broadcast_to(coeffs[-1], (len(xs), *shape)).copy()
    for c in coeffs[-2::-1]:
        acc = field.add(field.mul(acc, pts), np.broadcast_to(c, acc.shape))
    return np.asarray(acc, dtype=field.dtype)


def _check_sharing(field: Any, prg: Any, n: Any, t: Any, points: Sequence[int] | None
                   ) -> tuple[Ring, str, int, tuple[int, ...]]:
    """Validate the public parameters of a sharing; return (field, prg, t, evaluation points)."""
    field = _check_field(field)
    prg = check_cipher(prg)
    n, t = _check_int(n, "n"), _check_int(t, "t")
    n = check_party_count(n, minimum=1)  # at most MAX_PARTIES: n = 10**7 is refused, not attempted
    if n >= field.modulus:
        raise PartyCountError(f"{n} parties need {n} distinct nonzero points, but {field!r} has {field.modulus - 1}")
    if not 1 <= t <= n:
        raise ThresholdError(f"threshold must satisfy 1 <= t <= n={n}, got t={t}")
    xs = tuple(range(1, n + 1)) if points is None else _check_points(points, field)
    if len(xs) != n:
        raise PartyCountError(f"got {len(xs)} evaluation points for n={n} parties")
    return field, prg, t, xs


def _coefficients(s: np.ndarray, t: int, field: Ring, key: bytes | None, prg: str) -> np.ndarray:
    """The ``(t, *s.shape)`` polynomial coefficients: the secret, then ``t - 1`` rows from the key's stream."""
    master = fresh_key(16) if key is None else check_key(key)
    stream = Stream(derive_key(master, "refimpl/shamir", length=key_length(prg)), cipher=prg)
    coeffs = np.empty((t, *s.shape), dtype=field.dtype)
    coeffs[0] = s
    if t > 1:
        coeffs[1:] = field.sample(stream, (t - 1, *s.shape))
    return coeffs


def shamir_share(secret: ArrayLike, n: int, t: int, *, field: Ring = DEFAULT_FIELD, key: bytes | None = None,
                 points: Sequence[int] | None = None, prg: str = "aes128-ctr") -> ShamirShares:
    """Split every element of ``secret`` into ``n`` Shamir shares, any ``t`` of which reconstruct it.

    The ``t - 1`` random coefficients of each element's polynomial are drawn, uniformly and without modulo bias,
    from the stream keyed by ``derive_key(key, "refimpl/shamir")``.

    Args:
        secret: integers in ``[-floor(p/2), p)`` (negatives read in the signed view), any shape.
        n: the number of parties, ``n >= 1``.
        t: the threshold, ``1 <= t <= n``.
        field: the prime field (default Z_p with p = 2^31 - 1).
        key: 16 or 32 bytes making the sharing reproducible (never reuse one for two secrets); None: fresh from the
            OS.
        points: the parties' evaluation points (default ``1..n``); distinct, in ``[1, p - 1]``.
        prg: ``"aes128-ctr"`` or ``"chacha20"``.

    Returns:
        :class:`ShamirShares` with ``data`` of shape ``(n, *secret.shape)``.

    Raises:
        TypeError: non-integer ``n``, ``t`` or secret.
        NotAFieldError: ``field`` is not a prime field.
        PartyCountError: ``n < 1``, or more parties than nonzero field elements.
        ThresholdError: ``t < 1`` or ``t > n``.
        OutOfRangeError: a secret outside the field's range.
        ValueError: repeated or out-of-range evaluation points.
    """
    field, prg, t, xs = _check_sharing(field, prg, n, t, points)
    coeffs = _coefficients(field.element(secret), t, field, key, prg)
    return ShamirShares(field, t, xs, _evaluate(coeffs, xs, field))


def lagrange_coefficients(xs: Sequence[int], field: Ring = DEFAULT_FIELD, at: int = 0) -> list[int]:
    """Lagrange coefficients ``lambda_i = prod_{j != i} (at - x_j) / (x_i - x_j) mod p`` (interpolation at ``at``).

    Example:
        >>> lagrange_coefficients([1, 2], Ring.prime(7))      # f(0) = 2 f(1) - f(2)
        [2, 6]
    """
    field = _check_field(field)
    pts = _check_points(xs, field)
    p = field.modulus
    out = []
    for i, xi in enumerate(pts):
        num, den = 1, 1
        for j, xj in enumerate(pts):
            if j != i:
                num = num * (at - xj) % p
                den = den * (xi - xj) % p
        out.append(num * pow(den, -1, p) % p)
    return out


def shamir_reconstruct(shares: ShamirShares) -> np.ndarray:
    """The secret ``f(0)`` from at least ``t`` shares (exactly the first ``t`` given are used).

    Raises:
        TypeError: ``shares`` is not :class:`ShamirShares`.
        ThresholdError: fewer than ``t`` shares.
    """
    if not isinstance(shares, ShamirShares):
        raise TypeError(f"shamir_reconstruct takes ShamirShares, got {type(shares).__name__}")
    t = shares.threshold
    if len(shares.xs) < t:
        raise ThresholdError(
            f"need at least t={t} shares to reconstruct, got {len(shares.xs)} (parties {list(shares.xs)})"
        )
    field = shares.field
    xs, rows = shares.xs[:t], shares.data[:t]
    lam = lagrange_coefficients(xs, field)
    total = field.zeros(shares.shape)
    for coef, row in zip(lam, rows):
        c = np.asarray(coef, dtype=field.dtype)
        total = field.add(total, field.mul(row, c))
    return np.asarray(total, dtype=field.dtype)


def combine(parts: Sequence[ShamirShares]) -> ShamirShares:
    """Put together shares of one sharing held by different parties (e.g. received one by one).

    Raises:
        RingMismatchError: different fields; ThresholdError: different thresholds; ShapeMismatchError: shapes.
    """
    if not parts:
        raise ValueError("combine needs at least one ShamirShares")
    first = parts[0]
    for other in parts[1:]:
        if other.field != first.field:
            raise RingMismatchError(f"cannot combine Shamir shares over {first.field!r} and {other.field!r}")
        if other.threshold != first.threshold:
            raise ThresholdError(f"cannot combine Shamir shares with t={first.threshold} and t={other.threshold}")
        if other.shape != first.shape:
            raise ShapeMismatchError(f"cannot combine Shamir shares of shapes {first.shape} and {other.shape}")
    xs = tuple(x for p in parts for x in p.xs)
    return ShamirShares(first.field, first.threshold, xs, np.concatenate([p.data for p in parts]))


def _limbs(secret: Any, field: Ring) -> np.ndarray:
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError(f"share_bytes takes bytes, got {type(secret).__name__}")
    if len(secret) % 2:
        raise ValueError(f"share_bytes takes an even number of bytes, got {len(secret)}")
    if field.modulus <= 2**_LIMB_BITS:
        raise ValueError(f"{field!r} is too small for 16-bit limbs (needs p > 65536)")
    return np.frombuffer(bytes(secret), dtype="<u2").astype(np.int64)


def share_bytes(secret: bytes, n: int, t: int, *, key: bytes | None = None, field: Ring = DEFAULT_FIELD,
                points: Sequence[int] | None = None, prg: str = "aes128-ctr") -> ShamirShares:
    """Shamir-share a byte string (a stream key, an X25519 private key) as little-endian 16-bit limbs.

    Example:
        >>> sh = share_bytes(b"sixteen byte key", 4, 2, key=bytes(16))
        >>> sh.shape, reconstruct_bytes(sh.subset([3, 1]))
        ((8,), b'sixteen byte key')
    """
    return shamir_share(_limbs(secret, field), n, t, field=field, key=key, points=points, prg=prg)


def share_bytes_many(secrets: Sequence[bytes], n: int, t: int, *, keys: Sequence[bytes | None] | None = None,
                     field: Ring = DEFAULT_FIELD, points: Sequence[int] | None = None,
                     prg: str = "aes128-ctr") -> ShamirShares:
    """Shamir-share several byte strings among the same parties in one pass: their limbs side by side.

    Secret ``i``'s polynomial coefficients come from ``keys[i]`` exactly as :func:`share_bytes` draws them (fresh
    OS keys when ``keys`` is None or an entry is None), and every polynomial is evaluated in one vectorised Horner
    pass; so the columns of secret ``i`` are bit for bit ``share_bytes(secrets[i], n, t, key=keys[i], ...).data``
    (secure aggregation shares a client's mask key and self-mask seed this way).

    Returns:
        :class:`ShamirShares` of shape ``(sum of the secrets' limb counts,)``; secret ``i``'s limbs follow those of
        secret ``i - 1``.

    Raises:
        ValueError: ``keys`` of another length than ``secrets``, no secrets; otherwise as :func:`share_bytes`.

    Example:
        >>> sh = share_bytes_many([b"key one!", b"seed"], 3, 2, keys=[bytes(16), bytes(range(16))])
        >>> sh.shape, reconstruct_bytes(sh.subset([1, 3]))
        ((6,), b'key one!seed')
        >>> bool((sh.data[:, :4] == share_bytes(b"key one!", 3, 2, key=bytes(16)).data).all())
        True
    """
    field, prg, t, xs = _check_sharing(field, prg, n, t, points)
    if not secrets:
        raise ValueError("share_bytes_many needs at least one secret")
    keys = [None] * len(secrets) if keys is None else list(keys)
    if len(keys) != len(secrets):
        raise ValueError(f"got {len(keys)} keys for {len(secrets)} secrets")
    # 16-bit limbs are elements of every field _limbs accepts (p > 2^16): the range check is only needed to
    # build Python-int elements for the object-dtype fields
    def element(secret: bytes) -> np.ndarray:
        limbs = _limbs(secret, field)
        return limbs.astype(np.uint64) if field.dtype == np.uint64 else field.element(limbs)

    coeffs = np.concatenate([_coefficients(element(sec), t, field, k, prg) for sec, k in zip(secrets, keys)], axis=1)
    return ShamirShares(field, t, xs, _evaluate(coeffs, xs, field))


def reconstruct_bytes(shares: ShamirShares) -> bytes:
    """Inverse of :func:`share_bytes`.

    Raises:
        ThresholdError: fewer than ``t`` shares.
        ValueError: the reconstructed limbs are not 16-bit values (shares that do not belong together).
    """
    limbs = shamir_reconstruct(shares)
    vals = [int(v) for v in np.asarray(limbs).ravel()]
    if any(v >= 2**_LIMB_BITS for v in vals):
        raise ValueError(
            f"reconstructed limbs {describe(np.asarray(limbs))} are not 16-bit values: the shares are inconsistent"
        )
    return np.array(vals, dtype="<u2").tobytes()


def reconstruct_limbs_many(xs: Sequence[int], data: np.ndarray, field: Ring = DEFAULT_FIELD) -> np.ndarray:
    """``f(0)`` of many sharings held by the same parties, from exactly their shares (``t = len(xs)``) at once.

    ``data`` has shape ``(len(xs), *shape)``: ``data[j]`` holds the shares of the party at ``xs[j]``, every
    element of ``shape`` its own sharing (e.g. ``(secrets, limbs)``). Bit for bit ``shamir_reconstruct`` of each
    sharing with those ``t`` shares (for ``p < 2^32``: ``(acc + share * lambda) mod p`` in uint64, exact); the
    shares must already be field elements (the caller validated them).

    Example:
        >>> sh = share_bytes_many([b"ab", b"cd"], 3, 2, keys=[bytes(16), bytes(range(16))])
        >>> reconstruct_limbs_many([3, 2], sh.subset([3, 2]).data).tolist() == [25185, 25699]
        True
    """
    field = _check_field(field)
    xs = _check_points(xs, field)
    arr = np.asarray(data)
    if arr.ndim < 1 or arr.shape[0] != len(xs):
        raise ShapeMismatchError(f"share data has leading axis {arr.shape[:1]}, expected one row per party ({len(xs)})")
    lam = lagrange_coefficients(xs, field)
    if field.dtype == np.uint64 and field.modulus < 2**32:
        p = np.uint64(field.modulus)
        rows = arr.astype(np.uint64, copy=False)
        total = np.zeros(arr.shape[1:], dtype=np.uint64)
        prod = np.empty_like(total)
        for coef, row in zip(lam, rows):
            np.multiply(row, np.uint64(coef), out=prod)
            np.add(total, prod, out=total)
            np.remainder(total, p, out=total)
        return total
    return shamir_reconstruct(ShamirShares(field, len(xs), xs, arr.astype(field.dtype)))
