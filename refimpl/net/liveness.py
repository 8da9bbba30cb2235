"""Liveness of a WebSocket connection: the keepalive settings both ends use, and the send watchdog.

The ``websockets`` keepalive pings the peer every ``ping_interval`` seconds and drops the connection when a pong is
``ping_timeout`` seconds late; pings travel between chunks, so they do not depend on message size. A peer that
stops reading (frozen, not killed) fills the socket buffers, and then no ping gets through either: a message's
send would wait forever. :class:`SendWatchdog` catches that case: no chunk written for ``ping_timeout`` seconds
aborts the connection (the sender then fails with the reason, :attr:`SendWatchdog.stalled`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from refimpl.net.framing import CHUNK

__all__ = ["SendWatchdog", "ws_options"]


def ws_options(ping_interval: float, ping_timeout: float, max_queue: int = 16) -> dict[str, Any]:
    """The ``websockets`` connection options of both ends: no compression, chunk-sized frames, keepalive pings,
    a 4 MiB write limit (back-pressure)."""
    return {"compression": None, "max_size": CHUNK + 512, "ping_interval": ping_interval,
            "ping_timeout": ping_timeout, "max_queue": max_queue, "write_limit": 1 << 22,
            "close_timeout": min(2.0, ping_timeout)}


class SendWatchdog:
    """Aborts ``ws``'s connection when :meth:`progress` is not called for ``stall`` seconds (checked every
    ``stall / 4`` seconds on the running loop) until :meth:`cancel`."""

    def __init__(self, ws: Any, stall: float) -> None:
        self.ws, self.stall, self.stalled = ws, stall, False
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(stall / 4, self._watch)

    def progress(self) -> None:
        """A chunk was written."""
        self.last = self.loop.time()

    def _watch(self) -> None:
        if self.loop.time() - self.last > self.stall:
            self.stalled = True
            self._timer = None
            self.ws.transport.abort()
        else:
            self._timer = self.loop.call_later(self.stall / 4, self._watch)

    def cancel(self) -> None:
        """The send ended (done or failed): stop watching."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
