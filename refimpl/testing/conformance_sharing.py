"""Conformance of an additive sharing (:func:`check_sharing`): a table of properties, first counterexample out.

Re-exported by :mod:`refimpl.testing.conformance`, whose docstring describes the checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from refimpl.ring import Z2_64, Ring
from refimpl.testing import strategies as rst
from refimpl.testing._check import Checker, CheckResult, PropertyFailure, dkw_uniformity, to_ints

__all__ = ["SHARING_PROPERTIES", "check_sharing", "party_counts", "ring_array"]


def ring_array(ring: Ring, values: Iterable[int]) -> np.ndarray:
    return np.array([int(v) % ring.modulus for v in values], dtype=object).astype(ring.dtype)


def party_counts(n: int | Sequence[int]) -> list[int]:
    single = isinstance(n, (int, np.integer)) and not isinstance(n, bool)
    ns: list[Any] = [n] if single else list(n)  # type: ignore[arg-type]
    if not ns or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2 for v in ns):
        raise ValueError(f"n must be a party count >= 2 or a non-empty sequence of them, got n={n!r}")
    return [int(v) for v in ns]



# ------------------------------------------------------------------------------------------------ sharing
class _SharingCase:
    """What every property of :func:`check_sharing` needs: the implementation, the ring, the strategies and the
    comparison helpers (one object, so that each property is a small function of it in :data:`SHARING_PROPERTIES`)."""

    def __init__(self, fns: dict[str, Any], ring: Ring, ns: list[int], chk: Checker, uniformity_samples: int,
                 alpha: float) -> None:
        self.fns, self.ring, self.ns, self.chk = fns, ring, ns, chk
        self.m = ring.modulus
        self.uniformity_samples, self.alpha = uniformity_samples, alpha
        self.values = rst.ring_values(ring)
        self.secrets = st.lists(self.values, min_size=1, max_size=6).map(lambda vs: ring_array(ring, vs))
        self.bounds = ring_array(ring, rst.boundary_values(ring))
        self.rotated = np.roll(self.bounds, 1)
        self.n_st = st.sampled_from(ns)
        self.pairs = st.tuples(st.lists(st.tuples(self.values, self.values), min_size=1, max_size=6), self.n_st).map(
            lambda t: (ring_array(ring, [a for a, _ in t[0]]), ring_array(ring, [b for _, b in t[0]]), t[1]))

    def share(self, x: np.ndarray, parties: int) -> Any:
        return self.fns["share_fn"](x.copy(), parties)

    def expect(self, prop: str, desc: str, got_raw: Any, want: list[int], ctx: dict[str, Any]) -> None:
        m = self.m
        got = to_ints(got_raw, desc, prop, ctx)
        if len(got) != len(want):
            raise PropertyFailure(prop, {**ctx, "expected": want, "got": got},
                                  f"{desc} returned {len(got)} values for a secret of {len(want)} elements")
        for i, (g, w) in enumerate(zip(got, want)):
            if g % m != w:
                raise PropertyFailure(prop, {**ctx, "index": i, "expected": want, "got": [v % m for v in got]},
                                      f"{desc} gave {g % m} at index {i}, expected {w} (mod {m}); "
                                      f"inputs {ctx}")

    @staticmethod
    def ints(a: np.ndarray) -> list[int]:
        return [int(v) for v in a.ravel()]

    @staticmethod
    def narrow(value: tuple[Any, ...], failure: PropertyFailure) -> tuple[Any, ...] | None:
        """The failing element alone (arrays cut to index i), to report a one-element counterexample."""
        i = failure.counterexample.get("index")
        if i is None:
            return None
        return tuple(v[i:i + 1] if isinstance(v, np.ndarray) else v for v in value)

    def shares_list(self, x: np.ndarray, parties: int, prop: str, ctx: dict[str, Any]) -> list[list[int]]:
        parts = list(self.fns["shares_of"](self.share(x, parties)))
        if len(parts) != parties:
            raise PropertyFailure(prop, {**ctx, "shares": len(parts)},
                                  f"shares_of(share(secret, {parties})) gave {len(parts)} shares, not {parties}")
        out = [to_ints(p, f"party {i}'s share", prop, ctx) for i, p in enumerate(parts)]
        for i, p in enumerate(out):
            if len(p) != x.size:
                raise PropertyFailure(prop, {**ctx, "party": i, "share_size": len(p)},
                                      f"party {i}'s share has {len(p)} elements, the secret {x.size}")
        return out


def _sharing_reconstruct(c: _SharingCase) -> None:
    def body(case: tuple[np.ndarray, int]) -> None:
        x, parties = case
        ctx = {"secret": c.ints(x), "n": parties}
        c.expect("reconstruct", f"reconstruct(share(secret, {parties}))", c.fns["reconstruct_fn"](c.share(x, parties)),
                 c.ints(x), ctx)

    c.chk.run("reconstruct", body, fixed=[(c.bounds, p) for p in c.ns], strategy=st.tuples(c.secrets, c.n_st),
              narrow=c.narrow)


def _sharing_party_shares(c: _SharingCase) -> None:
    def body(case: tuple[np.ndarray, int]) -> None:
        x, parties = case
        ctx = {"secret": c.ints(x), "n": parties}
        parts = c.shares_list(x, parties, "party_shares", ctx)
        total = [sum(col) % c.m for col in zip(*parts)]
        c.expect("party_shares", "the sum of the party shares", total, c.ints(x),
                 {**ctx, "shares": [[v % c.m for v in p] for p in parts]})

    c.chk.run("party_shares", body, fixed=[(c.bounds, p) for p in c.ns], strategy=st.tuples(c.secrets, c.n_st),
              narrow=c.narrow)


def _sharing_hide_secret(c: _SharingCase) -> None:
    if c.m < 2**32:
        c.chk.skip("shares_hide_secret", f"M = {c.m} < 2**32: a share equals the secret too often by chance")
        return

    def body(case: tuple[np.ndarray, int]) -> None:
        x, parties = case
        if x.size < 2:
            return
        ctx = {"secret": c.ints(x), "n": parties}
        for i, p in enumerate(c.shares_list(x, parties, "shares_hide_secret", ctx)):
            if [v % c.m for v in p] == c.ints(x):
                raise PropertyFailure("shares_hide_secret", {**ctx, "party": i, "share": p},
                                      f"party {i}'s share equals the secret {c.ints(x)}: the sharing does "
                                      "not hide it")

    c.chk.run("shares_hide_secret", body, fixed=[(c.bounds, p) for p in c.ns],
              strategy=st.tuples(c.secrets.filter(lambda a: a.size >= 2), c.n_st))


def _sharing_uniform(c: _SharingCase) -> None:
    m, samples = c.m, c.uniformity_samples

    def body(case: tuple[int, int]) -> None:
        value, parties = case
        x = ring_array(c.ring, [value] * samples)
        ctx = {"secret": f"{samples} x {value}", "n": parties}
        for i, p in enumerate(c.shares_list(x, parties, "uniform_shares", ctx)):
            dist, bound = dkw_uniformity([v % m for v in p], m, c.alpha)
            if dist > bound:
                low = sum(1 for v in p if 2 * (v % m) < m) / len(p)
                raise PropertyFailure(
                    "uniform_shares", {**ctx, "party": i, "distance": dist, "threshold": bound,
                                       "fraction_below_half": low, "first_values": p[:8]},
                    f"party {i}'s shares of {ctx['secret']} among {parties} parties are not uniform on "
                    f"[0, {m}): Kolmogorov distance {dist:.4f} > {bound:.4f} (false-alarm probability "
                    f"{c.alpha:g}); {low:.3f} of them lie below M/2")

    c.chk.run("uniform_shares", body, fixed=[(0, min(c.ns)), (m // 2, max(c.ns))])


def _sharing_binary(prop: str, f: Callable[[int, int], int], sym: str, public: bool) -> Callable[[_SharingCase], None]:
    def run(c: _SharingCase) -> None:
        op = c.fns[prop]

        def body(case: tuple[np.ndarray, np.ndarray, int]) -> None:
            x, y, parties = case
            ctx = {"a": c.ints(x), "b": c.ints(y), "n": parties}
            if public:
                out, desc = op(c.share(x, parties), y.copy()), f"{prop}(share(a), b)"
            else:
                out, desc = op(c.share(x, parties), c.share(y, parties)), f"{prop}(share(a), share(b))"
            want = [f(a, b) % c.m for a, b in zip(c.ints(x), c.ints(y))]
            c.expect(prop, f"reconstruct({desc}) [a {sym} b]", c.fns["reconstruct_fn"](out), want, ctx)

        c.chk.run(prop, body, fixed=[(c.bounds, c.rotated, p) for p in c.ns], strategy=c.pairs, narrow=c.narrow)
    return run


def _sharing_neg(c: _SharingCase) -> None:
    def body(case: tuple[np.ndarray, int]) -> None:
        x, parties = case
        c.expect("neg", "reconstruct(neg(share(a))) [-a]", c.fns["reconstruct_fn"](c.fns["neg"](c.share(x, parties))),
                 [(-v) % c.m for v in c.ints(x)], {"a": c.ints(x), "n": parties})

    c.chk.run("neg", body, fixed=[(c.bounds, p) for p in c.ns], strategy=st.tuples(c.secrets, c.n_st),
              narrow=c.narrow)


#: The properties of :func:`check_sharing`, in order: ``(name, optional callable it needs or None, runner)``.
SHARING_PROPERTIES: tuple[tuple[str, str | None, Callable[[_SharingCase], None]], ...] = (
    ("reconstruct", None, _sharing_reconstruct),
    ("party_shares", "shares_of", _sharing_party_shares),
    ("shares_hide_secret", "shares_of", _sharing_hide_secret),
    ("uniform_shares", "shares_of", _sharing_uniform),
    ("add", "add", _sharing_binary("add", lambda a, b: a + b, "+", False)),
    ("sub", "sub", _sharing_binary("sub", lambda a, b: a - b, "-", False)),
    ("neg", "neg", _sharing_neg),
    ("add_public", "add_public", _sharing_binary("add_public", lambda a, b: a + b, "+", True)),
    ("mul_public", "mul_public", _sharing_binary("mul_public", lambda a, b: a * b, "*", True)),
)


def check_sharing(share_fn: Callable[[np.ndarray, int], Any], reconstruct_fn: Callable[[Any], Any], *,
                  ring: Ring = Z2_64, n: int | Sequence[int] = (2, 3, 5),
                  add: Callable[[Any, Any], Any] | None = None, sub: Callable[[Any, Any], Any] | None = None,
                  neg: Callable[[Any], Any] | None = None, add_public: Callable[[Any, np.ndarray], Any] | None = None,
                  mul_public: Callable[[Any, np.ndarray], Any] | None = None,
                  shares_of: Callable[[Any], Sequence[Any]] | None = None, examples: int = 100,
                  seed: int | None = None, uniformity_samples: int = 4096, alpha: float = 1e-9) -> CheckResult:
    """Check an n-party additive sharing over ``ring`` against refimpl's properties.

    Properties, in order (:data:`SHARING_PROPERTIES`; an operation that is not supplied is skipped, and listed in
    ``result.skipped``):

    * ``reconstruct``: ``reconstruct_fn(share_fn(x, n)) == x (mod M)``;
    * ``party_shares`` (with ``shares_of``): ``n`` shares of ``x``'s size that sum to ``x`` mod M;
    * ``shares_hide_secret`` (with ``shares_of``, ``M >= 2**32``): no party's share equals a secret of two or more
      elements (a uniform share does so with probability ``<= 2**-64``);
    * ``uniform_shares`` (with ``shares_of``): every party's shares of ``uniformity_samples`` zeros, and of as
      many ``M // 2``, are uniform on ``[0, M)`` (Kolmogorov distance below the Dvoretzky-Kiefer-Wolfowitz bound
      at level ``alpha``). Modulo-biased masks fail this in rings where the bias is large: test with a modulus
      such as ``Ring(3 * 2**62)`` or ``Ring.prime(2**61 - 1)`` next to your production ring;
    * ``add``, ``sub``, ``neg``, ``add_public``, ``mul_public``: the operation on sharings reconstructs to the same
      operation mod M on the secrets (``c`` is public: an array of ring elements of the secret's shape).

    Args:
        share_fn: ``share_fn(secret, n)`` with ``secret`` a 1-D array of ring elements (dtype ``ring.dtype``).
        reconstruct_fn: opens a sharing; returns integers, compared modulo M.
        ring: the ring to test in.
        n: a party count or a sequence of them (default 2, 3 and 5).
        add, sub, neg, add_public, mul_public: the homomorphic operations, or None to skip.
        shares_of: the list of the n party shares (arrays) of a sharing, or None to skip the share-level checks.
        examples: hypothesis examples per property (after the fixed boundary examples).
        seed: a seed for reproducible runs (None: the active hypothesis settings decide).
        uniformity_samples, alpha: size and false-alarm probability of the uniformity test.

    Returns:
        A :class:`CheckResult`.
    """
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a refimpl Ring, got {ring!r}")
    chk = Checker("check_sharing", examples=examples, seed=seed)
    fns = {"share_fn": share_fn, "reconstruct_fn": reconstruct_fn, "add": add, "sub": sub, "neg": neg,
           "add_public": add_public, "mul_public": mul_public, "shares_of": shares_of}
    case = _SharingCase(fns, ring, party_counts(n), chk, uniformity_samples, alpha)
    for prop, needs, run in SHARING_PROPERTIES:
        if needs is not None and fns[needs] is None:
            chk.skip(prop, f"no {needs} given")
        elif chk.failure is None:
            run(case)
    return chk.result()


