"""Tests of refimpl.fl.train (CLI, metrics, plot, checkpoints, bit-identical resume) and refimpl.demos.federated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="jax is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("optax", reason="optax is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("tqdm", reason="tqdm is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'refimpl[fl]')")

import numpy as np

from refimpl.demos import federated as demo
from refimpl.fl import checkpoint, data, server, train

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SMALL = ["--dataset", "mnist-10k", "--clients", "8", "--fraction", "0.25", "--batch-size", "20",
         "--model", "784,16,10", "--no-progress", "--seed", "4"]


def run(tmp: Path, *extra: str) -> int:
    return train.main([*SMALL, "--out", str(tmp), *extra])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def final_state(out: Path, opt: str = "fedavgm"):
    return checkpoint.load(out / "checkpoint.npz", server.server_optimizer(opt))[0]


def assert_same_state(a, b):
    assert a.round == b.round
    for k in a.params:
        np.testing.assert_array_equal(np.asarray(a.params[k]), np.asarray(b.params[k]), err_msg=k)
    import jax
    for x, y in zip(jax.tree_util.tree_leaves(a.opt_state), jax.tree_util.tree_leaves(b.opt_state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert run(out, "--rounds", "4", "--server-opt", "fedavgm", "--checkpoint-every", "2") == 0
    return out


N_PARAMS = 784 * 16 + 16 + 16 * 10 + 10


def test_outputs(uninterrupted):
    rows = metrics(uninterrupted)
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["test_loss"] > 0 and r["train_loss"] > 0
        assert r["seconds"] > 0 and r["clients"] == 2
        # secure aggregation is the default: the upload is the measured seed-compressed share, ~1x the update
        # encoded in Z_2^64 (8 bytes a parameter); the download is the float32 model
        assert r["secure"] == "additive" and r["survivors"] == 2 and r["aborted"] is False
        assert 1.0 <= r["upload_ratio"] <= 1.05
        assert r["bytes_up_per_client"] == pytest.approx(r["upload_ratio"] * 8 * N_PARAMS)
        assert r["bytes_down_per_client"] == 4 * N_PARAMS
        assert "epsilon" not in r  # no DP noise, no privacy claim
    assert rows[-1]["test_accuracy"] > 0.5  # learning happened
    assert (uninterrupted / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["dataset"] == "mnist-10k" and config["server_opt"] == "fedavgm" and "rounds" not in config
    part = json.loads((uninterrupted / "partition.json").read_text())
    assert sum(part["sizes"]) == 8000 and len(part["sizes"]) == 8
    assert [sum(h) for h in part["label_histograms"]] == part["sizes"]
    state = final_state(uninterrupted)
    assert state.round == 4 and set(state.params) == {"w0", "b0", "w1", "b1"}


def test_resume_is_bit_identical(uninterrupted, tmp_path):
    # with secure aggregation on (the default): its keys derive from --seed and its streams from the round
    assert json.loads((uninterrupted / "config.json").read_text())["secure"] == "additive"
    assert run(tmp_path, "--rounds", "2", "--server-opt", "fedavgm", "--no-plot") == 0
    # Simulate a crash after round 3 was logged but before it was checkpointed.
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"round": 3, "test_accuracy": -1.0}) + "\n")
    assert run(tmp_path, "--rounds", "4", "--server-opt", "fedavgm", "--checkpoint-every", "2", "--resume") == 0
    assert_same_state(final_state(tmp_path), final_state(uninterrupted))
    got, want = metrics(tmp_path), metrics(uninterrupted)
    assert [r["round"] for r in got] == [1, 2, 3, 4]
    assert [r["test_accuracy"] for r in got] == [r["test_accuracy"] for r in want]
    assert [r["train_loss"] for r in got] == [r["train_loss"] for r in want]


def test_plaintext_and_secure_training_agree(uninterrupted, tmp_path):
    """Secure FedAvg (no DP) tracks plaintext FedAvg: each round's aggregate is within m 2^-33 of the exact mean
    (tests/test_secagg_integration.py), so after 4 rounds the models differ by float32 rounding drift only."""
    assert run(tmp_path, "--rounds", "4", "--server-opt", "fedavgm", "--secure", "none", "--no-plot") == 0
    plain, secure = final_state(tmp_path), final_state(uninterrupted)
    for k in plain.params:
        np.testing.assert_allclose(np.asarray(secure.params[k]), np.asarray(plain.params[k]), atol=1e-4, err_msg=k)
    for p, s in zip(metrics(tmp_path), metrics(uninterrupted)):
        assert "secure" not in p and p["bytes_up_per_client"] == 4 * N_PARAMS
        assert abs(p["test_accuracy"] - s["test_accuracy"]) <= 0.001  # 2 of the 2,000 test images


def test_differential_privacy_reports_epsilon_and_resumes_identically(tmp_path):
    # DP noise depends on the keys: bit-identical resume needs the (insecure, opt-in) seed-derived keys
    flags = ("--clip", "1.0", "--noise-multiplier", "1.0", "--delta", "1e-5", "--no-plot", "--insecure-derived-keys")
    full, part = tmp_path / "full", tmp_path / "part"
    assert train.main([*SMALL, "--out", str(full), "--rounds", "3", *flags]) == 0
    assert train.main([*SMALL, "--out", str(part), "--rounds", "2", *flags]) == 0
    assert train.main([*SMALL, "--out", str(part), "--rounds", "3", "--resume", *flags]) == 0
    rows = metrics(full)
    eps = [r["epsilon"] for r in rows]
    assert all(r["delta"] == 1e-5 for r in rows) and 0 < eps[0] < eps[1] < eps[2]  # epsilon accumulates
    assert [r["epsilon"] for r in metrics(part)] == eps  # the resumed accountant continues from round 2
    assert_same_state(final_state(part, "fedavg"), final_state(full, "fedavg"))  # same keyed noise


def test_noise_without_secure_aggregation_is_an_error(tmp_path, capsys):
    assert run(tmp_path, "--secure", "none", "--clip", "1", "--noise-multiplier", "1") == 2
    assert "needs secure aggregation" in capsys.readouterr().err


def test_resume_refuses_other_settings(uninterrupted, tmp_path, capsys):
    assert run(tmp_path, "--rounds", "1", "--server-opt", "fedavgm", "--no-plot") == 0
    assert run(tmp_path, "--rounds", "2", "--server-opt", "fedavgm", "--client-lr", "0.5", "--resume") == 2
    assert "client_lr" in capsys.readouterr().err
    assert run(tmp_path / "none", "--rounds", "2", "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_checkpoint_rejects_other_optimizer(uninterrupted):
    with pytest.raises(checkpoint.CheckpointError, match="different number of leaves"):
        checkpoint.load(uninterrupted / "checkpoint.npz", server.server_optimizer("fedadam"))
    (uninterrupted.parent / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(checkpoint.CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(uninterrupted.parent / "junk.npz", server.server_optimizer("fedavg"))


@pytest.mark.parametrize("flags, message", [(["--rounds", "0"], "--rounds must be >= 1, got 0"),
                                            (["--fraction", "0"], "--fraction must be in"),
                                            (["--partition", "random"], "invalid choice: 'random'"),
                                            (["--model", "784,x,10"], "--model '784,x,10'"),
                                            (["--model", "784"], "layer sizes must be")])
def test_bad_flags_exit_2(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        run(tmp_path, *flags)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_missing_dataset_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nothing"))
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {})
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    assert train.main(["--dataset", "mnist", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'mnist' not found" in err and str(tmp_path / "nothing") in err


def test_federated_demo_meets_the_tutorial():
    lines: list[str] = []
    acc = demo.federated_demo(out=lines.append)
    assert acc >= 0.93, lines
    assert any("alice" in line for line in lines) and any("bob" in line for line in lines)
    assert any(line.startswith("Secure aggregation: ") and "2 non-colluding servers" in line for line in lines)
    upload = next(line for line in lines if line.startswith("Upload per worker per round: "))
    assert "1.0000x the encoded update" in upload  # seed-compressed shares: one key + one array
    assert f"{acc:.2%}" in lines[-1]


@pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
def test_fashion_mnist_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # exercise the IDX path
    out = tmp_path / "fmnist"
    assert train.main(["--dataset", "fashion_mnist", "--model", "2nn", "--clients", "100", "--fraction", "0.1",
                       "--local-epochs", "1", "--batch-size", "10", "--rounds", "3", "--out", str(out),
                       "--no-progress", "--secure", "none"]) == 0
    rows = metrics(out)
    assert len(rows) == 3 and rows[-1]["clients"] == 10
    assert rows[-1]["test_accuracy"] > 0.6, rows
    assert rows[-1]["bytes_up_per_client"] == 4 * 199210
