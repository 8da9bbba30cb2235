"""``python -m refimpl aggregator``: the lead aggregator of secure FedAvg, or an additive share server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from refimpl.errors import RefimplError
from refimpl.fl.deploy.aggregator import Lead, LeadConfig
from refimpl.fl.deploy.share_server import ShareServer

__all__ = ["main"]


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv: Sequence[str]) -> int:
    """``python -m refimpl aggregator --protocol secagg|secagg+|additive ...`` (the lead or a share server)."""
    import argparse
    import signal

    from refimpl.workers.server import parse_address

    p = argparse.ArgumentParser(prog="refimpl aggregator", description="Secure FedAvg over the network: the lead "
                                "aggregator (holds the model, runs rounds) or an additive share server.")
    p.add_argument("--protocol", choices=["secagg", "secagg+", "additive"], default="secagg")
    p.add_argument("--share-server-index", type=int, default=None,
                   help="run share server aggregator-INDEX of the additive protocol instead of the lead")
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port (default 127.0.0.1, any free port)")
    p.add_argument("--tls-dir", help="the deployment's certificates (python -m refimpl certs)")
    p.add_argument("--insecure-plaintext", action="store_true", help="INSECURE: no TLS (loopback experiments only)")
    p.add_argument("--clients", type=int, default=10, help="K, clients client-1..client-K")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threshold", type=int, default=None,
                   help="SecAgg t (default: more than half a neighbourhood, K // 2 + 1 for SecAgg)")
    p.add_argument("--degree", type=int, default=None, help="SecAgg+ graph degree (default for secagg+: 2 log2 K)")
    p.add_argument("--share-server", action="append", default=[], help="additive: URL of share server s, in order")
    p.add_argument("--min-clients", type=int, default=2)
    p.add_argument("--model", type=_sizes, default=(784, 32, 10), help="layer sizes (default 784,32,10)")
    p.add_argument("--clip", type=float, default=1.0, help="per-coordinate clip of an update")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--stage-timeout", type=float, default=60.0)
    p.add_argument("--join-timeout", type=float, default=120.0)
    p.add_argument("--synthetic", type=int, default=None, metavar="D", help="clients send test vectors of length D")
    p.add_argument("--data", default="mnist-10k", help="test set for the accuracy printed each round")
    p.add_argument("--out", help="write the round records as JSON here")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.tls_dir and not args.insecure_plaintext:
        p.error("give --tls-dir (mutual TLS) or, for loopback experiments only, --insecure-plaintext")
    host, port = parse_address(args.listen)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.share_server_index is not None:
        share = ShareServer(args.share_server_index, tls_dir=args.tls_dir, host=host, port=port,
                            insecure_plaintext=args.insecure_plaintext)
        print(f"share server {share.name} listening on {share.url}", flush=True)
        stop.wait()
        share.close()
        return 0
    degree = args.degree
    if args.protocol == "secagg+" and degree is None:
        degree = 2 * max(1, int(np.ceil(np.log2(args.clients))))
    try:
        cfg = LeadConfig(protocol="additive" if args.protocol == "additive" else "secagg", clients=args.clients,
                         rounds=args.rounds, sizes=args.model, threshold=args.threshold, degree=degree,
                         share_servers=tuple(args.share_server), min_clients=args.min_clients, clip=args.clip,
                         lr=args.lr, epochs=args.epochs, batch=args.batch, stage_timeout=args.stage_timeout,
                         join_timeout=args.join_timeout, synthetic=args.synthetic)
        test = None
        if args.synthetic is None:
            from refimpl.fl.data import load

            ds = load(args.data)
            test = (ds.x_test.astype(np.float64), ds.y_test)
        lead = Lead(cfg, tls_dir=args.tls_dir, host=host, port=port, insecure_plaintext=args.insecure_plaintext,
                    test_data=test)
    except (RefimplError, OSError) as e:
        print(f"refimpl aggregator: {e}", flush=True)
        return 2
    print(f"aggregator ({args.protocol}) listening on {lead.url}, waiting for {args.clients} clients", flush=True)
    lead.start()
    while not lead.done.wait(0.2) and not stop.is_set():
        pass
    for rec in lead.history:
        what = f"aborted: {rec.aborted}" if rec.aborted else f"summed {len(rec.clients)} clients"
        acc = f", test accuracy {rec.accuracy:.3f}" if rec.accuracy is not None else ""
        print(f"round {rec.round}: {what} in {rec.seconds:.2f} s, {rec.bytes_in} B in / {rec.bytes_out} B out{acc}",
              flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump([rec.__dict__ for rec in lead.history], f)
    time.sleep(0.5)  # let the last replies reach the clients
    lead.close()
    return 0 if lead.history and not any(r.aborted for r in lead.history) else 1
