"""Hostile inputs for the wire decoder: hand-made messages with a valid checksum, mutations, and a size measure.

Used by ``tests/test_hardening_wire.py`` (hypothesis) and ``scripts/fuzz_wire.py`` (a million inputs). A message
made by :func:`craft` passes the magic and CRC-32 checks, so the decoder's header and payload logic sees it.

Example:
    >>> from refimpl.net.wire import decode
    >>> decode(craft({"$bytes": [0, 3]}, b"abc"))
    b'abc'
    >>> decode(craft([{"$bytes": [0, 3]}, {"$bytes": [1, 2]}], b"abc"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    refimpl.errors.WireFormatError: payload span [1, 3) overlaps or repeats another span; ...
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from typing import Any

import numpy as np

from refimpl.net.wire import MAGIC
from refimpl.sharing.additive import Shares
from refimpl.sharing.binary import BinaryShares

__all__ = ["TAGS", "craft", "deep_size", "mutate", "random_header"]

TAGS = ("$int", "$bytes", "$tuple", "$dict", "$float", "$array", "$shares", "$binary", "$pointer")


def craft(header: Any, payload: bytes = b"") -> bytes:
    """A message with ``header`` (a JSON-able value, or raw header bytes) and ``payload``, and a valid CRC-32."""
    h = header if isinstance(header, (bytes, bytearray)) else json.dumps(header, separators=(",", ":")).encode()
    body = MAGIC + struct.pack("<I", len(h)) + bytes(h) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def deep_size(obj: Any, _seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds (``sys.getsizeof``; arrays with their data, object arrays with
    their elements; shared objects counted once)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, (Shares, BinaryShares)):
        return sys.getsizeof(obj) + deep_size(obj.data, seen)
    if isinstance(obj, np.ndarray):
        size = sys.getsizeof(obj) + (obj.nbytes if obj.base is not None else 0)
        if obj.dtype == object:
            size += sum(deep_size(v, seen) for v in obj.ravel())
        return size
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(v, seen) for v in obj)
    return size


def random_header(rng: np.random.Generator, payload_len: int, depth: int = 0) -> Any:
    """A random header value biased towards the decoder's tags, with spans and sizes near the payload's."""
    def span() -> list[int]:
        choice = rng.integers(5)
        if choice == 0:
            return [int(rng.integers(0, payload_len + 2)), int(rng.integers(0, payload_len + 2))]
        if choice == 1:
            return [0, payload_len]
        if choice == 2:
            return [int(rng.integers(-2, 3)), int(rng.integers(-2, 2**40))]
        return [int(rng.integers(0, max(payload_len, 1))), int(rng.integers(0, 9))]

    def array() -> dict[str, Any]:
        dtypes = ["<u8", "<i8", "<f8", "|b1", "<u4", "<f4", "bigint", "<c16", "|O", 7, None]
        spec: dict[str, Any] = {"dtype": dtypes[int(rng.integers(len(dtypes)))],
                                "shape": [int(rng.integers(0, 6)) for _ in range(int(rng.integers(0, 4)))]}
        off, length = span()
        spec.update(offset=off, length=length)
        if spec["dtype"] == "bigint":
            spec["width"] = int(rng.integers(-1, 20))
        if rng.integers(8) == 0:
            del spec[list(spec)[int(rng.integers(len(spec)))]]
        return spec

    kind = int(rng.integers(14 if depth < 4 else 6))
    scalars: list[Any] = [None, True, 0, -1, 2**60, 1.5, "x", "", 1e308]
    if kind < 3:
        return scalars[int(rng.integers(len(scalars)))]
    moduli = ["2", "18446744073709551616", "4294967296", "0", "1", "-5", "x", 2**64, "9" * 200,
              "340282366920938463463374607431768211456"]
    tag = TAGS[int(rng.integers(len(TAGS)))]
    if tag == "$int":
        body: Any = [str(int(rng.integers(-2**62, 2**62))), "12ab", 5, "9" * 5000][int(rng.integers(4))]
    elif tag == "$bytes":
        body = span()
    elif tag == "$float":
        body = ["nan", "inf", "-inf", "1.0", 3][int(rng.integers(5))]
    elif tag == "$array":
        body = array()
    elif tag == "$shares":
        body = {"modulus": moduli[int(rng.integers(len(moduli)))], "data": array()}
    elif tag == "$binary":
        body = array()
    elif tag == "$pointer":
        body = {"location": "w", "id": int(rng.integers(3))}
    elif tag in ("$tuple", "$dict"):
        items = [random_header(rng, payload_len, depth + 1) for _ in range(int(rng.integers(0, 4)))]
        body = items if tag == "$tuple" else {f"k{i}": v for i, v in enumerate(items)}
    if kind >= 12:
        return [random_header(rng, payload_len, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    if kind == 11:
        return {tag: body, "extra": 1}
    return {tag: body}


def mutate(raw: bytes, rng: np.random.Generator, *, fix_crc: bool = True) -> bytes:
    """``raw`` with a few random byte flips, insertions, deletions or truncations (and the CRC-32 recomputed
    unless ``fix_crc`` is False, so most mutants reach the header parser)."""
    b = bytearray(raw[:-4])
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(4))
        if op == 0 and b:
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        elif op == 1:
            i = int(rng.integers(len(b) + 1))
            b[i:i] = bytes([int(rng.integers(256))])
        elif op == 2 and len(b) > 1:
            del b[int(rng.integers(len(b)))]
        elif op == 3 and b:
            del b[int(rng.integers(len(b))):]
    if not fix_crc:
        return bytes(b) + raw[-4:]
    return bytes(b) + struct.pack("<I", zlib.crc32(bytes(b)))
