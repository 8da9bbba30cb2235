"""Browser client vs Python client: encode + share + upload of one secure-aggregation contribution at d = 1e5.

One run of ``python -m refimpl web --task synthetic`` (S aggregators in the server process, loopback) with one
headless-Chromium tab (Debian's chromium via Playwright) and one Python client (:mod:`refimpl.web.pyclient`) taking
part in the same rounds, so the two are measured side by side under the same load. Per round and client:

* ``encode_share_ms``: fixed-point encoding + round-key derivation + seed-compressed sharing (the browser: WebCrypto
  HKDF and AES-128-CTR, typed arrays; Python: refimpl's AdditiveClient);
* ``upload_ms``: from the shares being ready to the server's ack (wire encoding, WebSocket send, the S aggregators'
  validation and copy);
* ``upload_bytes``: the upload message's bytes on the wire (the WebSocket payload).

Limits measured in the same run, in each runtime: the AES-128-CTR keystream of the (S - 1) masks (8 d bytes each),
the bound of sharing, and fixed-point encoding alone.

    nice python bench/bench_web.py                      # d = 1e5, S = 2, 7 rounds
    nice python bench/bench_web.py --length 1000000 --servers 3
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import threading
import time

from _common import ROOT, machine_info, write_result

sys.path.insert(0, str(ROOT / "tests"))


def _py_limits(d: int, servers: int, repeats: int) -> dict[str, float]:
    import numpy as np

    from refimpl.encoding import FixedPoint
    from refimpl.prg import Stream, fresh_key

    x = np.sin(0.001 * np.arange(d)) * 0.9
    buf = np.empty(d, dtype=np.uint64)
    fp = FixedPoint()
    ks, enc = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(servers - 1):
            Stream(fresh_key()).read_into(buf)
        t1 = time.perf_counter()
        fp.encode(x)
        t2 = time.perf_counter()
        ks.append(1e3 * (t1 - t0))
        enc.append(1e3 * (t2 - t1))
    return {"keystream_ms": min(ks), "encode_ms": min(enc)}


JS_LIMITS = """async ([d, servers, repeats]) => {
  const { keystreamInto, freshKey } = await import('/static/prg.mjs');
  const { FixedPoint } = await import('/static/encoding.mjs');
  const x = Float64Array.from({ length: d }, (_, i) => 0.9 * Math.sin(0.001 * i));
  const buf = new BigUint64Array(d);
  const fp = new FixedPoint();
  let ks = Infinity, enc = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let s = 1; s < servers; s++) await keystreamInto(freshKey(16), buf);
    const t1 = performance.now();
    fp.encode(x);
    const t2 = performance.now();
    ks = Math.min(ks, t1 - t0); enc = Math.min(enc, t2 - t1);
  }
  return { keystream_ms: ks, encode_ms: enc };
}"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=100_000, help="d (default 1e5)")
    p.add_argument("--servers", type=int, default=2, help="aggregators S (default 2)")
    p.add_argument("--rounds", type=int, default=7, help="rounds; the first is reported apart as warm-up")
    p.add_argument("--out", help="JSON path (default bench/results/web-<date>.json; '-' writes nothing)")
    args = p.parse_args(argv)

    from _browser import chromium_browser

    from refimpl.web.pyclient import run_client

    srv = subprocess.Popen([sys.executable, "-m", "refimpl", "web", "--port", "0", "--task", "synthetic",
                            "--length", str(args.length), "--clients", "2", "--rounds", str(args.rounds),
                            "--servers", str(args.servers), "--join-timeout", "120"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        assert srv.stdout is not None
        url = None
        while url is None:
            line = srv.stdout.readline()
            if not line:
                raise SystemExit(f"the server did not start: {srv.stdout.read()}")
            m = re.search(r"open (http://\S+)", line)
            url = m.group(1) if m else None
        reports: list = []
        with chromium_browser() as browser:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("window.refimpl?.state?.client != null", timeout=60_000)
            thread = threading.Thread(target=lambda: reports.append(asyncio.run(run_client(url))), daemon=True)
            thread.start()
            page.wait_for_function("window.refimpl?.state?.done", timeout=600_000)
            js = page.evaluate("""() => Object.fromEntries(Object.entries(window.refimpl.client.timings).map(
                ([r, t]) => [r, {encode_share_ms: t.encode_share_ms, upload_ms: t.upload_ms,
                                 upload_bytes: t.upload_bytes}]))""")
            js_limits = page.evaluate(JS_LIMITS, [args.length, args.servers, 5])
            ua = page.evaluate("navigator.userAgent")
        thread.join(timeout=120)
        srv.wait(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
    py = reports[0].timings
    rounds = range(1, args.rounds)  # round 0: warm-up (JIT, first WebCrypto calls, buffers)

    def med(t: dict, key: str) -> float:
        return statistics.median(float(t[r if isinstance(next(iter(t)), int) else str(r)][key]) for r in rounds)

    rows = {}
    for who, t in (("browser", js), ("python", py)):
        es, up = med(t, "encode_share_ms"), med(t, "upload_ms")
        rows[who] = {"encode_share_ms": es, "upload_ms": up, "total_ms": es + up,
                     "upload_bytes": sorted({int(v["upload_bytes"]) for v in t.values()})}
    limits = {"browser": js_limits, "python": _py_limits(args.length, args.servers, 5)}
    result = {"benchmark": "web", "machine": machine_info(browser=ua), "length": args.length,
              "servers": args.servers, "rounds": args.rounds, "clients": rows, "limits": limits,
              "ratio_browser_over_python": {k: rows["browser"][k] / rows["python"][k]
                                            for k in ("encode_share_ms", "upload_ms", "total_ms")},
              "bytes_equal": rows["browser"]["upload_bytes"] == rows["python"]["upload_bytes"]}
    print(f"d = {args.length}, S = {args.servers}, median of rounds 1..{args.rounds - 1}")
    print(f"{'client':<8} {'encode+share ms':>16} {'upload ms':>10} {'total ms':>9} {'upload bytes':>13} "
          f"{'keystream ms':>13} {'encode ms':>10}")
    for who, r in rows.items():
        lim = limits[who]
        print(f"{who:<8} {r['encode_share_ms']:>16.1f} {r['upload_ms']:>10.1f} {r['total_ms']:>9.1f} "
              f"{','.join(map(str, r['upload_bytes'])):>13} {lim['keystream_ms']:>13.2f} {lim['encode_ms']:>10.2f}")
    print("browser / python:", {k: round(v, 2) for k, v in result["ratio_browser_over_python"].items()},
          "bytes equal:", result["bytes_equal"])
    write_result(result, args.out, "web")
    return 0


if __name__ == "__main__":
    sys.exit(main())
