"""Parties holding objects behind pointers, the instruction set they execute, and tensors shared among them.

* :mod:`~refimpl.workers.interface` -- :class:`Worker`, the interface every party implements;
* :mod:`~refimpl.workers.worker` -- :class:`VirtualWorker`, :class:`Pointer`, :func:`send`, :class:`Ledger`;
* :mod:`~refimpl.workers.ops` -- the registered instruction set (nothing else runs on a worker);
* :mod:`~refimpl.workers.shared_tensor` -- :class:`SharedTensor`, :func:`share_among`;
* :mod:`~refimpl.workers.remote` -- :func:`connect`, :class:`RemoteWorker` (a worker in another process),
  :class:`Session`; :mod:`~refimpl.workers.server` -- the worker process (``python -m refimpl worker``).
"""

from refimpl.workers.interface import Worker
from refimpl.workers.remote import RemoteWorker, Session, connect
from refimpl.workers.shared_tensor import LedgerChannel, SharedTensor, share_among, share_pointer
from refimpl.workers.worker import Ledger, Message, Pointer, VirtualWorker, send

__all__ = [
    "Ledger",
    "LedgerChannel",
    "Message",
    "Pointer",
    "RemoteWorker",
    "Session",
    "SharedTensor",
    "VirtualWorker",
    "Worker",
    "connect",
    "send",
    "share_among",
    "share_pointer",
]
