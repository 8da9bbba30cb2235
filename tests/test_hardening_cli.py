"""The train CLI, checkpoints and data under careless or hostile input (issue 10): one-line errors with exit
status 2 naming the flag or file, secure keys by default, byte-identical resume with fresh keys."""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import pytest

pytest.importorskip("jax", reason="jax is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("optax", reason="optax is not installed (pip install 'refimpl[fl]')")
pytest.importorskip("tqdm", reason="tqdm is not installed (pip install 'refimpl[fl]')")

from refimpl.cli import main as cli_main
from refimpl.fl import checkpoint, data, server, train

SMALL = ["--dataset", "mnist-10k", "--clients", "8", "--fraction", "0.25", "--batch-size", "50",
         "--model", "784,8,10", "--no-progress", "--no-plot", "--seed", "3"]


def run(out: Path, *extra: str) -> int:
    return train.main([*SMALL, "--out", str(out), *extra])


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert "Traceback" not in "\n".join(err)
    for w in words:
        assert w in last, (w, last)
    return last


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    assert run(out, "--rounds", "2", "--checkpoint-every", "1") == 0
    return out


@pytest.mark.parametrize("flags,words", [
    (["--client-momentum", "-5"], ["--client-momentum", "[0, 1)"]),
    (["--client-lr", "inf"], ["--client-lr", "finite"]),
    (["--client-lr", "nan"], ["--client-lr", "finite"]),
    (["--server-lr", "-1"], ["--server-lr"]),
    (["--alpha", "0"], ["--alpha"]),
    (["--dropout", "1.5"], ["--dropout", "[0, 1)"]),
    (["--clip", "-1"], ["--clip"]),
    (["--noise-multiplier", "inf"], ["--noise-multiplier"]),
    (["--delta", "2"], ["--delta"]),
    (["--servers", "1"], ["--servers", "at least 2"]),
    (["--secure", "secagg", "--threshold", "1"], ["--threshold 1", "2..2"]),
    (["--secure", "secagg", "--threshold", "50"], ["--threshold 50", "valid range is 2..2"]),
    (["--min-clients", "3"], ["2 client(s) per round", "--min-clients 3"]),
    (["--fraction", "0.1"], ["1 client(s) per round"]),
    (["--model", "foo"], ["--model 'foo'"]),
    (["--frac-bits", "32", "--ring-bits", "32"], ["--frac-bits 32 with --ring-bits 32"]),
])
def test_bad_flags_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, flags, words):
    with pytest.raises(SystemExit) as e:
        run(tmp_path / "o", *flags)
    assert e.value.code == 2
    one_line_error(capsys, *words)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_runtime_errors_exit_2_with_one_line(tmp_path, capsys):
    assert run(tmp_path / "m", "--model", "10,10", "--rounds", "1") == 2
    one_line_error(capsys, "--model 10,10", "must start with 784")
    (tmp_path / "file").write_text("x")
    assert run(tmp_path / "file", "--rounds", "1") == 2
    one_line_error(capsys, "--out", "is a file")
    assert cli_main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err


def test_a_diverged_update_names_the_likely_flag(tmp_path, capsys):
    assert run(tmp_path, "--client-lr", "1e30", "--rounds", "2") == 2
    line = one_line_error(capsys, "not finite", "--client-lr of 1e+30")
    assert "-9223372036854775808" not in line
    assert not (tmp_path / "checkpoint.npz").exists()  # the diverged model never reached a checkpoint


