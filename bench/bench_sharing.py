"""Microbenchmarks of refimpl's share arithmetic, each next to its physical limits measured in the same process.

Operations (for n in {2, 3, 5}, rings Z_2^32 and Z_2^64, sizes 2^10 .. 2^23 elements):

* ``share``        ``refimpl.share(x, n, ring=...)``                    (fresh OS key, AES-128-CTR)
* ``reconstruct``  ``refimpl.reconstruct(shares)``
* ``add``          ``shares_a + shares_b``                               (Shares + Shares)
* ``encode``       ``FixedPoint(ring=...).encode(x)``                     (independent of n; float64 input)

References, timed in the same process and interleaved round by round with the operation (a noisy, shared machine
only supports ratios measured side by side):

* ``memcpy``  ``np.copyto`` between two preallocated, already-touched buffers of the operation's bytes
  (share, add: the n result shares; reconstruct: the n input shares; encode: the encoded result).
* ``aes``     ``refimpl.prg.Stream.read_into`` of the keystream bytes the operation must draw (share: n - 1 masks)
  into a preallocated, already-touched array: the physical bound for share. ``aes_fresh`` is the same read into a
  freshly allocated array (it pays the first-touch page faults that share's fresh result also pays).
* ``naive``   what a user would write with plain NumPy:
  share: ``np.random.randint`` masks and a subtraction (INSECURE: Mersenne Twister, shown only as a speed
  reference); reconstruct: ``s[0] + s[1] + ...``; add: ``a + b`` of the same stacked arrays;
  encode: ``np.round(x * scale).astype(np.int64).astype(dtype)`` (no range checks, no exact rounding).
* ``first_touch`` / ``warm_fill``: filling a freshly allocated array of the result's bytes vs. refilling an
  already-touched one; the difference is what the operation pays for returning fresh memory.

Each figure is the best of ``--repeats`` samples (default 5 below 2^20 elements, 3 above); a sample times ``number``
back-to-back calls, with ``number`` chosen so that a sample lasts at least ~2 ms. The clock is the wall clock
(``time.perf_counter``: the kernels use every core, so one thread's CPU time would undercount them) unless
``--clock cpu`` (the process's CPU time, all threads); both clocks are recorded in the JSON. Ratios are reference
time / operation time (> 1: the operation is faster than the reference).

Run: ``nice python bench/bench_sharing.py --quick`` (about a minute) or without ``--quick`` for the full grid.
"""

from __future__ import annotations

import argparse
import functools
import gc
import math
import operator
import sys
import time
from collections.abc import Callable
from typing import Any

import _common
import numpy as np

from refimpl import Z2_32, Z2_64, FixedPoint, reconstruct, share
from refimpl.prg import Stream

RINGS = {"Z2_32": Z2_32, "Z2_64": Z2_64}
FULL_SIZES = [2**k for k in range(10, 24)]
QUICK_SIZES = [2**10, 2**14, 2**18, 2**20, 2**23]
PARTIES = (2, 3, 5)
OPS = ("share", "reconstruct", "add", "encode")
MIN_SAMPLE_S = 2e-3
CLOCK = "wall"  # the clock of the table and of "seconds"/"ratios" in the JSON; set by --clock
TARGETS = {  # at 2^23 elements: (op, n or None, reference, minimum ratio reference_time / op_time)
    "share n=3 vs AES-CTR keystream bound": ("share", 3, "aes", 0.8),
    "reconstruct vs plain numpy add": ("reconstruct", None, "naive", 0.5),
    "add vs plain numpy add": ("add", None, "naive", 0.5),
}


# ---------------------------------------------------------------------------------------------- timing
def measure(fns: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, dict[str, float]], int]:
    """Best-of-``repeats`` seconds per call of each function on both clocks, in interleaved rounds (_common)."""
    return _common.measure(fns, repeats, min_sample_s=MIN_SAMPLE_S)


# ---------------------------------------------------------------------------------------------- workloads
def _touched(shape: Any, dtype: Any) -> np.ndarray:
    a = np.empty(shape, dtype=dtype)
    a.fill(1)
    return a


