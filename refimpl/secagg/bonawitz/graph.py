"""The SecAgg+ communication graph: a Harary graph over the clients, permuted by a public key (Bell et al. 2020)."""

from __future__ import annotations

from refimpl._checks import check_key
from refimpl.errors import ConfigurationError
from refimpl.prg import Stream, derive_key
from refimpl.ring import Ring

__all__ = ["harary_neighbours"]


def harary_neighbours(n: int, degree: int, key: bytes) -> dict[int, frozenset[int]]:
    """The SecAgg+ graph: Harary graph H(k, n) on clients ``1..n`` with labels permuted by a keyed stream.

    Position ``i`` links to positions ``i +- 1 .. i +- k/2 (mod n)``; clients are placed by a uniform permutation
    (Fisher-Yates on rejection-sampled draws). Every client has exactly ``k`` neighbours.

    Example:
        >>> g = harary_neighbours(10, 4, bytes(16))
        >>> sorted(len(v) for v in g.values()) == [4] * 10, all(u in g[v] for u in g for v in g[u])
        (True, True)
    """
    if degree % 2 or not 2 <= degree < n:
        raise ConfigurationError(f"SecAgg+ degree must be even and in [2, n-1={n - 1}], got {degree}")
    stream = Stream(derive_key(check_key(key), "secagg/graph", n, degree))
    perm = list(range(1, n + 1))
    for i in range(n - 1, 0, -1):
        j = int(Ring(i + 1).sample(stream, 1)[0]) if i + 1 < 2**32 else 0
        perm[i], perm[j] = perm[j], perm[i]
    half = degree // 2
    return {perm[i]: frozenset(perm[(i + o) % n] for o in range(-half, half + 1) if o) for i in range(n)}
