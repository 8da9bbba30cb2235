"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium through Playwright's Python package.

Playwright is launched with ``executable_path`` (its own browser downloads are never used); tests that need it skip
with a reason naming what is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    """The system Chromium, or skip the test naming what is missing."""
    env = os.environ.get("REFIMPL_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no system Chromium (apt-get install chromium): the browser tests cannot run")
    raise AssertionError  # unreachable


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A headless Chromium; closed on exit."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (pip install "
                                   "'refimpl[web]') is not installed: the browser tests cannot run")
    exe = chromium_path()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_page() -> Iterator[Any]:
    """One page in a fresh headless Chromium; browser errors on the page fail loudly via ``page.errors``."""
    with chromium_browser() as browser:
        page = browser.new_page()
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
        yield page