def _memcpy_fn(nbytes: int) -> Callable[[], Any]:
    src, dst = _touched(nbytes, np.uint8), _touched(nbytes, np.uint8)
    return functools.partial(np.copyto, dst, src)


def _touch_fns(nbytes: int) -> dict[str, Callable[[], Any]]:
    warm = _touched(nbytes, np.uint8)
    return {"first_touch": lambda: np.empty(nbytes, dtype=np.uint8).fill(1), "warm_fill": lambda: warm.fill(1)}


def bench_share(ring: Any, n: int, size: int, rng: np.random.Generator, repeats: int) -> dict[str, Any]:
    dt = ring.dtype
    x = rng.integers(0, 2**63, size=size, dtype=np.uint64).astype(dt)
    draw = (n - 1) * size  # elements of keystream: the n - 1 masks
    ks_buf = _touched(draw, dt)
    stream = Stream()
    high = ring.modulus

    def naive() -> Any:  # INSECURE speed reference
        masks = np.random.randint(0, high, size=(n - 1, size), dtype=dt)
        return x - masks.sum(axis=0, dtype=dt), masks

    fns = {
        "op": lambda: share(x, n, ring=ring),
        "aes": lambda: stream.read_into(ks_buf),
        "aes_fresh": lambda: stream.read_into(np.empty(draw, dtype=dt)),
        "memcpy": _memcpy_fn(n * size * dt.itemsize),
        "naive": naive,
        **_touch_fns(n * size * dt.itemsize),
    }
    best, number = measure(fns, repeats)
    return _record("share", ring, n, size, best, number, result_bytes=n * size * dt.itemsize,
                   random_bytes=draw * dt.itemsize)


def bench_reconstruct(ring: Any, n: int, size: int, rng: np.random.Generator, repeats: int) -> dict[str, Any]:
    dt = ring.dtype
    shares = share(rng.integers(0, 2**63, size=size, dtype=np.uint64).astype(dt), n, ring=ring)
    rows = [np.array(shares[i]) for i in range(n)]
    fns = {
        "op": lambda: reconstruct(shares),
        "memcpy": _memcpy_fn(n * size * dt.itemsize),
        "naive": lambda: functools.reduce(operator.add, rows),
        **_touch_fns(size * dt.itemsize),
    }
    best, number = measure(fns, repeats)
    return _record("reconstruct", ring, n, size, best, number, result_bytes=size * dt.itemsize, random_bytes=0)


def bench_add(ring: Any, n: int, size: int, rng: np.random.Generator, repeats: int) -> dict[str, Any]:
    dt = ring.dtype
    a = share(rng.integers(0, 2**63, size=size, dtype=np.uint64).astype(dt), n, ring=ring)
    b = share(rng.integers(0, 2**63, size=size, dtype=np.uint64).astype(dt), n, ring=ring)
    a_data, b_data = np.array(a.data), np.array(b.data)
    fns = {
        "op": lambda: a + b,
        "memcpy": _memcpy_fn(n * size * dt.itemsize),
        "naive": lambda: a_data + b_data,
        **_touch_fns(n * size * dt.itemsize),
    }
    best, number = measure(fns, repeats)
    return _record("add", ring, n, size, best, number, result_bytes=n * size * dt.itemsize, random_bytes=0)


def bench_encode(ring: Any, size: int, rng: np.random.Generator, repeats: int) -> dict[str, Any]:
    fp = FixedPoint(ring=ring)
    dt, scale = ring.dtype, float(fp.scale)
    x = rng.uniform(-1000.0, 1000.0, size=size)
    fns = {
        "op": lambda: fp.encode(x),
        "memcpy": _memcpy_fn(size * dt.itemsize),
        "naive": lambda: np.round(x * scale).astype(np.int64).astype(dt),
        **_touch_fns(size * dt.itemsize),
    }
    best, number = measure(fns, repeats)
    return _record("encode", ring, None, size, best, number, result_bytes=size * dt.itemsize, random_bytes=0)


