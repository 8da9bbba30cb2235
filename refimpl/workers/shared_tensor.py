"""Values secret-shared across virtual workers (the tutorial's ``x.share(bob, alice, crypto_provider=...)``).

A :class:`SharedTensor` holds one pointer per worker, each to that worker's additive share. Addition,
subtraction, negation and products with public values run locally at each worker; ``*`` and ``@`` of two shared
values run Beaver's protocol with the crypto provider (a worker that deals triples from its own key): the
provider pushes each party its part of a triple, every party sends its masked pieces to every other party in one
opening round, and each party finishes locally. With a fixed-point ``encoding`` products are truncated by the
dealer-assisted protocol of :func:`refimpl.mpc.truncate` (error below one unit in the last place, any ``n``).
Every step is a serialised message in the workers' :class:`~refimpl.workers.Ledger`.

:class:`LedgerChannel` routes the openings and dealer traffic of the stacked protocols of :mod:`refimpl.mpc`
and :mod:`refimpl.mpc.comparison` through the same wire format and ledger (used for encrypted inference).

Example:
    >>> import numpy as np
    >>> from refimpl.workers import Ledger, VirtualWorker, send
    >>> ledger = Ledger()
    >>> jake, john, secure = (VirtualWorker(n, ledger) for n in ("jake", "john", "secure_worker"))
    >>> provider = VirtualWorker("crypto_provider", ledger)
    >>> x = send(np.array([1, 2, 3]), jake).share(jake, john, secure, crypto_provider=provider)
    >>> y = share_among(np.array([4, 5, 6]), (jake, john, secure), crypto_provider=provider)
    >>> x
    SharedTensor(workers=('jake', 'john', 'secure_worker'), ring=Z2_64, shape=(3,))
    >>> (x + y).get().tolist(), (x * y).get().tolist(), (x * y - 10 * x + 1).get().tolist()
    ([5, 7, 9], [4, 10, 18], [-5, -9, -11])
    >>> fp = FixedPoint()
    >>> a = share_among(np.array([[0.5, -1.5]]), (jake, john), crypto_provider=provider, encoding=fp)
    >>> b = share_among(np.array([[2.0], [0.25]]), (jake, john), crypto_provider=provider, encoding=fp)
    >>> (a @ b).get()
    array([[0.625]])
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl.encoding import FixedPoint
from refimpl.errors import PartyCountError, RingMismatchError
from refimpl.mpc.algebra import TensorAlgebra
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Sharing, Triple, check_divisor
from refimpl.net import wire
from refimpl.net.accounting import Ledger
from refimpl.ring import Z2_64, Ring
from refimpl.sharing.additive import CompressedShares, Shares
from refimpl.sharing.binary import BinaryShares
from refimpl.workers.interface import Worker
from refimpl.workers.ops import share_out

if TYPE_CHECKING:
    from refimpl.workers.worker import Pointer, VirtualWorker

__all__ = ["LedgerChannel", "SharedTensor", "share_among", "share_pointer"]


def _commands(me: VirtualWorker, workers: Sequence[VirtualWorker], msgs: Sequence[dict[str, Any]]) -> list[Any]:
    """Post ``msgs[i]`` (a ``command``) to ``workers[i]``, the commands of one round; their replies (``result()``).

    Networked workers get them without waiting (:meth:`~refimpl.workers.VirtualWorker.post`): the instructions
    of an operation follow one another on each connection, and a worker waits for what its peers push (``await``).
    """
    return [me.post(w, "command", m) for w, m in zip(workers, msgs)]


def _pipelined(ledger: Any) -> Any:
    """The ledger's :meth:`~refimpl.workers.remote.Session.pipelined` block (none in process)."""
    block = getattr(ledger, "pipelined", None)
    return block() if block is not None else contextlib.nullcontext()


def _settle(ledger: Any) -> None:
    """Raise the first failure among the messages sent without waiting (:meth:`Session.settle`; none in
    process)."""
    settle = getattr(ledger, "settle", None)
    if settle is not None:
        settle()


def _check_workers(workers: Sequence[VirtualWorker], provider: VirtualWorker | None) -> tuple[VirtualWorker, ...]:
    workers = tuple(workers)
    if len(workers) < 2:
        raise PartyCountError(f"sharing needs at least 2 workers, got {len(workers)}")
    for w in workers + ((provider,) if provider is not None else ()):
        if not isinstance(w, Worker):
            raise TypeError(f"expected a worker (VirtualWorker or a networked worker), got {type(w).__name__}")
    if len({w.name for w in workers}) != len(workers):
        raise ValueError(f"workers must be distinct, got {[w.name for w in workers]}")
    if provider is not None and provider in workers:
        raise ValueError(f"the crypto provider {provider.name!r} must not be one of the share holders")
    return workers


