"""The interface every party implements, in this process or another: protocols are written once against it.

:class:`~refimpl.workers.VirtualWorker` implements it in process; a networked worker implements it over a
connection. Shared-tensor protocols (:mod:`refimpl.workers.shared_tensor`) use only this interface, so they run
unchanged on either.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Worker"]


@runtime_checkable
class Worker(Protocol):
    """A party: a name, the ledger that counts its messages, message delivery and pointers to objects it holds."""

    name: str
    ledger: Any

    def deliver(self, receiver: Any, kind: str, message: dict[str, Any]) -> Any:
        """Send ``message`` (of ``kind``) to ``receiver`` through the safe wire format; return the reply."""

    def pointer(self, location: Any, obj_id: int) -> Any:
        """A pointer owned by this party to object ``obj_id`` held by ``location``."""
