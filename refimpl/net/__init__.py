"""Communication between parties: the safe wire format and the one accounting ledger.

* :mod:`~refimpl.net.wire` -- the message format (no pickle, no code: arrays, shares, numbers, strings, lists, dicts);
* :mod:`~refimpl.net.accounting` -- :class:`Ledger`, every message as ``(sender, receiver, kind, nbytes, round)``.
"""

from refimpl.net.accounting import Ledger, Message

__all__ = ["Ledger", "Message"]
