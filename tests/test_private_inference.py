"""Encrypted MLP inference: agreement with plaintext on MNIST, error bounds, rounds, and what the servers see."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refimpl import Z2_64, FixedPoint
from refimpl.errors import PartyCountError, ShapeMismatchError
from refimpl.mpc import Channel
from refimpl.mpc.inference import EncryptedMLP, plaintext_logits, train_mlp
from refimpl.workers import Ledger, VirtualWorker
from refimpl.workers.shared_tensor import LedgerChannel


def random_mlp(sizes=(12, 8, 8, 4), seed=0):
    rng = np.random.default_rng(seed)
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        params[f"w{i}"], params[f"b{i}"] = rng.normal(0, 0.5, (a, b)), rng.normal(0, 0.1, b)
    return params, rng.uniform(-1, 1, (20, sizes[0]))


@pytest.mark.parametrize("n,truncation", [(2, "dealer"), (3, "dealer"), (4, "dealer"), (2, "local")])
def test_encrypted_logits_match_plaintext(n, truncation):
    params, x = random_mlp()
    model = EncryptedMLP(params, n=n, truncation=truncation, key=bytes(16))
    got, want = model.logits(x), plaintext_logits(params, x)
    # per layer: encoding error (<= 2**-17 per weight and input) summed over fan-in, plus < 1 ulp of truncation
    assert np.abs(got - want).max() < 2e-3
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    relu_rounds = 9 + {2: 0, 3: 1, 4: 2}[n]
    per_layer = 2 if truncation == "dealer" else 1
    assert model.setup["rounds"] == 3  # one opening of W - B per layer, once per model
    assert model.channel.rounds - model.setup["rounds"] == 3 * per_layer + 2 * relu_rounds  # any batch size


def test_hidden_activations_exact_relu_at_zero_and_negative():
    params = {"w0": np.eye(3), "b0": np.array([0.0, -1.0, 1.0]), "w1": np.eye(3), "b1": np.zeros(3)}
    x = np.array([[0.0, 0.5, -2.0], [-1e-4, 3.0, -0.5]])
    got = EncryptedMLP(params, n=3).logits(x)
    assert np.allclose(got, np.maximum(x + [0.0, -1.0, 1.0], 0), atol=3 / 2**16)


@pytest.fixture(scope="module")
def mnist():
    data = pytest.importorskip("refimpl.fl.data").load("mnist-10k")
    # a quick deterministic 784-128-10 model (the bench trains the full one)
    params = train_mlp(data.x_train[:2000], data.y_train[:2000], (784, 128, 10), epochs=2, seed=0)
    return params, data


def test_mnist_predictions_on_shares_agree_with_plaintext(mnist):
    params, data = mnist
    x = data.x_test[:400]
    ledger = Ledger()
    servers = [VirtualWorker(f"server{i}", ledger) for i in range(2)]
    channel = LedgerChannel(servers, VirtualWorker("crypto_provider", ledger))
    model = EncryptedMLP(params, n=2, key=bytes(16), channel=channel)
    got, want = model.logits(x), plaintext_logits(params, x)
    agree = int((got.argmax(1) == want.argmax(1)).sum())
    assert agree >= 0.995 * len(x)
    assert np.abs(got - want).max() < 5e-3
    assert (want.argmax(1) == data.y_test[:400]).mean() > 0.8  # the model is a real classifier
    assert ledger.rounds_by_kind["open"] == 2 + (2 + 9 + 2) and ledger.bytes_by_kind["open"] > 0  # set-up + inference


def test_servers_only_ever_see_uniformly_masked_values():
    class Recorder(Channel):
        def __init__(self):
            super().__init__()
            self.seen = []

        def open(self, *sharings):
            out = super().open(*sharings)
            self.seen += [np.asarray(o).astype(np.uint64).ravel() for o in out if o.dtype != object]
            return out

    params, x = random_mlp((16, 32, 4))
    rec = Recorder()
    EncryptedMLP(params, n=2, channel=rec).logits(np.repeat(x, 10, axis=0))
    arithmetic = np.concatenate([s for s in rec.seen if s.size > 200 and s.max() > 1])
    top = (arithmetic >> np.uint64(63)).mean()        # plaintext activations would have top bit 0 or all ones
    assert abs(top - 0.5) < 0.02, top


def test_errors_name_bad_values():
    params, x = random_mlp()
    with pytest.raises(ValueError, match="'dealer' or 'local', got 'fast'"):
        EncryptedMLP(params, truncation="fast")
    with pytest.raises(ValueError, match="exactly 2 servers, got n=3"):
        EncryptedMLP(params, n=3, truncation="local")
    with pytest.raises(PartyCountError):
        EncryptedMLP(params, n=1)
    with pytest.raises(ValueError, match="w0, b0"):
        EncryptedMLP({"w0": np.eye(2)})
    with pytest.raises(ShapeMismatchError, match="do not chain"):
        EncryptedMLP({"w0": np.eye(2), "b0": np.zeros(2), "w1": np.eye(3), "b1": np.zeros(3)})
    with pytest.raises(ShapeMismatchError, match=r"\(batch, 12\), got \(12,\)"):
        EncryptedMLP(params).logits(x[0])


def test_compressed_input_shares_give_the_same_logits():
    params, x = random_mlp()
    a, b = EncryptedMLP(params, n=3, key=bytes(16)), EncryptedMLP(params, n=3, key=bytes(16))
    c = b.share_input_compressed(x)
    assert c.nbytes < 0.4 * c.expanded_nbytes
    assert (a.share_input(x).data == c.expand().data).all()  # the same shares, bit for bit
    with pytest.raises(ShapeMismatchError):
        b.share_input_compressed(x[:, :3])
    ledger = Ledger()
    servers = [VirtualWorker(f"s{i}", ledger) for i in range(3)]
    client, channel = VirtualWorker("client", ledger), LedgerChannel(servers, VirtualWorker("dealer", ledger))
    channel.transfer(c, client, servers, "compressed")
    channel.transfer(c.expand(), client, servers, "full")
    assert ledger.messages_by_kind["compressed"] == ledger.messages_by_kind["full"] == 3
    assert ledger.bytes_by_kind["compressed"] < 0.4 * ledger.bytes_by_kind["full"]


def test_training_is_deterministic():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, (100, 5)), rng.integers(0, 3, 100)
    a, b = train_mlp(x, y, (5, 4, 3), epochs=2), train_mlp(x, y, (5, 4, 3), epochs=2)
    assert all((a[k] == b[k]).all() for k in a) and a["w0"].dtype == np.float32


def test_encoding_choice_is_respected():
    params, x = random_mlp()
    fp = FixedPoint(frac_bits=20, ring=Z2_64)
    got = EncryptedMLP(params, encoding=fp).logits(x)
    assert np.abs(got - plaintext_logits(params, x)).max() < 2e-4