class SharedTensor(TensorAlgebra):
    """A value additively shared among workers: one pointer per worker to its share.

    Made by :func:`share_among` or ``Pointer.share``. It knows its encoding (None: ring integers; a
    :class:`~refimpl.encoding.FixedPoint`: reals, so ``x + 2``, ``x * 0.5``, ``x / 3`` are real arithmetic) and has
    the whole algebra of :class:`~refimpl.mpc.algebra.TensorAlgebra`: ``+ - * / @`` with shared or public
    operands (broadcasting, batched matmul), ``sum``/``mean``, ``.T``, reshape, indexing, comparisons, ``relu``,
    ``max``/``argmax``, ``exp``, ``softmax``, ... Products, divisions and comparisons run with the crypto provider;
    everything goes through the :class:`~refimpl.workers.interface.Worker` interface only.
    """

    def __init__(self, pointers: Sequence[Pointer], ring: Ring, shape: tuple[int, ...],
                 crypto_provider: VirtualWorker | None = None, encoding: FixedPoint | None = None) -> None:
        self.pointers = tuple(pointers)
        self.ring, self.shape = ring, tuple(int(d) for d in shape)
        self.crypto_provider, self.encoding = crypto_provider, encoding

    @property
    def workers(self) -> tuple[VirtualWorker, ...]:
        return tuple(p.location for p in self.pointers)

    @property
    def n(self) -> int:
        return len(self.pointers)

    @property
    def _me(self) -> VirtualWorker:
        return self.pointers[0].owner

    def __repr__(self) -> str:
        enc = f", encoding={self.encoding!r}" if self.encoding is not None else ""
        return f"SharedTensor(workers={tuple(w.name for w in self.workers)}, ring={self.ring!r}, " \
               f"shape={self.shape}{enc})"

    def _new(self, out: list[int], shape: tuple[int, ...], encoding: Any = "same") -> SharedTensor:
        enc = self.encoding if encoding == "same" else encoding
        return SharedTensor([self._me.pointer(w, i) for w, i in zip(self.workers, out)], self.ring, shape,
                            self.crypto_provider, enc)

    def _each(self, fn: str, per_party: list[dict[str, Any]], shape: tuple[int, ...],
              drop: list[list[int]] | None = None, encoding: Any = "same",
              waits: list[list[int]] | None = None) -> SharedTensor:
        """Run ``fn`` at every worker in one round; store the results as a new shared tensor. ``waits[i]``: the
        objects worker ``i`` needs from its peers (it waits for them)."""
        ledger = self._me.ledger
        out = [ledger.new_id() for _ in self.workers]
        with _pipelined(ledger), ledger.round():
            msgs = [{"op": "exec", "fn": fn, "args": kw.pop("args", []), "kw": kw, "out": out[i],
                     "drop": drop[i] if drop else [], **({"await": waits[i]} if waits else {})}
                    for i, kw in enumerate(per_party)]
            _commands(self._me, self.workers, msgs)
        return self._new(out, shape, encoding)

    def _refs(self) -> list[dict[str, int]]:
        for p in self.pointers:
            p._check()
        return [{"ref": p.id} for p in self.pointers]

    def _same(self, other: Any) -> SharedTensor:
        if not isinstance(other, SharedTensor):
            raise TypeError(f"cannot combine a SharedTensor with {type(other).__name__}")
        if [w.name for w in other.workers] != [w.name for w in self.workers]:
            raise PartyCountError(f"shared among {[w.name for w in self.workers]} and "
                                  f"{[w.name for w in other.workers]}: share both among the same workers")
        if other.ring != self.ring:
            raise RingMismatchError(f"cannot combine values shared over {self.ring!r} and {other.ring!r}")
        return other

    # ---------------------------------------------------------------- primitives of the algebra
    def _with(self, encoding: FixedPoint | None) -> SharedTensor:
        return SharedTensor(self.pointers, self.ring, self.shape, self.crypto_provider, encoding)

    def _local(self, op: str, shape: tuple[int, ...], **kw: Any) -> SharedTensor:
        kws = [{"args": [x], "op": op, "params": kw, "modulus": self.ring.modulus} for x in self._refs()]
        return self._each("ring_local", kws, shape)

    def _concat(self, others: Sequence[TensorAlgebra], axis: int, stack: bool,
                shape: tuple[int, ...]) -> SharedTensor:
        items = [self] + [self._same(o) for o in others]
        refs = [t._refs() for t in items]
        nd = self.ndim + (1 if stack else 0)
        kws = [{"args": [[r[i] for r in refs]], "axis": int(axis) % nd, "stack": stack,
                "modulus": self.ring.modulus} for i in range(self.n)]
        return self._each("ring_concat", kws, shape)

    def _raw_linear(self, other: TensorAlgebra, fn: str, shape: tuple[int, ...]) -> SharedTensor:
        o = self._same(other)
        kws = [{"args": [x, y], "fn": fn, "modulus": self.ring.modulus} for x, y in zip(self._refs(), o._refs())]
        return self._each("ring_binary", kws, shape)

    def _raw_public(self, value: np.ndarray, fn: str, shape: tuple[int, ...]) -> SharedTensor:
        kws = [{"args": [x, value], "fn": fn, "party": i, "modulus": self.ring.modulus}
               for i, x in enumerate(self._refs())]
        return self._each("ring_public", kws, shape)

    def _provider(self) -> VirtualWorker:
        if self.crypto_provider is None:
            raise ValueError("multiplying, dividing or comparing shared values needs a crypto provider: share with "
                             "crypto_provider=")
        return self.crypto_provider

    def _deal(self, kind: str, shapes: list[tuple[int, ...]], nparts: int, **extra: Any) -> list[list[int]]:
        ledger = self._me.ledger
        ids = [[ledger.new_id() for _ in range(nparts)] for _ in self.workers]
        msg = {"op": "exec", "fn": "deal", "kw": {"kind": kind, "shapes": [list(s) for s in shapes],
               "names": [w.name for w in self.workers], "ids": ids, "modulus": self.ring.modulus, **extra}}
        with _pipelined(ledger):
            self._me.post(self._provider(), "command", msg)
        return ids

    def _piece_ids(self) -> list[list[int]]:
        ledger, n = self._me.ledger, self.n
        return [[ledger.new_id() for _ in range(n)] for _ in range(n)]  # [i][j]: from party i, held by j

    def _push(self, fn: str, per_party: list[dict[str, Any]], piece: list[list[int]],
              waits: list[list[int]]) -> None:
        """The opening round: party ``i`` sends its masked pieces to every other party (after ``waits[i]``, the
        dealer's parts, reached it)."""
        ledger, names, n = self._me.ledger, [w.name for w in self.workers], self.n
        with _pipelined(ledger), ledger.round():
            msgs = []
            for i in range(n):
                kw = {**per_party[i], "peers": [names[j] for j in range(n) if j != i],
                      "ids": [piece[i][j] for j in range(n) if j != i], "own": piece[i][i]}
                msgs.append({"op": "exec", "fn": fn, "args": kw.pop("args", []), "kw": kw, "await": waits[i]})
            _commands(self._me, self.workers, msgs)

    def _received(self, piece: list[list[int]], parts: list[list[int]]) -> list[list[int]]:
        """What party ``j`` awaits to finish an opening: the other parties' pieces and its dealer parts."""
        n = self.n
        return [[piece[i][j] for i in range(n) if i != j] + parts[j] for j in range(n)]

    def _raw_beaver(self, other: TensorAlgebra, kind: str, shape: tuple[int, ...]) -> SharedTensor:
        o = self._same(other)
        parts = self._deal(kind, [self.shape, o.shape], 3)
        piece = self._piece_ids()
        xs = [[x, y] for x, y in zip(self._refs(), o._refs())]
        self._push("mask_push", [{"xs": xs[i], "masks": [{"ref": parts[i][0]}, {"ref": parts[i][1]}], "sign": -1,
                                  "party": i, "modulus": self.ring.modulus, "public": None}
                                 for i in range(self.n)], piece, [p[:2] for p in parts])
        n = self.n
        kws = [{"pieces": [{"ref": piece[i][j]} for i in range(n)], "parts": [{"ref": p} for p in parts[j]],
                "party": j, "modulus": self.ring.modulus, "kind": kind} for j in range(n)]
        drop = [[piece[i][j] for i in range(n)] + parts[j] for j in range(n)]
        return self._each("beaver_finish", kws, shape, drop=drop, waits=self._received(piece, parts))

    def _raw_divide(self, divisor: int) -> SharedTensor:
        d = check_divisor(self.ring, divisor)
        parts = self._deal("div", [self.shape], 3, divisor=d)
        piece = self._piece_ids()
        self._push("div_push", [{"args": [x, {"ref": parts[i][0]}], "divisor": d, "party": i,
                                 "modulus": self.ring.modulus} for i, x in enumerate(self._refs())], piece,
                   [p[:1] for p in parts])
        n = self.n
        kws = [{"pieces": [{"ref": piece[i][j]} for i in range(n)], "parts": [{"ref": p} for p in parts[j]],
                "party": j, "modulus": self.ring.modulus, "divisor": d} for j in range(n)]
        drop = [[piece[i][j] for i in range(n)] + parts[j] for j in range(n)]
        return self._each("div_finish", kws, self.shape, drop=drop, waits=self._received(piece, parts))

    def _raw_msb(self) -> SharedTensor:
        """Integer 0/1 sharing of the sign bits: every worker runs the party-local program of
        :func:`refimpl.mpc.comparison.msb_program` on its own share, the AND and B2A openings going between them."""
        ledger, me, n = self._me.ledger, self._me, self.n
        state = [ledger.new_id() for _ in range(n)]
        with ledger.round():
            replies = [r.result() for r in _commands(me, self.workers, [
                {"op": "exec", "fn": "prog_start", "args": [x], "kw": {
                    "program": "msb", "party": i, "n": n, "modulus": self.ring.modulus, "state": state[i]}}
                for i, x in enumerate(self._refs())])]
        out = self._new(state, self.shape, None)  # owns the programs' state (freed with it)
        while replies[0][0] != "done":
            kind, size = replies[0][0], int(replies[0][1])
            parts = self._deal("and" if kind == "and" else "dabit", [(size,)], 3 if kind == "and" else 2)
            piece = self._piece_ids()
            self._push("prog_push", [{"args": [[{"ref": p} for p in parts[i]]], "state": state[i]}
                                     for i in range(n)], piece, parts)
            with ledger.round():
                replies = [r.result() for r in _commands(me, self.workers, [
                    {"op": "exec", "fn": "prog_step", "args": [[{"ref": piece[i][j]} for i in range(n)]],
                     "kw": {"state": state[j], "party": j, "modulus": self.ring.modulus},
                     "drop": [piece[i][j] for i in range(n)] + parts[j],
                     "await": [piece[i][j] for i in range(n) if i != j]} for j in range(n)])]
        return out

    def refresh(self) -> SharedTensor:
        """The same value under fresh shares: the crypto provider deals a sharing of zero that each worker adds."""
        parts = self._deal("zero", [self.shape], 1)
        kws = [{"args": [x, {"ref": parts[i][0]}], "fn": "add", "modulus": self.ring.modulus}
               for i, x in enumerate(self._refs())]
        return self._each("ring_binary", kws, self.shape, drop=parts, waits=parts)

    def get(self) -> np.ndarray:
        """Fetch every share to the owner and reconstruct: signed integers, or floats with an encoding.

        The pointers go stale and the workers drop their shares.
        """
        for p in self.pointers:
            p._check()
        ledger = self._me.ledger
        with ledger.round():
            replies = _commands(self._me, self.workers, [{"op": "get", "id": p.id} for p in self.pointers])
            try:
                parts = []
                for p, r in zip(self.pointers, replies):
                    parts.append(r.result())
                    p._detach()
            finally:  # what was sent before without waiting: its first failure explains this one's
                _settle(ledger)
            _settle(ledger)
        total = self.ring.sum(np.stack([np.asarray(p, dtype=self.ring.dtype) for p in parts]), axis=0)
        return self.encoding.decode(total) if self.encoding is not None else self.ring.lift(total)


