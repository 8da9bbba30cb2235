"""The JavaScript client (refimpl/web/static) against refimpl's known-answer vectors: under Node's test runner and in
headless Chromium (Debian's /usr/bin/chromium driven by Playwright; nothing downloads a browser build)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _browser import chromium_page

from refimpl.web.assets import ASSETS, asset, serve_assets

ROOT = Path(__file__).resolve().parent.parent


def test_assets_whitelist_serves_package_files_only() -> None:
    assert asset("/static/conformance.mjs") is not None
    body, ctype = asset("/vectors/kdf.json")  # type: ignore[misc]
    assert ctype == "application/json" and body.startswith(b"{")
    for bad in ("/static/../__init__.py", "/etc/passwd", "/static/", "//static/prg.mjs", "/vectors/README.md"):
        assert asset(bad) is None, bad
    for path in ASSETS:
        assert asset(path) is not None, path


def test_node_known_answer_vectors() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js >= 20) is not installed: the JavaScript tests in tests/js/ cannot run")
    proc = subprocess.run([node, "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout


def test_chromium_known_answer_vectors() -> None:
    server, base = serve_assets()
    try:
        with chromium_page() as page:
            page.goto(f"{base}/check.html")
            page.wait_for_function("window.refimplCheck !== undefined", timeout=120_000)
            results = page.evaluate("window.refimplCheck")
            verdict = page.inner_text("#verdict")
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(results, list), results
    names = {r["name"] for r in results}
    assert names == {"streams", "kdf", "ring", "encoding", "share", "share_compressed", "shamir", "secagg_additive"}
    for r in results:
        assert r["checked"] > 0 and r["failures"] == [], (r["name"], r["failures"][:5])
    assert "bit-identical" in verdict


def test_node_matches_refimpl_on_fresh_inputs() -> None:
    """Beyond the fixed vectors: fresh floats, keys and secrets (public test inputs from a seeded generator), and
    refimpl wire messages re-encoded by JavaScript, all compared bit for bit."""
    import json

    import numpy as np

    from refimpl.encoding import FixedPoint
    from refimpl.net import wire
    from refimpl.ring import Ring
    from refimpl.sharing.additive import share_compressed

    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js >= 20) is not installed: the JavaScript cross-check cannot run")
    rng = np.random.default_rng(15)
    edges = [0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.0**-17, 3 * 2.0**-17, -(2.0**-17), 1e-300, -5e-324]
    enc_cases = []
    for bits, base, frac in [(32, 2, 16), (64, 2, 16), (64, 10, 3), (32, 10, 3), (64, 2, 30)]:
        fp = FixedPoint(frac_bits=frac, base=base, ring=Ring(2**bits))
        limit = fp.max_abs_integer / fp.scale
        x = np.concatenate([edges, rng.uniform(-1, 1, 400) * limit * rng.choice([1e-6, 1e-3, 1, 0.999], 400),
                            np.round(rng.uniform(-100, 100, 100) * 2 * fp.scale) / (2 * fp.scale)])
        enc_cases.append({"modulus": str(2**bits), "base": base, "frac_bits": frac, "x": [repr(float(v)) for v in x],
                          "expected": [str(int(v)) for v in fp.encode(x)]})
    share_cases = []
    for modulus in (2**32, 2**64, 2**61 - 1, 10, 2**80):
        ring = Ring(modulus)
        for n, prg in ((2, "aes128-ctr"), (3, "chacha20"), (5, "aes128-ctr")):
            secret = [int(v) % modulus for v in rng.integers(0, 2**62, 257)]
            key = rng.bytes(16 if n != 3 else 32)
            cs = share_compressed(np.array(secret, dtype=object), n, ring=ring, key=key, prg=prg)
            share_cases.append({"modulus": str(modulus), "n": n, "prg": prg, "key": key.hex(),
                                "secret": [str(v) for v in secret],
                                "expected": {"first": [str(int(v)) for v in cs.first], "keys": [k.hex() for k in cs.keys]}})
    msgs = [wire.encode({"type": "upload", "round": 3, "client": 12, "shares": [
        {"server": 0, "array": rng.integers(0, 2**63, 1000, dtype=np.uint64)}, {"server": 1, "key": rng.bytes(16)}]}),
        wire.encode({"a": np.arange(6, dtype=np.float64), "big": 2**70, "neg": -(2**60), "f": float("inf"),
                     "s": "h\u00e9llo", "l": [1, None, True, 2.5], "u32": np.arange(5, dtype=np.uint32)})]
    req = {"encode": enc_cases, "share": share_cases, "wire": [m.hex() for m in msgs]}
    proc = subprocess.run([node, str(ROOT / "tests" / "js" / "crosscheck.mjs")], input=json.dumps(req),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert [len(got[k]) for k in ("encode", "share", "wire")] == [len(enc_cases), len(share_cases), 2]
    for case, res in zip(enc_cases, got["encode"]):
        assert res == case["expected"], (case["modulus"], case["base"], case["frac_bits"])
    for case, res in zip(share_cases, got["share"]):
        assert res == case["expected"], (case["modulus"], case["n"], case["prg"])
    assert got["wire"] == [m.hex() for m in msgs]  # JavaScript re-encodes refimpl's messages byte for byte


def test_node_secagg_client_matches_refimpl_under_fixed_keys() -> None:
    import json

    import numpy as np

    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js >= 20) is not installed: the JavaScript cross-check cannot run")
    cases, expected = _secagg_cases(np.random.default_rng(16))
    proc = subprocess.run([node, str(ROOT / "tests" / "js" / "crosscheck.mjs")], input=json.dumps({"secagg": cases}),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    if got.get("no_x25519"):
        pytest.skip("this Node's WebCrypto has no X25519 (Node >= 20 has it): the SecAgg cross-check cannot run")
    assert len(got["secagg"]) == len(expected) == 2
    for want, res in zip(expected, got["secagg"]):
        assert res == want  # X25519 keys, AES-GCM ciphertexts of the Shamir shares, masked input, unmasking


def _secagg_cases(rng: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rounds of refimpl's SecAgg among 5 Python clients (fixed master keys; client 4 drops before masking), and
    what client 1 (and, with SecAgg+, client 2) sends at every stage: the JavaScript client must send the same."""
    import numpy as np

    from refimpl.secagg import Codec, SecAggClient, SecAggConfig

    cases, expected = [], []
    for degree, threshold, prg, me in ((None, 3, "aes128-ctr", 1), (2, 2, "chacha20", 2)):
        n, rnd = 5, 7
        codec = Codec(length=40, max_clients=n, clip=1.0, frac_bits=16)
        graph_key = rng.bytes(16)
        cfg = SecAggConfig(num_clients=n, threshold=threshold, codec=codec, degree=degree, graph_key=graph_key,
                           prg=prg)
        keys = {u: rng.bytes(32) for u in range(1, n + 1)}
        clients = {u: SecAggClient(cfg, u, key=keys[u]) for u in range(1, n + 1)}
        for c in clients.values():
            c.begin_round(rnd)
        adv = {u: c.advertise_keys() for u, c in clients.items()}
        roster = {u: (a.c_public, a.s_public) for u, a in adv.items()}
        cts = {u: c.share_keys({v: roster[v] for v in cfg.closed_neighbourhood(u)}).ciphertexts
               for u, c in clients.items()}
        inbox = {u: {v: cts[v][u] for v in cts if u in cts[v]} for u in clients}
        values = np.round(rng.uniform(-1, 1, 40) * 256) / 256
        masked = clients[me].masked_input(inbox[me], values).masked
        survivors = [u for u in range(1, n + 1) if u != 4]
        um = clients[me].unmask(survivors)
        cases.append({"secagg": {"num_clients": n, "threshold": threshold, "degree": degree,
                                 "graph_key": graph_key.hex(), "prg": prg},
                      "codec": {"length": 40, "max_clients": n, "clip": 1.0, "frac_bits": 16}, "client": me,
                      "key": keys[me].hex(), "round": rnd,
                      "roster": {str(v): [roster[v][0].hex(), roster[v][1].hex()] for v in cfg.closed_neighbourhood(me)},
                      "inbox": {str(v): c.hex() for v, c in inbox[me].items()}, "values": values.tolist(),
                      "survivors": survivors})
        expected.append({"c_public": adv[me].c_public.hex(), "s_public": adv[me].s_public.hex(),
                         "ciphertexts": {str(v): c.hex() for v, c in cts[me].items()},
                         "masked": [str(int(v)) for v in masked],
                         "key_shares": {str(k): [str(int(x)) for x in v] for k, v in um.key_shares.items()},
                         "seed_shares": {str(k): [str(int(x)) for x in v] for k, v in um.seed_shares.items()}})
    return cases, expected
