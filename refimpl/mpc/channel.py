"""Counting the communication of protocols run on stacked sharings (rounds, messages, bytes)."""

from __future__ import annotations

import numpy as np

from refimpl.errors import PartyCountError
from refimpl.mpc.dealer import Sharing, Triple

__all__ = ["Channel"]

class Channel:
    """Counts the communication of protocols run on stacked sharings.

    An opening is one round in which every party sends its share of every opened sharing to every other party:
    ``n (n - 1)`` messages carrying ``(n - 1) * nbytes`` bytes. Material from the dealer is counted apart
    (``dealer_messages``, ``dealer_bytes``): one message per party per item. Subclasses (``refimpl.workers``)
    route the same traffic through real serialised messages.
    """

    def __init__(self) -> None:
        self.rounds = 0
        self.messages = 0
        self.bytes = 0
        self.dealer_messages = 0
        self.dealer_bytes = 0

    def open(self, *sharings: Sharing) -> list[np.ndarray]:
        """Open several sharings in one round: arithmetic ones by sum mod M, binary ones by XOR."""
        if not sharings:
            return []
        n = sharings[0].n
        if any(s.n != n for s in sharings):
            raise PartyCountError(f"cannot open sharings among {[s.n for s in sharings]} parties in one round")
        self.rounds += 1
        self.messages += n * (n - 1)
        self.bytes += (n - 1) * sum(s.nbytes for s in sharings)
        return [s.reconstruct() for s in sharings]

    def take(self, triple: Triple) -> tuple[Sharing, ...]:
        """Consume a dealer's item, counting its delivery to the parties."""
        parts = triple.take()
        self.dealer_messages += parts[0].n
        self.dealer_bytes += sum(p.nbytes for p in parts)
        return parts

    def summary(self) -> dict[str, int]:
        """The counters as a dict."""
        return {"rounds": self.rounds, "messages": self.messages, "bytes": self.bytes,
                "dealer_messages": self.dealer_messages, "dealer_bytes": self.dealer_bytes}

    def __repr__(self) -> str:
        return "Channel(" + ", ".join(f"{k}={v}" for k, v in self.summary().items()) + ")"
