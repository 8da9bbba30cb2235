"""``python -m refimpl client``: federated clients in their own process, each with its own data partition.

Each client (certificate ``client-<id>``) joins the lead aggregator, and every round trains locally from the
round's model (NumPy SGD, :mod:`refimpl.nn`) on its own partition, and contributes its weighted, clipped update
through the round's secure-aggregation protocol (SecAgg / SecAgg+ masked input, or additive shares sent to each
share server). It speaks the client protocol documented in :mod:`refimpl.fl.deploy.aggregator`. One process may run
several clients (``--ids 1-10``), each on its own thread and connection.

Example::

    python -m refimpl client --ids 1-10 --aggregator wss://127.0.0.1:9000 --tls-dir certs --clients 10
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from refimpl import nn
from refimpl.errors import ProtocolError, RefimplError, WorkerUnavailable
from refimpl.fl.deploy.aggregator import flatten, unflatten
from refimpl.net import transport, wire
from refimpl.prg import Stream, derive_key
from refimpl.secagg import AdditiveClient, AdditiveConfig, Codec, SecAggClient, SecAggConfig

__all__ = ["NetClient", "main", "synthetic_contribution"]

log = logging.getLogger("refimpl.client")


def synthetic_contribution(client: int, round_: int, length: int, clip: float) -> np.ndarray:
    """The test vector client ``client`` contributes in round ``round_`` with ``--synthetic`` (public, exact in
    fixed point: multiples of 2^-8 within ``[-clip/2, clip/2]``)."""
    k = np.arange(length, dtype=np.int64)
    steps = ((client * 7919 + round_ * 104729 + k * 31) % 257) - 128
    return steps / 256 * clip


class NetClient:
    """One client: its id, data partition, key, and the links to the lead (and share servers)."""

    def __init__(self, client_id: int, aggregator: str, *, tls_dir: str | None, data: tuple[Any, Any] | None,
                 insecure_plaintext: bool = False, deadline: float = 600.0, key: bytes | None = None) -> None:
        self.id, self.name = int(client_id), f"client-{int(client_id)}"
        self.tls_dir, self.insecure_plaintext, self.deadline = tls_dir, insecure_plaintext, deadline
        self.data = data
        self.key = key
        self.lead = transport.Link(aggregator, "aggregator", self.name, tls_dir=tls_dir,
                                   insecure_plaintext=insecure_plaintext, deadline=deadline)
        self.shares: dict[str, transport.Link] = {}
        self.secagg: SecAggClient | None = None
        self.additive: AdditiveClient | None = None
        self.rounds_done = 0
        self.finished: str | None = None

    def _call(self, link: transport.Link, kind: str, msg: dict[str, Any]) -> dict[str, Any]:
        raw = link.call(kind, wire.encode(msg))
        out = wire.decode(raw) if raw is not None else {}  # type: ignore[arg-type]
        if not isinstance(out, dict):
            raise ProtocolError(f"{link.name} answered {type(out).__name__}, not a dict")
        return out

    def run(self) -> str:
        """Take part in rounds until the aggregator says it is finished; return its reason."""
        size = len(self.data[1]) if self.data is not None else 1
        msg = self._call(self.lead, "join", {"op": "join", "size": size})
        while True:
            op = msg.get("op")
            if op == "finished":
                self.finished = str(msg.get("reason"))
                return self.finished
            if op == "round":
                try:
                    msg = self._round(msg)
                    self.rounds_done += 1
                    continue
                except (RefimplError, KeyError, TypeError) as e:
                    if isinstance(e, WorkerUnavailable):
                        raise
                    log.warning("%s: round %s failed: %s", self.name, msg.get("round"), e)
            elif "error" in msg or op == "abort":
                log.info("%s: %s", self.name, msg.get("error") or msg.get("reason"))
            msg = self._call(self.lead, "join", {"op": "join", "size": size})

    def _contribution(self, msg: dict[str, Any]) -> np.ndarray:
        codec = msg["codec"]
        if msg.get("synthetic") is not None:
            return synthetic_contribution(self.id, msg["round"], codec["length"], codec["clip"])
        assert self.data is not None
        x, y = self.data
        sizes = msg["sizes"]
        params = unflatten(msg["params"], sizes)
        stream = Stream(derive_key(bytes(16), "refimpl/client-batches", self.id, msg["round"]))  # public order
        for _ in range(int(msg["epochs"])):
            order = np.argsort(stream.read(8 * len(y)).view(np.uint64))
            for lo in range(0, len(y), int(msg["batch"])):
                idx = order[lo : lo + int(msg["batch"])]
                _, grads = nn.loss_and_grad(params, x[idx], y[idx])
                nn.sgd_step(params, grads, float(msg["lr"]))
        delta = (flatten(params) - msg["params"]) * float(msg["weight"])
        return np.clip(delta, -codec["clip"], codec["clip"])

    def _round(self, msg: dict[str, Any]) -> dict[str, Any]:
        r = msg["round"]
        c = msg["codec"]
        codec = Codec(length=c["length"], max_clients=c["max_clients"], clip=c["clip"], frac_bits=c["frac_bits"])
        values = self._contribution(msg)
        if msg["protocol"] == "additive":
            return self._additive(r, msg["additive"], codec, values)
        s = msg["secagg"]
        cfg = SecAggConfig(num_clients=s["num_clients"], threshold=s["threshold"], codec=codec, degree=s["degree"],
                           graph_key=s["graph_key"], prg=s["prg"])
        if self.secagg is None or self.secagg.config != cfg:
            self.secagg = SecAggClient(cfg, self.id, key=self.key)
        cl = self.secagg
        cl.begin_round(r)
        adv = cl.advertise_keys()
        out = self._stage(r, "AdvertiseKeys", {"c_public": adv.c_public, "s_public": adv.s_public}, "ShareKeys")
        roster = {int(v): tuple(k) for v, k in out["roster"].items()}
        sk = cl.share_keys(roster)  # type: ignore[arg-type]
        out = self._stage(r, "ShareKeys", {"ciphertexts": {str(v): b for v, b in sk.ciphertexts.items()}},
                          "MaskedInputCollection")
        mi = cl.masked_input({int(u): b for u, b in out["inbox"].items()}, values)
        out = self._stage(r, "MaskedInputCollection", {"masked": mi.masked}, "Unmasking")
        um = cl.unmask(out["survivors"])
        return self._call(self.lead, "submit", {"op": "submit", "round": r, "stage": "Unmasking",
                                                "key_shares": {str(k): v for k, v in um.key_shares.items()},
                                                "seed_shares": {str(k): v for k, v in um.seed_shares.items()}})

    def _stage(self, r: int, stage: str, fields: dict[str, Any], next_stage: str) -> dict[str, Any]:
        out = self._call(self.lead, "submit", {"op": "submit", "round": r, "stage": stage, **fields})
        if out.get("op") != "stage" or out.get("stage") != next_stage or out.get("round") != r:
            reason = out.get("error") or out.get("reason") or out
            raise ProtocolError(f"{self.name}: round {r} ended at stage {stage}: {reason}")
        return out

    def _additive(self, r: int, a: dict[str, Any], codec: Codec, values: np.ndarray) -> dict[str, Any]:
        cfg = AdditiveConfig(codec=codec, servers=len(a["servers"]), prg=a["prg"], min_clients=a["min_clients"])
        if self.additive is None or self.additive.config != cfg:
            self.additive = AdditiveClient(cfg, self.id, key=self.key)
        self.additive.begin_round(r)
        for m in self.additive.contribute(values):
            url = a["servers"][m.server]
            link = self.shares.get(url)
            if link is None:
                link = self.shares[url] = transport.Link(url, f"aggregator-{m.server}", self.name,
                                                         tls_dir=self.tls_dir, deadline=self.deadline,
                                                         insecure_plaintext=self.insecure_plaintext)
            out = self._call(link, "upload", {"op": "upload", "round": r, "client": self.id, "server": m.server,
                                              "payload": m.payload, "prg": m.prg})
            if "error" in out:
                raise ProtocolError(f"share server {m.server}: {out['error']}")
        return self._call(self.lead, "submit", {"op": "submit", "round": r, "stage": "ShareUpload"})


def parse_ids(text: str) -> list[int]:
    """Client ids from ``"1-3"``, ``"2,5"`` or ``"1-3,7"``; raises ``ValueError`` naming the bad part."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ValueError(f"client ids are like 1-3 or 2,5; {part!r} is not an id or a range") from None
    return out


