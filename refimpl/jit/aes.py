"""AES-128 in counter mode on the CPU's AES instructions, compiled by Numba (imported only where it can run).

The block cipher is the CPU's (AESENC / AESENCLAST: constant time, no tables); this module only schedules it: the
key expansion by AESKEYGENASSIST (FIPS-197's schedule, also table-free), and counter mode -- the 128-bit big-endian
counter block ``c, c + 1, ...`` encrypted and read as bytes, exactly as OpenSSL's CTR mode and
:class:`refimpl.prg.Stream` produce it. One call of the block function makes :data:`GROUP_BYTES` of keystream (16
blocks: four 512-bit, eight 256-bit or sixteen 128-bit vectors, their rounds interleaved so the AES units stay
busy); :func:`refimpl.jit.aes_width` picks the vector width.

A stream read from offset 0 with the default nonce (every share, mask and stream-key expansion in refimpl) has
counter block ``i`` at byte ``16 i``; :func:`fill` writes any range of its words. On this project's CPU (AMD EPYC,
VAES and AVX-512) it runs at ~27 GB/s into the L1 cache, as fast as OpenSSL's GCM engine (which also computes
GHASH) and twice its CTR engine; what it saves is the second pass: the kernels in :mod:`refimpl.jit.kernels` use
each keystream word while it is in a register or the L1 cache.

Example:
    >>> import numpy as np
    >>> from refimpl.prg import Stream
    >>> rk = expand_keys([bytes(range(16))])[0]
    >>> out = np.empty(5, np.uint64)
    >>> fill(rk, out, 3)                       # words 3..7 of the stream
    >>> bool((out == Stream(bytes(range(16))).read(64).view(np.uint64)[3:8]).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from refimpl.errors import ShapeMismatchError
from refimpl.jit import aes_width

__all__ = ["BATCH_BYTES", "GROUP_BYTES", "ROUND_KEY_BYTES", "block_group", "expand_keys", "fill", "fill_batch",
           "fill_into"]

GROUP_BYTES = 256
"""Keystream bytes per call of the block function (16 AES blocks)."""

BATCH_BYTES = 4096
"""Keystream bytes the kernels make at a time (16 groups): a batch and the data it is used on stay in the L1 cache."""

ROUND_KEY_BYTES = 176
"""The 11 round keys of AES-128."""

_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V2 = ir.VectorType(_I64, 2)
_V4X32 = ir.VectorType(_I32, 4)
_RCON = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36)


def _pointer(context: Any, builder: Any, ty: Any, value: Any, index: Any) -> Any:
    array = context.make_array(ty)(context, builder, value)
    return cgutils.get_item_pointer(context, builder, ty, array, [index], wraparound=False, boundscheck=False)


@intrinsic
def _expand(typingctx: Any, key: Any, rk: Any) -> Any:  # pragma: no cover (compiled)
    """``rk[:176]`` (uint8) = the round keys of the AES-128 key ``key[:16]`` (uint8)."""
    sig = types.void(key, rk)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        zero = context.get_constant(types.intp, 0)
        src = builder.bitcast(_pointer(context, builder, signature.args[0], args[0], zero), _V2.as_pointer())
        dst = builder.bitcast(_pointer(context, builder, signature.args[1], args[1], zero), _V2.as_pointer())
        assist = builder.module.declare_intrinsic("llvm.x86.aesni.aeskeygenassist",
                                                  fnty=ir.FunctionType(_V2, [_V2, _I8]))
        up = ir.Constant(_V4X32, None)
        k = builder.load(src, align=1)
        builder.store(k, builder.gep(dst, [ir.Constant(_I32, 0)]), align=1)
        for i, rcon in enumerate(_RCON, start=1):
            t = builder.bitcast(builder.call(assist, [k, ir.Constant(_I8, rcon)]), _V4X32)
            t = builder.shuffle_vector(t, t, ir.Constant(_V4X32, [3, 3, 3, 3]))  # SubWord(RotWord(w3)) ^ rcon
            w = builder.bitcast(k, _V4X32)
            for _ in range(3):  # prefix xor of the four words: w_j ^= w_(j-1), three times
                w = builder.xor(w, builder.shuffle_vector(up, w, ir.Constant(_V4X32, [0, 4, 5, 6])))
            k = builder.bitcast(builder.xor(w, t), _V2)
            builder.store(k, builder.gep(dst, [ir.Constant(_I32, i)]), align=1)
        return context.get_dummy_value()

    return sig, codegen


def _block_group_intrinsic(bits: int) -> Any:
    lanes = bits // 64  # 64-bit lanes per vector
    per = bits // 128  # AES blocks per vector
    vector = ir.VectorType(_I64, lanes)
    suffix = "" if bits == 128 else f".{bits}"

    @intrinsic
    def block_group(typingctx: Any, rk: Any, out: Any, pos: Any, hi: Any, lo: Any) -> Any:  # pragma: no cover
        sig = types.void(rk, out, pos, hi, lo)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            zero = context.get_constant(types.intp, 0)
            keys_at = builder.bitcast(_pointer(context, builder, signature.args[0], args[0], zero), _V2.as_pointer())
            out_at = builder.bitcast(_pointer(context, builder, signature.args[1], args[1], args[2]),
                                     vector.as_pointer())
            hi_, lo_ = args[3], args[4]
            bswap = builder.module.declare_intrinsic("llvm.bswap", [_I64])
            enc = builder.module.declare_intrinsic(f"llvm.x86.aesni.aesenc{suffix}",
                                                   fnty=ir.FunctionType(vector, [vector, vector]))
            last = builder.module.declare_intrinsic(f"llvm.x86.aesni.aesenclast{suffix}",
                                                    fnty=ir.FunctionType(vector, [vector, vector]))
            spread = ir.Constant(ir.VectorType(_I32, lanes), [j % 2 for j in range(lanes)])
            keys = []
            for r in range(11):
                k2 = builder.load(builder.gep(keys_at, [ir.Constant(_I32, r)]), align=1)
                keys.append(k2 if lanes == 2 else builder.shuffle_vector(k2, k2, spread))
            state = []
            for v in range(16 // per):
                x = ir.Constant(vector, None)
                for b in range(per):  # counter block lo + j (carry into hi), big-endian bytes
                    low = builder.add(lo_, ir.Constant(_I64, v * per + b))
                    high = builder.add(hi_, builder.zext(builder.icmp_unsigned("<", low, lo_), _I64))
                    x = builder.insert_element(x, builder.call(bswap, [high]), ir.Constant(_I32, 2 * b))
                    x = builder.insert_element(x, builder.call(bswap, [low]), ir.Constant(_I32, 2 * b + 1))
                state.append(builder.xor(x, keys[0]))
            for r in range(1, 10):
                state = [builder.call(enc, [x, keys[r]]) for x in state]
            for v, x in enumerate(state):
                builder.store(builder.call(last, [x, keys[10]]), builder.gep(out_at, [ir.Constant(_I32, v)]), align=1)
            return context.get_dummy_value()

        return sig, codegen

    return block_group


_block_group = _block_group_intrinsic(aes_width() or 128)


@numba.njit(nogil=True)
def block_group(rk: Any, out: Any, pos: Any, hi: Any, lo: Any) -> None:  # pragma: no cover (compiled)
    """``out[pos:]`` (its first :data:`GROUP_BYTES` bytes; no bounds check: the caller makes room) = the AES
    encryptions of the 16 counter blocks ``(hi, lo) + 0 .. 15`` (a 128-bit counter as two uint64 halves)."""
    if rk.size < ROUND_KEY_BYTES or pos < 0 or pos + GROUP_BYTES // out.itemsize > out.size:
        raise ShapeMismatchError("block_group: 176 round-key bytes and 256 bytes of room at out[pos:] needed")
    _block_group(rk, out, pos, hi, lo)


@numba.njit(nogil=True)
def _expand_one(key: Any, rk: Any) -> None:  # pragma: no cover (compiled)
    _expand(key, rk)  # type: ignore[call-arg]  # the typing context is Numba's


def expand_keys(keys: Sequence[bytes]) -> np.ndarray:
    """The round keys of AES-128 ``keys`` (16 bytes each), one row of :data:`ROUND_KEY_BYTES` per key."""
    rks = np.empty((len(keys), ROUND_KEY_BYTES), np.uint8)
    for i, k in enumerate(keys):
        if len(k) != 16:
            raise ValueError(f"AES-128 keys have 16 bytes, got {len(k)}")
        _expand_one(np.frombuffer(k, np.uint8), rks[i])
    return rks


@numba.njit(nogil=True, inline="always")  # inlined into the kernels: no call (and no refcounting) per batch
def fill_batch(rk: Any, tmp: Any, first: Any, count: Any) -> Any:  # pragma: no cover (compiled)
    """Keystream words ``first .. first + count - 1`` (``count`` <= the batch's words) into ``tmp`` (a batch
    buffer of :data:`BATCH_BYTES` + :data:`GROUP_BYTES` bytes, in ``tmp``'s word size); returns the index in
    ``tmp`` of word ``first`` (the batch starts at the group boundary before it)."""
    group = GROUP_BYTES // tmp.itemsize  # words per group
    start = (first // group) * group
    if rk.size < ROUND_KEY_BYTES or first < 0 or count < 0 or -(-(first - start + count) // group) * group > tmp.size:
        raise ShapeMismatchError("fill_batch: the batch does not fit tmp (or no round keys)")
    for g in range(0, first - start + count, group):
        block = (start + g) * tmp.itemsize // 16
        _block_group(rk, tmp, g, np.uint64(0), np.uint64(block))  # the intrinsic, inline: no call per group
    return first - start


@numba.njit(nogil=True)
def fill_into(rk: Any, dst: Any, pos: Any, first: Any, count: Any, tmp: Any) -> None:  # pragma: no cover
    """``dst[pos : pos + count]`` = keystream words ``first .. first + count - 1``: the whole groups written straight
    into ``dst`` (the cipher's stores then overlap its work, as OpenSSL's do: ~2x faster into memory than a copy out
    of a cached buffer), a partial group at either end through ``tmp`` (a batch buffer, as :func:`fill_batch`'s)."""
    if pos < 0 or first < 0 or count < 0 or pos + count > dst.size:
        raise ShapeMismatchError("fill_into: dst[pos : pos + count] lies outside dst")
    group = GROUP_BYTES // dst.itemsize
    head = min(count, (-first) % group)  # words before the first group boundary
    if head:
        at = fill_batch(rk, tmp, first, head)
        dst[pos : pos + head] = tmp[at : at + head]
    g = first + head
    while g + group <= first + count:
        _block_group(rk, dst, pos + g - first, np.uint64(0), np.uint64(g * dst.itemsize // 16))
        g += group
    if g < first + count:
        rest = first + count - g
        at = fill_batch(rk, tmp, g, rest)
        dst[pos + g - first : pos + count] = tmp[at : at + rest]


@numba.njit(nogil=True)
def fill(rk: Any, out: Any, first: Any) -> None:  # pragma: no cover (compiled)
    """``out`` (a 1-D array of unsigned words) = the keystream's words ``first .. first + out.size - 1``."""
    fill_into(rk, out, 0, first, out.size, np.empty((BATCH_BYTES + GROUP_BYTES) // out.itemsize, out.dtype))
