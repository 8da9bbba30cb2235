"""n-of-n additive secret sharing over a ring, its homomorphic operations, and seed-compressed shares.

A secret ``x`` in Z_M is split into ``n`` shares with ``x = s_0 + s_1 + ... + s_{n-1} (mod M)``. Shares
``s_1 .. s_{n-1}`` are uniform masks expanded from keyed cryptographic streams (one derived key per party);
``s_0 = x - sum(masks)``. Any ``n - 1`` shares are jointly uniform and independent of ``x``.

Addition, subtraction and negation of sharings, adding a public value (party 0 adds it) and multiplying by a public
integer are local: every party applies the operation to its own share.

Seed compression (:func:`share_compressed`): parties ``1 .. n-1`` receive only their 16- or 32-byte stream key and
expand it themselves; party 0 receives a full array. The dealer's upload is then about one plaintext's size however
many parties there are.

Example:
    >>> from refimpl import share, reconstruct, Z2_64
    >>> x = share([1, 2, 3], 3, key=bytes(16))
    >>> x
    Shares(ring=Z2_64, n=3, shape=(3,))
    >>> y = share([10, 20, 30], 3)
    >>> reconstruct(x + y), reconstruct(x + 100)
    (array([11, 22, 33], dtype=uint64), array([101, 102, 103], dtype=uint64))
    >>> Z2_64.lift(reconstruct(x * 2 - y))        # negative results live in the signed view
    array([ -8, -16, -24])
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key, check_party_axis, check_party_count, read_only_view
from refimpl.backend import dispatch
from refimpl.errors import PartyCountError, RingMismatchError, ShapeMismatchError
from refimpl.prg import Stream, check_cipher, derive_key, fresh_key, key_length
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.kernels import apply_keystreams, check_out, fill_keystreams, share_words, sum_parties

__all__ = ["Shares", "CompressedShares", "share_numpy", "share_compressed", "reconstruct", "sum_shares",
           "apply_keystreams"]


def check_ring(ring: Any) -> Ring:
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a refimpl Ring, got {ring!r} of type {type(ring).__name__}")
    return ring


@dataclass(frozen=True, eq=False, repr=False)
class Shares:
    """An immutable n-party additive sharing: one stacked array of shape ``(n, *shape)`` and its ring.

    ``shares[i]`` is party ``i``'s share. ``repr`` shows ring, n and shape, never values.

    The array is not copied: a Shares takes ownership of ``data`` and marks its view read-only; do not write to
    the array you passed in afterwards (every refimpl function builds Shares from fresh arrays).

    Args:
        ring: the ring of the shares.
        data: the stacked shares, dtype ``ring.dtype``, shape ``(n, *shape)`` with ``n >= 2``.
    """

    ring: Ring
    data: np.ndarray

    def __post_init__(self) -> None:
        check_ring(self.ring)
        data = self.data
        on_jax = dispatch.is_jax(data)  # JAX arrays (and tracers) are immutable already: kept as they are
        if not (on_jax or isinstance(data, np.ndarray)):
            raise TypeError(f"Shares data must be a numpy or jax array, got {type(data).__name__}")
        if on_jax:
            dispatch.jax_dtype(self.ring)  # a clear error for rings JAX cannot hold
        if data.dtype != self.ring.dtype:
            raise TypeError(f"Shares data for {self.ring!r} must have dtype {self.ring.dtype}, got {data.dtype}")
        check_party_axis(data, "Shares")
        if on_jax:
            return
        dispatch.jax_loaded()  # registers Shares as a JAX pytree once JAX is imported, before any jax.jit sees one
        object.__setattr__(self, "data", read_only_view(data))

    # ---------------------------------------------------------------- views
    @property
    def n(self) -> int:
        """The number of parties."""
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the shared secret."""
        return tuple(self.data.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of all ``n`` shares when serialised."""
        return int(self.data.size) * self.ring.element_bytes

    def __getitem__(self, party: int) -> np.ndarray:
        if isinstance(party, bool) or not isinstance(party, numbers.Integral):
            raise TypeError(f"index a sharing by party number (int), got {party!r}")
        if not -self.n <= party < self.n:
            raise IndexError(f"party {party} out of range for a sharing among {self.n} parties")
        return self.data[party]

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Any:
        return iter(self.data)

    def __repr__(self) -> str:
        return f"Shares(ring={self.ring!r}, n={self.n}, shape={self.shape})"

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Shares do not convert to arrays; call reconstruct(shares) to open them")

    # NumPy's binary operators defer to Shares (so ``array + shares`` calls Shares.__radd__), and ufuncs refuse it
    __array_ufunc__ = None

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a sharing is secret; reconstruct it first")

    def reconstruct(self, *, out: np.ndarray | None = None) -> np.ndarray:
        """Open the sharing: the sum of all shares mod M (written into ``out`` when given; see :func:`reconstruct`)."""
        data = self.data
        if out is not None:
            if dispatch.is_jax(data):
                raise TypeError("reconstruct: out= takes a NumPy buffer; JAX-backed shares return a new array")
            check_out(out, self.shape, self.ring.dtype, "reconstruct", data)
        if type(data) is np.ndarray and data.ndim >= 2 and data.flags.c_contiguous and \
                self.ring.modulus in (2**32, 2**64):
            return sum_parties(data, out)  # native wrap-around: chunk by chunk, on every core
        total = self.ring.sum(data, axis=0)
        if out is None:
            return total
        out[...] = total
        return out

    # ---------------------------------------------------------------- homomorphic operations
    def _check_compatible(self, other: Shares) -> None:
        if other.ring != self.ring:
            raise RingMismatchError(f"cannot combine sharings over {self.ring!r} and {other.ring!r}")
        if other.n != self.n:
            raise PartyCountError(f"cannot combine sharings among {self.n} and {other.n} parties")
        if other.shape != self.shape:
            raise ShapeMismatchError(f"cannot combine sharings of shapes {self.shape} and {other.shape}")

    def _public(self, value: ArrayLike) -> np.ndarray:
        if isinstance(value, (Shares, CompressedShares)):
            raise TypeError("internal: expected a public value")
        public = self.ring.element(value)
        try:
            fits = np.broadcast_shapes(public.shape, self.shape) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeMismatchError(f"public value of shape {public.shape} does not fit a sharing of shape "
                                     f"{self.shape}")
        return public

    def __add__(self, other: Any) -> Shares:
        if isinstance(other, Shares):
            self._check_compatible(other)
            return Shares(self.ring, self.ring.add(self.data, other.data))
        public = self._public(other)
        if dispatch.is_jax(self.data) or dispatch.is_jax(public):
            return Shares(self.ring, _jax_ring().set_first(self.data, self.ring.add(self.data[0], public)))
        data = self.data.copy()
        data[0, ...] = self.ring.add(data[0], public)  # [0, ...]: never nests a 0-d array in an object array
        return Shares(self.ring, data)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Shares:
        if isinstance(other, Shares):
            self._check_compatible(other)
            return Shares(self.ring, self.ring.sub(self.data, other.data))
        public = self._public(other)
        if dispatch.is_jax(self.data) or dispatch.is_jax(public):
            return Shares(self.ring, _jax_ring().set_first(self.data, self.ring.sub(self.data[0], public)))
        data = self.data.copy()
        data[0, ...] = self.ring.sub(data[0], public)
        return Shares(self.ring, data)

    def __rsub__(self, other: Any) -> Shares:
        return (-self) + other

    def __neg__(self) -> Shares:
        return Shares(self.ring, self.ring.neg(self.data))

    def __mul__(self, other: Any) -> Shares:
        if isinstance(other, Shares):
            raise TypeError("multiplying two sharings needs a crypto provider (Beaver triples); "
                            "only a public integer can multiply a sharing locally")
        return Shares(self.ring, self.ring.mul(self.data, self._public(other)))

    __rmul__ = __mul__


@dataclass(frozen=True, eq=False, repr=False)
class CompressedShares:
    """A seed-compressed sharing: party 0's share as an array, parties ``1 .. n-1`` as stream keys.

    :meth:`expand` gives back exactly the :class:`Shares` that :func:`share` returns for the same arguments.
    """

    ring: Ring
    first: np.ndarray
    keys: tuple[bytes, ...]
    prg: str = "aes128-ctr"

    @property
    def n(self) -> int:
        return len(self.keys) + 1

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.first.shape)

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: one full share plus the keys."""
        return int(self.first.size) * self.ring.element_bytes + sum(len(k) for k in self.keys)

    @property
    def expanded_nbytes(self) -> int:
        """Bytes of the same sharing sent in full (``n`` arrays)."""
        return self.n * int(self.first.size) * self.ring.element_bytes

    def party_share(self, party: int) -> np.ndarray:
        """Party ``party``'s share: the array for party 0, the expansion of its key otherwise."""
        if not 0 <= party < self.n:
            raise IndexError(f"party {party} out of range for a sharing among {self.n} parties")
        if party == 0:
            return self.first
        return self.ring.sample(Stream(self.keys[party - 1], cipher=self.prg), self.shape)

    def expand(self) -> Shares:
        """The full sharing, every key expanded."""
        data = np.empty((self.n, *self.shape), dtype=self.ring.dtype)
        data[0, ...] = self.first
        if _fast(self.ring):  # every key's keystream straight into its row, on every core (bit-identical)
            fill_keystreams(data[1:], self.keys, self.prg)
            return Shares(self.ring, data)
        for party in range(1, self.n):
            data[party, ...] = self.party_share(party)
        return Shares(self.ring, data)

    def __repr__(self) -> str:
        return f"CompressedShares(ring={self.ring!r}, n={self.n}, shape={self.shape}, prg={self.prg!r})"


def party_keys(key: bytes | None, n: int, prg: str) -> list[bytes]:
    master = fresh_key(16) if key is None else check_key(key)
    return [derive_key(master, "refimpl/share", party, length=key_length(prg)) for party in range(1, n)]


def _words_view(secret: Any, ring: Ring) -> np.ndarray | None:
    """``secret`` viewed as ring elements without a copy, when it is a native (u)int array of the ring's width
    (every such value is in range for Z_2^32 / Z_2^64: ``ring.element`` would return the same words, copied)."""
    if type(secret) is np.ndarray and ring.modulus in (2**32, 2**64) and secret.dtype.kind in "iu" and \
            secret.dtype.itemsize == ring.dtype.itemsize and secret.dtype.isnative:
        return secret.view(ring.dtype)
    return None


def _fast(ring: Ring) -> bool:
    return ring.modulus in (2**32, 2**64) and sys.byteorder == "little"


def share_compressed(secret: ArrayLike, n: int, *, ring: Ring = Z2_64, key: bytes | None = None,
                     prg: str = "aes128-ctr", out: np.ndarray | None = None) -> CompressedShares:
    """Share ``secret`` among ``n`` parties in seed-compressed form.

    Party ``i >= 1`` gets the key ``derive_key(key, "refimpl/share", i)``; party 0 gets
    ``secret - sum(expand(key_i)) mod M``. Arguments are those of :func:`share`; ``out``: a writeable, C-contiguous
    array of the secret's shape and ``ring.dtype`` that receives party 0's share (reuse it across calls to skip the
    first-touch cost of fresh memory; the result's ``first`` is then ``out`` itself).

    Example:
        >>> c = share_compressed(np.arange(1000), 5, key=bytes(16))
        >>> c.nbytes, c.expanded_nbytes
        (8064, 40000)
        >>> bool((reconstruct(c) == np.arange(1000)).all())
        True
    """
    ring = check_ring(ring)
    prg = check_cipher(prg)
    n = check_party_count(n)
    if dispatch.is_tracer(secret):
        raise TypeError("share_compressed builds host-side wire data (keys and a NumPy array), so it cannot run "
                        "under jax.jit or jax.vmap; use share() there, or call share_compressed outside")
    if out is None:
        return share_compressed_owned(ring.element(secret), n, ring, key, prg)  # ring.element: a new array
    x = _words_view(secret, ring)
    if x is None:
        x = ring.element(secret)
    check_out(out, x.shape, ring.dtype, "share_compressed", x)
    return share_compressed_owned(x, n, ring, key, prg, out=out)


def share_compressed_owned(x: Any, n: int, ring: Ring, key: bytes | None, prg: str, *,
                           out: np.ndarray | None = None) -> CompressedShares:
    """:func:`share_compressed` of ring elements ``x`` (checked arguments). Without ``out`` the caller hands ``x``
    over: for Z_2^32 / Z_2^64 party 0's share is computed in ``x`` itself, so ``x`` must be a new array no one else
    uses. With ``out`` (checked by the caller) party 0's share is written there and ``x`` is only read."""
    keys = party_keys(key, n, prg)
    if type(x) is np.ndarray and _fast(ring) and x.dtype == ring.dtype and x.flags.c_contiguous and \
            (out is not None or x.flags.writeable):
        target = x if out is None else out
        apply_keystreams(target, keys, prg, np.subtract, src=None if out is None else x)  # masks never materialised
        return CompressedShares(ring, target, tuple(keys), prg)
    first = x
    for k in keys:
        first = ring.sub(first, ring.sample(Stream(k, cipher=prg), x.shape))
    if out is not None:
        out[...] = first
        return CompressedShares(ring, out, tuple(keys), prg)
    return CompressedShares(ring, np.asarray(first, dtype=ring.dtype), tuple(keys), prg)


def share_numpy(secret: ArrayLike, n: int, *, ring: Ring = Z2_64, key: bytes | None = None,
                prg: str = "aes128-ctr", out: np.ndarray | None = None) -> Shares:
    """The NumPy path of :func:`refimpl.sharing.api.share` (JAX arrays are dispatched there, not here)."""
    ring = check_ring(ring)
    prg = check_cipher(prg)
    n = check_party_count(n)
    x = _words_view(secret, ring)
    if x is None:
        x = ring.element(secret)
    if out is None:
        data = np.empty((n, *x.shape), dtype=ring.dtype)
    else:
        data = check_out(out, (n, *x.shape), ring.dtype, "share", x)
    keys = party_keys(key, n, prg)
    if _fast(ring):
        share_words(x, keys, prg, data)  # masks and party 0's share together, chunk by chunk, on every core
        return Shares(ring, data)
    for party, k in enumerate(keys, start=1):  # the definition, for every other ring (and big-endian hosts)
        data[party, ...] = ring.sample(Stream(k, cipher=prg), x.shape)
    data[0, ...] = ring.sub(x, ring.sum(data[1:], axis=0))  # [0, ...]: never nests a 0-d array in an object array
    return Shares(ring, data)


def reconstruct(shares: Shares | CompressedShares, *, out: np.ndarray | None = None) -> np.ndarray:
    """Open a sharing: the sum of all shares mod M.

    Args:
        shares: a :class:`Shares` or :class:`CompressedShares`.
        out: optional writeable, C-contiguous NumPy array of the secret's shape and ``ring.dtype`` to write the
            result into (returned); reusing one buffer skips the first-touch cost of fresh memory.

    Raises:
        TypeError: ``shares`` is not a sharing; ``out`` of the wrong type or dtype.
        ShapeMismatchError: ``out`` of the wrong shape.
    """
    if isinstance(shares, CompressedShares):
        first = shares.first
        if type(first) is np.ndarray and _fast(shares.ring) and first.dtype == shares.ring.dtype and \
                first.flags.c_contiguous:
            target = np.empty(shares.shape, shares.ring.dtype) if out is None else \
                check_out(out, shares.shape, shares.ring.dtype, "reconstruct", first)
            apply_keystreams(target, shares.keys, shares.prg, np.add, src=first)  # keys expanded chunk by chunk
            return target
        shares = shares.expand()
    if not isinstance(shares, Shares):
        raise TypeError(f"reconstruct takes Shares or CompressedShares, got {type(shares).__name__}")
    return shares.reconstruct(out=out)


def sum_shares(sharings: Iterable[Shares]) -> Shares:
    """The sharing of the sum of many sharings (same ring, n and shape), added share by share.

    Raises:
        ValueError: no sharings given; mismatched rings, party counts or shapes.
    """
    items = list(sharings)
    if not items:
        raise ValueError("sum_shares needs at least one sharing")
    first = items[0]
    if not isinstance(first, Shares):
        raise TypeError(f"sum_shares takes Shares, got {type(first).__name__}")
    for other in items[1:]:
        if not isinstance(other, Shares):
            raise TypeError(f"sum_shares takes Shares, got {type(other).__name__}")
        first._check_compatible(other)
    datas = [s.data for s in items]
    stack = _jax_ring().stack if any(dispatch.is_jax(d) for d in datas) else np.stack
    return Shares(first.ring, first.ring.sum(stack(datas), axis=0))


def _jax_ring() -> ModuleType:
    """The JAX implementation (imported on first use: importing refimpl never imports JAX)."""
    from refimpl.backend import jax_ring

    return jax_ring


def _register_shares_pytree(jax: Any) -> None:
    """Register :class:`Shares` as a JAX pytree node (run by :mod:`refimpl.backend.dispatch` once JAX is seen)."""

    def aux(s: Shares) -> tuple[Ring, int]:
        # A Shares rebuilt by JAX keeps its party count: its leaf may be a placeholder or carry a batch axis.
        n = s.__dict__.get("_pytree_n")
        return s.ring, int(s.data.shape[0]) if n is None else n

    def flatten_with_keys(s: Shares) -> tuple[tuple[tuple[Any, Any], ...], tuple[Ring, int]]:
        return ((jax.tree_util.GetAttrKey("data"), s.data),), aux(s)

    def flatten(s: Shares) -> tuple[tuple[Any], tuple[Ring, int]]:
        return (s.data,), aux(s)

    def unflatten(aux_data: tuple[Ring, int], children: Any) -> Shares:
        # No validation: JAX rebuilds pytrees with placeholder leaves (None, object(), axis specs) in transforms.
        obj = object.__new__(Shares)
        object.__setattr__(obj, "ring", aux_data[0])
        object.__setattr__(obj, "data", children[0])
        object.__setattr__(obj, "_pytree_n", aux_data[1])
        return obj

    try:
        jax.tree_util.register_pytree_with_keys(Shares, flatten_with_keys, unflatten, flatten)
    except ValueError:  # already registered (e.g. this module was reloaded)
        pass


dispatch.add_pytree_hook(_register_shares_pytree)
