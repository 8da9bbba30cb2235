"""`python -m refimpl data fetch`: downloads from a local HTTP server on 127.0.0.1 serving IDX files this test makes."""

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from refimpl.cli import main as cli_main
from refimpl.fl import data
from refimpl.fl.fetch import SHA256, fetch, main

FILES = tuple(SHA256["mnist"])


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Four small IDX files (20 train, 10 test images) served over HTTP on 127.0.0.1; stopped at the end."""
    root = tmp_path_factory.mktemp("mirror")
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 20),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 10)}
    digests = {}
    for name, arr in arrays.items():
        raw = gzip.compress(_idx(arr), mtime=0)
        (root / name).write_bytes(raw)
        digests[name] = hashlib.sha256(raw).hexdigest()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", digests, arrays
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_downloads_verifies_and_data_load_reads_it(served, tmp_path):
    url, digests, arrays = served
    lines = []
    target = fetch("mnist", dest=tmp_path, base_urls=[url], sha256=digests, out=lines.append)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)  # no .part files left
    assert all("SHA-256 verified" in line for line in lines) and len(lines) == 4
    ds = data.load("mnist", data_dir=tmp_path, use_tfds=False, verify=False)
    assert ds.x_train.shape == (20, 784) and ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    lines.clear()
    fetch("mnist", dest=tmp_path, base_urls=[url], sha256=digests, out=lines.append)  # second time: nothing fetched
    assert all("already in" in line for line in lines)


def test_fetch_tries_the_next_mirror(served, tmp_path):
    url, digests, _ = served
    target = fetch("mnist", dest=tmp_path, base_urls=[url + "missing/", url], sha256=digests, out=lambda s: None)
    assert len(list(target.iterdir())) == 4


def test_digest_mismatch_deletes_the_download(served, tmp_path):
    url, digests, _ = served
    wrong = dict(digests, **{FILES[0]: "0" * 64})
    with pytest.raises(data.DataError, match="SHA-256 .* expected 0000"):
        fetch("mnist", dest=tmp_path, base_urls=[url], sha256=wrong, out=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_files_that_are_not_the_published_mnist(served, tmp_path, capsys):
    url, _, _ = served
    assert cli_main(["data", "fetch", "mnist", "--dir", str(tmp_path), "--base-url", url]) == 1
    assert "SHA-256" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_offline_says_so(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port on 127.0.0.1 with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["fetch", "mnist", "--dir", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}/",
                 "--timeout", "2"]) == 1
    assert "offline" in capsys.readouterr().err
    with pytest.raises(ValueError, match="https://"):
        fetch("mnist", dest=tmp_path, base_urls=["ftp://example.org/"])
    with pytest.raises(ValueError, match="no download source"):
        fetch("nope", dest=tmp_path)

