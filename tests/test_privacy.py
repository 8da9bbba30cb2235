"""Tests of clipping, DP noise and accounting (refimpl.fl.privacy). Statistical checks use fixed keys, so they are
deterministic; each threshold is at least 6 standard errors wide so that a correct sampler passes for any key."""

import math

import numpy as np
import pytest

from refimpl.errors import ConfigurationError
from refimpl.fl.privacy import (
    PrivacyAccountant,
    clip_l2,
    discrete_gaussian,
    discrete_gaussian_exact,
    distributed_sigma,
    epsilon_after,
    gaussian_noise,
)

NEEDS_DP = "dp-accounting is not installed (pip install 'refimpl[dp]')"
scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")


def test_clip_l2_bounds_norms_and_keeps_directions():
    u = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    c, norms = clip_l2(u, 1.0)
    assert norms.tolist() == [5.0, 0.5, 0.0]
    assert np.allclose(np.linalg.norm(c, axis=1), [1.0, 0.5, 0.0])
    assert np.allclose(c[0], [0.6, 0.8]) and np.array_equal(c[1], u[1])
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigurationError, match="clip must be positive and finite"):
            clip_l2(u, bad)
    with pytest.raises(ValueError, match="non-finite"):
        clip_l2(np.array([[math.nan]]), 1.0)


N = 200_000


@pytest.mark.parametrize("sigma", [0.8, 3.0, 25.0])
def test_discrete_gaussian_mean_variance_and_pmf(sigma):
    x = discrete_gaussian(N, sigma, key=bytes(range(16)))
    assert x.dtype == np.int64
    support = np.arange(-int(12 * sigma) - 2, int(12 * sigma) + 3)
    w = np.exp(-support.astype(float) ** 2 / (2 * sigma**2))
    pmf = w / w.sum()
    var = float((pmf * support**2).sum())  # exact variance of the discrete Gaussian (slightly below sigma^2)
    # mean: standard error sqrt(var / N); variance: standard error ~ var * sqrt(2 / N) (kurtosis ~3)
    assert abs(x.mean()) < 6 * math.sqrt(var / N)
    assert abs(x.var() - var) < 6 * var * math.sqrt(2.5 / N)
    # pmf: chi-square over the central cells (expected count >= 50), df <= ~150; 6-sigma bound df + 6 sqrt(2 df)
    counts = np.array([(x == k).sum() for k in support])
    keep = pmf * N >= 50
    chi2 = float((((counts - pmf * N) ** 2) / (pmf * N))[keep].sum())
    df = int(keep.sum()) - 1
    assert chi2 < df + 6 * math.sqrt(2 * df), (chi2, df)


def test_exact_sampler_matches_the_pmf():
    """CKS's rational-arithmetic sampler (4,000 draws at sigma = 2): chi-square over cells with expected count >= 20
    below df + 6 sqrt(2 df); mean within 6 standard errors."""
    sigma, n = 2.0, 4000
    x = discrete_gaussian_exact(n, sigma, key=b"e" * 16)
    support = np.arange(-30, 31)
    w = np.exp(-support.astype(float) ** 2 / (2 * sigma**2))
    pmf = w / w.sum()
    counts = np.array([(x == k).sum() for k in support])
    keep = pmf * n >= 20
    chi2 = float((((counts - pmf * n) ** 2) / (pmf * n))[keep].sum())
    df = int(keep.sum()) - 1
    assert chi2 < df + 6 * math.sqrt(2 * df), (chi2, df)
    assert abs(x.mean()) < 6 * sigma / math.sqrt(n)
    assert np.array_equal(x[:10], discrete_gaussian_exact(10, sigma, key=b"e" * 16))
    with pytest.raises(ConfigurationError, match="positive"):
        discrete_gaussian_exact(1, 0.0, key=bytes(16))


