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
    """One recorded message: its serial number, round, endpoints, kind and size on the wire.

    ``round`` is the protocol's own round label when the sender gave one (a federated round, a SecAgg round), else
    the ledger's communication-round counter.
    """

    index: int
    round: int
    sender: str
    receiver: str
    kind: str
    nbytes: int


class Ledger:
    """The record of every message between parties: totals, per party, per kind, and communication rounds.

    Every protocol in refimpl counts its traffic here, as ``(sender, receiver, kind, nbytes, round)``: workers'
    serialised messages, the openings and dealer items of the MPC protocols, secure-aggregation messages.

    Args:
        keep: how many recent :class:`Message` records to keep in ``log`` (None: all). Totals, per-party and
            per-kind counters are always exact; per-round queries need the messages of that round still in ``log``.

    Attributes:
        messages, bytes, rounds: totals.
        bytes_sent, bytes_received, messages_sent, messages_received: per party name.
        messages_by_kind, bytes_by_kind, rounds_by_kind: per message kind (``command``, ``reply``, ``store``,
            ``delete``, ``share``, ``dealer``, ``open``, ...).
        log: the most recent messages.
    """

    def __init__(self, *, keep: int | None = 10_000) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
            raise ValueError(f"keep must be None or a non-negative integer, got {keep!r}")
        self.messages = self.bytes = self.rounds = 0
        self.bytes_sent: Counter[str] = Counter()
        self.bytes_received: Counter[str] = Counter()
        self.messages_sent: Counter[str] = Counter()
        self.messages_received: Counter[str] = Counter()
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

    def record(self, sender: str, receiver: str, kind: str, nbytes: int, *, round: int | None = None) -> None:
        """Count one message of ``nbytes`` bytes from ``sender`` to ``receiver``.

        Args:
            round: the protocol's round label (e.g. the federated round); None uses the communication-round counter.
        """
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ValueError(f"a message cannot have {nbytes} bytes ({sender!r} -> {receiver!r}, {kind!r})")
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
        self.messages_sent[sender] += 1
        self.messages_received[receiver] += 1
        self.messages_by_kind[kind] += 1
        self.bytes_by_kind[kind] += nbytes
        self.log.append(Message(self.messages, self.rounds if round is None else int(round), sender, receiver, kind,
                                nbytes))

    def _round_log(self, round: int) -> list[Message]:
        if self.log.maxlen is not None and self.messages > len(self.log):
            raise ValueError(f"per-round figures need every message, but this ledger keeps only the last "
                             f"{self.log.maxlen} of {self.messages}; make it with keep=None")
        return [m for m in self.log if m.round == round]

    def sent(self, party: str, round: int | None = None) -> int:
        """Bytes ``party`` sent (in protocol round ``round``, or in all rounds)."""
        if round is None:
            return self.bytes_sent[party]
        return sum(m.nbytes for m in self._round_log(round) if m.sender == party)

    def received(self, party: str, round: int | None = None) -> int:
        """Bytes ``party`` received (in protocol round ``round``, or in all rounds)."""
        if round is None:
            return self.bytes_received[party]
        return sum(m.nbytes for m in self._round_log(round) if m.receiver == party)

    def by_party(self, round: int | None = None) -> dict[str, dict[str, int]]:
        """``{party: {"sent": bytes, "received": bytes, "messages_sent": n, "messages_received": n}}``."""
        out: dict[str, dict[str, int]] = {}

        def row(party: str) -> dict[str, int]:
            return out.setdefault(party, {"sent": 0, "received": 0, "messages_sent": 0, "messages_received": 0})

        if round is None:
            for party in set(self.messages_sent) | set(self.messages_received):
                row(party).update(sent=self.bytes_sent[party], received=self.bytes_received[party],
                                  messages_sent=self.messages_sent[party],
                                  messages_received=self.messages_received[party])
            return out
        for m in self._round_log(round):
            row(m.sender)["sent"] += m.nbytes
            row(m.sender)["messages_sent"] += 1
            row(m.receiver)["received"] += m.nbytes
            row(m.receiver)["messages_received"] += 1
        return out

    def summary(self) -> dict[str, Any]:
        """Totals and per-kind counts as plain data."""
        return {"messages": self.messages, "bytes": self.bytes, "rounds": self.rounds,
                "messages_by_kind": dict(self.messages_by_kind), "bytes_by_kind": dict(self.bytes_by_kind),
                "rounds_by_kind": dict(self.rounds_by_kind), "bytes_sent": dict(self.bytes_sent),
                "bytes_received": dict(self.bytes_received)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(messages={self.messages}, bytes={self.bytes}, rounds={self.rounds})"
