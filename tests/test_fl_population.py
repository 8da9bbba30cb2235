"""The simulated population (refimpl.fl.population.model), trace CSVs, power-law sizes and data drift (fl.partition)."""

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl.errors import ConfigurationError
from refimpl.fl import partition
from refimpl.fl.population.model import DAY, Availability, Population, PopulationConfig, TraceFormatError, preset


def _inside(intervals, period, t):
    phase = t % period
    for a, b in intervals:
        a0 = a % period
        if b - a >= period or a0 <= phase < a0 + (b - a) or phase < a0 + (b - a) - period:
            return True
    return False


interval_lists = st.lists(st.lists(st.tuples(st.floats(0, 999), st.floats(0.5, 300)).map(lambda p: (p[0], p[0] + p[1])),
                                   max_size=5), min_size=1, max_size=6)


@given(interval_lists, st.floats(0, 5000))
@example([[(0.0, 1000.0)]], 123.0)
@example([[(900.0, 1100.0)], []], 50.0)   # wraps around the period
def test_eligible_matches_brute_force(intervals, t):
    av = Availability.from_intervals(intervals, 1000.0)
    expected = [_inside(ivs, 1000.0, t) for ivs in intervals]
    assert av.eligible(t).tolist() == expected


@given(interval_lists, st.floats(0, 5000))
@example([[(900.0, 1100.0), (200.0, 300.0)]], 950.0)   # continues across the wrap into [0, 100)
def test_eligible_until_is_the_end_of_the_current_interval(intervals, t):
    av = Availability.from_intervals(intervals, 1000.0)
    ids = np.arange(len(intervals))
    until = av.eligible_until(t, ids)
    for k, u in enumerate(until):
        if not _inside(intervals[k], 1000.0, t):
            assert u == t
        elif math.isinf(u):
            assert all(_inside(intervals[k], 1000.0, t + s) for s in np.linspace(0, 1000, 101))
        else:
            assert u > t
            assert all(_inside(intervals[k], 1000.0, s) for s in np.linspace(t, u - 1e-6, 25))
            ends = av.ends[av.offsets[k]:av.offsets[k + 1]] % 1000.0   # u is where a merged interval ends
            assert np.min(np.abs(ends - u % 1000.0)) < 1e-6 or np.min(np.abs(ends - u % 1000.0 - 1000.0)) < 1e-6


def test_synthetic_population_is_seeded_and_documented_properties_hold():
    a, b = Population.synthetic(300, seed=3), Population.synthetic(300, seed=3)
    c = Population.synthetic(300, seed=4)
    assert np.array_equal(a.availability.starts, b.availability.starts)
    assert np.array_equal(a.download_mbps, b.download_mbps)
    assert not np.array_equal(a.download_mbps, c.download_mbps)
    cfg = PopulationConfig()
    assert int(a.opted_out.sum()) == round(cfg.opt_out * 300)
    assert np.all(a.upload_mbps < a.download_mbps) and np.all(a.upload_mbps > 0)
    assert set(np.unique(a.tz_hours)) <= {o for o, _ in cfg.timezones}
    frac = a.availability.fraction_eligible()
    assert np.sum(frac == 0) >= round(cfg.metered_fraction * 300)   # metered-only clients are never eligible
    assert 0.1 < frac[frac > 0].mean() < 0.5                      # a nightly window of a few hours
    # opted-out clients are never eligible for selection
    assert not any(a.eligible(h * 3600.0)[a.opted_out].any() for h in range(24))


def test_availability_is_diurnal_in_local_time():
    pop = Population.synthetic(2000, seed=0)
    utc0 = pop.tz_hours == 0.0
    night = np.mean([pop.availability.eligible(d * DAY + 3 * 3600.0)[utc0].mean() for d in range(7)])
    afternoon = np.mean([pop.availability.eligible(d * DAY + 15 * 3600.0)[utc0].mean() for d in range(7)])
    assert night > 0.4 and afternoon < 0.2


def test_ideal_preset_is_always_eligible():
    pop = Population.synthetic(20, preset("ideal"), seed=0)
    assert pop.eligible(12345.0).all()
    assert np.all(np.isinf(pop.availability.eligible_until(777.0, np.arange(20))))
    assert np.ptp(pop.seconds_per_sample) == 0 and not pop.opted_out.any()


