"""The browser client's files, served from package data by a fixed whitelist (no path from a request reaches the
file system), plus refimpl's known-answer vectors for the page's self-check.

Example:
    >>> body, ctype = asset("/static/prg.mjs")
    >>> ctype, body[:2]
    ('text/javascript; charset=utf-8', b'//')
    >>> asset("/../pyproject.toml") is None
    True
"""

from __future__ import annotations

import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from refimpl.testing import VECTOR_NAMES

__all__ = ["ASSETS", "asset", "serve_assets"]

_STATIC = ("prg.mjs", "ring.mjs", "encoding.mjs", "sharing.mjs", "secagg.mjs", "wire.mjs", "conformance.mjs",
           "train.mjs", "client.mjs", "transport.mjs", "netclient.mjs", "shamir.mjs", "bonawitz.mjs", "app.mjs",
           "style.css")
_PAGES = ("index.html", "check.html")
_TYPES = {".mjs": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json"}

ASSETS: dict[str, tuple[str, str]] = {
    "/": ("web", "static/index.html"),
    **{f"/{name}": ("web", f"static/{name}") for name in _PAGES},
    **{f"/static/{name}": ("web", f"static/{name}") for name in _STATIC},
    **{f"/vectors/{name}.json": ("testing", f"vectors/{name}.json") for name in VECTOR_NAMES},
}
"""URL path -> (refimpl subpackage, file inside it): everything the page may load."""


def asset(path: str) -> tuple[bytes, str] | None:
    """``(body, content type)`` of a whitelisted URL path, or None (query strings are ignored)."""
    entry = ASSETS.get(path.split("?", 1)[0])
    return None if entry is None else _read(*entry)


@cache  # keyed by whitelist entries only, so bounded
def _read(package: str, name: str) -> tuple[bytes, str]:
    body = (resources.files(f"refimpl.{package}") / name).read_bytes()
    suffix = name[name.rfind("."):]
    return body, _TYPES.get(suffix, "application/octet-stream")


class _Handler(BaseHTTPRequestHandler):
    data: Any = None  # a refimpl.web.model.PartitionData serving /data/client/<id> and /data/test, or None

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        found = asset(self.path)
        if found is None and self.data is not None:
            found = self.data.route(self.path.split("?", 1)[0])
        if found is None:
            self.send_error(404, "not a refimpl web asset")
            return
        body, ctype = found
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the CLI report what matters
        pass


def serve_assets(host: str = "127.0.0.1", port: int = 0, data: Any = None) -> tuple[ThreadingHTTPServer, str]:
    """Serve the assets over plain HTTP in a daemon thread (http://127.0.0.1 is a secure context for WebCrypto).

    Args:
        host, port: where to listen (port 0: a free one).
        data: optionally a :class:`refimpl.web.model.PartitionData`: the tabs' data partitions and test images.

    Returns:
        ``(server, base_url)``; call ``server.shutdown()`` and ``server.server_close()`` to stop it.
    """
    handler = type("_BoundHandler", (_Handler,), {"data": data})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="refimpl-web-assets", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
