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
from refimpl.prg import Stream, check_cipher, derive_key, encryptor, fresh_key, key_length, write_keystream
from refimpl.ring import Z2_64, Ring

__all__ = ["Shares", "CompressedShares", "share_numpy", "share_compressed", "reconstruct", "sum_shares"]


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

    def reconstruct(self) -> np.ndarray:
        """Open the sharing: the sum of all shares mod M."""
        data = self.data
        if type(data) is np.ndarray and data.ndim >= 2 and data.flags.c_contiguous and \
                self.ring.modulus in (2**32, 2**64):
            return _sum_parties(data)  # native wrap-around: accumulate in place, chunk by chunk
        return self.ring.sum(data, axis=0)

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
        for party in range(1, self.n):
            data[party, ...] = self.party_share(party)
        return Shares(self.ring, data)

    def __repr__(self) -> str:
        return f"CompressedShares(ring={self.ring!r}, n={self.n}, shape={self.shape}, prg={self.prg!r})"


def party_keys(key: bytes | None, n: int, prg: str) -> list[bytes]:
    master = fresh_key(16) if key is None else check_key(key)
    return [derive_key(master, "refimpl/share", party, length=key_length(prg)) for party in range(1, n)]


# Fused kernels for Z_2^32 / Z_2^64 (native wrap-around). They work through the arrays in chunks of this many bytes
# per share, so each chunk of masks is still in cache when it is subtracted (or added): one pass over memory
# instead of one per party, and no temporaries. Results are bit-identical to the unfused definitions.
_FUSED_CHUNK_BYTES = 1 << 19


def _share_words(x: np.ndarray, keys: list[bytes], prg: str, data: np.ndarray) -> None:
    """Fill ``data`` (fresh, C-contiguous, shape ``(n, *x.shape)``, uint32/uint64, little-endian host) with the
    sharing of ``x``: ``data[i]`` = keystream of ``keys[i - 1]`` (exactly ``Stream(key, cipher=prg).read_into``:
    offset 0, default nonce) and ``data[0] = x - data[1] - ... - data[n-1]`` with native wrap-around."""
    n = data.shape[0]
    flat = data.reshape(n, -1)
    xf = x.reshape(-1)
    itemsize = data.dtype.itemsize
    step = _FUSED_CHUNK_BYTES // itemsize
    encryptors = [encryptor(k, prg, bytes(16), 0) for k in keys]
    rows = [memoryview(flat[party].view(np.uint8)) for party in range(1, n)]
    first = flat[0]
    for lo in range(0, xf.size, step):
        hi = min(xf.size, lo + step)
        start, nbytes = lo * itemsize, (hi - lo) * itemsize
        for enc, row in zip(encryptors, rows):
            write_keystream(enc, row, start, nbytes)
        out = first[lo:hi]
        np.subtract(xf[lo:hi], flat[1, lo:hi], out=out)
        for party in range(2, n):
            np.subtract(out, flat[party, lo:hi], out=out)


def _sum_parties(data: np.ndarray) -> np.ndarray:
    """``sum(data, axis=0)`` for a C-contiguous uint32/uint64 stack of shares (ndim >= 2), with wrap-around."""
    n = data.shape[0]
    flat = data.reshape(n, -1)
    out = np.empty(data.shape[1:], dtype=data.dtype)
    acc = out.reshape(-1)
    step = _FUSED_CHUNK_BYTES // data.dtype.itemsize
    for lo in range(0, acc.size, step):
        part = acc[lo : lo + step]
        np.add(flat[0, lo : lo + step], flat[1, lo : lo + step], out=part)
        for party in range(2, n):
            np.add(part, flat[party, lo : lo + step], out=part)
    return out


