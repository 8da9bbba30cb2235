"""A share server of the additive protocol (``python -m refimpl aggregator --share-server-index S``).

Share server ``aggregator-<S>`` keeps one :class:`~refimpl.secagg.AdditiveServer`: it takes uploads only from clients
(certificates ``client-<id>``, each only in its own name) and round control only from the lead (``aggregator``);
see the protocol in :mod:`refimpl.fl.deploy.aggregator`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from refimpl.errors import ProtocolError, RefimplError
from refimpl.fl.deploy.aggregator import client_id_of, error_reply
from refimpl.net import transport, wire
from refimpl.net.accounting import Ledger
from refimpl.secagg import AdditiveConfig, AdditiveServer, Codec, ShareMessage

__all__ = ["ShareServer"]

log = logging.getLogger("refimpl.aggregator")


class ShareServer:
    """Share server ``aggregator-<index>`` of the additive protocol (takes control only from ``aggregator``)."""

    def __init__(self, index: int, *, tls_dir: str | None, host: str = "127.0.0.1", port: int = 0,
                 insecure_plaintext: bool = False, lead: str = "aggregator") -> None:
        self.index, self.lead, self.name = index, lead, f"aggregator-{index}"
        self.server_state: AdditiveServer | None = None
        self.lock = threading.Lock()
        self.ledger = Ledger(keep=None)
        self.server = transport.serve(self.name, self._handle, host, port, tls_dir=tls_dir,
                                      insecure_plaintext=insecure_plaintext, workers=8)
        self.url = f"{'ws' if insecure_plaintext else 'wss'}://{host}:{self.server.port}"

    def close(self) -> None:
        self.server.close()

    def _handle(self, peer: str, typ: int, kind: str, payload: bytearray) -> bytes:
        self.ledger.record(peer, self.name, kind, len(payload))
        try:
            msg = wire.decode(payload)  # type: ignore[arg-type]
            if not isinstance(msg, dict):
                raise ProtocolError("a request is a dict")
            with self.lock:
                out = self._control(msg) if peer == self.lead and kind == "control" else self._upload(peer, msg)
            raw = wire.encode(out)
        except (RefimplError, TypeError, KeyError) as e:
            log.warning("%s: rejected a %r request from %r: %s", self.name, kind, peer, e)
            raw = error_reply(e)
        self.ledger.record(self.name, peer, "reply", len(raw))
        return raw

    def _control(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "begin":
            c = msg["codec"]
            codec = Codec(length=c["length"], max_clients=c["max_clients"], clip=c["clip"], frac_bits=c["frac_bits"])
            cfg = AdditiveConfig(codec=codec, servers=msg["servers"], prg=msg["prg"], min_clients=msg["min_clients"])
            if self.server_state is None or self.server_state.config != cfg:
                old = self.server_state.round if self.server_state is not None else None
                self.server_state = AdditiveServer(cfg, self.index)
                self.server_state.round = old
            self.server_state.begin_round(msg["round"], msg["clients"])
            return {"ok": True}
        st = self.server_state
        if st is None:
            raise ProtocolError(f"{self.name} has not begun a round")
        if op == "report":
            return {"received": sorted(st.finish_stage())}
        if op == "partial":
            p = st.partial_sum(msg["agreed"])
            return {"round": p.round, "server": p.server, "clients": sorted(p.clients), "total": p.total}
        raise ProtocolError(f"unknown control request {op!r}")

    def _upload(self, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        if msg.get("op") != "upload":
            raise ProtocolError(f"party {peer!r} may only upload shares, not {msg.get('op')!r}")
        u = client_id_of(peer)
        if msg.get("client") != u:
            raise ProtocolError(f"{peer!r} uploaded a share in the name of client {msg.get('client')!r}")
        st = self.server_state
        if st is None:
            raise ProtocolError(f"{self.name} has not begun a round")
        st.receive(ShareMessage(msg["round"], u, msg["server"], st.config.ring, msg["payload"], msg["prg"]))
        return {"ok": True}
