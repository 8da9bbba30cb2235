"""Generate refimpl's known-answer vectors (JSON) from refimpl itself.

Usage::

    python scripts/gen_vectors.py            # (re)write refimpl/testing/vectors/*.json
    python scripts/gen_vectors.py --check    # exit 1 if any file differs from what refimpl computes now

The schema is described in refimpl/testing/vectors/README.md. Everything here is deterministic (fixed keys; the
"random" values are drawn from refimpl streams under fixed keys), so regenerating gives byte-identical files.
The published NIST SP 800-38A and RFC 8439 vectors are written from their literal published values and checked
against refimpl before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refimpl import Z2_32, Z2_64, FixedPoint, Ring, derive_key, keystream, share, share_compressed
from refimpl.mpc import Dealer, Triple, matmul, mul, share_tensor, square, truncate, truncation_offset
from refimpl.prg import _KDF_SALT, Stream, _encode_label, key_length
from refimpl.secagg.additive import AdditiveClient, AdditiveConfig, run_additive_round
from refimpl.secagg.codec import Codec
from refimpl.sharing import Shares
from refimpl.sharing.binary import BinaryShares
from refimpl.sharing.shamir import DEFAULT_FIELD, lagrange_coefficients, shamir_reconstruct, shamir_share, share_bytes

VECTOR_DIR = ROOT / "refimpl" / "testing" / "vectors"
SCHEMA_VERSION = 1
Q = 23740629843760239486723  # the tutorial's 75-bit modulus (3 x 7913543281253413162241: a ring, not a field)
SEED = bytes(16)  # master key of every "random" value below

# ----------------------------------------------------------------------------------------------- published vectors
# NIST SP 800-38A (2001), Appendix F.5.1, CTR-AES128.Encrypt.
NIST_F51: dict[str, Any] = {
    "source": "NIST SP 800-38A F.5.1 CTR-AES128.Encrypt",
    "cipher": "aes128-ctr",
    "key": "2b7e151628aed2a6abf7158809cf4f3c",
    "nonce": "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
    "counter": 0,
    "offset": 0,
    "plaintext": "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                 "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    "ciphertext": "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
                  "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee",
}
# RFC 8439 (2018), section 2.3.2, test vector for the ChaCha20 block function (serialized block = keystream).
RFC8439_232: dict[str, Any] = {
    "source": "RFC 8439 2.3.2 ChaCha20 block function",
    "cipher": "chacha20",
    "key": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "nonce": "000000090000004a00000000",
    "counter": 1,
    "offset": 0,
    "keystream": "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
                 "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
}
# RFC 8439 (2018), section 2.4.2, example and test vector for the ChaCha20 cipher ("sunscreen").
RFC8439_242: dict[str, Any] = {
    "source": "RFC 8439 2.4.2 ChaCha20 encryption",
    "cipher": "chacha20",
    "key": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "nonce": "000000000000004a00000000",
    "counter": 1,
    "offset": 0,
    "plaintext": b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
                 b"sunscreen would be it.".hex(),
    "ciphertext": "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
                  "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
                  "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
                  "5af90bbf74a35be6b40b8eedf2785e42874d",
}
PUBLISHED = (NIST_F51, RFC8439_232, RFC8439_242)


def refimpl_nonce(cipher: str, nonce: bytes, counter: int) -> bytes:
    """refimpl's ``nonce`` argument for a (nonce, initial block counter) pair: ChaCha20 takes the 4-byte
    little-endian counter followed by the 12-byte nonce; AES-CTR's nonce is the whole initial counter block."""
    if cipher == "chacha20":
        return counter.to_bytes(4, "little") + nonce
    assert counter == 0
    return nonce


def _xor(a: str, b: str) -> str:
    return bytes(x ^ y for x, y in zip(bytes.fromhex(a), bytes.fromhex(b))).hex()


def published_streams() -> list[dict[str, Any]]:
    out = []
    for vec in PUBLISHED:
        case = dict(vec)
        if "keystream" not in case:
            case["keystream"] = _xor(case["plaintext"], case["ciphertext"])
        case["nbytes"] = len(case["keystream"]) // 2
        got = keystream(bytes.fromhex(case["key"]), case["nbytes"], cipher=case["cipher"],
                        nonce=refimpl_nonce(case["cipher"], bytes.fromhex(case["nonce"]), case["counter"]),
                        offset=case["offset"]).tobytes().hex()
        if got != case["keystream"]:
            raise SystemExit(f"refimpl does not reproduce the published vector {case['source']}")
        out.append(case)
    return out