def apply_keystreams(acc: np.ndarray, keys: Iterable[bytes], prg: str, op: np.ufunc) -> None:
    """``acc = op(acc, mask_k)`` in place for every key, where ``mask_k`` is the keystream of ``k`` read as
    ``Stream(k, cipher=prg).read_into`` reads it (offset 0, default nonce) into an array of ``acc``'s shape and dtype.

    ``acc``: C-contiguous uint32/uint64 numpy array on a little-endian host; ``op``: ``np.add`` or ``np.subtract``
    (native wrap-around, so this is ``ring.add`` / ``ring.sub`` of ``ring.sample(Stream(k, cipher=prg), shape)`` for
    Z_2^32 / Z_2^64, bit for bit). The masks are never materialised: each chunk of keystream goes into one small
    scratch buffer and is folded into ``acc`` while still in cache."""
    flat = acc.reshape(-1)
    itemsize = acc.dtype.itemsize
    step = _FUSED_CHUNK_BYTES // itemsize
    encryptors = [encryptor(k, prg, bytes(16), 0) for k in keys]
    if not encryptors or not flat.size:
        return
    scratch = np.empty(_FUSED_CHUNK_BYTES + 16, dtype=np.uint8)  # + 16: update_into's room after the data
    room = memoryview(scratch)  # type: ignore[arg-type]
    words = scratch[:_FUSED_CHUNK_BYTES].view(acc.dtype)
    for lo in range(0, flat.size, step):
        hi = min(flat.size, lo + step)
        part, mask = flat[lo:hi], words[: hi - lo]
        for enc in encryptors:
            write_keystream(enc, room, 0, (hi - lo) * itemsize)
            op(part, mask, out=part)


def share_compressed(secret: ArrayLike, n: int, *, ring: Ring = Z2_64, key: bytes | None = None,
                     prg: str = "aes128-ctr") -> CompressedShares:
    """Share ``secret`` among ``n`` parties in seed-compressed form.

    Party ``i >= 1`` gets the key ``derive_key(key, "refimpl/share", i)``; party 0 gets
    ``secret - sum(expand(key_i)) mod M``. Arguments are those of :func:`share`.

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
    return share_compressed_owned(ring.element(secret), n, ring, key, prg)  # ring.element returns a new array


def share_compressed_owned(x: Any, n: int, ring: Ring, key: bytes | None, prg: str) -> CompressedShares:
    """:func:`share_compressed` of ring elements ``x`` (checked arguments) that the caller hands over: for Z_2^32 /
    Z_2^64 party 0's share is computed in ``x`` itself, so ``x`` must be a new array no one else uses."""
    keys = party_keys(key, n, prg)
    if type(x) is np.ndarray and ring.modulus in (2**32, 2**64) and sys.byteorder == "little" and \
            x.dtype == ring.dtype and x.flags.c_contiguous and x.flags.writeable:
        apply_keystreams(x, keys, prg, np.subtract)  # party 0's share, in place, the masks never materialised
        return CompressedShares(ring, x, tuple(keys), prg)
    first = x
    for k in keys:
        first = ring.sub(first, ring.sample(Stream(k, cipher=prg), x.shape))
    return CompressedShares(ring, np.asarray(first, dtype=ring.dtype), tuple(keys), prg)


def share_numpy(secret: ArrayLike, n: int, *, ring: Ring = Z2_64, key: bytes | None = None,
          prg: str = "aes128-ctr") -> Shares:
    """The NumPy path of :func:`refimpl.sharing.api.share` (JAX arrays are dispatched there, not here)."""
    ring = check_ring(ring)
    prg = check_cipher(prg)
    n = check_party_count(n)
    if type(secret) is np.ndarray and ring.modulus in (2**32, 2**64) and secret.dtype.kind in "iu" and \
            secret.dtype.itemsize == ring.dtype.itemsize and secret.dtype.isnative:
        x = secret.view(ring.dtype)  # every (u)int32 / (u)int64 is in range: ring.element would return this, copied
    else:
        x = ring.element(secret)
    keys = party_keys(key, n, prg)
    data = np.empty((n, *x.shape), dtype=ring.dtype)
    if ring.modulus in (2**32, 2**64) and sys.byteorder == "little":
        _share_words(x, keys, prg, data)  # masks and party 0's share computed together, chunk by chunk
        return Shares(ring, data)
    for party, k in enumerate(keys, start=1):  # the definition, for every other ring (and big-endian hosts)
        data[party, ...] = ring.sample(Stream(k, cipher=prg), x.shape)
    data[0, ...] = ring.sub(x, ring.sum(data[1:], axis=0))  # [0, ...]: never nests a 0-d array in an object array
    return Shares(ring, data)


def reconstruct(shares: Shares | CompressedShares) -> np.ndarray:
    """Open a sharing: the sum of all shares mod M.

    Raises:
        TypeError: ``shares`` is not a sharing.
    """
    if isinstance(shares, CompressedShares):
        shares = shares.expand()
    if not isinstance(shares, Shares):
        raise TypeError(f"reconstruct takes Shares or CompressedShares, got {type(shares).__name__}")
    return shares.reconstruct()


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
