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
truncated message raises :class:`~refimpl.errors.WireFormatError` saying what is wrong -- and only that: hostile
bytes never raise anything else (a hypothesis fuzz test and ``scripts/fuzz_wire.py`` check it).

**Bounded decoding.** Every non-empty ``$bytes`` / ``$array`` span must lie inside the payload and be disjoint
from every other (the encoder never shares or overlaps spans), so each payload byte is copied at most once.
Decoding a writable buffer (a ``bytearray``, as the transport receives) returns an array that fills at least half
of the payload and is aligned as a view of that buffer instead of a copy (the caller hands the buffer over: do not
reuse it); every other array is a copy. :func:`encode_parts` is :func:`encode` without copying the arrays.
A message of ``n`` bytes decodes to objects of at most :data:`MAX_EXPANSION` ``* n +`` :data:`EXPANSION_SLACK`
bytes (their ``sys.getsizeof`` sizes, arrays' data included); the decoder charges every object it builds against
that budget *before* building it and refuses the message once it is exceeded (e.g. a long list of one-byte big
integers, each a 30-byte Python int). ``$shares`` data must be integers (floats and bools are refused, never cast).

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
import sys
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl.errors import WireFormatError
from refimpl.ring import Ring
from refimpl.sharing.additive import Shares
from refimpl.sharing.binary import BinaryShares

try:  # ISA-L's CRC-32 (the ``net`` extra): the same checksum, ~5x faster than zlib's (7.5 vs 38 ms per 256 MiB)
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - without isal: zlib's
    from zlib import crc32

__all__ = ["EXPANSION_SLACK", "MAGIC", "MAX_EXPANSION", "decode", "encode", "encode_parts"]

MAGIC = b"RFW1"
_ALLOWED = {np.dtype(t).str: np.dtype(t) for t in (
    "<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f4", "<f8", "|b1", "|i1", "|u1")}
_MAX_DEPTH = 64
_SAFE_INT = 2**53
MAX_EXPANSION = 16
"""A message of n bytes decodes to at most ``MAX_EXPANSION * n + EXPANSION_SLACK`` bytes of Python objects."""
EXPANSION_SLACK = 64 * 1024
_MAX_MODULUS_DIGITS = 160  # a ring modulus up to ~2^530: far beyond any ring refimpl uses
_LIST, _TUPLE, _DICT = sys.getsizeof([]), sys.getsizeof(()), sys.getsizeof({})


class _Encoder:
    def __init__(self, pointer_ref: Callable[[Any], tuple[str, int] | None] | None) -> None:
        self.chunks: list[bytes | memoryview] = []
        self.size = 0
        self.pointer_ref = pointer_ref

    def _blob(self, data: bytes | memoryview) -> list[int]:
        off = self.size
        if len(data):
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
        flat = np.ascontiguousarray(arr, dtype=dt).reshape(-1)  # a view of the array's own memory when it can be
        off, length = self._blob(memoryview(flat.view(np.uint8)) if flat.size else b"")  # type: ignore[arg-type]
        return {"dtype": dt.str, "shape": list(arr.shape), "offset": off, "length": length}

    def value(self, v: Any) -> Any:
        t = type(v)  # the exact built-in types first: a message is mostly dicts, lists, str and int
        if t is str:
            return v
        if t is int:
            return v if -_SAFE_INT < v < _SAFE_INT else {"$int": str(v)}
        if t is dict:
            if not all(isinstance(k, str) for k in v):
                raise TypeError("only dicts with string keys can be sent")
            return {"$dict": {k: self.value(x) for k, x in v.items()}}
        if t is list:
            return [self.value(x) for x in v]
        if t is np.ndarray:
            return {"$array": self._array(v)}
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
            view = v if isinstance(v, bytes) else memoryview(v)
            return {"$bytes": self._blob(view.cast("B") if isinstance(view, memoryview) and view.c_contiguous
                                         else bytes(view))}
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
    return b"".join(encode_parts(obj, pointer_ref=pointer_ref))  # the one copy of each array's bytes


def encode_parts(obj: Any, *, pointer_ref: Callable[[Any], tuple[str, int] | None] | None = None
                 ) -> list[bytes | memoryview]:
    """The bytes of :func:`encode` as a list of buffers whose concatenation they are, without copying arrays.

    The buffers are the header, then the arrays' and byte strings' own memory (viewed, not copied; an array that
    is not C-contiguous little-endian is copied once), then the CRC-32: a transport writes them chunk by chunk
    (:func:`refimpl.net.framing.frames` takes such a list). They alias the objects sent: do not modify those
    until the message is written.

    Example:
        >>> import numpy as np
        >>> msg = {"x": np.arange(4, dtype=np.int32)}
        >>> parts = encode_parts(msg)
        >>> b"".join(parts) == encode(msg), len(parts)
        (True, 3)
    """
    enc = _Encoder(pointer_ref)
    header = _JSON_ENCODER.encode(enc.value(obj)).encode("utf-8")
    head = MAGIC + struct.pack("<I", len(header)) + header
    crc = crc32(head)
    for part in enc.chunks:
        crc = crc32(part, crc)
    return [head, *enc.chunks, struct.pack("<I", crc)]


class _Decoder:
    def __init__(self, payload: memoryview, pointer: Callable[[str, int], Any] | None, budget: int) -> None:
        self.payload = payload
        self.writable = not payload.readonly  # a received buffer (bytearray): big arrays may be views of it
        self.pointer = pointer
        self.budget = budget
        self.used = 0
        self._starts: list[int] = []  # the claimed non-empty spans, sorted and disjoint
        self._ends: list[int] = []

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` of decoded objects against the budget; refuse the message beyond it."""
        self.used += nbytes
        if self.used > self.budget:
            raise WireFormatError(f"message decodes to more than {self.budget} bytes ({what}): more than "
                                  f"{MAX_EXPANSION}x its size; refused")

    def _span(self, spec: Any) -> tuple[int, int]:
        if (not isinstance(spec, list) or len(spec) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in spec)):
            raise WireFormatError(f"bad payload span {str(spec)[:80]!r}")
        off, length = spec
        if off + length > len(self.payload):
            raise WireFormatError(f"payload span [{off}, {off + length}) runs past the payload ({len(self.payload)} "
                                  "bytes): truncated message")
        if length:
            i = bisect_left(self._starts, off)
            if (i < len(self._starts) and self._starts[i] < off + length) or (i > 0 and self._ends[i - 1] > off):
                raise WireFormatError(f"payload span [{off}, {off + length}) overlaps or repeats another span; "
                                      "every span must be disjoint")
            self._starts.insert(i, off)
            self._ends.insert(i, off + length)
        return off, length

    def _array(self, spec: Any) -> np.ndarray:
        if not isinstance(spec, dict) or not {"dtype", "shape", "offset", "length"} <= set(spec):
            raise WireFormatError(f"bad array header {spec!r}")
        shape = spec["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise WireFormatError(f"bad array shape {shape!r}")
        if len(shape) > 32:
            raise WireFormatError(f"array of {len(shape)} dimensions (at most 32)")
        count = math.prod(shape)
        off, length = self._span([spec["offset"], spec["length"]])
        raw = self.payload[off : off + length]
        if spec["dtype"] == "bigint":
            width = spec.get("width")
            if not isinstance(width, int) or isinstance(width, bool) or width < 1 or count * width != length:
                raise WireFormatError(f"big-integer array of shape {shape} and width {width!r} does not fill "
                                      f"{length} bytes")
            self.charge(112 + count * (8 + 32 + width), f"{count} big integers")
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
        self.charge(112 + 8 * len(shape) + length, f"an array of {length} bytes")
        arr = np.frombuffer(raw, dtype=dt, count=count).reshape(shape)
        if (self.writable and 2 * length >= len(self.payload) and arr.flags.aligned
                and dt.newbyteorder("=") == dt):  # the message's dominant array: a view, not a copy
            return arr
        return arr.astype(dt.newbyteorder("="), copy=True)

    def value(self, v: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise WireFormatError(f"message nests deeper than {_MAX_DEPTH} levels")
        t = type(v)
        if t is str or t is int or t is float:  # (what the JSON parser makes; bool is not int here)
            self.used += sys.getsizeof(v)
            if self.used > self.budget:
                self.charge(0, "a scalar")
            return v
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, (str, int, float)):
            self.charge(sys.getsizeof(v), "a scalar")
            return v
        if isinstance(v, list):
            self.charge(_LIST + 8 * len(v), f"a list of {len(v)}")
            return [self.value(x, depth + 1) for x in v]
        if not isinstance(v, dict) or len(v) != 1:
            raise WireFormatError(f"unexpected header value {str(v)[:80]!r}")
        (tag, body), = v.items()
        try:
            if tag == "$dict":
                if not isinstance(body, dict):
                    _bad(tag, body)
                self.charge(_DICT + 100 * len(body), f"a dict of {len(body)}")
                return {k: self.value(x, depth + 1) for k, x in body.items()}
            if tag == "$int":
                if not (isinstance(body, str) and len(body) < 4_000):
                    _bad(tag, body)
                self.charge(32 + len(body) // 2, "a big integer")
                return int(body)
            if tag == "$float":
                return float(body) if body in ("nan", "inf", "-inf") else _bad(tag, body)
            if tag == "$bytes":
                off, length = self._span(body)
                self.charge(33 + length, f"{length} bytes")
                return bytes(self.payload[off : off + length])
            if tag == "$tuple":
                if not isinstance(body, list):
                    _bad(tag, body)
                self.charge(_TUPLE + 8 * len(body), f"a tuple of {len(body)}")
                return tuple(self.value(x, depth + 1) for x in body)
            if tag == "$array":
                return self._array(body)
            if tag == "$shares":
                modulus = body["modulus"]
                if not (isinstance(modulus, str) and modulus.isdigit() and len(modulus) <= _MAX_MODULUS_DIGITS):
                    _bad(tag, body)
                ring = Ring(int(modulus))
                data = self._array(body["data"])
                if data.dtype.kind not in "iu" and not (data.dtype == object and body["data"]["dtype"] == "bigint"):
                    raise WireFormatError(f"share data must be integers, got dtype {data.dtype}")
                if data.size and (data.min() < 0 or data.max() >= ring.modulus):
                    raise WireFormatError(f"share values must lie in [0, {ring.modulus}) for {ring!r}")
                if data.dtype != ring.dtype:
                    self.charge(data.size * np.dtype(ring.dtype).itemsize + (36 * data.size if ring.dtype == object
                                                                             else 0), "share data")
                    data = data.astype(ring.dtype)
                return Shares(ring, data)
            if tag == "$binary":
                return BinaryShares(self._array(body))
            if tag == "$pointer" and self.pointer is not None:
                loc, pid = body["location"], body["id"]
                if not isinstance(loc, str) or not isinstance(pid, int):
                    _bad(tag, body)
                return self.pointer(loc, pid)
        except WireFormatError:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError, IndexError, AttributeError) as e:
            raise WireFormatError(f"bad {tag} value: {str(e)[:200]}") from None
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
    computed = crc32(view[:-4])
    if stored != computed:
        raise WireFormatError(f"corrupt message: CRC-32 mismatch (stored {stored:#010x}, computed {computed:#010x})")
    (hlen,) = struct.unpack("<I", view[4:8])
    if 8 + hlen > len(view) - 4:
        raise WireFormatError(f"header length {hlen} runs past the end of a {len(view)}-byte message")
    try:
        header = _JSON_DECODER.decode(bytes(view[8 : 8 + hlen]).decode("utf-8"))
    except (ValueError, RecursionError) as e:  # includes JSONDecodeError, bad UTF-8, over-long integer literals
        raise WireFormatError(f"message header is not valid JSON: {str(e)[:200]}") from None
    budget = MAX_EXPANSION * len(view) + EXPANSION_SLACK
    return _Decoder(view[8 + hlen : -4], pointer, budget).value(header)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (the encoder writes non-finite floats as $float)")


_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # made once: a message header each
_JSON_DECODER = json.JSONDecoder(parse_constant=_no_constant)
