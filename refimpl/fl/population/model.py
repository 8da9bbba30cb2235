"""A simulated client population: who is eligible when, how fast it computes, how fast its network is.

The seed's picture of cross-device federated learning (and Bonawitz et al. 2019's): a phone takes part only while
it is **charging**, on an **unmetered** (Wi-Fi) network and **idle**; these states follow the owner's day in the
owner's **time zone**; some users **opt out**; phones differ in compute speed, and their links upload slower than
they download. `PopulationConfig` documents every parameter of the synthetic model and `Population.synthetic`
draws one population from it; `Availability` holds per-client eligibility intervals over a periodic simulated
clock and answers "who is eligible at time t" and "until when" in vectorised form; `Availability.from_csv` loads
real traces in the same shape.

Synthetic availability (all hours are the client's local time; clock time t is seconds since 00:00 UTC of day 0):

* each client has a UTC offset drawn from ``timezones`` (a categorical of (offset hours, weight));
* three nightly windows per client -- ``charging``, ``wifi`` (at home) and ``idle`` (asleep) -- each given as
  (mean start hour, sd, mean end hour, sd): the client's own habit is drawn once from these normals, and each
  day's window jitters around the habit by a normal of sd ``day_jitter_hours``; the client is eligible in the
  intersection of the three. A ``daytime_fraction`` of clients also has a ``daytime`` window (charging on office
  Wi-Fi, idle at a desk). ``metered_fraction`` of clients are never on unmetered networks (never eligible);
  ``opt_out`` of clients have opted out (never selected);
* inside a window the owner picks the phone up at Poisson rate ``interruptions_per_hour``, for an exponential
  time of mean ``interruption_minutes``: the device is not idle then, and a round it is in loses it (a dropout);
* the whole schedule repeats every ``horizon_days`` days (the clock is periodic), as FedScale replays its traces.

Device speed and network (drawn once per client, independent lognormals with the given median and log-sd):
``seconds_per_sample`` is the local-training time per example and epoch for the 2NN (784-200-200-10) on a
reference phone, scaled by parameter count for other models; ``download_mbps``; ``upload_ratio`` (upload
bandwidth over download, clipped to [0.02, 0.9]: upload < download); ``rtt_ms``, one protocol round trip.
Besides leaving its eligibility window, a device in a round fails at rate ``failures_per_hour`` (the OS kills
the job, the connection breaks; Bonawitz et al. 2019 report 6-10% of devices dropping out of a round).

Nothing here is secret: a seeded ``np.random.default_rng`` drives it, and the same seed gives the same population.

Trace CSV format (`Availability.from_csv`): a header line ``client_id,start_s,end_s`` then one row per eligibility
interval [start_s, end_s) in seconds of the trace clock (integers or decimals), any order; lines starting with
``#`` are comments, and a comment ``# period_s=<seconds>`` sets the period (default: the largest end rounded up to
whole days). Clients are numbered 0..n-1 in the file; simulation client k replays trace client ``k mod n``; a trace
client with no rows is never eligible. FedScale's device-behaviour traces (per client lists of ``active`` and
``inactive`` times) convert row by row: each (active[i], inactive[i]) pair is one interval.

Example:
    >>> pop = Population.synthetic(200, PopulationConfig(), seed=0)
    >>> at_night = pop.availability.eligible(3 * 3600.0).sum()   # 03:00 UTC on day 0
    >>> int(pop.opted_out.sum()), bool(0 < at_night < 200)
    (10, True)
    >>> bool(np.all(pop.upload_mbps < pop.download_mbps))
    True

References:
    K. Bonawitz et al., "Towards Federated Learning at Scale: System Design", SysML 2019.
    F. Lai et al., "FedScale: Benchmarking Model and System Performance of Federated Learning at Scale",
    ICML 2022 (device-behaviour traces).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from refimpl.errors import ConfigurationError, TraceFormatError

__all__ = ["DAY", "PRESETS", "Availability", "Population", "PopulationConfig", "TraceFormatError", "preset"]

DAY = 86400.0
Window = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PopulationConfig:
    """Parameters of the synthetic population (see the module docstring for the model).

    Attributes:
        opt_out: Fraction of clients who opted out (never selected).
        metered_fraction: Fraction never on an unmetered network (never eligible).
        timezones: (UTC offset in hours, weight) pairs; weights are normalised.
        charging: Nightly charging window (mean start, sd, mean end, sd), local hours.
        wifi: Home Wi-Fi window, same form.
        idle: Idle (owner asleep) window, same form.
        daytime_fraction: Fraction of clients with a second, daytime window.
        daytime: That daytime window.
        day_jitter_hours: Day-to-day sd of every window edge around the client's habit.
        interruptions_per_hour: Rate at which the owner uses the phone inside a window.
        interruption_minutes: Mean length of such a use.
        horizon_days: Period of the schedule in days.
        seconds_per_sample: (median, log-sd) of local training time per example per epoch (2NN reference).
        download_mbps: (median, log-sd) of download bandwidth in Mbit/s.
        upload_ratio: (median, log-sd) of upload / download bandwidth (clipped to [0.02, 0.9]).
        rtt_ms: (median, log-sd) of a protocol round trip in milliseconds.
        failures_per_hour: Rate at which a device in a round fails for other reasons (the OS kills the job,
            the connection breaks): an exponential time to failure, drawn afresh each round.
    """

    opt_out: float = 0.05
    metered_fraction: float = 0.05
    timezones: tuple[tuple[float, float], ...] = (
        (-8.0, 0.12), (-5.0, 0.18), (-3.0, 0.08), (0.0, 0.12), (1.0, 0.15), (3.0, 0.05), (5.5, 0.12),
        (8.0, 0.12), (9.0, 0.06))
    charging: Window = (22.5, 1.5, 7.0, 1.0)
    wifi: Window = (18.5, 1.5, 8.0, 1.0)
    idle: Window = (23.5, 1.0, 6.5, 1.0)
    daytime_fraction: float = 0.15
    daytime: Window = (9.5, 1.0, 16.5, 1.0)
    day_jitter_hours: float = 0.5
    interruptions_per_hour: float = 0.25
    interruption_minutes: float = 10.0
    horizon_days: int = 7
    seconds_per_sample: tuple[float, float] = (0.2, 0.8)
    failures_per_hour: float = 3.0
    download_mbps: tuple[float, float] = (20.0, 0.9)
    upload_ratio: tuple[float, float] = (0.25, 0.6)
    rtt_ms: tuple[float, float] = (80.0, 0.5)

    def __post_init__(self) -> None:
        for name in ("opt_out", "metered_fraction", "daytime_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1], got {v}")
        if not self.timezones or any(w < 0 for _, w in self.timezones) or sum(w for _, w in self.timezones) <= 0:
            raise ConfigurationError(f"timezones need non-negative weights with a positive sum, got {self.timezones}")
        for name in ("charging", "wifi", "idle", "daytime"):
            w = getattr(self, name)
            if len(w) != 4 or w[1] < 0 or w[3] < 0 or not all(math.isfinite(x) for x in w):
                raise ConfigurationError(f"{name} must be (start, sd >= 0, end, sd >= 0) local hours, got {w}")
        for name in ("day_jitter_hours", "interruptions_per_hour", "interruption_minutes", "failures_per_hour"):
            if not getattr(self, name) >= 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not isinstance(self.horizon_days, int) or self.horizon_days < 1:
            raise ConfigurationError(f"horizon_days must be an int >= 1, got {self.horizon_days!r}")
        for name in ("seconds_per_sample", "download_mbps", "upload_ratio", "rtt_ms"):
            median, sd = getattr(self, name)
            if not (median > 0 and sd >= 0 and math.isfinite(median)):
                raise ConfigurationError(f"{name} must be (median > 0, log-sd >= 0), got {(median, sd)}")


PRESETS: dict[str, PopulationConfig] = {
    # the seed's picture: nightly charging + Wi-Fi + idle windows across time zones, opt-outs, slow uplinks
    "seed": PopulationConfig(),
    # every client always eligible, equally fast, never interrupted: the old simulator's assumptions
    "ideal": PopulationConfig(opt_out=0.0, metered_fraction=0.0, timezones=((0.0, 1.0),),
                              charging=(0.0, 0.0, 24.0, 0.0), wifi=(0.0, 0.0, 24.0, 0.0), idle=(0.0, 0.0, 24.0, 0.0),
                              daytime_fraction=0.0, day_jitter_hours=0.0, interruptions_per_hour=0.0,
                              failures_per_hour=0.0,
                              seconds_per_sample=(0.2, 0.0), download_mbps=(20.0, 0.0), upload_ratio=(0.25, 0.0),
                              rtt_ms=(80.0, 0.0)),
}


def preset(name: str) -> PopulationConfig:
    """A named `PopulationConfig` from `PRESETS` (``seed``: the seed's description; ``ideal``: always on).

    Raises:
        ConfigurationError: Unknown name.
    """
    if name not in PRESETS:
        raise ConfigurationError(f"unknown population preset {name!r}; choose one of {tuple(PRESETS)}")
    return PRESETS[name]


@dataclasses.dataclass(frozen=True)
class Availability:
    """Per-client eligibility intervals on a periodic clock.

    Attributes:
        starts, ends: float64 interval bounds in seconds, sorted by (client, start); intervals of one client are
            disjoint, non-adjacent and lie in [0, period).
        offsets: int64 (K + 1,); client k's intervals are ``starts[offsets[k]:offsets[k + 1]]``.
        period: Length of the clock's cycle in seconds; time t means t mod period.
    """

    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray
    period: float
    _keys: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        object.__setattr__(self, "_keys", owner * (2.0 * self.period) + self.starts)

    @property
    def num_clients(self) -> int:
        """Number of clients K."""
        return len(self.offsets) - 1

    @staticmethod
    def from_intervals(intervals: list[list[tuple[float, float]]], period: float) -> Availability:
        """Builds from per-client interval lists (wrapped into [0, period), sorted and merged)."""
        if not period > 0:
            raise ConfigurationError(f"period must be > 0, got {period}")
        starts: list[float] = []
        ends: list[float] = []
        offsets = [0]
        for ivs in intervals:
            pieces: list[tuple[float, float]] = []
            for a, b in ivs:
                if b - a >= period:
                    pieces = [(0.0, period)]
                    break
                a0 = a % period
                b0 = a0 + (b - a)
                pieces += [(a0, b0)] if b0 <= period else [(a0, period), (0.0, b0 - period)]
            merged: list[list[float]] = []
            for a, b in sorted(p for p in pieces if p[1] > p[0]):
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            starts += [m[0] for m in merged]
            ends += [m[1] for m in merged]
            offsets.append(len(starts))
        return Availability(np.array(starts, np.float64), np.array(ends, np.float64), np.array(offsets, np.int64),
                            float(period))

    def _current(self, t: float, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(interval index or -1, phase t mod period) of each listed client."""
        phase = float(t) % self.period
        if not len(self.starts):
            return np.full(len(ids), -1, np.int64), np.full(len(ids), phase)
        # one search over all clients: key = client * 2 * period + start is sorted (starts lie in [0, period))
        j = np.searchsorted(self._keys, ids * (2.0 * self.period) + phase, side="right") - 1
        j = np.where(self.starts[np.maximum(j, 0)] > phase, j - 1, j)  # a key rounded onto the query's: step back
        inside = j >= self.offsets[ids]
        jj = np.where(inside, j, 0)
        inside &= self.ends[jj] > phase
        return np.where(inside, j, -1), np.full(len(ids), phase)

    def eligible(self, t: float, ids: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask: which clients (all, or ``ids``) are eligible at time t."""
        ids = np.arange(self.num_clients) if ids is None else np.asarray(ids, np.int64)
        return self._current(t, ids)[0] >= 0

    def eligible_until(self, t: float, ids: np.ndarray) -> np.ndarray:
        """Absolute time at which each listed client stops being eligible (t itself when it is not eligible now).

        An interval ending at the period's end continues into the client's interval starting at 0 (wrap-around);
        a client eligible over the whole period gets ``inf``.
        """
        ids = np.asarray(ids, np.int64)
        j, phase = self._current(t, ids)
        out = np.full(len(ids), float(t))
        for i, (k, jj) in enumerate(zip(ids, j)):
            if jj < 0:
                continue
            end = self.ends[jj]
            first = self.offsets[k]
            if end >= self.period and self.starts[first] == 0.0:
                if jj == first:  # one interval covering everything
                    out[i] = math.inf
                    continue
                end = self.period + self.ends[first]
            out[i] = t + (end - phase[i])
        return out

    def fraction_eligible(self) -> np.ndarray:
        """Fraction of the period each client is eligible, shape (K,)."""
        total = np.add.reduceat(self.ends - self.starts, self.offsets[:-1]) if len(self.starts) else 0.0
        empty = self.offsets[1:] == self.offsets[:-1]
        return np.where(empty, 0.0, total) / self.period

    @staticmethod
    def from_csv(path: str | Path, num_clients: int | None = None, period: float | None = None) -> Availability:
        """Loads a trace CSV (format in the module docstring).

        Args:
            path: The CSV file.
            num_clients: Simulation clients; client k replays trace client ``k mod n`` (None: n).
            period: Clock period in seconds (None: from a ``# period_s=`` comment, else whole days covering it).

        Raises:
            FileNotFoundError: No such file.
            TraceFormatError: Bad header, a non-numeric or negative value, start >= end, or no rows.
        """
        path = Path(path)
        rows: list[tuple[int, float, float]] = []
        header_seen = False
        with path.open(newline="") as f:
            for lineno, line in enumerate(csv.reader(f), start=1):
                if not line or not "".join(line).strip():
                    continue
                if line[0].lstrip().startswith("#"):
                    text = ",".join(line).lstrip("# ").strip()
                    if text.startswith("period_s=") and period is None:
                        try:
                            period = float(text.split("=", 1)[1])
                        except ValueError:
                            raise TraceFormatError(f"{path}:{lineno}: bad period {text!r}") from None
                    continue
                if not header_seen:
                    if [c.strip() for c in line] != ["client_id", "start_s", "end_s"]:
                        raise TraceFormatError(f"{path}:{lineno}: header must be client_id,start_s,end_s, got {line}")
                    header_seen = True
                    continue
                if len(line) != 3:
                    raise TraceFormatError(f"{path}:{lineno}: expected 3 fields, got {line}")
                try:
                    cid, a, b = int(line[0]), float(line[1]), float(line[2])
                except ValueError:
                    raise TraceFormatError(f"{path}:{lineno}: non-numeric field in {line}") from None
                if cid < 0 or not (math.isfinite(a) and math.isfinite(b)) or a < 0 or not b > a:
                    raise TraceFormatError(f"{path}:{lineno}: need client_id >= 0 and 0 <= start_s < end_s, got {line}")
                rows.append((cid, a, b))
        if not rows:
            raise TraceFormatError(f"{path}: no intervals")
        n = max(r[0] for r in rows) + 1
        if period is None:
            period = math.ceil(max(r[2] for r in rows) / DAY) * DAY
        if not period > 0:
            raise TraceFormatError(f"{path}: period must be > 0, got {period}")
        per: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        for cid, a, b in rows:
            per[cid].append((a, b))
        k = n if num_clients is None else num_clients
        if k < 1:
            raise ConfigurationError(f"num_clients must be >= 1, got {k}")
        return Availability.from_intervals([per[i % n] for i in range(k)], period)

    def to_csv(self, path: str | Path) -> None:
        """Writes the intervals in the trace format (with a ``# period_s=`` line), readable by `from_csv`."""
        with Path(path).open("w", newline="") as f:
            f.write(f"# period_s={self.period!r}\nclient_id,start_s,end_s\n")
            w = csv.writer(f)
            for k in range(self.num_clients):
                for j in range(self.offsets[k], self.offsets[k + 1]):
                    w.writerow([k, repr(float(self.starts[j])), repr(float(self.ends[j]))])


def _window(rng: np.random.Generator, habit: np.ndarray, jitter: float, tz: np.ndarray, day: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Day ``day``'s window per client in absolute seconds (start, end), from habits (start, end) local hours."""
    k = len(tz)
    s = habit[:, 0] + rng.normal(0.0, jitter, k)
    e = habit[:, 1] + rng.normal(0.0, jitter, k)
    length = np.where(e - s >= 24.0, 24.0, np.mod(e - s, 24.0))  # end - start >= 24 h: the whole day
    start = (day * 24.0 + s - tz) * 3600.0
    return start, start + length * 3600.0


@dataclasses.dataclass(frozen=True)
class Population:
    """A drawn population: availability plus per-client device and network attributes.

    Attributes:
        availability: `Availability` of the K clients.
        opted_out: bool (K,); never selected.
        tz_hours: float (K,) UTC offsets (NaN for trace-driven populations without them).
        seconds_per_sample: float (K,) local training seconds per example per epoch (2NN reference).
        download_mbps, upload_mbps: float (K,) link speeds, upload < download.
        rtt_s: float (K,) one protocol round trip in seconds.
        failures_per_hour: Hazard of a device failing during a round.
    """

    availability: Availability
    opted_out: np.ndarray
    tz_hours: np.ndarray
    seconds_per_sample: np.ndarray
    download_mbps: np.ndarray
    upload_mbps: np.ndarray
    rtt_s: np.ndarray
    failures_per_hour: float = 0.0

    @property
    def num_clients(self) -> int:
        """Number of clients K."""
        return len(self.opted_out)

    @staticmethod
    def synthetic(num_clients: int, config: PopulationConfig | None = None, *, seed: int = 0,
                  availability: Availability | None = None) -> Population:
        """Draws a population from ``config`` with ``np.random.default_rng([seed, 16])``.

        Args:
            num_clients: K >= 1.
            config: The model's parameters (default: the ``seed`` preset).
            seed: Simulation seed.
            availability: Use these intervals (e.g. a loaded trace) instead of the synthetic windows; opt-out,
                speed and bandwidth are still drawn from ``config``.

        Raises:
            ConfigurationError: num_clients < 1, or an availability for another number of clients.
        """
        cfg = PopulationConfig() if config is None else config
        if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
            raise ConfigurationError(f"num_clients must be an int >= 1, got {num_clients!r}")
        if availability is not None and availability.num_clients != num_clients:
            raise ConfigurationError(f"availability has {availability.num_clients} clients, expected {num_clients}")
        rng = np.random.default_rng([seed, 16])
        k = int(num_clients)

        def lognormal(spec: tuple[float, float]) -> np.ndarray:
            return spec[0] * np.exp(rng.normal(0.0, spec[1], k))

        opted_out = np.zeros(k, bool)
        opted_out[rng.permutation(k)[: round(cfg.opt_out * k)]] = True
        offsets_h = np.array([o for o, _ in cfg.timezones])
        weights = np.array([w for _, w in cfg.timezones], np.float64)
        tz = offsets_h[rng.choice(len(offsets_h), size=k, p=weights / weights.sum())]
        sps = lognormal(cfg.seconds_per_sample)
        down = lognormal(cfg.download_mbps)
        up = down * np.clip(lognormal(cfg.upload_ratio), 0.02, 0.9)
        rtt = lognormal(cfg.rtt_ms) / 1000.0
        if availability is None:
            availability = _synthetic_availability(rng, cfg, tz)
        return Population(availability, opted_out, tz, sps, down, up, rtt, cfg.failures_per_hour)

    def eligible(self, t: float) -> np.ndarray:
        """Clients that may be selected at time t: eligible and not opted out, shape (K,) bool."""
        return self.availability.eligible(t) & ~self.opted_out


def _synthetic_availability(rng: np.random.Generator, cfg: PopulationConfig, tz: np.ndarray) -> Availability:
    k = len(tz)

    def habit(spec: Window) -> np.ndarray:
        return np.stack([rng.normal(spec[0], spec[1], k), rng.normal(spec[2], spec[3], k)], axis=1)

    habits = [habit(cfg.charging), habit(cfg.wifi), habit(cfg.idle)]
    day_habit = habit(cfg.daytime)
    has_day = rng.random(k) < cfg.daytime_fraction
    metered = np.zeros(k, bool)
    metered[rng.permutation(k)[: round(cfg.metered_fraction * k)]] = True
    intervals: list[list[tuple[float, float]]] = [[] for _ in range(k)]
    rate = cfg.interruptions_per_hour / 3600.0
    mean_gap = cfg.interruption_minutes * 60.0
    for day in range(cfg.horizon_days):
        windows = [_window(rng, h, cfg.day_jitter_hours, tz, day) for h in habits]
        start = np.max([w[0] for w in windows], axis=0)
        end = np.min([w[1] for w in windows], axis=0)
        d0, d1 = _window(rng, day_habit, cfg.day_jitter_hours, tz, day)
        for c in range(k):
            if metered[c]:
                continue
            spans = [(start[c], end[c])] if end[c] > start[c] else []
            if has_day[c] and d1[c] > d0[c]:
                spans.append((d0[c], d1[c]))
            for a, b in spans:
                intervals[c] += _interrupt(rng, a, b, rate, mean_gap)
    return Availability.from_intervals(intervals, cfg.horizon_days * DAY)


def _interrupt(rng: np.random.Generator, a: float, b: float, rate: float, mean_gap: float
               ) -> list[tuple[float, float]]:
    """Splits [a, b) at Poisson(rate) interruptions of exponential(mean_gap) length."""
    if rate <= 0 or mean_gap <= 0:
        return [(a, b)]
    n = rng.poisson(rate * (b - a))
    cuts = np.sort(rng.uniform(a, b, n))
    gaps = rng.exponential(mean_gap, n)
    out, cur = [], a
    for c, g in zip(cuts, gaps):
        if c > cur:
            out.append((cur, c))
        cur = max(cur, c + g)
    if b > cur:
        out.append((cur, b))
    return out
