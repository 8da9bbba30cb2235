"""Tests of refimpl.fl.data: IDX parsing, integrity checks, search order, error messages, tfds fallback."""

from __future__ import annotations

import gzip
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.fl import data

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                                   reason="Fashion-MNIST IDX files absent: apt-get install dataset-fashion-mnist")


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, n_train: int = 12, n_test: int = 6, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)), "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": rng.integers(0, 10, n_test),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for part, stem in data._FILES.items():
        raw = idx_bytes(arrays[part])
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return arrays


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No environment variable, an empty home, no system directories, no tensorflow-datasets."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "_SYSTEM_DIRS", {"mnist": (str(tmp_path / "sys-mnist"),),
                                               "fashion_mnist": (str(tmp_path / "sys-fashion"),)})
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import raises ImportError
    return tmp_path


def test_data_and_partition_do_not_import_jax():
    code = "import sys, refimpl, refimpl.fl.data, refimpl.fl.partition; print('jax' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_mnist_10k_builtin_split():
    ds = data.load("mnist-10k")
    assert ds.x_train.shape == (8000, 784) and ds.x_test.shape == (2000, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    again = data.load("mnist-10k")
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    # Fixed split: image i is a test image iff i % 5 == 4.
    full = data.read_idx(Path(data.__file__).parent / "datasets" / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(ds.x_test[1], full[9].reshape(-1).astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.x_train[4], full[5].reshape(-1).astype(np.float32) / 255)


def test_package_data_has_licence():
    text = (Path(data.__file__).parent / "datasets" / "LICENSE-MNIST.txt").read_text()
    assert "LeCun" in text and "CC BY-SA 3.0" in text


@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3), gz=st.booleans())
def test_read_idx_roundtrip(tmp_path_factory, shape, gz):
    a = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 256
    path = tmp_path_factory.mktemp("idx") / ("f.gz" if gz else "f")
    raw = idx_bytes(a)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(data.read_idx(path), a.astype(np.uint8))


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: raw[:-1], "truncated"),
    (lambda raw: raw + b"\0", "too long"),
    (lambda raw: b"\1" + raw[1:], "magic"),
    (lambda raw: raw[:2] + b"\x0d" + raw[3:], "dtype"),
    (lambda raw: raw[:6], "header"),
    (lambda raw: b"", "too short"),
])
def test_read_idx_rejects_malformed(tmp_path, mutate, message):
    path = tmp_path / "bad"
    path.write_bytes(mutate(idx_bytes(np.zeros((3, 4, 5)))))
    with pytest.raises(data.DataError, match=message):
        data.read_idx(path)


def test_read_idx_rejects_wrong_ndim(tmp_path):
    (tmp_path / "f").write_bytes(idx_bytes(np.zeros((3, 4))))
    with pytest.raises(data.DataError, match="declares 2 dimensions, expected 3"):
        data.read_idx(tmp_path / "f", expected_ndim=3)


def test_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((50, 28, 28))))
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.gz").write_bytes(b"this is not gzip at all")
    for name in ("cut.gz", "junk.gz"):
        with pytest.raises(data.DataError, match="corrupt or truncated"):
            data.read_idx(tmp_path / name)


def test_idx_directory_search_order(isolated, monkeypatch):
    arg_dir, env_dir = isolated / "arg", isolated / "env"
    a = write_idx_dir(arg_dir / "mnist", seed=1)  # <data_dir>/<name>/ layout
    e = write_idx_dir(env_dir, n_train=7, seed=2, gz=False)  # flat layout, raw files
    monkeypatch.setenv(data.ENV_VAR, str(env_dir))
    ds = data.load("mnist", data_dir=arg_dir, verify=False)
    assert ds.source == str(arg_dir / "mnist")
    np.testing.assert_array_equal(ds.y_train, a["train_labels"])
    ds = data.load("mnist", verify=False)  # no argument: the environment variable
    assert ds.source == str(env_dir) and ds.x_train.shape == (7, 784)
    np.testing.assert_allclose(ds.x_train[0] * 255, e["train_images"][0].reshape(-1), atol=1e-4)
    monkeypatch.delenv(data.ENV_VAR)
    write_idx_dir(isolated / "sys-fashion", n_train=3)
    assert data.load("fashion_mnist", verify=False).source == str(isolated / "sys-fashion")


