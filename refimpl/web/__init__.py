"""Browser workers: a web page whose JavaScript takes part in secure aggregation like refimpl's Python clients.

``refimpl/web/static/`` (package data, plain ES modules, no build step) re-implements the primitives a client needs,
bit-identical to refimpl and checked against its known-answer vectors (under ``node --test`` and in Chromium):

* ``prg.mjs``: AES-128-CTR keystreams and HKDF-SHA256 through WebCrypto, ChaCha20 in JavaScript, X25519 through
  WebCrypto;
* ``ring.mjs``, ``encoding.mjs``: Z_M (typed arrays for Z_2^32 / Z_2^64, BigInt otherwise) and fixed point with
  refimpl's exact half-to-even rounding and range errors;
* ``sharing.mjs``, ``secagg.mjs``: n-party additive shares with seed compression and the additive secure-aggregation
  client; ``shamir.mjs``, ``bonawitz.mjs``: Shamir sharing and the Bonawitz SecAgg / SecAgg+ client;
* ``wire.mjs``: refimpl's safe wire format (``RFW1``); ``transport.mjs``: :mod:`refimpl.net.transport`'s framing;
* ``conformance.mjs``: the known-answer checks; ``train.mjs``: refimpl.nn's MLP (softmax regression) on typed arrays;
* ``client.mjs`` (this package's round server), ``netclient.mjs`` (``python -m refimpl aggregator``), ``app.mjs`` and
  ``index.html``: the page; ``check.html``: the known-answer self-check page.

:mod:`refimpl.web.assets` serves those files (and the vectors) by a fixed whitelist; :mod:`refimpl.web.server` runs
secure-aggregation rounds for browser tabs and Python clients (:mod:`refimpl.web.pyclient`) over WebSocket
(``python -m refimpl web``); ``python -m refimpl web --aggregator`` serves the page for tabs that join the networked
aggregator instead.
"""

from __future__ import annotations

from refimpl.web.assets import ASSETS, asset

__all__ = ["ASSETS", "asset"]