# ----------------------------------------------------------------------------------------------- helpers
def _ints(values: Any) -> list[str]:
    return [str(int(v)) for v in np.asarray(values, dtype=object).ravel()]


def _float(x: float) -> str:
    return repr(float(x))


def _ring(ring: Ring) -> dict[str, str]:
    return {"modulus": str(ring.modulus), "name": repr(ring)}


def _random_elements(ring: Ring, label: str, count: int) -> list[int]:
    stream = Stream(derive_key(SEED, "vectors", label, ring.modulus))
    return [int(v) for v in ring.sample(stream, count)]


def _boundaries(ring: Ring) -> list[int]:
    m = ring.modulus
    vals = {0, 1, 2, m // 2 - 1, m // 2, m // 2 + 1, m - 2, m - 1}
    return sorted(v for v in vals if 0 <= v < m)


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "schema_version": SCHEMA_VERSION, "generator": "scripts/gen_vectors.py",
            "description": description}


# ----------------------------------------------------------------------------------------------- ring
RING_RINGS = [Ring(2), Ring(2**16), Z2_32, Ring(2**63), Z2_64, Ring(2**80), Ring(7), Ring(10), Ring.prime(2**31 - 1),
              Ring(2**32 + 1), Ring.prime(2**61 - 1), Ring(3 * 2**62), Ring(Q), Ring.prime(2**127 - 1)]