def _record(op: str, ring: Any, n: int | None, size: int, best: dict[str, dict[str, float]], number: int, *,
            result_bytes: int, random_bytes: int) -> dict[str, Any]:
    def ratios(b: dict[str, float]) -> dict[str, float]:
        return {f"{k}_over_op": v / b["op"] for k, v in b.items() if k != "op"}

    s = best[CLOCK]
    return {
        "op": op, "ring": repr(ring), "n": n, "size": size, "log2_size": int(math.log2(size)),
        "result_bytes": result_bytes, "random_bytes": random_bytes, "calls_per_sample": number, "clock": CLOCK,
        "seconds": dict(s), "ratios": ratios(s),
        "op_GBps_result": result_bytes / s["op"] / 1e9,
        "first_touch_cost_s": max(0.0, s["first_touch"] - s["warm_fill"]),
        "wall_seconds": dict(best["wall"]), "wall_ratios": ratios(best["wall"]),
        "cpu_seconds": dict(best["cpu"]), "cpu_ratios": ratios(best["cpu"]),
    }


# ---------------------------------------------------------------------------------------------- output
def _fmt_t(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:7.1f}us"
    return f"{s * 1e3:7.2f}ms"


HEADER = (f"{'op':<11} {'ring':<5} {'n':>1} {'size':>5} {'time':>9} {'GB/s':>6} | {'memcpy':>9} {'x':>5} | "
          f"{'AES bnd':>9} {'x':>5} | {'naive':>9} {'x':>5} | {'1st-touch':>9}")


def format_row(r: dict[str, Any]) -> str:
    s, q = r["seconds"], r["ratios"]
    aes = f"{_fmt_t(s['aes']):>9} {q['aes_over_op']:5.2f}" if "aes" in s else f"{'-':>9} {'':>5}"
    return (f"{r['op']:<11} {r['ring']:<5} {r['n'] or '-':>1} 2^{r['log2_size']:<3} {_fmt_t(s['op']):>9} "
            f"{r['op_GBps_result']:6.2f} | {_fmt_t(s['memcpy']):>9} {q['memcpy_over_op']:5.2f} | {aes} | "
            f"{_fmt_t(s['naive']):>9} {q['naive_over_op']:5.2f} | {_fmt_t(r['first_touch_cost_s']):>9}")


TARGET_SIZE = 2**23


