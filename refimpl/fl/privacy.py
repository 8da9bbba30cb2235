"""Differential privacy for federated averaging: L2 clipping, Gaussian / discrete Gaussian noise, accounting.

* :func:`clip_l2` -- per-client clipping ``u * min(1, C / ||u||_2)``: one client's (weighted, ``w <= 1``)
  contribution to the sum then has L2 sensitivity ``C``.
* **Central DP** -- :func:`gaussian_noise` adds ``N(0, (z C)^2)`` to the aggregate (the party adding it sees the
  noiseless sum).
* **Distributed DP** -- each of ``K`` clients adds :func:`discrete_gaussian` noise of variance ``(z C s)^2 / K`` to its
  fixed-point encoding (scale ``s``) before secure aggregation, so no party ever sees a noiseless sum
  (Kairouz, Liu, Steinke, ICML 2021). The sum of K discrete Gaussians is not exactly a discrete Gaussian; for
  ``sigma / sqrt(K) >= 1`` (integer units) the difference is negligible (their Theorem 14 bounds it) and the
  accountant treats the summed noise as ``N(0, (z C)^2)``.
* :class:`PrivacyAccountant` -- (epsilon, delta) after each round, with ``dp_accounting`` (RDP or PLD), for Poisson
  client sampling at rate ``q`` and noise multiplier ``z``. FedAvg samples a fixed-size cohort without
  replacement; accounting it as Poisson sampling at ``q = m / K`` is the usual approximation (McMahan et al. 2018).

All noise is drawn from keyed :class:`~refimpl.prg.Stream` s (AES-128-CTR / ChaCha20), never from NumPy's or
Python's non-cryptographic generators.
Uniforms are 53-bit: ``u = (w >> 11 + 1/2) 2^-53`` for 64-bit keystream words ``w``, so ``0 < u < 1``.

Example:
    >>> import numpy as np
    >>> clip_l2(np.array([[3.0, 4.0], [0.3, 0.4]]), 1.0)[0].tolist()
    [[0.6000000000000001, 0.8], [0.3, 0.4]]
    >>> discrete_gaussian(5, 2.0, key=bytes(16)).tolist()
    [-1, 0, -3, -1, 0]

References:
    C. Dwork, A. Roth, "The Algorithmic Foundations of Differential Privacy", 2014 (Gaussian mechanism).
    C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy", NeurIPS 2020, Alg. 3.
    P. Kairouz, Z. Liu, T. Steinke, "The Distributed Discrete Gaussian Mechanism for Federated Learning with
    Secure Aggregation", ICML 2021.
    I. Mironov, "Renyi Differential Privacy", CSF 2017; M. Abadi et al., "Deep Learning with Differential Privacy",
    CCS 2016.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl._checks import check_key
from refimpl.errors import ConfigurationError, ShapeMismatchError
from refimpl.prg import Stream, derive_key

__all__ = [
    "clip_l2",
    "uniform01",
    "gaussian_noise",
    "discrete_gaussian",
    "discrete_gaussian_exact",
    "distributed_sigma",
    "PrivacyAccountant",
    "epsilon_after",
]


def clip_l2(updates: ArrayLike, clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip each row of ``updates`` (shape ``(m, d)``) to L2 norm at most ``clip``.

    Returns:
        ``(clipped, norms)``: the clipped rows (float64) and each row's norm before clipping.

    Raises:
        ConfigurationError: ``clip`` not positive and finite. ValueError: non-finite updates.
    """
    c = _positive(clip, "clip")
    u = np.asarray(updates, dtype=np.float64)
    if u.ndim != 2:
        raise ValueError(f"clip_l2 takes a (clients, coordinates) array, got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError("updates hold non-finite values; cannot clip NaN or infinity")
    norms = np.linalg.norm(u, axis=1)
    factor = np.minimum(1.0, c / np.maximum(norms, np.finfo(np.float64).tiny))
    return u * factor[:, None], norms


def _positive(value: Any, what: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and float(value) > 0):
        raise ConfigurationError(f"{what} must be positive and finite, got {value!r}")
    return float(value)


def _stream(key: bytes, purpose: str, cipher: str) -> Stream:
    klen = 16 if cipher == "aes128-ctr" else 32
    return Stream(derive_key(check_key(key), "fl/privacy", purpose, length=klen), cipher=cipher)


def uniform01(stream: Stream, n: int) -> np.ndarray:
    """``n`` uniforms in the open interval (0, 1) with 53 random bits each, from a keyed stream."""
    w = np.empty(int(n), dtype=np.uint64)
    stream.read_into(w)
    return ((w >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def gaussian_noise(shape: int | tuple[int, ...], std: float, *, key: bytes, cipher: str = "aes128-ctr") -> np.ndarray:
    """Continuous Gaussian noise ``N(0, std^2)`` by Box-Muller on stream uniforms (central DP).

    Floating-point Gaussian samplers leak through their low-order bits (Mironov, CCS 2012); for noise that protects
    values that a party might inspect bit by bit, prefer :func:`discrete_gaussian` on integer encodings.
    """
    std = _positive(std, "std") if std != 0 else 0.0
    shape, n = _noise_shape(shape)
    s = _stream(key, "gaussian", cipher)
    u1, u2 = uniform01(s, n), uniform01(s, n)
    return (std * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(shape)


MAX_NOISE_ELEMENTS = 2**31
"""The most noise values one call draws (16 GiB of int64): a larger shape is refused, not attempted."""


def _noise_shape(shape: Any) -> tuple[tuple[int, ...], int]:
    """``shape`` as a tuple of non-negative ints and its element count, checked (exact, no int64 wrap)."""
    dims = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and int(d) >= 0 for d in dims):
        raise ShapeMismatchError(f"a noise shape is non-negative integers, got {shape!r}")
    n = math.prod(int(d) for d in dims)
    if n > MAX_NOISE_ELEMENTS:
        raise ConfigurationError(f"noise shape {shape!r} has {n} elements, more than {MAX_NOISE_ELEMENTS}")
    return tuple(int(d) for d in dims), n


def discrete_gaussian(shape: int | tuple[int, ...], sigma: float, *, key: bytes,
                      cipher: str = "aes128-ctr") -> np.ndarray:
    """Discrete Gaussian noise: ``P(X = x)`` proportional to ``exp(-x^2 / (2 sigma^2))`` on the integers.

    Canonne-Kamath-Steinke Algorithm 3, vectorised: with ``t = floor(sigma) + 1``, draw a discrete Laplace
    ``Y`` of scale ``t`` (a difference of two geometric variables with ratio ``exp(-1/t)``) and accept it with
    probability ``exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2))``; repeat for the rejected ones. The geometric and the
    Bernoulli draws use 53-bit stream uniforms and float64 ``log``/``exp`` (CKS's Algorithm 1 decides them exactly
    with rational arithmetic; here each probability is off by at most a few units in the 53rd bit).

    Args:
        shape: output shape.
        sigma: the scale (the variance is close to ``sigma^2`` for ``sigma >= 1``).
        key: 16 or 32 bytes; the same key gives the same noise.
        cipher: the stream cipher.

    Returns:
        int64 array.
    """
    sigma = _positive(sigma, "sigma")
    shape, n = _noise_shape(shape)
    s = _stream(key, "discrete-gaussian", cipher)
    t = math.floor(sigma) + 1
    log_q = -1.0 / t
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        m = todo.size
        g1 = np.floor(np.log(uniform01(s, m)) / log_q)
        g2 = np.floor(np.log(uniform01(s, m)) / log_q)
        y = g1 - g2
        accept = uniform01(s, m) < np.exp(-((np.abs(y) - sigma**2 / t) ** 2) / (2 * sigma**2))
        out[todo[accept]] = y[accept].astype(np.int64)
        todo = todo[~accept]
    return out.reshape(shape)


class _Uniforms:
    """Uniform integers below any bound from a keyed stream: 64-bit words, rejection below ``2^64``; above it,
    ``bits + 128`` random bits reduced (statistical distance < ``2^-128``)."""

    def __init__(self, stream: Stream) -> None:
        self._stream, self._buf, self._pos = stream, np.empty(0, np.uint64), 0

    def _word(self) -> int:
        if self._pos == self._buf.size:
            self._buf = np.empty(4096, dtype=np.uint64)
            self._stream.read_into(self._buf)
            self._pos = 0
        self._pos += 1
        return int(self._buf[self._pos - 1])

    def below(self, n: int) -> int:
        if n <= 2**64:
            limit = 2**64 - 2**64 % n
            while True:
                w = self._word()
                if w < limit:
                    return w % n
        words = (n.bit_length() + 128 + 63) // 64
        return sum(self._word() << (64 * i) for i in range(words)) % n

    def bernoulli(self, p: Fraction) -> bool:
        return self.below(p.denominator) < p.numerator


def _bernoulli_exp(u: _Uniforms, gamma: Fraction) -> bool:
    """Bernoulli(exp(-gamma)) for rational gamma >= 0, exactly (CKS Algorithm 1)."""
    while gamma > 1:
        if not _bernoulli_exp(u, Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while u.bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def discrete_gaussian_exact(n: int, sigma: float | Fraction, *, key: bytes, cipher: str = "aes128-ctr") -> np.ndarray:
    """``n`` exact discrete Gaussian samples (CKS Algorithms 1-3 with rational arithmetic), the reference sampler.

    ``sigma`` is used as the exact rational it denotes (a float is its binary value). Uniform integers come from a
    keyed stream by rejection, so the only deviation from the ideal distribution is the stream's own
    (computational) one, plus at most ``2^-128`` statistical distance for denominators above ``2^64``. Pure Python,
    a few thousand samples per second; :func:`discrete_gaussian` is the vectorised version.

    Example:
        >>> discrete_gaussian_exact(6, 1.5, key=bytes(16)).tolist()
        [0, 1, -1, 0, -2, -1]
    """
    sig = Fraction(sigma)
    if not sig > 0:
        raise ConfigurationError(f"sigma must be positive, got {sigma!r}")
    u = _Uniforms(_stream(key, "discrete-gaussian-exact", cipher))
    s2 = sig * sig
    t = math.floor(sig) + 1
    out = np.empty(int(n), dtype=np.int64)
    for i in range(int(n)):
        while True:
            # discrete Laplace of scale t (CKS Algorithm 2 with s = 1)
            x = u.below(t)
            if not _bernoulli_exp(u, Fraction(x, t)):
                continue
            v = 0
            while _bernoulli_exp(u, Fraction(1)):
                v += 1
            y = x + t * v
            negative = u.below(2) == 1
            if negative and y == 0:
                continue
            y = -y if negative else y
            if _bernoulli_exp(u, (abs(y) - s2 / t) ** 2 / (2 * s2)):
                out[i] = y
                break
    return out


def distributed_sigma(central_sigma: float, num_clients: int) -> float:
    """Each client's discrete-Gaussian scale so that the K clients' noise sums to variance ``central_sigma^2``."""
    if num_clients < 1:
        raise ConfigurationError(f"num_clients must be at least 1, got {num_clients}")
    return _positive(central_sigma, "central_sigma") / math.sqrt(num_clients)


# dp_accounting's default orders without those below 1.5, whose series it may fail to converge (and log about)
_RDP_ORDERS = [1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5, *range(5, 64), 80, 96, 128, 256, 512, 1024]


def epsilon_after(rounds: int, noise_multiplier: float, sampling_rate: float, delta: float, *,
                  method: str = "rdp") -> float:
    """epsilon of ``rounds`` rounds of the Poisson-subsampled Gaussian mechanism at (z, q), for ``delta``.

    Example:
        >>> round(epsilon_after(10000, 4.0, 0.01, 1e-5), 2)   # Abadi et al. 2016 report 1.26 (moments acct.)
        1.04
    """
    try:
        import dp_accounting
        from dp_accounting import pld, rdp
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("privacy accounting (--noise-multiplier > 0) needs the package 'dp-accounting': "
                                  "pip install 'refimpl[dp]'", name="dp_accounting") from e

    if method not in ("rdp", "pld"):
        raise ValueError(f"method must be 'rdp' or 'pld', got {method!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 0:
        raise ConfigurationError(f"rounds must be a non-negative integer, got {rounds!r}")
    if rounds == 0:
        return 0.0
    z = _positive(noise_multiplier, "noise_multiplier")
    if not 0 < sampling_rate <= 1:
        raise ConfigurationError(f"sampling_rate must lie in (0, 1], got {sampling_rate!r}")
    if not 0 < delta < 1:
        raise ConfigurationError(f"delta must lie in (0, 1), got {delta!r}")
    event: Any = dp_accounting.GaussianDpEvent(z)
    if sampling_rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    acct: Any = rdp.RdpAccountant(_RDP_ORDERS) if method == "rdp" else pld.PLDAccountant()
    acct.compose(dp_accounting.SelfComposedDpEvent(event, int(rounds)))
    return float(acct.get_epsilon(delta))


class PrivacyAccountant:
    """Tracks (epsilon, delta) round by round for FedAvg with client sampling rate q and noise multiplier z.

    Example:
        >>> acc = PrivacyAccountant(noise_multiplier=1.1, sampling_rate=0.01, delta=1e-5)
        >>> [round(acc.step()[0], 3) for _ in range(2)]
        [0.775, 0.816]
    """

    def __init__(self, noise_multiplier: float, sampling_rate: float, delta: float, *, method: str = "rdp") -> None:
        self.noise_multiplier, self.sampling_rate, self.delta, self.method = (
            _positive(noise_multiplier, "noise_multiplier"), float(sampling_rate), float(delta), method)
        epsilon_after(1, self.noise_multiplier, self.sampling_rate, self.delta, method=method)  # validates
        self.rounds = 0

    def step(self) -> tuple[float, float]:
        """Account one more round; return ``(epsilon, delta)`` spent so far."""
        self.rounds += 1
        return self.spent()

    def spent(self) -> tuple[float, float]:
        """``(epsilon, delta)`` after the rounds so far."""
        eps = epsilon_after(self.rounds, self.noise_multiplier, self.sampling_rate, self.delta, method=self.method)
        return eps, self.delta
