"""A small, safe wire format for messages between workers: JSON header + raw array bytes + CRC-32.

No pickle, no code paths that execute received data. Layout (all integers little-endian)::

    b"RFW1" | header length (u32) | header (UTF-8 JSON) | payload | CRC-32 of all preceding bytes (u32)

The header is one JSON value in which non-JSON values are tagged objects with a single ``$``-key:

===========  =====================================================================================
``$int``     an integer beyond 2**53, as a decimal string (JSON numbers lose precision there)
``$bytes``   ``[offset, length]`` into the payload
``$tuple``   a list, decoded as a tuple
``$dict``    a dict with string keys (plain JSON objects are reserved for tags)
``$float``   ``"nan"``, ``"inf"`` or ``"-inf"``
``$array``   ``{"dtype", "shape", "offset", "length"}``: a NumPy array of an allowed dtype (bool, int8..64,
             uint8..64, float32/64; little-endian), or ``dtype "bigint"`` with ``"width"``: integers as
             ``width``-byte little-endian two's complement, decoded to an object array of Python ints
``$shares``  ``{"modulus", "data"}``: a :class:`~refimpl.sharing.Shares`
``$binary``  an array: a :class:`~refimpl.sharing.binary.BinaryShares`
``$pointer`` ``{"location", "id"}``: a pointer to an object at another worker (decoded by a callback)
===========  =====================================================================================

Anything else in the header, a length that does not add up, a dtype outside the list, a bad checksum or a
truncated message raises :class:`~refimpl.errors.WireFormatError` saying what is wrong.

Example:
    >>> import numpy as np
    >>> raw = encode({"op": "store", "obj": np.arange(3, dtype=np.uint64), "big": 2**70})
    >>> decode(raw)
    {'op': 'store', 'obj': array([0, 1, 2], dtype=uint64), 'big': 1180591620717411303424}
    >>> decode(raw[:-1] + bytes([raw[-1] ^ 1]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    refimpl.errors.WireFormatError: corrupt message: CRC-32 mismatch (stored 0x..., computed 0x...)
"""

from __future__ import annotations

import json
import math
import numbers
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl.errors import WireFormatError
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares
from refimpl.sharing.binary import BinaryShares

__all__ = ["MAGIC", "decode", "encode"]

MAGIC = b"RFW1"
_ALLOWED = {np.dtype(t).str: np.dtype(t) for t in (
    "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f4", "<f8", "|b1", "|i1", "|u1")}
_MAX_DEPTH = 64
_SAFE_INT = 2**53


