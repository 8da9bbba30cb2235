"""Secure aggregation protocols: :mod:`refimpl.secagg.additive` (multi-server) and :mod:`refimpl.secagg.bonawitz`
(single-server SecAgg / SecAgg+), with the shared fixed-point :mod:`refimpl.secagg.codec`.

* **Multi-server additive** (:class:`AdditiveConfig`, :func:`run_additive_round`): each client shares its encoded
  update among S >= 2 non-colluding aggregators with seed-compressed shares (upload ~1x the encoded update); the
  aggregators agree on the clients whose shares reached all of them and open only the total.
* **Single-server SecAgg** (:class:`SecAggConfig`, :func:`run_secagg_round`): Bonawitz et al. (CCS 2017) pairwise
  and self masks from X25519-agreed keys, t-of-n Shamir recovery of dropped clients' masks; optionally the SecAgg+
  sparse graph of Bell et al. (CCS 2020).

Both take their encoding as a :class:`Codec` (frozen, keyword-only configurations), check sizing when configured
(``K * 2^b <= M``, positive finite clip), carry the round number in every message, derive every stream from keys
labelled by round and client (fresh OS keys unless the caller passes ``key=``), reject malformed, replayed or
key-reusing messages with specific errors naming the client without touching the aggregate, and count bytes and
messages per party and round in the package's one :class:`~refimpl.net.accounting.Ledger`.

Both use one round lifecycle::

    party.begin_round(r[, clients])      # every client and server, round numbers strictly increasing
    client.<stage method>(...)           # additive: contribute; SecAgg: advertise_keys, share_keys, masked_input,
                                         #   unmask
    server.receive(msg)                  # validated; a bad message names its client and changes nothing
    server.finish_stage()                # closes the stage: what the server sends next (SecAgg: the total at the
                                         #   end; additive: the ReceivedReport, then partial_sum(agreed))
    server.stage_name, Server.STAGES     # where the round is

Example:
    >>> from refimpl.secagg import AdditiveConfig, Codec, run_additive_round
    >>> cfg = AdditiveConfig(codec=Codec(length=3, max_clients=10, clip=2.0), servers=2)
    >>> run_additive_round(cfg, {0: [1.0, 0.5, -2.0], 1: [0.25, 0.25, 0.25]}).total.tolist()
    [1.25, 0.75, -1.75]
"""

from refimpl.secagg.additive import (
    STAGES as ADDITIVE_STAGES,
)
from refimpl.secagg.additive import (
    AdditiveClient,
    AdditiveConfig,
    AdditiveResult,
    AdditiveServer,
    PartialSum,
    ShareMessage,
    agree,
    combine_partial_sums,
    run_additive_round,
)
from refimpl.secagg.bonawitz import (
    STAGES,
    AdvertiseKeys,
    MaskedInput,
    SecAggClient,
    SecAggConfig,
    SecAggResult,
    SecAggServer,
    ShareKeys,
    UnmaskingResponse,
    harary_neighbours,
    run_secagg_round,
)
from refimpl.secagg.codec import HEADER_BYTES, Codec, check_distinct_keys, check_sum_fits

__all__ = [
    "ADDITIVE_STAGES",
    "HEADER_BYTES",
    "STAGES",
    "AdditiveClient",
    "AdditiveConfig",
    "AdditiveResult",
    "AdditiveServer",
    "AdvertiseKeys",
    "Codec",
    "MaskedInput",
    "PartialSum",
    "SecAggClient",
    "SecAggConfig",
    "SecAggResult",
    "SecAggServer",
    "ShareKeys",
    "ShareMessage",
    "UnmaskingResponse",
    "agree",
    "check_distinct_keys",
    "check_sum_fits",
    "combine_partial_sums",
    "harary_neighbours",
    "run_additive_round",
    "run_secagg_round",
]
