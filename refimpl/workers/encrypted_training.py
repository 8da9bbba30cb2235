"""Encrypted training among named workers: who holds what, and every message in the workers' ledger.

The parties of the tutorial's "protecting the model" part:

* the **model owner** (``me`` by default) shares the MLP's initial weights among the compute parties and, at the
  end, is the only one who may reconstruct them;
* the **data owners** (``jake``, ``john``) each share their batches of images and one-hot labels among the
  compute parties;
* the **compute parties** (``secure_worker``, ``alice``; any ``S >= 2``) run
  :class:`~refimpl.mpc.training.EncryptedTrainer` on shares;
* the **crypto provider** (``crypto_provider``) deals triples, truncation pairs, AND triples and daBits.

:class:`WorkerTrainer` records each of these transfers, every opening (party to party) and every dealer item
(provider to party) in the workers' :class:`~refimpl.net.accounting.Ledger` through a
:class:`~refimpl.workers.shared_tensor.LedgerChannel`, using only the workers' names and ledger (the
:class:`~refimpl.workers.interface.Worker` interface). The arithmetic itself runs on stacked shares in this process
(one vectorised computation for all parties, the way :class:`~refimpl.mpc.inference.EncryptedMLP` runs); with
``record_views=True`` each party's *view* (every array it received) is kept, so tests can check that no party
ever sees a plaintext weight, image or label.

Example:
    >>> import numpy as np
    >>> from refimpl import nn
    >>> from refimpl.workers import Ledger, VirtualWorker
    >>> ledger = Ledger()
    >>> names = ("jake", "john", "secure_worker", "alice", "crypto_provider")
    >>> jake, john, secure_worker, alice, crypto_provider = (VirtualWorker(n, ledger) for n in names)
    >>> run = WorkerTrainer(nn.init_params((6, 4, 3), seed=0), compute=(secure_worker, alice),
    ...                     crypto_provider=crypto_provider, lr=0.5)
    >>> x, y = (np.arange(30.0).reshape(5, 6) % 7) / 7, np.array([0, 1, 2, 1, 0])
    >>> run.step(jake, x, y)
    >>> sorted(k for k in ledger.bytes_by_kind if ledger.bytes_by_kind[k])
    ['dealer', 'open', 'share']
    >>> ledger.bytes_received["jake"], ledger.bytes_sent["jake"] > 0, ledger.bytes_received["alice"] > 0
    (0, True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl import nn
from refimpl.encoding import FixedPoint
from refimpl.mpc.dealer import Sharing, Triple
from refimpl.mpc.headroom import check_product_headroom
from refimpl.mpc.training import EncryptedTrainer, step_bits_for
from refimpl.mpc.training_algebra import sgd_step
from refimpl.mpc.training_loss import check_loss
from refimpl.net import wire
from refimpl.prg import derive_key
from refimpl.sharing.additive import CompressedShares, Shares
from refimpl.sharing.binary import BinaryShares
from refimpl.workers.interface import Worker
from refimpl.workers.shared_tensor import LedgerChannel, SharedTensor, share_among
from refimpl.workers.worker import VirtualWorker, send

__all__ = ["PointerTrainer", "ViewChannel", "WorkerTrainer"]


class ViewChannel(LedgerChannel):
    """A :class:`LedgerChannel` that can also keep each party's view: ``views[name]`` lists
    ``(kind, array)`` for every array the party received (``open``: another party's piece of an opening, tagged
    ``open-binary`` for XOR sharings; ``dealer``: its part of a dealer item; ``share``: its share of data or
    weights)."""

    def __init__(self, workers: Sequence[Any], crypto_provider: Any, *, record_views: bool = False) -> None:
        super().__init__(workers, crypto_provider)
        self.record_views = record_views
        self.views: dict[str, list[tuple[str, np.ndarray]]] = {w.name: [] for w in self.workers}

    def open(self, *sharings: Sharing) -> list[np.ndarray]:
        if self.record_views:
            for j, w in enumerate(self.workers):
                for s in sharings:
                    kind = "open-binary" if isinstance(s, BinaryShares) else "open"
                    self.views[w.name] += [(kind, np.array(s.data[i])) for i in range(s.n) if i != j]
        return super().open(*sharings)

    def take(self, triple: Triple) -> tuple[Sharing, ...]:
        parts = super().take(triple)
        if self.record_views:
            for i, w in enumerate(self.workers):
                self.views[w.name] += [("dealer", np.array(p.data[i])) for p in parts]
        return parts

    def transfer(self, sharing: Shares | CompressedShares, sender: Any, receivers: Sequence[Any], kind: str) -> None:
        super().transfer(sharing, sender, receivers, kind)
        if self.record_views and isinstance(sharing, Shares):
            for i, w in enumerate(receivers):
                self.views.setdefault(w.name, []).append((kind, np.array(sharing.data[i])))


class WorkerTrainer:
    """Encrypted training with named parties; every transfer, opening and dealer item in their ledger.

    Args:
        params: the model owner's initial weights.
        compute: the compute parties (``S >= 2`` workers, e.g. ``secure_worker`` and ``alice``).
        crypto_provider: the worker that deals correlated randomness (not one of ``compute``).
        model_owner: who shares the weights and may reconstruct them (default: the ledger's ``me``).
        record_views: keep each party's received arrays (for tests; costs memory).
        **kwargs: passed to :class:`~refimpl.mpc.training.EncryptedTrainer` (``encoding``, ``lr``, ``loss``,
            ``key``, ``dealer_key``, ``data_key``).

    Raises:
        TypeError: a party that is not a worker.
        ValueError, PartyCountError: fewer than two compute parties, duplicates, or the provider among them.
    """

    def __init__(self, params: Mapping[str, ArrayLike], *, compute: Sequence[Worker], crypto_provider: Worker,
                 model_owner: Worker | None = None, record_views: bool = False, **kwargs: Any) -> None:
        self.channel = ViewChannel(compute, crypto_provider, record_views=record_views)
        self.compute = self.channel.workers
        self.crypto_provider = crypto_provider
        self.model_owner = model_owner if model_owner is not None else self.compute[0].ledger.me
        self.trainer = EncryptedTrainer(params, n=len(self.compute), channel=self.channel, **kwargs)
        for shares in self.trainer.weights.values():
            self.channel.transfer(shares, self.model_owner, self.compute, "share")

    @property
    def ledger(self) -> Any:
        """The workers' ledger (every message at its size on the wire)."""
        return self.compute[0].ledger

    @property
    def encoding(self) -> FixedPoint:
        return self.trainer.encoding

    def step(self, data_owner: Worker, x: ArrayLike, y: ArrayLike) -> None:
        """``data_owner`` shares a batch (images, labels) among the compute parties; they run one SGD step."""
        self.step_parts([(data_owner, x, y)])

    def step_parts(self, parts: Sequence[tuple[Worker, ArrayLike, ArrayLike]]) -> None:
        """One SGD step on a batch whose rows come from several data owners: ``[(owner, x, y), ...]``.

        Each owner shares its own rows (keys derived from ``data_key``, its name and the step); the compute
        parties concatenate the shares locally.
        """
        if not parts:
            raise ValueError("a step needs at least one data owner's rows")
        tr = self.trainer
        xs_all, ys_all = [], []
        for owner, x, y in parts:
            if not isinstance(owner, Worker):
                raise TypeError(f"a data owner must be a worker, got {type(owner).__name__}")
            xs, ys = tr.share_batch(x, y, key=derive_key(tr.data_key, "owner", owner.name, tr.steps))
            self.channel.transfer(xs, owner, self.compute, "share")
            self.channel.transfer(ys, owner, self.compute, "share")
            xs_all.append(xs.data)
            ys_all.append(ys.data)
        ring = tr.encoding.ring
        tr.step(Shares(ring, np.concatenate(xs_all, axis=1)), Shares(ring, np.concatenate(ys_all, axis=1)))

    def get(self) -> dict[str, np.ndarray]:
        """Every compute party sends its shares to the model owner, who reconstructs the weights (float64)."""
        with self.ledger.round():
            for shares in self.trainer.weights.values():
                for i, w in enumerate(self.compute):
                    self.ledger.record(w.name, self.model_owner.name, "get", len(wire.encode(shares.data[i])))
        return self.trainer.reconstruct()

    def summary(self) -> dict[str, int]:
        """Rounds and bytes so far: openings (``online``) and dealer items (``dealer``), from the channel."""
        s = self.channel.summary()
        return {"rounds": s["rounds"], "online_bytes": s["bytes"], "dealer_bytes": s["dealer_bytes"],
                "ledger_bytes": int(self.ledger.bytes), "ledger_messages": int(self.ledger.messages)}


class PointerTrainer:
    """Encrypted training in the pointer world: every party holds its own shares, every step is messages.

    The weights are :class:`~refimpl.workers.SharedTensor` s (one share in each compute party's object store,
    pointers owned by the model owner, the ledger's ``me``); each data owner shares its batch itself
    (``send(batch, owner).share(...)``: the owner's process makes the shares); then
    :func:`refimpl.mpc.training_algebra.sgd_step` runs on the shares, so every product, division and comparison is
    a protocol between the workers, and the crypto provider deals to them. Only the worker interface is used, so
    the same code drives networked workers (a test runs it across processes). Slower than :class:`WorkerTrainer`
    (every instruction is a message), meant for small models and for checking what each party stores and receives.

    Args:
        params: the model owner's initial weights.
        compute: the compute parties (``S >= 2`` workers).
        crypto_provider: the dealer worker.
        encoding: fixed point (default 16 fractional bits in Z_2^64).
        lr, loss: as for :class:`~refimpl.mpc.training.EncryptedTrainer`.

    Example:
        >>> import numpy as np
        >>> from refimpl.workers import Ledger, VirtualWorker
        >>> ledger = Ledger()
        >>> jake, secure_worker, alice, crypto_provider = (
        ...     VirtualWorker(n, ledger) for n in ("jake", "secure_worker", "alice", "crypto_provider"))
        >>> run = PointerTrainer(nn.init_params((6, 4, 3), seed=0), compute=(secure_worker, alice),
        ...                      crypto_provider=crypto_provider, lr=0.5)
        >>> run.step(jake, (np.arange(30.0).reshape(5, 6) % 7) / 7, np.array([0, 1, 2, 1, 0]))
        >>> len(secure_worker.objects) == len(alice.objects) == 4      # one share of each parameter each
        True
    """

    def __init__(self, params: Mapping[str, ArrayLike], *, compute: Sequence[Any], crypto_provider: Any,
                 encoding: FixedPoint | None = None, lr: float = 0.1, loss: str = "mse") -> None:
        self.encoding = encoding or FixedPoint()
        check_product_headroom(self.encoding)
        self.loss = check_loss(loss, self.encoding)
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr, self.step_bits, self.steps = float(lr), step_bits_for(self.encoding), 0
        self.compute: tuple[Any, ...] = tuple(compute)  # workers (the Worker interface; checked by share_among)
        self.crypto_provider = crypto_provider
        self.classes = nn.layers(params)[-1][0].shape[1]
        self.weights: dict[str, SharedTensor] = {
            k: share_among(np.asarray(v, np.float64), self.compute, crypto_provider=crypto_provider,
                           encoding=self.encoding) for k, v in params.items()}

    def step(self, data_owner: Any, x: ArrayLike, y: ArrayLike) -> None:
        """``data_owner`` (a worker) shares its batch among the compute parties, which run one SGD step on shares."""
        if not isinstance(data_owner, VirtualWorker):  # a networked RemoteWorker is one too
            raise TypeError(f"data_owner must be a worker, got {type(data_owner).__name__}")
        kw: dict[str, Any] = {"crypto_provider": self.crypto_provider, "encoding": self.encoding}
        # the batch is placed at its owner (in a deployment it is already there), which shares it itself
        xs = send(np.asarray(x, np.float64), data_owner).share(*self.compute, **kw)
        ys = send(nn.one_hot(y, self.classes), data_owner).share(*self.compute, **kw)
        self.weights = sgd_step(self.weights, xs, ys, lr=self.lr, loss=self.loss, step_bits=self.step_bits)
        self.steps += 1

    def get(self) -> dict[str, np.ndarray]:
        """The model owner fetches every share and reconstructs the weights (the workers drop theirs)."""
        return {k: v.get() for k, v in self.weights.items()}
