"""Chi-square helpers for the statistical tests (no SciPy needed).

The statistical tests draw their samples from keyed streams with FIXED keys, so each outcome is deterministic: a
test cannot flake. Thresholds are the chi-square critical values at significance ``ALPHA = 1e-6``: a correct
implementation with arbitrary other keys would fail only once in a million runs, while the biases the tests are
built to catch (a constant secret leaking into a share, modulo bias) give statistics orders of magnitude larger.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 1e-6


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with ``df`` degrees of freedom (exact, by the recurrence in df)."""
    if x <= 0:
        return 1.0
    h = x / 2
    if df % 2:
        q, nu = math.erfc(math.sqrt(h)), 1
    else:
        q, nu = math.exp(-h), 2
    while nu < df:
        # Q(x; nu + 2) = Q(x; nu) + (x/2)**(nu/2) * exp(-x/2) / Gamma(nu/2 + 1)
        q += math.exp(nu / 2 * math.log(h) - h - math.lgamma(nu / 2 + 1))
        nu += 2
    return min(q, 1.0)


def chi_square_critical(df: int, alpha: float = ALPHA) -> float:
    """The x with P(X >= x) = alpha, by bisection."""
    lo, hi = 0.0, df + 100.0 * math.sqrt(2 * df) + 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if chi_square_sf(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def chi_square_uniform(counts) -> float:
    """Pearson's statistic of ``counts`` against equal expected counts (df = len(counts) - 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def chi_square_two_sample(a, b) -> tuple[float, int]:
    """Pearson's homogeneity statistic of two histograms over the same bins, and its degrees of freedom."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = a.sum(), b.sum()
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    stat = float(((a * math.sqrt(nb / na) - b * math.sqrt(na / nb)) ** 2 / (a + b)).sum())
    return stat, int(keep.sum()) - 1
