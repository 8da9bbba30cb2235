"""Instructions behind :class:`~refimpl.workers.SharedTensor`'s algebra: local shape operations, division and the
party-local comparison programs (each worker runs its own share; openings travel between workers).

Registered in :mod:`refimpl.workers.ops` (``SHARED_OPS``); every function runs at one worker on its own objects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl.errors import ProtocolError
from refimpl.mpc.comparison import and_finish, and_pieces, msb_program
from refimpl.mpc.shape_ops import local_op
from refimpl.mpc.truncation import division_offset, division_parts
from refimpl.ring import Ring

__all__ = ["PROGRAMS", "SHARED_OPS"]


@functools.lru_cache(maxsize=64)
def _ring(modulus: int) -> Ring:
    return Ring(int(modulus))


def _elements(ring: Ring, value: Any) -> np.ndarray:
    return ring.element(value) if not isinstance(value, np.ndarray) or value.dtype != ring.dtype else value


def ring_local(worker: Any, x: Any, *, op: str, params: dict[str, Any], modulus: int) -> np.ndarray:
    """A local shape operation (:func:`refimpl.mpc.algebra.local_op`) on this worker's share."""
    ring = _ring(modulus)
    return local_op(ring, _elements(ring, np.asarray(x)), op, params, 0)


def ring_concat(worker: Any, xs: list[Any], *, axis: int, stack: bool, modulus: int) -> np.ndarray:
    """Concatenate (or stack) this worker's shares of several tensors."""
    ring = _ring(modulus)
    arrs = [_elements(ring, np.asarray(x)) for x in xs]
    return np.stack(arrs, axis=axis) if stack else np.concatenate(arrs, axis=axis)


def div_push(worker: Any, x: Any, r: Any, *, divisor: int, party: int, modulus: int, peers: list[str],
             ids: list[int], own: int) -> None:
    """This party's opening piece ``x + r`` (+ the offset ``B`` at party 0) of a division; sent to every peer."""
    ring = _ring(modulus)
    piece = ring.add(_elements(ring, x), r)
    if party == 0:
        piece = ring.add(piece, ring.reduce(division_offset(ring, divisor)))
    piece = np.asarray(piece, dtype=ring.dtype)  # 0-d results stay arrays on the wire
    worker._objects[own] = [piece]
    with worker.ledger.round():
        for name, obj_id in zip(peers, ids):
            worker.deliver(worker._peer(name), "open", {"op": "store", "ids": [obj_id], "objs": [[piece]]})


def div_finish(worker: Any, pieces: list[Any], parts: list[Any], *, party: int, divisor: int,
               modulus: int) -> np.ndarray:
    """This party's share of ``x / divisor`` (:func:`refimpl.mpc.divide`) after the opening."""
    ring = _ring(modulus)
    c = ring.sum(np.stack([p[0] for p in pieces]), axis=0)
    _, r_hi, r_msb = parts
    local, public = division_parts(ring, divisor, c, r_hi, r_msb)
    return ring.add(local, public) if party == 0 else local


# ---------------------------------------------------------------- party-local programs (comparisons)
def _msb_arith(words: np.ndarray, rows: list[int], n: int, bits: int) -> Any:
    sign = yield from msb_program(words, rows, n, bits)
    return (yield ("b2a", sign.astype(np.uint64)))


#: The programs a worker runs (by name, never code from a message).
PROGRAMS: dict[str, Callable[..., Any]] = {"msb": _msb_arith}


def _request_size(kind: str, request: Any) -> int:
    if kind == "and":
        return int(sum(a.size for a, _ in request))
    return int(request.size)


def prog_start(worker: Any, x: Any, *, program: str, party: int, n: int, modulus: int, state: int) -> list[Any]:
    """Start a party-local program on this worker's share; reply with its first request ``[kind, size]``."""
    if program not in PROGRAMS:
        raise ValueError(f"unknown program {program!r}; workers run only {sorted(PROGRAMS)}")
    ring = _ring(modulus)
    share = _elements(ring, np.asarray(x))
    gen = PROGRAMS[program](share.reshape(1, -1).astype(np.uint64), [party], n, ring.bits)
    kind, request = next(gen)
    worker._objects[state] = {"gen": gen, "kind": kind, "request": request, "shape": share.shape, "parts": None}
    return [kind, _request_size(kind, request)]


def prog_push(worker: Any, parts: list[Any], *, state: int, peers: list[str], ids: list[int], own: int) -> None:
    """Mask the pending request with this party's dealer parts and send the pieces to every peer (one round)."""
    st = worker._objects[state]
    st["parts"] = [np.asarray(p).reshape(1, -1) for p in parts]
    if st["kind"] == "and":
        xs = np.concatenate([a.reshape(1, -1) for a, _ in st["request"]], axis=1)
        ys = np.concatenate([b.reshape(1, -1) for _, b in st["request"]], axis=1)
        a, b, _ = st["parts"]
        pieces = list(and_pieces(xs, ys, a, b))
    else:
        r_bin, _ = st["parts"]
        pieces = [(st["request"] & np.uint64(1)) ^ r_bin]
    worker._objects[own] = pieces
    with worker.ledger.round():
        for name, obj_id in zip(peers, ids):
            worker.deliver(worker._peer(name), "open", {"op": "store", "ids": [obj_id], "objs": [pieces]})


def prog_step(worker: Any, pieces: list[Any], *, state: int, party: int, modulus: int) -> list[Any]:
    """Finish the pending request from every party's pieces, resume the program; reply with the next request, or
    ``["done", 0]`` after storing the program's result (this party's share) under ``state``."""
    st = worker._objects[state]
    if st["parts"] is None:
        raise ProtocolError("prog_step before prog_push")
    opened = [np.bitwise_xor.reduce(np.stack([np.asarray(p[k]) for p in pieces]), axis=0)
              for k in range(len(pieces[0]))]
    if st["kind"] == "and":
        a, b, c = st["parts"]
        z = and_finish(opened[0], opened[1], a, b, c, party)
        reply: Any = []
        start = 0
        for x, _ in st["request"]:
            size = x.shape[1]
            reply.append(np.ascontiguousarray(z[:, start : start + size]).reshape(x.shape))
            start += size
    else:
        ring = _ring(modulus)
        _, r_arith = st["parts"]
        c = opened[0].astype(np.int64)
        reply = ring.add(ring.mul(_elements(ring, r_arith), ring.reduce(1 - 2 * c)),
                         ring.reduce(c) if party == 0 else ring.zeros(c.shape))
    try:
        kind, request = st["gen"].send(reply)
    except StopIteration as stop:
        ring = _ring(modulus)
        worker._objects[state] = np.asarray(stop.value, dtype=ring.dtype).reshape(st["shape"])
        return ["done", 0]
    st.update(kind=kind, request=request, parts=None)
    return [kind, _request_size(kind, request)]


SHARED_OPS: dict[str, Callable[..., Any]] = {
    "ring_local": ring_local,
    "ring_concat": ring_concat,
    "div_push": div_push,
    "div_finish": div_finish,
    "prog_start": prog_start,
    "prog_push": prog_push,
    "prog_step": prog_step,
}
