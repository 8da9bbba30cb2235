"""Round orchestration (refimpl.fl.population.orchestration), population-driven rounds (fl.population_run), secure aggregation
under the population's dropouts (fl.secure_population) and the train flags."""

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl.errors import ConfigurationError
from refimpl.fl.population.model import Availability, Population, preset
from refimpl.fl.population.orchestration import CAUSES, OrchestrationConfig, Orchestrator
from refimpl.fl.population.secure import PopulationSecureAggregator

POP = Population.synthetic(400, seed=0)
SIZES = np.random.default_rng(0).integers(5, 200, 400)


def _expected_finish(pop, plan, sizes, cfg, model_bytes, update_bytes, scale=1.0):
    s = plan.selected
    return (plan.start + cfg.setup_rounds * pop.rtt_s[s] + model_bytes * 8 / (pop.download_mbps[s] * 1e6)
            + cfg.local_epochs * sizes[s] * pop.seconds_per_sample[s] * scale + update_bytes * 8 / (pop.upload_mbps[s] * 1e6))


@settings(max_examples=25)
@given(st.integers(1, 60), st.floats(1.0, 2.0), st.sampled_from([None, 10.0, 60.0, 300.0]), st.integers(0, 3),
       st.integers(0, 1000))
@example(40, 1.3, 120.0, 0, 0)
@example(40, 1.0, None, 2, 1)
def test_plan_invariants(target, overselect, deadline, setup, seed):
    cfg = OrchestrationConfig(target=target, overselect=overselect, deadline_s=deadline, setup_rounds=setup,
                              finish_rounds=1 if setup else 0)
    orch = Orchestrator(POP, cfg, seed=seed, start=seed * 977.0)
    for _ in range(3):
        t_before = orch.clock
        plan = orch.next_round(SIZES, model_bytes=8e5, update_bytes=8e5)
        assert plan.start >= t_before and plan.start == t_before + plan.waited
        assert POP.eligible(plan.start)[plan.selected].all()                 # selected among eligible clients
        assert len(plan.selected) == min(plan.eligible, cfg.num_selected) and len(plan.selected) >= target
        assert len(np.unique(plan.selected)) == len(plan.selected)
        counted = plan.counted_mask
        assert counted.sum() <= target
        assert np.all(plan.report[counted] <= plan.close)
        assert set(plan.cause[~counted]) <= set(CAUSES) - {"left_after_report"} and "" not in plan.cause[~counted]
        assert set(plan.cause[counted]) <= {"", "left_after_report"}
        finish = _expected_finish(POP, plan, SIZES, cfg, 8e5, 8e5)
        reported = plan.left >= finish
        assert np.allclose(plan.report[reported], finish[reported])
        if deadline is None:     # wait for all: every client still eligible reported and counted up to the target
            assert not (plan.cause == "deadline").any()
            assert plan.close == np.minimum(finish, plan.left).max()
        else:
            assert plan.close <= plan.start + deadline + 1e-9
            if counted.sum() == target:   # closed by the target: the slowest counted client's finish
                assert plan.close == pytest.approx(plan.report[counted].max())
            assert not ((plan.cause == "deadline") & (plan.report <= plan.close)).any()
        finishing = cfg.finish_rounds * (POP.rtt_s[plan.counted].max() if counted.any() else 0.0)
        assert plan.seconds == pytest.approx(plan.close - plan.start + finishing)
        assert orch.clock == plan.end
        # bytes: a full model for every client that finished its download, a full update for every counted one
        assert np.all(plan.bytes_up[counted] == 8e5) and np.all(plan.bytes_down <= 8e5)


def test_wall_clock_is_the_slowest_counted_clients_download_compute_upload():
    pop = Population.synthetic(100, preset("ideal"), seed=0)
    sizes = np.arange(100) + 1
    cfg = OrchestrationConfig(target=10, overselect=1.0, deadline_s=None)
    plan = Orchestrator(pop, cfg, seed=0).next_round(sizes, model_bytes=1e6, update_bytes=5e5)
    slowest = sizes[plan.selected].max()
    expected = 1e6 * 8 / 20e6 + slowest * 0.2 + 5e5 * 8 / (0.25 * 20e6)
    assert plan.seconds == pytest.approx(expected) and plan.counted_mask.all() and plan.dropouts() == dict.fromkeys(
        CAUSES, 0)


