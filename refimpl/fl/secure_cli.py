"""The ``train`` command's secure-aggregation and privacy flags: parse, validate, build the aggregator, report.

:func:`add_arguments` adds the flags, :func:`check_args` validates them against the round size (one error naming
the flag and the valid range), :func:`from_args` builds the :class:`~refimpl.fl.secure.SecureAggregator` (fresh OS
keys unless ``--insecure-derived-keys``) and the privacy accountant, :func:`round_metrics` is each round's
``metrics.jsonl`` entries.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from typing import Any

from refimpl.errors import ConfigurationError, OutOfRangeError
from refimpl.fl import privacy
from refimpl.fl.secure import PROTOCOLS, SecureAggregator, make_secure_aggregator
from refimpl.ring import Ring
from refimpl.secagg import Codec

__all__ = ["add_arguments", "check_args", "from_args", "round_metrics"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the secure-aggregation and privacy flags to the ``train`` parser (one argument group).

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_arguments(p)
        >>> a = p.parse_args(["--secure", "secagg", "--threshold", "6", "--dropout", "0.3"])
        >>> a.secure, a.servers, a.threshold, a.dropout, a.bits, a.insecure_derived_keys
        ('secagg', 2, 6, 0.3, None, False)
    """
    g = parser.add_argument_group("secure aggregation and differential privacy (refimpl.fl.secure)")
    g.add_argument("--secure", choices=("none", *PROTOCOLS), default="additive",
                   help="aggregation: multi-server additive sharing, single-server SecAgg, or none (plaintext)")
    g.add_argument("--servers", type=int, default=2, help="aggregators S for --secure additive")
    g.add_argument("--threshold", type=int, default=None,
                   help="SecAgg Shamir threshold t, 2 <= t <= clients per round (default m//2 + 1)")
    g.add_argument("--min-clients", type=int, default=2,
                   help="fewest surviving clients whose sum --secure additive releases (a round with fewer aborts)")
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
    g.add_argument("--insecure-derived-keys", action="store_true",
                   help="INSECURE: derive every aggregation key (shares, masks, dither, DP noise) from --seed, so "
                        "anyone who knows the seed recovers each client's update; for reproducing runs only "
                        "(default: fresh OS keys for every party, every round)")


def check_args(args: argparse.Namespace, clients_per_round: int) -> None:
    """Validate the secure-aggregation flags against each other and the round size ``m``.

    Raises:
        ConfigurationError: naming the flag, the bad value and the valid range.
    """
    m = clients_per_round

    def bad(flag: str, value: Any, rule: str) -> ConfigurationError:
        return ConfigurationError(f"{flag} {value!r} is invalid: {rule}")

    def finite(flag: str, value: float, lo: float, hi: float = math.inf, *, lo_open: bool = False,
               hi_open: bool = True) -> None:
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (value < hi if hi_open
                                                                                     else value <= hi)
        if not ok:
            lo_b, hi_b = "(" if lo_open else "[", ")" if hi_open else "]"
            raise bad(flag, value, f"must be a finite number in {lo_b}{lo:g}, {hi:g}{hi_b}")

    finite("--dropout", args.dropout, 0.0, 1.0)
    finite("--noise-multiplier", args.noise_multiplier, 0.0)
    finite("--delta", args.delta, 0.0, 1.0, lo_open=True)
    if args.clip is not None:
        finite("--clip", args.clip, 0.0, lo_open=True)
    if args.bits is not None and not 1 <= args.bits <= 31:
        raise bad("--bits", args.bits, "must lie in 1..31")
    if args.secure == "none":
        return
    if args.bits is None:  # the sizing check of the first round, made now: fixed point must fit the ring
        try:
            Codec(length=1, max_clients=max(m, 1), clip=args.clip if args.clip is not None else 64.0,
                  frac_bits=args.frac_bits, ring=Ring(2**args.ring_bits))
        except (ConfigurationError, OutOfRangeError, ValueError) as err:
            raise ConfigurationError(f"--frac-bits {args.frac_bits} with --ring-bits {args.ring_bits}: {err}") from err
    if args.servers < 2:
        raise bad("--servers", args.servers, "secure aggregation needs at least 2 non-colluding servers")
    if args.secure == "additive":
        if not 1 <= args.min_clients:
            raise bad("--min-clients", args.min_clients, "must be at least 1 (default 2)")
        if m < max(2, args.min_clients):
            raise ConfigurationError(f"--clients x --fraction gives {m} client(s) per round, fewer than --min-clients "
                                     f"{max(2, args.min_clients)}: no round could release a sum")
    else:
        if m < 2:
            raise ConfigurationError(f"--clients x --fraction gives {m} client per round; SecAgg needs at least 2")
        t = args.threshold if args.threshold is not None else m // 2 + 1
        if not 2 <= t <= m:
            raise bad("--threshold", t, f"with {m} clients per round the valid range is 2..{m}")


def from_args(args: argparse.Namespace, *, start_round: int = 0
              ) -> tuple[SecureAggregator | None, privacy.PrivacyAccountant | None]:
    """The aggregator (None for ``--secure none``) and the accountant (None without noise) for parsed flags.

    Keys: fresh from the OS for every party, every round, unless ``--insecure-derived-keys`` (then derived from
    ``--seed``). The public simulation randomness (dropouts, rotation signs) always comes from ``--seed``.
    ``start_round`` (a resumed run's round) sets both counters, so streams stay domain-separated by round and
    epsilon accumulates over the whole run.

    Raises:
        ConfigurationError: inconsistent flags, e.g. ``--noise-multiplier`` without ``--clip``.
    """
    seed_key = hashlib.sha256(f"refimpl/train/{args.seed}".encode()).digest()[:16]
    derived = bool(getattr(args, "insecure_derived_keys", False))
    agg = None
    if args.secure != "none":
        agg = make_secure_aggregator(args.secure, servers=args.servers, threshold=args.threshold,
                                     min_clients=getattr(args, "min_clients", 2), dropout=args.dropout,
                                     clip=args.clip, noise_multiplier=args.noise_multiplier, noise=args.noise,
                                     bits=args.bits, rotate=args.rotate, frac_bits=args.frac_bits,
                                     ring=Ring(2**args.ring_bits), key=seed_key if derived else None,
                                     public_key=seed_key)
        agg.round = start_round
    elif args.noise_multiplier > 0:
        raise ConfigurationError("--noise-multiplier needs secure aggregation (--secure additive|secagg)")
    acct = None
    if args.noise_multiplier > 0:
        acct = privacy.PrivacyAccountant(args.noise_multiplier, args.fraction, args.delta)
        acct.rounds = start_round
    return agg, acct


def round_metrics(agg: SecureAggregator | None, acct: privacy.PrivacyAccountant | None) -> dict[str, Any]:
    """Per-round metrics for ``metrics.jsonl``: survivors, upload bytes per client, abort flag, the release rule
    (``threshold`` for SecAgg, ``min_clients`` for additive), the key mode, and (epsilon, delta).

    Call once after each round (it advances the accountant).
    """
    out: dict[str, Any] = {}
    if agg is not None and agg.history:
        rep = agg.history[-1]
        out.update(secure=agg.protocol, survivors=rep.survivors, aborted=rep.aborted,
                   bytes_up_per_client=rep.upload_bytes_per_client, upload_ratio=rep.upload_ratio)
        out["threshold" if agg.protocol == "secagg" else "min_clients"] = rep.threshold
        out["keys"] = "insecure-derived" if agg.insecure_derived_keys else "os"
    if acct is not None:
        out["epsilon"], out["delta"] = acct.step()
    return out
