"""n-of-n XOR (binary) secret sharing of 64-bit words: the sharing that boolean circuits run on.

A word ``x`` (uint64) is split into ``n`` words with ``x = s_0 ^ s_1 ^ ... ^ s_{n-1}``; ``s_1 .. s_{n-1}`` are
keystream words from derived keys and ``s_0 = x ^ s_1 ^ ...``. Each word carries 64 independent bits, so one
Beaver AND triple on words gives 64 ANDs at once (the bit packing of CrypTen and ABY).

Local operations: XOR of two sharings, XOR with a public word (party 0 applies it), AND with a public word and
logical shifts (every party applies them to its own share). AND of two sharings needs a crypto provider
(:func:`refimpl.mpc.comparison.and_`).

Example:
    >>> import numpy as np
    >>> x = share_binary(np.array([0b1100, 7], dtype=np.uint64), 3, key=bytes(16))
    >>> x
    BinaryShares(n=3, shape=(2,))
    >>> ((x ^ 0b1010) & 0b1111).reconstruct().tolist()
    [6, 13]
    >>> (x << 1).reconstruct().tolist(), (x >> 2).reconstruct().tolist()
    ([24, 14], [3, 1])

References:
    D. Demmler, T. Schneider, M. Zohner, "ABY - A Framework for Efficient Mixed-Protocol Secure Two-Party
    Computation", NDSS 2015.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key, check_party_axis, check_party_count, read_only_view
from refimpl.errors import PartyCountError, ShapeMismatchError
from refimpl.prg import Stream, derive_key, fresh_key

__all__ = ["BinaryShares", "share_binary"]

_U64 = np.dtype(np.uint64)


def _public_word(value: ArrayLike) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" and not (arr.dtype == object and arr.size == 0):
        raise TypeError(f"binary sharings combine with integer words, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"public words must be non-negative, got {arr.min()}")
    return arr.astype(_U64)


@dataclass(frozen=True, eq=False, repr=False)
class BinaryShares:
    """An immutable n-party XOR sharing of uint64 words, stacked as ``(n, *shape)``.

    Args:
        data: uint64 array of shape ``(n, *shape)``, ``n >= 2``; ``data[i]`` is party ``i``'s share.
    """

    data: np.ndarray

    def __post_init__(self) -> None:
        data = self.data
        if not isinstance(data, np.ndarray) or data.dtype != _U64:
            what = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
            raise TypeError(f"BinaryShares data must be a uint64 numpy array, got {what}")
        check_party_axis(data, "BinaryShares")
        object.__setattr__(self, "data", read_only_view(data))

    @property
    def n(self) -> int:
        """The number of parties."""
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the shared words."""
        return tuple(self.data.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of all ``n`` shares (8 per word per party)."""
        return int(self.data.nbytes)

    def __repr__(self) -> str:
        return f"BinaryShares(n={self.n}, shape={self.shape})"

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("BinaryShares do not convert to arrays; call .reconstruct() to open them")

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a sharing is secret; reconstruct it first")

    def reconstruct(self) -> np.ndarray:
        """Open the sharing: the XOR of all shares."""
        return np.bitwise_xor.reduce(self.data, axis=0)

    def _check(self, other: BinaryShares) -> None:
        if other.n != self.n:
            raise PartyCountError(f"cannot combine binary sharings among {self.n} and {other.n} parties")
        if other.shape != self.shape:
            raise ShapeMismatchError(f"cannot combine binary sharings of shapes {self.shape} and {other.shape}")

    def __xor__(self, other: Any) -> BinaryShares:
        if isinstance(other, BinaryShares):
            self._check(other)
            return BinaryShares(self.data ^ other.data)
        word = _public_word(other)
        data = self.data.copy()
        data[0] ^= word
        return BinaryShares(data)

    __rxor__ = __xor__

    def __and__(self, other: Any) -> BinaryShares:
        if isinstance(other, BinaryShares):
            raise TypeError("AND of two binary sharings needs a crypto provider: use refimpl.mpc.comparison.and_")
        return BinaryShares(self.data & _public_word(other))

    __rand__ = __and__

    def __invert__(self) -> BinaryShares:
        return self ^ np.uint64(2**64 - 1)

    def _shift(self, bits: Any) -> int:
        if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 0 <= int(bits) < 64:
            raise ValueError(f"shift amount must be an integer in [0, 64), got {bits!r}")
        return int(bits)

    def __lshift__(self, bits: int) -> BinaryShares:
        return BinaryShares(self.data << np.uint64(self._shift(bits)))

    def __rshift__(self, bits: int) -> BinaryShares:
        return BinaryShares(self.data >> np.uint64(self._shift(bits)))

    def __getitem__(self, index: Any) -> BinaryShares:
        """Select elements of the shared array (not parties): ``x[1:3]`` keeps every party's share of them."""
        index = index if isinstance(index, tuple) else (index,)
        return BinaryShares(self.data[(slice(None),) + index])


def share_binary(secret: ArrayLike, n: int, *, key: bytes | None = None) -> BinaryShares:
    """XOR-share uint64 words among ``n`` parties; the masks are keystream words (AES-128-CTR).

    Args:
        secret: non-negative integer words (any integer dtype, scalars and 0-d arrays included; negative values
            are refused).
        n: the number of parties, at least 2.
        key: 16 or 32 bytes, the master key of this sharing, or None for a fresh key from the OS.

    Returns:
        The sharing; the same key gives the same shares.

    Raises:
        TypeError: a non-integer secret.
        PartyCountError: ``n < 2``.
    """
    n = check_party_count(n)
    words = _public_word(secret)
    master = fresh_key(16) if key is None else check_key(key)
    data = np.empty((n, *words.shape), dtype=_U64)
    acc = words.copy()
    for party in range(1, n):
        # a slice, not data[party]: a 0-d secret's row would be a scalar (same bytes either way)
        Stream(derive_key(master, "refimpl/share-binary", party)).read_into(data[party : party + 1])
        acc ^= data[party]
    data[0] = acc
    return BinaryShares(data)