def test_overselection_and_deadline_cut_the_round_short_of_waiting_for_all():
    fast = Orchestrator(POP, OrchestrationConfig(target=30, overselect=1.3, deadline_s=120.0), seed=0)
    slow = Orchestrator(POP, OrchestrationConfig(target=30, overselect=1.0, deadline_s=None), seed=0)
    for _ in range(20):
        fast.next_round(SIZES, model_bytes=8e5, update_bytes=8e5)
        slow.next_round(SIZES, model_bytes=8e5, update_bytes=8e5)
    assert fast.clock < 0.7 * slow.clock
    assert fast.selected_times.sum() == 20 * 39 and fast.counted_times.sum() <= 20 * 30


def test_orchestration_is_reproducible_and_retired_clients_are_never_selected():
    a = Orchestrator(POP, OrchestrationConfig(target=20), seed=5)
    b = Orchestrator(POP, OrchestrationConfig(target=20), seed=5)
    gone = np.arange(0, 400, 2)
    a.retire(gone)
    b.retire(gone)
    for _ in range(5):
        pa = a.next_round(SIZES, model_bytes=1e5, update_bytes=1e5)
        pb = b.next_round(SIZES, model_bytes=1e5, update_bytes=1e5)
        assert np.array_equal(pa.selected, pb.selected) and pa.end == pb.end
        assert not np.isin(pa.selected, gone).any()


def test_the_server_waits_for_enough_eligible_clients_and_gives_up_after_max_wait():
    later = Availability.from_intervals([[(3600.0, 7200.0)]] * 10, 86400.0)   # nobody before 01:00
    pop = Population.synthetic(10, preset("ideal"), seed=0, availability=later)
    plan = Orchestrator(pop, OrchestrationConfig(target=5, wait_s=60.0), seed=0).next_round(
        np.full(10, 10), model_bytes=1e5, update_bytes=1e5)
    assert plan.waited == 3600.0 and plan.start == 3600.0
    never = Population.synthetic(10, preset("ideal"), seed=0, availability=Availability.from_intervals(
        [[]] * 10, 86400.0))
    with pytest.raises(ConfigurationError, match="fewer than target=5 clients eligible"):
        Orchestrator(never, OrchestrationConfig(target=5, max_wait_s=3600.0), seed=0).next_round(
            np.full(10, 10), model_bytes=1e5, update_bytes=1e5)


def test_config_errors():
    for kw, match in [({"target": 0}, "target"), ({"target": 5, "overselect": 0.9}, "overselect"),
                      ({"target": 5, "deadline_s": -1.0}, "deadline_s"), ({"target": 5, "min_reports": 6}, "min_reports")]:
        with pytest.raises(ConfigurationError, match=match):
            OrchestrationConfig(**kw)


def _dropout_plans(protocol, rounds, target=12):
    setup, finish = (2, 1) if protocol == "secagg" else (0, 0)
    cfg = OrchestrationConfig(target=target, overselect=1.5, deadline_s=25.0, setup_rounds=setup, finish_rounds=finish)
    pop = Population.synthetic(200, seed=2)
    from dataclasses import replace
    pop = replace(pop, failures_per_hour=60.0)   # many failures, so that every stage sees dropouts
    orch = Orchestrator(pop, cfg, seed=1)
    return [orch.next_round(np.full(200, 40), model_bytes=8e5, update_bytes=8e5) for _ in range(rounds)]


