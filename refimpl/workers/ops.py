"""The instruction set a :class:`~refimpl.workers.VirtualWorker` executes on its own objects (``exec`` commands).

Each operation is a plain function of the worker and its decoded arguments; ``{"ref": id}`` anywhere in the
arguments stands for the worker's own stored object ``id``. Only registered names can run (:func:`instructions`;
higher layers add theirs with :func:`register`): a message names an operation, it never carries code. Results are
stored under the message's ``out`` id; ids listed in ``drop`` (spent triples, opened pieces) are deleted afterwards;
ids listed in ``await`` are objects other parties push for the instruction (a worker in its own process waits for
them to arrive, up to its deadline: the coordinator sends an operation's instructions without waiting between them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl.encoding import FixedPoint
from refimpl.errors import PointerError
from refimpl.mpc.arithmetic import beaver_parts
from refimpl.mpc.truncation import truncation_parts
from refimpl.ring import Ring
from refimpl.sharing.api import share
from refimpl.workers.shared_ops import SHARED_OPS


@functools.lru_cache(maxsize=64)
def _ring(modulus: int) -> Ring:
    return Ring(int(modulus))


def _resolve(worker: Any, value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"ref"}:
            return worker._take(value["ref"])
        return {k: _resolve(worker, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(worker, v) for v in value]
    return value


def _elements(ring: Ring, value: Any) -> np.ndarray:
    return ring.element(value) if not isinstance(value, np.ndarray) or value.dtype != ring.dtype else value


# ---------------------------------------------------------------- plain arithmetic on stored values
def _plain(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    return lambda worker, x, y: fn(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------- share-level operations
def ring_binary(worker: Any, x: Any, y: Any, *, fn: str, modulus: int) -> np.ndarray:
    ring = _ring(modulus)
    return getattr(ring, fn)(_elements(ring, x), _elements(ring, y))


def ring_public(worker: Any, x: Any, value: Any, *, fn: str, party: int, modulus: int) -> np.ndarray:
    """``x + v``, ``x - v``, ``v - x`` (the public term only at party 0), ``x * v``, ``x @ v`` or ``v @ x``."""
    from refimpl.mpc.dealer import ring_matmul

    ring = _ring(modulus)
    x = _elements(ring, x)
    v = _elements(ring, value)
    if fn == "add":
        return ring.add(x, v) if party == 0 else x.copy()
    if fn == "sub":
        return ring.sub(x, v) if party == 0 else x.copy()
    if fn == "rsub":
        return ring.sub(v, x) if party == 0 else ring.neg(x)
    if fn == "mul":
        return ring.mul(x, v)
    if fn == "matmul":
        return ring_matmul(ring, x, v)
    if fn == "rmatmul":
        return ring_matmul(ring, v, x)
    if fn == "neg":
        return ring.neg(x)
    raise ValueError(f"unknown public operation {fn!r}")


def share_out(worker: Any, value: Any, *, names: list[str], ids: list[int], modulus: int,
              frac_bits: int | None = None, base: int = 2) -> list[int]:
    """Secret-share ``value`` (encoded first if ``frac_bits`` is given), push share ``i`` to ``names[i]``; return
    the shape."""
    ring = _ring(modulus)
    if frac_bits is not None:
        value = FixedPoint(frac_bits=frac_bits, base=base, ring=ring).encode(value)
    shares = share(value, len(names), ring=ring, key=worker._next_key("share"))
    with worker.ledger.round():
        for i, (name, obj_id) in enumerate(zip(names, ids)):
            worker.deliver(worker._peer(name), "share", {"op": "store", "ids": [obj_id], "objs": [shares.data[i]]})
    return list(shares.shape)


def deal(worker: Any, *, kind: str, shapes: list[list[int]], names: list[str], ids: list[list[int]], modulus: int,
         frac_bits: int | None = None, divisor: int | None = None) -> None:
    """Act as crypto provider: make one item of ``kind`` and push party ``i``'s parts to ``names[i]``."""
    dealer = worker._dealer(len(names), int(modulus))
    shapes_t = [tuple(s) for s in shapes]
    if kind == "mul":
        item = dealer.mul_triple(shapes_t[0], shapes_t[1] if len(shapes_t) > 1 else None)
    elif kind == "div":
        item = dealer.div_pair(shapes_t[0], int(divisor))  # type: ignore[arg-type]
    elif kind == "and":
        item = dealer.and_triple(shapes_t[0])
    elif kind == "dabit":
        item = dealer.dabits(shapes_t[0])
    elif kind == "zero":
        item = dealer.zero_sharing(shapes_t[0])
    elif kind == "matmul":
        item = dealer.matmul_triple(shapes_t[0], shapes_t[1])
    elif kind == "square":
        item = dealer.square_pair(shapes_t[0])
    elif kind == "trunc":
        item = dealer.trunc_pair(shapes_t[0], int(frac_bits))  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown kind of correlated randomness {kind!r}")
    parts = item.take()
    with worker.ledger.round():
        for i, name in enumerate(names):
            worker.deliver(worker._peer(name), "dealer",
                           {"op": "store", "ids": list(ids[i]), "objs": [p.data[i] for p in parts]})


