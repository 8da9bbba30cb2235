"""The process's network event loop: one asyncio loop in a daemon thread, and blocking calls into it.

Every connection of a process (:class:`~refimpl.net.link.Link`, :class:`~refimpl.net.server.Server`) lives on
this loop; synchronous callers (a :class:`~refimpl.workers.remote.RemoteWorker`, a worker executing an
instruction) hand it coroutines with :func:`run_sync` and wait. A forked child gets a loop of its own.

Example:
    >>> import asyncio
    >>> async def add(a, b):
    ...     await asyncio.sleep(0)
    ...     return a + b
    >>> run_sync(add(2, 3), timeout=5), on_network_thread()
    (5, False)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["event_loop", "on_network_thread", "run_sync"]

_T = TypeVar("_T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="refimpl-net", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


_loop_lock = threading.Lock()
_loop: _LoopThread | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """This process's network event loop (started on first use, in a daemon thread)."""
    global _loop
    with _loop_lock:
        if _loop is None or not _loop.thread.is_alive() or _loop.pid != os.getpid():  # type: ignore[attr-defined]
            _loop = _LoopThread()
            _loop.pid = os.getpid()  # type: ignore[attr-defined]
        return _loop.loop


def on_network_thread() -> bool:
    """Whether the calling thread is the network loop's own (where a blocking network call would deadlock)."""
    return _loop is not None and threading.current_thread() is _loop.thread


def run_sync(coro: Awaitable[_T], timeout: float | None = None) -> _T:
    """Run ``coro`` on the network loop and wait for its result (from any thread but the loop's own)."""
    lt = _loop
    if lt is not None and lt.pid == os.getpid() and lt.thread.is_alive():  # type: ignore[attr-defined]
        loop = lt.loop  # the common case: no lock to take
    else:
        loop = event_loop()
    if threading.current_thread() is _loop.thread:  # type: ignore[union-attr]
        if asyncio.iscoroutine(coro):
            coro.close()
        raise RuntimeError("a blocking network call was made on the network thread itself")
    fut: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise
