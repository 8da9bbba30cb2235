"""NumPy vs JAX for share, reconstruct, add and encode over sizes, with jit compile time reported apart from
steady-state time (``block_until_ready``), next to the physical limits measured in the same process.

Measured in one process (a shared, noisy machine: only ratios from the same run mean something):

* ``memcpy``            -- copying a uint32 array (memory bandwidth, the floor of any elementwise op);
* ``chacha20_openssl``  -- ChaCha20 keystream through ``cryptography`` (the NumPy path's mask generator);
* ``chacha20_jax``      -- the jax.numpy ChaCha20 (``refimpl.backend.jax_chacha``), jitted;
* ``share``             -- ``share(x, 3, ring=Z2_32, prg="chacha20")``: NumPy; JAX eager (host HKDF, then one
  compiled call); JAX inside ``jax.jit`` (keys fixed at trace time);
* ``reconstruct``, ``add`` (share + share), ``encode`` (``FixedPoint(ring=Z2_32)`` of float32; the JAX version
  includes its compiled range check) -- NumPy vs ``jax.jit``;
* ``pipeline``          -- encode, share, add, scale, reconstruct, decode of two vectors: NumPy, and one fused jit;
* ``clients_vmap``      -- K = 16 clients each sharing a d-vector under its own key: a NumPy loop vs one jitted
  ``jax.vmap`` of ``share_with_party_keys`` (the keys are batched data).

Compile time is ``jit(f).lower(...).compile()``; steady time the best of at least 7 ``block_until_ready`` calls.

Usage: ``nice python bench/bench_jax.py [--sizes 1000 100000 1000000] [--out bench/results/jax-DATE.json]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common
import jax
import jax.numpy as jnp
import numpy as np

from refimpl import Z2_32, FixedPoint, keystream, reconstruct, share
from refimpl.backend.jax_chacha import chacha20_words, key_words
from refimpl.sharing.jax_sharing import party_key_words, share_with_party_keys

KEY = bytes(range(16))
FP = FixedPoint(ring=Z2_32)
N = 3
CLIENTS = 16


def _block(x: Any) -> Any:
    return jax.block_until_ready(x)


def steady(fn: Callable[[], Any], budget: float = 0.4, min_runs: int = 7, max_runs: int = 60) -> float:
    """Best wall time of ``fn()`` (results blocked on) over a few runs, in seconds."""
    _block(fn())
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_runs or (spent < budget and runs < max_runs):
        t = time.perf_counter()
        _block(fn())
        dt = time.perf_counter() - t
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best


def compiled(fn: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], float]:
    """(compiled executable, seconds to trace + lower + compile)."""
    t = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    return exe, time.perf_counter() - t


def bench_size(d: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def row(op: str, numpy_s: float | None, jax_s: float | None, compile_s: float | None = None,
            note: str = "", **extra: Any) -> None:
        rows.append({"op": op, "size": d, "numpy_s": numpy_s, "jax_s": jax_s, "compile_s": compile_s,
                     "jax_over_numpy": (jax_s / numpy_s) if numpy_s and jax_s else None, "note": note, **extra})

    x = rng.integers(0, 2**32, size=d, dtype=np.uint32)
    y = rng.integers(0, 2**32, size=d, dtype=np.uint32)
    xf = (rng.standard_normal(d) * 100).astype(np.float32)
    yf = (rng.standard_normal(d) * 100).astype(np.float32)
    jx, jy, jxf, jyf = (jax.device_put(v) for v in (x, y, xf, yf))

    # physical limits
    out = np.empty_like(x)
    row("memcpy", steady(lambda: np.copyto(out, x)), None, note="np.copyto of d uint32")
    kw = jnp.asarray(key_words(bytes(32)))
    row("chacha20_openssl", steady(lambda: keystream(bytes(32), 4 * d, cipher="chacha20")), None,
        note="d keystream words via cryptography")
    exe, c = compiled(lambda k: chacha20_words(k, d), kw)
    row("chacha20_jax", steady(lambda: keystream(bytes(32), 4 * d, cipher="chacha20")), steady(lambda: exe(kw)), c,
        note="jnp ChaCha20 vs OpenSSL, d words")

    # share
    np_share = steady(lambda: share(x, N, ring=Z2_32, key=KEY, prg="chacha20").data)
    t = time.perf_counter()
    _block(share(jx, N, ring=Z2_32, key=KEY, prg="chacha20").data)
    eager_first = time.perf_counter() - t
    eager = steady(lambda: share(jx, N, ring=Z2_32, key=KEY, prg="chacha20").data)
    row("share_eager", np_share, eager, eager_first, note="JAX eager: host HKDF + one compiled call; "
        "compile_s = first call")
    exe, c = compiled(lambda v: share(v, N, ring=Z2_32, key=KEY, prg="chacha20").data, jx)
    row("share_jit", np_share, steady(lambda: exe(jx)), c)

    s_np = share(x, N, ring=Z2_32, key=KEY, prg="chacha20")
    t_np = share(y, N, ring=Z2_32, key=bytes(16), prg="chacha20")
    s_jx = share(jx, N, ring=Z2_32, key=KEY, prg="chacha20")
    t_jx = share(jy, N, ring=Z2_32, key=bytes(16), prg="chacha20")
    exe, c = compiled(reconstruct, s_jx)
    row("reconstruct", steady(lambda: reconstruct(s_np)), steady(lambda: exe(s_jx)), c)
    exe, c = compiled(lambda a, b: a + b, s_jx, t_jx)
    row("add", steady(lambda: (s_np + t_np).data), steady(lambda: exe(s_jx, t_jx)), c)
    row("add_eager", steady(lambda: (s_np + t_np).data), steady(lambda: (s_jx + t_jx).data), None,
        note="JAX eager op dispatch")
    exe, c = compiled(FP.encode, jxf)
    row("encode", steady(lambda: FP.encode(xf)), steady(lambda: exe(jxf)), c,
        note="JAX includes the compiled range check (debug.callback)")

    def pipeline(a: Any, b: Any) -> Any:
        sa = share(FP.encode(a), N, ring=Z2_32, key=KEY, prg="chacha20")
        sb = share(FP.encode(b), N, ring=Z2_32, key=bytes(16), prg="chacha20")
        return FP.decode(reconstruct((sa + sb) * 2))

    exe, c = compiled(pipeline, jxf, jyf)
    row("pipeline", steady(lambda: pipeline(xf, yf)), steady(lambda: exe(jxf, jyf)), c,
        note="encode+share+add+scale+reconstruct+decode, one fused jit")

    if d <= 100_000:  # K clients x d: keep memory and time modest
        keys = [bytes([7, c]) * 8 for c in range(CLIENTS)]
        xs = rng.integers(0, 2**32, size=(CLIENTS, d), dtype=np.uint32)
        jxs = jax.device_put(xs)

        def words() -> Any:  # host HKDF of every client's party keys, counted on both sides
            return jnp.asarray(np.stack([party_key_words(k, N) for k in keys]))

        def np_clients() -> Any:
            return [share(xs[i], N, ring=Z2_32, key=keys[i], prg="chacha20").data for i in range(CLIENTS)]

        exe, c = compiled(jax.vmap(lambda v, k: share_with_party_keys(v, k, ring=Z2_32).data), jxs, words())
        row("clients_vmap", steady(np_clients), steady(lambda: exe(jxs, words())), c,
            note=f"{CLIENTS} clients x d, own keys: NumPy loop vs one vmapped jit (HKDF on host in both)",
            clients=CLIENTS)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    rows = [r for d in args.sizes for r in bench_size(d, rng)]
    result = {
        "benchmark": "jax",
        "machine": _common.machine_info(),
        "settings": {"ring": "Z2_32", "parties": N, "prg": "chacha20", "jax_x64": bool(jax.config.jax_enable_x64),
                     "timing": "best of >= 7 runs (block_until_ready); compile_s = trace+lower+compile"},
        "total_s": None,
        "results": rows,
    }
    result["total_s"] = round(time.perf_counter() - t0, 2)
    out = _common.write_result(result, args.out, "jax")
    print(f"{'op':<18}{'size':>9}{'numpy ms':>11}{'jax ms':>11}{'jax/np':>8}{'compile s':>11}  note")
    for r in rows:
        def ms(v: float | None) -> str:
            return f"{v * 1e3:.3f}" if v is not None else "-"
        ratio = f"{r['jax_over_numpy']:.2f}" if r["jax_over_numpy"] else "-"
        comp = f"{r['compile_s']:.2f}" if r["compile_s"] is not None else "-"
        print(f"{r['op']:<18}{r['size']:>9}{ms(r['numpy_s']):>11}{ms(r['jax_s']):>11}{ratio:>8}{comp:>11}  {r['note']}")
    print(f"# {result['total_s']} s; devices: {', '.join(result['machine']['jax_devices'])}; results: {out or '-'}")


if __name__ == "__main__":
    main()
