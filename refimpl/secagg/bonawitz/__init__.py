"""Bonawitz et al. single-server secure aggregation (SecAgg) and its sparse-graph variant SecAgg+ (Bell et al.).

* :mod:`~refimpl.secagg.bonawitz.config` -- :class:`SecAggConfig` and the four stages;
* :mod:`~refimpl.secagg.bonawitz.graph` -- the SecAgg+ Harary graph;
* :mod:`~refimpl.secagg.bonawitz.messages` -- the protocol messages;
* :mod:`~refimpl.secagg.bonawitz.masks` -- mask expansion and key derivations;
* :mod:`~refimpl.secagg.bonawitz.client` / :mod:`~refimpl.secagg.bonawitz.server` -- the two roles.
"""

from refimpl.secagg.bonawitz.client import SecAggClient
from refimpl.secagg.bonawitz.config import STAGES, SecAggConfig
from refimpl.secagg.bonawitz.graph import harary_neighbours
from refimpl.secagg.bonawitz.messages import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskingResponse
from refimpl.secagg.bonawitz.server import SecAggResult, SecAggServer, run_secagg_round

__all__ = [
    "STAGES",
    "AdvertiseKeys",
    "MaskedInput",
    "SecAggClient",
    "SecAggConfig",
    "SecAggResult",
    "SecAggServer",
    "ShareKeys",
    "UnmaskingResponse",
    "harary_neighbours",
    "run_secagg_round",
]