def main(argv: Sequence[str]) -> int:
    """``python -m refimpl client --ids 1-10 --aggregator URL --tls-dir DIR --clients K [--data mnist-10k]``."""
    p = argparse.ArgumentParser(prog="refimpl client", description="Federated clients in this process.")
    p.add_argument("--ids", required=True, help="client ids, e.g. 3 or 1-10 or 1,4,7 (certificates client-<id>)")
    p.add_argument("--aggregator", required=True, help="the lead aggregator's URL, wss://host:port")
    p.add_argument("--tls-dir", help="the deployment's certificates")
    p.add_argument("--insecure-plaintext", action="store_true", help="INSECURE: no TLS (loopback experiments only)")
    p.add_argument("--clients", type=int, required=True, help="K, the number of clients the data is split among")
    p.add_argument("--data", default="mnist-10k",
                   help="dataset (default mnist-10k, built in), or 'synthetic' for the aggregator's --synthetic D")
    p.add_argument("--partition", default="iid", help="iid | dirichlet | shards | powerlaw")
    p.add_argument("--seed", type=int, default=0, help="partition seed (public)")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds to wait for a stage to close")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.tls_dir and not args.insecure_plaintext:
        p.error("give --tls-dir (mutual TLS) or, for loopback experiments only, --insecure-plaintext")
    ids = parse_ids(args.ids)
    parts: dict[int, tuple[Any, Any] | None] = {i: None for i in ids}
    if args.data != "synthetic":
        from refimpl.fl.data import load
        from refimpl.fl.partition import make_partition

        ds = load(args.data)
        part = make_partition(args.partition, ds.y_train, args.clients, seed=args.seed)
        parts = {i: (ds.x_train[part[i - 1]].astype(np.float64), ds.y_train[part[i - 1]]) for i in ids}
    results: dict[int, str] = {}

    def run(i: int) -> None:
        try:
            results[i] = NetClient(i, args.aggregator, tls_dir=args.tls_dir, data=parts[i], deadline=args.deadline,
                                   insecure_plaintext=args.insecure_plaintext).run()
        except RefimplError as e:
            results[i] = f"failed: {e}"

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in ids:
        print(f"client-{i}: {results.get(i)}", flush=True)
    return 0 if all(not str(v).startswith("failed") for v in results.values()) else 1
