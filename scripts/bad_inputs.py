"""Feed refimpl hundreds of bad inputs, as an attacker or a careless user would, and classify what happens.

Areas: encode, ring, share, tree, beaver, shamir, prg, binary, secagg, wire, cli, checkpoint, idx, jax, fl. Every
case is a call that must be refused (or, for fuzzed wire input, must at least not crash). Outcomes:

* ``specific``: an exception from :mod:`refimpl.errors` (or ``CheckpointError`` / ``DataError`` for files, or a
  ``TypeError`` for a value of the wrong type), or for
  the CLI exit status 2 with a one-line message and no traceback -- the goal;
* ``plain``: a built-in ``ValueError`` raised by refimpl's own code with a message naming the value (acceptable,
  reported separately);
* ``crash``: any other exception, or a ``ValueError`` / ``TypeError`` raised inside NumPy, JAX or the standard
  library (an unchecked input reached the machinery);
* ``silent``: the call returned although the input is invalid (a silently wrong or meaningless result);
* ``hang``: no answer within 30 s;
* ``by_design``: accepted on purpose, listed in the README's threat model (e.g. a well-formed but wrong share:
  there are no MACs).

    python scripts/bad_inputs.py                 # all areas
    python scripts/bad_inputs.py --json out.json --area wire --area cli
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refimpl import (
    Z2_32,
    Z2_64,
    FixedPoint,
    Ring,
    Stream,
    derive_key,
    fresh_key,
    keystream,
    reconstruct,
    share,
    share_compressed,
    share_tree,
)
from refimpl.errors import RefimplError


def _specific() -> tuple[type[BaseException], ...]:
    from refimpl.fl.checkpoint import CheckpointError
    from refimpl.fl.data import DataError
    return (RefimplError, CheckpointError, DataError)  # refimpl's errors and the fl layer's file errors


SPECIFIC = _specific()
CASES: list[tuple[str, str, Callable[[], Any], str]] = []  # (area, name, call, expect: "raise" | "no-crash")
KEY = bytes(range(16))


_TEMPDIRS: list[Path] = []


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _TEMPDIRS.append(path)
    return path


def case(area: str, name: str, fn: Callable[[], Any], expect: str = "raise") -> None:
    CASES.append((area, name, fn, expect))


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang()


def classify(fn: Callable[[], Any], expect: str) -> tuple[str, str]:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        result = fn()
    except _Hang:
        return "hang", "no answer within 30 s"
    except SPECIFIC as e:
        return "specific", f"{type(e).__name__}: {e}"
    except (TypeError, ValueError, KeyError) as e:
        frames = traceback.extract_tb(e.__traceback__)
        inside = frames[-1].filename if frames else ""
        if "/refimpl/" in inside and "/site-packages/" not in inside:
            return ("specific" if isinstance(e, TypeError) else "plain"), f"{type(e).__name__}: {e}"
        if isinstance(e, KeyError):
            return "crash", f"KeyError: {e}"
        return "crash", f"{type(e).__name__} from {inside}:{frames[-1].lineno}: {e}"
    except BaseException as e:  # noqa: BLE001 -- anything else is a finding (SystemExit included: CLI cases catch it)
        return "crash", f"{type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "cli":
        return result[1]
    if expect == "no-crash":
        return "specific", "decoded or refused cleanly"
    if expect == "by-design":
        return "by_design", f"accepted, as the README's threat model states: {str(result)[:80]}"
    return "silent", f"returned {str(result)[:120]}"


# ------------------------------------------------------------------------------------------------------ areas
BAD_REALS: list[Any] = [[np.nan], [np.inf], [-np.inf], [1e300], ["a"], [1 + 2j], None, [[1.0], [2.0, 3.0]],
                        np.array([1.0], dtype=object), {"a": 1}]


def encode_cases() -> None:
    for ring in (Z2_64, Z2_32):
        fp = FixedPoint(frac_bits=16, ring=ring)
        for v in BAD_REALS:
            case("encode", f"{ring!r} encode {str(v)[:30]}", lambda fp=fp, v=v: fp.encode(v))
        case("encode", f"{ring!r} decode float", lambda fp=fp: fp.decode(np.array([1.5])))
        case("encode", f"{ring!r} decode nan", lambda fp=fp: fp.decode(np.array([np.nan])))
    for fb in (-1, 1.5, True, 64, 10**9, "16", None):
        case("encode", f"frac_bits={fb!r}", lambda fb=fb: FixedPoint(frac_bits=fb).encode([0.5]))
    case("encode", "ring not a Ring", lambda: FixedPoint(frac_bits=16, ring=2**64).encode([1.0]))  # type: ignore


def ring_cases() -> None:
    for m in (0, 1, -4, 2.0, "x", None, True, 2**64 + 0.5):
        case("ring", f"Ring({m!r})", lambda m=m: Ring(m))
    for m in (15, 1, 0, 2**64):
        case("ring", f"Ring.prime({m})", lambda m=m: Ring.prime(m))
    for ring in (Z2_64, Z2_32, Ring(2**70), Ring.prime(2**61 - 1)):
        for v in (np.array([1.5]), np.array([np.nan]), [ring.modulus], [-ring.modulus - 1], np.array(["x"]),
                  np.array([True]), [[1], [2, 3]]):
            case("ring", f"{ring!r}.element({str(v)[:25]})", lambda ring=ring, v=v: ring.element(v))
    case("ring", "add shapes", lambda: Z2_64.add(Z2_64.element([1, 2]), Z2_64.element([1, 2, 3])))


def share_cases() -> None:
    for n in (0, 1, -1, 10**7, True, 2.0, None, "3"):
        case("share", f"share n={n!r}", lambda n=n: share([1], n))
        case("share", f"share_compressed n={n!r}", lambda n=n: share_compressed([1], n))
    for k in (b"", b"x" * 15, b"x" * 17, b"x" * 33, "k" * 16, 12345, bytearray(3)):
        case("share", f"share key={k!r}", lambda k=k: share([1], 2, key=k))
    for ring in (Z2_64, Ring.prime(2**61 - 1)):
        for v in ([1.5], [np.nan], "abc", None, [True], [2**64], [-(2**64)], [[1], [2, 3]], [1 + 1j]):
            case("share", f"share {str(v)[:20]} over {ring!r}", lambda v=v, ring=ring: share(v, 2, ring=ring))
    for prg in ("rc4", "", None, 5):
        case("share", f"prg={prg!r}", lambda prg=prg: share([1], 2, prg=prg))
    case("share", "ring=64", lambda: share([1], 2, ring=64))  # type: ignore[arg-type]
    case("share", "out of wrong dtype", lambda: share_compressed([1, 2], 2, out=np.zeros(2, np.float64)))
    s = share([1, 2, 3], 3, key=KEY)
    case("share", "reconstruct a list", lambda: reconstruct([s.data]))
    case("share", "Shares with 1 party", lambda: type(s)(Z2_64, s.data[:1]))
    case("share", "Shares float data", lambda: type(s)(Z2_64, s.data.astype(np.float64)))
    case("share", "Shares 0-d data", lambda: type(s)(Z2_64, np.uint64(3)))
    case("share", "add across rings", lambda: s + share([1, 2, 3], 3, ring=Z2_32, key=KEY))
    case("share", "add across party counts", lambda: s + share([1, 2, 3], 2, key=KEY))
    case("share", "add shapes", lambda: s + share([1, 2], 3, key=KEY))


def tree_cases() -> None:
    for tree in ({"a": [1.5]}, {"a": "text"}, [np.array([np.nan])], {"a": {"b": object()}}, {"a": [1 + 1j]},
                 {"a": np.array([1.5, 2.0])}, {"a": np.array(["x"])}):
        case("tree", f"share_tree {str(tree)[:30]}", lambda tree=tree: share_tree(tree, 2, key=KEY))
    case("tree", "encoding NaN leaf", lambda: share_tree({"a": [np.nan]}, 2, encoding=FixedPoint(frac_bits=16)))
    case("tree", "n=1", lambda: share_tree({"a": [1]}, 1))
    case("tree", "reconstruct_tree mixed", lambda: __import__("refimpl").reconstruct_tree({"a": 5}))


def beaver_cases() -> None:
    from refimpl.mpc.arithmetic import matmul, mul
    from refimpl.mpc.dealer import Dealer
    for n in (0, 1, 10**7, 2.5):
        case("beaver", f"Dealer(n={n!r})", lambda n=n: Dealer(n))
    case("beaver", "Dealer key 5 bytes", lambda: Dealer(2, key=b"12345"))
    case("beaver", "Dealer ring", lambda: Dealer(2, ring="Z2_64"))  # type: ignore[arg-type]
    x, y = share([1, 2], 2, key=KEY), share([3, 4], 2, key=derive_key(KEY, "y"))
    case("beaver", "mul party counts", lambda: mul(x, share([1, 2], 3, key=KEY), Dealer(2)))
    case("beaver", "mul rings", lambda: mul(x, share([1, 2], 2, ring=Z2_32, key=KEY), Dealer(2)))
    case("beaver", "mul dealer of other n", lambda: mul(x, y, Dealer(3)))
    case("beaver", "mul dealer of other ring", lambda: mul(x, y, Dealer(2, ring=Z2_32)))
    case("beaver", "mul shapes", lambda: mul(x, share([1, 2, 3], 2, key=KEY), Dealer(2)))
    case("beaver", "matmul shapes", lambda: matmul(share(np.ones((2, 3), np.int64), 2), share(np.ones((2, 3),
                                                                                                np.int64), 2),
                                                   Dealer(2)))
    d = Dealer(2)
    t = d.mul_triple(2)
    mul(x, y, d, triple=t)
    case("beaver", "triple reused", lambda: mul(x, y, d, triple=t))
    case("beaver", "triple of other shape", lambda: mul(x, y, d, triple=d.mul_triple(3)))
    case("beaver", "mul_triple negative shape", lambda: Dealer(2).mul_triple(-1))


def shamir_cases() -> None:
    from refimpl.sharing.shamir import reconstruct_bytes, shamir_reconstruct, shamir_share, share_bytes
    for n, t in ((3, 4), (3, 0), (3, 1.5), (0, 0), (10**7, 2), (3, -1), (True, 1)):
        case("shamir", f"n={n!r} t={t!r}", lambda n=n, t=t: shamir_share([1], n, t))
    for pts in ([1, 1, 2], [0, 1, 2], [1, 2], [1, 2, 2**31 - 1], [1.5, 2, 3], ["a", 2, 3]):
        case("shamir", f"points {pts}", lambda pts=pts: shamir_share([1], 3, 2, points=pts))
    for field in (Z2_64, Ring(15)):
        case("shamir", f"field {field!r}", lambda field=field: shamir_share([1], 3, 2, field=field))
    for v in ([2**40], [1.5], [np.nan], "x"):
        case("shamir", f"secret {v!r}", lambda v=v: shamir_share(v, 3, 2))
    sh = shamir_share([5, 6], 4, 3, key=KEY)
    case("shamir", "reconstruct from 2 of t=3", lambda: shamir_reconstruct(sh.subset([1, 2])))
    case("shamir", "subset unknown party", lambda: sh.subset([1, 9]))
    case("shamir", "share_bytes odd length", lambda: share_bytes(b"abc", 3, 2))
    case("shamir", "share_bytes str", lambda: share_bytes("ab", 3, 2))  # type: ignore[arg-type]
    bad = share_bytes(b"abcd", 3, 2, key=KEY)
    rows = bad.data.copy()
    rows[0] = (rows[0] + 1) % (2**31 - 1)
    forged = type(bad)(bad.field, bad.threshold, bad.xs, rows)
    case("shamir", "reconstruct_bytes of a share forged within range", lambda: reconstruct_bytes(forged),
         expect="by-design")


def prg_cases() -> None:
    for k in (b"", b"x" * 15, b"x" * 24, "k" * 16, 5):
        case("prg", f"Stream key {k!r}", lambda k=k: Stream(k))
    for kw in ({"cipher": "rc4"}, {"offset": -1}, {"offset": 1.5}, {"nonce": b"abc"}, {"cipher": None}):
        case("prg", f"Stream {kw}", lambda kw=kw: Stream(KEY, **kw))
    for nb in (-1, 2**62, 1.5, None):
        case("prg", f"keystream nbytes={nb!r}", lambda nb=nb: keystream(KEY, nb))
    for labels, length in (((1.5,), 16), ((None,), 16), (("a",), 0), (("a",), 10**6), (("a",), -1),
                           ((["list"],), 16)):
        case("prg", f"derive_key {labels!r} length={length}", lambda labels=labels, length=length:
             derive_key(KEY, *labels, length=length))
    case("prg", "derive_key master str", lambda: derive_key("k" * 16, "a"))  # type: ignore[arg-type]
    for n in (0, -1, 10**10, 7, 1.5):
        case("prg", f"fresh_key({n!r})", lambda n=n: fresh_key(n))


def binary_cases() -> None:
    from refimpl.sharing.binary import BinaryShares, share_binary
    for v in (np.array([1.5]), np.array([-1]), "x", None, np.array([2**64 - 1 + 0.0])):
        case("binary", f"share_binary {str(v)[:20]}", lambda v=v: share_binary(v, 2))
    for n in (1, 0, 10**7):
        case("binary", f"share_binary n={n}", lambda n=n: share_binary(np.array([1], np.uint64), n))
    case("binary", "BinaryShares int64", lambda: BinaryShares(np.zeros((2, 3), np.int64)))
    case("binary", "BinaryShares 1 party", lambda: BinaryShares(np.zeros((1, 3), np.uint64)))
    b = share_binary(np.array([1, 2], np.uint64), 2, key=KEY)
    case("binary", "xor party counts", lambda: b ^ share_binary(np.array([1, 2], np.uint64), 3, key=KEY))


def secagg_cases() -> None:
    from refimpl.secagg import (
        AdditiveClient,
        AdditiveConfig,
        AdditiveServer,
        Codec,
        MaskedInput,
        SecAggConfig,
        SecAggServer,
        ShareMessage,
        UnmaskingResponse,
        run_additive_round,
        run_secagg_round,
    )
    for kw in ({"length": 0}, {"length": 2, "max_clients": 0}, {"length": 2, "clip": -1.0},
               {"length": 2, "clip": math.nan}, {"length": 2, "bits": 0}, {"length": 2, "bits": 64},
               {"length": 2, "headroom": -1}, {"length": 2, "max_clients": 2**20, "ring": Z2_32},
               {"length": 2.5}, {"length": 2, "frac_bits": 70}):
        case("secagg", f"Codec({kw})", lambda kw=kw: Codec(**{"max_clients": 4, **kw}))  # type: ignore[arg-type]
    codec = Codec(length=2, max_clients=4, clip=1.0)
    for kw in ({"servers": 1}, {"min_clients": 0}, {"min_clients": 5}, {"prg": "rc4"}, {"servers": 10**7}):
        case("secagg", f"AdditiveConfig({kw})", lambda kw=kw: AdditiveConfig(codec=codec, **kw))
    for n, t in ((1, 2), (5, 1), (5, 6), (4, 5)):
        case("secagg", f"SecAggConfig n={n} t={t}", lambda n=n, t=t: SecAggConfig(num_clients=n, threshold=t,
                                                                                   codec=codec))
    case("secagg", "SecAgg degree 3", lambda: SecAggConfig(num_clients=4, threshold=2, codec=codec, degree=3))
    cfg = AdditiveConfig(codec=codec, servers=2)
    case("secagg", "contribute out of clip", lambda: _contrib(AdditiveClient, cfg, [2.0, 0.0]))
    case("secagg", "contribute NaN", lambda: _contrib(AdditiveClient, cfg, [np.nan, 0.0]))
    case("secagg", "contribute wrong length", lambda: _contrib(AdditiveClient, cfg, [0.0, 0.0, 0.0]))
    case("secagg", "contribute without begin_round", lambda: AdditiveClient(cfg, 1).contribute([0.0, 0.0]))
    case("secagg", "run_additive same keys", lambda: run_additive_round(cfg, {1: [0, 0], 2: [0, 0]},
                                                                         keys={1: KEY, 2: KEY}))
    case("secagg", "run_additive 1 agreed client", lambda: run_additive_round(cfg, {1: [0.5, 0.5]}))
    case("secagg", "run_additive 5 clients > max", lambda: run_additive_round(cfg, {i: [0, 0] for i in range(5)}))
    srv = AdditiveServer(cfg, 0)
    srv.begin_round(3, [1, 2])
    arr = np.zeros(2, np.uint64)
    for name, msg in (("round", ShareMessage(2, 2, 0, Z2_64, arr)), ("server", ShareMessage(3, 2, 1, Z2_64, arr)),
                      ("client", ShareMessage(3, 9, 0, Z2_64, arr)),
                      ("ring", ShareMessage(3, 2, 0, Z2_32, arr.astype(np.uint32))),
                      ("shape", ShareMessage(3, 2, 0, Z2_64, np.zeros(3, np.uint64))),
                      ("dtype", ShareMessage(3, 2, 0, Z2_64, np.zeros(2, np.float64))),
                      ("key length", ShareMessage(3, 1, 0, Z2_64, b"short")),
                      ("key kind", ShareMessage(3, 1, 0, Z2_64, arr)), ("not a message", "hello")):
        case("secagg", f"additive server: bad {name}", lambda msg=msg: srv.receive(msg))  # type: ignore[arg-type]
    scfg = SecAggConfig(num_clients=3, threshold=2, codec=Codec(length=2, max_clients=3, bits=4, ring=Z2_32))
    ss = SecAggServer(scfg)
    case("secagg", "secagg server: receive before begin_round", lambda: ss.receive(MaskedInput(0, 1, arr)))
    ss2 = SecAggServer(scfg)
    ss2.begin_round(0)
    case("secagg", "secagg server: out-of-stage", lambda: ss2.receive(MaskedInput(0, 1, arr)))
    case("secagg", "secagg server: unmasking early", lambda: ss2.receive(UnmaskingResponse(0, 1, {}, {})))
    case("secagg", "run_secagg unknown dropout stage", lambda: run_secagg_round(scfg, {1: [0, 0]},
                                                                                dropouts={1: "Lunch"}))
    case("secagg", "run_secagg too few", lambda: run_secagg_round(scfg, {1: np.zeros(2, np.int64)}, encoded=True))
    case("secagg", "run_secagg out-of-range ints", lambda: run_secagg_round(
        scfg, {1: np.array([16, 0]), 2: np.array([0, 0])}, encoded=True))


def _contrib(cls: Any, cfg: Any, values: Any) -> Any:
    c = cls(cfg, 1)
    c.begin_round(0)
    return c.contribute(values)


def wire_cases() -> None:
    from refimpl.net.wire import decode, encode
    from refimpl.testing.hostile import craft, mutate, random_header
    fixed = [
        ("empty", b""), ("magic only", b"RFW1"), ("bad crc", encode([1])[:-1] + b"\x00"),
        ("overlap", craft([{"$bytes": [0, 4]}, {"$bytes": [2, 4]}], bytes(8))),
        ("repeat", craft([{"$bytes": [0, 4]}] * 3, bytes(8))),
        ("float shares", craft({"$shares": {"modulus": str(2**64), "data": {"dtype": "<f8", "shape": [2, 1],
                                                                             "offset": 0, "length": 16}}},
                               np.array([np.nan, 1.0]).tobytes())),
        ("bool shares 2^64", craft({"$shares": {"modulus": str(2**64), "data": {"dtype": "|b1", "shape": [2, 1],
                                                                                 "offset": 0, "length": 2}}},
                                   b"\x01\x00")),
        ("modulus 1", craft({"$shares": {"modulus": "1", "data": {"dtype": "<u8", "shape": [2, 1], "offset": 0,
                                                                   "length": 16}}}, bytes(16))),
        ("deep nesting", craft(b"[" * 5000 + b"]" * 5000)), ("NaN literal", craft(b"[NaN]")),
        ("huge int literal", craft(b"9" * 5000)), ("span past end", craft({"$bytes": [0, 10]}, bytes(4))),
        ("negative span", craft({"$bytes": [-1, 2]}, bytes(4))), ("dtype object", craft(
            {"$array": {"dtype": "|O", "shape": [1], "offset": 0, "length": 8}}, bytes(8))),
        ("bigint amplification", craft({"$array": {"dtype": "bigint", "width": 1, "shape": [2**16], "offset": 0,
                                                   "length": 2**16}}, bytes(2**16))),
        ("unknown tag", craft({"$code": "import os"})), ("pointer without callback", craft({"$pointer": {
            "location": "w", "id": 1}})), ("two-key tag", craft({"$int": "1", "$float": "nan"})),
        ("bad utf-8 header", craft(b'"\xff"')), ("header length past end", b"RFW1" + struct.pack("<I", 99) + b"xx"),
    ]
    for name, raw in fixed:
        case("wire", name, lambda raw=raw: decode(raw))
    rng = np.random.default_rng(10)
    genuine = encode({"x": np.arange(5, dtype=np.uint64), "s": share([1, 2], 2, key=KEY), "b": b"xy"})
    for i in range(40):
        payload = rng.bytes(int(rng.integers(0, 48)))
        raw = craft(random_header(rng, len(payload)), payload) if i % 2 else mutate(genuine, rng)
        case("wire", f"fuzzed {i}", lambda raw=raw: decode(raw), expect="no-crash")


def cli_cases() -> None:
    base = ["--dataset", "mnist-10k", "--clients", "8", "--fraction", "0.25", "--batch-size", "50", "--model",
            "784,8,10", "--no-progress", "--no-plot", "--rounds", "1"]
    flags = [["--client-momentum", "-5"], ["--client-lr", "inf"], ["--client-lr", "0"], ["--client-lr", "nan"],
             ["--server-lr", "-1"], ["--alpha", "-1"], ["--alpha", "nan"], ["--dropout", "1"], ["--dropout", "-0.1"],
             ["--clip", "0"], ["--clip", "inf"], ["--noise-multiplier", "-1"], ["--delta", "0"], ["--delta", "1"],
             ["--servers", "1"], ["--servers", "0"], ["--bits", "0"], ["--bits", "64"], ["--threshold", "1",
                                                                                          "--secure", "secagg"],
             ["--threshold", "50", "--secure", "secagg"], ["--min-clients", "5"], ["--fraction", "0"],
             ["--fraction", "2"], ["--clients", "0"], ["--rounds", "-1"], ["--batch-size", "0"], ["--seed", "-1"],
             ["--model", "foo"], ["--model", ""], ["--model", "784,,10"], ["--model", "784,0,10"],
             ["--dataset", "nope"], ["--secure", "magic"], ["--frac-bits", "40", "--ring-bits", "32"],
             ["--clip", "1", "--noise-multiplier", "1", "--secure", "none"], ["--eval-every", "0"],
             ["--unknown-flag"], ["--rounds", "many"]]
    for f in flags:
        case("cli", "train " + " ".join(f), lambda f=f: _cli(["train", *base, *f]))
    case("cli", "unknown subcommand", lambda: _cli(["trian"]))
    case("cli", "--model 10,10", lambda: _cli(["train", *base, "--model", "10,10"], out=True))
    case("cli", "--out is a file", lambda: _cli(["train", *base], out_file=True))
    case("cli", "diverged (--client-lr 1e30)", lambda: _cli(["train", *base, "--client-lr", "1e30"], out=True))
    case("cli", "resume without checkpoint", lambda: _cli(["train", *base, "--resume"], out=True))
    case("cli", "missing data dir", lambda: _cli(["train", *base, "--dataset", "mnist", "--data-dir",
                                                  "/nonexistent/refimpl"], out=True))


def _cli(argv: list[str], *, out: bool = False, out_file: bool = False) -> tuple[str, tuple[str, str]]:
    from refimpl.cli import main
    tmp = _tempdir("refimpl-bad-")
    if out_file:
        (tmp / "f").write_text("x")
        argv = [*argv, "--out", str(tmp / "f")]
    elif out or argv[:1] == ["train"]:
        argv = [*argv, "--out", str(tmp / "o")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    text = err.getvalue().strip()
    last = text.splitlines()[-1] if text else ""
    if code == 2 and "Traceback" not in text and text:
        return "cli", ("specific", f"exit 2: {(last if 'error' in last else text.splitlines()[0])[:160]}")
    if code == 0:
        return "cli", ("silent", "exit 0")
    return "cli", ("crash", f"exit {code}: {text[-300:]}")


def checkpoint_cases() -> None:
    import jax.numpy as jnp

    from refimpl.fl import checkpoint, server
    from refimpl.fl.server import ServerState
    opt = server.server_optimizer("fedavg")
    params = {"w0": jnp.ones((3, 2)), "b0": jnp.zeros(2)}
    tmp = _tempdir("refimpl-ckpt-")
    good = tmp / "good.npz"
    checkpoint.save(good, ServerState(params, opt.init(params), 3), {"a": 1})
    raw = good.read_bytes()
    variants = {"empty": b"", "not a zip": b"hello world", "truncated 10%": raw[: len(raw) // 10],
                "truncated 90%": raw[: 9 * len(raw) // 10], "last byte cut": raw[:-1]}
    for pos in (40, 100, len(raw) // 2, len(raw) - 30):
        variants[f"bit flip at {pos}"] = raw[:pos] + bytes([raw[pos] ^ 0x10]) + raw[pos + 1:]
    nan_path = tmp / "nan.npz"
    checkpoint.save(nan_path, ServerState({"w0": jnp.full((3, 2), jnp.nan), "b0": jnp.zeros(2)},
                                          opt.init(params), 3), {"a": 1})
    variants["NaN parameters"] = nan_path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("round.npy", b"junk")
    variants["zip of junk"] = buf.getvalue()
    for name, data in variants.items():
        p = tmp / f"{name.replace(' ', '_').replace('%', '')}.npz"
        p.write_bytes(data)
        case("checkpoint", name, lambda p=p: checkpoint.load(p, opt))
    case("checkpoint", "other optimizer", lambda: checkpoint.load(good, server.server_optimizer("fedadam")))
    case("checkpoint", "directory", lambda: checkpoint.load(tmp, opt))


def idx_cases() -> None:
    from refimpl.fl import data
    hdr = bytes([0, 0, 0x08])
    cases = {
        "empty": b"", "3 bytes": b"\x00\x00\x08", "bad magic": b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"x",
        "dtype float": bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + bytes(4),
        "ndim 0, two bytes": hdr + b"\x00" + b"xy", "header cut": hdr + b"\x03" + bytes(5),
        "truncated data": hdr + b"\x01" + struct.pack(">I", 10) + bytes(5),
        "too long": hdr + b"\x01" + struct.pack(">I", 1) + bytes(5),
        "product wraps int64": hdr + b"\x04" + struct.pack(">IIII", 2**16, 2**16, 2**16, 2**16),
        "huge dims": hdr + b"\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1),
        "255 dims": hdr + b"\xff" + bytes(4 * 255),
    }
    for name, raw in cases.items():
        case("idx", name, lambda raw=raw: data._parse_idx(raw, "bad.idx", None))
    case("idx", "wrong ndim", lambda: data._parse_idx(hdr + b"\x01" + struct.pack(">I", 1) + b"x", "bad.idx", 3))
    tmp = _tempdir("refimpl-idx-")
    (tmp / "x.gz").write_bytes(b"not gzip at all")
    case("idx", "corrupt gzip", lambda: data.read_idx(tmp / "x.gz"))


def jax_cases() -> None:
    import jax
    import jax.numpy as jnp
    x = jnp.arange(8, dtype=jnp.uint32).reshape(2, 4)
    case("jax", "vmap share one key", lambda: jax.vmap(lambda v: share(v, 3, ring=Z2_32, key=KEY,
                                                                          prg="chacha20").data)(x))
    case("jax", "vmap(jit) share one key", lambda: jax.vmap(jax.jit(lambda v: share(v, 3, ring=Z2_32, key=KEY,
                                                                                      prg="chacha20").data))(x))
    case("jax", "jit share without key", lambda: jax.jit(lambda v: share(v, 3, ring=Z2_32, prg="chacha20").data)(x))
    case("jax", "jit share aes", lambda: jax.jit(lambda v: share(v, 3, ring=Z2_32, key=KEY).data)(x))
    case("jax", "share float jax array", lambda: share(jnp.ones(3, jnp.float32), 2, key=KEY, prg="chacha20"))
    case("jax", "share jax n=1", lambda: share(x, 1, key=KEY, prg="chacha20"))
    case("jax", "share jax prime ring", lambda: share(x, 2, ring=Ring.prime(2**61 - 1), key=KEY, prg="chacha20"))
    case("jax", "encode NaN jax", lambda: FixedPoint(frac_bits=16).encode(jnp.array([jnp.nan])))


def fl_cases() -> None:
    from refimpl.fl import compress, partition, privacy
    from refimpl.fl.secure import make_secure_aggregator
    case("fl", "clip_l2 NaN", lambda: privacy.clip_l2(np.array([[np.nan, 1.0]]), 1.0))
    case("fl", "clip_l2 clip 0", lambda: privacy.clip_l2(np.ones((2, 2)), 0.0))
    for std in (-1.0, math.nan, math.inf):
        case("fl", f"gaussian_noise std={std}", lambda std=std: privacy.gaussian_noise(3, std, key=KEY))
    for sigma in (0.0, -1.0, math.inf):
        case("fl", f"discrete_gaussian sigma={sigma}", lambda sigma=sigma: privacy.discrete_gaussian(3, sigma,
                                                                                                     key=KEY))
    case("fl", "discrete_gaussian 10^12 values", lambda: privacy.discrete_gaussian(10**12, 1.0, key=KEY))
    case("fl", "gaussian_noise shape -1", lambda: privacy.gaussian_noise((-1,), 1.0, key=KEY))
    for args in ((-1, 0.1, 1e-5), (1, 1.5, 1e-5), (1, 0.1, 0.0), (math.nan, 0.1, 1e-5)):
        case("fl", f"PrivacyAccountant{args}", lambda args=args: privacy.PrivacyAccountant(*args))
    case("fl", "epsilon_after rounds=-1", lambda: privacy.epsilon_after(-1, 1.0, 0.1, 1e-5))
    for x, bits, clip in (([np.nan], 8, 1.0), ([0.5], 0, 1.0), ([0.5], 63, 1.0), ([5.0], 8, 1.0),
                          ([0.5], 8, 0.0), ([0.5], 8.5, 1.0)):
        case("fl", f"stochastic_quantize {x} bits={bits} clip={clip}",
             lambda x=x, bits=bits, clip=clip: compress.stochastic_quantize(np.array(x), bits, clip, key=KEY))
    case("fl", "dequantize 300 at 8 bits", lambda: compress.dequantize(np.array([300]), 8, 1.0))
    case("fl", "dequantize -1", lambda: compress.dequantize(np.array([-1]), 8, 1.0))
    case("fl", "dequantize_sum count -1", lambda: compress.dequantize_sum(np.array([3]), -1, 8, 1.0))
    case("fl", "hadamard NaN", lambda: compress.hadamard_rotate(np.array([np.nan, 1.0]), key=KEY))
    case("fl", "hadamard empty", lambda: compress.hadamard_rotate(np.zeros(0), key=KEY))
    case("fl", "fwht length 3", lambda: compress.fwht(np.zeros(3)))
    for kind, n in (("iid", 0), ("iid", 10**6), ("magic", 4), ("dirichlet", -2)):
        case("fl", f"make_partition {kind} {n}", lambda kind=kind, n=n: partition.make_partition(
            kind, np.arange(100) % 10, n))
    case("fl", "dirichlet alpha 0", lambda: partition.make_partition("dirichlet", np.arange(100) % 10, 4,
                                                                     alpha=0.0))
    for kw in ({"protocol": "magic"}, {"dropout": 1.0}, {"noise_multiplier": 1.0}, {"threshold": 1},
               {"min_clients": 0}, {"bits": 0}, {"noise": "loud"}, {"clip": -1.0}, {"key": b"short"}):
        case("fl", f"make_secure_aggregator {kw}", lambda kw=kw: make_secure_aggregator(**kw))  # type: ignore
    agg = make_secure_aggregator("additive", key=KEY)
    upd = {"w": np.ones((3, 2), np.float32)}
    case("fl", "aggregate NaN update", lambda: agg({"w": np.array([[np.nan, 1], [1, 1], [1, 1]], np.float32)},
                                                  np.ones(3)))
    case("fl", "aggregate beyond value_range", lambda: agg({"w": np.full((3, 2), 100.0, np.float32)}, np.ones(3)))
    case("fl", "aggregate negative weights", lambda: agg(upd, np.array([1.0, -1.0, 1.0])))
    case("fl", "aggregate wrong weights shape", lambda: agg(upd, np.ones(2)))
    case("fl", "secagg threshold > clients", lambda: make_secure_aggregator("secagg", threshold=9, key=KEY)(
        upd, np.ones(3)))


AREAS = {"encode": encode_cases, "ring": ring_cases, "share": share_cases, "tree": tree_cases,
         "beaver": beaver_cases, "shamir": shamir_cases, "prg": prg_cases, "binary": binary_cases,
         "secagg": secagg_cases, "wire": wire_cases, "cli": cli_cases, "checkpoint": checkpoint_cases,
         "idx": idx_cases, "jax": jax_cases, "fl": fl_cases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--area", action="append", choices=sorted(AREAS), help="only these areas (default: all)")
    p.add_argument("--json", default=None)
    p.add_argument("--verbose", action="store_true", help="print every case")
    args = p.parse_args(argv)
    try:
        return _run(args)
    finally:
        for path in _TEMPDIRS:
            shutil.rmtree(path, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    for name in args.area or AREAS:
        AREAS[name]()
    t0 = time.perf_counter()
    totals: Counter[str] = Counter()
    by_area: dict[str, Counter[str]] = {}
    findings = []
    for area, name, fn, expect in CASES:
        outcome, detail = classify(fn, expect)
        totals[outcome] += 1
        by_area.setdefault(area, Counter())[outcome] += 1
        if outcome not in ("specific", "plain", "by_design"):
            findings.append({"area": area, "case": name, "outcome": outcome, "detail": detail[:400]})
        if args.verbose:
            print(f"[{outcome:8s}] {area}: {name} -> {detail[:150]}", file=sys.stderr)
    report = {"cases": len(CASES), "seconds": round(time.perf_counter() - t0, 1), "totals": dict(totals),
              "by_area": {a: dict(c) for a, c in by_area.items()}, "findings": findings}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
