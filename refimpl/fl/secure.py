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

import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from refimpl._checks import check_key
from refimpl.errors import ConfigurationError, OutOfRangeError, ThresholdError
from refimpl.fl import compress, privacy
from refimpl.net.accounting import Ledger
from refimpl.prg import Stream, derive_key, fresh_key
from refimpl.ring import Z2_64, Ring
from refimpl.secagg import (
    STAGES,
    AdditiveConfig,
    AdditiveServer,
    Codec,
    SecAggConfig,
    run_additive_round,
    run_secagg_round,
)
from refimpl.secagg.codec import ScaledPieces

__all__ = [
    "PROTOCOLS",
    "RoundReport",
    "SecureAggregator",
    "make_secure_aggregator",
]

PROTOCOLS = ("additive", "secagg")


class RoundReport(NamedTuple):
    """What one secure round did: cohort size, survivors, bytes, upload ratio vs the encoded update, abort flag,
    and the release rule it ran under (SecAgg's threshold t, or the additive protocol's ``min_clients``)."""

    round: int
    clients: int
    survivors: int
    upload_bytes_per_client: float
    upload_ratio: float
    aborted: bool
    threshold: int | None = None


@dataclass
class SecureAggregator:
    """A stateful FedAvg aggregator running secure aggregation; see :func:`make_secure_aggregator`.

    ``key=None`` (the default) is the secure mode: every round, every simulated client draws its own key from the
    OS (shares, masks, dither and noise), and the server's central noise too. A ``key`` makes all of them derived
    from it (reproducible, **insecure**: whoever knows the key recovers every update). ``public_key`` seeds what is
    public anyway -- the simulated dropouts and the rotation signs -- so a run with fresh keys still drops the same
    clients on the same rounds.

    ``fused`` (default True): the additive protocol with plain fixed point (no clip, no quantization) over Z_2^32 /
    Z_2^64 runs the fused round -- the stream keys go out and are expanded by the aggregators while the updates are
    still being computed (JAX dispatches training asynchronously), then each client encodes, checks and masks its
    update in one chunked pass into a buffer reused round after round. False runs the unfused definition; both give
    bit-identical results, reports and errors (the tests compare them).

    ``parallel_clients`` (default False): True computes the in-process clients of a large round side by side on the
    sharing kernels' threads (:func:`~refimpl.secagg.additive.run_additive_round`'s ``parallel``); False: one after
    the other. Measured on the README's FedAvg round with the rounds interleaved (2 cores,
    ``bench/bench_secure_round.py --parallel-clients``): the second client thread cost about 2% more CPU time per
    round and saved no wall time: each client is a chain of short NumPy calls, and the two threads keep waiting on
    each other's GIL hand-offs (on the same updates alone: 5.8 vs 6.2 ms wall for 7.4 vs 6.2 ms of CPU). The result
    is the same either way.
    """

    protocol: str = "additive"
    servers: int = 2
    threshold: int | None = None
    min_clients: int = 2
    dropout: float = 0.0
    clip: float | None = None
    value_range: float = 64.0
    noise_multiplier: float = 0.0
    noise: str = "distributed"
    bits: int | None = None
    frac_bits: int = 32
    rotate: bool = False
    ring: Ring = Z2_64
    key: bytes | None = field(default=None, repr=False)
    public_key: bytes | None = field(default=None, repr=False)
    round: int = 0
    history: list[RoundReport] = field(default_factory=list)
    fused: bool = True
    parallel_clients: bool = False
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
        if isinstance(self.min_clients, bool) or not isinstance(self.min_clients, int) or self.min_clients < 1:
            raise ConfigurationError(f"min_clients must be a positive integer, got {self.min_clients!r}")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not isinstance(self.threshold, int)
                                           or self.threshold < 2):
            raise ConfigurationError(f"threshold must be an integer >= 2 (at most the clients per round), got "
                                     f"{self.threshold!r}")
        if self.key is not None:
            self.key = check_key(self.key)
        if self.public_key is None:
            self.public_key = self.key if self.key is not None else fresh_key(16)
        self.public_key = check_key(self.public_key, what="public_key")

    @property
    def insecure_derived_keys(self) -> bool:
        """True when every key is derived from :attr:`key` (reproducible, insecure)."""
        return self.key is not None

    def threshold_for(self, m: int) -> int:
        """The release rule for a round of ``m`` clients: SecAgg's t (``threshold``, default ``floor(m/2) + 1``,
        at least 2), or ``min_clients`` for the additive protocol.

        Raises:
            ConfigurationError: an impossible threshold, naming the valid range (never adjusted silently).
        """
        if self.protocol == "additive":
            return self.min_clients
        t = self.threshold if self.threshold is not None else max(2, m // 2 + 1)
        if m >= 2 and not 2 <= t <= m:
            raise ConfigurationError(f"threshold t={t} is impossible with {m} clients per round: the valid range "
                                     f"is 2..{m}")
        return t

    @property
    def _range(self) -> float:
        return float(self.clip) if self.clip is not None else self.value_range

    def __call__(self, updates: dict[str, Any], weights: Any) -> dict[str, np.ndarray]:
        names = sorted(updates)
        # arrays with a shape are not read yet: a JAX update may still be computing (asynchronous dispatch)
        pending = [updates[k] if isinstance(getattr(updates[k], "shape", None), tuple) else np.asarray(updates[k])
                   for k in names]
        m = pending[0].shape[0]
        shapes = [tuple(a.shape[1:]) for a in pending]
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (m,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.max() <= 0:
            raise OutOfRangeError(f"weights must be {m} finite non-negative numbers, not all zero; got {w}")
        r = self.round
        self.round += 1
        t = self.threshold_for(m)
        if self._fusable(m):
            return self._call_fused(names, pending, shapes, w, r, t)
        leaves = [np.asarray(a) for a in pending]  # host arrays as they come (JAX: no float64 copy)
        rows = [a.reshape(m, -1) for a in leaves]
        _check_finite(rows, r)
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
            self.history.append(RoundReport(r, m, 0, 0.0, 0.0, True, t))
            return {k: np.zeros(s, np.float32) for k, s in zip(names, shapes)}
        if dp and self.noise == "central":
            total = total + privacy.gaussian_noise(total.shape, self.noise_multiplier * self._range,
                                                   key=self._server_key("central-noise", r))
        denom = float(len(survivors)) if dp else float(scale_w[sorted(survivors)].sum())
        self.history.append(RoundReport(r, m, len(survivors), upload, upload / encoded, False, t))
        return _mean_leaves(total, denom, names, shapes)

    # ------------------------------------------------------------------------------------------ the fused round
    def _fusable(self, m: int) -> bool:
        """Whether this round runs fused: additive protocol, plain fixed point (no clip, so no DP; no quantization),
        a native ring (Z_2^32 / Z_2^64, little-endian host), at least the clients a release needs."""
        return (self.fused and self.protocol == "additive" and self.clip is None and self.bits is None
                and self.noise_multiplier == 0 and self.ring.modulus in (2**32, 2**64) and sys.byteorder == "little"
                and m >= max(2, self.min_clients))

    def _call_fused(self, names: list[str], pending: list[Any], shapes: list[tuple[int, ...]], w: np.ndarray, r: int,
                    t: int) -> dict[str, np.ndarray]:
        """The fused round (see the class docstring): the same protocol, keys, streams, ledger and result as the
        unfused one. The updates are read (waiting for them) only after every stream key has been sent."""
        m = len(w)
        d = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
        scale_w = w / w.max()
        words = self.ring.dtype
        if self._scratch is None or self._scratch.shape != (m, d) or self._scratch.dtype.itemsize != words.itemsize:
            self._scratch = np.empty((m, d), dtype=words)  # the clients' share buffers, reused round after round
        updates = _PendingUpdates(pending, scale_w * 2.0**self.frac_bits, self._scratch.view(words), r)
        codec = Codec(length=d, max_clients=m, clip=self._range, frac_bits=self.frac_bits, headroom=0, ring=self.ring)
        keys = self._client_keys(m, r)
        drops = self._dropouts(m, r)
        try:
            decoded, survivors, ledger = self._run_protocol(updates, codec, r, keys, drops)
        except OutOfRangeError:
            # a client's update failed its range check: the unfused round checks every update for NaN and
            # infinity before anything else, so that error (naming the first such client) comes first
            _check_finite(updates.rows, r)
            raise
        except ThresholdError:
            self.history.append(RoundReport(r, m, 0, 0.0, 0.0, True, t))
            return {k: np.zeros(s, np.float32) for k, s in zip(names, shapes)}
        full = [i + 1 for i in range(m) if i not in drops]
        upload = float(np.mean([ledger.sent(f"client {cid}") for cid in full])) if full else 0.0
        self.history.append(RoundReport(r, m, len(survivors), upload, upload / codec.encoded_nbytes, False, t))
        return _mean_leaves(decoded, float(scale_w[sorted(survivors)].sum()), names, shapes)

    # ------------------------------------------------------------------------------------------ keys and streams
    def _client_keys(self, m: int, r: int) -> dict[int, bytes]:
        """Each client's key for round ``r``: fresh from the OS, or (insecure mode) derived from :attr:`key`."""
        if self.key is None:
            return {i + 1: fresh_key(16) for i in range(m)}
        return {i + 1: derive_key(self.key, "client", r, i) for i in range(m)}

    def _client_stream_key(self, keys: dict[int, bytes], label: str, r: int, i: int) -> bytes:
        """Client ``i``'s key for its own randomness ``label`` (dither, noise): from its round key, or (insecure
        mode) derived from :attr:`key` exactly as before fresh keys were the default."""
        if self.key is None:
            return derive_key(keys[i + 1], label)
        return derive_key(self.key, label, r, i)

    def _server_key(self, label: str, r: int) -> bytes:
        return fresh_key(16) if self.key is None else derive_key(self.key, label, r)

    def _dropouts(self, m: int, r: int) -> dict[int, int]:
        """``{client index: stage index}`` for the clients that drop this round (public simulation randomness)."""
        if self.dropout == 0:
            return {}
        assert self.public_key is not None
        s = Stream(derive_key(self.public_key, "dropout", r))
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
        if self._scratch is None or self._scratch.shape != (m, d) or self._scratch.dtype.itemsize != 8:
            self._scratch = np.empty((m, d), dtype=np.int64)
        enc, step = self._scratch.view(np.int64), 1 << 16  # 512 KiB of float64: stays in cache between the three steps
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

    # ------------------------------------------------------------------------------------------ one secure round
    def _aggregate(self, contrib: np.ndarray | None, r: int, fixed: np.ndarray | None = None
                   ) -> tuple[np.ndarray, set[int], float, float]:
        """One secure round over the scaled updates ``contrib`` (m, d); ``fixed``: their fixed-point encoding
        already made by :meth:`_encode_rows` (then ``contrib`` is None).

        Returns ``(decoded total, survivors, mean upload bytes per non-dropped client, encoded update bytes)``."""
        m, d = fixed.shape if fixed is not None else contrib.shape  # type: ignore[union-attr]
        if m < max(2, self.min_clients):  # a "sum" over one client is that client's update: never released
            raise ThresholdError(f"round {r} has {m} clients, fewer than min_clients={max(2, self.min_clients)}")
        assert self.public_key is not None
        rot_key = derive_key(self.public_key, "rotation", r)
        keys = self._client_keys(m, r)
        if self.bits is not None:
            assert contrib is not None  # quantization always gets the scaled updates (fixed is fixed point only)
            enc, codec = self._quantize(contrib, r, rot_key, keys)
        else:
            enc, codec = self._fixed_point(contrib, r, fixed, keys)
        drops = self._dropouts(m, r)
        decoded, survivors, ledger = self._run_protocol(enc, codec, r, keys, drops)
        if self.bits is not None:
            total = compress.dequantize_sum(decoded, len(survivors), self.bits, self._range)
            if self.rotate:
                total = compress.hadamard_rotate(total, key=rot_key, inverse=True)[:d]
        else:
            total = decoded
        full = [i + 1 for i in range(m) if i not in drops]
        upload = float(np.mean([ledger.sent(f"client {cid}") for cid in full])) if full else 0.0
        return total, survivors, upload, float(codec.encoded_nbytes)

    def _quantize(self, contrib: np.ndarray, r: int, rot_key: bytes, keys: dict[int, bytes]
                  ) -> tuple[np.ndarray, Codec]:
        """Stochastic quantization to ``bits`` bits (after the rotation, if on), each client dithering with its own
        key; the codec of integers in ``[0, 2^bits)`` (over Z_2^32 when the sum fits 32 bits)."""
        m, c = contrib.shape[0], self._range
        x = compress.hadamard_rotate(contrib, key=rot_key) if self.rotate else contrib
        x = np.clip(x, -c, c)  # a rotated vector keeps its L2 norm <= c, so this only guards rounding
        assert self.bits is not None
        enc = np.stack([compress.stochastic_quantize(x[i], self.bits, c,
                                                     key=self._client_stream_key(keys, "dither", r, i))
                        for i in range(m)])
        ring = Ring(2**32) if m * (2**self.bits - 1) <= 2**32 - 1 else self.ring  # half the bytes of Z_2^64
        return enc, Codec(length=enc.shape[1], max_clients=m, bits=self.bits, clip=None, ring=ring)

    def _fixed_point(self, contrib: np.ndarray | None, r: int, fixed: np.ndarray | None, keys: dict[int, bytes]
                     ) -> tuple[np.ndarray, Codec]:
        """Fixed-point encoding, plus each client's share of the distributed discrete Gaussian noise (its own key);
        the codec, with headroom for that noise."""
        if fixed is not None:
            enc = fixed
        else:  # contrib is __call__'s own array: scaled and rounded in place
            assert contrib is not None
            enc = np.rint(np.multiply(contrib, 2.0**self.frac_bits, out=contrib), out=contrib).astype(np.int64)
        m, d = enc.shape
        c, headroom = self._range, 0
        if self.noise_multiplier > 0 and self.noise == "distributed":
            # calibrated to the clients expected to survive, so the survivors' noise still reaches sigma^2
            expected = max(1, math.floor(m * (1 - self.dropout)))
            sigma = privacy.distributed_sigma(self.noise_multiplier * c * 2**self.frac_bits, expected)
            headroom = math.ceil(12 * sigma)
            for i in range(m):
                noise = privacy.discrete_gaussian(d, sigma, key=self._client_stream_key(keys, "dgauss", r, i))
                enc[i] += np.clip(noise, -headroom, headroom)
        return enc, Codec(length=d, max_clients=m, clip=c, frac_bits=self.frac_bits, headroom=headroom,
                          ring=self.ring)

    def _run_protocol(self, enc: np.ndarray | Mapping[int, Any], codec: Codec, r: int, keys: dict[int, bytes],
                      drops: dict[int, int]) -> tuple[np.ndarray, set[int], Ledger]:
        """Aggregate the encoded rows (or a mapping ``{client id: encoded}``) with the configured protocol; clients in
        ``drops`` drop at the given stage. Returns the decoded total over the survivors, the survivors (0-based) and
        the round's ledger."""
        m = len(enc)
        contributions = {i + 1: enc[i] for i in range(m)} if isinstance(enc, np.ndarray) else enc
        if self.protocol == "additive":
            cfg = AdditiveConfig(codec=codec, servers=self.servers, min_clients=min(self.min_clients, m))
            lost = set()
            for i, stage in drops.items():  # the upload reaches only the first `stage mod S` servers
                lost |= {(i + 1, s) for s in range(stage % self.servers, self.servers)}
            kept = self._servers
            if not (kept and kept[0].config == cfg and (kept[0].round is None or kept[0].round < r)):
                kept = self._servers = [AdditiveServer(cfg, s) for s in range(cfg.servers)]
            res = run_additive_round(cfg, contributions, round_=r, keys=keys, encoded=True, lost=lost,
                                     servers=kept, parallel=self.parallel_clients)
            return res.total, {cid - 1 for cid in res.clients}, res.ledger
        cfg2 = SecAggConfig(num_clients=m, threshold=self.threshold_for(m), codec=codec)
        res2 = run_secagg_round(cfg2, contributions, round_=r, keys=keys, encoded=True,
                                dropouts={i + 1: STAGES[s] for i, s in drops.items()})
        return res2.total, {cid - 1 for cid in res2.clients}, res2.ledger


class _PendingUpdates(Mapping[int, ScaledPieces]):
    """``{client id (1-based): that client's update as ScaledPieces}``, read from the leaves only when first asked
    for -- the wait for an asynchronously computed (JAX) update. Each client range-checks its own update as its
    fused pass goes (NaN and infinity fail it too)."""

    def __init__(self, leaves: list[Any], factors: np.ndarray, out: np.ndarray, r: int) -> None:
        self._leaves, self._factors, self._out, self._round = leaves, factors, out, r
        self._items: dict[int, ScaledPieces] | None = None
        self.rows: list[np.ndarray] = []  # the leaves as (m, d_j) host arrays, once read

    def __len__(self) -> int:
        return len(self._factors)

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, len(self._factors) + 1))

    def __getitem__(self, cid: int) -> ScaledPieces:
        if self._items is None:
            self._items = self._load()
        return self._items[cid]

    def _load(self) -> dict[int, ScaledPieces]:
        m = len(self._factors)
        self.rows = [a for a in (np.asarray(x).reshape(m, -1) for x in self._leaves) if a.shape[1]]
        return {i + 1: ScaledPieces(tuple(a[i] for a in self.rows), float(self._factors[i]), out=self._out[i])
                for i in range(m)}


