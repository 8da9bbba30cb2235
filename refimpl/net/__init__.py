"""Communication between parties: the safe wire format and the one accounting ledger.

* :mod:`~refimpl.net.wire` -- the message format (no pickle, no code: arrays, shares, numbers, strings, lists, dicts);
* :mod:`~refimpl.net.accounting` -- :class:`Ledger`, every message as ``(sender, receiver, kind, nbytes, round)``;
* :mod:`~refimpl.net.certs` -- a deployment's CA and per-party certificates (``python -m refimpl certs``);
* :mod:`~refimpl.net.framing` / :mod:`~refimpl.net.transport` -- chunked messages over mutual-TLS WebSockets, with
  deadlines and liveness (``websockets``, the ``net`` extra; imported only when used). The pointer-level API on top
  is :func:`refimpl.workers.connect`. ``transport`` names what callers use; the parts: :mod:`~refimpl.net.eventloop`,
  :mod:`~refimpl.net.link` (client), :mod:`~refimpl.net.server`, :mod:`~refimpl.net.handshake`,
  :mod:`~refimpl.net.liveness`, :mod:`~refimpl.net.bulk` (the bulk channel for large messages).
"""

from refimpl.net.accounting import Ledger, Message

__all__ = ["Ledger", "Message"]