def ring_vectors() -> dict[str, Any]:
    cases = []
    for ring in RING_RINGS:
        m = ring.modulus
        bnd = _boundaries(ring)
        rnd = _random_elements(ring, "ring", 8)
        a = [x for x in bnd for _ in bnd] + rnd
        b = [y for _ in bnd for y in bnd] + _random_elements(ring, "ring-b", 8)
        ea, eb = ring.element(a), ring.element(b)
        values = bnd + rnd
        ev = ring.element(values)
        raw = [0, 1, -1, m - 1, m, m + 1, 2 * m + 3, -m, -(m // 2), -(m // 2) - 1, 2**70 + 5, -(2**70) - 5,
               2**130 + 7]
        cases.append({
            "ring": _ring(ring),
            "ops": {
                "add": {"a": _ints(ea), "b": _ints(eb), "expected": _ints(ring.add(ea, eb))},
                "sub": {"a": _ints(ea), "b": _ints(eb), "expected": _ints(ring.sub(ea, eb))},
                "mul": {"a": _ints(ea), "b": _ints(eb), "expected": _ints(ring.mul(ea, eb))},
                "neg": {"a": _ints(ev), "expected": _ints(ring.neg(ev))},
                "lift": {"a": _ints(ev), "expected": _ints(ring.lift(ev))},
                "reduce": {"a": [str(v) for v in raw], "expected": _ints(ring.reduce(raw))},
                "element": {"a": [str(v) for v in [ring.signed_min, -1, 0, m - 1]],
                            "expected": _ints(ring.element([ring.signed_min, -1, 0, m - 1]))},
                "element_rejects": {"a": [str(v) for v in [ring.signed_min - 1, m, m + 1]]},
                "sample": [
                    {"cipher": cipher, "key": key.hex(), "count": 16,
                     "expected": _ints(ring.sample(Stream(key, cipher=cipher), 16))}
                    for cipher, key in (("aes128-ctr", bytes(range(16))), ("chacha20", bytes(range(32))))
                ],
            },
        })
    return {**_header("ring", "Arithmetic in Z_M: add, sub, mul (elementwise, (a*b) mod M), neg, signed lift, "
                              "reduce of arbitrary integers, checked element conversion, and uniform sampling "
                              "from a keystream (refimpl's exact algorithm)."), "cases": cases}


# ----------------------------------------------------------------------------------------------- streams
def stream_vectors() -> dict[str, Any]:
    cases = []
    layouts = [(0, 64), (0, 1), (5, 27), (15, 2), (16, 16), (63, 3), (64, 64), (100, 200), (1000, 48), (4095, 130)]
    for cipher, keys, nonces in (
        ("aes128-ctr", [bytes(16), bytes(range(16))],
         [(bytes(16), 0), (bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"), 0), (b"\xff" * 16, 0)]),
        ("chacha20", [bytes(32), bytes(range(32))],
         [(bytes(12), 0), (bytes.fromhex("000000090000004a00000000"), 1), (bytes(range(12)), 7)]),
    ):
        for key in keys:
            for nonce, counter in nonces:
                for offset, nbytes in layouts:
                    ks = keystream(key, nbytes, cipher=cipher, nonce=refimpl_nonce(cipher, nonce, counter),
                                   offset=offset)
                    cases.append({"cipher": cipher, "key": key.hex(), "nonce": nonce.hex(), "counter": counter,
                                  "offset": offset, "nbytes": nbytes, "keystream": ks.tobytes().hex()})
    return {**_header("streams", "Keystream bytes of AES-128-CTR (NIST SP 800-38A; 16-byte nonce = initial "
                                 "counter block, incremented as a 128-bit big-endian integer) and ChaCha20 "
                                 "(RFC 8439; 12-byte nonce, 32-bit initial block counter), starting at byte "
                                 "`offset` of the stream. `published` holds the literal published vectors."),
            "published": published_streams(), "cases": cases}


# ----------------------------------------------------------------------------------------------- kdf
def kdf_vectors() -> dict[str, Any]:
    cases = []
    masters = [bytes(16), bytes(range(16)), bytes(range(32))]
    label_sets: list[tuple[Any, ...]] = [(), ("share", 1), ("ab",), ("a", "b"), (b"\x00\x01",), ("secagg", 3, 7),
                                         (-1,), ("\u00e9t\u00e9", 0)]
    label_sets += [("refimpl/share", p) for p in range(1, 5)]
    for master in masters:
        for labels in label_sets:
            for length in (16, 32):
                enc = [{"type": "int" if isinstance(p, int) else "str" if isinstance(p, str) else "bytes",
                        "value": str(p) if isinstance(p, int) else p if isinstance(p, str) else p.hex()}
                       for p in labels]
                cases.append({"master": master.hex(), "labels": enc,
                              "info": b"".join(_encode_label(p) for p in (length, *labels)).hex(), "length": length,
                              "key": derive_key(master, *labels, length=length).hex()})
    return {**_header("kdf", "derive_key(master, *labels, length): HKDF-SHA256 (RFC 5869) with salt "
                             "`salt` and info = concatenation over (length, *labels) of tag "
                             "(b'i' int as decimal ASCII, "
                             "b's' str as UTF-8, b'b' bytes) + 4-byte big-endian length + body."),
            "salt": _KDF_SALT.hex(), "cases": cases}


# ----------------------------------------------------------------------------------------------- encoding
ENCODINGS = [FixedPoint(), FixedPoint(ring=Z2_32), FixedPoint(base=10, frac_bits=3),
             FixedPoint(base=10, frac_bits=3, ring=Z2_32), FixedPoint(frac_bits=0), FixedPoint(frac_bits=1),
             FixedPoint(frac_bits=8, ring=Ring.prime(2**61 - 1)), FixedPoint(frac_bits=24, ring=Ring(Q)),
             FixedPoint(base=10, frac_bits=6, ring=Ring(2**62))]


def _encodes(fp: FixedPoint, x: float) -> bool:
    try:
        fp.encode(np.float64(x))
    except ValueError:
        return False
    return True


def max_encodable(fp: FixedPoint) -> float:
    """The largest float64 that ``fp`` encodes (the next float up raises): bisection on the bit patterns of
    positive floats, which are ordered like the floats themselves."""
    lo = 0  # bits of 0.0, which encodes
    hi = int(np.float64(2.0 * (fp.max_abs_integer + 1) / fp.scale + 1.0).view(np.int64))  # does not encode
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _encodes(fp, float(np.int64(mid).view(np.float64))):
            lo = mid
        else:
            hi = mid
    return float(np.int64(lo).view(np.float64))


def encoding_inputs(fp: FixedPoint) -> list[float]:
    res = 1.0 / fp.scale
    xs = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.25, -0.25, 0.75, 1 / 3, -1 / 3, 0.1, -0.1, 3.0000001, -2.001, -0.999,
          1e-3, -1e-3, -0.0005, 0.0625, 0.1875, 123.456, -123.456, res, -res, res / 2, -res / 2, 1.5 * res,
          -1.5 * res, 2.5 * res, -2.5 * res, 1e-300, -1e-300]
    a = (fp.scale & -fp.scale).bit_length() - 1  # 2-adic valuation of the scale
    xs += [(2 * j + 1) / 2 ** (a + 1) for j in range(-4, 4)]  # exactly half-way: x * scale = odd / 2
    xs += [m + d * res for m in (-1, -2, -7, -100) for d in (-1, 1)]  # negatives next to integers
    hi = max_encodable(fp)
    xs += [hi, -hi, hi / 3, -hi / 7]
    words = Stream(derive_key(SEED, "vectors", "encoding")).read(8 * 16).view(np.uint64)
    for w in words:  # log-uniform magnitudes up to the range, both signs
        u = float(w >> np.uint64(11)) / 2**53
        mag = hi ** u * res ** (1 - u) if hi > res else hi * u
        xs.append(mag if int(w) & 1 else -mag)
    return [x for x in xs if _encodes(fp, x)]


def encoding_vectors() -> dict[str, Any]:
    cases = []
    for fp in ENCODINGS:
        ring = fp.ring
        xs = encoding_inputs(fp)
        enc = fp.encode(np.array(xs, dtype=np.float64))
        hi = max_encodable(fp)
        over = float(np.nextafter(hi, np.inf))
        errors = [float("nan"), float("inf"), float("-inf"), over, -over, 2 * over]
        for x in errors:
            if _encodes(fp, x):
                raise SystemExit(f"{fp!r} encodes {x!r}, which should raise")
        rs = sorted(set(_boundaries(ring)) | set(_random_elements(ring, "decode", 8)))
        dec = fp.decode(ring.element(rs))
        enc_dec = fp.decode(enc)
        cases.append({
            "config": {"frac_bits": fp.frac_bits, "base": fp.base, "scale": str(fp.scale), "ring": _ring(ring)},
            "max_encodable": _float(hi),
            "encode": {"x": [_float(x) for x in xs], "x_hex": [float(x).hex() for x in xs],
                       "expected": _ints(enc), "signed": _ints(ring.lift(enc)),
                       "decoded": [_float(v) for v in enc_dec]},
            "decode": {"r": _ints(rs), "expected": [_float(v) for v in dec],
                       "expected_hex": [float(v).hex() for v in dec]},
            "encode_rejects": {"x": [_float(x) for x in errors]},
        })
    return {**_header("encoding", "FixedPoint(frac_bits, base, ring): encode x -> round_half_even(x * scale) mod "
                                  "M computed on the exact product (scale = base**frac_bits), decode r -> "
                                  "lift(r) / scale correctly rounded to float64; |round(x*scale)| >= M/2, NaN "
                                  "and infinities are rejected."), "cases": cases}


# ----------------------------------------------------------------------------------------------- share
SHARE_RINGS = [Z2_32, Z2_64, Ring(2**16), Ring(7), Ring.prime(2**61 - 1), Ring(Q)]
SHARE_KEYS = [bytes(range(16)), bytes(range(100, 132))]


def _secret(ring: Ring) -> list[int]:
    return _boundaries(ring) + _random_elements(ring, "share", 4)


def share_vectors() -> dict[str, Any]:
    cases = []
    for ring in SHARE_RINGS:
        for n in (2, 3, 5):
            for prg in ("aes128-ctr", "chacha20"):
                for key in SHARE_KEYS[: 2 if (n == 3 and ring in (Z2_64, Ring(Q))) else 1]:
                    x = _secret(ring)
                    sh = share(x, n, ring=ring, key=key, prg=prg)
                    party_keys = [derive_key(key, "refimpl/share", p, length=16 if prg == "aes128-ctr" else 32)
                                  for p in range(1, n)]
                    cases.append({"ring": _ring(ring), "n": n, "prg": prg, "key": key.hex(), "secret": _ints(x),
                                  "party_keys": [k.hex() for k in party_keys],
                                  "shares": [_ints(s) for s in sh.data]})
    return {**_header("share", "share(secret, n, ring, key, prg): party p >= 1 gets the mask "
                               "ring.sample(Stream(derive_key(key, 'refimpl/share', p, length=16 (AES) or 32 "
                               "(ChaCha20)), cipher=prg)); party 0 gets secret - sum(masks) mod M."),
            "cases": cases}


def share_compressed_vectors() -> dict[str, Any]:
    cases = []
    for ring in (Z2_32, Z2_64, Ring.prime(2**61 - 1), Ring(Q)):
        for n in (2, 3, 5):
            for prg in ("aes128-ctr", "chacha20"):
                x = _secret(ring)
                c = share_compressed(x, n, ring=ring, key=SHARE_KEYS[0], prg=prg)
                cases.append({"ring": _ring(ring), "n": n, "prg": prg, "key": SHARE_KEYS[0].hex(),
                              "secret": _ints(x), "first": _ints(c.first), "keys": [k.hex() for k in c.keys],
                              "nbytes": c.nbytes, "expanded_nbytes": c.expanded_nbytes})
    return {**_header("share_compressed", "share_compressed(secret, n, ring, key, prg): party 0's share as an "
                                          "array (`first`), parties 1..n-1 as their stream keys (`keys`); "
                                          "expanding key p gives that party's share of the `share` vectors."),
            "cases": cases}


# ----------------------------------------------------------------------------------------------- shamir
SHAMIR_FIELDS = [DEFAULT_FIELD, Ring.prime(2**61 - 1)]
SHAMIR_KEY = bytes(range(16))


def _shamir_case(field: Ring, n: int, t: int, prg: str, points: tuple[int, ...] | None = None) -> dict[str, Any]:
    x = _boundaries(field) + _random_elements(field, "shamir", 4)
    sh = shamir_share(x, n, t, field=field, key=SHAMIR_KEY, points=points, prg=prg)
    stream_key = derive_key(SHAMIR_KEY, "refimpl/shamir", length=key_length(prg))
    coeffs: Any = field.sample(Stream(stream_key, cipher=prg), (t - 1, len(x))) if t > 1 else []
    if _ints(shamir_reconstruct(sh.subset(list(sh.xs[-t:])))) != _ints(field.element(x)):
        raise SystemExit(f"Shamir sharing over {field!r} does not reconstruct")
    return {"field": _ring(field), "n": n, "t": t, "prg": prg, "key": SHAMIR_KEY.hex(),
            "stream_key": stream_key.hex(), "secret": _ints(field.element(x)),
            "coefficients": [_ints(c) for c in coeffs], "points": list(sh.xs),
            "shares": [_ints(s) for s in sh.data]}


def shamir_vectors() -> dict[str, Any]:
    cases = []
    for field in SHAMIR_FIELDS:
        for n, t in ((2, 1), (3, 2), (5, 3), (4, 4)):
            cases.append(_shamir_case(field, n, t, "aes128-ctr"))
        cases.append(_shamir_case(field, 3, 2, "chacha20"))
        cases.append(_shamir_case(field, 3, 2, "aes128-ctr", points=(7, 3, 100)))
    lagrange = []
    for field in SHAMIR_FIELDS:
        for xs, at in (((1, 2), 0), ((1, 2, 3), 0), ((2, 4, 5), 0), ((1, 3, 5, 7, 9), 0), ((7, 3, 100), 0),
                       ((1, 2, 3), 5)):
            lagrange.append({"field": _ring(field), "points": list(xs), "at": at,
                             "expected": [str(v) for v in lagrange_coefficients(xs, field, at=at)]})
    secret = b"sixteen byte key"
    sb = share_bytes(secret, 5, 3, key=SHAMIR_KEY)
    bytes_case = {"field": _ring(DEFAULT_FIELD), "n": 5, "t": 3, "prg": "aes128-ctr", "key": SHAMIR_KEY.hex(),
                  "secret": secret.hex(), "limbs": [int(v) for v in np.frombuffer(secret, dtype="<u2")],
                  "points": list(sb.xs), "shares": [_ints(s) for s in sb.data]}
    return {**_header("shamir", "shamir_share(secret, n, t, field, key, points, prg): element e's polynomial is "
                                "f(X) = secret[e] + sum_k coefficients[k-1][e] X^k mod p (k = 1..t-1), the "
                                "coefficients field.sample(Stream(derive_key(key, 'refimpl/shamir', "
                                "length=16 (AES) or 32 (ChaCha20)), cipher=prg), (t-1, len(secret))); party at "
                                "point x holds f(x). lagrange_coefficients(points, field, at) and share_bytes "
                                "(16-bit little-endian limbs) as well."),
            "cases": cases, "lagrange": lagrange, "share_bytes": [bytes_case]}


# ----------------------------------------------------------------------------------------------- beaver
DEALER_KEY = bytes(range(32, 48))
BEAVER_FP = FixedPoint()  # base 2, 16 fractional bits, Z2_64
BEAVER_X = [1.5, -2.25, 0.0, 3.0]
BEAVER_Y = [-0.5, 4.0, 7.75, -1.0]
BEAVER_MX = [[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]
BEAVER_MY = [[2.0, -1.0], [0.5, 1.5], [-3.0, 4.0]]
BEAVER_FRAC = 16


def _draw_items(dealer: Dealer) -> list[Triple]:
    """The items every beaver case draws, in this order (indices 0..3)."""
    return [dealer.mul_triple((4,)), dealer.matmul_triple((2, 3), (3, 2)), dealer.square_pair((4,)),
            dealer.trunc_pair((4,), BEAVER_FRAC)]


def _sharing(s: Shares | BinaryShares) -> dict[str, Any]:
    assert isinstance(s, Shares)
    return {"shares": [_ints(p) for p in s.data], "opened": _ints(s.reconstruct()),
            "signed": _ints(s.ring.lift(s.reconstruct()))}


def beaver_vectors() -> dict[str, Any]:
    cases = []
    for n in (2, 3):
        items: list[dict[str, Any]] = []
        r_opened: list[int] = []
        for item in _draw_items(Dealer(n, key=DEALER_KEY)):
            parts = item.take()
            items.append({"kind": item.kind, "index": item.index, "shapes": [list(s) for s in item.shapes],
                          "stream_key": derive_key(DEALER_KEY, "refimpl/dealer", item.kind, item.index).hex(),
                          "parts": [_sharing(p) for p in parts]})
            if item.kind == "trunc":
                r_opened = [int(v) for v in parts[0].reconstruct()]
        # the same dealer key again: mul, matmul, square, truncate consume items 0, 1, 2, 3 above, in order
        dealer = Dealer(n, key=DEALER_KEY)
        ring = dealer.ring
        x = share(BEAVER_FP.encode(BEAVER_X), n, key=bytes([1]) * 16)
        y = share(BEAVER_FP.encode(BEAVER_Y), n, key=bytes([2]) * 16)
        mx = share(BEAVER_FP.encode(BEAVER_MX), n, key=bytes([3]) * 16)
        my = share(BEAVER_FP.encode(BEAVER_MY), n, key=bytes([4]) * 16)
        z = mul(x, y, dealer)
        zm = matmul(mx, my, dealer)
        zs = square(x, dealer)
        zt = truncate(z, BEAVER_FRAC, dealer)
        offset = ring.element([truncation_offset(ring)] * len(BEAVER_X))  # c is the opened x + 2^62 + r
        if dealer.issued != {"mul": 1, "matmul": 1, "square": 1, "trunc": 1}:
            raise SystemExit(f"unexpected dealer items {dealer.issued}")
        got = ring.lift(zt.reconstruct())
        want = np.floor(np.array(BEAVER_X) * np.array(BEAVER_Y) * 2.0**BEAVER_FRAC).astype(np.int64)
        if not np.all((got - want >= 0) & (got - want <= 1)):
            raise SystemExit("truncate is off by more than one unit")
        cases.append({
            "ring": _ring(ring), "n": n, "dealer_key": DEALER_KEY.hex(), "items": items,
            "inputs": {
                "x": {"key": (bytes([1]) * 16).hex(), "shape": [4], **_sharing(x)},
                "y": {"key": (bytes([2]) * 16).hex(), "shape": [4], **_sharing(y)},
                "mx": {"key": (bytes([3]) * 16).hex(), "shape": [2, 3], **_sharing(mx)},
                "my": {"key": (bytes([4]) * 16).hex(), "shape": [3, 2], **_sharing(my)},
            },
            "mul": {"x": "x", "y": "y", "item": 0, "shape": [4], **_sharing(z)},
            "matmul": {"x": "mx", "y": "my", "item": 1, "shape": [2, 2], **_sharing(zm)},
            "square": {"x": "x", "item": 2, "shape": [4], **_sharing(zs)},
            "truncate": {"x": "mul", "frac_bits": BEAVER_FRAC, "item": 3, "shape": [4],
                         "c": _ints(ring.add(ring.add(z.reconstruct(), offset), ring.element(r_opened))),
                         **_sharing(zt)},
        })
    return {**_header("beaver", "Dealer(n, key) over Z2_64: item i of kind k (a global counter over all kinds, "
                                "from 0) is drawn from Stream(derive_key(key, 'refimpl/dealer', k, i)) (AES-128-CTR):"
                                " first the item's values, then for each value the masks of parties 1..n-1 "
                                "(party 0 gets value - sum of masks). mul, matmul, square and truncate on sharings "
                                "made with share(), consuming the dealer's items in order; each item is "
                                "single-use."),
            "cases": cases}


# ----------------------------------------------------------------------------------------------- secagg_additive
SECAGG_CONTRIBUTIONS = {1: [0.5, -0.25, 1.0, 0.0], 2: [0.25, 1.0, -1.0, 0.125], 4: [-1.0, 0.0, 0.75, -0.5]}
SECAGG_KEYS = {cid: bytes([16 * cid + i for i in range(16)]) for cid in SECAGG_CONTRIBUTIONS}
SECAGG_ROUND = 3


def secagg_additive_vectors() -> dict[str, Any]:
    cfg = AdditiveConfig(codec=Codec(length=4, max_clients=4, clip=1.0), servers=3)
    clients = []
    for cid, values in SECAGG_CONTRIBUTIONS.items():
        client = AdditiveClient(cfg, cid, key=SECAGG_KEYS[cid])
        client.begin_round(SECAGG_ROUND)
        msgs = client.contribute(values)
        clients.append({
            "id": cid, "key": SECAGG_KEYS[cid].hex(), "values": [_float(v) for v in values],
            "encoded": _ints(cfg.codec.encode(values)),
            "round_key": derive_key(SECAGG_KEYS[cid], "secagg/additive", SECAGG_ROUND, cid).hex(),
            "first": {"server": msgs[0].server, "array": _ints(msgs[0].payload)},
            "keys": [{"server": m.server, "key": bytes(m.payload).hex()} for m in msgs[1:]],
            "upload_nbytes": sum(m.nbytes for m in msgs),
        })
    res = run_additive_round(cfg, SECAGG_CONTRIBUTIONS, round_=SECAGG_ROUND, keys=SECAGG_KEYS)
    if sorted(res.clients) != sorted(SECAGG_CONTRIBUTIONS):
        raise SystemExit("secagg_additive round dropped a client")
    case = {
        "config": {"length": cfg.length, "servers": cfg.servers, "max_clients": cfg.max_clients,
                   "clip": None if cfg.codec.clip is None else _float(cfg.codec.clip),
                   "frac_bits": cfg.codec.frac_bits, "ring": _ring(cfg.ring), "prg": cfg.prg},
        "round": SECAGG_ROUND, "clients": clients, "ring_total": _ints(res.ring_total),
        "total": [_float(v) for v in res.total], "total_hex": [float(v).hex() for v in res.total],
    }
    return {**_header("secagg_additive", "run_additive_round(config, contributions, round_, keys): client k "
                                         "encodes its values (fixed point), shares them with share_compressed "
                                         "among the S servers under derive_key(key_k, 'secagg/additive', round, "
                                         "k); server (k + p) mod S gets party p (p = 0: the array, p >= 1: the "
                                         "party's stream key). The total is the sum over clients, decoded."),
            "cases": [case]}


# ----------------------------------------------------------------------------------------------- mpc
MPC_FP = FixedPoint(base=10, frac_bits=3)  # PySyft's fix_precision defaults: products divided by 10**3
MPC_X = [1.5, -2.25, 0.0, 3.125]
MPC_Y = [-0.5, 4.0, 7.75, -1.0]
MPC_DIVISOR = 7


def mpc_vectors() -> dict[str, Any]:
    """Dealer-keyed cases for the fixed-point algebra: a base-10 product (Beaver, then division by 10**3), a
    division by 7, and a comparison (sign bit by the A2B adder, then B2A), consuming the dealer's items in order."""
    cases = []
    for n in (2, 3):
        dealer = Dealer(n, key=DEALER_KEY)
        ring = dealer.ring
        x = share_tensor(MPC_X, dealer, encoding=MPC_FP, key=bytes([5]) * 16)
        y = share_tensor(MPC_Y, dealer, encoding=MPC_FP, key=bytes([6]) * 16)
        z = x * y
        after_mul = dict(dealer.issued)
        q = z.divide_exact(MPC_DIVISOR)
        lt = x < y
        got = ring.lift(z.shares.reconstruct())
        want = np.array([round(a * 1000) * round(b * 1000) for a, b in zip(MPC_X, MPC_Y)]) // 1000
        if not np.all((got - want >= 0) & (got - want <= 1)):
            raise SystemExit("base-10 product is off by more than one unit")
        if ring.lift(lt.shares.reconstruct()).tolist() != [int(a < b) for a, b in zip(MPC_X, MPC_Y)]:
            raise SystemExit("comparison is wrong")
        cases.append({
            "ring": _ring(ring), "n": n, "dealer_key": DEALER_KEY.hex(),
            "encoding": {"base": MPC_FP.base, "frac_bits": MPC_FP.frac_bits},
            "inputs": {"x": {"key": (bytes([5]) * 16).hex(), "values": [_float(v) for v in MPC_X],
                             **_sharing(x.shares)},
                       "y": {"key": (bytes([6]) * 16).hex(), "values": [_float(v) for v in MPC_Y],
                             **_sharing(y.shares)}},
            "mul": {"items": after_mul, "divisor": MPC_FP.scale, **_sharing(z.shares)},
            "divide": {"x": "mul", "divisor": MPC_DIVISOR, **_sharing(q.shares)},
            "less_than": {"x": "x", "y": "y", **_sharing(lt.shares)},
            "issued": dict(dealer.issued),
        })
    return {**_header("mpc", "The fixed-point algebra on stacked shares (refimpl.mpc.share_tensor, Dealer(n, key) "
                             "over Z2_64, items drawn as in beaver.json): mul = Beaver product of x and y (one mul "
                             "item) then dealer-assisted division by base**frac_bits (one trunc item, divisor "
                             "10**3); divide = the product divided by 7; less_than = [x < y] as an integer 0/1 "
                             "sharing (msb of x - y by the pruned Kogge-Stone adder on AND items, then B2A with a "
                             "daBit). Items are consumed in that order; 'issued' counts them by kind."),
            "cases": cases}


BUILDERS = {"ring": ring_vectors, "streams": stream_vectors, "kdf": kdf_vectors, "encoding": encoding_vectors,
            "share": share_vectors, "share_compressed": share_compressed_vectors, "shamir": shamir_vectors,
            "beaver": beaver_vectors, "secagg_additive": secagg_additive_vectors, "mpc": mpc_vectors}


# ----------------------------------------------------------------------------------------------- output
def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def dumps(obj: Any, indent: int = 0) -> str:
    """Deterministic JSON: dicts one key per line, lists of scalars on one line."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(_is_scalar(v) for v in obj):
            return json.dumps(obj, ensure_ascii=False)
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def build() -> dict[str, str]:
    """The text of every vector file, by name."""
    return {name: dumps(builder()) + "\n" for name, builder in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--out", type=Path, default=VECTOR_DIR, help="output folder (default: the package's)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = args.out / f"{name}.json"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({len(text)} bytes)")
    if stale:
        print(f"out of date: {', '.join(stale)} (run: python scripts/gen_vectors.py)", file=sys.stderr)
        return 1
    if args.check:
        print(f"all {len(BUILDERS)} vector files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
