"""Fuzz the wire decoder with a million hostile inputs: only WireFormatError may escape, memory stays bounded.

Inputs, in equal parts: crafted messages (a random header biased to the decoder's tags and spans, a valid
CRC-32), mutated genuine messages (bit flips, insertions, deletions, truncations; CRC recomputed or not), and
random bytes behind the magic. Every decoded object is measured (``refimpl.testing.hostile.deep_size``) against
the documented bound ``MAX_EXPANSION * len(message) + EXPANSION_SLACK``; the peak resident memory of the process
is reported. Exit status 1 on any other exception or a bound violation.

    python scripts/fuzz_wire.py                 # 1,000,000 inputs (about a minute on one core)

Inputs number 4999, 9999, ... are 256 KiB amplification attempts (overlapping spans, one-byte big integers).
    python scripts/fuzz_wire.py --count 10000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter

import numpy as np

from refimpl.errors import WireFormatError
from refimpl.net.wire import EXPANSION_SLACK, MAGIC, MAX_EXPANSION, decode, encode
from refimpl.ring import Ring
from refimpl.sharing import share
from refimpl.testing.hostile import craft, deep_size, mutate, random_header


def _genuine(rng: np.random.Generator) -> list[bytes]:
    ring = Ring(2**70)
    return [
        encode({"op": "store", "x": np.arange(int(rng.integers(0, 40)), dtype=np.uint64), "i": 2**70}),
        encode({"sh": share(np.arange(4), 2, key=bytes(16)), "b": b"abc", "t": (1, [2.5, None])}),
        encode({"big": share(np.arange(3), 3, ring=ring, key=bytes(16)), "f": float("nan")}),
        encode([{"k": "v"}, np.zeros((2, 3), np.float32), True]),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    genuine = _genuine(rng)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    worst_ratio, t0 = 0.0, time.perf_counter()
    for i in range(args.count):
        kind = i % 3
        if i % 5000 == 4999:  # a large amplification attempt: 256 KiB referenced over and over, or as 1-byte ints
            payload = bytes(2**18)
            spans = [{"$bytes": [int(rng.integers(0, 2**10)), 2**18 - 2**10]} for _ in range(64)]
            bigint = {"$array": {"dtype": "bigint", "width": 1, "shape": [2**18], "offset": 0, "length": 2**18}}
            raw = craft(spans if rng.integers(2) else bigint, payload)
        elif kind == 0:
            payload = rng.bytes(int(rng.integers(0, 96)))
            raw = craft(random_header(rng, len(payload)), payload)
        elif kind == 1:
            raw = mutate(genuine[int(rng.integers(len(genuine)))], rng, fix_crc=bool(rng.integers(4)))
        else:
            raw = MAGIC + rng.bytes(int(rng.integers(0, 64)))
        try:
            obj = decode(raw, pointer=lambda loc, pid: (loc, pid))
        except WireFormatError:
            outcomes["WireFormatError"] += 1
            continue
        except Exception as e:  # noqa: BLE001 -- the point: anything else is a finding
            outcomes[type(e).__name__] += 1
            if len(failures) < 20:
                failures.append(f"input {i}: {type(e).__name__}: {e} <- {raw[:120]!r}")
            continue
        outcomes["decoded"] += 1
        size = deep_size(obj)
        worst_ratio = max(worst_ratio, size / len(raw))
        if size > MAX_EXPANSION * len(raw) + EXPANSION_SLACK:
            failures.append(f"input {i}: decodes to {size} bytes from {len(raw)}")
        if args.count >= 100 and i % (args.count // 20) == 0 and i:
            print(f"  {i:,} inputs, {dict(outcomes)}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    other = {k: v for k, v in outcomes.items() if k not in ("WireFormatError", "decoded")}
    report = {"inputs": args.count, "seconds": round(seconds, 1), "outcomes": dict(outcomes),
              "other_exceptions": sum(other.values()), "bound_violations": sum("decodes to" in f for f in failures),
              "peak_rss_mib_start": round(rss0 / 1024, 1), "peak_rss_mib_end": round(rss / 1024, 1),
              "max_decoded_over_message_bytes": round(worst_ratio, 2), "documented_bound": MAX_EXPANSION,
              "failures": failures}
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
