"""Known-answer vectors: refimpl reproduces every packaged vector, the published NIST / RFC vectors inside them are
the literal published values, the files' self-description (KDF salt and info, share masks) is accurate, and the
generator script reproduces the files byte for byte."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from refimpl import (
    FixedPoint,
    OutOfRangeError,
    Ring,
    Stream,
    derive_key,
    keystream,
    reconstruct,
    share,
    share_compressed,
)
from refimpl.errors import TripleReuseError
from refimpl.mpc import Dealer, matmul, mul, square, truncate
from refimpl.secagg.additive import AdditiveClient, AdditiveConfig, run_additive_round
from refimpl.secagg.codec import Codec
from refimpl.sharing.shamir import (
    lagrange_coefficients,
    reconstruct_bytes,
    shamir_reconstruct,
    shamir_share,
    share_bytes,
)
from refimpl.testing import VECTOR_NAMES, load_vectors

ROOT = Path(__file__).resolve().parent.parent


def ints(values) -> list[int]:
    return [int(v) for v in np.asarray(values, dtype=object).ravel()]


def strs(values) -> list[str]:
    return [str(v) for v in ints(values)]


def ring_of(entry: dict) -> Ring:
    ring = Ring(int(entry["modulus"]))
    assert repr(ring) == entry["name"]
    return ring


def nonce_arg(case: dict) -> bytes:
    nonce = bytes.fromhex(case["nonce"])
    return case["counter"].to_bytes(4, "little") + nonce if case["cipher"] == "chacha20" else nonce


# ------------------------------------------------------------------------------------------------ the files
def test_every_vector_file_loads_with_its_header():
    for name in VECTOR_NAMES:
        doc = load_vectors(name)
        assert doc["name"] == name and doc["schema_version"] == 1 and doc["cases"], name


def test_the_higher_floor_vector_files_are_listed_packaged_and_small():
    assert {"shamir", "beaver", "secagg_additive"} <= set(VECTOR_NAMES)
    assert len(set(VECTOR_NAMES)) == len(VECTOR_NAMES)
    folder = ROOT / "refimpl" / "testing" / "vectors"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(VECTOR_NAMES)
    for name in ("shamir", "beaver", "secagg_additive"):
        assert (folder / f"{name}.json").stat().st_size < 100_000, name
        assert f"`{name}.json`" in (folder / "README.md").read_text(encoding="utf-8"), name


def test_load_vectors_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown vector set 'rings'"):
        load_vectors("rings")


def test_generator_reproduces_the_files_byte_for_byte():
    spec = importlib.util.spec_from_file_location("gen_vectors", ROOT / "scripts" / "gen_vectors.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    built = gen.build()
    assert sorted(built) == sorted(VECTOR_NAMES)
    for name, text in built.items():
        path = ROOT / "refimpl" / "testing" / "vectors" / f"{name}.json"
        assert path.read_text(encoding="utf-8") == text, f"{name}.json is stale: run python scripts/gen_vectors.py"


# ------------------------------------------------------------------------------------------------ published
# Literal values as published (typed in from the documents, not computed).
SP800_38A_F51 = {
    "key": "2b7e151628aed2a6abf7158809cf4f3c",
    "counter_block": "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
    "plaintext": ["6bc1bee22e409f96e93d7e117393172a", "ae2d8a571e03ac9c9eb76fac45af8e51",
                  "30c81c46a35ce411e5fbc1191a0a52ef", "f69f2445df4f9b17ad2b417be66c3710"],
    "output_block_1": "ec8cdf7398607cb0f2d21675ea9ea1e4",
    "ciphertext": ["874d6191b620e3261bef6864990db6ce", "9806f66b7970fdff8617187bb9fffdff",
                   "5ae4df3edbd5d35e5b4f09020db03eab", "1e031dda2fbe03d1792170a0f3009cee"],
}
RFC8439_KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
RFC8439_2_3_2 = {  # block counter 1
    "nonce": "000000090000004a00000000",
    "serialized": ["10f1e7e4d13b5915500fdd1fa32071c4", "c7d1f4c733c068030422aa9ac3d46c4e",
                   "d2826446079faa0914c2d705d98b02a2", "b5129cd1de164eb9cbd083e8a2503c4e"],
}
RFC8439_2_4_2 = {  # initial block counter 1
    "nonce": "000000000000004a00000000",
    "plaintext": b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
                 b"sunscreen would be it.",
    "ciphertext": ["6e2e359a2568f98041ba0728dd0d6981", "e97e7aec1d4360c20a27afccfd9fae0b",
                   "f91b65c5524733ab8f593dabcd62b357", "1639d624e65152ab8f530c359f0861d8",
                   "07ca0dbf500d6a6156a38e088a22b65e", "52bc514d16ccf806818ce91ab7793736",
                   "5af90bbf74a35be6b40b8eedf2785e42", "874d"],
}


def published(source_prefix: str) -> dict:
    return next(c for c in load_vectors("streams")["published"] if c["source"].startswith(source_prefix))


def test_nist_sp800_38a_f51_is_the_published_vector_and_refimpl_reproduces_it():
    case = published("NIST SP 800-38A F.5.1")
    assert case["key"] == SP800_38A_F51["key"] and case["nonce"] == SP800_38A_F51["counter_block"]
    assert case["plaintext"] == "".join(SP800_38A_F51["plaintext"])
    assert case["ciphertext"] == "".join(SP800_38A_F51["ciphertext"])
    assert case["keystream"][:32] == SP800_38A_F51["output_block_1"]
    ks = keystream(bytes.fromhex(case["key"]), 64, nonce=bytes.fromhex(case["nonce"])).tobytes()
    assert bytes(a ^ b for a, b in zip(bytes.fromhex(case["plaintext"]), ks)).hex() == case["ciphertext"]


def test_rfc8439_2_3_2_block_is_the_published_vector_and_refimpl_reproduces_it():
    case = published("RFC 8439 2.3.2")
    assert case["key"] == RFC8439_KEY and case["nonce"] == RFC8439_2_3_2["nonce"] and case["counter"] == 1
    assert case["keystream"] == "".join(RFC8439_2_3_2["serialized"])
    key, nonce = bytes.fromhex(RFC8439_KEY), bytes.fromhex(RFC8439_2_3_2["nonce"])
    # block counter 1 = byte offset 64 of the stream with counter 0, or the 16-byte nonce with counter 1 in front
    assert keystream(key, 64, cipher="chacha20", nonce=nonce, offset=64).tobytes().hex() == case["keystream"]
    assert keystream(key, 64, cipher="chacha20", nonce=nonce_arg(case)).tobytes().hex() == case["keystream"]


def test_rfc8439_2_4_2_encryption_is_the_published_vector_and_refimpl_reproduces_it():
    case = published("RFC 8439 2.4.2")
    assert case["key"] == RFC8439_KEY and case["nonce"] == RFC8439_2_4_2["nonce"] and case["counter"] == 1
    assert bytes.fromhex(case["plaintext"]) == RFC8439_2_4_2["plaintext"]
    assert case["ciphertext"] == "".join(RFC8439_2_4_2["ciphertext"]) and len(RFC8439_2_4_2["plaintext"]) == 114
    ks = keystream(bytes.fromhex(RFC8439_KEY), 114, cipher="chacha20", nonce=nonce_arg(case)).tobytes()
    assert bytes(a ^ b for a, b in zip(RFC8439_2_4_2["plaintext"], ks)).hex() == case["ciphertext"]


# ------------------------------------------------------------------------------------------------ streams, kdf
def test_stream_vectors():
    doc = load_vectors("streams")
    assert {c["cipher"] for c in doc["cases"]} == {"aes128-ctr", "chacha20"}
    for case in doc["published"] + doc["cases"]:
        got = keystream(bytes.fromhex(case["key"]), case["nbytes"], cipher=case["cipher"], nonce=nonce_arg(case),
                        offset=case["offset"])
        assert got.tobytes().hex() == case["keystream"], case
        if "ciphertext" in case:
            assert bytes(a ^ b for a, b in zip(bytes.fromhex(case["plaintext"]), got.tobytes())).hex() == \
                case["ciphertext"]


def test_kdf_vectors_and_their_hkdf_description():
    doc = load_vectors("kdf")
    for case in doc["cases"]:
        labels = [int(e["value"]) if e["type"] == "int" else e["value"] if e["type"] == "str"
                  else bytes.fromhex(e["value"]) for e in case["labels"]]
        master = bytes.fromhex(case["master"])
        assert derive_key(master, *labels, length=case["length"]).hex() == case["key"], case
        # the documented construction, with the cryptography package's HKDF directly
        hkdf = HKDF(algorithm=hashes.SHA256(), length=case["length"], salt=bytes.fromhex(doc["salt"]),
                    info=bytes.fromhex(case["info"]))
        assert hkdf.derive(master).hex() == case["key"]
    keys = {(c["master"], c["length"], tuple(e["value"] for e in c["labels"])): c["key"] for c in doc["cases"]}
    assert keys[("00" * 16, 16, ("ab",))] != keys[("00" * 16, 16, ("a", "b"))]


# ------------------------------------------------------------------------------------------------ ring
def test_ring_vectors():
    doc = load_vectors("ring")
    moduli = {int(c["ring"]["modulus"]) for c in doc["cases"]}
    assert {2**32, 2**64, 23740629843760239486723, 2**61 - 1} <= moduli
    for case in doc["cases"]:
        ring, ops = ring_of(case["ring"]), case["ops"]
        el = partial(lambda r, vs: r.element([int(v) for v in vs]), ring)
        for name in ("add", "sub", "mul"):
            op = ops[name]
            assert strs(getattr(ring, name)(el(op["a"]), el(op["b"]))) == op["expected"], (ring, name)
        assert strs(ring.neg(el(ops["neg"]["a"]))) == ops["neg"]["expected"]
        assert strs(ring.lift(el(ops["lift"]["a"]))) == ops["lift"]["expected"]
        assert strs(ring.reduce([int(v) for v in ops["reduce"]["a"]])) == ops["reduce"]["expected"]
        assert strs(el(ops["element"]["a"])) == ops["element"]["expected"]
        for v in ops["element_rejects"]["a"]:
            with pytest.raises(OutOfRangeError):
                ring.element([int(v)])
        for s in ops["sample"]:
            got = ring.sample(Stream(bytes.fromhex(s["key"]), cipher=s["cipher"]), s["count"])
            assert strs(got) == s["expected"], (ring, s["cipher"])


def test_ring_vectors_pin_the_boundaries():
    case = next(c for c in load_vectors("ring")["cases"] if c["ring"]["name"] == "Z2_64")
    lift = dict(zip(case["ops"]["lift"]["a"], case["ops"]["lift"]["expected"]))
    assert lift[str(2**63)] == str(-(2**63)) and lift[str(2**64 - 1)] == "-1" and lift[str(2**63 - 1)] == str(2**63 - 1)


# ------------------------------------------------------------------------------------------------ encoding
def test_encoding_vectors():
    doc = load_vectors("encoding")
    configs = {(c["config"]["base"], c["config"]["frac_bits"], c["config"]["ring"]["name"]) for c in doc["cases"]}
    assert (10, 3, "Z2_64") in configs and (2, 16, "Z2_64") in configs
    for case in doc["cases"]:
        cfg = case["config"]
        fp = FixedPoint(frac_bits=cfg["frac_bits"], base=cfg["base"], ring=ring_of(cfg["ring"]))
        assert str(fp.scale) == cfg["scale"]
        enc = case["encode"]
        xs = [float(x) for x in enc["x"]]
        assert [float.fromhex(h) for h in enc["x_hex"]] == xs
        got = fp.encode(np.array(xs, dtype=np.float64))
        assert strs(got) == enc["expected"], fp
        assert strs(fp.ring.lift(got)) == enc["signed"]
        assert [repr(v) for v in fp.decode(got).tolist()] == enc["decoded"]
        dec = case["decode"]
        out = fp.decode(fp.ring.element([int(r) for r in dec["r"]])).tolist()
        assert [repr(v) for v in out] == dec["expected"]
        assert [v.hex() for v in out] == dec["expected_hex"]
        top = float(case["max_encodable"])
        fp.encode([top, -top])
        for x in case["encode_rejects"]["x"]:
            with pytest.raises(OutOfRangeError):
                fp.encode([float(x)])
        assert float(np.nextafter(top, np.inf)) in [float(x) for x in case["encode_rejects"]["x"]]


def test_encoding_vectors_pin_half_even_and_negative_decoding():
    syft = next(c for c in load_vectors("encoding")["cases"]
                if (c["config"]["base"], c["config"]["frac_bits"], c["config"]["ring"]["name"]) == (10, 3, "Z2_64"))
    signed = dict(zip(syft["encode"]["x"], syft["encode"]["signed"]))
    assert signed["0.0625"] == "62" and signed["0.1875"] == "188" and signed["-0.0005"] == "-1"
    decoded = dict(zip(syft["encode"]["x"], syft["encode"]["decoded"]))
    assert decoded["-2.001"] == "-2.001" and decoded["-0.999"] == "-0.999"


# ------------------------------------------------------------------------------------------------ sharing
def test_share_vectors_and_their_mask_description():
    doc = load_vectors("share")
    assert {c["n"] for c in doc["cases"]} == {2, 3, 5} and {c["prg"] for c in doc["cases"]} == {"aes128-ctr",
                                                                                                  "chacha20"}
    for case in doc["cases"]:
        ring, n, prg, key = ring_of(case["ring"]), case["n"], case["prg"], bytes.fromhex(case["key"])
        secret = [int(v) for v in case["secret"]]
        sh = share(ring.element(secret), n, ring=ring, key=key, prg=prg)
        assert [strs(s) for s in sh.data] == case["shares"], (ring, n, prg)
        assert ints(reconstruct(sh)) == secret
        for party, pk in enumerate(case["party_keys"], start=1):  # the documented construction, step by step
            assert derive_key(key, "refimpl/share", party, length=16 if prg == "aes128-ctr" else 32).hex() == pk
            mask = ring.sample(Stream(bytes.fromhex(pk), cipher=prg), len(secret))
            assert strs(mask) == case["shares"][party]


def test_share_compressed_vectors_expand_to_the_share_vectors():
    full = {(c["ring"]["modulus"], c["n"], c["prg"], c["key"]): c["shares"] for c in load_vectors("share")["cases"]}
    for case in load_vectors("share_compressed")["cases"]:
        ring, n, prg, key = ring_of(case["ring"]), case["n"], case["prg"], bytes.fromhex(case["key"])
        c = share_compressed(ring.element([int(v) for v in case["secret"]]), n, ring=ring, key=key, prg=prg)
        assert strs(c.first) == case["first"] and [k.hex() for k in c.keys] == case["keys"]
        assert (c.nbytes, c.expanded_nbytes) == (case["nbytes"], case["expanded_nbytes"])
        expanded = [strs(s) for s in c.expand().data]
        assert expanded == full[(case["ring"]["modulus"], n, prg, case["key"])]


# ------------------------------------------------------------------------------------------------ shamir
def test_shamir_vectors_and_their_coefficient_description():
    doc = load_vectors("shamir")
    assert {c["field"]["modulus"] for c in doc["cases"]} == {str(2**31 - 1), str(2**61 - 1)}
    assert {(c["n"], c["t"]) for c in doc["cases"]} >= {(2, 1), (3, 2), (5, 3), (4, 4)}
    assert {c["prg"] for c in doc["cases"]} == {"aes128-ctr", "chacha20"}
    for case in doc["cases"]:
        field, n, t, prg, key = ring_of(case["field"]), case["n"], case["t"], case["prg"], bytes.fromhex(case["key"])
        p = field.modulus
        secret = [int(v) for v in case["secret"]]
        assert {0, p - 1} <= set(secret)
        points = None if case["points"] == list(range(1, n + 1)) else case["points"]
        sh = shamir_share(secret, n, t, field=field, key=key, points=points, prg=prg)
        assert list(sh.xs) == case["points"]
        assert [strs(s) for s in sh.data] == case["shares"], (field, n, t, prg)
        assert ints(shamir_reconstruct(sh.subset(list(reversed(sh.xs))[:t]))) == secret
        # the documented construction, step by step: stream key, coefficients, then f(x) with Python integers
        stream_key = derive_key(key, "refimpl/shamir", length=16 if prg == "aes128-ctr" else 32)
        assert stream_key.hex() == case["stream_key"]
        assert len(case["coefficients"]) == t - 1
        if t > 1:
            coeffs = field.sample(Stream(stream_key, cipher=prg), (t - 1, len(secret)))
            assert [strs(c) for c in coeffs] == case["coefficients"]
        poly = [secret] + [[int(v) for v in c] for c in case["coefficients"]]
        for x, share_row in zip(case["points"], case["shares"]):
            want = [sum(poly[k][e] * pow(x, k, p) for k in range(t)) % p for e in range(len(secret))]
            assert [int(v) for v in share_row] == want


def test_shamir_lagrange_vectors():
    doc = load_vectors("shamir")
    assert any(c["at"] != 0 for c in doc["lagrange"])
    for case in doc["lagrange"]:
        field, xs, at = ring_of(case["field"]), case["points"], case["at"]
        lam = [int(v) for v in case["expected"]]
        assert lagrange_coefficients(xs, field, at=at) == lam
        p = field.modulus
        for k in range(len(xs)):  # interpolation of X^k at `at` is exact for every k < len(xs)
            assert sum(li * pow(x, k, p) for li, x in zip(lam, xs)) % p == pow(at, k, p)


def test_shamir_share_bytes_vectors():
    (case,) = load_vectors("shamir")["share_bytes"]
    secret, key = bytes.fromhex(case["secret"]), bytes.fromhex(case["key"])
    assert case["limbs"] == [int.from_bytes(secret[i : i + 2], "little") for i in range(0, len(secret), 2)]
    sh = share_bytes(secret, case["n"], case["t"], key=key, field=ring_of(case["field"]), prg=case["prg"])
    assert list(sh.xs) == case["points"] and [strs(s) for s in sh.data] == case["shares"]
    limbs = shamir_share(case["limbs"], case["n"], case["t"], field=ring_of(case["field"]), key=key, prg=case["prg"])
    assert [strs(s) for s in limbs.data] == case["shares"]
    assert reconstruct_bytes(sh.subset(case["points"][-case["t"] :])) == secret


# ------------------------------------------------------------------------------------------------ beaver
def _draw_beaver_items(dealer: Dealer) -> list:
    return [dealer.mul_triple((4,)), dealer.matmul_triple((2, 3), (3, 2)), dealer.square_pair((4,)),
            dealer.trunc_pair((4,), 16)]


def _matmul_ints(a: list[int], b: list[int], shape_a: list[int], shape_b: list[int], m: int) -> list[int]:
    (r, k), (_, c) = shape_a, shape_b
    return [sum(a[i * k + j] * b[j * c + q] for j in range(k)) % m for i in range(r) for q in range(c)]


def _item_values(kind: str, stream: Stream, ring: Ring, shapes: list[list[int]]) -> list[list[int]]:
    """The documented values of a dealer item, drawn from its stream (which is left at the first mask)."""
    m, size = ring.modulus, int(np.prod(shapes[0]))
    draw = lambda shape: [int(v) for v in ring.sample(stream, int(np.prod(shape)))]  # noqa: E731
    if kind == "mul":
        a, b = draw(shapes[0]), draw(shapes[1])
        return [a, b, [x * y % m for x, y in zip(a, b)]]
    if kind == "matmul":
        a, b = draw(shapes[0]), draw(shapes[1])
        return [a, b, _matmul_ints(a, b, shapes[0], shapes[1], m)]
    if kind == "square":
        a = draw(shapes[0])
        return [a, [x * x % m for x in a]]
    assert kind == "trunc" and size
    r = draw(shapes[0])
    return [r, [(v % 2**63) >> 16 for v in r], [v >> 63 for v in r]]


def test_beaver_dealer_items_and_their_stream_description():
    for case in load_vectors("beaver")["cases"]:
        ring, n, key = ring_of(case["ring"]), case["n"], bytes.fromhex(case["dealer_key"])
        assert ring.modulus == 2**64
        items = _draw_beaver_items(Dealer(n, key=key))
        assert [(it.kind, it.index) for it in items] == [(c["kind"], c["index"]) for c in case["items"]]
        assert [it["index"] for it in case["items"]] == list(range(len(case["items"])))
        for item, rec in zip(items, case["items"]):
            assert [list(s) for s in item.shapes] == rec["shapes"]
            parts = item.take()
            assert [[strs(s) for s in p.data] for p in parts] == [p["shares"] for p in rec["parts"]]
            with pytest.raises(TripleReuseError):
                item.take()
            # the documented construction: the item's stream gives the values, then each value's masks
            stream_key = derive_key(key, "refimpl/dealer", rec["kind"], rec["index"])
            assert stream_key.hex() == rec["stream_key"]
            stream = Stream(stream_key)
            values = _item_values(rec["kind"], stream, ring, rec["shapes"])
            assert [strs(v) for v in values] == [p["opened"] for p in rec["parts"]]
            for value, part in zip(values, rec["parts"]):
                masks = ring.sample(stream, (n - 1, len(value)))
                assert [strs(mk) for mk in masks] == part["shares"][1:]
                assert [int(v) for v in part["shares"][0]] == [
                    (v - sum(int(mk[e]) for mk in masks)) % 2**64 for e, v in enumerate(value)]
                assert strs(ring.lift(ring.element(value))) == part["signed"]


def test_beaver_protocol_vectors():
    m = 2**64
    for case in load_vectors("beaver")["cases"]:
        ring, n, key = ring_of(case["ring"]), case["n"], bytes.fromhex(case["dealer_key"])
        shared = {}
        for name, rec in case["inputs"].items():
            opened = [int(v) for v in rec["opened"]]
            s = share(ring.element(opened).reshape(rec["shape"]), n, ring=ring, key=bytes.fromhex(rec["key"]))
            assert [strs(p) for p in s.data] == rec["shares"] and strs(ring.lift(s.reconstruct())) == rec["signed"]
            shared[name] = s
        dealer = Dealer(n, key=key)  # the operations consume items 0, 1, 2, 3, in this order
        results = {"mul": mul(shared["x"], shared["y"], dealer), "matmul": matmul(shared["mx"], shared["my"], dealer),
                   "square": square(shared["x"], dealer)}
        results["truncate"] = truncate(results["mul"], case["truncate"]["frac_bits"], dealer)
        for op, z in results.items():
            rec = case[op]
            assert list(z.shape) == rec["shape"], op
            assert [strs(p) for p in z.data] == rec["shares"], (n, op)
            assert strs(z.reconstruct()) == rec["opened"] and strs(ring.lift(z.reconstruct())) == rec["signed"]
        # opened products are the exact ring products of the opened inputs
        val = {k: [int(v) for v in r["opened"]] for k, r in case["inputs"].items()}
        assert [int(v) for v in case["mul"]["opened"]] == [a * b % m for a, b in zip(val["x"], val["y"])]
        assert [int(v) for v in case["square"]["opened"]] == [a * a % m for a in val["x"]]
        assert [int(v) for v in case["matmul"]["opened"]] == _matmul_ints(
            val["mx"], val["my"], case["inputs"]["mx"]["shape"], case["inputs"]["my"]["shape"], m)
        # the documented Beaver step with the recorded item: z_p = c_p + eps b_p + a_p delta (+ eps delta, party 0)
        for op, left, right in (("mul", "x", "y"), ("square", "x", "x")):
            parts = [[[int(v) for v in row] for row in p["shares"]] for p in case["items"][case[op]["item"]]["parts"]]
            a, b, c = (parts[0], parts[0], parts[1]) if op == "square" else parts
            eps = [(x - sum(col)) % m for x, col in zip(val[left], zip(*a))]
            delta = [(y - sum(col)) % m for y, col in zip(val[right], zip(*b))]
            want = [[(c[p][e] + eps[e] * b[p][e] + a[p][e] * delta[e] + (eps[e] * delta[e] if p == 0 else 0)) % m
                     for e in range(len(eps))] for p in range(n)]
            assert [[int(v) for v in row] for row in case[op]["shares"]] == want, op
        # truncation: c = x + 2**62 + r opened; result floor(x / 2**f) or one more
        trunc, f = case["truncate"], case["truncate"]["frac_bits"]
        r = [int(v) for v in case["items"][trunc["item"]]["parts"][0]["opened"]]
        prod = [int(v) for v in case["mul"]["opened"]]
        assert [int(v) for v in trunc["c"]] == [(x + 2**62 + ri) % m for x, ri in zip(prod, r)]
        for x, got in zip(case["mul"]["signed"], trunc["signed"]):
            assert int(got) - (int(x) >> f) in (0, 1)
        _, r_hi, r_msb = [[[int(v) for v in row] for row in p["shares"]]
                          for p in case["items"][trunc["item"]]["parts"]]
        cs, top = [int(v) for v in trunc["c"]], 2 ** (63 - f)
        want = [[(top * r_msb[p][e] * (1 - 2 * (ce >> 63)) - r_hi[p][e]
                  + ((top * (ce >> 63) + ((ce % 2**63) >> f) - (2**62 >> f)) if p == 0 else 0)) % m
                 for e, ce in enumerate(cs)] for p in range(n)]
        assert [[int(v) for v in row] for row in trunc["shares"]] == want


# ------------------------------------------------------------------------------------------------ secagg_additive
def test_secagg_additive_vectors():
    (case,) = load_vectors("secagg_additive")["cases"]
    c = case["config"]
    codec = Codec(length=c["length"], max_clients=c["max_clients"], clip=float(c["clip"]), frac_bits=c["frac_bits"],
                  ring=ring_of(c["ring"]))
    cfg = AdditiveConfig(codec=codec, servers=c["servers"], prg=c["prg"])
    ring, servers, rnd = cfg.ring, cfg.servers, case["round"]
    contributions = {cl["id"]: [float(v) for v in cl["values"]] for cl in case["clients"]}
    keys = {cl["id"]: bytes.fromhex(cl["key"]) for cl in case["clients"]}
    res = run_additive_round(cfg, contributions, round_=rnd, keys=keys)
    assert sorted(res.clients) == sorted(contributions)
    assert strs(res.ring_total) == case["ring_total"]
    assert [repr(v) for v in res.total.tolist()] == case["total"]
    assert [v.hex() for v in res.total.tolist()] == case["total_hex"]
    total = [0] * cfg.length
    for cl in case["clients"]:
        cid = cl["id"]
        assert strs(cfg.codec.encode(contributions[cid])) == cl["encoded"]
        client = AdditiveClient(cfg, cid, key=keys[cid])
        client.begin_round(rnd)
        msgs = client.contribute(contributions[cid])
        assert (msgs[0].server, strs(msgs[0].payload)) == (cl["first"]["server"], cl["first"]["array"])
        assert [(m.server, bytes(m.payload).hex()) for m in msgs[1:]] == [(k["server"], k["key"]) for k in cl["keys"]]
        assert sum(m.nbytes for m in msgs) == cl["upload_nbytes"]
        # the documented construction: share_compressed under the round key, party p to server (id + p) mod S
        round_key = derive_key(keys[cid], "secagg/additive", rnd, cid)
        assert round_key.hex() == cl["round_key"]
        cs = share_compressed(ring.element([int(v) for v in cl["encoded"]]), servers, ring=ring, key=round_key,
                              prg=cfg.prg)
        assert strs(cs.first) == cl["first"]["array"] and [k.hex() for k in cs.keys] == [k["key"] for k in cl["keys"]]
        assert [cl["first"]["server"]] + [k["server"] for k in cl["keys"]] == [(cid + p) % servers
                                                                               for p in range(servers)]
        total = [(t + int(v)) % ring.modulus for t, v in zip(total, cl["encoded"])]
    assert [str(v) for v in total] == case["ring_total"]