def evaluate_targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    top = TARGET_SIZE
    out = []
    for label, (op, n, ref, minimum) in TARGETS.items():
        for r in records:
            if r["op"] == op and r["size"] == top and (n is None or r["n"] == n) and ref in r["seconds"]:
                ratio = r["ratios"][f"{ref}_over_op"]
                out.append({"target": label, "ring": r["ring"], "n": r["n"], "size": top, "reference": ref,
                            "ratio": ratio, "minimum": minimum, "met": ratio >= minimum})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} and 3 repeats")
    p.add_argument("--sizes", type=str, default=None,
                   help="comma-separated sizes, as integers or powers like 2^20 (default: 2^10 .. 2^23)")
    p.add_argument("--repeats", type=int, default=None,
                   help="samples per figure, best kept (default: 5 below 2^20 elements, 3 from 2^20 on; quick: 3)")
    p.add_argument("--ops", type=str, default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    p.add_argument("--parties", type=str, default=",".join(map(str, PARTIES)), help="comma-separated n values")
    p.add_argument("--rings", type=str, default=",".join(RINGS), help=f"comma-separated subset of {','.join(RINGS)}")
    p.add_argument("--clock", choices=("cpu", "wall"), default="wall",
                   help="wall: time.perf_counter; cpu: the process's CPU time (all threads). Both are recorded in "
                        "the JSON")
    p.add_argument("--out", type=str, default=None,
                   help="JSON output path (default bench/results/sharing-<UTC date>[-quick].json); '-' for none")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = args.clock

    if args.sizes:
        sizes = [int(eval_size(s)) for s in args.sizes.split(",") if s.strip()]
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
    def repeats_for(size: int) -> int:
        return args.repeats or (3 if args.quick or size >= 2**20 else 5)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = set(ops) - set(OPS)
    if bad:
        p.error(f"unknown ops {sorted(bad)}")
    parties = [int(v) for v in args.parties.split(",")]
    rings = {name.strip(): RINGS[name.strip()] for name in args.rings.split(",")}

    info = _common.machine_info()
    rng = np.random.default_rng(2024)
    print(f"# refimpl sharing benchmark  {info['date_utc']}  {info['cpu_model']} x{info['cpu_count']}  "
          f"python {info['python']}  numpy {info['numpy']}  cryptography {info['cryptography']}  "
          f"load {info['loadavg_start']}")
    best_of = "/".join(sorted({str(repeats_for(size)) for size in sizes}, reverse=True))
    clock = "process CPU" if CLOCK == "cpu" else "wall-clock"
    print(f"# best of {best_of}, {clock} time per call; x = reference time / op time (>1: op faster). "
          "naive share uses np.random.randint: INSECURE, a speed reference only.")
    print(HEADER)
    records: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for size in sizes:
        for ring in rings.values():
            for op in ops:
                for n in ([None] if op == "encode" else parties):
                    if op == "share":
                        rec = bench_share(ring, n, size, rng, repeats_for(size))
                    elif op == "reconstruct":
                        rec = bench_reconstruct(ring, n, size, rng, repeats_for(size))
                    elif op == "add":
                        rec = bench_add(ring, n, size, rng, repeats_for(size))
                    else:
                        rec = bench_encode(ring, size, rng, repeats_for(size))
                    records.append(rec)
                    print(format_row(rec), flush=True)
                    gc.collect()
    elapsed = time.perf_counter() - t_start
    targets = evaluate_targets(records)
    print("\n# targets at 2^23 elements (measured, not asserted):" + ("" if targets else " size not in this run"))
    for t in targets:
        print(f"#   {t['target']:<40} {t['ring']:<5} n={t['n']}: {t['ratio']:.2f}x (target >= {t['minimum']}x)"
              f" {'met' if t['met'] else 'MISSED'}")
    print(f"# {elapsed:.0f} s")

    result = {
        "benchmark": "sharing",
        "machine": info,
        "settings": {"clock": CLOCK, "sizes": sizes, "repeats": {str(size): repeats_for(size) for size in sizes},
                     "ops": ops, "parties": parties, "rings": list(rings), "min_sample_s": MIN_SAMPLE_S,
                     "quick": args.quick, "elapsed_s": elapsed},
        "definitions": {
            "seconds": "best-of-repeats seconds per call on settings.clock (wall: time.perf_counter; cpu: "
                       "time.process_time, every thread of the process); wall_seconds / cpu_seconds hold both",
            "ratios": "reference seconds / op seconds (>1: op faster than the reference)",
            "memcpy": "np.copyto between preallocated, touched buffers; share/add: n result shares, "
                      "reconstruct: n input shares, encode: the encoded result",
            "aes": "refimpl.prg.Stream.read_into of the op's random bytes into a preallocated, touched array",
            "aes_fresh": "the same into a freshly allocated array (pays first-touch page faults)",
            "naive": "share: np.random.randint masks + subtraction (INSECURE, speed reference only); reconstruct: "
                     "s[0] + s[1] + ...; add: a + b of the stacked arrays; encode: "
                     "np.round(x * scale).astype(int64).astype(dtype)",
            "first_touch_cost_s": "fill of a freshly allocated array of result_bytes minus refill of a touched one",
        },
        "targets": targets,
        "results": records,
    }
    _common.write_result(result, args.out, "sharing", "quick" if args.quick else None)
    return 0


def eval_size(text: str) -> int:
    """``"1024"``, ``"2^10"`` or ``"2**10"`` as an integer."""
    text = text.strip().replace("**", "^")
    if "^" in text:
        base, exp = text.split("^")
        return int(base) ** int(exp)
    return int(text)


if __name__ == "__main__":
    sys.exit(main())