def share_among(value: ArrayLike, workers: Sequence[VirtualWorker], *, crypto_provider: VirtualWorker | None = None,
                ring: Ring = Z2_64, encoding: FixedPoint | None = None,
                sender: VirtualWorker | None = None) -> SharedTensor:
    """Secret-share a local value among ``workers``: the sender (default: the ledger's ``me``) sends each a share.

    Args:
        value: integers, or reals with an ``encoding``.
        workers: the share holders (at least 2, distinct).
        crypto_provider: the worker that deals Beaver triples for ``*`` and ``@`` of shared values.
        ring: the ring of the shares (default Z_2^64); ``encoding.ring`` wins when an encoding is given.
        encoding: a :class:`~refimpl.encoding.FixedPoint` for real values.

    Raises:
        PartyCountError: fewer than 2 workers.
        ValueError: repeated workers, or the provider among them.
    """
    workers = _check_workers(workers, crypto_provider)
    ring = encoding.ring if encoding is not None else ring
    sender = workers[0].ledger.me if sender is None else sender
    arr = np.asarray(value)
    ids = [sender.ledger.new_id() for _ in workers]
    frac = encoding.frac_bits if encoding is not None else None
    base = encoding.base if encoding is not None else 2
    with _pipelined(sender.ledger):  # networked: the shares' acknowledgements are settled later
        share_out(sender, arr, names=[w.name for w in workers], ids=ids, modulus=ring.modulus, frac_bits=frac,
                  base=base)
    me = workers[0].ledger.me
    return SharedTensor([me.pointer(w, i) for w, i in zip(workers, ids)], ring, arr.shape, crypto_provider,
                        encoding)