def test_corrupt_checkpoints_and_metrics(two_rounds, tmp_path, capsys):
    good = (two_rounds / "checkpoint.npz").read_bytes()
    for name, raw in [("truncated", good[: len(good) // 2]), ("flipped", good[:200] + bytes([good[200] ^ 4]) +
                                                              good[201:]), ("empty", b"")]:
        out = tmp_path / name
        out.mkdir()
        (out / "checkpoint.npz").write_bytes(raw)
        assert run(out, "--rounds", "3", "--resume") == 2, name
        one_line_error(capsys, str(out / "checkpoint.npz"))
    # a checkpoint of another configuration names the differing setting
    other = tmp_path / "other"
    other.mkdir()
    (other / "checkpoint.npz").write_bytes(good)
    assert run(other, "--rounds", "3", "--resume", "--client-lr", "0.05") == 2
    one_line_error(capsys, "other settings", "client_lr")
    # a torn last metrics line (a kill while writing) is dropped with a warning; resume goes on
    torn = tmp_path / "torn"
    torn.mkdir()
    for f in ("checkpoint.npz", "metrics.jsonl"):
        (torn / f).write_bytes((two_rounds / f).read_bytes())
    with (torn / "metrics.jsonl").open("a") as f:
        f.write('{"round": 3, "test_acc')
    assert run(torn, "--rounds", "3", "--resume") == 0
    assert "dropping a torn last line" in capsys.readouterr().err
    assert [json.loads(x)["round"] for x in (torn / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    # a bad line in the middle is an error naming file and line
    (torn / "metrics.jsonl").write_text('{"round": 1}\nnot json\n{"round": 2}\n')
    assert run(torn, "--rounds", "3", "--resume") == 2
    one_line_error(capsys, "metrics.jsonl:2")


def test_a_full_disk_is_a_one_line_error(two_rounds, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoint.npz.tmp"))

    monkeypatch.setattr(checkpoint.np.lib.format, "write_array", full)
    assert run(tmp_path, "--rounds", "1") == 2
    one_line_error(capsys, "No space left on device", "checkpoint.npz.tmp")


def test_secure_by_default_recorded_and_no_key_in_the_checkpoint(two_rounds, tmp_path, capsys):
    config = json.loads((two_rounds / "config.json").read_text())
    rows = [json.loads(x) for x in (two_rounds / "metrics.jsonl").read_text().splitlines()]
    assert config["insecure_derived_keys"] is False and all(r["keys"] == "os" for r in rows)
    assert all(r["min_clients"] == 2 for r in rows)
    assert run(tmp_path, "--rounds", "1", "--insecure-derived-keys", "--secure", "secagg") == 0
    assert "WARNING: --insecure-derived-keys" in capsys.readouterr().err
    config = json.loads((tmp_path / "config.json").read_text())
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert config["insecure_derived_keys"] is True and row["keys"] == "insecure-derived" and row["threshold"] == 2
    # the derived master key (the only key a run could hold) is nowhere in the checkpoint
    import hashlib
    key = hashlib.sha256(b"refimpl/train/3").digest()[:16]
    assert key not in (tmp_path / "checkpoint.npz").read_bytes()


def test_resume_with_fresh_keys_writes_the_same_checkpoint_bytes(two_rounds, tmp_path):
    """Plain secure aggregation is exact: the model does not depend on the (fresh) keys, so a run resumed from
    round 1 ends with the very bytes of the uninterrupted run's checkpoint."""
    part = tmp_path / "part"
    assert run(part, "--rounds", "1") == 0
    assert run(part, "--rounds", "2", "--resume") == 0
    assert (part / "checkpoint.npz").read_bytes() == (two_rounds / "checkpoint.npz").read_bytes()


def test_dp_resume_with_fresh_keys_continues_correctly(tmp_path):
    """DP noise depends on the keys: a resumed run with fresh keys continues the same rounds and the same privacy
    accounting, with another draw of the noise (bit-identity needs --insecure-derived-keys)."""
    dp = ("--clip", "1.0", "--noise-multiplier", "1.0")
    full, part = tmp_path / "full", tmp_path / "part"
    assert run(full, "--rounds", "2", *dp) == 0
    assert run(part, "--rounds", "1", *dp) == 0
    assert run(part, "--rounds", "2", "--resume", *dp) == 0
    rows = [[json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (full, part)]
    assert [r["round"] for r in rows[1]] == [1, 2] and all(r["keys"] == "os" for r in rows[1])
    assert [r["epsilon"] for r in rows[0]] == [r["epsilon"] for r in rows[1]]
    assert (part / "checkpoint.npz").read_bytes() != (full / "checkpoint.npz").read_bytes()  # other noise


def test_checkpoint_save_is_deterministic_and_durable(two_rounds, tmp_path, monkeypatch):
    state, config = checkpoint.load(two_rounds / "checkpoint.npz", server.server_optimizer("fedavg"))
    synced = []
    real_fsync = checkpoint.os.fsync
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    checkpoint.save(tmp_path / "a.npz", state, config)
    assert len(synced) == 2  # the file, then the directory after the rename
    checkpoint.save(tmp_path / "b.npz", state, config)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes() == \
        (two_rounds / "checkpoint.npz").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_idx_dimensions_whose_product_overflows_are_refused():
    # 4 dims of 2^16: the product 2^64 wraps to 0 in int64, so a header-only file used to "match" and then crash
    raw = bytes([0, 0, 0x08, 4]) + struct.pack(">IIII", 2**16, 2**16, 2**16, 2**16)
    with pytest.raises(data.DataError, match=r"truncated: 20 bytes, header shape \(65536, 65536, 65536, 65536\)"):
        data._parse_idx(raw, "x.idx", None)
