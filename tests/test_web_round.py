"""Secure FedAvg with browser tabs and Python clients: 3 headless-Chromium tabs + 2 Python clients, 3 rounds, one tab
closed mid-round (a dropout the round survives). The released aggregate is checked against the plaintext updates each
client kept: bit for bit in the ring, and within the fixed-point bound as reals."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _browser import chromium_browser

from refimpl.ring import Z2_64
from refimpl.secagg import Codec

pytest.importorskip("websockets", reason="the websockets package (pip install 'refimpl[web]') is not installed")

ROUNDS, SERVERS, FRAC_BITS, CLIP, MAX_CLIENTS = 3, 3, 16, 1.0, 8


def _start_server(tmp_path: Path, clients: int) -> tuple[subprocess.Popen[str], str, Path]:
    out = tmp_path / "rounds.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "refimpl", "web", "--port", "0", "--clients", str(clients), "--rounds", str(ROUNDS),
         "--servers", str(SERVERS), "--max-clients", str(MAX_CLIENTS), "--min-clients", "3", "--samples", "200",
         "--clip", str(CLIP), "--frac-bits", str(FRAC_BITS), "--join-timeout", "90", "--round-timeout", "60",
         "--json-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"open (http://127\.0\.0\.1:\d+/#token=\S+)", line)
        if m:
            return proc, m.group(1), out
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the round server did not start: {proc.stdout.read()}")


def _python_client(url: str, reports: list, errors: list) -> None:
    from refimpl.web.pyclient import run_client

    try:
        reports.append(asyncio.run(run_client(url, timeout=120)))
    except Exception as e:  # reported by the test, never swallowed
        errors.append(e)


def test_three_tabs_two_python_clients_three_secure_rounds_with_a_dropout(tmp_path: Path) -> None:
    proc, url, out = _start_server(tmp_path, clients=5)
    reports: list = []
    errors: list = []
    threads = [threading.Thread(target=_python_client, args=(url, reports, errors), daemon=True) for _ in range(2)]
    tab_updates: dict[int, dict[int, np.ndarray]] = {}
    tab_bytes: dict[int, dict[int, int]] = {}
    try:
        with chromium_browser() as browser:
            ctx = browser.new_context(viewport={"width": 1100, "height": 720})
            pages = []
            for i in range(3):
                page = ctx.new_page()
                page.page_errors = []
                page.on("pageerror", lambda e, p=page: p.page_errors.append(str(e)))
                page.goto(url + ("&delay=15000&delay_round=2" if i == 2 else ""))
                pages.append(page)
            for t in threads:
                t.start()

            def collect(page) -> None:
                state = page.evaluate("""() => { const c = window.refimpl.client; return {id: c.id,
                    updates: Object.fromEntries(Object.entries(c.updates).map(([r, u]) => [r, Array.from(u)])),
                    bytes: Object.fromEntries(Object.entries(c.timings).map(([r, t]) => [r, t.upload_bytes]))}; }""")
                tab_updates[state["id"]] = {int(r): np.array(u) for r, u in state["updates"].items()}
                tab_bytes[state["id"]] = {int(r): int(b) for r, b in state["bytes"].items()}

            # the third tab holds its round-2 upload: close it then (a dropout mid-round)
            pages[2].wait_for_function("window.refimpl?.state?.delaying === 2", timeout=120_000)
            collect(pages[2])
            pages[2].close()
            for page in pages[:2]:
                page.wait_for_function("window.refimpl?.state?.done", timeout=120_000)
                assert page.page_errors == [] and page.evaluate("window.refimpl.state.errors") == []
                collect(page)
            shot = tmp_path / "page.png"
            pages[0].screenshot(path=str(shot))
            assert shot.stat().st_size > 0
        rc = proc.wait(timeout=60)
        log = proc.stdout.read() if proc.stdout else ""
        assert rc == 0, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(reports) == 2 and all(r.done and not r.errors for r in reports)

    updates = dict(tab_updates)
    sizes = dict(tab_bytes)
    for r in reports:
        updates[r.id] = r.updates
        sizes[r.id] = {rnd: int(t["upload_bytes"]) for rnd, t in r.timings.items()}
    rounds = json.loads(out.read_text())["rounds"]
    assert [r["round"] for r in rounds] == list(range(ROUNDS))
    dropped = [cid for cid, u in tab_updates.items() if 2 not in u]
    assert len(dropped) == 1
    codec = Codec(length=len(updates[reports[0].id][0]), max_clients=MAX_CLIENTS, clip=CLIP, frac_bits=FRAC_BITS)
    for res in rounds:
        rnd = res["round"]
        assert res["error"] is None
        expected_clients = sorted(cid for cid, u in updates.items() if rnd in u)
        assert res["clients"] == expected_clients
        assert len(expected_clients) == (4 if rnd == 2 else 5)
        # bit for bit: the ring total is the sum of refimpl's encodings of the plaintext updates
        ring_total = np.array([int(v) for v in res["ring_total"]], dtype=np.uint64)
        encoded = [codec.encode(updates[c][rnd]) for c in expected_clients]
        assert np.array_equal(ring_total, Z2_64.sum(np.stack(encoded), axis=0))
        # as reals: within K / (2 * 2^f) of the plaintext sum (each encoding within half a step)
        aggregate = np.array([float.fromhex(v) for v in res["aggregate_hex"]])
        plain = np.sum([updates[c][rnd] for c in expected_clients], axis=0)
        assert np.max(np.abs(aggregate - plain)) <= len(expected_clients) / 2 ** (FRAC_BITS + 1) + 1e-12
        # bytes on the wire: a browser's upload is exactly a Python client's
        assert len({sizes[c][rnd] for c in expected_clients}) == 1
        assert res["upload_bytes"] == {str(c): sizes[c][rnd] for c in expected_clients}
    assert rounds[-1]["accuracy"] > 0.5