def _mean_leaves(total: np.ndarray, denom: float, names: list[str], shapes: list[tuple[int, ...]]
                 ) -> dict[str, np.ndarray]:
    """``(total / denom).astype(float32)`` cut into the named leaves. A float64 ``total`` is divided straight into
    each float32 leaf (the ufunc divides in float64 and rounds each quotient to float32 on output, as the astype
    does: one pass, no float64 temporary)."""
    wide = total.dtype == np.float64
    mean = total if wide else total / denom
    out, pos = {}, 0
    for k, s in zip(names, shapes):
        size = int(np.prod(s, dtype=np.int64))
        if wide:
            leaf = np.empty(s, np.float32)
            np.divide(total[pos:pos + size], np.float64(denom), out=leaf.reshape(-1), casting="same_kind")
            out[k] = leaf
        else:
            out[k] = mean[pos:pos + size].reshape(s).astype(np.float32)
        pos += size
    return out


def _check_finite(rows: list[np.ndarray], r: int) -> None:
    """Raise :class:`~refimpl.errors.OutOfRangeError` naming the client if an update holds NaN or infinity."""
    for a in rows:
        ok = np.isfinite(a).all(axis=1)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise OutOfRangeError(f"round {r}: the update of client {i} is not finite (NaN or infinity): "
                                       "local training diverged")


