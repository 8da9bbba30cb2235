"""Averaging models held by workers: on a trusted aggregator (the PySyft tutorial's way), or under secret sharing.

* :func:`trusted_average` -- ``alice_model.move(secure_worker)``, ``bob_model.move(secure_worker)``, average there
  (the registered ``model_mean`` instruction), ``.get()``: the aggregator sees every model.
* :func:`secure_average` -- each worker secret-shares its weighted parameters among the model holders
  (``share(..., crypto_provider=...)``, fixed point in Z_2^64); the shares are added where they lie and only the
  sum -- the weighted average -- is opened. No party sees another's model.

Both return a local :class:`~refimpl.fl.tutorial.Model`; every message is counted in the workers' ledger.

Exactness of :func:`secure_average`: each worker encodes ``w_k p_k`` (``w_k = n_k / sum n``, computed in float64)
with ``f`` fractional bits, rounding half to even, so each encoding is off by at most ``2^-(f+1)``; adding shares
is exact in the ring. So every coordinate of the opened average is within ``K * 2^-(f+1)`` of the float64 weighted
mean (K models; with the default ``f = 24`` and two workers, ``6e-8``, the size of one float32 rounding), plus the
final float32 rounding. The encoding refuses values beyond its range rather than wrapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.errors import PartyCountError
from refimpl.fl.tutorial.instructions import call
from refimpl.fl.tutorial.model import Model, ModelPointer

__all__ = ["secure_average", "trusted_average"]


def _weights(models: Sequence[ModelPointer], weights: Sequence[float] | None) -> np.ndarray:
    if not models:
        raise PartyCountError("averaging needs at least one model")
    w = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(models),):
        raise ValueError(f"need one weight per model ({len(models)}), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {w.tolist()}")
    return w


def trusted_average(models: Sequence[ModelPointer], aggregator: Any, weights: Sequence[float] | None = None) -> Model:
    """Move every model to ``aggregator``, average them there (weighted by ``weights``, default equal) and fetch it.

    The models leave their workers (their pointers go stale), as in the tutorial.

    Raises:
        PartyCountError: no models.
        ValueError: bad weights, or models of different architectures.
    """
    w = _weights(models, weights)
    moved = [m.move(aggregator) for m in models]
    mean = call("model_mean", aggregator, [m.pointer for m in moved], owner=moved[0].pointer.owner,
                weights=w.tolist())
    return ModelPointer(mean, models[0].shapes).get()


def secure_average(models: Sequence[ModelPointer], crypto_provider: Any = None, weights: Sequence[float] | None = None,
                   *, encoding: FixedPoint | None = None) -> Model:
    """Average models under additive secret sharing among the workers holding them; only the average is opened.

    Worker k shares ``w_k p_k`` (``w_k`` its normalised weight) among all the model holders, the holders add the
    shares they hold, and the owner opens the sum. ``crypto_provider`` is passed on to the shared tensors (the
    average needs no multiplication, so it deals nothing here). The models stay at their workers.

    Args:
        models: pointers to models at distinct workers (at least 2).
        crypto_provider: the worker that would deal Beaver triples.
        weights: e.g. the workers' sample counts (default: equal).
        encoding: fixed point of the shares (default 24 fractional bits in Z_2^64).

    Raises:
        PartyCountError: fewer than 2 models.
        ValueError: models at the same worker, or bad weights.
    """
    w = _weights(models, weights)
    holders = [m.location for m in models]
    if len(models) < 2:
        raise PartyCountError(f"secure averaging needs models at >= 2 workers, got {len(models)}")
    if len({h.name for h in holders}) != len(holders):
        raise ValueError(f"secure averaging needs each model at its own worker, got {[h.name for h in holders]}")
    w = w / w.sum()
    enc = FixedPoint(frac_bits=24) if encoding is None else encoding
    shared = [m.share(*holders, crypto_provider=crypto_provider, encoding=enc, scale=wk) for m, wk in zip(models, w)]
    total = shared[0]
    for s in shared[1:]:
        total = total + s
    return Model.from_vector(total.get(), models[0].shapes)
