"""Secure aggregation as a FedAvg aggregation step: ``make_secure_aggregator(...)(updates, weights) -> mean``.

The returned callable has the contract of :func:`refimpl.fl.server.weighted_mean` (``updates``: dict of arrays with
a leading client axis; ``weights``: the clients' sample counts) and plugs into ``FedAvg(aggregate=...)``. Per call
(one FedAvg round, numbered by the aggregator itself):

1. flatten each client's update to one vector; optionally clip it to L2 norm ``clip`` (:func:`privacy.clip_l2`);
2. scale by ``w_k = n_k / max(n)`` (so every coordinate stays within the clip range);
3. encode: fixed point (``frac_bits``), plus each client's share of distributed discrete-Gaussian noise; or
   stochastic quantization to ``bits`` bits (optionally after a random Hadamard rotation);
4. aggregate with the chosen protocol (``"additive"``: S servers, seed-compressed shares; ``"secagg"``: Bonawitz
   et al. with threshold t), clients dropping out with probability ``dropout`` at a random stage;
5. decode the survivors' total, add central Gaussian noise if asked, divide by the survivors' total weight
   (the weights are public in this server) -- or by their number when DP is on, as in DP-FedAvg.

Distributed noise is calibrated to the ``floor(m (1 - dropout))`` clients expected to survive, so the noise in
the total has variance at least ``(z C)^2`` while that many survive (Kairouz et al. 2021, sec. 5).

Every random choice (dropouts, dither, noise, rotation signs, share and mask streams) comes from streams keyed by
``derive_key(key, ..., round, client)``. A round that aborts (too few survivors for the threshold) returns a zero
update and is recorded in :attr:`SecureAggregator.history`.

Example:
    >>> import numpy as np
    >>> agg = make_secure_aggregator("additive", servers=3, key=bytes(16))
    >>> upd = {"w": np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)}
    >>> np.round(agg(upd, np.array([1.0, 3.0]))["w"], 4).tolist()    # within the fixed-point bound
    [2.5, 5.0]
    >>> agg.history[-1].round, agg.history[-1].survivors, agg.round
    (0, 2, 1)

References:
    H. B. McMahan, D. Ramage, K. Talwar, L. Zhang, "Learning Differentially Private Recurrent Language Models",
    ICLR 2018 (DP-FedAvg); Kairouz, Liu, Steinke, ICML 2021 (distributed discrete Gaussian).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from refimpl.errors import ConfigurationError, ThresholdError
from refimpl.fl import compress, privacy
from refimpl.prg import Stream, derive_key, fresh_key
from refimpl.ring import Z2_64, Ring
from refimpl.secagg import STAGES, AdditiveConfig, AdditiveServer, SecAggConfig, run_additive_round, run_secagg_round

__all__ = [
    "PROTOCOLS",
    "RoundReport",
    "SecureAggregator",
    "add_arguments",
    "from_args",
    "make_secure_aggregator",
    "round_metrics",
]

PROTOCOLS = ("additive", "secagg")


class RoundReport(NamedTuple):
    """What one secure round did: cohort size, survivors, bytes, upload ratio vs the encoded update, abort flag."""

    round: int
    clients: int
    survivors: int
    upload_bytes_per_client: float
    upload_ratio: float
    aborted: bool


@dataclass
class SecureAggregator:
    """A stateful FedAvg aggregator running secure aggregation; see :func:`make_secure_aggregator`."""

    protocol: str = "additive"
    servers: int = 2
    threshold: int | None = None
    dropout: float = 0.0
    clip: float | None = None
    value_range: float = 64.0
    noise_multiplier: float = 0.0
    noise: str = "distributed"
    bits: int | None = None
    frac_bits: int = 32
    rotate: bool = False
    ring: Ring = Z2_64
    key: bytes = field(default_factory=lambda: fresh_key(16), repr=False)
    round: int = 0
    history: list[RoundReport] = field(default_factory=list)
    # the (m, d) int64 fixed-point encodings, reused round after round: on a fresh array of that size the page
    # faults cost more than the arithmetic (a call is not re-entrant, as the round counter already implies)
    _scratch: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    # the S additive aggregators, kept from round to round while the configuration stays the same (so they reuse
    # their share buffers; round numbers increase, as they check)
    _servers: list[AdditiveServer] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigurationError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigurationError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.clip is not None:
            privacy._positive(self.clip, "clip")
        privacy._positive(self.value_range, "value_range")
        if self.noise not in ("distributed", "central"):
            raise ConfigurationError(f"noise must be 'distributed' or 'central', got {self.noise!r}")
        if self.noise_multiplier < 0 or not math.isfinite(self.noise_multiplier):
            raise ConfigurationError(f"noise_multiplier must be >= 0 and finite, got {self.noise_multiplier!r}")
        if self.noise_multiplier > 0 and self.clip is None:
            raise ConfigurationError("differential privacy needs an L2 clip: set clip when noise_multiplier > 0")
        if self.noise_multiplier > 0 and self.bits is not None and self.noise == "distributed":
            raise ConfigurationError("distributed noise is implemented for fixed-point encoding; use noise='central' "
                                     "with bits, or drop bits")
        if self.bits is not None:
            compress._check_bits(self.bits)

    @property
    def _range(self) -> float:
        return float(self.clip) if self.clip is not None else self.value_range

    def __call__(self, updates: dict[str, Any], weights: Any) -> dict[str, np.ndarray]:
        names = sorted(updates)
        leaves = [np.asarray(updates[k]) for k in names]  # host arrays as they come (JAX: no float64 copy)
        m = leaves[0].shape[0]
        shapes = [a.shape[1:] for a in leaves]
        rows = [a.reshape(m, -1) for a in leaves]
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (m,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.max() <= 0:
            raise ValueError(f"weights must be {m} finite non-negative numbers, not all zero; got {w}")
        r = self.round
        self.round += 1
        dp = self.noise_multiplier > 0
        scale_w = np.ones(m) if dp else w / w.max()
        contrib = fixed = None
        if self.clip is None and self.bits is None:  # fixed point straight from the leaves (no clip, so no DP)
            fixed = self._encode_rows(rows, scale_w)
        else:
            # one pass: each leaf is converted to float64 (exact) straight into the (m, d) array
            u = np.concatenate(rows, axis=1, dtype=np.float64, casting="unsafe")
            if self.clip is not None:
                u, _ = privacy.clip_l2(u, self.clip)
            contrib = np.multiply(u, scale_w[:, None], out=u)  # u is this call's own array (clip_l2's too)
        try:
            total, survivors, upload, encoded = self._aggregate(contrib, r, fixed)
        except ThresholdError:
            self.history.append(RoundReport(r, m, 0, 0.0, 0.0, True))
            return {k: np.zeros(s, np.float32) for k, s in zip(names, shapes)}
        if dp and self.noise == "central":
            total = total + privacy.gaussian_noise(total.shape, self.noise_multiplier * self._range,
                                                   key=derive_key(self.key, "central-noise", r))
        denom = float(len(survivors)) if dp else float(scale_w[sorted(survivors)].sum())
        # total is this round's own float64 array (decoded, dequantized or noised): divided in place
        mean = np.divide(total, denom, out=total) if total.dtype == np.float64 else total / denom
        self.history.append(RoundReport(r, m, len(survivors), upload, upload / encoded, False))
        out, pos = {}, 0
        for k, s in zip(names, shapes):
            size = int(np.prod(s, dtype=np.int64))
            out[k] = mean[pos:pos + size].reshape(s).astype(np.float32)
            pos += size
        return out

    def _dropouts(self, m: int, r: int) -> dict[int, int]:
        """``{client index: stage index}`` for the clients that drop this round (keyed, reproducible)."""
        if self.dropout == 0:
            return {}
        s = Stream(derive_key(self.key, "dropout", r))
        u = privacy.uniform01(s, 2 * m)
        return {i: int(u[m + i] * 4) for i in range(m) if u[i] < self.dropout}

    def _encode_rows(self, rows: list[np.ndarray], scale_w: np.ndarray) -> np.ndarray:
        """``np.rint(u * scale_w[:, None] * 2.0**frac_bits).astype(np.int64)`` for ``u``, the float64 (m, d)
        concatenation of ``rows`` (each (m, d_j)), bit for bit -- computed leaf by leaf, client by client and
        chunk by chunk through one small float64 buffer into the reused int64 scratch array (no (m, d) float64
        temporaries).

        ``(u * s) * 2^f`` is computed as ``u * (s * 2^f)``: the same float64 for every input, since scaling by a
        power of two is exact and commutes with rounding except where the product underflows (then |u s| <
        2^-1022 and both round to 0) or overflows (inf either way); NaN stays NaN."""
        m, d = rows[0].shape[0], sum(a.shape[1] for a in rows)
        if self._scratch is None or self._scratch.shape != (m, d):
            self._scratch = np.empty((m, d), dtype=np.int64)
        enc, step = self._scratch, 1 << 16  # 512 KiB of float64: stays in cache between the three steps
        buf = np.empty(step, dtype=np.float64)
        factors = scale_w * 2.0**self.frac_bits  # exact: a power-of-two scaling
        pos = 0
        for a in rows:
            width = a.shape[1]
            for i in range(m):
                for lo in range(0, width, step):
                    hi = min(width, lo + step)
                    t = buf[: hi - lo]
                    np.multiply(a[i, lo:hi], factors[i], out=t, dtype=np.float64, casting="unsafe")
                    np.rint(t, out=t)
                    enc[i, pos + lo : pos + hi] = t  # the cast astype(np.int64) makes, NaN and overflow included
            pos += width
        return enc

    def _aggregate(self, contrib: np.ndarray | None, r: int, fixed: np.ndarray | None = None
                   ) -> tuple[np.ndarray, set[int], float, float]:
        """One secure round over the scaled updates ``contrib`` (m, d); ``fixed``: their fixed-point encoding
        already made by :meth:`_encode_rows` (then ``contrib`` is None)."""
        m, d = fixed.shape if fixed is not None else contrib.shape  # type: ignore[union-attr]
        c = self._range
        rot_key = derive_key(self.key, "rotation", r)
        if self.bits is not None:
            assert contrib is not None  # quantization always gets the scaled updates (fixed is fixed point only)
            x = compress.hadamard_rotate(contrib, key=rot_key) if self.rotate else contrib
            x = np.clip(x, -c, c)  # a rotated vector keeps its L2 norm <= c, so this only guards rounding
            enc = np.stack([compress.stochastic_quantize(x[i], self.bits, c, key=derive_key(self.key, "dither", r, i))
                            for i in range(m)])
            codec: dict[str, Any] = {"bits": self.bits, "clip": None}
        else:
            if fixed is not None:
                enc_fp = fixed
            else:  # contrib is __call__'s own array: scaled and rounded in place
                assert contrib is not None
                enc_fp = np.rint(np.multiply(contrib, 2.0**self.frac_bits, out=contrib), out=contrib).astype(np.int64)
            headroom = 0
            if self.noise_multiplier > 0 and self.noise == "distributed":
                # calibrated to the clients expected to survive, so the survivors' noise still reaches sigma^2
                expected = max(1, math.floor(m * (1 - self.dropout)))
                sigma = privacy.distributed_sigma(self.noise_multiplier * c * 2**self.frac_bits, expected)
                headroom = math.ceil(12 * sigma)
                for i in range(m):
                    noise = privacy.discrete_gaussian(d, sigma, key=derive_key(self.key, "dgauss", r, i))
                    enc_fp[i] += np.clip(noise, -headroom, headroom)
            enc = enc_fp
            codec = {"clip": c, "frac_bits": self.frac_bits, "headroom": headroom}
        length = enc.shape[1]
        ring = self.ring
        if self.bits is not None and m * (2**self.bits - 1) <= 2**32 - 1:
            ring = Ring(2**32)  # quantized sums fit 32 bits: half the bytes of Z_2^64
        drops = self._dropouts(m, r)
        contributions = {i + 1: enc[i] for i in range(m)}
        keys = {i + 1: derive_key(self.key, "client", r, i) for i in range(m)}
        if self.protocol == "additive":
            cfg = AdditiveConfig(length=length, servers=self.servers, max_clients=m, ring=ring, **codec)
            lost = set()
            for i, stage in drops.items():  # the upload reaches only the first `stage mod S` servers
                lost |= {(i + 1, s) for s in range(stage % self.servers, self.servers)}
            kept = self._servers
            if not (kept and kept[0].config == cfg and (kept[0].round is None or kept[0].round < r)):
                kept = self._servers = [AdditiveServer(cfg, s) for s in range(cfg.servers)]
            res = run_additive_round(cfg, contributions, round_=r, keys=keys, encoded=True, lost=lost,
                                     servers=kept)
            survivors = {cid - 1 for cid in res.clients}
            traffic, decoded = res.traffic, res.total
            decode = cfg.codec
        else:
            t = self.threshold if self.threshold is not None else m // 2 + 1
            cfg2 = SecAggConfig(num_clients=m, threshold=min(max(t, 2), m), length=length, ring=ring, **codec)
            res2 = run_secagg_round(cfg2, contributions, round_=r, keys=keys, encoded=True,
                                    dropouts={i + 1: STAGES[s] for i, s in drops.items()})
            survivors = {cid - 1 for cid in res2.clients}
            traffic, decoded = res2.traffic, res2.total
            decode = cfg2.codec
        # the round functions already decoded the ring total with this codec: decoded = decode.decode_sum(ring_total)
        if self.bits is not None:
            total = compress.dequantize_sum(decoded, len(survivors), self.bits, c)
            if self.rotate:
                total = compress.hadamard_rotate(total, key=rot_key, inverse=True)[:d]
        else:
            total = decoded
        full = [i + 1 for i in range(m) if i not in drops]
        upload = float(np.mean([traffic.sent(f"client {cid}") for cid in full])) if full else 0.0
        return total, survivors, upload, float(decode.encoded_nbytes)


def make_secure_aggregator(protocol: str = "additive", *, servers: int = 2, threshold: int | None = None,
                           dropout: float = 0.0, clip: float | None = None, noise_multiplier: float = 0.0,
                           noise: str = "distributed", bits: int | None = None, frac_bits: int = 32,
                           rotate: bool = False, value_range: float = 64.0, ring: Ring = Z2_64,
                           key: bytes | None = None) -> SecureAggregator:
    """A FedAvg aggregation step that runs secure aggregation (see the module docstring).

    Args:
        protocol: ``"additive"`` (S-server) or ``"secagg"`` (single server, Bonawitz et al.).
        servers: S for the additive protocol.
        threshold: t for SecAgg (default ``floor(m/2) + 1`` of the round's m clients).
        dropout: probability that a client drops at a random stage of a round.
        clip: L2 clip C (required for DP); without it each coordinate must lie within ``value_range``.
        noise_multiplier: z; the noise standard deviation is ``z C`` on the sum (0: no DP).
        noise: ``"distributed"`` (clients add discrete Gaussian shares before aggregation) or ``"central"``.
        bits: quantize to this many bits instead of fixed point.
        frac_bits: fixed-point fractional bits (32: the encoding error 2^-33 is below float32 resolution for
            updates above ~1e-3, and Z_2^64 still holds the sum of 2^25 clients at value_range 64).
        rotate: random Hadamard rotation before quantization.
        value_range: coordinate bound when ``clip`` is None (encoding refuses larger values).
        ring: Z_2^64 (default) or Z_2^32 for the fixed-point shares (quantized shares use Z_2^32 when they fit).
        key: master key of all the aggregator's randomness (None: fresh from the OS).

    Raises:
        ConfigurationError: inconsistent or out-of-range options.
    """
    return SecureAggregator(protocol=protocol, servers=servers, threshold=threshold, dropout=dropout, clip=clip,
                            value_range=value_range, noise_multiplier=noise_multiplier, noise=noise, bits=bits,
                            frac_bits=frac_bits, rotate=rotate, ring=ring, key=fresh_key(16) if key is None else key)


# ---------------------------------------------------------------- command-line wiring (used by refimpl.fl.train)
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the secure-aggregation and privacy flags to the ``train`` parser (one argument group).

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_arguments(p)
        >>> a = p.parse_args(["--secure", "secagg", "--threshold", "6", "--dropout", "0.3"])
        >>> a.secure, a.servers, a.threshold, a.dropout, a.bits
        ('secagg', 2, 6, 0.3, None)
    """
    g = parser.add_argument_group("secure aggregation and differential privacy (refimpl.fl.secure)")
    g.add_argument("--secure", choices=("none", *PROTOCOLS), default="additive",
                   help="aggregation: multi-server additive sharing, single-server SecAgg, or none (plaintext)")
    g.add_argument("--servers", type=int, default=2, help="aggregators S for --secure additive")
    g.add_argument("--threshold", type=int, default=None, help="SecAgg Shamir threshold t (default m//2 + 1)")
    g.add_argument("--dropout", type=float, default=0.0, help="probability a client drops at a random stage")
    g.add_argument("--clip", type=float, default=None, help="per-client L2 clip C (needed for DP)")
    g.add_argument("--noise-multiplier", type=float, default=0.0, help="DP noise z: std z*C on the sum (0: off)")
    g.add_argument("--noise", choices=("distributed", "central"), default="distributed",
                   help="distributed discrete Gaussian added by clients, or central Gaussian added to the sum")
    g.add_argument("--delta", type=float, default=1e-5, help="DP delta for the reported epsilon")
    g.add_argument("--bits", type=int, default=None, help="stochastic quantization to b bits (default: fixed point)")
    g.add_argument("--rotate", action="store_true", help="random Hadamard rotation before quantization")
    g.add_argument("--frac-bits", type=int, default=32, help="fixed-point fractional bits")
    g.add_argument("--ring-bits", type=int, choices=(32, 64), default=64,
                   help="shares live in Z_2^32 or Z_2^64 (32 with --frac-bits 16: upload = float32 update size)")
    g.add_argument("--fresh-keys", action="store_true",
                   help="draw the aggregation keys from the OS (default: derived from --seed, reproducible)")


def from_args(args: argparse.Namespace, *, start_round: int = 0
              ) -> tuple[SecureAggregator | None, privacy.PrivacyAccountant | None]:
    """The aggregator (None for ``--secure none``) and the accountant (None without noise) for parsed flags.

    ``start_round`` (a resumed run's round) sets both counters, so streams stay domain-separated by round and
    epsilon accumulates over the whole run.

    Raises:
        ConfigurationError: inconsistent flags, e.g. ``--noise-multiplier`` without ``--clip``.
    """
    key = fresh_key(16) if args.fresh_keys else hashlib.sha256(f"refimpl/train/{args.seed}".encode()).digest()[:16]
    agg = None
    if args.secure != "none":
        agg = make_secure_aggregator(args.secure, servers=args.servers, threshold=args.threshold,
                                     dropout=args.dropout, clip=args.clip, noise_multiplier=args.noise_multiplier,
                                     noise=args.noise, bits=args.bits, rotate=args.rotate, frac_bits=args.frac_bits,
                                     ring=Ring(2**args.ring_bits), key=key)
        agg.round = start_round
    elif args.noise_multiplier > 0:
        raise ConfigurationError("--noise-multiplier needs secure aggregation (--secure additive|secagg)")
    acct = None
    if args.noise_multiplier > 0:
        acct = privacy.PrivacyAccountant(args.noise_multiplier, args.fraction, args.delta)
        acct.rounds = start_round
    return agg, acct


def round_metrics(agg: SecureAggregator | None, acct: privacy.PrivacyAccountant | None) -> dict[str, Any]:
    """Per-round metrics for ``metrics.jsonl``: survivors, upload bytes per client, abort flag, (epsilon, delta).

    Call once after each round (it advances the accountant).
    """
    out: dict[str, Any] = {}
    if agg is not None and agg.history:
        rep = agg.history[-1]
        out.update(secure=agg.protocol, survivors=rep.survivors, aborted=rep.aborted,
                   bytes_up_per_client=rep.upload_bytes_per_client, upload_ratio=rep.upload_ratio)
    if acct is not None:
        out["epsilon"], out["delta"] = acct.step()
    return out