def make_secure_aggregator(protocol: str = "additive", *, servers: int = 2, threshold: int | None = None,
                           min_clients: int = 2, dropout: float = 0.0, clip: float | None = None,
                           noise_multiplier: float = 0.0, noise: str = "distributed", bits: int | None = None,
                           frac_bits: int = 32, rotate: bool = False, value_range: float = 64.0, ring: Ring = Z2_64,
                           key: bytes | None = None, public_key: bytes | None = None) -> SecureAggregator:
    """A FedAvg aggregation step that runs secure aggregation (see the module docstring).

    Args:
        protocol: ``"additive"`` (S-server) or ``"secagg"`` (single server, Bonawitz et al.).
        servers: S for the additive protocol.
        threshold: t for SecAgg (default ``floor(m/2) + 1`` of the round's m clients); ``2 <= t <= m`` or a
            ConfigurationError stating that range (never adjusted).
        min_clients: fewest surviving clients whose total the additive protocol releases (default 2; a round
            with fewer aborts and is recorded as such). SecAgg never releases fewer than t >= 2.
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
        key: None (default, secure): every party's keys fresh from the OS every round. A 16/32-byte key derives
            all of them instead -- reproducible and **insecure** (whoever knows it recovers every update).
        public_key: seeds the public simulation randomness (dropouts, rotation signs); default ``key``, or fresh.

    Raises:
        ConfigurationError: inconsistent or out-of-range options.
    """
    return SecureAggregator(protocol=protocol, servers=servers, threshold=threshold, min_clients=min_clients,
                            dropout=dropout, clip=clip, value_range=value_range, noise_multiplier=noise_multiplier,
                            noise=noise, bits=bits, frac_bits=frac_bits, rotate=rotate, ring=ring, key=key,
                            public_key=public_key)
