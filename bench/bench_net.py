"""Networked parties over loopback (mutual TLS WebSockets) against raw sockets and in-process workers.

Measured in one run on 127.0.0.1 (a shared, noisy machine: only ratios from the same run mean something):

* ``throughput``  -- ``ptr.move(B)`` of a 256 MiB uint8 array between two worker processes (A encodes it to buffers,
  ``wire.encode_parts``, and writes them over its bulk channel to B, a blocking mutual-TLS socket, B receives
  into one buffer and decodes the array as a view of it) vs a raw TLS socket ``sendall`` of the same bytes between
  two processes, the receiver reading into a reused 1 MiB buffer (target: >= 50% of raw); also the same bytes as
  one transport request over the bulk channel and over the WebSocket (chunks), the wire format's encode/decode
  (CRC-32 included) and a fresh receive buffer's first fill, to say where a move's time goes; with ``--big``, a
  1 GiB ``send`` from this process (it must not time out) and a 1 GiB ``get`` back;
* ``latency``     -- a small ``send`` + ``get`` round trip (2 requests) vs a raw WebSocket (TLS) echo of the same
  number of messages (target <= 2x): best-of and median ratios, and the CPU per ``send`` + ``get`` in the caller
  and in the worker (``/proc``);
* ``beaver``      -- a Beaver product of 1e6 elements shared among 2 worker processes + a crypto-provider process
  vs the same SharedTensor code on in-process VirtualWorkers (target <= 2x);
* ``inference``   -- a 2-server encrypted inference batch (64 MNIST images x a 784x10 linear layer, weights and
  images secret-shared between 2 worker processes, Beaver matmul + truncation) vs in process (target <= 2x);
  ``mlp_inference`` the same for a 784-128-10 ReLU MLP (exact ReLU by the party-local comparison program);
  each of these three also with the CPU seconds per call of every process (this one and the 3 workers, from
  ``/proc``) against the in-process CPU: on a 2-core machine the networked wall time cannot drop below about half
  the summed CPU; ``--runs N`` repeats the latency and versus sections N times (ratios and load under
  ``repeat_runs``);
* ``secagg``      -- a SecAgg+ round over the network (lead aggregator in this process, K clients as threads in a
  few client processes, d = 1e5 synthetic updates) vs the in-process simulation ``run_secagg_round``: round latency
  and bytes per client. Flower's deployment runtime is measured side by side with this round (same K and d) by
  ``bench/bench_flower_deploy.py``.

Usage: ``python bench/bench_net.py [--quick] [--big] [--only SECTIONS] [--runs N] [--clients 10,50,100] [--out PATH]``
(default ``bench/results/net-<UTC date>.json``; ``--only throughput,big`` runs those sections alone and writes
``net-<UTC date>-<sections>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

from refimpl.demos.network import Party, shared_mlp_logits
from refimpl.encoding import FixedPoint
from refimpl.net import certs, transport
from refimpl.workers import Ledger, VirtualWorker, send, share_among
from refimpl.workers.remote import Session, connect

MiB = 1 << 20


# ---------------------------------------------------------------- helper processes (run as this script)
def _tls_sink(port_file: str, tls: str, nbytes: int) -> None:
    ctx = certs.server_context(tls, "sink")
    srv = socket.create_server(("127.0.0.1", 0))
    Path(port_file).write_text(str(srv.getsockname()[1]))
    while True:
        conn, _ = srv.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            buf, got = bytearray(MiB), 0
            while got < nbytes:
                n = s.recv_into(buf)
                if not n:
                    break
                got += n
            s.sendall(b"k")


def _ws_echo(port_file: str, tls: str) -> None:
    import asyncio

    from websockets.asyncio.server import serve

    async def echo(ws):
        async for msg in ws:
            await ws.send(msg)

    async def run():
        async with serve(echo, "127.0.0.1", 0, ssl=certs.server_context(tls, "sink"), compression=None) as server:
            Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
            await asyncio.Future()

    asyncio.run(run())


def _helper(mode: str, tls: Path, *extra: str) -> tuple[object, int]:
    import subprocess

    port_file = tempfile.mktemp()
    proc = subprocess.Popen([sys.executable, __file__, f"--{mode}", port_file, str(tls), *extra])
    for _ in range(600):
        if Path(port_file).exists() and Path(port_file).read_text():
            return proc, int(Path(port_file).read_text())
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{mode} helper did not start")


# ---------------------------------------------------------------- the measurements
def _echo_server(tls: Path) -> tuple[object, int]:
    """A transport server in a helper process that acknowledges every request (for the bare transport rows)."""
    return _helper("ack-server", tls)


def _ack_server(port_file: str, tls: str) -> None:
    import threading

    server = transport.serve("sink", lambda *a: None, tls_dir=tls)
    Path(port_file).write_text(str(server.port))
    threading.Event().wait()


def throughput(tls: Path, workers: dict, nbytes: int, repeats: int) -> dict:
    from refimpl.net import framing, wire

    a, b = workers["alice"], workers["bob"]
    ptr = send(np.zeros(nbytes, dtype=np.uint8), a)
    move = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ptr = ptr.move(b if ptr.location is a else a)
        move.append(time.perf_counter() - t0)
    del ptr
    proc, port = _helper("tls-sink", tls, str(nbytes))
    payload = bytes(nbytes)
    raw = []
    try:
        ctx = certs.client_context(tls, "me")
        for _ in range(repeats):
            with socket.create_connection(("127.0.0.1", port)) as sock, ctx.wrap_socket(sock) as s:
                t0 = time.perf_counter()
                s.sendall(payload)
                s.recv(1)
                raw.append(time.perf_counter() - t0)
    finally:
        proc.kill()  # type: ignore[attr-defined]
    arr = np.zeros(nbytes, dtype=np.uint8)
    proc, port = _echo_server(tls)
    channels: dict[str, list[float]] = {"bulk": [], "websocket": []}
    try:  # the same bytes as one transport request (no worker, no wire format): bulk channel vs WebSocket chunks
        link = transport.Link(f"wss://127.0.0.1:{port}", "sink", "me", tls_dir=tls, deadline=300)
        link.call("ack", b"")
        for _ in range(repeats):
            for name, run in (("bulk", lambda: link.call("ack", [memoryview(arr)])),
                              ("websocket", lambda: transport.run_sync(link.request("ack", [memoryview(arr)])))):
                t0 = time.perf_counter()
                run()
                channels[name].append(time.perf_counter() - t0)
        link.close()
    finally:
        proc.kill()  # type: ignore[attr-defined]
    enc, dec, fill = [], [], []
    for _ in range(repeats):  # what the safe wire format costs by itself, as a move uses it: A encodes to buffers
        t0 = time.perf_counter()  # (views of the array), B decodes the buffer it received (the array: a view)
        parts = wire.encode_parts({"op": "store", "ids": [1], "objs": [arr]})
        enc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        received = framing.buffer(sum(len(p) for p in parts))  # a fresh receive buffer's first fill (page faults)
        at = 0
        for part in parts:
            received[at : at + len(part)] = part
            at += len(part)
        fill.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wire.decode(received)
        dec.append(time.perf_counter() - t0)
        del parts, received
    m, r = min(move), min(raw)
    return {"bytes": nbytes, "move_s": move, "raw_tls_sendall_s": raw, "move_MBps": nbytes / m / 1e6,
            "raw_MBps": nbytes / r / 1e6, "move_vs_raw": r / m, "target": ">= 0.5",
            "bulk_request_s": channels["bulk"], "websocket_request_s": channels["websocket"],
            "bulk_request_vs_raw": r / min(channels["bulk"]),
            "websocket_request_vs_raw": r / min(channels["websocket"]),
            "wire_encode_s": min(enc), "wire_decode_s": min(dec), "fresh_buffer_fill_s": min(fill),
            "move_minus_wire_vs_raw": r / max(1e-9, m - min(enc) - min(dec))}


def big_send(workers: dict, nbytes: int) -> dict:
    arr = np.ones(nbytes, dtype=np.uint8)
    sends = []
    for _ in range(2):  # the first into fresh memory of the worker's process (the kernel's huge pages), then again
        t0 = time.perf_counter()
        ptr = send(arr, workers["alice"])
        sends.append(time.perf_counter() - t0)
        ok = len(workers["alice"].objects) >= 1
        if len(sends) == 1:
            del ptr
    t = sends[0]
    t0 = time.perf_counter()
    back = ptr.get()  # the reply travels over the WebSocket (a reply to a small request)
    t_get = time.perf_counter() - t0
    ok = ok and back.shape == arr.shape and bool(back[:: 1 << 20].all())
    del ptr, back
    return {"bytes": nbytes, "send_s": t, "MBps": nbytes / t / 1e6, "send_again_s": sends[1],
            "get_s": t_get, "get_MBps": nbytes / t_get / 1e6, "completed": ok}


def latency(tls: Path, workers: dict, repeats: int, jake_pid: int | None = None) -> dict:

    from websockets.asyncio.client import connect as ws_connect

    jake = workers["alice"]
    small = np.arange(4)

    def rt():
        send(small, jake).get()

    proc, port = _helper("ws-echo", tls)
    try:
        async def open_ws():
            return await ws_connect(f"wss://127.0.0.1:{port}", ssl=certs.client_context(tls, "me"), proxy=None,
                                    compression=None)

        ws = transport.run_sync(open_ws())

        async def echo2():
            for _ in range(2):  # send + get are two request/reply exchanges
                await ws.send(bytes(100))
                await ws.recv()

        def raw():
            transport.run_sync(echo2())

        best, number = _common.measure({"send_get": rt, "ws_echo_x2": raw}, repeats)
        samples: dict[str, list[float]] = {"send_get": [], "ws_echo_x2": []}
        for _ in range(repeats):  # the same interleaved samples again, for the medians
            for name, fn in (("send_get", rt), ("ws_echo_x2", raw)):
                samples[name].append(_common.time_call(fn, number)[0])
        c0, w0 = time.process_time(), _cpu_s(jake_pid)
        for _ in range(500):
            rt()
        cpu_me, cpu_worker = (time.process_time() - c0) / 500, (_cpu_s(jake_pid) - w0) / 500
    finally:
        proc.kill()  # type: ignore[attr-defined]
    w = best["wall"]
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"send_get_s": w["send_get"], "raw_ws_echo_x2_s": w["ws_echo_x2"],
            "ratio": w["send_get"] / w["ws_echo_x2"], "ratio_of_medians": med["send_get"] / med["ws_echo_x2"],
            "send_get_median_s": med["send_get"], "raw_ws_echo_x2_median_s": med["ws_echo_x2"],
            "cpu_s_per_send_get": {"caller": cpu_me, "worker": cpu_worker},
            "target": "<= 2", "calls_per_sample": number}


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; 0 without a pid)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _beaver(ws, n: int):
    x = share_among(np.arange(n) % 1000, ws[:2], crypto_provider=ws[2])
    y = share_among(np.arange(n) % 777, ws[:2], crypto_provider=ws[2])
    return (x * y).get()


def _inference(ws, images: np.ndarray, w: np.ndarray, b: np.ndarray):
    fp = FixedPoint()
    wsh = share_among(w, ws[:2], crypto_provider=ws[2], encoding=fp)
    xsh = share_among(images, ws[:2], crypto_provider=ws[2], encoding=fp)
    return (xsh @ wsh + b).get()


def _cpu_per_call(fn, pids: dict[str, int | None], calls: int) -> dict[str, float]:
    """CPU seconds per call of ``fn`` in this process (``me``) and in each worker process (``pids``)."""
    fn()
    c0, w0 = time.process_time(), {k: _cpu_s(p) for k, p in pids.items()}
    for _ in range(calls):
        fn()
    out = {"me": (time.process_time() - c0) / calls}
    out.update({k: (_cpu_s(p) - w0[k]) / calls for k, p in pids.items()})
    return out


def versus_in_process(workers: dict, repeats: int, n: int, pids: dict[str, int | None] | None = None) -> dict:
    from refimpl import nn
    from refimpl.fl.data import load

    local = Ledger()
    lw = [VirtualWorker(name, local) for name in ("alice", "bob", "crypto_provider")]
    rw = [workers["alice"], workers["bob"], workers["crypto_provider"]]
    expect = (np.arange(n) % 1000) * (np.arange(n) % 777)
    assert (_beaver(rw, n) == expect).all()
    data = load("mnist-10k")
    params = nn.init_params((784, 10), seed=0)
    mlp = nn.init_params((784, 128, 10), seed=0)
    images = data.x_test[:64].astype(np.float64)
    best, _ = _common.measure({"beaver_net": lambda: _beaver(rw, n), "beaver_local": lambda: _beaver(lw, n),
                               "infer_net": lambda: _inference(rw, images, params["w0"], params["b0"]),
                               "infer_local": lambda: _inference(lw, images, params["w0"], params["b0"]),
                               "mlp_net": lambda: shared_mlp_logits(mlp, images, rw[:2], rw[2]),
                               "mlp_local": lambda: shared_mlp_logits(mlp, images, lw[:2], lw[2])}, repeats)
    w = best["wall"]
    err = np.abs(shared_mlp_logits(mlp, images, rw[:2], rw[2]) - nn.logits(mlp, images)).max()
    # CPU per call summed over the 4 processes (this one and the 3 workers): with 2 cores, the networked wall
    # time cannot drop below about half of it
    pids = pids or {}
    cpu = {"beaver": _cpu_per_call(lambda: _beaver(rw, n), pids, 3),
           "inference": _cpu_per_call(lambda: _inference(rw, images, params["w0"], params["b0"]), pids, 40),
           "mlp_inference": _cpu_per_call(lambda: shared_mlp_logits(mlp, images, rw[:2], rw[2]), pids, 10)}
    cpu_local = {"beaver": _cpu_per_call(lambda: _beaver(lw, n), {}, 3)["me"],
                 "inference": _cpu_per_call(lambda: _inference(lw, images, params["w0"], params["b0"]), {}, 40)["me"],
                 "mlp_inference": _cpu_per_call(lambda: shared_mlp_logits(mlp, images, lw[:2], lw[2]), {}, 10)["me"]}

    def cpu_rows(key: str) -> dict:
        return {"net_cpu_s_by_process": cpu[key], "net_cpu_s_total": sum(cpu[key].values()),
                "in_process_cpu_s": cpu_local[key], "cores": _common.cores()}

    return {"beaver": {"elements": n, "net_s": w["beaver_net"], "in_process_s": w["beaver_local"],
                       "ratio": w["beaver_net"] / w["beaver_local"], "target": "<= 2", **cpu_rows("beaver")},
            "inference": {"batch": 64, "layer": "784x10 linear, fixed point, Beaver matmul + truncation",
                          "net_s": w["infer_net"], "in_process_s": w["infer_local"],
                          "ratio": w["infer_net"] / w["infer_local"], "target": "<= 2", **cpu_rows("inference")},
            "mlp_inference": {"batch": 64, "model": "784-128-10 ReLU MLP: weights, biases and images shared, 2 "
                              "Beaver matmuls + truncations, exact ReLU (party-local comparison program)",
                              "net_s": w["mlp_net"], "in_process_s": w["mlp_local"],
                              "ratio": w["mlp_net"] / w["mlp_local"], "max_logit_error": float(err),
                              "target": "<= 2", **cpu_rows("mlp_inference")}}


def secagg_round(tls: Path, k: int, d: int, rounds: int, per_process: int) -> dict:
    from refimpl.fl.deploy.aggregator import Lead, LeadConfig, default_threshold
    from refimpl.fl.deploy.client import synthetic_contribution
    from refimpl.secagg import Codec, SecAggConfig, run_secagg_round

    degree = min(k - 1, 2 * int(np.ceil(np.log2(k))))
    degree += degree % 2
    lead = Lead(LeadConfig(protocol="secagg", clients=k, rounds=rounds, synthetic=d, degree=degree,
                           join_timeout=300, stage_timeout=300), tls_dir=str(tls)).start()
    procs = []
    try:
        for lo in range(1, k + 1, per_process):
            ids = f"{lo}-{min(k, lo + per_process - 1)}"
            procs.append(Party(["client", "--ids", ids, "--aggregator", lead.url, "--tls-dir", str(tls),
                                "--clients", str(k), "--data", "synthetic"], listen=False))
        if not lead.done.wait(1800):
            raise RuntimeError("secagg rounds did not finish")
    finally:
        for p in procs:
            p.stop()
        lead.close()
    recs = [r for r in lead.history if r.aborted is None]
    if not recs:
        raise RuntimeError(f"no secagg round completed: {[r.aborted for r in lead.history]}")
    net = [r.seconds for r in recs[1:]] or [r.seconds for r in recs]
    per_client_in = statistics.median(r.bytes_in / len(r.clients) for r in recs)
    codec = Codec(length=d, max_clients=k, clip=1.0)
    cfg = SecAggConfig(num_clients=k, threshold=default_threshold(k, degree), codec=codec, degree=degree)
    contrib = {u: synthetic_contribution(u, 0, d, 1.0) for u in range(1, k + 1)}
    local = []
    for r in range(2):
        t0 = time.perf_counter()
        res = run_secagg_round(cfg, contrib, round_=r)
        local.append(time.perf_counter() - t0)
    up = sum(res.ledger.sent(f"client {u}") for u in range(1, k + 1)) / k
    return {"K": k, "d": d, "degree": degree, "rounds": len(recs), "net_round_s": net,
            "net_round_median_s": statistics.median(net), "in_process_round_s": min(local),
            "ratio": statistics.median(net) / min(local), "net_upload_bytes_per_client": per_client_in,
            "in_process_upload_bytes_per_client": up,
            "flower_secaggplus_round_s_quoted": 65.8 if k == 10 else None,
            "vs_flower_quoted": 65.8 / statistics.median(net) if k == 10 else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--big", action="store_true", help="also send 1 GiB")
    p.add_argument("--clients", default="10,50,100")
    p.add_argument("--dim", type=int, default=100_000)
    p.add_argument("--out", default=None)
    p.add_argument("--tls-sink", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--ws-echo", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--ack-server", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--only", default=None, help="comma-separated sections: latency,throughput,big,versus,secagg")
    p.add_argument("--runs", type=int, default=1, help="run the latency and versus sections this many times (the "
                   "JSON keeps the first in full and the others' ratios, with the load, under repeat_runs)")
    args = p.parse_args(argv)
    if args.tls_sink:
        _tls_sink(args.tls_sink[0], args.tls_sink[1], int(args.tls_sink[2]))
        return 0
    if args.ws_echo:
        _ws_echo(*args.ws_echo)
        return 0
    if args.ack_server:
        _ack_server(*args.ack_server)
        return 0
    sections = set(args.only.split(",")) if args.only else {"latency", "throughput", "big", "versus", "secagg"}
    if not args.big and not args.only:
        sections.discard("big")
    ks = [int(v) for v in args.clients.split(",")]
    repeats = 2 if args.quick else 3
    report: dict = {"benchmark": "net", "machine": _common.machine_info(), "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        tls = Path(tmp)
        certs.make_deployment(tls, ["alice", "bob", "crypto_provider", "me", "sink", "aggregator",
                                    *(f"client-{i}" for i in range(1, max(ks) + 1))])
        parties = [Party(["worker", "--name", n, "--listen", "127.0.0.1:0", "--tls-dir", str(tls), "--log-level",
                          "WARNING"]) for n in ("alice", "bob", "crypto_provider")]
        try:
            s = Session()
            workers = {n: connect(pp.url, name=n, tls_dir=tls, session=s, deadline=300)
                       for n, pp in zip(("alice", "bob", "crypto_provider"), parties)}
            pids = {n: pp.proc.pid for n, pp in zip(("alice", "bob", "crypto_provider"), parties)}
            for run in range(args.runs if sections & {"latency", "versus"} else 0):
                if run:  # a repeat of the latency and versus sections (same processes): their spread
                    time.sleep(2)
                    row: dict = {"loadavg": list(os.getloadavg())}
                    if "latency" in sections:
                        lat = latency(tls, workers, 30 if not args.quick else 10, pids["alice"])
                        row["send_get_vs_echo"] = [lat["ratio"], lat["ratio_of_medians"]]
                    if "versus" in sections:
                        vs = versus_in_process(workers, repeats + 4, 10**5 if args.quick else 10**6, pids)
                        row.update({k: vs[k]["ratio"] for k in ("beaver", "inference", "mlp_inference")})
                    report.setdefault("repeat_runs", []).append(row)
                    print(json.dumps(row))
                    continue
                if "latency" in sections:
                    report["latency"] = latency(tls, workers, 30 if not args.quick else 10, pids["alice"])
                    print(json.dumps(report["latency"]))
                if "versus" in sections:
                    report.update(versus_in_process(workers, repeats + 4, 10**5 if args.quick else 10**6, pids))
                    print(json.dumps(report["beaver"]), json.dumps(report["inference"]),
                          json.dumps(report["mlp_inference"]))
            if "throughput" in sections:
                report["throughput"] = throughput(tls, workers, (64 if args.quick else 256) * MiB, repeats + 2)
                print(json.dumps(report["throughput"]))
            if "big" in sections:
                report["big"] = big_send(workers, 1 << 30)
                print(json.dumps(report["big"]))
        finally:
            for pp in parties:
                pp.stop()
        if "secagg" in sections:
            report["secagg"] = []
        for k in ks if "secagg" in sections else []:
            row = secagg_round(tls, k, args.dim if not args.quick else 10_000, 3, max(10, k // 4))
            report["secagg"].append(row)
            print(json.dumps(row))
    variant = "-".join(([] if not args.only else sorted(sections)) + (["quick"] if args.quick else [])) or None
    _common.write_result(report, args.out, "net", variant)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