def test_config_validation_names_the_bad_value():
    with pytest.raises(ConfigurationError, match="opt_out"):
        PopulationConfig(opt_out=1.5)
    with pytest.raises(ConfigurationError, match="download_mbps"):
        PopulationConfig(download_mbps=(0.0, 1.0))
    with pytest.raises(ConfigurationError, match="horizon_days"):
        PopulationConfig(horizon_days=0)
    with pytest.raises(ConfigurationError, match="unknown population preset"):
        preset("phones")
    with pytest.raises(ConfigurationError, match="num_clients"):
        Population.synthetic(0)


def test_trace_csv_round_trip_and_client_cycling(tmp_path):
    pop = Population.synthetic(30, seed=1)
    path = tmp_path / "trace.csv"
    pop.availability.to_csv(path)
    back = Availability.from_csv(path)
    assert back.period == pop.availability.period
    assert np.array_equal(back.starts, pop.availability.starts) and np.array_equal(back.offsets, pop.availability.offsets)
    cycled = Availability.from_csv(path, num_clients=75)          # client k replays trace client k mod 30
    for t in (3600.0, 50_000.0, 200_000.0):
        assert np.array_equal(cycled.eligible(t), np.tile(back.eligible(t), 3)[:75])
    used = Population.synthetic(30, seed=1, availability=back)
    assert np.array_equal(used.eligible(7200.0), pop.eligible(7200.0))


def test_trace_csv_inferred_period_and_comments(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("# a FedScale-like trace\nclient_id,start_s,end_s\n0,10,20\n2,86000,90000\n\n")
    av = Availability.from_csv(path)
    assert av.num_clients == 3 and av.period == 2 * DAY
    assert av.eligible(15.0).tolist() == [True, False, False]
    assert av.fraction_eligible()[1] == 0.0


@pytest.mark.parametrize("text, match", [
    ("client,start,end\n0,1,2\n", "header"),
    ("client_id,start_s,end_s\n0,one,2\n", ":2: non-numeric"),
    ("client_id,start_s,end_s\n0,5,5\n", ":2: need client_id >= 0 and 0 <= start_s < end_s"),
    ("client_id,start_s,end_s\n-1,0,5\n", "need client_id"),
    ("client_id,start_s,end_s\n0,1\n", "expected 3 fields"),
    ("client_id,start_s,end_s\n", "no intervals"),
])
def test_trace_csv_errors_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceFormatError, match=match):
        Availability.from_csv(path)


@given(st.integers(1, 200), st.floats(0.3, 4.0), st.integers(0, 2**31 - 1))
@example(1, 1.5, 0)
@example(200, 0.3, 1)
def test_powerlaw_partition_covers_every_sample_once(k, exponent, seed):
    labels = np.arange(1000) % 10
    parts = partition.powerlaw(labels, k, exponent=exponent, seed=seed)
    allidx = np.concatenate(parts)
    assert len(parts) == k and np.array_equal(np.sort(allidx), np.arange(1000))
    assert min(len(p) for p in parts) >= 1


def test_powerlaw_sizes_are_heavy_tailed():
    n = partition.sizes(partition.powerlaw(np.zeros(60_000, int), 1000, exponent=1.5, seed=0))
    assert n.max() > 20 * np.median(n)
    light = partition.sizes(partition.powerlaw(np.zeros(60_000, int), 1000, exponent=8.0, seed=0))
    assert light.max() < 5 * np.median(light)
    with pytest.raises(ValueError, match="exponent"):
        partition.powerlaw(np.zeros(10, int), 2, exponent=0.0)


def test_drift_window_moves_through_each_clients_own_data():
    y = np.arange(600) % 6
    fed = partition.federate(np.zeros((600, 2)), y, partition.dirichlet(y, 8, 1.0, seed=0))
    own = [set(fed.index[k, :fed.sizes[k]].tolist()) for k in range(8)]
    mixes = []
    for r in range(10):
        index, sizes = partition.drift_window(fed, r, window=0.3, rate=0.1, seed=0)
        assert np.array_equal(sizes, np.ceil(0.3 * fed.sizes).astype(sizes.dtype))
        for k in range(8):
            assert set(index[k, :sizes[k]].tolist()) <= own[k]
        mixes.append(np.bincount(y[index[0, :sizes[0]]], minlength=6))
    assert any(not np.array_equal(mixes[0], m) for m in mixes[1:])   # the label mix changes over rounds
    same, _ = partition.drift_window(fed, 0, window=1.0, rate=0.0)
    assert [set(same[k, :fed.sizes[k]].tolist()) for k in range(8)] == own
    with pytest.raises(ValueError, match="window"):
        partition.drift_window(fed, 0, window=0.0)
