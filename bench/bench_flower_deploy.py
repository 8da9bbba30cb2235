"""Flower's deployment runtime vs refimpl's networked SecAgg+ round, side by side in one run (issue 13).

Everything on 127.0.0.1. The Flower side is Flower's own deployment runtime, started the way its documentation
shows: ``flower-superlink --insecure``, one ``flower-supernode --insecure`` per client (each launching its own
``flower-superexec``, which starts a ``flwr-clientapp`` process per message), and ``flwr run`` submitting a minimal
Flower app that this script writes into a temporary directory:

* ServerApp: the legacy ``FedAvg`` strategy in a ``DefaultWorkflow``, plain or with ``SecAggPlusWorkflow``
  (``num_shares`` = refimpl's SecAgg+ degree + 1, ``reconstruction_threshold`` = refimpl's threshold for the same
  K), a d-element float32 model given as initial parameters, no evaluation;
* ClientApp: a ``NumPyClient`` whose "training" adds ``0.01 * (partition-id + 1)`` to the model (so the server can
  check the aggregate: it records the largest error of each round's mean), behind ``secaggplus_mod`` in SecAgg+
  runs, and an outer mod recording the size of every reply (``RecordDict`` ``count_bytes``).

Per-round latency: the strategy stamps ``time.time()`` when ``configure_fit`` of round r starts (SecAgg+: the setup
stage selecting clients) and when ``aggregate_fit`` of round r returns (SecAgg+: after unmasking); a round is the
difference. The median over the rounds is reported, and each run's wall time from ``flwr run`` to the end of its
last round divided by the rounds as a cross-check (that one includes starting the ServerApp).

Bytes uploaded per client and round, two ways: *wire*: each supernode talks to the SuperLink's Fleet API through its
own counting TCP relay in this process (:class:`CountingRelay`), and the bytes a supernode sends between a round's
two stamps are that client's upload for the round (HTTP requests with protobuf bodies, plaintext since
``--insecure``; includes that round's polls and heartbeats); *payload*: the sum of the ``count_bytes`` of the
round's replies of the client (the arrays and values of its messages, no HTTP or protobuf framing).

The refimpl side, in the same run, with the same K and d: ``bench_net.secagg_round`` (the lead aggregator in this
process, mutual TLS WebSockets) with one client process per client like Flower's supernodes (the figure compared)
and with the K clients as threads in one process; then a run whose clients reach the lead through a
:class:`CountingRelay` for its wire bytes (TLS records included; TLS handshakes and joins are amortised over the
rounds, so it overestimates a round's upload slightly); the payload is the lead's ledger (``bench_net``'s figure).

Flower is not a refimpl dependency: the script looks for ``flower-superlink``, ``flower-supernode``,
``flower-superexec`` and ``flwr`` in ``--flwr-bin`` (default: next to the ``flwr`` on PATH) and stops with a message
saying how to install them when they are missing. Every process it starts (and everything they start, found through
``/proc`` with this process as child subreaper) is stopped in ``finally`` blocks.

Usage: ``flock /tmp/refimpl-bench.lock timeout 1500 python bench/bench_flower_deploy.py --flwr-bin VENV/bin
[--clients 10] [--dim 100000] [--rounds 3] [--out PATH]`` (default ``bench/results/flower_deploy-<UTC date>.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common

FLOWER_TOOLS = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr")
INSTALL_HINT = ("python3 -m venv /tmp/flwrvenv && /tmp/flwrvenv/bin/pip install 'flwr==1.42.*', then "
                "--flwr-bin /tmp/flwrvenv/bin")
QUOTED = {"flwr": "1.42", "fedavg_round_s": 14.7, "secaggplus_round_s": 65.8, "upload_bytes_per_client": 853_000}


class FlowerMissing(RuntimeError):
    """Flower's deployment tools are not where the script looked."""


