"""``python -m refimpl demo --network``: the tutorial's parties, an encrypted prediction and secure FedAvg, each
party in its own process on 127.0.0.1 (every process stopped at the end)."""

from __future__ import annotations

import pytest

pytest.importorskip("websockets", reason="the networked demo needs the websockets package (refimpl[net])")

from refimpl.demos.network import network_demo  # noqa: E402


def test_the_network_demo_runs_the_seed_flow_across_processes():
    lines: list[str] = []
    network_demo(lines.append, rounds=1, clients=2)
    text = "\n".join(lines)
    assert "(x + x).get() = [2, 4, 6, 8, 10]" in text
    assert "(x + y).get() = [26, 52, 78];  (x * y).get() = [25, 100, 225]" in text
    assert "on shares = [[-4.0]]" in text
    assert "none through 'me'" in text and "jake: 0 object(s), john: 0 object(s), secure_worker: 0 object(s)" in text
    plain = next(line for line in lines if "plaintext predictions" in line).split(":")[1].strip()
    encrypted = next(line for line in lines if "encrypted predictions" in line).split(":")[1].split("(")[0].strip()
    assert plain == encrypted
    assert "round 0: summed 2 clients" in text
