"""Helpers for the networked tests: certificates, party processes on 127.0.0.1 that are always stopped."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("websockets", reason="the networked tests need the websockets package (refimpl[net])")

ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(r"listening on (wss?://127\.0\.0\.1:\d+)")


# A child started from the main thread asks Linux to SIGKILL it when the test process dies (PR_SET_PDEATHSIG survives
# the exec), so a test run killed by a timeout leaves no worker behind; the finally blocks below stop them otherwise.
_LAUNCH = (
    "import ctypes, os, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL(None).prctl(1, 9)\n"  # PR_SET_PDEATHSIG, SIGKILL
    "    if os.getppid() != int(os.environ['REFIMPL_TEST_PARENT']): sys.exit('test process gone')\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'refimpl', *sys.argv[1:]])\n"
)


def _command(args: list[str]) -> list[str]:
    if threading.current_thread() is threading.main_thread():  # the signal follows the thread that forked
        return [sys.executable, "-c", _LAUNCH, *args]
    return [sys.executable, "-m", "refimpl", *args]


class Process:
    """A ``python -m refimpl ...`` child process; ``url`` is what it printed as its address."""

    def __init__(self, args: list[str], *, wait_for_url: bool = True, timeout: float = 60.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", REFIMPL_TEST_PARENT=str(os.getpid()))
        self.proc = subprocess.Popen(_command(args), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT))
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.url = ""
        if wait_for_url:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
                except queue.Empty:
                    break
                m = _URL.search(line)
                if m:
                    self.url = m.group(1)
                    return
            self.kill()
            raise RuntimeError(f"{args[:3]} did not start listening within {timeout} s: {''.join(self.output)}")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


class Processes:
    """Starts processes and kills every one of them at the end (use as a context manager)."""

    def __init__(self) -> None:
        self.procs: list[Process] = []

    def start(self, *args: str, **kw: object) -> Process:
        p = Process(list(args), **kw)  # type: ignore[arg-type]
        self.procs.append(p)
        return p

    def worker(self, name: str, tls_dir: Path, *extra: str) -> Process:
        return self.start("worker", "--name", name, "--listen", "127.0.0.1:0", "--tls-dir", str(tls_dir),
                          "--log-level", "WARNING", *extra)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
