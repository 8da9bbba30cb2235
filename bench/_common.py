"""What every benchmark repeats: timers, machine information, and where results go.

Results are named one way: ``bench/results/<benchmark>-<UTC date>[-<variant>].json`` (e.g. ``sharing-2026-11-30.json``,
``sharing-2026-11-30-quick.json``), written atomically by :func:`write_result`, and each holds ``benchmark``,
``machine`` (:func:`machine_info`) and the figures.

Timing on a shared, noisy machine: only ratios of figures measured side by side in one process mean something.
:func:`measure` interleaves the functions it compares round by round, so a burst of load from other users falls on
all of them alike, and records both the wall clock and the process CPU time (all threads).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

if str(ROOT) not in sys.path:  # running from a checkout without installing
    sys.path.insert(0, str(ROOT))

__all__ = ["RESULTS", "ROOT", "best_of", "cores", "machine_info", "measure", "peak_rss_mib", "result_path",
           "spread", "time_call", "today", "write_result"]


# ---------------------------------------------------------------------------------------------- timing
def time_call(fn: Callable[[], Any], number: int = 1) -> tuple[float, float]:
    """Seconds per call over ``number`` back-to-back calls: (wall clock, process CPU time of all threads)."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn()
    t1, c1 = time.perf_counter(), time.process_time()
    return (t1 - t0) / number, (c1 - c0) / number


def best_of(fn: Callable[[], Any], repeats: int, *, warm: bool = True) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``repeats`` calls (after one untimed warm-up call unless ``warm=False``)."""
    if warm:
        fn()
    wall, cpu = math.inf, math.inf
    for _ in range(repeats):
        w, c = time_call(fn)
        wall, cpu = min(wall, w), min(cpu, c)
    return wall, cpu


def measure(fns: dict[str, Callable[[], Any]], repeats: int, *,
            min_sample_s: float = 2e-3) -> tuple[dict[str, dict[str, float]], int]:
    """Best-of-``repeats`` seconds per call of each function on both clocks, sampled in interleaved rounds.

    Every function is called once untimed first (warming code paths, caches and the allocator); a sample times
    enough back-to-back calls to last about ``min_sample_s``. Returns ``({"wall": {name: s}, "cpu": {name: s}},
    calls per sample)``.
    """
    first = next(iter(fns.values()))
    t, _ = time_call(first, 1)
    for fn in list(fns.values())[1:]:
        fn()
    number = max(1, min(10_000, math.ceil(min_sample_s / max(t, 1e-7))))
    best = {clock: {name: math.inf for name in fns} for clock in ("wall", "cpu")}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time_call(fn, number)
            best["wall"][name] = min(best["wall"][name], wall)
            best["cpu"][name] = min(best["cpu"][name], cpu)
    return best, number


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and count of a list of figures (e.g. per-pair ratios)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "count": len(values)}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------- environment
def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _git() -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "refimpl"], cwd=ROOT, capture_output=True,
                               text=True, check=False, timeout=10).stdout.strip()
        return {"commit": head or None, "refimpl_dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "refimpl_dirty": None}


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info(**extra: Any) -> dict[str, Any]:
    """Platform, CPU (model, AES/AVX flags, cores), load, memory settings, library versions, git commit, date.

    JAX's version and devices are included only if JAX is already imported (this never imports it).
    """
    import cryptography
    import numpy as np
    from cryptography.hazmat.backends.openssl import backend

    import refimpl
    from refimpl import jit
    from refimpl.prg import aes_engine

    flags = set((_cpuinfo("flags") or "").split())
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpuinfo("model name") or platform.processor() or "unknown",
        "cpu_flags": sorted(flags & {"aes", "vaes", "avx", "avx2", "avx512f", "sha_ni", "pclmulqdq"}),
        "cpu_count": os.cpu_count(),
        "cores_available": cores(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "transparent_hugepage": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cryptography": cryptography.__version__,
        "openssl": backend.openssl_version_text(),
        "aes_engine": aes_engine(),  # OpenSSL's engine for long AES-CTR keystreams here (refimpl.prg.aes_engine)
        "compiled_loop": jit.available(),  # the clients' encode-and-mask pass compiled by Numba (refimpl.jit)
        "compiled_aes_bits": jit.aes_width() if jit.aes_available() else 0,  # the compiled AES-CTR's vector width
        "numba": _dist_version("numba"),
        "refimpl": getattr(refimpl, "__version__", None),
        "git": _git(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        info["jax"] = jax.__version__
        info["jax_devices"] = [str(d) for d in jax.devices()]
    info.update(extra)
    return info


# ---------------------------------------------------------------------------------------------- output
def today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")


def result_path(benchmark: str, variant: str | None = None, date: str | None = None) -> Path:
    """``bench/results/<benchmark>-<date>[-<variant>].json``: the one naming scheme of result files."""
    suffix = f"-{variant}" if variant else ""
    return RESULTS / f"{benchmark}-{date or today()}{suffix}.json"


def write_result(result: dict[str, Any], out: str | Path | None, benchmark: str,
                 variant: str | None = None) -> Path | None:
    """Write ``result`` as JSON to ``out`` (None: :func:`result_path`; ``"-"``: nowhere), atomically."""
    if out == "-":
        return None
    if "machine" in result and isinstance(result["machine"], dict) and hasattr(os, "getloadavg"):
        result["machine"].setdefault("loadavg_end", os.getloadavg())
    path = Path(out) if out else result_path(benchmark, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)
    print(f"# wrote {path}")
    return path


def fedavg_dataset() -> tuple[Any, str]:
    """The federated benchmarks' data: Fashion-MNIST's IDX files when installed, else refimpl's built-in mnist-10k.

    Returns the dataset and a note naming which one ran (it goes into the JSON).
    """
    from refimpl.fl import data

    try:
        return data.load("fashion_mnist", use_tfds=False), "Fashion-MNIST, IDX files"
    except data.DatasetNotFoundError:
        return data.load("mnist-10k"), "mnist-10k (Fashion-MNIST absent)"
