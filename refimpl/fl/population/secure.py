"""Secure aggregation under a population's dropouts: each dropout stops at the protocol stage where it happened.

`PopulationSecureAggregator.aggregate` takes one round's trained updates and its
:class:`~refimpl.fl.population.orchestration.RoundPlan`, and runs one round of the chosen protocol over the plan's whole
**selected** cohort (clients ``1..m`` in the order of ``plan.selected``):

* ``"secagg"`` (Bonawitz et al. 2017, :func:`refimpl.secagg.run_secagg_round`): every selected client takes part
  in AdvertiseKeys; a client that left during the first / second setup round trip stops at AdvertiseKeys /
  ShareKeys; one that left later, missed the deadline or was surplus stops at MaskedInputCollection (its masks are
  recovered from the others' shares); one that was counted and then left stops at Unmasking (its input stays in
  the sum). Default threshold ``t = floor(h / 2) + 1`` for neighbourhoods of h clients (m, or the SecAgg+
  ``degree`` + 1).
* ``"additive"`` (S servers, :func:`refimpl.secagg.run_additive_round`): a client's shares go to the servers in
  turn, so one that left mid-upload reached ``floor(S * fraction uploaded)`` servers and the servers' agreement
  leaves it out; a client that uploaded nothing takes no part.

Every completed round is checked: the protocol's set of summed clients must be the plan's counted clients, and the
ring total must equal the sum of their encodings mod M (computed here in the clear, as the oracle). A round that
cannot complete (fewer than the threshold left, fewer than ``min_clients`` agreed) returns None and its reason is
in `SecureRoundReport.reason`. Updates are weighted by ``n_k / max(n)`` and encoded in fixed point with
``frac_bits`` fractional bits; a coordinate beyond ``value_range`` is refused (`OutOfRangeError`), never clipped.

Keys: every client key is ``derive_key(key, "population-client", round, position)``; ``key`` comes from the OS
unless given (the CLI derives it from ``--seed`` only with the insecure-keys flag of `refimpl.fl.secure`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from refimpl.errors import ConfigurationError, OutOfRangeError, ThresholdError
from refimpl.fl.population.orchestration import RoundPlan
from refimpl.net.accounting import Ledger
from refimpl.prg import derive_key, fresh_key
from refimpl.ring import Z2_64, Ring
from refimpl.secagg import AdditiveConfig, Codec, SecAggConfig, run_additive_round, run_secagg_round

__all__ = ["PopulationSecureAggregator", "SecureRoundReport"]


class SecureRoundReport(NamedTuple):
    """One secure round: cohort size, counted clients, dropouts per protocol stage, exactness, bytes, reason."""

    round: int
    protocol: str
    cohort: int
    counted: int
    stages: dict[str, int]
    completed: bool
    exact: bool | None
    upload_bytes_per_client: float
    reason: str


@dataclasses.dataclass
class PopulationSecureAggregator:
    """Secure aggregation for population-driven rounds (see the module docstring).

    Attributes:
        protocol: ``"additive"`` or ``"secagg"``.
        servers: S for the additive protocol.
        min_clients: The additive protocol releases no sum of fewer clients.
        threshold: t for SecAgg (None: ``floor(h / 2) + 1`` for neighbourhoods of h: the cohort m, or degree + 1).
        degree: SecAgg+ graph degree (None: complete graph).
        value_range: Largest |coordinate| of a weighted update.
        frac_bits: Fixed-point fractional bits.
        ring: The ring of the shares / masked inputs.
        key: Master key of the clients' keys (fresh from the OS by default).
        history: One `SecureRoundReport` per round.
    """

    protocol: str = "additive"
    servers: int = 2
    min_clients: int = 2
    threshold: int | None = None
    degree: int | None = None
    value_range: float = 64.0
    frac_bits: int = 32
    ring: Ring = Z2_64
    key: bytes = dataclasses.field(default_factory=lambda: fresh_key(16), repr=False)
    history: list[SecureRoundReport] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.protocol not in ("additive", "secagg"):
            raise ConfigurationError(f"protocol must be 'additive' or 'secagg', got {self.protocol!r}")
        if self.protocol == "additive" and self.servers < 2:
            raise ConfigurationError(f"the additive protocol needs servers >= 2, got {self.servers}")

    def aggregate(self, updates: dict[str, Any], weights: np.ndarray, plan: RoundPlan, *,
                  trained: np.ndarray) -> tuple[dict[str, np.ndarray] | None, np.ndarray]:
        """One secure round over ``plan.selected``.

        Args:
            updates: Stacked updates of the trained clients (leading axis aligned with ``trained``).
            weights: Their sample counts.
            plan: The round's plan.
            trained: Positions in ``plan.selected`` of the rows of ``updates``.

        Returns:
            (mean update or None when the round could not complete, ids of the clients in the sum).

        Raises:
            OutOfRangeError: A weighted coordinate beyond ``value_range`` (e.g. a diverged update).
            AssertionError: Never, unless the protocol returned a wrong sum (the oracle check).
        """
        names = sorted(updates)
        shapes = [np.shape(updates[k])[1:] for k in names]
        rows = np.concatenate([np.asarray(updates[k], np.float64).reshape(len(trained), -1) for k in names], axis=1)
        w = np.asarray(weights, np.float64)
        scale = w / w.max() if len(w) and w.max() > 0 else w
        contrib = rows * scale[:, None]
        if not np.all(np.abs(contrib) <= self.value_range):
            bad = contrib[~(np.abs(contrib) <= self.value_range)][0]
            raise OutOfRangeError(f"round {plan.round}: a weighted update coordinate is {bad!r}, outside "
                                  f"[-{self.value_range}, {self.value_range}] (not finite or diverged: lower the "
                                  f"client learning rate or raise value_range)")
        m, d = len(plan.selected), contrib.shape[1]
        codec = Codec(length=d, max_clients=max(m, 2), clip=self.value_range, frac_bits=self.frac_bits,
                      ring=self.ring)
        row_of = {int(p): i for i, p in enumerate(trained)}
        keys = {p + 1: derive_key(self.key, "population-client", plan.round, p) for p in range(m)}
        counted_pos = {int(p) for p in np.flatnonzero(plan.counted_mask)}
        ledger = Ledger(keep=None)
        stages: dict[str, int] = {}
        try:
            if self.protocol == "secagg":
                drops = plan.secagg_stages()
                for s in drops.values():
                    stages[s] = stages.get(s, 0) + 1
                hood = m if self.degree is None or self.degree >= m - 1 else self.degree + 1
                t = self.threshold if self.threshold is not None else hood // 2 + 1
                cfg = SecAggConfig(num_clients=m, threshold=t, codec=codec, degree=self.degree)
                zero = np.zeros(d)
                contributions = {p + 1: contrib[row_of[p]] if p in row_of else zero for p in range(m)}
                res: Any = run_secagg_round(cfg, contributions, round_=plan.round, keys=keys,
                                            dropouts={p + 1: s for p, s in drops.items()}, ledger=ledger)
            else:
                reached = plan.additive_reached(self.servers)
                for r in reached.values():
                    stages[f"reached {r} of {self.servers} servers"] = stages.get(
                        f"reached {r} of {self.servers} servers", 0) + 1
                cfg2 = AdditiveConfig(codec=codec, servers=self.servers, min_clients=self.min_clients)
                contributions = {p + 1: contrib[row_of[p]] for p in row_of if reached.get(p, self.servers) > 0}
                lost = {(p + 1, s) for p, r in reached.items() for s in range(r, self.servers)}
                res = run_additive_round(cfg2, contributions, round_=plan.round,
                                         keys={c: keys[c] for c in contributions}, lost=lost, ledger=ledger)
        except (ThresholdError, ConfigurationError) as err:
            self.history.append(SecureRoundReport(plan.round, self.protocol, m, 0, stages, False, None, 0.0,
                                                  f"{type(err).__name__}: {err}"))
            return None, np.zeros(0, np.int64)
        summed = sorted(c - 1 for c in res.clients)
        reason = "" if set(summed) == counted_pos else (
            f"summed clients differ from the counted ones: extra {sorted(set(summed) - counted_pos)}, "
            f"missing {sorted(counted_pos - set(summed))}")
        expected = np.zeros(d, self.ring.dtype)
        for p in summed:
            expected = self.ring.add(expected, codec.encode(contrib[row_of[p]]))
        exact = bool(np.array_equal(np.asarray(res.ring_total, self.ring.dtype), expected))
        if not exact:
            raise AssertionError(f"round {plan.round}: {self.protocol} returned a ring total that is not the sum of "
                                 f"the {len(summed)} summed clients' encodings")
        senders = [c for c in res.clients]
        upload = float(np.mean([ledger.sent(f"client {c}") for c in senders])) if senders else 0.0
        self.history.append(SecureRoundReport(plan.round, self.protocol, m, len(summed), stages, True, exact,
                                              upload, reason))
        mean = np.asarray(res.total, np.float64) / float(scale[[row_of[p] for p in summed]].sum())
        out, pos = {}, 0
        for k, s in zip(names, shapes):
            size = int(np.prod(s, dtype=np.int64))
            out[k] = mean[pos:pos + size].reshape(s).astype(np.float32)
            pos += size
        return out, plan.selected[summed]
