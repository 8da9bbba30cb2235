"""Exact comparison on arithmetic shares: arithmetic-to-binary conversion, a binary adder, B2A and ReLU.

The protocol is CrypTen's (and ABY's A2B): a sharing ``[x]`` over Z_2^l is ``x = s_0 + ... + s_{n-1} mod 2**l``.
Each party's share ``s_i`` is trivially an XOR sharing (party ``i`` holds ``s_i``, the others 0). The parties add
the ``n`` binary-shared words with boolean circuits whose ANDs use the dealer's bit-packed Beaver AND triples:

* carry-save adders (one AND round each, all of a level batched) reduce ``n`` operands to two;
* a Kogge-Stone parallel-prefix adder computes the sum in ``1 + ceil(log2 l)`` rounds (7 rounds for l = 64):
  generate ``G = a & b``, propagate ``P = a ^ b``, then for ``d = 1, 2, 4, ...``:
  ``G ^= P & (G << d)``, ``P &= P << d`` (both ANDs in one round), and ``sum = a ^ b ^ (G << 1)``.

The sign of ``x`` is bit ``l - 1`` of the sum; :func:`msb` computes only the carries that bit depends on (182
of the adder's 768 AND gates for l = 64, the rest pruned), packed 64 to a word, in the same 7 rounds. B2A of that
bit uses a daBit ``r`` (shared both ways): open
``c = b ^ r`` and compute ``[b] = c + [r] - 2 c [r]`` locally. ``relu(x) = x * (1 - msb(x))`` costs one Beaver
multiplication more. Everything is exact: no probabilistic comparison, no range restriction beyond the ring's
signed view.

Example:
    >>> from refimpl import share, Z2_64
    >>> from refimpl.mpc import Dealer, Channel
    >>> dealer, channel = Dealer(3, key=bytes(16)), Channel()
    >>> x = share([-5, 0, 7, -(2**63), 2**63 - 1], 3)
    >>> Z2_64.lift(relu(x, dealer, channel).reconstruct()).tolist()
    [0, 0, 7, 0, 9223372036854775807]
    >>> channel.rounds          # 1 carry-save + 7 Kogge-Stone + 1 B2A + 1 multiplication
    10

References:
    B. Knott, S. Venkataraman, A. Hannun, S. Sengupta, M. Ibrahim, L. van der Maaten, "CrypTen: Secure
    Multi-Party Computation Meets Machine Learning", NeurIPS 2021.
    D. Demmler, T. Schneider, M. Zohner, "ABY - A Framework for Efficient Mixed-Protocol Secure Two-Party
    Computation", NDSS 2015.
    P. M. Kogge, H. S. Stone, "A Parallel Algorithm for the Efficient Solution of a General Class of Recurrence
    Equations", IEEE Trans. Computers C-22 (1973).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from refimpl.errors import PartyCountError, RefimplError, ShapeMismatchError
from refimpl.mpc.arithmetic import mul
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Dealer
from refimpl.sharing.additive import Shares
from refimpl.sharing.binary import BinaryShares

__all__ = ["Program", "a2b", "add_binary", "and_", "and_finish", "and_many", "and_pieces", "b2a", "drelu", "msb",
           "msb_program", "relu", "run_stacked", "summands_program"]

_ONE = np.uint64(1)
_BIT_SHIFTS = np.arange(8, dtype=np.uint8)[None, :, None]

#: A party-local protocol: yields ``("and", [(x, y), ...])`` or ``("b2a", bits)`` requests, receives the answers.
Program = Generator[tuple[str, Any], Any, Any]


def and_many(pairs: Sequence[tuple[BinaryShares, BinaryShares]], dealer: Dealer,
             channel: Channel | None = None) -> list[BinaryShares]:
    """Bitwise ANDs of several pairs of binary sharings, all in one round (one AND triple for all the pairs).

    For a pair ``(x, y)`` and triple ``(a, b, c = a & b)``: open ``e = x ^ a`` and ``d = y ^ b``, then
    ``[x & y] = [c] ^ (e & [b]) ^ (d & [a]) ^ (e & d)`` (the last term by party 0).

    Raises:
        PartyCountError: a sharing's party count differs from the dealer's.
        ShapeMismatchError: the two sharings of a pair have different shapes.
    """
    channel = channel or Channel()
    for x, y in pairs:
        if x.n != dealer.n or y.n != dealer.n:
            raise PartyCountError(f"AND of sharings among {x.n} and {y.n} parties with a dealer for {dealer.n}")
        if x.shape != y.shape:
            raise ShapeMismatchError(f"AND needs equal shapes, got {x.shape} and {y.shape}")
    n = dealer.n
    xs = np.concatenate([x.data.reshape(n, -1) for x, _ in pairs], axis=1)  # all pairs as one flat batch:
    ys = np.concatenate([y.data.reshape(n, -1) for _, y in pairs], axis=1)  # one triple, one opening
    a, b, c = channel.take(dealer.and_triple(xs.shape[1]))
    e, d = channel.open(BinaryShares(xs) ^ a, BinaryShares(ys) ^ b)
    data = c.data ^ (e & b.data) ^ (d & a.data)
    data[0] ^= e & d
    out, start = [], 0
    for x, _ in pairs:
        size = int(np.prod(x.shape, dtype=np.int64))
        out.append(BinaryShares(np.ascontiguousarray(data[:, start : start + size]).reshape(n, *x.shape)))
        start += size
    return out


def and_(x: BinaryShares, y: BinaryShares, dealer: Dealer, channel: Channel | None = None) -> BinaryShares:
    """The binary sharing of ``x & y`` (one round).

    Example:
        >>> from refimpl.sharing.binary import share_binary
        >>> x, y = share_binary(np.array([12]), 2), share_binary(np.array([10]), 2)
        >>> and_(x, y, Dealer(2)).reconstruct().tolist()
        [8]
    """
    return and_many([(x, y)], dealer, channel)[0]


def _carry_save_program(ops: list[np.ndarray]) -> Program:
    """One round of 3-to-2 carry-save adders over groups of three operands (maj = ((a^c) & (b^c)) ^ c)."""
    groups = [ops[i : i + 3] for i in range(0, len(ops) - len(ops) % 3, 3)]
    rest = ops[len(groups) * 3 :]
    majs = yield ("and", [(a ^ c, b ^ c) for a, b, c in groups])
    out = list(rest)
    for (a, b, c), m in zip(groups, majs):
        out += [a ^ b ^ c, (m ^ c) << np.uint64(1)]
    return out


def add_binary(x: BinaryShares, y: BinaryShares, dealer: Dealer, channel: Channel | None = None, *,
               bits: int = 64) -> BinaryShares:
    """The binary sharing of ``(x + y) mod 2**bits`` (in the low ``bits`` bits), by a Kogge-Stone adder.

    Rounds: ``1 + ceil(log2(bits))``.

    Example:
        >>> from refimpl.sharing.binary import share_binary
        >>> x, y = share_binary(np.array([2**64 - 1, 5], dtype=np.uint64), 2), share_binary(np.array([3, 9]), 2)
        >>> add_binary(x, y, Dealer(2)).reconstruct().tolist()
        [2, 14]
    """
    channel = channel or Channel()
    (g,) = and_many([(x, y)], dealer, channel)
    p = x ^ y
    d = 1
    while d < bits:
        if 2 * d < bits:
            g_shift, p_new = and_many([(p, g << d), (p, p << d)], dealer, channel)
            g, p = g ^ g_shift, p_new
        else:
            g = g ^ and_many([(p, g << d)], dealer, channel)[0]
        d *= 2
    return x ^ y ^ (g << 1)


def _check_binary_ring(x: Shares, dealer: Dealer) -> None:
    ring = x.ring
    if not ring.is_power_of_two or ring.dtype == object:
        raise RefimplError(f"binary conversion needs a ring Z_2^l with l <= 64, got {ring!r}")
    if x.n != dealer.n:
        raise PartyCountError(f"a sharing among {x.n} parties with a dealer for {dealer.n}")


def summands_program(words: np.ndarray, rows: Sequence[int], n: int) -> Program:
    """The party-local program behind :func:`a2b` and :func:`msb`'s first step: each party's arithmetic share
    becomes a binary sharing of its own, and carry-save adders reduce the ``n`` of them to two (no rounds for
    ``n = 2``). ``words`` holds the shares of the parties ``rows`` (one row each, uint64); returns two arrays of
    the same shape, XOR shares (for those parties) of two words whose sum is the secret."""
    ops = []
    for i in range(n):
        data = np.zeros_like(words)
        for k, row in enumerate(rows):
            if row == i:
                data[k] = words[k]
        ops.append(data)
    while len(ops) > 2:
        ops = yield from _carry_save_program(ops)
    return ops[0], ops[1]


def run_stacked(program: Program, dealer: Dealer, channel: Channel) -> Any:
    """Run a party-local program on stacked shares (every party's row at once): each ``("and", pairs)`` request
    is one :func:`and_many` round, each ``("b2a", bits)`` one :func:`b2a` round. Returns the program's result."""
    try:
        kind, request = next(program)
        while True:
            if kind == "and":
                reply: Any = [z.data for z in and_many([(BinaryShares(a), BinaryShares(b)) for a, b in request],
                                                       dealer, channel)]
            else:
                reply = b2a(BinaryShares(request), dealer, channel).data
            kind, request = program.send(reply)
    except StopIteration as stop:
        return stop.value


def _binary_summands(x: Shares, dealer: Dealer, channel: Channel) -> tuple[BinaryShares, BinaryShares]:
    """Two binary sharings whose sum (as integers mod 2**l) is ``x`` (see :func:`summands_program`).

    Raises:
        RefimplError: the ring is not Z_2^l with ``l <= 64``.
        PartyCountError: ``x`` and the dealer disagree on ``n``.
    """
    _check_binary_ring(x, dealer)
    words = x.data.astype(np.uint64)
    first, second = run_stacked(summands_program(words, range(x.n), x.n), dealer, channel)
    return BinaryShares(first), BinaryShares(second)


def a2b(x: Shares, dealer: Dealer, channel: Channel | None = None) -> BinaryShares:
    """Arithmetic-to-binary conversion: a binary sharing whose low ``l`` bits are ``x mod 2**l``.

    Raises:
        RefimplError: the ring is not Z_2^l with ``l <= 64``.
        PartyCountError: ``x`` and the dealer disagree on ``n``.
    """
    channel = channel or Channel()
    first, second = _binary_summands(x, dealer, channel)
    return add_binary(first, second, dealer, channel, bits=x.ring.bits)


def _and_bits_program(pairs: list[tuple[np.ndarray, np.ndarray]]) -> Program:
    """ANDs of XOR-shared bit arrays (each ``(rows, N)`` uint8), packed 64 bits to a word: one triple, one round."""
    if not pairs:
        return []
    n, count = pairs[0][0].shape
    left = np.stack([a for a, _ in pairs], axis=1).reshape(n, -1)
    right = np.stack([b for _, b in pairs], axis=1).reshape(n, -1)
    total = left.shape[1]
    words = -(-total // 64)

    def pack(bits: np.ndarray) -> np.ndarray:  # zero bits up to a whole number of words, as np.pad would give
        packed = np.packbits(bits, axis=1, bitorder="little")  # the last byte zero-filled
        if packed.shape[1] != 8 * words:
            full = np.zeros((n, 8 * words), np.uint8)
            full[:, : packed.shape[1]] = packed
            packed = full
        return packed.view(np.uint64)

    (z,) = yield ("and", [(pack(left), pack(right))])
    bits = np.unpackbits(np.ascontiguousarray(z).view(np.uint8), axis=1, bitorder="little")[:, :total]
    return list(bits.reshape(n, len(pairs), count).transpose(1, 0, 2))


def _carry_plan(target: int) -> list[tuple[int, set[int], set[int]]]:
    """For the prefix generate at bit ``target``: per Kogge-Stone level ``d``, the positions whose G and P outputs
    are needed (working backwards from ``{target}``)."""
    levels: list[int] = []
    d = 1
    while d <= target:
        levels.append(d)
        d *= 2
    plan = []
    need_g: set[int] = {target}
    need_p: set[int] = set()
    for d in reversed(levels):
        plan.append((d, set(need_g), set(need_p)))
        need_g, need_p = (need_g | {i - d for i in need_g if i >= d},
                          {i for i in need_g if i >= d} | need_p | {i - d for i in need_p if i >= d})
    plan.append((0, need_g, need_p))  # what the initial generate/propagate must provide
    return plan[::-1]


def _sign_of_sum_program(xw: np.ndarray, yw: np.ndarray, bits: int) -> Program:
    """Bit ``bits - 1`` of ``x + y`` as XOR-shared ``(rows, N)`` uint8, computing only the carries it depends on."""

    def unpack(words: np.ndarray) -> np.ndarray:  # every bit at once: (bit position, *shape) uint8
        flat = np.ascontiguousarray(words).astype("<u8", copy=False).reshape(-1)
        by_byte = np.ascontiguousarray(flat.view(np.uint8).reshape(flat.size, 8).T)  # (byte, word)
        planes = np.right_shift(by_byte[:, None, :], _BIT_SHIFTS)  # (byte, bit of the byte, word)
        planes &= np.uint8(1)
        return planes.reshape(64, *words.shape)

    xb, yb = unpack(xw), unpack(yw)

    def bit(source: np.ndarray, i: int) -> np.ndarray:
        return source[i]

    top = bit(xb, bits - 1) ^ bit(yb, bits - 1)
    if bits == 1:
        return top
    plan = _carry_plan(bits - 2)
    _, need_g, need_p = plan[0]
    order = sorted(need_g)
    g = dict(zip(order, (yield from _and_bits_program([(bit(xb, i), bit(yb, i)) for i in order]))))
    p = {i: bit(xb, i) ^ bit(yb, i) for i in need_p | need_g}
    for d, out_g, out_p in plan[1:]:
        jobs = [("g", i) for i in sorted(out_g) if i >= d] + [("p", i) for i in sorted(out_p) if i >= d]
        pairs = [(p[i], g[i - d] if kind == "g" else p[i - d]) for kind, i in jobs]
        results = dict(zip(jobs, (yield from _and_bits_program(pairs))))
        g = {i: g[i] ^ results[("g", i)] if i >= d else g[i] for i in out_g}
        p = {i: results[("p", i)] if i >= d else p[i] for i in out_p}
    return top ^ g[bits - 2]


def msb_program(words: np.ndarray, rows: Sequence[int], n: int, bits: int) -> Program:
    """The party-local program of :func:`msb`: ``words`` ``(len(rows), N)`` uint64 holds the arithmetic shares of
    the parties ``rows``; it yields ``("and", pairs)`` requests (answered with the ANDs' XOR shares) and returns
    those parties' XOR shares of the sign bits, ``(len(rows), N)`` uint8.

    Written once for both worlds: :func:`msb` runs it with every party's row (:func:`run_stacked`); a worker runs
    it on its own share alone (``rows = [i]``), exchanging the AND openings with its peers.
    """
    first, second = yield from summands_program(words, rows, n)
    return (yield from _sign_of_sum_program(first, second, bits))


def msb(x: Shares, dealer: Dealer, channel: Channel | None = None) -> BinaryShares:
    """The binary sharing (in bit 0) of the sign bit of ``x``: 1 iff the signed value of ``x`` is negative.

    Like :func:`a2b` followed by a shift, but the adder computes only the carries the top bit depends on (182
    ANDs per element instead of 768 for l = 64), packed 64 to a word across elements and positions, in the same
    ``1 + ceil(log2(l - 1))`` rounds (plus the carry-save rounds for ``n > 2``).
    """
    channel = channel or Channel()
    _check_binary_ring(x, dealer)
    words = x.data.reshape(x.n, -1).astype(np.uint64)
    sign = run_stacked(msb_program(words, range(x.n), x.n, x.ring.bits), dealer, channel)
    return BinaryShares(sign.astype(np.uint64).reshape(x.n, *x.shape))


def and_pieces(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One party's opening pieces of a batched AND: ``(x ^ a, y ^ b)``."""
    return xs ^ a, ys ^ b


def and_finish(e: np.ndarray, d: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
               party: int) -> np.ndarray:
    """One party's XOR share of ``x & y`` after opening ``e = x ^ a`` and ``d = y ^ b`` (party 0 adds ``e & d``)."""
    z = c ^ (e & b) ^ (d & a)
    return z ^ (e & d) if party == 0 else z


def b2a(bit: BinaryShares, dealer: Dealer, channel: Channel | None = None) -> Shares:
    """Convert binary-shared bits (bit 0 of each word, other bits zero) to arithmetic shares in ``dealer.ring``.

    With a daBit ``r``: open ``c = b ^ r`` (one round), then ``[b] = c + [r] - 2 c [r]``.
    """
    channel = channel or Channel()
    r_bin, r_arith = channel.take(dealer.dabits(bit.shape))
    (c,) = channel.open((bit & _ONE) ^ r_bin)
    ring = dealer.ring
    c = c.astype(np.int64)
    return r_arith * ring.reduce(1 - 2 * c) + ring.reduce(c)


def drelu(x: Shares, dealer: Dealer, channel: Channel | None = None) -> Shares:
    """The arithmetic sharing of ``[x >= 0]`` (1 for non-negative signed values, else 0)."""
    return 1 - b2a(msb(x, dealer, channel), dealer, channel)


def relu(x: Shares, dealer: Dealer, channel: Channel | None = None) -> Shares:
    """The sharing of ``max(x, 0)`` in the signed view: ``x * drelu(x)``, exact."""
    channel = channel or Channel()
    return mul(x, drelu(x, dealer, channel), dealer, channel)
