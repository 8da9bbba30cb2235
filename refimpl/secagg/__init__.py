"""Secure aggregation protocols: :mod:`refimpl.secagg.additive` (multi-server) and :mod:`refimpl.secagg.bonawitz`
(single-server SecAgg / SecAgg+), with the shared fixed-point :mod:`refimpl.secagg.codec`.

* **Multi-server additive** (:class:`AdditiveConfig`, :func:`run_additive_round`): each client shares its encoded
  update among S >= 2 non-colluding aggregators with seed-compressed shares (upload ~1x the encoded update); the
  aggregators agree on the clients whose shares reached all of them and open only the total.
* **Single-server SecAgg** (:class:`SecAggConfig`, :func:`run_secagg_round`): Bonawitz et al. (CCS 2017) pairwise
  and self masks from X25519-agreed keys, t-of-n Shamir recovery of dropped clients' masks; optionally the SecAgg+
  sparse graph of Bell et al. (CCS 2020).

Both check sizing when configured (``K * 2^b <= M``, positive finite clip), carry the round number in every message,
derive every stream from round-labelled keys, reject malformed or replayed messages with specific errors without
touching the aggregate, and count bytes and messages per party and round in a :class:`Traffic` ledger.

Example:
    >>> from refimpl.secagg import AdditiveConfig, run_additive_round
    >>> cfg = AdditiveConfig(length=3, servers=2, max_clients=10, clip=2.0)
    >>> run_additive_round(cfg, {0: [1.0, 0.5, -2.0], 1: [0.25, 0.25, 0.25]}).total.tolist()
    [1.25, 0.75, -1.75]
"""

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
from refimpl.secagg.codec import HEADER_BYTES, Codec, Traffic, check_sum_fits

__all__ = [
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
    "Traffic",
    "UnmaskingResponse",
    "agree",
    "check_sum_fits",
    "combine_partial_sums",
    "harary_neighbours",
    "run_additive_round",
    "run_secagg_round",
]
