"""One whole additive secure-aggregation round in process: the clients, the S aggregators and the combination."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from refimpl.errors import (
    ProtocolError,
)
from refimpl.net.accounting import Ledger
from refimpl.secagg.additive.client import AdditiveClient
from refimpl.secagg.additive.config import AdditiveConfig, ShareMessage
from refimpl.secagg.additive.server import AdditiveServer, agree, combine_partial_sums
from refimpl.secagg.codec import HEADER_BYTES, check_distinct_keys
from refimpl.secagg.fused import PARALLEL_BYTES, executor

__all__ = ["AdditiveResult", "run_additive_round"]


class AdditiveResult(NamedTuple):
    """A completed round: the decoded total over ``clients``, the ring total, the traffic ledger, and the uploads
    the aggregators rejected (``{client: reason}``: that client was left out of the round)."""

    total: np.ndarray
    ring_total: np.ndarray
    clients: frozenset[int]
    ledger: Ledger
    rejected: dict[int, str]


def run_additive_round(config: AdditiveConfig, contributions: Mapping[int, ArrayLike], *, round_: int = 0,
                       keys: Mapping[int, bytes] | None = None, encoded: bool = False,
                       lost: Iterable[tuple[int, int]] = (), servers: Sequence[AdditiveServer] | None = None,
                       ledger: Ledger | None = None, parallel: bool = True) -> AdditiveResult:
    """Run one round in process: upload, report, agree, partial sums, combine, decode; count every message.

    An upload an aggregator rejects (a malformed or replayed share) leaves that client out of the agreed set; the
    reason is in :attr:`AdditiveResult.rejected`.

    Every client sends its stream keys first (:meth:`AdditiveClient.share_keys`; the aggregators expand them as they
    arrive), then each client's update is read from ``contributions`` and its array sent: a mapping that produces
    its values lazily (when ``contributions[cid]`` is read) lets that expansion overlap the updates' computation.

    Args:
        config: the public parameters.
        contributions: ``{client_id: values}`` (reals / integers, or pre-encoded integers if ``encoded``).
        round_: the round number.
        keys: optional per-client master keys (reproducible; distinct per client); fresh OS keys otherwise.
        encoded: contributions are already encoded integers (see :meth:`Codec.check_encoded`).
        lost: ``(client, server)`` pairs whose upload is lost (the client drops before reaching that server).
        servers: persistent aggregators (they then see round numbers increase); new ones by default.
        ledger: a :class:`~refimpl.net.accounting.Ledger` to extend (``keep=None`` for per-round figures); a new
            one by default. Each message counts its payload plus the :data:`HEADER_BYTES` header.
        parallel: on several cores, compute the clients of a large round (:data:`~refimpl.secagg.fused.PARALLEL_BYTES`
            of shares or more) side by side (default); False: one after the other in the calling thread. The
            result is the same either way.

    Returns:
        :class:`AdditiveResult`; its total is exactly the sum over the agreed clients.

    Raises:
        KeyReuseError: two clients given the same key. ThresholdError: fewer than ``min_clients`` agreed.
    """
    ledger = Ledger(keep=None) if ledger is None else ledger
    check_distinct_keys(keys, contributions)
    servers = [AdditiveServer(config, s) for s in range(config.servers)] if servers is None else list(servers)
    lost_set = {(int(c), int(s)) for c, s in lost}
    rejected: dict[int, str] = {}
    for srv in servers:
        srv.begin_round(round_, contributions)

    def deliver(cid: int, msgs: Iterable[ShareMessage]) -> None:
        for m in msgs:
            if (cid, m.server) in lost_set or cid in rejected:
                continue
            ledger.record(f"client {cid}", f"server {m.server}", "share", m.nbytes + HEADER_BYTES, round=round_)
            try:
                # each payload array is the client's fresh share, sent once: the aggregator keeps it
                servers[m.server].receive(m, take=True)
            except ProtocolError as err:  # replay / key reuse: the client is left out everywhere
                rejected[cid] = str(err)

    with ledger.round():
        clients: dict[int, AdditiveClient] = {}
        for cid in contributions:  # the stream keys first: they do not depend on the updates
            client = clients[cid] = AdditiveClient(config, cid, key=None if keys is None else keys[cid])
            client.begin_round(round_)
            deliver(cid, client.share_keys())
        for srv in servers:
            srv.fold_received()  # the keys' keystreams, before any update is read
        # then each update (contributions may produce it only now); on several cores the clients compute side by
        # side -- each its own share into its own array -- and the uploads are delivered in order, in this thread
        large = parallel and config.encoded_nbytes * len(clients) >= PARALLEL_BYTES
        pool, workers = executor() if large else (None, 0)
        order, step, ahead = list(clients), workers + 1, 0
        pending: dict[int, Future[list[ShareMessage]]] = {}
        try:
            for pos, cid in enumerate(order):
                while pool is not None and ahead < min(len(order), pos + step):  # keep the workers busy
                    if ahead % step:  # every step-th client is computed here, the others by the workers
                        nxt = order[ahead]
                        pending[nxt] = pool.submit(_contribute, clients[nxt], contributions[nxt], encoded)
                    ahead += 1
                msgs = pending.pop(cid).result() if cid in pending else \
                    _contribute(clients[cid], contributions[cid], encoded)
                deliver(cid, msgs)
        finally:
            wait(list(pending.values()))  # never return (or raise) while a worker still writes a share
    reports = [srv.finish_stage() for srv in servers]
    with ledger.round():
        for srv, rep in zip(servers, reports):  # every aggregator sends its report to the others
            for other in servers:
                if other is not srv:
                    ledger.record(f"server {srv.id}", f"server {other.id}", "report", 4 * len(rep) + HEADER_BYTES,
                                  round=round_)
    agreed = agree(reports) - set(rejected)
    partials = [srv.partial_sum(agreed) for srv in servers]
    with ledger.round():
        for p in partials:
            ledger.record(f"server {p.server}", "output", "partial_sum",
                          p.total.size * config.ring.element_bytes + HEADER_BYTES, round=round_)
    ring_total = combine_partial_sums(config, partials)
    return AdditiveResult(config.codec.decode_sum(ring_total), ring_total, agreed, ledger, rejected)


def _contribute(client: AdditiveClient, values: Any, encoded: bool) -> list[ShareMessage]:
    return client.contribute(encoded=values) if encoded else client.contribute(values)