def find_flower(bin_dir: str | None) -> Path:
    """The directory holding all of :data:`FLOWER_TOOLS`, or :class:`FlowerMissing` naming what is absent."""
    if bin_dir is None:
        found = shutil.which("flwr")
        if found is None:
            raise FlowerMissing(f"flwr is not installed (no `flwr` on PATH and no --flwr-bin); {INSTALL_HINT}")
        bin_dir = str(Path(found).parent)
    missing = [t for t in FLOWER_TOOLS if not os.access(Path(bin_dir) / t, os.X_OK)]
    if missing:
        raise FlowerMissing(f"flwr is not installed in {bin_dir}: missing {', '.join(missing)}; {INSTALL_HINT}")
    return Path(bin_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


# ---------------------------------------------------------------------------------------------- byte counting
class CountingRelay:
    """TCP relays on 127.0.0.1 counting the bytes each way, in a thread of their own.

    ``add(target_port)`` opens a listener forwarding to ``127.0.0.1:target_port`` and returns its port. For each
    listener, ``up[port]`` lists ``(time.time(), nbytes)`` of every chunk a client sent towards the target and
    ``down[port]`` the total the target sent back.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.up: dict[int, list[tuple[float, int]]] = {}
        self.down: dict[int, int] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def add(self, target_port: int) -> int:
        return asyncio.run_coroutine_threadsafe(self._add(target_port), self.loop).result(10)

    async def _add(self, target_port: int) -> int:
        port_box: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = port_box[0]
            try:
                t_reader, t_writer = await asyncio.open_connection("127.0.0.1", target_port)
            except OSError:
                writer.close()
                return

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
                try:
                    while chunk := await src.read(1 << 16):
                        if upward:
                            self.up[port].append((time.time(), len(chunk)))
                        else:
                            self.down[port] += len(chunk)
                        dst.write(chunk)
                        await dst.drain()
                    if dst.can_write_eof():
                        dst.write_eof()  # pass a half-close on; the other direction keeps flowing
                except (ConnectionError, OSError):
                    dst.close()

            try:
                await asyncio.gather(pipe(reader, t_writer, True), pipe(t_reader, writer, False))
            finally:
                writer.close()
                t_writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        port_box.append(port)
        self.up[port], self.down[port] = [], 0
        self._servers.append(server)
        return port

    def sent(self, port: int, start: float = 0.0, end: float = float("inf")) -> int:
        """Bytes the clients of listener ``port`` sent between ``start`` and ``end`` (``time.time()``)."""
        return sum(n for t, n in list(self.up[port]) if start <= t <= end)

    def close(self) -> None:
        async def stop() -> None:
            for s in self._servers:
                s.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()


# ---------------------------------------------------------------------------------------------- processes
def _become_subreaper() -> None:
    """Orphans of our children (Flower detaches its SuperExec) re-parent to this process, so cleanup finds them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> int:
    """SIGTERM then SIGKILL every descendant of this process; reap them. Returns how many were still running."""
    pids = descendants(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 5
    while time.monotonic() < end and descendants(os.getpid()):
        _reap()
        time.sleep(0.1)
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    _reap()
    return len(pids)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ---------------------------------------------------------------------------------------------- the Flower app
PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "refimplbench"
version = "1.0.0"
description = "refimpl bench: Flower SecAgg+ deployment round"
license = "Apache-2.0"
dependencies = ["flwr>=1.42", "numpy"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "refimpl"

[tool.flwr.app.components]
serverapp = "refimplbench.server_app:app"
clientapp = "refimplbench.client_app:app"

[tool.flwr.app.config]
num-rounds = 3
dim = 100000
clients = 10
secagg = false
num-shares = 9
threshold = 5
out-dir = ""
"""

SERVER_APP = '''\
"""ServerApp: legacy FedAvg, plain or SecAgg+, timing each round's fit stage and checking the aggregate."""

import json
import os
import time

import numpy as np
from flwr.app import Context
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow


class TimedFedAvg(FedAvg):
    def __init__(self, out, clients, **kw):
        super().__init__(**kw)
        self.out, self.clients, self.t0, self.prev = out, clients, 0.0, None

    def _log(self, rec):
        with open(os.path.join(self.out, "server.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\\n")

    def configure_fit(self, server_round, parameters, client_manager):
        self.t0 = time.time()
        self.prev = parameters_to_ndarrays(parameters)[0]
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        agg, metrics = super().aggregate_fit(server_round, results, failures)
        t1 = time.time()
        err = None
        if agg is not None and results:
            new = parameters_to_ndarrays(agg)[0].astype(np.float64)
            want = self.prev.astype(np.float64) + 0.01 * (self.clients + 1) / 2
            err = float(np.max(np.abs(new - want)))
        self._log({"round": server_round, "start": self.t0, "end": t1, "results": len(results),
                   "failures": len(failures), "max_abs_err": err})
        return agg, metrics


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    k, d, out = int(cfg["clients"]), int(cfg["dim"]), str(cfg["out-dir"])
    strategy = TimedFedAvg(out, k, fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=k,
                           min_evaluate_clients=0, min_available_clients=k,
                           initial_parameters=ndarrays_to_parameters([np.zeros(d, np.float32)]))
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=int(cfg["num-rounds"])),
                           strategy=strategy)
    if cfg["secagg"]:
        fit = SecAggPlusWorkflow(num_shares=int(cfg["num-shares"]), reconstruction_threshold=int(cfg["threshold"]))
        workflow = DefaultWorkflow(fit_workflow=fit)
    else:
        workflow = DefaultWorkflow()
    strategy._log({"event": "start", "t": time.time()})
    workflow(grid, legacy)
    strategy._log({"event": "done", "t": time.time()})
'''

CLIENT_APP = '''\
"""ClientApp: trivial training (adds 0.01 * (partition-id + 1)), SecAgg+ mod when asked, reply sizes recorded."""

import json
import os
import time

import numpy as np
from flwr.app import Context
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp


class Client(NumPyClient):
    def __init__(self, pid):
        self.pid = pid

    def fit(self, parameters, config):
        return [parameters[0] + np.float32(0.01 * (self.pid + 1))], 1, {}


def client_fn(context: Context):
    return Client(int(context.node_config["partition-id"])).to_client()


def size_mod(msg, ctxt, call_next):
    """Record the size of the reply this client uploads (RecordDict count_bytes)."""
    if ctxt.run_config["secagg"]:
        reply = secaggplus_mod(msg, ctxt, call_next)
    else:
        reply = call_next(msg, ctxt)
    try:
        nbytes = sum(r.count_bytes() for r in reply.content.values()) if reply.has_content() else 0
    except Exception:  # an error reply
        nbytes = 0
    path = os.path.join(str(ctxt.run_config["out-dir"]), f"client-{ctxt.node_config['partition-id']}.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps({"t": time.time(), "type": msg.metadata.message_type, "reply_bytes": nbytes}) + "\\n")
    return reply


app = ClientApp(client_fn=client_fn, mods=[size_mod])
'''


def write_app(root: Path) -> Path:
    app = root / "refimplbench"
    app.mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    pkg = app / "refimplbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""refimpl bench app."""\n')
    (pkg / "server_app.py").write_text(SERVER_APP)
    (pkg / "client_app.py").write_text(CLIENT_APP)
    return app


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------- Flower side
def flower_runs(bin_dir: Path, k: int, d: int, rounds: int, num_shares: int, threshold: int, tmp: Path,
                timeout: float) -> dict[str, Any]:
    """Start a SuperLink and K SuperNodes, submit a plain FedAvg run and a SecAgg+ run, stop everything."""
    flwr_home = tmp / "flwr-home"
    flwr_home.mkdir()
    link = free_port()  # 1.42: the Fleet, Control and Runtime APIs are one HTTP server (--host, --port)
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FLWR_HOME": str(flwr_home),
           "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    version = subprocess.run([str(bin_dir / "flwr"), "--version"], capture_output=True, text=True, env=env,
                             timeout=60).stdout.strip()
    app = write_app(tmp)
    logs = tmp / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    relay = CountingRelay()
    _become_subreaper()

    def start(name: str, cmd: list[str]) -> None:
        with open(logs / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp,
                                          start_new_session=True))

    out: dict[str, Any] = {"flwr_version": version, "runs": {}}
    try:
        start("superlink", [str(bin_dir / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
                            str(link), "--disable-runtime-dependency-installation"])
        wait_port(link, 120, "flower-superlink")
        relays = []
        for i in range(k):
            relays.append(relay.add(link))
            start(f"supernode-{i}", [str(bin_dir / "flower-supernode"), "--insecure", "--superlink",
                                     f"127.0.0.1:{relays[-1]}", "--node-config",
                                     f"partition-id={i} num-partitions={k}", "--host", "127.0.0.1", "--port",
                                     str(free_port())])
        t_nodes = time.time()
        for mode in ("fedavg", "secaggplus"):
            run_dir = tmp / f"out-{mode}"
            run_dir.mkdir()
            cfg = (f'num-rounds={rounds} dim={d} clients={k} secagg={"true" if mode == "secaggplus" else "false"} '
                   f'num-shares={num_shares} threshold={threshold} out-dir="{run_dir}"')
            t_submit = time.time()
            sub = subprocess.run([str(bin_dir / "flwr"), "run", str(app), "bench", "--run-config", cfg,
                                  "--format", "json"], capture_output=True, text=True, env=env, cwd=tmp,
                                 timeout=120)
            if sub.returncode != 0:
                raise RuntimeError(f"flwr run failed ({sub.returncode}): {sub.stdout[-2000:]} {sub.stderr[-2000:]}")
            end = time.monotonic() + timeout
            recs: list[dict[str, Any]] = []
            while time.monotonic() < end:
                recs = _read_jsonl(run_dir / "server.jsonl")
                if any(r.get("event") == "done" for r in recs):
                    break
                if procs[0].poll() is not None:
                    raise RuntimeError(f"flower-superlink exited: {_tail(logs / 'superlink.log')}")
                time.sleep(0.5)
            else:
                raise RuntimeError(f"Flower {mode} run did not finish within {timeout:.0f} s; server records: "
                                   f"{recs}; superlink log:\n{_tail(logs / 'superlink.log')}")
            out["runs"][mode] = _summarise(mode, recs, run_dir, relay, relays, k, t_submit, sub.stdout)
            print(json.dumps({mode: {x: v for x, v in out["runs"][mode].items() if not isinstance(v, list)}}),
                  flush=True)
        out["nodes_started_utc"] = t_nodes
    finally:
        out["processes_stopped"] = stop_all(procs)
        relay.close()
    return out


def _summarise(mode: str, recs: list[dict[str, Any]], run_dir: Path, relay: CountingRelay, relays: list[int],
               k: int, t_submit: float, submit_out: str) -> dict[str, Any]:
    rounds = [r for r in recs if "round" in r]
    done = next(r["t"] for r in recs if r.get("event") == "done")
    lat = [r["end"] - r["start"] for r in rounds]
    if not rounds or any(r["results"] != k or r["failures"] for r in rounds):
        raise RuntimeError(f"Flower {mode}: a round did not get all {k} results: {rounds}")
    wire = [[relay.sent(p, r["start"], r["end"]) for p in relays] for r in rounds]
    payload = []
    for r in rounds:
        per = []
        for i in range(k):
            per.append(sum(c["reply_bytes"] for c in _read_jsonl(run_dir / f"client-{i}.jsonl")
                           if r["start"] <= c["t"] <= r["end"]))
        payload.append(per)
    per_round_wire = [statistics.mean(w) for w in wire]
    per_round_payload = [statistics.mean(p) for p in payload]
    try:
        run_id = json.loads(submit_out).get("run-id")
    except (ValueError, AttributeError):
        run_id = None
    return {"run_id": run_id, "rounds": len(rounds), "round_s": lat, "round_median_s": statistics.median(lat),
            "run_wall_per_round_s": (done - t_submit) / len(rounds), "max_abs_err": [r["max_abs_err"] for r in rounds],
            "upload_wire_bytes_per_client_round": per_round_wire,
            "upload_wire_bytes_per_client_median": statistics.median(per_round_wire),
            "upload_payload_bytes_per_client_round": per_round_payload,
            "upload_payload_bytes_per_client_median": statistics.median(per_round_payload)}


# ---------------------------------------------------------------------------------------------- refimpl side
def refimpl_rounds(k: int, d: int, rounds: int, tmp: Path) -> dict[str, Any]:
    """refimpl's networked SecAgg+ round (``bench_net.secagg_round``), then a relayed run for wire bytes."""
    import bench_net

    from refimpl.net import certs

    tls = tmp / "tls"
    certs.make_deployment(tls, ["aggregator", *(f"client-{i}" for i in range(1, k + 1))])
    res: dict[str, Any] = {}
    res["processes_per_client"] = bench_net.secagg_round(tls, k, d, rounds + 1, 1)  # 1st round dropped by secagg_round
    print(json.dumps({"refimpl, one process per client": res["processes_per_client"]["net_round_median_s"]}),
          flush=True)
    res["clients_in_one_process"] = bench_net.secagg_round(tls, k, d, rounds + 1, k)
    print(json.dumps({"refimpl, clients in one process": res["clients_in_one_process"]["net_round_median_s"]}),
          flush=True)
    res["wire"] = _refimpl_wire(tls, k, d, rounds)
    return res


def _refimpl_wire(tls: Path, k: int, d: int, rounds: int) -> dict[str, Any]:
    from refimpl.demos.network import Party
    from refimpl.fl.deploy.aggregator import Lead, LeadConfig

    degree = min(k - 1, 2 * math.ceil(math.log2(k)))
    degree += degree % 2
    lead = Lead(LeadConfig(protocol="secagg", clients=k, rounds=rounds, synthetic=d, degree=degree,
                           join_timeout=300, stage_timeout=300), tls_dir=str(tls)).start()
    relay = CountingRelay()
    port = relay.add(int(lead.url.rsplit(":", 1)[1]))
    procs = []
    try:
        for u in range(1, k + 1):
            procs.append(Party(["client", "--ids", str(u), "--aggregator", f"wss://127.0.0.1:{port}", "--tls-dir",
                                str(tls), "--clients", str(k), "--data", "synthetic"], listen=False))
        if not lead.done.wait(600):
            raise RuntimeError("refimpl relayed secagg rounds did not finish")
    finally:
        for p in procs:
            p.stop()
        lead.close()
        relay.close()
    done = [r for r in lead.history if r.aborted is None]
    if len(done) != rounds:
        raise RuntimeError(f"refimpl relayed run: {len(done)} of {rounds} rounds completed")
    total = relay.sent(port)
    return {"rounds": rounds, "upload_wire_bytes_total": total,
            "upload_wire_bytes_per_client_round": total / (k * rounds),
            "upload_payload_bytes_per_client_round": statistics.median(r.bytes_in / len(r.clients) for r in done)}


# ---------------------------------------------------------------------------------------------- main
def secaggplus_params(k: int) -> tuple[int, int]:
    """refimpl's SecAgg+ degree and threshold for K clients (as ``bench_net.secagg_round``) -> Flower's
    ``(num_shares, reconstruction_threshold)``: a neighbourhood of degree + 1 shares (each client keeps one)."""
    degree = min(k - 1, 2 * math.ceil(math.log2(k)))
    degree += degree % 2
    size = k if degree >= k - 1 else degree + 1
    return size, size // 2 + 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flwr-bin", default=None, help="directory with flower-superlink, flower-supernode, "
                   "flower-superexec and flwr (default: next to `flwr` on PATH)")
    p.add_argument("--clients", type=int, default=10, help="K (default 10)")
    p.add_argument("--dim", type=int, default=100_000, help="d, model size in float32 elements (default 1e5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per Flower run, >= 3 (default 3)")
    p.add_argument("--timeout", type=float, default=420.0, help="seconds each Flower run may take (default 420)")
    p.add_argument("--out", default=None, help="JSON path ('-': none; default bench/results/flower_deploy-DATE.json)")
    args = p.parse_args(argv)
    if args.clients < 3:
        p.error(f"--clients must be >= 3 (Flower's SecAgg+ needs num_shares > 2), got {args.clients}")
    if args.rounds < 3:
        p.error(f"--rounds must be >= 3 for a median over rounds, got {args.rounds}")
    if args.dim < 1:
        p.error(f"--dim must be >= 1, got {args.dim}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        bin_dir = find_flower(args.flwr_bin)
    except FlowerMissing as e:
        print(f"bench_flower_deploy: {e}", file=sys.stderr)
        return 2
    k, d = args.clients, args.dim
    num_shares, threshold = secaggplus_params(k)
    report: dict[str, Any] = {"benchmark": "flower_deploy", "machine": _common.machine_info(),
                              "config": {"K": k, "d": d, "rounds": args.rounds, "flower_num_shares": num_shares,
                                         "flower_reconstruction_threshold": threshold,
                                         "refimpl_threshold": threshold},
                              "issue_quote": QUOTED}
    with tempfile.TemporaryDirectory(prefix="refimpl-flower-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.monotonic()
        report["flower"] = flower_runs(bin_dir, k, d, args.rounds, num_shares, threshold, tmp, args.timeout)
        report["machine"]["flwr"] = report["flower"]["flwr_version"]
        report["flower_seconds"] = time.monotonic() - t0
        report["refimpl"] = refimpl_rounds(k, d, args.rounds, tmp)
    fl, ri = report["flower"]["runs"], report["refimpl"]
    ours = ri["processes_per_client"]["net_round_median_s"]
    report["ratios"] = {
        "flower_secaggplus_over_refimpl": fl["secaggplus"]["round_median_s"] / ours,
        "flower_fedavg_over_refimpl_secaggplus": fl["fedavg"]["round_median_s"] / ours,
        "flower_secaggplus_over_refimpl_clients_in_one_process":
            fl["secaggplus"]["round_median_s"] / ri["clients_in_one_process"]["net_round_median_s"],
        "target": ">= 100x (Flower SecAgg+ round / refimpl networked SecAgg+ round, same K and d)",
        "refimpl_over_flower_upload_wire": ri["wire"]["upload_wire_bytes_per_client_round"]
        / fl["secaggplus"]["upload_wire_bytes_per_client_median"],
        "refimpl_over_flower_upload_payload": ri["wire"]["upload_payload_bytes_per_client_round"]
        / fl["secaggplus"]["upload_payload_bytes_per_client_median"],
    }
    print(json.dumps(report["ratios"], indent=1))
    _common.write_result(report, args.out, "flower_deploy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
