"""``share`` / ``share_compressed`` / ``reconstruct`` at 2^23 elements against the keystream and memory limits.

In one process, interleaved round by round (best of ``--repeats``, wall clock; process CPU time recorded too), the
whole set ``--runs`` times (each run's load average recorded; best-of and spread over the runs reported):

Keystream bounds (the n - 1 masks' bytes, into a touched buffer):

* ``keystream_1core``: ``Stream.read_into``, one thread (the definition). ``keystream_1core_kernel``: the kernels'
  own loop (``fill_keystreams``, 512 KiB chunks) held to one thread. The single-core bound is the faster of the two.
* ``keystream_allcores``: ``fill_keystreams`` on every core: the same chunking, thread pool, buffer and ranges as
  ``share``'s kernel (it is ``share`` without the subtraction). ``keystream_allcores_halves``: one
  ``Stream.read_into`` per core on contiguous halves. The all-core bound is the faster of the two.
* ``keystream_allcores_by_key``: one mask row per core, each from its stream's start (so each on OpenSSL's GCM
  engine, see below); with fewer rows than cores, the halves.
* ``keystream_1core_ctr_engine`` / ``keystream_allcores_ctr_engine``: the same bytes through OpenSSL's plain CTR engine
  (``cryptography``'s ``modes.CTR``: one thread; one contiguous half per core) -- the bound as issue 17 first measured
  it. ``refimpl.prg`` now computes AES-CTR through the GCM engine wherever a stream's counter run allows (same bytes,
  about twice as fast on this VAES/AVX-512 CPU), so the bounds above are the faster ones; ratios are reported
  against both.
* ``aes_compute_allcores``: the same keystream bytes drawn on every core into a 512 KiB per-thread buffer that stays
  in cache (no memory traffic): what the cipher alone costs.

Memory bounds (every core, one contiguous range each, the kernel's 512 KiB chunks):

* ``share_memory_pattern``: ``share``'s exact access pattern with the cipher taken out: each chunk of the n - 1 mask
  rows written by ``fill`` (stores, as the cipher's), then party 0's chunk = x - the masks, read back from cache. The
  fastest ``share`` could be if the cipher's work hid entirely under the memory traffic.
* ``combine_traffic_1core`` / ``_allcores``: only the traffic ``share`` adds to the keystream's (x read, party 0's
  share written; the masks it subtracts stay in cache): with the keystream, the serial sum ``share``'s chunk loop pays.
* ``memcpy_allcores`` (``np.copyto`` of the result's bytes) and ``np_add_allcores`` (``np.add`` of two share-sized
  rows into a third): the machine's streaming bandwidth, reported in GB/s.

Where Numba and AES instructions are present, ``share`` and the kernels' keystreams run on the compiled AES-CTR
(:mod:`refimpl.jit`); ``share_out_openssl`` and ``keystream_allcores_openssl`` time the same calls with OpenSSL
making every keystream. The bounds are the fastest of all the ways above.

Timed calls: ``share_out`` (``share(x, n, out=buf)``, reused buffer, every core), ``share_fresh`` (fresh memory),
``share_out_1thread``, ``first_touch`` (filling a fresh array of the result's bytes minus refilling a touched one, one
thread; ``first_touch_allcores``: the same, one half per core, as ``share`` touches its fresh result),
``share_compressed_out``, ``reconstruct_out`` (next to ``numpy_sum``, a plain NumPy sum of the same arrays) and
``reconstruct_compressed_out``.

``--sweep`` also times ``share_out`` and ``keystream_allcores`` for chunk sizes 64 KiB - 4 MiB and 1, 2, 3 threads.

Targets (issue 17, printed, never asserted): share n = 3 >= 1.0x the single-core bound and >= 0.8x the all-core bound.

Run: ``flock /tmp/refimpl-bench.lock nice python bench/bench_share_limits.py [--rings Z2_64,Z2_32] [--size 2^23]
[--repeats 7] [--runs 3] [--sweep]``
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common
import numpy as np

from refimpl import Z2_32, Z2_64, jit, reconstruct, share, share_compressed
from refimpl.prg import Stream, encryptor, write_keystream
from refimpl.sharing import kernels
from refimpl.sharing.additive import party_keys

RINGS = {"Z2_32": Z2_32, "Z2_64": Z2_64}
KEY = bytes(range(16))
SWEEP_CHUNKS = (64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20)
SWEEP_THREADS = (1, 2, 3)


def _touched(shape: Any, dtype: Any) -> np.ndarray:
    a = np.empty(shape, dtype=dtype)
    a.fill(1)
    return a


def _halves(size: int, step: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous, ``step``-aligned ranges of ``range(size)``, one per worker (as the kernels split)."""
    chunks = -(-size // step)
    per = -(-chunks // max(1, min(workers, chunks)))
    return [(lo * step, min(size, (lo + per) * step)) for lo in range(0, chunks, per)]


def _on_all(pool: ThreadPoolExecutor, work: Callable[[int, int], None], ranges: list[tuple[int, int]]) -> None:
    """The first range in the calling thread, the others in the pool (as the kernels run)."""
    futures = [pool.submit(work, lo, hi) for lo, hi in ranges[1:]]
    work(*ranges[0])
    for f in futures:
        f.result()


def openssl(fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` with OpenSSL making every keystream (the compiled AES-CTR of refimpl.jit off)."""
    def call() -> None:
        previous = jit.set_aes(False)
        try:
            fn()
        finally:
            jit.set_aes(previous)
    return call


def one_thread(fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        previous = kernels.set_threads(1)
        try:
            fn()
        finally:
            kernels.set_threads(previous)
    return call


def keystream_halves(buf: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> None:
    """Fill ``buf`` with keystream, one contiguous, 64-byte-aligned range per thread, one ``Stream`` each."""
    flat = buf.reshape(-1).view(np.uint8)
    ranges = _halves(flat.size, 64, workers)
    _on_all(pool, lambda lo, hi: Stream(KEY, offset=lo).read_into(flat[lo:hi]), ranges)


def keystream_by_key(masks: np.ndarray, keys: list[bytes], pool: ThreadPoolExecutor, workers: int) -> None:
    """Each mask row from its stream's start, one row per core (every row on the GCM engine); the rows in turn when
    there are more rows than cores."""
    rows = list(range(masks.shape[0]))
    _on_all(pool, lambda lo, hi: [Stream(keys[r]).read_into(masks[r]) for r in rows[lo:hi]],
            _halves(len(rows), 1, workers))


def ctr_engine_fill(buf: np.ndarray, pool: ThreadPoolExecutor | None, workers: int) -> None:
    """Fill ``buf`` with AES-CTR keystream through OpenSSL's CTR engine (``modes.CTR``), in the kernels' chunks: one
    contiguous range per core (``pool`` None: one thread)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    flat = buf.reshape(-1).view(np.uint8)
    view = memoryview(flat)  # type: ignore[arg-type]
    chunk = kernels.CHUNK_BYTES
    zeros = memoryview(bytes(chunk))

    def work(lo: int, hi: int) -> None:
        enc = Cipher(algorithms.AES(KEY), modes.CTR((lo // 16).to_bytes(16, "big"))).encryptor()
        for a in range(lo, hi, chunk):
            b = min(hi, a + chunk)
            if len(flat) - a - 15 >= b - a:
                enc.update_into(zeros[: b - a], view[a:])
            else:  # the buffer's last bytes: no room after them for update_into
                view[a:b] = enc.update(zeros[: b - a])

    if pool is None:
        work(0, len(flat))
    else:
        _on_all(pool, work, _halves(len(flat), 64, workers))


def aes_compute(nbytes: int, pool: ThreadPoolExecutor, workers: int) -> None:
    """``nbytes`` of AES-CTR keystream on every core into a per-thread buffer of one chunk (stays in cache)."""
    chunk = kernels.CHUNK_BYTES

    def work(lo: int, hi: int) -> None:
        enc = encryptor(KEY, "aes128-ctr", bytes(16), lo)
        view = memoryview(thread_scratch(chunk))
        for a in range(lo, hi, chunk):
            write_keystream(enc, view, 0, min(chunk, hi - a))

    _on_all(pool, work, _halves(nbytes, chunk, workers))


_local = threading.local()


def thread_scratch(nbytes: int) -> bytearray:
    """This thread's buffer of ``nbytes`` + 16 bytes, allocated once and reused (touched: no page faults)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < nbytes + 16:
        buf = _local.buf = bytearray(nbytes + 16)
    return buf


def share_memory_pattern(x: np.ndarray, out: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> None:
    """``share``'s memory traffic without the cipher: per chunk, the mask rows written by ``fill`` (stores, as the
    cipher's), then ``out[0] = x - out[1] - ...`` read back from cache; the kernel's chunks and ranges."""
    n = out.shape[0]
    step = kernels.CHUNK_BYTES // out.dtype.itemsize

    def work(lo: int, hi: int) -> None:
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            for party in range(1, n):
                out[party, a:b].fill(0x5A)
            first = out[0, a:b]
            np.subtract(x[a:b], out[1, a:b], out=first)
            for party in range(2, n):
                np.subtract(first, out[party, a:b], out=first)

    _on_all(pool, work, _halves(x.size, step, workers))


def combine_traffic(x: np.ndarray, out: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> None:
    """The memory traffic ``share`` adds to the keystream's: per chunk, party 0's share = x - a mask chunk that is
    already in cache (one 512 KiB chunk per thread), so x is read from and party 0's row written to memory."""
    step = kernels.CHUNK_BYTES // out.dtype.itemsize

    def work(lo: int, hi: int) -> None:
        mask = np.frombuffer(thread_scratch(kernels.CHUNK_BYTES), dtype=out.dtype, count=step)
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            np.subtract(x[a:b], mask[: b - a], out=out[0, a:b])

    _on_all(pool, work, _halves(x.size, step, workers))


def streaming(kind: str, src: np.ndarray, dst: np.ndarray, pool: ThreadPoolExecutor, workers: int) -> None:
    """Every core streams its half: ``copy`` dst = src (1-d), ``add`` dst[0] = src[0] + src[1] (rows)."""
    size = dst.size if kind == "copy" else dst.shape[-1]

    def work(lo: int, hi: int) -> None:
        if kind == "copy":
            np.copyto(dst[lo:hi], src[lo:hi])
        else:
            np.add(src[0, lo:hi], src[1, lo:hi], out=dst[lo:hi])

    _on_all(pool, work, _halves(size, 1 << 12, workers))


def fill_allcores(buf: np.ndarray | None, nbytes: int, pool: ThreadPoolExecutor, workers: int) -> None:
    """Fill ``buf`` (None: a fresh array of ``nbytes``), one half per core."""
    target = np.empty(nbytes, np.uint8) if buf is None else buf
    _on_all(pool, lambda lo, hi: target[lo:hi].fill(1), _halves(nbytes, 1 << 21, workers))


def run(ring: Any, n: int, size: int, repeats: int, pool: ThreadPoolExecutor, workers: int) -> dict[str, Any]:
    dt = ring.dtype
    x = np.random.default_rng(0).integers(0, 2**63, size=size, dtype=np.uint64).astype(dt)
    masks = _touched((n - 1, size), dt)
    out = _touched((n, size), dt)
    first = _touched(size, dt)
    opened = _touched(size, dt)
    s = share(x, n, ring=ring, key=KEY)
    c = share_compressed(x, n, ring=ring, key=KEY)
    rows = [np.array(s.data[i]) for i in range(n)]
    nbytes = n * size * dt.itemsize
    warm = _touched(nbytes, np.uint8)
    flat_out = out.reshape(-1)
    copy_dst = warm.view(dt)
    keys = party_keys(KEY, n, "aes128-ctr")
    stream = Stream(KEY)

    def naive_sum() -> None:
        np.add(rows[0], rows[1], out=opened)
        for r in rows[2:]:
            np.add(opened, r, out=opened)

    fns = {
        "keystream_1core": lambda: (stream.seek(0), stream.read_into(masks)),
        "keystream_1core_ctr_engine": lambda: ctr_engine_fill(masks, None, 1),
        "keystream_allcores_by_key": lambda: keystream_by_key(masks, keys, pool, workers),
        "keystream_allcores_ctr_engine": lambda: ctr_engine_fill(masks, pool, workers),
        "keystream_1core_kernel": one_thread(lambda: kernels.fill_keystreams(masks, keys, "aes128-ctr")),
        "keystream_allcores": lambda: kernels.fill_keystreams(masks, keys, "aes128-ctr"),
        "keystream_allcores_halves": lambda: keystream_halves(masks, pool, workers),
        "aes_compute_allcores": lambda: aes_compute(masks.nbytes, pool, workers),
        "share_memory_pattern": lambda: share_memory_pattern(x, out, pool, workers),
        "combine_traffic_1core": lambda: combine_traffic(x, out, pool, 1),
        "combine_traffic_allcores": lambda: combine_traffic(x, out, pool, workers),
        "memcpy_allcores": lambda: streaming("copy", flat_out, copy_dst, pool, workers),
        "np_add_allcores": lambda: streaming("add", out[1:], first, pool, workers),
        "share_out": lambda: share(x, n, ring=ring, key=KEY, out=out),
        "share_out_openssl": openssl(lambda: share(x, n, ring=ring, key=KEY, out=out)),
        "keystream_allcores_openssl": openssl(lambda: kernels.fill_keystreams(masks, keys, "aes128-ctr")),
        "share_fresh": lambda: share(x, n, ring=ring, key=KEY),
        "share_out_1thread": one_thread(lambda: share(x, n, ring=ring, key=KEY, out=out)),
        "first_touch": lambda: np.empty(nbytes, np.uint8).fill(1),
        "warm_fill": lambda: warm.fill(1),
        "first_touch_allcores": lambda: fill_allcores(None, nbytes, pool, workers),
        "warm_fill_allcores": lambda: fill_allcores(warm, nbytes, pool, workers),
        "share_compressed_out": lambda: share_compressed(x, n, ring=ring, key=KEY, out=first),
        "reconstruct_out": lambda: reconstruct(s, out=opened),
        "numpy_sum": naive_sum,
        "reconstruct_compressed_out": lambda: reconstruct(c, out=opened),
    }
    best, number = _common.measure(fns, repeats)
    assert (out == s.data).all(), "share(out=) differs from share()"  # the last call into out was share's
    w = best["wall"]
    bound_1 = min(w["keystream_1core"], w["keystream_1core_kernel"])
    bound_all = min(w["keystream_allcores"], w["keystream_allcores_halves"], w["keystream_allcores_by_key"])
    ctr_1, ctr_all = w["keystream_1core_ctr_engine"], w["keystream_allcores_ctr_engine"]
    mem = w["share_memory_pattern"]
    ratios = {
        "share_out / keystream_1core (target >= 1.0)": bound_1 / w["share_out"],
        "share_out / keystream_allcores (target >= 0.8)": bound_all / w["share_out"],
        "share_out / keystream_1core_ctr_engine (target >= 1.0)": ctr_1 / w["share_out"],
        "share_out / keystream_allcores_ctr_engine (target >= 0.8)": ctr_all / w["share_out"],
        "share_out_openssl / keystream_allcores_ctr_engine": ctr_all / w["share_out_openssl"],
        "share_out_openssl / share_out (the compiled AES-CTR's speed-up)": w["share_out_openssl"] / w["share_out"],
        "keystream GCM engine / CTR engine speed, 1 core": ctr_1 / bound_1,
        "keystream GCM engine / CTR engine speed, all cores": ctr_all / bound_all,
        "share_out / share_memory_pattern": mem / w["share_out"],
        "share_out_1thread / (keystream_1core + combine_traffic_1core)":
            (bound_1 + w["combine_traffic_1core"]) / w["share_out_1thread"],
        "share_out / (keystream_allcores + combine_traffic_allcores)":
            (bound_all + w["combine_traffic_allcores"]) / w["share_out"],
        "keystream_allcores / (keystream_allcores + combine_traffic_allcores)":
            bound_all / (bound_all + w["combine_traffic_allcores"]),
        "keystream_allcores / share_memory_pattern (ceiling of the all-core ratio)": bound_all / mem,
        "share_fresh / keystream_1core": bound_1 / w["share_fresh"],
        "share_fresh / keystream_allcores": bound_all / w["share_fresh"],
        "share_out_1thread / keystream_1core": bound_1 / w["share_out_1thread"],
        "threads speed-up of share_out": w["share_out_1thread"] / w["share_out"],
        "keystream all cores / 1 core": bound_1 / bound_all,
        "share_compressed_out / keystream_1core": bound_1 / w["share_compressed_out"],
        "reconstruct_out / numpy_sum": w["numpy_sum"] / w["reconstruct_out"],
        "reconstruct_compressed_out / keystream_1core": bound_1 / w["reconstruct_compressed_out"],
    }
    # Bytes crossing the memory bus per call, counting the read-for-ownership of every cache line stored to.
    traffic = {"share": x.nbytes + 2 * nbytes, "keystream": 2 * masks.nbytes}
    return {"ring": repr(ring), "n": n, "size": size, "result_bytes": nbytes, "keystream_bytes": masks.nbytes,
            "calls_per_sample": number, "seconds_wall": w, "seconds_cpu": best["cpu"],
            "bounds_s": {"keystream_1core": bound_1, "keystream_allcores": bound_all, "memory": mem,
                         "keystream_1core_ctr_engine": ctr_1, "keystream_allcores_ctr_engine": ctr_all},
            "first_touch_cost_s": max(0.0, w["first_touch"] - w["warm_fill"]),
            "first_touch_allcores_cost_s": max(0.0, w["first_touch_allcores"] - w["warm_fill_allcores"]),
            "GBps": {"keystream_1core": masks.nbytes / bound_1 / 1e9,
                     "keystream_allcores": masks.nbytes / bound_all / 1e9,
                     "aes_compute_allcores": masks.nbytes / w["aes_compute_allcores"] / 1e9,
                     "memcpy_allcores (read + write)": 2 * nbytes / w["memcpy_allcores"] / 1e9,
                     "np_add_allcores (read 2 + write 1)": 3 * x.nbytes / w["np_add_allcores"] / 1e9,
                     "share_out bus traffic": traffic["share"] / w["share_out"] / 1e9,
                     "share_memory_pattern bus traffic": traffic["share"] / mem / 1e9,
                     "keystream_allcores bus traffic": traffic["keystream"] / bound_all / 1e9},
            "bus_traffic_bytes": traffic,
            "ratios": ratios,
            "loadavg": os.getloadavg(),
            "targets_met": {"single_core": ratios["share_out / keystream_1core (target >= 1.0)"] >= 1.0,
                            "all_cores": ratios["share_out / keystream_allcores (target >= 0.8)"] >= 0.8,
                            "single_core_ctr_engine":
                                ratios["share_out / keystream_1core_ctr_engine (target >= 1.0)"] >= 1.0,
                            "all_cores_ctr_engine":
                                ratios["share_out / keystream_allcores_ctr_engine (target >= 0.8)"] >= 0.8}}


def sweep(ring: Any, n: int, size: int, repeats: int) -> list[dict[str, Any]]:
    """``share_out`` and ``keystream_allcores`` (the kernels' loop) per chunk size and thread count."""
    dt = ring.dtype
    x = np.random.default_rng(1).integers(0, 2**63, size=size, dtype=np.uint64).astype(dt)
    out = _touched((n, size), dt)
    masks = _touched((n - 1, size), dt)
    keys = party_keys(KEY, n, "aes128-ctr")
    want = share(x, n, ring=ring, key=KEY).data
    records = []
    for chunk in SWEEP_CHUNKS:
        for count in SWEEP_THREADS:
            saved, previous = kernels.set_chunk_bytes(chunk), kernels.set_threads(count)
            try:
                best, _ = _common.measure({
                    "keystream_allcores": lambda: kernels.fill_keystreams(masks, keys, "aes128-ctr"),
                    "share_out": lambda: share(x, n, ring=ring, key=KEY, out=out)}, repeats)
            finally:
                kernels.set_chunk_bytes(saved)
                kernels.set_threads(previous)
            assert (out == want).all(), f"share differs at chunk {chunk}, {count} threads"
            w = best["wall"]
            records.append({"chunk_bytes": chunk, "threads": count, "seconds_wall": w,
                            "share_out / keystream_allcores": w["keystream_allcores"] / w["share_out"]})
    return records


def _spread(values: list[float]) -> dict[str, float]:
    return {"best": max(values), **_common.spread(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rings", default="Z2_64,Z2_32")
    p.add_argument("--parties", type=int, default=3)
    p.add_argument("--size", default="2^23", help="elements (an integer or a power like 2^23)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--runs", type=int, default=3, help="whole runs, each recorded (best-of and spread over them)")
    p.add_argument("--sweep", action="store_true", help="also sweep chunk sizes 64 KiB - 4 MiB and 1-3 threads")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/share_limits-<date>.json); '-': none")
    args = p.parse_args(argv)
    size = int(eval(args.size.replace("^", "**"), {"__builtins__": {}}))  # noqa: S307 -- digits and ** only
    workers = kernels.threads()
    info = _common.machine_info(kernel_threads=workers, chunk_bytes=kernels.CHUNK_BYTES)
    print(f"# share limits  {info['date_utc']}  {info['cpu_model']}  cores {info['cores_available']}  kernel "
          f"threads {workers}  load {info['loadavg_start']}  (best of {args.repeats}, wall clock, {args.runs} runs)")
    runs: list[list[dict[str, Any]]] = []
    with ThreadPoolExecutor(workers) as pool:
        for number in range(args.runs):
            records = []
            for name in args.rings.split(","):
                rec = run(RINGS[name.strip()], args.parties, size, args.repeats, pool, workers)
                records.append(rec)
                w, b = rec["seconds_wall"], rec["bounds_s"]
                print(f"\nrun {number + 1}, load {rec['loadavg'][0]:.2f}: {rec['ring']}, n = {rec['n']}, {size} "
                      f"elements: keystream 1 core {b['keystream_1core']*1e3:.2f} ms "
                      f"({rec['GBps']['keystream_1core']:.1f} GB/s), all cores {b['keystream_allcores']*1e3:.2f} ms, "
                      f"memory bound {b['memory']*1e3:.2f} ms; first touch {rec['first_touch_cost_s']*1e3:.1f} ms "
                      f"(all cores {rec['first_touch_allcores_cost_s']*1e3:.1f} ms)")
                for k, v in w.items():
                    print(f"  {k:<28} {v*1e3:8.2f} ms   cpu {rec['seconds_cpu'][k]*1e3:8.2f} ms")
                for k, v in rec["GBps"].items():
                    print(f"  {k:<48} {v:6.1f} GB/s")
                for k, v in rec["ratios"].items():
                    print(f"  {k:<72} {v:5.2f}x")
            runs.append(records)
            if number + 1 < args.runs:
                time.sleep(2)
    summary = {}
    for i, rec in enumerate(runs[0]):
        summary[rec["ring"]] = {k: _spread([r[i]["ratios"][k] for r in runs]) for k in rec["ratios"]}
        summary[rec["ring"]]["first_touch_cost_s"] = _common.spread([r[i]["first_touch_cost_s"] for r in runs])
        t = {k: min(r[i]["seconds_wall"][k] for r in runs) for k in rec["seconds_wall"]}  # best-of over the runs
        b1 = min(t["keystream_1core"], t["keystream_1core_kernel"])
        ball = min(t["keystream_allcores"], t["keystream_allcores_halves"], t["keystream_allcores_by_key"])
        summary[rec["ring"]]["best_times_s"] = t
        summary[rec["ring"]]["best_times_ratios"] = best = {
            "share_out / keystream_1core (target >= 1.0)": b1 / t["share_out"],
            "share_out / keystream_allcores (target >= 0.8)": ball / t["share_out"],
            "share_out / keystream_1core_ctr_engine (target >= 1.0)": t["keystream_1core_ctr_engine"] / t["share_out"],
            "share_out / keystream_allcores_ctr_engine (target >= 0.8)":
                t["keystream_allcores_ctr_engine"] / t["share_out"],
            "share_fresh / keystream_1core": b1 / t["share_fresh"],
            "share_fresh / keystream_allcores": ball / t["share_fresh"],
            "share_out / share_memory_pattern": t["share_memory_pattern"] / t["share_out"],
            "keystream_allcores / share_memory_pattern": ball / t["share_memory_pattern"],
            "keystream_allcores / (keystream_allcores + combine_traffic_allcores)":
                ball / (ball + t["combine_traffic_allcores"]),
            "first_touch_s": max(0.0, t["first_touch"] - t["warm_fill"]),
            "first_touch_allcores_s": max(0.0, t["first_touch_allcores"] - t["warm_fill_allcores"])}
        print(f"\n{rec['ring']} over {len(runs)} runs (best / median / min):")
        for k, v in summary[rec["ring"]].items():
            if "best" in v:
                print(f"  {k:<72} {v['best']:5.2f} / {v['median']:5.2f} / {v['min']:5.2f}")
        print(f"{rec['ring']}, from the best time of each call over the runs:")
        for k, v in best.items():
            print(f"  {k:<72} {v * 1e3:5.2f} ms" if k.endswith("_s") else f"  {k:<72} {v:5.2f}x")
    result: dict[str, Any] = {
        "benchmark": "share_limits", "machine": info,
        "settings": {"size": size, "parties": args.parties, "repeats": args.repeats, "runs": args.runs,
                     "clock": "wall"},
        "summary": summary, "runs": runs, "results": runs[int(np.argmin([r[0]["loadavg"][0] for r in runs]))]}
    if args.sweep:
        ring = RINGS[args.rings.split(",")[0].strip()]
        result["sweep"] = sweep(ring, args.parties, size, args.repeats)
        print(f"\nsweep ({ring!r}): share_out / keystream_allcores (ms)")
        for r in result["sweep"]:
            w = r["seconds_wall"]
            print(f"  chunk {r['chunk_bytes'] >> 10:5d} KiB  threads {r['threads']}  share {w['share_out']*1e3:6.2f}"
                  f"  keystream {w['keystream_allcores']*1e3:6.2f}  ratio {r['share_out / keystream_allcores']:.2f}")
    result["machine"]["loadavg_runs"] = [r[0]["loadavg"] for r in runs]
    _common.write_result(result, args.out, "share_limits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
