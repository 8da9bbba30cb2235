"""Counting the communication of protocols run on stacked sharings, in the one accounting ledger.

A :class:`Channel` records every opening and every dealer item in a :class:`~refimpl.net.accounting.Ledger`
(kinds ``"open"`` and ``"dealer"``), so the stacked protocols of :mod:`refimpl.mpc` read the same figures as the
workers and the secure-aggregation simulations.

Example:
    >>> from refimpl import share
    >>> ch = Channel()
    >>> _ = ch.open(share([1, 2, 3], 3))
    >>> ch.rounds, ch.messages, ch.bytes, ch.ledger.bytes_sent["party0"]
    (1, 6, 144, 48)
"""

from __future__ import annotations

import numpy as np

from refimpl.errors import PartyCountError
from refimpl.mpc.dealer import Sharing, Triple
from refimpl.net.accounting import Ledger

__all__ = ["Channel"]


class Channel:
    """Counts the communication of protocols run on stacked sharings, as messages in a ledger.

    An opening is one round in which every party sends its share of every opened sharing to every other party:
    ``n (n - 1)`` messages of kind ``"open"`` carrying ``(n - 1) * nbytes`` bytes in all. Material from the dealer
    is counted apart: one ``"dealer"`` message per party per item. Party ``i`` is named ``f"party{i}"`` and the
    dealer ``"dealer"`` in the ledger. Subclasses (``refimpl.workers.LedgerChannel``) route the same traffic
    through real serialised messages as well.

    Args:
        ledger: where the messages are recorded (None: a ledger of the channel's own). The figures below are this
            ledger's ``"open"`` and ``"dealer"`` totals, so give a channel its own ledger to read its own figures.

    Attributes:
        rounds, messages, bytes: openings (rounds, messages, bytes).
        dealer_messages, dealer_bytes: dealer items delivered.
    """

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = Ledger() if ledger is None else ledger
        self._names: list[str] = []

    def _party(self, n: int) -> list[str]:
        while len(self._names) < n:
            self._names.append(f"party{len(self._names)}")
        return self._names[:n]

    @property
    def rounds(self) -> int:
        return self.ledger.rounds_by_kind["open"]

    @property
    def messages(self) -> int:
        return self.ledger.messages_by_kind["open"]

    @property
    def bytes(self) -> int:
        return self.ledger.bytes_by_kind["open"]

    @property
    def dealer_messages(self) -> int:
        return self.ledger.messages_by_kind["dealer"]

    @property
    def dealer_bytes(self) -> int:
        return self.ledger.bytes_by_kind["dealer"]

    def open(self, *sharings: Sharing) -> list[np.ndarray]:
        """Open several sharings in one round: arithmetic ones by sum mod M, binary ones by XOR."""
        if not sharings:
            return []
        n = sharings[0].n
        if any(s.n != n for s in sharings):
            raise PartyCountError(f"cannot open sharings among {[s.n for s in sharings]} parties in one round")
        names = self._party(n)
        per_party = sum(s.nbytes for s in sharings) // n
        with self.ledger.round():
            for i in range(n):
                for j in range(n):
                    if i != j:
                        self.ledger.record(names[i], names[j], "open", per_party)
        return [s.reconstruct() for s in sharings]

    def take(self, triple: Triple) -> tuple[Sharing, ...]:
        """Consume a dealer's item, counting its delivery to the parties (one message per party)."""
        parts = triple.take()
        n = parts[0].n
        per_party = sum(p.nbytes for p in parts) // n
        with self.ledger.round():
            for name in self._party(n):
                self.ledger.record("dealer", name, "dealer", per_party)
        return parts

    def summary(self) -> dict[str, int]:
        """The counters as a dict."""
        return {"rounds": self.rounds, "messages": self.messages, "bytes": self.bytes,
                "dealer_messages": self.dealer_messages, "dealer_bytes": self.dealer_bytes}

    def __repr__(self) -> str:
        return "Channel(" + ", ".join(f"{k}={v}" for k, v in self.summary().items()) + ")"