def share_pointer(ptr: Pointer, workers: Sequence[VirtualWorker], *, crypto_provider: VirtualWorker | None = None,
                  ring: Ring = Z2_64, encoding: FixedPoint | None = None) -> SharedTensor:
    """``ptr.share(*workers, crypto_provider=...)``: the pointed-to value's worker shares it among ``workers``.

    The original object stays where it is (``ptr`` remains valid). Returns a :class:`SharedTensor` owned by the
    pointer's owner.
    """
    workers = _check_workers(workers, crypto_provider)
    ring = encoding.ring if encoding is not None else ring
    ptr._check()
    ledger = ptr.owner.ledger
    ids = [ledger.new_id() for _ in workers]
    kw = {"names": [w.name for w in workers], "ids": ids, "modulus": ring.modulus,
          "frac_bits": encoding.frac_bits if encoding is not None else None,
          "base": encoding.base if encoding is not None else 2}
    shape = ptr.owner.deliver(ptr.location, "command",
                              {"op": "exec", "fn": "share_out", "args": [{"ref": ptr.id}], "kw": kw})
    return SharedTensor([ptr.owner.pointer(w, i) for w, i in zip(workers, ids)], ring, tuple(shape),
                        crypto_provider, encoding)


class LedgerChannel(Channel):
    """A :class:`~refimpl.mpc.Channel` whose traffic is serialised and recorded in a workers' ledger.

    Party ``i`` of a stacked sharing is ``workers[i]``. Each opening encodes party ``i``'s pieces once with
    :mod:`refimpl.net.wire` and records one ``open`` message to each other party (one round); dealer items are
    recorded as ``dealer`` messages from the crypto provider. The opened values are reconstructed from the
    decoded bytes, so a corrupted encoding would surface as an error, not as a silently wrong result.

    Args:
        workers: the computing parties, in share order.
        crypto_provider: the worker credited with dealer traffic.

    Attributes:
        network: the workers' ledger, holding the serialised messages (their sizes on the wire).
        ledger: the channel's own ledger, holding the same messages at their payload sizes (what
            :class:`~refimpl.mpc.Channel` counts: ``rounds``, ``bytes``, ...).
    """

    def __init__(self, workers: Sequence[VirtualWorker], crypto_provider: VirtualWorker) -> None:
        super().__init__()
        self.workers = _check_workers(workers, crypto_provider)
        self.crypto_provider = crypto_provider
        self.network: Ledger = self.workers[0].ledger  # the workers' ledger (wire bytes); self.ledger counts

    def open(self, *sharings: Sharing) -> list[np.ndarray]:
        super().open(*sharings)
        names = [w.name for w in self.workers]
        received = []
        with self.network.round():
            for i, name in enumerate(names):
                raw = wire.encode([s.data[i] for s in sharings])
                for j, other in enumerate(names):
                    if j != i:
                        self.network.record(name, other, "open", len(raw))
                received.append(wire.decode(raw))
        out = []
        for k, s in enumerate(sharings):
            stacked = np.stack([r[k] for r in received])
            out.append(BinaryShares(stacked).reconstruct() if isinstance(s, BinaryShares)
                       else Shares(s.ring, stacked).reconstruct())
        return out

    def take(self, triple: Triple) -> tuple[Sharing, ...]:
        parts = super().take(triple)
        with self.network.round():
            for i, w in enumerate(self.workers):
                raw = wire.encode([p.data[i] for p in parts])
                self.network.record(self.crypto_provider.name, w.name, "dealer", len(raw))
        return parts

    def transfer(self, sharing: Shares | CompressedShares, sender: VirtualWorker, receivers: Sequence[VirtualWorker],
                 kind: str) -> None:
        """Record sending share ``i`` of ``sharing`` from ``sender`` to ``receivers[i]`` (one round).

        A :class:`~refimpl.sharing.CompressedShares` travels as party 0's array and one 16- or 32-byte key for
        each other party (about one plaintext's size however many receivers).
        """
        with self.network.round():
            for i, w in enumerate(receivers):
                if isinstance(sharing, CompressedShares):
                    raw = wire.encode(sharing.first if i == 0 else sharing.keys[i - 1])
                else:
                    raw = wire.encode(sharing.data[i])
                if w is not sender:
                    self.network.record(sender.name, w.name, kind, len(raw))