@pytest.mark.parametrize("protocol", ["additive", "secagg"])
def test_secure_aggregation_under_population_dropouts_is_exact_or_says_why(protocol):
    agg = PopulationSecureAggregator(protocol, servers=3, threshold=7, key=bytes(range(16)))
    seen_stages, completed = set(), 0
    for plan in _dropout_plans(protocol, 8):
        trained = np.flatnonzero(plan.upload_fraction > 0)
        rng = np.random.default_rng(plan.round)
        upd = {"w": rng.normal(size=(len(trained), 3, 2)).astype(np.float32), "b": rng.normal(size=(len(trained), 2))}
        weights = rng.integers(1, 50, len(trained)).astype(float)
        mean, ids = agg.aggregate(upd, weights, plan, trained=trained)
        rep = agg.history[-1]
        seen_stages |= set(rep.stages)
        if mean is None:
            assert not rep.completed and rep.reason
            continue
        completed += 1
        assert rep.exact and rep.reason == "" and np.array_equal(ids, plan.counted)
        rows = [list(trained).index(p) for p in np.flatnonzero(plan.counted_mask)]
        w = weights / weights.max()
        expect = np.tensordot(w[rows], upd["w"][rows].astype(np.float64), axes=1) / w[rows].sum()
        assert np.allclose(mean["w"], expect, atol=1e-6)
    assert completed >= 4
    if protocol == "secagg":
        assert "Unmasking" in seen_stages and "MaskedInputCollection" in seen_stages
    else:
        assert any(s.startswith("reached 0") for s in seen_stages)


def test_secagg_round_that_cannot_reach_the_threshold_reports_why():
    plan = _dropout_plans("secagg", 1)[0]
    agg = PopulationSecureAggregator("secagg", threshold=len(plan.selected), key=bytes(16))
    trained = np.flatnonzero(plan.upload_fraction > 0)
    mean, ids = agg.aggregate({"w": np.zeros((len(trained), 2))}, np.ones(len(trained)), plan, trained=trained)
    assert mean is None and len(ids) == 0
    assert "ThresholdError" in agg.history[-1].reason and not agg.history[-1].completed


def test_train_with_population_personalization_and_resume(tmp_path):
    from refimpl.fl.train import main

    # SecAgg with t = 6 of 8 selected and a 2 s deadline: round 5 aborts (5 reported), and the run resumed after it
    # must know that its clients did not count
    common = ["--dataset", "mnist-10k", "--model", "784,32,10", "--clients", "60", "--target", "6", "--population",
              "seed", "--no-progress", "--secure", "secagg", "--threshold", "6", "--deadline", "2",
              "--insecure-derived-keys", "--partition", "powerlaw", "--drift-rate", "0.2", "--checkpoint-every", "5"]
    assert main([*common, "--rounds", "6", "--out", str(tmp_path / "a"), "--personalize-steps", "3"]) == 0
    assert main([*common, "--rounds", "5", "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--rounds", "6", "--out", str(tmp_path / "b"), "--resume"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["sim_hours"] for r in rows] == [r["sim_hours"] for r in again]
    assert [r["test_accuracy"] for r in rows] == [r["test_accuracy"] for r in again]
    for r in rows:
        assert set(r["dropouts"]) == set(CAUSES) and r["selected"] >= r["counted"]
        assert r["secure"] == "secagg" and (r["secure_exact"] or "ThresholdError" in r["secure_reason"])
    assert any(r["aborted"] for r in rows[:5]) and not all(r["aborted"] for r in rows)
    pop_a = json.loads((tmp_path / "a" / "population.json").read_text())
    pop_b = json.loads((tmp_path / "b" / "population.json").read_text())
    assert pop_a["counted_times"] == pop_b["counted_times"]
    assert len(pop_a["retired"]) == 60 and pop_b["retired"] == []          # personalized clients left
    pers = json.loads((tmp_path / "a" / "personalization.json").read_text())
    assert len(pers["before"]) == 60 and pers["steps"] == 3
    assert (tmp_path / "a" / "population.png").stat().st_size > 0 and (tmp_path / "a" / "personalization.png").exists()


@pytest.mark.parametrize("flags", [["--wait-all"], ["--population", "seed", "--fused-mean"],
                                   ["--population", "seed", "--dropout", "0.1"],
                                   ["--population", "seed", "--target", "0"], ["--personalize-steps", "-1"]])
def test_train_refuses_inconsistent_population_flags(flags, capsys):
    from refimpl.fl.train import main

    with pytest.raises(SystemExit) as e:
        main(["--dataset", "mnist-10k", *flags])
    assert e.value.code == 2 and "--" in capsys.readouterr().err
