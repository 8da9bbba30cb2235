"""``python -m refimpl data fetch mnist``: download a dataset's four IDX files into the cache, verified by SHA-256.

Files go to ``~/.cache/refimpl/<name>/`` (or ``--dir``), where :func:`refimpl.fl.data.load` finds them. Each file
is downloaded to a ``.part`` file, its SHA-256 is checked against the digest the dataset's publishers' files are
known by, and only then is it renamed into place: a corrupt or substituted download never lands in the cache. A
file already there with the right digest is not downloaded again. Mirrors are tried in order; when none can be
reached the command says that the machine looks offline and how to get the files by hand.

Only HTTPS mirrors are built in; ``--base-url`` replaces them (e.g. an internal mirror, or a test server).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from refimpl.fl.data import DataError, read_idx

__all__ = ["MIRRORS", "SHA256", "cache_dir", "fetch", "main"]

# The original gzip files (as published by LeCun et al. and mirrored by PyTorch and TensorFlow), by SHA-256.
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
}
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
}
_MAX_BYTES = 64 << 20  # the largest file (train images) is 9.9 MB


def cache_dir(name: str) -> Path:
    """``~/.cache/refimpl/<name>``, the directory :func:`refimpl.fl.data.load` searches."""
    return Path.home() / ".cache" / "refimpl" / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, part: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as f:  # noqa: S310 (http(s) only)
        total = 0
        while chunk := response.read(1 << 16):
            total += len(chunk)
            if total > _MAX_BYTES:
                raise DataError(f"{url}: more than {_MAX_BYTES} bytes; refusing (not an IDX file of this dataset)")
            f.write(chunk)


def fetch(name: str, *, dest: str | os.PathLike[str] | None = None, base_urls: Sequence[str] | None = None,
          sha256: Mapping[str, str] | None = None, timeout: float = 30.0, force: bool = False,
          out: Callable[[str], Any] = print) -> Path:
    """Download ``name``'s IDX files into ``dest`` (default :func:`cache_dir`), verifying each by SHA-256.

    Args:
        name: a dataset in :data:`SHA256` (``mnist``).
        dest: target directory (created if needed).
        base_urls: mirrors to try in order, each ending in ``/`` (default :data:`MIRRORS`); http(s) only.
        sha256: file name -> expected digest (default :data:`SHA256`); the files to fetch are its keys.
        timeout: seconds per connection attempt.
        force: download even files already present and verified.
        out: progress lines.

    Returns:
        The directory holding the verified files.

    Raises:
        ValueError: unknown dataset, or a base URL that is not http(s).
        ConnectionError: no mirror could be reached (the machine looks offline); the message says what to do.
        DataError: a download's digest does not match (the file is deleted), or it is not a valid IDX file.
    """
    if name not in SHA256 and sha256 is None:
        raise ValueError(f"no download source for {name!r}; data fetch knows {sorted(SHA256)}")
    digests = dict(SHA256[name] if sha256 is None else sha256)
    mirrors = tuple(MIRRORS.get(name, ()) if base_urls is None else base_urls)
    for base in mirrors:
        if not base.startswith(("https://", "http://")):
            raise ValueError(f"base URL must start with https:// or http://, got {base!r}")
    target = cache_dir(name) if dest is None else Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    for filename, expected in digests.items():
        path = target / filename
        if path.is_file() and not force and _sha256(path) == expected:
            out(f"{filename}: already in {target}, SHA-256 verified")
            continue
        part = target / f".{filename}.part"
        errors: list[str] = []
        answered = False
        for base in mirrors:
            url = base.rstrip("/") + "/" + filename
            try:
                _download(url, part, timeout)
                break
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                part.unlink(missing_ok=True)
                answered |= isinstance(e, urllib.error.HTTPError)
                errors.append(f"{url}: {e if isinstance(e, urllib.error.HTTPError) else getattr(e, 'reason', e)}")
        else:
            tried = "\n".join(f"  - {e}" for e in errors)
            why = "the mirrors did not serve it" if answered else "the machine looks offline (no mirror reachable)"
            raise ConnectionError(f"could not download {filename}: {why}. Tried:\n{tried}\nDownload the four files "
                                  f"by hand into {target} (or pass --base-url for another mirror), or use the "
                                  "built-in 'mnist-10k'.")
        digest = _sha256(part)
        if digest != expected:
            part.unlink(missing_ok=True)
            raise DataError(f"{filename} from {url}: SHA-256 {digest}, expected {expected}; the download is corrupt "
                            "or not the published file, so it was deleted")
        read_idx(part_gz := part.rename(part.with_name(part.name + ".gz")))  # structure check (magic, shape)
        part_gz.replace(path)
        out(f"{filename}: {path.stat().st_size / 1e6:.2f} MB from {url}, SHA-256 verified")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m refimpl data fetch NAME [--dir DIR] [--base-url URL] [--force]``; 0 on success, 1 on failure."""
    parser = argparse.ArgumentParser(prog="refimpl data", description="Manage the datasets refimpl trains on.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("fetch", help="download a dataset's IDX files into the cache, verified by SHA-256")
    p.add_argument("name", choices=sorted(SHA256), help="the dataset")
    p.add_argument("--dir", default=None, help="target directory (default: ~/.cache/refimpl/NAME, where "
                   "refimpl finds it)")
    p.add_argument("--base-url", action="append", default=None,
                   help="mirror to download from instead of the built-in ones (repeat to try several in order)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per connection attempt (default: 30)")
    p.add_argument("--force", action="store_true", help="download even the files already present and verified")
    args = parser.parse_args(argv)
    try:
        target = fetch(args.name, dest=args.dir, base_urls=args.base_url, timeout=args.timeout, force=args.force)
    except (ConnectionError, DataError, ValueError) as e:
        print(f"refimpl data fetch: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: the four IDX files are in {target}")
    return 0