def test_gaussian_noise_statistics_and_keys():
    x = gaussian_noise(N, 2.0, key=b"n" * 16)
    assert abs(x.mean()) < 6 * 2.0 / math.sqrt(N)
    assert abs(x.std() - 2.0) < 6 * 2.0 / math.sqrt(2 * N)
    # Kolmogorov-Smirnov against N(0, 4): D * sqrt(N) < 1.95 has false-alarm probability 0.001 for a true sampler
    d = scipy_stats.kstest(x, "norm", args=(0, 2.0)).statistic
    assert d * math.sqrt(N) < 1.95
    assert np.array_equal(gaussian_noise(5, 1.0, key=b"k" * 16), gaussian_noise(5, 1.0, key=b"k" * 16))
    assert not np.array_equal(gaussian_noise(5, 1.0, key=b"k" * 16), gaussian_noise(5, 1.0, key=b"j" * 16))
    assert np.array_equal(discrete_gaussian(7, 4.0, key=b"k" * 16), discrete_gaussian(7, 4.0, key=b"k" * 16))


def test_distributed_noise_sums_to_the_central_variance():
    k, sigma = 10, 20.0
    per = distributed_sigma(sigma, k)
    total = sum(discrete_gaussian(50_000, per, key=bytes([c]) * 16) for c in range(k))
    assert abs(total.var() - sigma**2) < 6 * sigma**2 * math.sqrt(2.5 / 50_000)
    with pytest.raises(ConfigurationError, match="num_clients"):
        distributed_sigma(1.0, 0)


def _exact_gaussian_epsilon(mu, delta):
    """Balle & Wang (ICML 2018) Thm 8: the Gaussian mechanism with sensitivity/sigma = mu has
    delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2); solve for eps."""
    from scipy.optimize import brentq

    phi = scipy_stats.norm.cdf
    f = lambda e: phi(-e / mu + mu / 2) - math.exp(e) * phi(-e / mu - mu / 2) - delta
    return brentq(f, 0.0, 100.0)


def test_accountant_full_participation_matches_the_analytic_gaussian():
    """T rounds of the Gaussian mechanism with multiplier z compose to one with z / sqrt(T) (q = 1)."""
    pytest.importorskip("dp_accounting", reason=NEEDS_DP)
    t, z, delta = 100, 10.0, 1e-5
    exact = _exact_gaussian_epsilon(math.sqrt(t) / z, delta)
    assert abs(exact - 4.3772) < 1e-3
    assert abs(epsilon_after(t, z, 1.0, delta, method="pld") - exact) < 0.02
    rdp = epsilon_after(t, z, 1.0, delta, method="rdp")
    a = np.linspace(1.01, 500, 200_000)
    mironov = float(np.min(t * a / (2 * z * z) + math.log(1 / delta) / (a - 1)))
    assert exact <= rdp <= mironov + 1e-6  # RDP is an upper bound, at least as tight as Mironov's Prop. 3


def test_accountant_against_abadi_et_al():
    """Abadi et al. (CCS 2016, sec. 3.1): q = 0.01, sigma = 4, T = 10,000, delta = 1e-5 gives eps ~ 1.26 with the
    moments accountant; RDP with the improved conversion is tighter, PLD tighter still."""
    pytest.importorskip("dp_accounting", reason=NEEDS_DP)
    rdp = epsilon_after(10_000, 4.0, 0.01, 1e-5)
    pld = epsilon_after(10_000, 4.0, 0.01, 1e-5, method="pld")
    assert pld <= rdp <= 1.26
    assert abs(rdp - 1.035) < 0.01 and abs(pld - 0.947) < 0.01


def test_privacy_accountant_reports_per_round():
    pytest.importorskip("dp_accounting", reason=NEEDS_DP)
    acc = PrivacyAccountant(1.1, 0.01, 1e-5)
    eps = [acc.step()[0] for _ in range(3)]
    assert eps == sorted(eps) and eps[0] > 0 and acc.spent() == (eps[-1], 1e-5)
    with pytest.raises(ConfigurationError, match="sampling_rate"):
        PrivacyAccountant(1.0, 1.5, 1e-5)
    with pytest.raises(ConfigurationError, match="delta"):
        PrivacyAccountant(1.0, 0.5, 0.0)
    with pytest.raises(ConfigurationError, match="noise_multiplier"):
        PrivacyAccountant(0.0, 0.5, 1e-5)
