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