def mask_push(worker: Any, xs: list[Any], masks: list[Any], *, sign: int, party: int, modulus: int,
              peers: list[str], ids: list[int], own: int, public: Any = None) -> None:
    """Compute this party's opening pieces ``x - m`` (``sign=-1``) or ``x + m`` (+ ``public`` at party 0), keep
    one copy under ``own`` and send one to every peer (the opening round)."""
    ring = _ring(modulus)
    pieces = []
    for x, m in zip(xs, masks):
        piece = ring.sub(x, m) if sign < 0 else ring.add(x, m)
        if public is not None and party == 0:
            piece = ring.add(piece, ring.reduce(public))
        pieces.append(np.asarray(piece, dtype=ring.dtype))  # 0-d results stay arrays on the wire
    worker._objects[own] = pieces
    with worker.ledger.round():
        for name, obj_id in zip(peers, ids):
            worker.deliver(worker._peer(name), "open", {"op": "store", "ids": [obj_id], "objs": [pieces]})


def _opened(ring: Ring, pieces: list[list[np.ndarray]]) -> list[np.ndarray]:
    return [ring.sum(np.stack([p[k] for p in pieces]), axis=0) for k in range(len(pieces[0]))]


def beaver_finish(worker: Any, pieces: list[Any], parts: list[Any], *, kind: str, party: int,
                  modulus: int) -> np.ndarray:
    """This party's share of ``x*y`` / ``x@y`` / ``x*x`` from the opened pieces and its triple parts."""
    ring = _ring(modulus)
    opened = _opened(ring, pieces)
    if kind == "square":
        (eps,), (a, a2) = opened, parts
        local, public = beaver_parts(ring, "mul", eps, eps, a, a, a2)
    else:
        (eps, delta), (a, b, c) = opened, parts
        local, public = beaver_parts(ring, kind, eps, delta, a, b, c)
    return ring.add(local, public) if party == 0 else local


def trunc_finish(worker: Any, pieces: list[Any], parts: list[Any], *, party: int, frac_bits: int,
                 modulus: int) -> np.ndarray:
    """This party's share of the truncated value (:func:`refimpl.mpc.truncate`) after the opening."""
    ring = _ring(modulus)
    (c,) = _opened(ring, pieces)
    _, r_hi, r_msb = parts
    local, public = truncation_parts(ring, frac_bits, c, r_hi, r_msb)
    return ring.add(local, public) if party == 0 else local


_OPS: dict[str, Callable[..., Any]] = {
    "add": _plain(np.add),
    "sub": _plain(np.subtract),
    "mul": _plain(np.multiply),
    "matmul": _plain(np.matmul),
    "truediv": _plain(np.true_divide),
    "ring_binary": ring_binary,
    "ring_public": ring_public,
    "share_out": share_out,
    "deal": deal,
    "mask_push": mask_push,
    "beaver_finish": beaver_finish,
    "trunc_finish": trunc_finish,
}


_OPS.update(SHARED_OPS)  # the shared-tensor algebra's instructions (refimpl.workers.shared_ops)


def register(name: str, fn: Callable[..., Any]) -> None:
    """Add an instruction ``fn(worker, *args, **kwargs)`` under ``name`` (code registers it; never a message).

    Higher layers (e.g. federated training's ``train_step``) extend the instruction set this way, at import time in
    the process that runs the worker. Re-registering a name with a different function raises ``ValueError``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"an instruction name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"instruction {name!r} must be callable, got {type(fn).__name__}")
    if _OPS.get(name, fn) is not fn:
        raise ValueError(f"instruction {name!r} is already registered to {_OPS[name]!r}")
    _OPS[name] = fn


def instructions() -> list[str]:
    """The names a worker runs, sorted."""
    return sorted(_OPS)


def run(worker: Any, msg: dict[str, Any]) -> Any:
    """Execute one ``exec`` command at ``worker``; without an ``out`` id, return the result (the reply)."""
    fn = _OPS.get(msg.get("fn"))  # type: ignore[arg-type]
    if fn is None:
        raise ValueError(f"unknown operation {msg.get('fn')!r}; a worker runs only {sorted(_OPS)}")
    if msg.get("await"):  # objects its peers push for it (pieces, dealer parts): a networked worker waits for them
        worker.wait_for([int(i) for i in msg["await"]])
    args = _resolve(worker, msg.get("args", []))
    kwargs = _resolve(worker, msg.get("kw", {}))
    result = fn(worker, *args, **kwargs)
    if msg.get("out") is not None:
        if result is None:
            raise PointerError(f"operation {msg['fn']!r} returns nothing to store")
        worker._objects[msg["out"]] = result
        result = None
    for obj_id in msg.get("drop", []):
        worker._objects.pop(obj_id, None)
    return result