class _Encoder:
    def __init__(self, pointer_ref: Callable[[Any], tuple[str, int] | None] | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.pointer_ref = pointer_ref

    def _blob(self, data: bytes) -> list[int]:
        off = self.size
        self.chunks.append(data)
        self.size += len(data)
        return [off, len(data)]

    def _array(self, arr: np.ndarray) -> dict[str, Any]:
        if arr.dtype == object:
            ints = [int(v) for v in arr.ravel()]  # raises for non-integers
            width = max((max(v.bit_length() for v in ints) + 8) // 8, 1) if ints else 1
            data = b"".join(v.to_bytes(width, "little", signed=True) for v in ints)
            off, length = self._blob(data)
            return {"dtype": "bigint", "width": width, "shape": list(arr.shape), "offset": off, "length": length}
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt.str not in _ALLOWED:
            raise TypeError(f"cannot send arrays of dtype {arr.dtype}")
        off, length = self._blob(np.ascontiguousarray(arr, dtype=dt).tobytes())
        return {"dtype": dt.str, "shape": list(arr.shape), "offset": off, "length": length}

    def value(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, numbers.Integral) and not isinstance(v, np.ndarray):
            v = int(v)
            return v if -_SAFE_INT < v < _SAFE_INT else {"$int": str(v)}
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, (bytes, bytearray, memoryview)):
            return {"$bytes": self._blob(bytes(v))}
        if isinstance(v, np.ndarray):
            return {"$array": self._array(v)}
        if isinstance(v, Shares):
            return {"$shares": {"modulus": str(v.ring.modulus), "data": self._array(v.data)}}
        if isinstance(v, BinaryShares):
            return {"$binary": self._array(v.data)}
        if isinstance(v, tuple):
            return {"$tuple": [self.value(x) for x in v]}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError("only dicts with string keys can be sent")
            return {"$dict": {k: self.value(x) for k, x in v.items()}}
        if self.pointer_ref is not None:
            ref = self.pointer_ref(v)
            if ref is not None:
                return {"$pointer": {"location": ref[0], "id": ref[1]}}
        raise TypeError(f"cannot send an object of type {type(v).__name__} between workers")


def encode(obj: Any, *, pointer_ref: Callable[[Any], tuple[str, int] | None] | None = None) -> bytes:
    """Serialise ``obj`` (None, bool, int, float, str, bytes, list, tuple, str-keyed dict, arrays, sharings).

    Args:
        obj: the message.
        pointer_ref: maps an object the format does not know (a pointer) to ``(location, id)``, or None.

    Raises:
        TypeError: ``obj`` holds a value that cannot be sent.
    """
    enc = _Encoder(pointer_ref)
    header = json.dumps(enc.value(obj), separators=(",", ":"), allow_nan=False).encode("utf-8")
    body = MAGIC + struct.pack("<I", len(header)) + header + b"".join(enc.chunks)
    return body + struct.pack("<I", zlib.crc32(body))


class _Decoder:
    def __init__(self, payload: memoryview, pointer: Callable[[str, int], Any] | None) -> None:
        self.payload = payload
        self.pointer = pointer

    def _span(self, spec: Any) -> tuple[int, int]:
        if (not isinstance(spec, list) or len(spec) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in spec)):
            raise WireFormatError(f"bad payload span {spec!r}")
        off, length = spec
        if off + length > len(self.payload):
            raise WireFormatError(f"payload span [{off}, {off + length}) runs past the payload ({len(self.payload)} "
                                  "bytes): truncated message")
        return off, length

    def _array(self, spec: Any) -> np.ndarray:
        if not isinstance(spec, dict) or not {"dtype", "shape", "offset", "length"} <= set(spec):
            raise WireFormatError(f"bad array header {spec!r}")
        shape = spec["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise WireFormatError(f"bad array shape {shape!r}")
        count = math.prod(shape)
        off, length = self._span([spec["offset"], spec["length"]])
        raw = self.payload[off : off + length]
        if spec["dtype"] == "bigint":
            width = spec.get("width")
            if not isinstance(width, int) or isinstance(width, bool) or width < 1 or count * width != length:
                raise WireFormatError(f"big-integer array of shape {shape} and width {width!r} does not fill "
                                      f"{length} bytes")
            b = bytes(raw)
            vals = [int.from_bytes(b[i * width : (i + 1) * width], "little", signed=True) for i in range(count)]
            out = np.empty(count, dtype=object)
            out[:] = vals
            return out.reshape(shape)
        dt = _ALLOWED.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
        if dt is None:
            raise WireFormatError(f"array dtype {spec['dtype']!r} is not allowed")
        if count * dt.itemsize != length:
            raise WireFormatError(f"array of shape {shape} and dtype {dt} needs {count * dt.itemsize} bytes, the "
                                  f"message has {length}")
        return np.frombuffer(raw, dtype=dt, count=count).reshape(shape).astype(dt.newbyteorder("="), copy=True)

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise WireFormatError(f"message nests deeper than {_MAX_DEPTH} levels")
        if v is None or isinstance(v, (bool, str, int, float)):
            return v
        if isinstance(v, list):
            return [self.value(x, depth + 1) for x in v]
        if not isinstance(v, dict) or len(v) != 1:
            raise WireFormatError(f"unexpected header value {str(v)[:80]!r}")
        (tag, body), = v.items()
        try:
            if tag == "$int":
                return int(body) if isinstance(body, str) and len(body) < 10_000 else _bad(tag, body)
            if tag == "$float":
                return float(body) if body in ("nan", "inf", "-inf") else _bad(tag, body)
            if tag == "$bytes":
                off, length = self._span(body)
                return bytes(self.payload[off : off + length])
            if tag == "$tuple":
                return tuple(self.value(x, depth + 1) for x in body) if isinstance(body, list) else _bad(tag, body)
            if tag == "$dict":
                if not isinstance(body, dict):
                    _bad(tag, body)
                return {k: self.value(x, depth + 1) for k, x in body.items()}
            if tag == "$array":
                return self._array(body)
            if tag == "$shares":
                ring = Ring(int(body["modulus"]))
                data = self._array(body["data"])
                if data.size and (data.min() < 0 or data.max() >= ring.modulus):
                    raise WireFormatError(f"share values must lie in [0, {ring.modulus}) for {ring!r}")
                return Shares(ring, data.astype(ring.dtype) if data.dtype != ring.dtype else data)
            if tag == "$binary":
                return BinaryShares(self._array(body))
            if tag == "$pointer" and self.pointer is not None:
                loc, pid = body["location"], body["id"]
                if not isinstance(loc, str) or not isinstance(pid, int):
                    _bad(tag, body)
                return self.pointer(loc, pid)
        except WireFormatError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise WireFormatError(f"bad {tag} value: {e}") from None
        raise WireFormatError(f"unknown tag {tag!r} in message header")


def _bad(tag: str, body: Any) -> Any:
    raise WireFormatError(f"bad {tag} value {str(body)[:80]!r}")


def decode(raw: bytes, *, pointer: Callable[[str, int], Any] | None = None) -> Any:
    """Decode bytes made by :func:`encode`, checking every length, tag and the CRC-32.

    Args:
        raw: the received bytes.
        pointer: builds an object from a ``$pointer`` reference ``(location, id)``; None refuses pointers.

    Raises:
        WireFormatError: the bytes are truncated, corrupted or not a refimpl message.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode takes bytes, got {type(raw).__name__}")
    view = memoryview(raw).cast("B")
    if len(view) < 12 or bytes(view[:4]) != MAGIC:
        raise WireFormatError(f"not a refimpl message: expected magic {MAGIC!r} and at least 12 bytes, got "
                              f"{bytes(view[:4])!r} in {len(view)} bytes")
    stored = struct.unpack("<I", view[-4:])[0]
    computed = zlib.crc32(view[:-4])
    if stored != computed:
        raise WireFormatError(f"corrupt message: CRC-32 mismatch (stored {stored:#010x}, computed {computed:#010x})")
    (hlen,) = struct.unpack("<I", view[4:8])
    if 8 + hlen > len(view) - 4:
        raise WireFormatError(f"header length {hlen} runs past the end of a {len(view)}-byte message")
    try:
        header = json.loads(bytes(view[8 : 8 + hlen]).decode("utf-8"))
    except (ValueError, RecursionError) as e:  # includes JSONDecodeError, bad UTF-8, over-long integer literals
        raise WireFormatError(f"message header is not valid JSON: {e}") from None
    return _Decoder(view[8 + hlen : -4], pointer).value(header)
