"""Round orchestration over a simulated population, as production systems run it (Bonawitz et al. 2019).

One round, starting at simulated time t0 (`Orchestrator.next_round`):

1. **Selection.** The server considers the clients that are eligible at t0, have not opted out and have not left
   the training population (personalized clients leave it). It selects ``ceil(overselect * target)`` of them at
   random (all of them if fewer); with fewer than ``target`` eligible it waits ``wait_s`` and looks again.
2. **Configuration and reporting.** Client i runs, from t0: ``setup_rounds`` protocol round trips (SecAgg's
   AdvertiseKeys and ShareKeys: 2; none otherwise), the model download (``model_bytes`` at its download
   bandwidth), local training (``local_epochs * n_i * seconds_per_sample_i * model_scale``) and the upload
   (``update_bytes`` at its upload bandwidth). It reports at ``t0 + setup + download + compute + upload``
   unless its eligibility window ends first.
3. **Closing.** With a ``deadline_s``, the round closes when ``target`` clients have reported or at
   ``t0 + deadline_s``, whichever comes first; without one (``deadline_s=None``: "wait for all") it closes when
   every selected client has reported or left. The first ``target`` reports are **counted**.
4. **Finishing.** ``finish_rounds`` more round trips (SecAgg's Unmasking: 1) after closing.

Simulated wall-clock time of the round = close - t0 + the finishing round trips: with the target reached, the
slowest counted client's setup + download + compute + upload; at a deadline, the deadline (the server cannot know
that nobody else will report). A round with fewer than ``min_reports`` counted clients is **abandoned** (no model
update), as in Bonawitz et al. 2019.

Dropout causes (`CAUSES`): ``left`` -- became ineligible before reporting (charger unplugged, Wi-Fi lost, owner
picked up the phone); ``failed`` -- the device failed for another reason (population's ``failures_per_hour``);
``deadline`` -- still working at the deadline (a straggler); ``surplus`` -- over-selected,
reported after the target count was reached; ``left_after_report`` -- counted, then ineligible before the
finishing round trips ended (its update is in the sum; SecAgg must still recover its masks). Each dropout also gets
the secure-aggregation stage at which it stops (`RoundPlan.secagg_stages`, `RoundPlan.additive_reached`).

Reproducible: selection draws from ``np.random.default_rng([seed, round, 16])`` and the population is fixed, so the
plan of round r depends only on (population, seed, sizes, rounds before it); `Orchestrator.replay` rebuilds the
state of a resumed run. Nothing here is secret.

Example:
    >>> from refimpl.fl.population.model import Population
    >>> pop = Population.synthetic(300, seed=0)
    >>> orch = Orchestrator(pop, OrchestrationConfig(target=20, overselect=1.3, deadline_s=120.0), seed=0)
    >>> plan = orch.next_round(np.full(300, 60), model_bytes=800_000, update_bytes=800_000)
    >>> len(plan.selected), len(plan.counted) <= 20, plan.seconds > 0
    (26, True, True)

References:
    K. Bonawitz et al., "Towards Federated Learning at Scale: System Design", SysML 2019 (selection, over-selection
    by 30%, reporting deadlines, abandoned rounds, pace steering).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from refimpl.errors import ConfigurationError
from refimpl.fl.population.model import Population

__all__ = ["CAUSES", "SECAGG_STAGES", "OrchestrationConfig", "Orchestrator", "RoundPlan"]

CAUSES = ("left", "failed", "deadline", "surplus", "left_after_report")
SECAGG_STAGES = ("AdvertiseKeys", "ShareKeys", "MaskedInputCollection", "Unmasking")  # as refimpl.secagg.STAGES
REFERENCE_PARAMS = 199_210  # the 2NN, for which seconds_per_sample is given


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrchestrationConfig:
    """How rounds are run.

    Attributes:
        target: Clients counted per round (the goal count), >= 1.
        overselect: Select ``ceil(overselect * target)`` clients, >= 1 (Bonawitz et al. use 1.3).
        deadline_s: Reporting deadline in seconds after selection; None waits for every selected client.
        min_reports: Fewer counted clients abandon the round (default 1).
        local_epochs: Epochs of local training per round (compute time scales with it).
        setup_rounds: Protocol round trips before the upload (SecAgg: 2).
        finish_rounds: Protocol round trips after closing (SecAgg: 1).
        wait_s: How long the server waits when fewer than ``target`` clients are eligible.
        max_wait_s: Give up (ConfigurationError) after waiting this long for one round.
    """

    target: int
    overselect: float = 1.3
    deadline_s: float | None = 120.0
    min_reports: int = 1
    local_epochs: int = 1
    setup_rounds: int = 0
    finish_rounds: int = 0
    wait_s: float = 60.0
    max_wait_s: float = 14 * 86400.0

    def __post_init__(self) -> None:
        if not isinstance(self.target, (int, np.integer)) or self.target < 1:
            raise ConfigurationError(f"target must be an int >= 1, got {self.target!r}")
        if not (self.overselect >= 1.0 and math.isfinite(self.overselect)):
            raise ConfigurationError(f"overselect must be >= 1, got {self.overselect}")
        if self.deadline_s is not None and not (self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise ConfigurationError(f"deadline_s must be > 0 or None, got {self.deadline_s}")
        if not 1 <= self.min_reports <= self.target:
            raise ConfigurationError(f"min_reports must be in [1, target={self.target}], got {self.min_reports}")
        for name in ("local_epochs",):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("setup_rounds", "finish_rounds"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.wait_s > 0 and self.max_wait_s >= self.wait_s):
            raise ConfigurationError(f"need wait_s > 0 and max_wait_s >= wait_s, got {self.wait_s}, {self.max_wait_s}")

    @property
    def num_selected(self) -> int:
        """Clients selected per round when enough are eligible."""
        return math.ceil(self.overselect * self.target - 1e-9)


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """What the population does in one round (all arrays are aligned with ``selected``).

    Attributes:
        round: Round number.
        start: Selection time (simulated seconds); ``waited`` seconds were spent waiting for eligible clients.
        close: When the server stopped accepting reports.
        end: When the round finished (close + finishing round trips).
        selected: int64 sorted client ids.
        report: When each would report (inf if it left before).
        left: When each stops being eligible or fails.
        cause: Dropout cause per selected client ('' for counted ones without a dropout), see `CAUSES`.
        counted_mask: Whether each client's update is counted.
        bytes_down, bytes_up: Bytes each moved (partial transfers counted pro rata).
        upload_fraction: Fraction of its upload each completed.
        abandoned: Fewer than ``min_reports`` counted: no update this round.
        eligible: How many clients were eligible at selection.
    """

    round: int
    start: float
    waited: float
    close: float
    end: float
    selected: np.ndarray
    report: np.ndarray
    left: np.ndarray
    cause: np.ndarray
    counted_mask: np.ndarray
    bytes_down: np.ndarray
    bytes_up: np.ndarray
    upload_fraction: np.ndarray
    abandoned: bool
    eligible: int
    setup_end: np.ndarray

    @property
    def counted(self) -> np.ndarray:
        """Sorted ids of the counted clients."""
        return self.selected[self.counted_mask]

    @property
    def seconds(self) -> float:
        """Simulated wall-clock duration of the round (without the wait before it)."""
        return self.end - self.start

    def dropouts(self) -> dict[str, int]:
        """Number of selected clients per dropout cause."""
        return {c: int(np.sum(self.cause == c)) for c in CAUSES}

    def secagg_stages(self) -> dict[int, str]:
        """``{position in selected: SecAgg stage}`` at which each dropout stops sending (Bonawitz et al. 2017).

        Left during the first / second setup round trip: AdvertiseKeys / ShareKeys; left later, at the deadline or
        surplus: MaskedInputCollection (no masked input); counted but left before the end: Unmasking.
        """
        out: dict[int, str] = {}
        for i, c in enumerate(self.cause):
            if c == "":
                continue
            if c == "left_after_report":
                out[i] = "Unmasking"
            elif c in ("left", "failed") and self.left[i] < self.setup_end[i]:
                frac = (self.left[i] - self.start) / max(self.setup_end[i] - self.start, 1e-12)
                out[i] = "AdvertiseKeys" if frac < 0.5 else "ShareKeys"
            else:
                out[i] = "MaskedInputCollection"
        return out

    def additive_reached(self, servers: int) -> dict[int, int]:
        """``{position in selected: servers reached}`` for the clients whose upload did not reach all ``servers``.

        A client sends one share to each server in turn, so a client that left mid-upload reached
        ``floor(servers * upload_fraction)`` of them; counted clients reached all (omitted here).
        """
        return {i: min(servers - 1, int(servers * self.upload_fraction[i]))
                for i in range(len(self.selected)) if not self.counted_mask[i]}


class Orchestrator:
    """Runs `RoundPlan` after `RoundPlan` on a simulated clock, keeping participation and traffic totals.

    Attributes:
        population: The `Population`.
        config: The `OrchestrationConfig`.
        seed: Selection seed.
        clock: Current simulated time in seconds.
        round: Next round number.
        retired: bool (K,); clients that left the training population (e.g. personalized).
        counted_times, selected_times: int (K,) participation counts.
        bytes_down, bytes_up: float (K,) totals per client.
    """

    def __init__(self, population: Population, config: OrchestrationConfig, *, seed: int = 0,
                 model_scale: float = 1.0, start: float = 0.0) -> None:
        if not model_scale > 0:
            raise ConfigurationError(f"model_scale must be > 0, got {model_scale}")
        self.population, self.config, self.seed, self.model_scale = population, config, int(seed), float(model_scale)
        k = population.num_clients
        self.clock, self.round = float(start), 0
        self.retired = np.zeros(k, bool)
        self.counted_times = np.zeros(k, np.int64)
        self.selected_times = np.zeros(k, np.int64)
        self.bytes_down = np.zeros(k, np.float64)
        self.bytes_up = np.zeros(k, np.float64)

    def retire(self, ids: Any) -> None:
        """Removes clients from the training population (they are never selected again)."""
        self.retired[np.asarray(ids, np.int64)] = True

    def candidates(self, t: float) -> np.ndarray:
        """Ids of the clients that may be selected at time t."""
        return np.flatnonzero(self.population.eligible(t) & ~self.retired)

    def next_round(self, sizes: np.ndarray, *, model_bytes: float, update_bytes: float) -> RoundPlan:
        """Plans the next round, advances the clock to its end and adds to the totals.

        Args:
            sizes: (K,) local example counts this round (compute time scales with them).
            model_bytes: Bytes each client downloads.
            update_bytes: Bytes each client uploads.

        Raises:
            ConfigurationError: Fewer than ``target`` clients became eligible within ``max_wait_s``.
        """
        cfg, pop = self.config, self.population
        t, waited = self.clock, 0.0
        cand = self.candidates(t)
        while len(cand) < cfg.target:
            if waited + cfg.wait_s > cfg.max_wait_s:
                raise ConfigurationError(
                    f"round {self.round}: fewer than target={cfg.target} clients eligible for {waited / 3600:.1f} "
                    f"simulated hours ({int((~self.retired & ~pop.opted_out).sum())} in the training population)")
            t += cfg.wait_s
            waited += cfg.wait_s
            cand = self.candidates(t)
        rng = np.random.default_rng([self.seed, self.round, 16])
        sel = np.sort(rng.choice(cand, size=min(len(cand), cfg.num_selected), replace=False)).astype(np.int64)
        rtt = pop.rtt_s[sel]
        setup_end = t + cfg.setup_rounds * rtt
        dl = model_bytes * 8.0 / (pop.download_mbps[sel] * 1e6)
        comp = cfg.local_epochs * np.asarray(sizes, np.float64)[sel] * pop.seconds_per_sample[sel] * self.model_scale
        ul = update_bytes * 8.0 / (pop.upload_mbps[sel] * 1e6)
        dl_end = setup_end + dl
        ul_start = dl_end + comp
        finish = ul_start + ul
        left = pop.availability.eligible_until(t, sel)
        fail = t + (rng.exponential(3600.0 / pop.failures_per_hour, len(sel)) if pop.failures_per_hour > 0
                    else np.full(len(sel), np.inf))
        failed_first = fail < left
        left = np.minimum(left, fail)
        report = np.where(left >= finish, finish, np.inf)
        order = np.argsort(report, kind="stable")
        reached = report[order[cfg.target - 1]] if len(sel) >= cfg.target else np.inf
        if cfg.deadline_s is None:
            close = float(np.minimum(finish, left).max())  # every client has reported or is known to be gone
        else:
            close = float(min(reached, t + cfg.deadline_s))
        counted = np.zeros(len(sel), bool)
        counted[order[: cfg.target]] = True
        counted &= report <= close
        cause = np.full(len(sel), "", dtype=object)
        stop = np.minimum(left, close)  # the server tells clients still working at close to stop
        gone = ~counted & (left < finish) & (left <= close)
        cause[gone] = np.where(failed_first[gone], "failed", "left")
        pending = ~counted & (cause == "")  # still working (or reported too late) when the round closed
        target_closed = bool(np.isfinite(reached)) and reached <= close
        cause[pending] = "surplus" if target_closed else "deadline"
        end = close + cfg.finish_rounds * (float(rtt[counted].max()) if counted.any() else 0.0)
        after = counted & (cfg.finish_rounds > 0) & (left < close + cfg.finish_rounds * rtt)
        cause[after] = "left_after_report"
        frac_dl = np.clip((stop - setup_end) / np.maximum(dl, 1e-12), 0.0, 1.0)
        frac_ul = np.where(counted, 1.0, np.clip((stop - ul_start) / np.maximum(ul, 1e-12), 0.0, 1.0))
        abandoned = int(counted.sum()) < cfg.min_reports
        plan = RoundPlan(self.round, t, waited, close, end, sel, report, left, cause.astype(str), counted,
                         frac_dl * model_bytes, frac_ul * update_bytes, frac_ul, abandoned, len(cand), setup_end)
        self.clock = end
        self.round += 1
        self.selected_times[sel] += 1
        if not abandoned:
            self.counted_times[plan.counted] += 1
        self.bytes_down[sel] += plan.bytes_down
        self.bytes_up[sel] += plan.bytes_up
        return plan

    def replay(self, rounds: int, sizes_of_round: Any, *, model_bytes: float, update_bytes: float) -> None:
        """Re-plans rounds ``self.round .. rounds - 1`` (for ``--resume``): ``sizes_of_round(r)`` gives sizes."""
        while self.round < rounds:
            self.next_round(sizes_of_round(self.round), model_bytes=model_bytes, update_bytes=update_bytes)

    def summary(self) -> dict[str, Any]:
        """Participation and traffic over the clients in the population (opted-out clients excluded)."""
        live = ~self.population.opted_out
        counted = self.counted_times[live]
        return {"simulated_hours": self.clock / 3600.0, "rounds": self.round,
                "never_counted_fraction": float(np.mean(counted == 0)) if counted.size else 0.0,
                "never_selected_fraction": float(np.mean(self.selected_times[live] == 0)) if counted.size else 0.0,
                "opted_out": int(self.population.opted_out.sum()),
                "mean_bytes_down_per_client": float(self.bytes_down[live].mean()) if counted.size else 0.0,
                "mean_bytes_up_per_client": float(self.bytes_up[live].mean()) if counted.size else 0.0}
