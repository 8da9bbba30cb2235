"""Encrypted training among named workers: every message in the ledger, no party sees a plaintext weight, image or
label, and the command line's per-party checkpoints resume bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl import Z2_64, nn
from refimpl.encoding import FixedPoint
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.encrypted_training import WorkerTrainer

SMALL = 2**40  # every plaintext below is < 2**20 in magnitude once encoded; a uniform ring element is < 2**40 in
# magnitude with probability 2**-23


def _looks_plain(arr: np.ndarray) -> int:
    """How many entries of a received array could be an encoded plaintext (small in the signed view)."""
    signed = Z2_64.lift(np.asarray(arr, dtype=np.uint64))
    return int(np.count_nonzero(np.abs(signed) < SMALL))


def _parties():
    ledger = Ledger(keep=None)
    names = ("jake", "john", "secure_worker", "alice", "crypto_provider")
    return ledger, {n: VirtualWorker(n, ledger) for n in names}


def test_no_party_view_contains_a_plaintext_weight_image_or_label():
    ledger, w = _parties()
    rng = np.random.default_rng(0)  # test data only
    params = nn.init_params((12, 7, 5), seed=0)
    x = rng.uniform(0, 1, (8, 12)) * (rng.uniform(0, 1, (8, 12)) > 0.5)  # images with many exact zeros
    y = rng.integers(0, 5, 8)
    run = WorkerTrainer(params, compute=(w["secure_worker"], w["alice"]), crypto_provider=w["crypto_provider"],
                        loss="xent", lr=0.5, record_views=True)
    run.step_parts([(w["jake"], x[:4], y[:4]), (w["john"], x[4:], y[4:])])
    run.step(w["john"], x, y)
    fp = FixedPoint()
    secrets = [fp.encode(x), fp.encode(nn.one_hot(y, 5))] + [fp.encode(v) for v in params.values()]
    assert all(_looks_plain(s) > 0 for s in secrets)  # the check would catch any of them
    for name in ("secure_worker", "alice"):
        view = run.channel.views[name]
        kinds = {k for k, _ in view}
        assert {"open", "open-binary", "dealer", "share"} <= kinds
        assert sum(a.size for _, a in view) > 10_000
        leaks = [(k, a.shape) for k, a in view if _looks_plain(a)]
        assert not leaks, f"{name} received plaintext-looking arrays: {leaks}"
        for obj in w[name].objects.values():  # nothing is parked in the workers' stores either
            assert not isinstance(obj, np.ndarray) or not _looks_plain(obj)
    # who talked to whom: data owners only send, the provider only deals, the compute parties open to each other
    assert ledger.bytes_received["jake"] == ledger.bytes_received["john"] == 0
    assert ledger.bytes_received["crypto_provider"] == 0
    assert ledger.bytes_by_kind["open"] > 0 and ledger.bytes_by_kind["dealer"] > ledger.bytes_by_kind["open"]
    sent = {m.sender for m in ledger.log if m.kind == "open"}
    assert sent == {"secure_worker", "alice"}
    weights = run.get()
    assert set(weights) == set(params) and ledger.bytes_by_kind["get"] > 0


def test_worker_trainer_rejects_bad_parties():
    ledger, w = _parties()
    params = nn.init_params((4, 3, 2), seed=0)
    with pytest.raises(ValueError, match="crypto provider"):
        WorkerTrainer(params, compute=(w["alice"], w["crypto_provider"]), crypto_provider=w["crypto_provider"])
    run = WorkerTrainer(params, compute=(w["alice"], w["secure_worker"]), crypto_provider=w["crypto_provider"])
    with pytest.raises(TypeError, match="worker"):
        run.step("jake", np.zeros((1, 4)), np.array([0]))  # type: ignore[arg-type]


def test_cli_checkpoints_hold_own_shares_and_resume_bit_for_bit(tmp_path):
    pytest.importorskip("tqdm", reason="the train-encrypted command needs tqdm (the fl extra)")
    pytest.importorskip("matplotlib", reason="the train-encrypted command needs matplotlib (the fl extra)")
    from refimpl.fl.encrypted_train import main

    common = ["--model", "784,8,10", "--train-limit", "192", "--batch-size", "64", "--loss", "mse",
              "--insecure-keys-from-seed", "--no-progress"]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "b"), "--no-plot"]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    for party in ("secure_worker", "alice"):
        with np.load(tmp_path / "a" / "checkpoint" / f"{party}.npz") as za, \
                np.load(tmp_path / "b" / "checkpoint" / f"{party}.npz") as zb:
            assert sorted(za.files) == ["meta", "shares/b0", "shares/b1", "shares/w0", "shares/w1"]
            assert all(np.array_equal(za[k], zb[k]) for k in za.files)
            assert json.loads(str(za["meta"]))["steps"] == 6
    rows = [json.loads(r) for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["rounds"] == 6 * 18
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    for secret in ("secure_worker.npz", "alice.npz", "crypto_provider.json", "data_owners.json", "model_owner.json"):
        assert (tmp_path / "a" / "checkpoint" / secret).stat().st_mode & 0o077 == 0  # owner-only files
    assert main([*common, "--epochs", "2", "--lr", "0.2", "--out", str(tmp_path / "b"), "--resume"]) == 2


class _Recording(VirtualWorker):
    """A worker that keeps every array it receives (decoded), to inspect its view."""

    def __init__(self, name: str, ledger: Ledger) -> None:
        super().__init__(name, ledger)
        self.received: list[np.ndarray] = []

    def receive(self, raw, sender, kind):  # type: ignore[no-untyped-def]
        from refimpl.net import wire

        def walk(obj):  # type: ignore[no-untyped-def]
            if isinstance(obj, np.ndarray):
                self.received.append(obj)
            elif isinstance(obj, dict):
                for v in obj.values():
                    walk(v)
            elif isinstance(obj, (list, tuple)):
                for v in obj:
                    walk(v)

        walk(wire.decode(raw, pointer=lambda loc, i: None))
        return super().receive(raw, sender, kind)


@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_pointer_world_training_tracks_twin_and_parties_see_only_shares(loss):
    from refimpl.mpc.training import PlaintextTwin
    from refimpl.workers.encrypted_training import PointerTrainer

    ledger = Ledger()
    jake, john, provider = (VirtualWorker(n, ledger) for n in ("jake", "john", "crypto_provider"))
    secure_worker, alice = _Recording("secure_worker", ledger), _Recording("alice", ledger)
    rng = np.random.default_rng(1)  # test data only
    params = nn.init_params((12, 7, 5), seed=2)
    x, y = rng.uniform(0, 1, (8, 12)) * (rng.uniform(0, 1, (8, 12)) > 0.5), rng.integers(0, 5, 8)
    run = PointerTrainer(params, compute=(secure_worker, alice), crypto_provider=provider, lr=0.5, loss=loss)
    twin = PlaintextTwin(params, lr=0.5, loss=loss, step_bits=run.step_bits)
    run.step(jake, x[:4], y[:4])
    twin.step(x[:4], y[:4])
    run.step(john, x[4:], y[4:])
    twin.step(x[4:], y[4:])
    secret_shapes = {(4, 12), (4, 5), (12, 7), (7,), (7, 5), (5,)}
    for party in (secure_worker, alice):
        stored = [o for o in party.objects.values() if isinstance(o, np.ndarray)]
        assert len(stored) == 4 and {o.shape for o in stored} == {(12, 7), (7,), (7, 5), (5,)}
        assert all(_looks_plain(o) == 0 for o in stored)
        seen = [a for a in party.received if a.shape in secret_shapes and a.dtype == np.uint64]
        assert len(seen) > 20
        assert all(_looks_plain(a) == 0 for a in seen), [a.shape for a in seen if _looks_plain(a)]
    assert ledger.bytes_sent["jake"] > 0 and ledger.bytes_sent["john"] > 0 and ledger.bytes_sent["crypto_provider"] > 0
    got = run.get()
    drift = max(np.abs(got[k] - twin.params[k]).max() for k in params)
    assert drift < (2e-3 if loss == "mse" else 2**-6), drift
