"""Conformance checks: test another implementation of sharing, fixed point, streams or key derivation against
refimpl's properties, and get the first counterexample back.

Each ``check_*`` function takes the implementation under test as plain callables (write a two-line adapter for
yours), runs a fixed list of known traps (ring boundaries, half-way points, negatives next to an integer, the range
limits, published vectors) and then ``examples`` hypothesis examples per property, stopping at the first property
that fails. It returns a :class:`CheckResult`: truthy when everything held; otherwise ``property`` names what
broke, ``counterexample`` holds the (shrunk) inputs and outputs and ``message`` says it in words.
``result.assert_passed()`` raises a :class:`ConformanceError` (an ``AssertionError``) instead, for test suites.

=============================  ===================================================================================
check                          the implementation is called as
=============================  ===================================================================================
:func:`check_sharing`          ``share_fn(secret, n) -> sharing``, ``reconstruct_fn(sharing) -> ints``; optional
                               ``add(s, t)``, ``sub(s, t)``, ``neg(s)``, ``add_public(s, c)``, ``mul_public(s, c)``,
                               ``shares_of(sharing) -> n arrays``. Secrets and public values are 1-D NumPy arrays of
                               ring elements (dtype ``ring.dtype``, values in ``[0, M)``); results are compared
                               modulo M, so signed representations are fine.
:func:`check_fixed_point`      ``encode_fn(x: float64 array) -> ints``, ``decode_fn(r: ring elements) -> floats``
:func:`check_stream`           ``keystream_fn(key=, nbytes=, nonce=, offset=) -> bytes`` (refimpl's
                               :func:`~refimpl.prg.keystream` signature)
:func:`check_kdf`              ``derive_fn(master, *labels, length=) -> bytes`` (:func:`~refimpl.prg.derive_key`)
:func:`check_sampling`         ``sample_fn(count) -> count ring elements`` (uniform, no modulo bias)
:func:`check_beaver_mul`       ``mul_fn(x_shares, y_shares) -> shares`` (stacked ``(n, k)`` share arrays; see
                               :mod:`refimpl.testing.conformance_mpc`)
:func:`check_division`         ``div_fn(x_shares, d) -> shares`` of ``floor(x / d)`` or one more (truncation)
:func:`check_comparison`       ``ltz_fn(x_shares) -> shares`` of ``[x < 0]``, exact
=============================  ===================================================================================

Call the checks from ordinary tests, not from inside a hypothesis ``@given`` test (they run hypothesis
themselves). Arguments ``seed`` (an int) make a run reproducible; by default each run explores new examples, and
the active hypothesis profile's settings (e.g. ``derandomize``) apply.

Example:
    refimpl passes its own checks, and a decoder that floors negatives (the off-by-one of a widely used peer
    library: it decodes ``k`` as ``k // scale`` plus a signed fractional part) is caught:

    >>> import numpy as np
    >>> from refimpl import FixedPoint, Z2_64, share, reconstruct
    >>> from refimpl.testing.conformance import check_fixed_point, check_sharing
    >>> fp = FixedPoint()                                    # base 2, 16 fractional bits, Z_2^64
    >>> check_fixed_point(fp.encode, fp.decode, examples=20).passed
    True
    >>> check_sharing(share, reconstruct, ring=Z2_64, n=3, examples=10,
    ...               add=lambda s, t: s + t, neg=lambda s: -s).passed
    True
    >>> def floor_decode(r):
    ...     k = Z2_64.lift(r)
    ...     return k // fp.scale + np.sign(k) * (np.abs(k) % fp.scale) / fp.scale
    >>> result = check_fixed_point(fp.encode, floor_decode, examples=20)
    >>> result.passed, result.property
    (False, 'negatives_decode_exactly')
    >>> print(result.message)
    decode(r) returned -2.25 for r = 18446744073709469696 (signed k = -81920, k / scale = -1.25), expected -1.25
    >>> result.counterexample["expected"], result.counterexample["got"]
    (-1.25, -2.25)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from refimpl.prg import CIPHERS, derive_key, keystream
from refimpl.ring import Ring
from refimpl.testing import strategies as rst
from refimpl.testing._check import Checker, CheckResult, ConformanceError, PropertyFailure, dkw_uniformity, to_ints
from refimpl.testing._vectors import load_vectors
from refimpl.testing.conformance_fixed import FIXED_POINT_PROPERTIES, check_fixed_point
from refimpl.testing.conformance_mpc import check_beaver_mul, check_comparison, check_division
from refimpl.testing.conformance_sharing import SHARING_PROPERTIES, check_sharing

__all__ = [
    "FIXED_POINT_PROPERTIES",
    "SHARING_PROPERTIES",
    "CheckResult",
    "ConformanceError",
    "check_beaver_mul",
    "check_comparison",
    "check_division",
    "check_fixed_point",
    "check_kdf",
    "check_sampling",
    "check_sharing",
    "check_stream",
]


# ------------------------------------------------------------------------------------------------ streams
def _nonce_arg(cipher: str, nonce_hex: str, counter: int) -> bytes:
    nonce = bytes.fromhex(nonce_hex)
    return counter.to_bytes(4, "little") + nonce if cipher == "chacha20" else nonce


def check_stream(keystream_fn: Callable[..., Any], *, cipher: str = "aes128-ctr", examples: int = 100,
                 seed: int | None = None) -> CheckResult:
    """Check a keystream function against the published vectors, refimpl's vectors and refimpl itself.

    ``keystream_fn(key=..., nbytes=..., nonce=..., offset=...)`` returns ``nbytes`` keystream bytes (bytes or a
    uint8 array) starting at byte ``offset`` of the stream. ``nonce`` is, for ``"aes128-ctr"``, the 16-byte
    initial counter block (incremented as a 128-bit big-endian integer, wrapping); for ``"chacha20"``, 16 bytes:
    the 4-byte little-endian initial block counter, then the 12-byte RFC 8439 nonce (the layout of
    ``cryptography``'s ChaCha20). :func:`refimpl.prg.keystream` with ``cipher=`` bound has this signature.

    Properties: ``published`` (NIST SP 800-38A F.5.1, or RFC 8439 2.3.2 and 2.4.2), ``vectors`` (the packaged
    ``streams`` vectors: unaligned offsets, block-crossing reads, counter wrap-around) and ``matches_reference``
    (random keys, nonces, offsets up to 2**36 and lengths, compared with :func:`refimpl.prg.keystream`).

    Returns:
        A :class:`CheckResult`.
    """
    if cipher not in CIPHERS:
        raise ValueError(f"unknown cipher {cipher!r}; choose one of {CIPHERS}")
    chk = Checker("check_stream", examples=examples, seed=seed)
    doc = load_vectors("streams")

    def body(prop: str) -> Callable[[dict[str, Any]], None]:
        def run(case: dict[str, Any]) -> None:
            key, nonce = bytes.fromhex(case["key"]), _nonce_arg(cipher, case["nonce"], case["counter"])
            want = bytes.fromhex(case["keystream"]) if "keystream" in case else keystream(
                key, case["nbytes"], cipher=cipher, nonce=nonce, offset=case["offset"]).tobytes()
            raw = keystream_fn(key=key, nbytes=case["nbytes"], nonce=nonce, offset=case["offset"])
            got = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else \
                np.asarray(raw, dtype=np.uint8).ravel().tobytes()
            if got != want:
                where = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                names = ("source", "key", "nonce", "counter", "offset", "nbytes")
                ce: dict[str, Any] = {k: case[k] for k in names if k in case}
                raise PropertyFailure(prop, {**ce, "nonce_arg": nonce.hex(), "expected": want.hex(),
                                             "got": got.hex(), "first_difference": where},
                                      f"keystream(key={case['key']}, nonce={nonce.hex()}, offset={case['offset']}, "
                                      f"nbytes={case['nbytes']}) differs from the expected bytes at byte {where}"
                                      + (f" ({case['source']})" if "source" in case else "")
                                      + f": got {got[:32].hex()}..., expected {want[:32].hex()}...")
        return run

    chk.run("published", body("published"), fixed=[c for c in doc["published"] if c["cipher"] == cipher])
    chk.run("vectors", body("vectors"), fixed=[c for c in doc["cases"] if c["cipher"] == cipher])
    klen = 16 if cipher == "aes128-ctr" else 32
    if cipher == "aes128-ctr":
        nonces = st.tuples(st.one_of(st.binary(min_size=16, max_size=16), st.sampled_from([bytes(16), b"\xff" * 16])),
                           st.just(0))
    else:
        nonces = st.tuples(st.binary(min_size=12, max_size=12), st.integers(0, 2**31))
    cases = st.builds(
        lambda key, nc, offset, nbytes: {"key": key.hex(), "nonce": nc[0].hex(), "counter": nc[1],
                                         "offset": offset, "nbytes": nbytes},
        st.binary(min_size=klen, max_size=klen), nonces,
        st.one_of(st.integers(0, 300), st.integers(0, 2**36)), st.integers(0, 200))
    chk.run("matches_reference", body("matches_reference"), strategy=cases)
    return chk.result()


# ------------------------------------------------------------------------------------------------ kdf
def _label(entry: dict[str, str]) -> str | int | bytes:
    kind, value = entry["type"], entry["value"]
    return int(value) if kind == "int" else value if kind == "str" else bytes.fromhex(value)


def check_kdf(derive_fn: Callable[..., Any], *, examples: int = 100, seed: int | None = None) -> CheckResult:
    """Check ``derive_fn(master, *labels, length=16|32) -> bytes`` against :func:`refimpl.prg.derive_key`.

    Properties: ``vectors`` (the packaged ``kdf`` vectors) and ``matches_reference`` (random masters and label
    paths of str, int and bytes parts, where ``("ab",)`` and ``("a", "b")`` must give different keys).
    """
    chk = Checker("check_kdf", examples=examples, seed=seed)

    def body(prop: str) -> Callable[[tuple[bytes, list[Any], int]], None]:
        def run(case: tuple[bytes, list[Any], int]) -> None:
            master, labels, length = case
            want = derive_key(master, *labels, length=length)
            got = bytes(derive_fn(master, *labels, length=length))
            if got != want:
                raise PropertyFailure(prop, {"master": master.hex(), "labels": [repr(v) for v in labels],
                                             "length": length, "expected": want.hex(), "got": got.hex()},
                                      f"derive({master.hex()}, {', '.join(map(repr, labels))}, length={length}) "
                                      f"= {got.hex()}, expected {want.hex()}")
        return run

    fixed = [(bytes.fromhex(c["master"]), [_label(e) for e in c["labels"]], c["length"])
             for c in load_vectors("kdf")["cases"]]
    chk.run("vectors", body("vectors"), fixed=fixed)
    labels = st.lists(st.one_of(st.text(max_size=8), st.integers(-(2**70), 2**70), st.binary(max_size=8)),
                      max_size=4)
    chk.run("matches_reference", body("matches_reference"),
            strategy=st.tuples(rst.keys(), labels, st.sampled_from([16, 32])))
    return chk.result()


# ------------------------------------------------------------------------------------------------ sampling
def check_sampling(sample_fn: Callable[[int], Any], *, ring: Ring, samples: int = 4096,
                   alpha: float = 1e-9) -> CheckResult:
    """Check that ``sample_fn(count)`` draws ``count`` uniform elements of ``ring`` (no modulo bias).

    Properties: ``in_range`` (``count`` integers in ``[0, M)``) and ``uniform`` (Kolmogorov distance from the
    uniform distribution below the Dvoretzky-Kiefer-Wolfowitz bound at level ``alpha``, over ``samples`` draws).
    Reducing 64-bit words modulo M is caught where the bias is large: choose a modulus with a large
    ``2**64 mod M``, e.g. ``Ring(3 * 2**62)`` (values below ``2**62`` twice as likely) or ``Ring(2**63 + 1)``.
    A bias below about ``sqrt(ln(2/alpha) / (2 samples))`` in the CDF goes undetected.
    """
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a refimpl Ring, got {ring!r}")
    m = ring.modulus
    chk = Checker("check_sampling", examples=0, seed=None)
    drawn: list[int] = []

    def in_range(count: int) -> None:
        got = to_ints(sample_fn(count), f"sample({count})", "in_range", {"count": count})
        bad = [v for v in got if not 0 <= v < m]
        if len(got) != count or bad:
            raise PropertyFailure("in_range", {"count": count, "size": len(got), "out_of_range": bad[:8]},
                                  f"sample({count}) gave {len(got)} values" + (f", {bad[0]} not in [0, {m})"
                                                                               if bad else ""))
        drawn.extend(got)

    def uniform(_: Any) -> None:
        dist, bound = dkw_uniformity(drawn, m, alpha)
        if dist > bound:
            low = sum(1 for v in drawn if 2 * v < m) / len(drawn)
            raise PropertyFailure("uniform", {"samples": len(drawn), "distance": dist, "threshold": bound,
                                              "fraction_below_half": low, "first_values": drawn[:8]},
                                  f"{len(drawn)} samples are not uniform on [0, {m}): Kolmogorov distance "
                                  f"{dist:.4f} > {bound:.4f} (false-alarm probability {alpha:g}); {low:.3f} of "
                                  "them lie below M/2")

    chk.run("in_range", in_range, fixed=[samples])
    chk.run("uniform", uniform, fixed=[None])
    return chk.result()
