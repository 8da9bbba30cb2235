"""bench/bench_flower_deploy.py without Flower: its byte counting, its SecAgg+ parameters, its missing-flwr exit.

The benchmark itself needs flwr and minutes of wall time; CI never runs it. What its figures rest on is checked here:
the relay counts exactly the bytes that crossed it (both ways, and within a time window), Flower is configured with
refimpl's SecAgg+ neighbourhood and threshold for the same K, and a machine without flwr gets a message, not a trace.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_flower_deploy as bfd  # noqa: E402

from refimpl.fl.deploy.aggregator import default_threshold  # noqa: E402


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            while data := conn.recv(1 << 16):
                conn.sendall(data[: len(data) // 2])  # answer half: down != up

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def test_relay_counts_every_byte_each_way_and_by_time() -> None:
    srv, t = _echo_server()
    relay = bfd.CountingRelay()
    try:
        port = relay.add(srv.getsockname()[1])
        sizes = [1, 1000, 70_000, 300_000]
        got = 0
        t_mid = 0.0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            for i, n in enumerate(sizes):
                if i == 2:
                    time.sleep(0.05)
                    t_mid = time.time()
                c.sendall(b"x" * n)
            c.shutdown(socket.SHUT_WR)
            while data := c.recv(1 << 16):
                got += len(data)
        t.join(10)
        deadline = time.monotonic() + 5
        while relay.down[port] < got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert relay.sent(port) == sum(sizes)
        assert relay.sent(port, start=t_mid) == sizes[2] + sizes[3]
        assert relay.sent(port, end=t_mid) == sizes[0] + sizes[1]
        assert relay.down[port] == got > 0
    finally:
        relay.close()
        srv.close()


@settings(max_examples=50, deadline=None)
@given(st.integers(3, 1000))
@example(10)
@example(4)
def test_flower_gets_refimpls_neighbourhood_and_threshold(k: int) -> None:
    num_shares, threshold = bfd.secaggplus_params(k)
    degree = min(k - 1, 2 * (k - 1).bit_length())  # 2 ceil(log2 K), as bench_net.secagg_round
    degree += degree % 2
    assert num_shares == min(k, degree + 1)  # Flower: one share per neighbour, one kept
    assert threshold == default_threshold(k, degree)
    assert 2 < num_shares <= k and threshold < num_shares  # what Flower's SecAggPlusWorkflow accepts


def test_missing_flwr_exits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flwr").write_text("#!/bin/sh\n")
    (tmp_path / "flwr").chmod(0o755)
    assert bfd.main(["--flwr-bin", str(tmp_path), "--out", "-"]) == 2
    err = capsys.readouterr().err
    assert f"flwr is not installed in {tmp_path}: missing flower-superlink, flower-supernode, flower-superexec;" in err
    assert "pip install" in err


def test_bad_arguments_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bfd.parse_args(["--rounds", "2"])
    assert "--rounds must be >= 3 for a median over rounds, got 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bfd.parse_args(["--clients", "2"])
    assert "--clients must be >= 3" in capsys.readouterr().err
    args = bfd.parse_args([])
    assert (args.clients, args.dim, args.rounds) == (10, 100_000, 3)
