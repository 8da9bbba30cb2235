"""FedAvg rounds driven by a simulated population: the orchestrator picks the clients, the vmapped engine trains.

`PopulationRounds.run_round` plans a round with :class:`~refimpl.fl.population.orchestration.Orchestrator`
(selection among
eligible clients, over-selection, deadline, dropouts by cause), trains the clients whose updates can count with
the same compiled ``round_update`` program as :meth:`refimpl.fl.server.FedAvg.run_round` (one vmapped call), and
aggregates:

* plaintext: `weighted_mean` over the **counted** clients only (the others' work is lost, so it is not computed);
* secure (a :class:`~refimpl.fl.population.secure.PopulationSecureAggregator`): every **selected** client is in
  the protocol's cohort and each dropout stops at the protocol stage where the population made it stop; the
  vmapped engine trains the clients that reached the upload, the others contribute nothing (their rows are
  never sent).

An abandoned round (fewer than ``min_reports`` counted) leaves the model as it is but still takes simulated time.
With ``drift`` the clients' data change from round to round (`refimpl.fl.partition.drift_window`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from refimpl.fl.population.orchestration import Orchestrator, RoundPlan
from refimpl.fl.server import ClientData, FedAvg, ServerState, weighted_mean

__all__ = ["PopulationRoundResult", "PopulationRounds"]


class PopulationRoundResult(NamedTuple):
    """Like `refimpl.fl.server.RoundResult`: the counted clients, their weights and mean local losses."""

    clients: np.ndarray
    weights: np.ndarray
    client_losses: np.ndarray

    @property
    def train_loss(self) -> float | None:
        """Weighted mean local loss of the counted clients (None for an abandoned round)."""
        if not len(self.clients) or self.weights.sum() <= 0:
            return None
        return float(np.dot(self.weights, self.client_losses) / self.weights.sum())


@dataclasses.dataclass
class PopulationRounds:
    """Population-driven rounds for a `FedAvg` engine.

    Attributes:
        orchestrator: Plans the rounds and keeps the clock and totals.
        model_bytes: Bytes a client downloads per round.
        update_bytes: Bytes a client uploads per round.
        secure: None (plaintext) or an aggregator with ``aggregate(updates, weights, plan) -> (mean, counted ids)``.
        drift: None or ``drift(round) -> (index (K, L), sizes (K,))``: the clients' data in that round.
        last: The plan of the last round run.
    """

    orchestrator: Orchestrator
    model_bytes: float
    update_bytes: float
    secure: Any = None
    drift: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None
    last: RoundPlan | None = None
    last_counted: int = 0
    _steps: dict[int, Any] = dataclasses.field(default_factory=dict, repr=False)

    def _step(self, fedavg: FedAvg) -> Any:
        if id(fedavg.optimizer) not in self._steps:
            opt = fedavg.optimizer

            def step(params, opt_state, mean_update):
                pseudo_grad = jax.tree_util.tree_map(jnp.negative, mean_update)
                updates, opt_state = opt.update(pseudo_grad, opt_state, params)
                return optax.apply_updates(params, updates), opt_state

            self._steps[id(fedavg.optimizer)] = jax.jit(step)
        return self._steps[id(fedavg.optimizer)]

    def data_of_round(self, data: ClientData, round_: int) -> ClientData:
        """The clients' data in ``round_`` (changed by ``drift`` if set)."""
        if self.drift is None:
            return data
        index, sizes = self.drift(round_)
        return dataclasses.replace(data, index=index, sizes=sizes)

    def plan(self, data: ClientData, round_: int) -> RoundPlan:
        """Plans round ``round_`` (the orchestrator must be at that round)."""
        if self.orchestrator.round != round_:
            raise ValueError(f"orchestrator is at round {self.orchestrator.round}, asked for round {round_}")
        sizes = self.data_of_round(data, round_).sizes
        return self.orchestrator.next_round(sizes, model_bytes=self.model_bytes, update_bytes=self.update_bytes)

    def replay(self, rounds: int, data: ClientData, history: Sequence[dict[str, Any]] = ()) -> None:
        """Re-plans rounds up to ``rounds`` without training (``--resume``), so the clock and the participation
        totals come back; ``history`` (the metrics lines of those rounds) says which secure rounds could not
        complete (``aborted``), whose clients then do not count, as in the uninterrupted run."""
        failed = {r["round"] - 1 for r in history if r.get("aborted") and not r.get("abandoned")}
        while self.orchestrator.round < rounds:
            self.last = self.plan(data, self.orchestrator.round)
            if self.last.round in failed:
                self.orchestrator.counted_times[self.last.counted] -= 1

    def run_round(self, fedavg: FedAvg, state: ServerState, data: ClientData
                  ) -> tuple[ServerState, PopulationRoundResult]:
        """Plans, trains and aggregates round ``state.round``."""
        if data.mesh is not None:
            raise ValueError("population rounds run on one device (--devices 1)")
        plan = self.last = self.plan(data, state.round)
        view = self.data_of_round(data, state.round)
        nothing = PopulationRoundResult(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        if plan.abandoned:
            self.last_counted = 0
            return ServerState(state.params, state.opt_state, state.round + 1), nothing
        train_mask = plan.counted_mask if self.secure is None else plan.upload_fraction > 0
        ids = plan.selected[train_mask].astype(np.int32)
        deltas, losses = fedavg.round_update(state.params, view.x, view.y, view.index[ids], view.sizes[ids],
                                             fedavg.seed, state.round, ids)
        weights = view.sizes[ids].astype(np.float64)
        loss_np = np.asarray(losses, np.float64)
        if self.secure is None:
            mean_update, counted = weighted_mean(deltas, weights), ids
        else:
            mean_update, counted = self.secure.aggregate(deltas, weights, plan, trained=np.flatnonzero(train_mask))
            if mean_update is None:  # the protocol could not finish: no update, reason in secure.history
                self.orchestrator.counted_times[plan.counted] -= 1
                self.last_counted = 0
                return ServerState(state.params, state.opt_state, state.round + 1), nothing
        self.last_counted = len(counted)
        keep = np.isin(ids, counted)
        mean_update = {k: jnp.asarray(v, dtype=state.params[k].dtype) for k, v in mean_update.items()}
        params, opt_state = self._step(fedavg)(state.params, state.opt_state, mean_update)
        result = PopulationRoundResult(ids[keep].astype(np.int64), weights[keep], loss_np[keep])
        return ServerState(params, opt_state, state.round + 1), result

    def metrics(self) -> dict[str, Any]:
        """The population's part of the last round's metrics line."""
        plan = self.last
        if plan is None:
            return {}
        return {"sim_start_hours": plan.start / 3600.0, "sim_hours": plan.end / 3600.0,
                "round_seconds": plan.seconds, "waited_seconds": plan.waited, "eligible": plan.eligible,
                "selected": len(plan.selected), "counted": self.last_counted, "abandoned": plan.abandoned,
                "dropouts": plan.dropouts(),
                "bytes_down_per_client": float(plan.bytes_down.mean()) if len(plan.selected) else 0.0,
                "bytes_up_per_client": float(plan.bytes_up.mean()) if len(plan.selected) else 0.0}
