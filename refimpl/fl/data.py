"""Image classification datasets for federated simulations: MNIST, Fashion-MNIST and the built-in ``mnist-10k``.

``load(name)`` returns float32 images in [0, 1], flattened to (N, 784), and int32 labels. Data comes from, in order:

1. tensorflow-datasets, when it is importable and ``use_tfds`` is not False: by default only a dataset it has
   already prepared (no download; any failure, such as the absence of TensorFlow or of a prepared dataset, is
   recorded and the IDX path is tried next); with ``use_tfds=True`` it may download and prepare it;
2. the four standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) in the first directory that has them, searched
   in ``data_dir``, ``$REFIMPL_DATA_DIR`` (each also with a ``<name>/`` subdirectory), ``~/.cache/refimpl/<name>``
   and known system locations such as Debian's ``/usr/share/datasets/fashion-mnist/``.

``mnist-10k`` never needs a download: it is the official MNIST test set, shipped as package data (CC BY-SA 3.0,
see ``refimpl/fl/datasets/LICENSE-MNIST.txt``), split into 8,000 train and 2,000 test images by index
(``i % 5 == 4`` goes to test).

Integrity: every IDX file is checked for its magic number, dtype, dimensions and exact length. Files whose
digests are known are checked too; the digests are SHA-256 of the *decompressed* payload, because distributions
(Debian, our own package data) recompress the gzip containers. Files that match the digest of a *different*
dataset are refused, so one dataset is never silently substituted for another.

This module needs only NumPy.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib
import importlib.resources
import math
import os
import zlib
from pathlib import Path

import numpy as np

from refimpl.errors import DataError, DatasetNotFoundError

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "DataError",
    "Dataset",
    "DatasetNotFoundError",
    "load",
    "read_idx",
]

ENV_VAR = "REFIMPL_DATA_DIR"
DATASETS = ("mnist", "fashion_mnist", "mnist-10k")

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of decompressed IDX payloads. Fashion-MNIST: computed from Debian's dataset-fashion-mnist files, whose
# images are the published ones recompressed. MNIST test set: computed from the copy shipped in
# refimpl/fl/datasets. No digest is pinned for the MNIST training set (no copy was available to derive it from).
_SHA256 = {
    ("fashion_mnist", "train_images"): "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ("fashion_mnist", "train_labels"): "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ("fashion_mnist", "test_images"): "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ("fashion_mnist", "test_labels"): "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ("mnist", "test_images"): "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ("mnist", "test_labels"): "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_SYSTEM_DIRS = {
    "mnist": ("/usr/share/datasets/mnist",),
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}

_HOW_TO_GET = {
    "mnist": (
        "download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from http://yann.lecun.com/exdb/mnist/ into a "
        f"directory and pass data_dir= or set {ENV_VAR}; or install tensorflow-datasets (pip install "
        "'refimpl[data]') with TensorFlow; or use the built-in 'mnist-10k'"
    ),
    "fashion_mnist": (
        "on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` (files land in "
        "/usr/share/datasets/fashion-mnist/); or download the four IDX files from "
        "https://github.com/zalandoresearch/fashion-mnist into a directory and pass data_dir= or set "
        f"{ENV_VAR}; or install tensorflow-datasets (pip install 'refimpl[data]') with TensorFlow"
    ),
}

MAX_IDX_BYTES = 2**30
"""The largest IDX file (decompressed) refimpl reads: Fashion-MNIST's largest is 47 MB."""
_IDX_DTYPES = {0x08: np.dtype(np.uint8)}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split of flattened images.

    Attributes:
        name: Dataset name as passed to `load`.
        x_train: float32 array (N_train, 784), values in [0, 1].
        y_train: int32 array (N_train,), labels in [0, 10).
        x_test: float32 array (N_test, 784).
        y_test: int32 array (N_test,).
        source: Where the data came from (a directory, ``tensorflow-datasets`` or ``package data``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def num_classes(self) -> int:
        """Number of label classes (10 for every dataset here)."""
        return 10


def read_idx(path: str | os.PathLike[str], *, expected_ndim: int | None = None) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed), validating magic number, dimensions and length.

    Args:
        path: File path; a name ending in ``.gz`` is decompressed.
        expected_ndim: If given, the number of dimensions the file must declare (3 for images, 1 for labels).

    Returns:
        The array, with the dtype and shape the header declares (only unsigned-byte files are supported).

    Raises:
        DataError: The file is not valid gzip, is truncated or too long, has a bad magic number, an unsupported
            dtype, or the wrong number of dimensions.
    """
    raw = _read_bytes(Path(path))
    return _parse_idx(raw, str(path), expected_ndim)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read(MAX_IDX_BYTES + 1)  # bounded: a small hostile .gz cannot inflate to all memory
        else:
            if path.stat().st_size > MAX_IDX_BYTES:
                raise DataError(f"{path}: {path.stat().st_size} bytes is larger than an IDX file refimpl reads "
                                f"({MAX_IDX_BYTES} bytes)")
            raw = path.read_bytes()
        if len(raw) > MAX_IDX_BYTES:
            raise DataError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes; not an IDX file refimpl "
                            "reads")
        return raw
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot decompress or read ({type(e).__name__}: {e}); the file is corrupt or "
                        "truncated, delete it and fetch it again") from e


def _parse_idx(raw: bytes, where: str, expected_ndim: int | None) -> np.ndarray:
    if len(raw) < 4:
        raise DataError(f"{where}: {len(raw)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0:
        raise DataError(f"{where}: bad IDX magic number {raw[:4].hex()} (first two bytes must be zero)")
    if dtype_code not in _IDX_DTYPES:
        raise DataError(f"{where}: unsupported IDX dtype code {dtype_code:#04x} (only 0x08, unsigned byte)")
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{where}: IDX file declares {ndim} dimensions, expected {expected_ndim}")
    if ndim > 32:
        raise DataError(f"{where}: IDX file declares {ndim} dimensions (at most 32)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where}: truncated header ({len(raw)} bytes, need {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[dtype_code]
    expected = header + math.prod(shape) * dtype.itemsize  # exact: np.prod in int64 could wrap to a "match"
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "too long"
        raise DataError(f"{where}: {kind}: {len(raw)} bytes, header shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _check_digest(name: str, part: str, raw: bytes, where: str, verify: bool) -> None:
    digest = hashlib.sha256(raw).hexdigest()
    for (other, other_part), known in _SHA256.items():
        if other != name and other_part == part and digest == known:
            raise DataError(f"{where}: this file is {other!r} data, not {name!r}; refusing to substitute one "
                            "dataset for another")
    expected = _SHA256.get((name, part))
    if verify and expected is not None and digest != expected:
        raise DataError(f"{where}: SHA-256 of the decompressed content is {digest}, expected {expected} for "
                        f"{name!r} {part}; the file is corrupt or holds other data")


def _read_part(name: str, part: str, path: Path, verify: bool) -> np.ndarray:
    raw = _read_bytes(path)
    _check_digest(name, part, raw, str(path), verify)
    return _parse_idx(raw, str(path), 3 if part.endswith("images") else 1)


def _images(x: np.ndarray, where: str) -> np.ndarray:
    if x.shape[1:] != (28, 28):
        raise DataError(f"{where}: images have shape {x.shape[1:]}, expected (28, 28)")
    return (x.reshape(x.shape[0], -1).astype(np.float32) / np.float32(255.0))


def _labels(y: np.ndarray, n_images: int, where: str) -> np.ndarray:
    if y.shape != (n_images,):
        raise DataError(f"{where}: {y.shape[0]} labels for {n_images} images")
    if y.size and int(y.max()) > 9:
        raise DataError(f"{where}: label {int(y.max())} out of range [0, 10)")
    return y.astype(np.int32)


def _load_idx_dir(name: str, directory: Path, verify: bool) -> Dataset:
    paths = {part: _find_file(directory, stem) for part, stem in _FILES.items()}
    arrays = {part: _read_part(name, part, p, verify) for part, p in paths.items() if p is not None}
    x_train = _images(arrays["train_images"], str(paths["train_images"]))
    x_test = _images(arrays["test_images"], str(paths["test_images"]))
    y_train = _labels(arrays["train_labels"], len(x_train), str(paths["train_labels"]))
    y_test = _labels(arrays["test_labels"], len(x_test), str(paths["test_labels"]))
    return Dataset(name, x_train, y_train, x_test, y_test, source=str(directory))


def _load_builtin(verify: bool) -> Dataset:
    root = importlib.resources.files("refimpl.fl.datasets")
    with importlib.resources.as_file(root / f"{_FILES['test_images']}.gz") as p_img, \
            importlib.resources.as_file(root / f"{_FILES['test_labels']}.gz") as p_lab:
        x = _images(_read_part("mnist", "test_images", Path(p_img), verify), str(p_img))
        y = _labels(_read_part("mnist", "test_labels", Path(p_lab), verify), len(x), str(p_lab))
    test = np.arange(len(x)) % 5 == 4
    return Dataset("mnist-10k", x[~test], y[~test], x[test], y[test], source="package data (MNIST test set)")


def _load_tfds(name: str, data_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    tfds = importlib.import_module("tensorflow_datasets")
    kwargs: dict[str, object] = {"download": download}
    if data_dir is not None:
        kwargs["data_dir"] = os.fspath(data_dir)
    splits = {}
    for split in ("train", "test"):
        ds = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, **kwargs))
        images, labels = np.asarray(ds["image"]), np.asarray(ds["label"])
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        x = _images(images.astype(np.uint8), f"tensorflow-datasets {name}/{split}")
        splits[split] = (x, _labels(labels, len(x), f"tensorflow-datasets {name}/{split}"))
    return Dataset(name, *splits["train"], *splits["test"], source="tensorflow-datasets")


def _candidate_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    candidates: list[tuple[str, Path]] = []
    if data_dir is not None:
        candidates += [("data_dir", Path(data_dir) / name), ("data_dir", Path(data_dir))]
    env = os.environ.get(ENV_VAR)
    if env:
        candidates += [(f"${ENV_VAR}", Path(env) / name), (f"${ENV_VAR}", Path(env))]
    candidates.append(("user cache", Path.home() / ".cache" / "refimpl" / name))
    candidates += [("system", Path(d)) for d in _SYSTEM_DIRS.get(name, ())]
    return candidates


def load(name: str, *, data_dir: str | os.PathLike[str] | None = None, use_tfds: bool | None = None,
         verify: bool = True) -> Dataset:
    """Loads a dataset as flattened float32 images in [0, 1] and int32 labels.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"mnist-10k"`` (built in, no download).
        data_dir: Directory holding the IDX files (directly or in a ``<name>/`` subdirectory), searched before the
            environment variable and known places; with ``use_tfds=True``, tensorflow-datasets' data directory.
        use_tfds: None (default): use a dataset tensorflow-datasets has already prepared (no download), when
            tensorflow-datasets is importable, and fall back to IDX files on any failure; True: only
            tensorflow-datasets, which may download and prepare the dataset; False: never it.
        verify: Check SHA-256 digests of files whose digests are known (a file holding a different known
            dataset is refused even when False).

    Returns:
        The `Dataset`.

    Raises:
        ValueError: ``name`` is not a known dataset.
        DatasetNotFoundError: No source had the data; the message lists every place tried and how to get it.
        DataError: A file was found but is corrupt, truncated, malformed or holds a different dataset.

    Example:
        >>> ds = load("mnist-10k")
        >>> ds.x_train.shape, ds.x_test.shape, ds.x_train.dtype, int(ds.y_test[:5].sum()) >= 0
        ((8000, 784), (2000, 784), dtype('float32'), True)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if name == "mnist-10k":
        return _load_builtin(verify)
    tried: list[str] = []
    if use_tfds is not False:
        try:
            return _load_tfds(name, data_dir if use_tfds else None, download=bool(use_tfds))
        except Exception as e:
            if use_tfds:
                raise DatasetNotFoundError(f"tensorflow-datasets could not load {name!r}: "
                                           f"{type(e).__name__}: {e}") from e
            tried.append(f"tensorflow-datasets: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    for origin, directory in _candidate_dirs(name, data_dir):
        found = {part: _find_file(directory, stem) for part, stem in _FILES.items()}
        if all(found.values()):
            return _load_idx_dir(name, directory, verify)
        if any(found.values()):
            missing = [_FILES[p] for p, f in found.items() if f is None]
            tried.append(f"{origin} {directory}: incomplete, missing {', '.join(missing)}")
        else:
            tried.append(f"{origin} {directory}: " + ("no IDX files" if directory.is_dir() else "does not exist"))
    lines = "\n".join(f"  - {t}" for t in tried)
    raise DatasetNotFoundError(f"dataset {name!r} not found. Tried:\n{lines}\nTo get it: {_HOW_TO_GET[name]}.")
