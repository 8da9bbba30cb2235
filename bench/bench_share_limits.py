"""``share`` / ``share_compressed`` / ``reconstruct`` at 2^23 elements against the machine's keystream limits.

In one process, interleaved round by round (best of ``--repeats``, wall clock; process CPU time recorded too):

* ``keystream_1core``: ``Stream.read_into`` of the n - 1 masks' bytes into a touched buffer, one thread: the
  single-core AES-CTR bound.
* ``keystream_allcores``: the same bytes drawn by one thread per core (each seeks to its own range; the cipher
  releases the GIL): the all-core bound.
* ``share_out``: ``share(x, n, out=buf)`` into a reused (touched) buffer, every core.
* ``share_fresh``: ``share(x, n)`` returning fresh memory (pays first-touch page faults).
* ``share_out_1thread``: ``share(..., out=buf)`` with the kernels held to one thread.
* ``first_touch``: filling a fresh array of the result's bytes minus refilling a touched one (what fresh memory costs).
* ``share_compressed_out`` / ``reconstruct_out`` / ``reconstruct_compressed_out``: the other kernels, into reused
  buffers, each next to its own keystream bound (``share_compressed``: n - 1 masks; ``reconstruct`` of full shares
  draws none: next to a plain NumPy sum of the same arrays).

Targets (issue 17, printed, never asserted): share n = 3 >= 1.0x the single-core bound and >= 0.8x the all-core bound.

Run: ``nice python bench/bench_share_limits.py [--rings Z2_64,Z2_32] [--size 2^23] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common
import numpy as np

from refimpl import Z2_32, Z2_64, reconstruct, share, share_compressed
from refimpl.prg import Stream
from refimpl.sharing import kernels

RINGS = {"Z2_32": Z2_32, "Z2_64": Z2_64}
KEY = bytes(range(16))


def _touched(shape: Any, dtype: Any) -> np.ndarray:
    a = np.empty(shape, dtype=dtype)
    a.fill(1)
    return a


def keystream_all_cores(buf: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> None:
    """Fill ``buf`` with keystream, one contiguous, 64-byte-aligned range per thread."""
    flat = buf.reshape(-1).view(np.uint8)
    step = -(-flat.size // workers // 64) * 64
    ranges = [(lo, min(flat.size, lo + step)) for lo in range(0, flat.size, step)]
    list(pool.map(lambda r: Stream(KEY, offset=r[0]).read_into(flat[r[0]:r[1]]), ranges))


def run(ring: Any, n: int, size: int, repeats: int, pool: ThreadPoolExecutor, workers: int) -> dict[str, Any]:
    dt = ring.dtype
    x = np.random.default_rng(0).integers(0, 2**63, size=size, dtype=np.uint64).astype(dt)
    masks = _touched((n - 1) * size, dt)
    out = _touched((n, size), dt)
    first = _touched(size, dt)
    opened = _touched(size, dt)
    s = share(x, n, ring=ring, key=KEY)
    c = share_compressed(x, n, ring=ring, key=KEY)
    rows = [np.array(s.data[i]) for i in range(n)]
    stream = Stream(KEY)
    nbytes = n * size * dt.itemsize
    warm = _touched(nbytes, np.uint8)

    def one_thread(fn: Any) -> Any:
        def call() -> None:
            previous = kernels.set_threads(1)
            try:
                fn()
            finally:
                kernels.set_threads(previous)
        return call

    def naive_sum() -> None:
        np.add(rows[0], rows[1], out=opened)
        for r in rows[2:]:
            np.add(opened, r, out=opened)

    fns = {
        "keystream_1core": lambda: stream.read_into(masks),
        "keystream_allcores": lambda: keystream_all_cores(masks, pool, workers),
        "share_out": lambda: share(x, n, ring=ring, key=KEY, out=out),
        "share_fresh": lambda: share(x, n, ring=ring, key=KEY),
        "share_out_1thread": one_thread(lambda: share(x, n, ring=ring, key=KEY, out=out)),
        "first_touch": lambda: np.empty(nbytes, np.uint8).fill(1),
        "warm_fill": lambda: warm.fill(1),
        "share_compressed_out": lambda: share_compressed(x, n, ring=ring, key=KEY, out=first),
        "reconstruct_out": lambda: reconstruct(s, out=opened),
        "numpy_sum": naive_sum,
        "reconstruct_compressed_out": lambda: reconstruct(c, out=opened),
    }
    best, number = _common.measure(fns, repeats)
    w = best["wall"]
    ratios = {
        "share_out / keystream_1core (target >= 1.0)": w["keystream_1core"] / w["share_out"],
        "share_out / keystream_allcores (target >= 0.8)": w["keystream_allcores"] / w["share_out"],
        "share_fresh / keystream_1core": w["keystream_1core"] / w["share_fresh"],
        "share_out_1thread / keystream_1core": w["keystream_1core"] / w["share_out_1thread"],
        "threads speed-up of share_out": w["share_out_1thread"] / w["share_out"],
        "keystream all cores / 1 core": w["keystream_1core"] / w["keystream_allcores"],
        "share_compressed_out / keystream_1core": w["keystream_1core"] / w["share_compressed_out"],
        "reconstruct_out / numpy_sum": w["numpy_sum"] / w["reconstruct_out"],
        "reconstruct_compressed_out / keystream_1core": w["keystream_1core"] / w["reconstruct_compressed_out"],
    }
    return {"ring": repr(ring), "n": n, "size": size, "result_bytes": nbytes, "keystream_bytes": masks.nbytes,
            "calls_per_sample": number, "seconds_wall": w, "seconds_cpu": best["cpu"],
            "first_touch_cost_s": max(0.0, w["first_touch"] - w["warm_fill"]),
            "keystream_1core_GBps": masks.nbytes / w["keystream_1core"] / 1e9,
            "keystream_allcores_GBps": masks.nbytes / w["keystream_allcores"] / 1e9,
            "ratios": ratios,
            "targets_met": {"single_core": ratios["share_out / keystream_1core (target >= 1.0)"] >= 1.0,
                            "all_cores": ratios["share_out / keystream_allcores (target >= 0.8)"] >= 0.8}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rings", default="Z2_64,Z2_32")
    p.add_argument("--parties", type=int, default=3)
    p.add_argument("--size", default="2^23", help="elements (an integer or a power like 2^23)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None, help="JSON path (default bench/results/share_limits-<date>.json); '-': none")
    args = p.parse_args(argv)
    size = int(eval(args.size.replace("^", "**"), {"__builtins__": {}}))  # noqa: S307 -- digits and ** only
    info = _common.machine_info(kernel_threads=kernels.threads())
    workers = kernels.threads()
    print(f"# share limits  {info['date_utc']}  {info['cpu_model']}  cores {info['cores_available']}  kernel "
          f"threads {workers}  load {info['loadavg_start']}  (best of {args.repeats}, wall clock)")
    records = []
    with ThreadPoolExecutor(workers) as pool:
        for name in args.rings.split(","):
            rec = run(RINGS[name.strip()], args.parties, size, args.repeats, pool, workers)
            records.append(rec)
            w = rec["seconds_wall"]
            print(f"\n{rec['ring']}, n = {rec['n']}, {size} elements: keystream 1 core {w['keystream_1core']*1e3:.1f} "
                  f"ms ({rec['keystream_1core_GBps']:.1f} GB/s), all cores {w['keystream_allcores']*1e3:.1f} ms; "
                  f"first touch of the result {rec['first_touch_cost_s']*1e3:.1f} ms")
            for k in ("share_out", "share_fresh", "share_out_1thread", "share_compressed_out", "reconstruct_out",
                      "numpy_sum", "reconstruct_compressed_out"):
                print(f"  {k:<28} {w[k]*1e3:8.2f} ms   cpu {rec['seconds_cpu'][k]*1e3:8.2f} ms")
            for k, v in rec["ratios"].items():
                print(f"  {k:<48} {v:5.2f}x")
    result = {"benchmark": "share_limits", "machine": info,
              "settings": {"size": size, "parties": args.parties, "repeats": args.repeats, "clock": "wall"},
              "results": records}
    _common.write_result(result, args.out, "share_limits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
