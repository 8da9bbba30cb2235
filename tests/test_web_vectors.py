"""The JavaScript client (refimpl/web/static) against refimpl's known-answer vectors: under Node's test runner and in
headless Chromium (Debian's /usr/bin/chromium driven by Playwright; nothing downloads a browser build)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
    assert names == {"streams", "kdf", "ring", "encoding", "share", "share_compressed", "secagg_additive"}
    for r in results:
        assert r["checked"] > 0 and r["failures"] == [], (r["name"], r["failures"][:5])
    assert "bit-identical" in verdict
