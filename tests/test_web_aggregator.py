"""Browser tabs as clients of the networked aggregator (issue 13's ``python -m refimpl aggregator --protocol
additive``: a lead and S share servers, each its own process, plaintext on loopback because a browser cannot present
mutual-TLS client certificates), next to Python clients (``python -m refimpl client``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _browser import chromium_browser

pytest.importorskip("websockets", reason="the websockets package (pip install 'refimpl[web]') is not installed")

from refimpl.fl.deploy.client import synthetic_contribution  # noqa: E402

PY = sys.executable


def _start(args: list[str], pattern: str, procs: list[subprocess.Popen[str]]) -> str:
    """Start ``python -m refimpl ARGS`` (appended to ``procs``) and return the first match of ``pattern``."""
    proc = subprocess.Popen([PY, "-m", "refimpl", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(pattern, line)
        if m:
            return m.group(1)
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{args[:2]} did not start")


def _deployment(tmp_path: Path, procs: list, *, clients: int, rounds: int, servers: int, extra: list[str],
                protocol: str = "additive") -> str:
    urls = [_start(["aggregator", "--protocol", "additive", "--share-server-index", str(s), "--insecure-plaintext",
                    "--log-level", "WARNING"], r"listening on (ws://127\.0\.0\.1:\d+)", procs)
            for s in range(servers if protocol == "additive" else 0)]
    share_args = [a for u in urls for a in ("--share-server", u)]
    return _start(["aggregator", "--protocol", protocol, "--insecure-plaintext", "--clients", str(clients),
                   "--rounds", str(rounds), "--min-clients", "3", "--stage-timeout", "60", "--join-timeout", "90",
                   "--log-level", "WARNING", "--out", str(tmp_path / "lead.json"), *share_args, *extra],
                  r"listening on (ws://127\.0\.0\.1:\d+)", procs)


def _tabs(lead: str, clients: int, ids: list[int], procs: list) -> list[str]:
    """The page server for tabs joining ``lead``: the tab addresses of client ``ids``."""
    proc = subprocess.Popen([PY, "-m", "refimpl", "web", "--port", "0", "--aggregator", lead, "--clients",
                             str(clients), "--ids", ",".join(map(str, ids))], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    procs.append(proc)
    assert proc.stdout is not None
    urls = []
    for k in ids:
        m = re.search(r"client-(\d+): (http://\S+)", proc.stdout.readline())
        assert m is not None and int(m.group(1)) == k
        urls.append(m.group(2))
    return urls


def _stop(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.parametrize("protocol", ["additive", "secagg", "secagg+"])
def test_tabs_and_python_clients_with_the_networked_aggregator_exact_totals_and_a_dropout(
        tmp_path: Path, protocol: str) -> None:
    """additive: 3 share-server processes; secagg: Bonawitz et al. through the lead (the tab's masks and Shamir
    shares must match refimpl's for the lead to unmask); secagg+: the same on a Harary graph of degree 4 (t = 3).
    The third tab is closed before its upload (additive) / its masked input (secagg): a dropout."""
    d, clients, rounds = 2000, 5, 3
    procs: list = []
    extra = ["--synthetic", str(d)] + (["--degree", "4", "--threshold", "3"] if protocol == "secagg+" else [])
    try:
        lead = _deployment(tmp_path, procs, clients=clients, rounds=rounds, servers=3, extra=extra, protocol=protocol)
        lead_proc = procs[-1]
        tabs = _tabs(lead, clients, [1, 2, 3], procs)
        with chromium_browser() as browser:
            pages = []
            for i, url in enumerate(tabs):
                page = browser.new_page()
                page.goto(url + ("&delay=15000&delay_round=2" if i == 2 else ""))
                pages.append(page)
            py = subprocess.Popen([PY, "-m", "refimpl", "client", "--ids", "4-5", "--aggregator", lead,
                                   "--insecure-plaintext", "--clients", str(clients), "--data", "synthetic"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(py)
            pages[2].wait_for_function("window.refimpl?.state?.delaying === 2", timeout=120_000)
            pages[2].close()  # client-3 drops out mid-round
            for page in pages[:2]:
                page.wait_for_function("window.refimpl?.state?.done", timeout=120_000)
                assert page.evaluate("window.refimpl.state.errors") == []
                assert page.evaluate("window.refimpl.state.uploaded") == list(range(rounds))
        out, _ = py.communicate(timeout=60)
        assert py.returncode == 0, out
        lead_proc.wait(timeout=60)  # the lead exits after its rounds
    finally:
        _stop(procs)
    records = json.loads((tmp_path / "lead.json").read_text())
    assert [r["round"] for r in records] == list(range(rounds))
    for rec in records:
        assert rec["aborted"] is None
        expected = [1, 2, 4, 5] if rec["round"] == 2 else [1, 2, 3, 4, 5]
        assert rec["clients"] == expected
        # the test vectors are multiples of 2^-8: the released total is exactly their sum
        plain = np.sum([synthetic_contribution(c, rec["round"], d, 1.0) for c in expected], axis=0)
        assert np.array_equal(np.array(rec["total"]), plain)


def test_tab_trains_an_mlp_with_the_networked_aggregator(tmp_path: Path) -> None:
    procs: list = []
    try:
        lead = _deployment(tmp_path, procs, clients=3, rounds=2, servers=2, extra=["--model", "784,16,10"])
        tabs = _tabs(lead, 3, [1, 2], procs)
        py = subprocess.Popen([PY, "-m", "refimpl", "client", "--ids", "3", "--aggregator", lead,
                               "--insecure-plaintext", "--clients", "3"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        procs.append(py)
        with chromium_browser() as browser:
            pages = [browser.new_page() for _ in tabs]
            for page, url in zip(pages, tabs):
                page.goto(url)
            for page in pages:
                page.wait_for_function("window.refimpl?.state?.done", timeout=180_000)
                assert page.evaluate("window.refimpl.state.errors") == []
                acc = page.evaluate("window.refimpl.state.accuracy")  # computed in the tab on the new model
                assert acc is not None and acc > 0.5
        out, _ = py.communicate(timeout=60)
        assert py.returncode == 0, out
    finally:
        _stop(procs)
    records = json.loads((tmp_path / "lead.json").read_text())
    assert [r["clients"] for r in records] == [[1, 2, 3], [1, 2, 3]]
    assert records[-1]["accuracy"] > 0.5
