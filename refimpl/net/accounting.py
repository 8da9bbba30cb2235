"""One ledger of communication for every protocol: ``(sender, receiver, kind, nbytes, round)`` per message.

Workers (:mod:`refimpl.workers`), the stacked MPC protocols' channels and the secure-aggregation simulations all
count what they send here, so the same computation reads the same figures wherever it runs.

Example:
    >>> ledger = Ledger()
    >>> with ledger.round():
    ...     ledger.record("jake", "secure_worker", "share", 800)
    ...     ledger.record("john", "secure_worker", "share", 800)
    >>> ledger.messages, ledger.bytes, ledger.rounds, ledger.bytes_sent["jake"]
    (2, 1600, 1, 800)
"""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Ledger", "Message"]


@dataclass(frozen=True)
class Message:
    """One recorded message: its serial number, round, endpoints, kind and size on the wire."""

    index: int
    round: int
    sender: str
    receiver: str
    kind: str
    nbytes: int


class Ledger:
    """The record of every message between parties: totals, per party, per kind, and communication rounds.

    Args:
        keep: how many recent :class:`Message` records to keep in ``log`` (totals are always exact).

    Attributes:
        messages, bytes, rounds: totals.
        bytes_sent, bytes_received: per worker name.
        messages_by_kind, bytes_by_kind, rounds_by_kind: per message kind (``command``, ``reply``, ``store``,
            ``delete``, ``share``, ``dealer``, ``open``, ...).
        log: the most recent messages.
    """

    def __init__(self, *, keep: int = 10_000) -> None:
        self.messages = self.bytes = self.rounds = 0
        self.bytes_sent: Counter[str] = Counter()
        self.bytes_received: Counter[str] = Counter()
        self.messages_by_kind: Counter[str] = Counter()
        self.bytes_by_kind: Counter[str] = Counter()
        self.rounds_by_kind: Counter[str] = Counter()
        self.log: deque[Message] = deque(maxlen=keep)
        self._depth = 0
        self._round_kinds: set[str] | None = None

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        """Messages sent inside the block form one communication round (nesting joins the outer round)."""
        self._depth += 1
        if self._depth == 1:
            self._round_kinds = None
        try:
            yield
        finally:
            self._depth -= 1

    def record(self, sender: str, receiver: str, kind: str, nbytes: int) -> None:
        """Count one message of ``nbytes`` bytes."""
        if self._depth == 0 or self._round_kinds is None:
            self.rounds += 1
            self._round_kinds = set()
        if kind not in self._round_kinds:
            self._round_kinds.add(kind)
            self.rounds_by_kind[kind] += 1
        if self._depth == 0:
            self._round_kinds = None
        self.messages += 1
        self.bytes += nbytes
        self.bytes_sent[sender] += nbytes
        self.bytes_received[receiver] += nbytes
        self.messages_by_kind[kind] += 1
        self.bytes_by_kind[kind] += nbytes
        self.log.append(Message(self.messages, self.rounds, sender, receiver, kind, nbytes))

    def summary(self) -> dict[str, Any]:
        """Totals and per-kind counts as plain data."""
        return {"messages": self.messages, "bytes": self.bytes, "rounds": self.rounds,
                "messages_by_kind": dict(self.messages_by_kind), "bytes_by_kind": dict(self.bytes_by_kind),
                "rounds_by_kind": dict(self.rounds_by_kind), "bytes_sent": dict(self.bytes_sent),
                "bytes_received": dict(self.bytes_received)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(messages={self.messages}, bytes={self.bytes}, rounds={self.rounds})"
