"""Multi-server additive secure aggregation: clients share their updates among S >= 2 non-colluding aggregators.

Protocol of one round ``r`` (the PySyft tutorial's model, made dropout-tolerant and seed-compressed):

1. **ShareUpload** -- client ``k`` encodes its (weighted) update ``x_k`` as ring elements (fixed point, or
   quantized integers), and shares it with :func:`refimpl.sharing.share_compressed` under the round key
   ``derive_key(client_key, "secagg/additive", r)``: ``S - 1`` aggregators receive a 16-byte stream key, one receives
   the array ``x_k - sum(masks)`` (which aggregator gets the array rotates with ``k``). Upload: one encoded update
   plus ``16 (S - 1)`` bytes. The keys do not depend on ``x_k``: a client may send them first
   (:meth:`AdditiveClient.share_keys`), and their aggregators expand them while the update is still being computed.
2. **ReceivedReport** -- each aggregator reports the set of clients whose share reached it; the agreed set ``A`` is
   the intersection (a client whose upload reached only some aggregators is left out everywhere).
3. **PartialSum** -- aggregator ``s`` sends ``sum_{k in A} share_{k,s}``; the sum of the ``S`` partial sums is
   ``sum_{k in A} x_k mod M``, decoded to reals. No single aggregator's view depends on any ``x_k``: every share it
   holds is uniform on its own (Z_M one-time pad).

Every message carries the round number; the share streams are domain-separated by round and client through the KDF
labels. An aggregator rejects, with a specific error and no change to its state, a message for another round or
aggregator, from a client outside the round, a replay, a wrong ring, shape, key length or kind of payload.

Every round goes through the same lifecycle as a SecAgg round: ``begin_round`` on each party, the stage methods
(client: :meth:`AdditiveClient.contribute`; aggregator: :meth:`AdditiveServer.receive`, then
:meth:`AdditiveServer.finish_stage` for the ReceivedReport and :meth:`AdditiveServer.partial_sum`).

Example:
    >>> from refimpl.secagg import Codec
    >>> cfg = AdditiveConfig(codec=Codec(length=2, max_clients=4, clip=1.0), servers=3)
    >>> res = run_additive_round(cfg, {1: [0.5, -0.25], 2: [0.25, 1.0], 3: [-1.0, 0.0]}, round_=0,
    ...                          lost={(3, 2)})           # client 3's share never reaches aggregator 2
    >>> sorted(res.clients), res.total.tolist()
    ([1, 2], [0.75, 0.75])

References:
    K. Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017, sec. 3.
    H. Corrigan-Gibbs, D. Boneh, "Prio: Private, Robust, and Scalable Computation of Aggregate Statistics",
    NSDI 2017 (the multi-server additive model).
"""


from refimpl.secagg.additive.client import AdditiveClient
from refimpl.secagg.additive.config import STAGES, AdditiveConfig, PartialSum, ShareMessage
from refimpl.secagg.additive.server import AdditiveServer, agree, combine_partial_sums
from refimpl.secagg.additive.simulation import AdditiveResult, run_additive_round

__all__ = [
    "STAGES",
    "AdditiveConfig",
    "ShareMessage",
    "PartialSum",
    "AdditiveClient",
    "AdditiveServer",
    "AdditiveResult",
    "agree",
    "combine_partial_sums",
    "run_additive_round",
]
