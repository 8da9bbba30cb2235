"""``python -m refimpl web``: serve the browser client and run secure FedAvg rounds; ``web client``: a Python client.

Examples (loopback only)::

    python -m refimpl web --clients 3 --rounds 3 --servers 3     # prints the page address with its token
    python -m refimpl web client 'http://127.0.0.1:8780/#token=...'
    python -m refimpl web --aggregator ws://127.0.0.1:9000 --clients 5 --ids 1-3   # tabs for refimpl aggregator
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from refimpl.ring import Ring

__all__ = ["main"]


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refimpl web", description="Serve the refimpl browser worker page and "
                                "run secure FedAvg rounds (multi-server additive secure aggregation) for the tabs "
                                "and Python clients that join. Loopback only.")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8780, help="port (0: a free one; default 8780)")
    p.add_argument("--rounds", type=int, default=3, help="rounds to run (default 3)")
    p.add_argument("--clients", type=int, default=2, help="clients to wait for before round 0 (default 2)")
    p.add_argument("--servers", type=int, default=2, help="aggregators S (default 2)")
    p.add_argument("--max-clients", type=int, default=16, help="most clients admitted, K of the sizing check")
    p.add_argument("--min-clients", type=int, default=2, help="fewest agreed clients for a released total")
    p.add_argument("--clip", type=float, default=1.0, help="largest |coordinate| of an update (default 1.0)")
    p.add_argument("--frac-bits", type=int, default=16, help="fixed-point fractional bits (default 16)")
    p.add_argument("--ring-bits", type=int, choices=(32, 64), default=64, help="Z_2^32 or Z_2^64 (default 64)")
    p.add_argument("--prg", choices=("aes128-ctr", "chacha20"), default="aes128-ctr", help="share stream cipher")
    p.add_argument("--task", choices=("softmax", "synthetic"), default="softmax",
                   help="softmax: 784-10 softmax regression on mnist-10k slices; synthetic: a fixed update of "
                        "--length coordinates (benchmarks)")
    p.add_argument("--length", type=int, default=100_000, help="d of the synthetic task")
    p.add_argument("--samples", type=int, default=400, help="training images per client (softmax)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--join-timeout", type=float, default=300.0, help="seconds to wait for --clients (default 300)")
    p.add_argument("--round-timeout", type=float, default=120.0, help="seconds a round waits for uploads")
    p.add_argument("--json-out", help="write every round's result (clients, accuracy, ring total, bytes) here")
    p.add_argument("-v", "--verbose", action="store_true", help="log joins, rejections and rounds")
    g = p.add_argument_group("tabs for python -m refimpl aggregator (instead of this server's rounds)")
    g.add_argument("--aggregator", metavar="WS_URL", help="serve only the page and the data partitions, for tabs "
                   "that join this lead aggregator (--protocol additive --insecure-plaintext, on loopback) as "
                   "client-<id>; --clients is then its K")
    g.add_argument("--ids", help="client ids to print tab addresses for (default 1-K), e.g. 1-3 or 2,5")
    g.add_argument("--data", default="mnist-10k", help="the clients' dataset, as python -m refimpl client --data")
    g.add_argument("--partition", default="iid", help="as python -m refimpl client --partition")
    g.add_argument("--seed", type=int, default=0, help="as python -m refimpl client --seed")
    return p


def _serve_tabs(args: argparse.Namespace) -> int:
    import signal
    import threading
    from urllib.parse import urlsplit

    from refimpl.web.assets import serve_assets
    from refimpl.web.model import PartitionData

    parts = urlsplit(args.aggregator)
    if parts.scheme != "ws" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        print(f"refimpl web: --aggregator must be a ws:// loopback address (browsers cannot present the mutual-TLS "
              f"client certificates of wss://; run the aggregator with --insecure-plaintext), got {args.aggregator!r}",
              file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refimpl web: serves plain HTTP on loopback only, not {args.host!r}", file=sys.stderr)
        return 2
    data = PartitionData(args.data, args.clients, args.partition, args.seed)
    server, base = serve_assets(args.host, args.port, data)
    from refimpl.fl.deploy.client import parse_ids

    for k in parse_ids(args.ids) if args.ids else range(1, args.clients + 1):
        print(f"client-{k}: {base}/#aggregator={args.aggregator}&client={k}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    server.server_close()
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from refimpl.web.server import RunConfig, WebRoundServer

    cfg = RunConfig(rounds=args.rounds, clients=args.clients, servers=args.servers, max_clients=args.max_clients,
                    min_clients=args.min_clients, clip=args.clip, frac_bits=args.frac_bits,
                    ring=Ring(2**args.ring_bits), prg=args.prg, task=args.task, length=args.length,
                    samples=args.samples, epochs=args.epochs, batch=args.batch, lr=args.lr,
                    join_timeout=args.join_timeout, round_timeout=args.round_timeout)
    server = WebRoundServer(cfg, args.host, args.port)
    await server.start()
    print(f"refimpl web: open {server.url}  (waiting for {cfg.clients} clients; d = {server.additive.length}, "
          f"{cfg.servers} aggregators)", flush=True)
    try:
        results = await server.run()
    finally:
        await asyncio.sleep(0.2)  # let the last messages drain before closing
        await server.close()
    for r in results:
        acc = "-" if r.accuracy is None else f"{100 * r.accuracy:.2f} %"
        print(f"round {r.round}: clients {r.clients} accuracy {acc} upload bytes {r.upload_bytes}"
              + (f" FAILED: {r.error}" if r.error else ""), flush=True)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"url": f"http://{server.host}:{server.port}/", "config": cfg.public(),
                       "rounds": [r.to_json() for r in results]}, f)
    return 0 if all(r.error is None for r in results) else 1


async def _client(url: str) -> int:
    from refimpl.web.pyclient import run_client

    report = await run_client(url)
    for rnd, t in sorted(report.timings.items()):
        res = report.results.get(rnd, {})
        print(f"client {report.id} round {rnd}: encode+share {t['encode_share_ms']:.1f} ms, upload "
              f"{t.get('upload_ms', float('nan')):.1f} ms, {int(t['upload_bytes'])} bytes; accuracy "
              f"{res.get('accuracy')}", flush=True)
    for e in report.errors:
        print(f"server error: {e}", file=sys.stderr)
    return 0 if report.done else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m refimpl web [client URL | options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["client"]:
        p = argparse.ArgumentParser(prog="python -m refimpl web client",
                                    description="Join a browser round server's run as a Python client.")
        p.add_argument("url", help="the page address the server printed (http://127.0.0.1:PORT/#token=...)")
        a = p.parse_args(argv[1:])
        return asyncio.run(_client(a.url))
    args = _serve_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if args.aggregator:
        return _serve_tabs(args)
    return asyncio.run(_serve(args))