def test_known_digest_mismatch_is_refused(isolated):
    write_idx_dir(isolated / "d")
    with pytest.raises(data.DataError, match="SHA-256 of the decompressed content"):
        data.load("fashion_mnist", data_dir=isolated / "d")
    assert data.load("fashion_mnist", data_dir=isolated / "d", verify=False).x_train.shape == (12, 784)


def test_label_count_mismatch(isolated):
    d = isolated / "d"
    write_idx_dir(d)
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(5))))
    with pytest.raises(data.DataError, match="5 labels for 12 images"):
        data.load("mnist", data_dir=d, verify=False)


def test_not_found_lists_every_place_and_how_to_get_it(isolated, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "envdir"))
    partial = isolated / "partial"
    write_idx_dir(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("fashion_mnist", data_dir=partial)
    msg = str(info.value)
    for place in (str(partial), str(isolated / "envdir"), str(isolated / "home" / ".cache" / "refimpl"),
                  str(isolated / "sys-fashion"), "tensorflow-datasets"):
        assert place in msg
    assert "missing t10k-labels-idx1-ubyte" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and data.ENV_VAR in msg


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        data.load("cifar10")


def fake_tfds(load_fn) -> types.ModuleType:
    mod = types.ModuleType("tensorflow_datasets")
    mod.load = load_fn
    mod.as_numpy = lambda x: x
    return mod


def test_tfds_used_when_it_works(isolated, monkeypatch):
    rng = np.random.default_rng(0)
    calls = []

    def load(name, split, batch_size, **kw):
        calls.append((name, split, batch_size, kw))
        n = 5 if split == "train" else 3
        return {"image": rng.integers(0, 256, (n, 28, 28, 1)).astype(np.uint8), "label": np.arange(n) % 10}

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(load))
    ds = data.load("fashion_mnist")
    assert ds.source == "tensorflow-datasets" and ds.x_train.shape == (5, 784) and ds.x_test.shape == (3, 784)
    assert calls == [("fashion_mnist", "train", -1, {"download": False}),
                     ("fashion_mnist", "test", -1, {"download": False})]  # auto mode never downloads
    calls.clear()
    data.load("mnist", data_dir=isolated / "tfds", use_tfds=True)
    assert calls[0][3] == {"download": True, "data_dir": str(isolated / "tfds")}


def test_tfds_failure_falls_back_to_idx_and_is_reported(isolated, monkeypatch):
    def load(name, **kw):
        raise RuntimeError("TensorFlow is not installed")

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(load))
    write_idx_dir(isolated / "d")
    assert data.load("mnist", data_dir=isolated / "d", verify=False).source == str(isolated / "d")
    with pytest.raises(data.DatasetNotFoundError, match="tensorflow-datasets: RuntimeError: TensorFlow is not"):
        data.load("mnist")
    with pytest.raises(data.DatasetNotFoundError, match="tensorflow-datasets could not load"):
        data.load("mnist", data_dir=isolated / "d", use_tfds=True)


def test_real_tfds():
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow_datasets is not installed")
    try:
        ds = data.load("mnist", use_tfds=True)
    except data.DatasetNotFoundError as e:
        pytest.skip(f"tensorflow-datasets is installed ({tfds.__version__}) but cannot prepare mnist here: {e}")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)


@needs_fashion
def test_fashion_mnist_idx_verified(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    ds = data.load("fashion_mnist")  # digests of all four files are checked
    assert ds.source == str(FASHION_DIR)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10


@needs_fashion
def test_other_dataset_is_never_substituted(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(data.DataError, match="is 'fashion_mnist' data, not 'mnist'"):
        data.load("mnist", data_dir=FASHION_DIR, verify=False)
