"""Tests of refimpl.ring: construction, primality, the dtype table, arithmetic against Python integers, signed lift,
and uniform sampling with no modulo bias."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from _stats import chi_square_critical, chi_square_uniform
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, NotAFieldError, OutOfRangeError, Ring, Stream
from refimpl.ring import is_probable_prime
from refimpl.testing import strategies as rst

Q = 23740629843760239486723  # the tutorial's modulus: 3 * 7913543281253413162241

# One ring of every kind: the two word rings, other powers of two (tiny, odd widths, beyond 64 bits), small and
# word-sized primes, Mersenne primes on both sides of 2**64, composites (the tutorial's Q among them).
RINGS = [
    Z2_32, Z2_64, Ring(2), Ring(2**8), Ring(2**31), Ring(2**63), Ring(2**65), Ring(2**128),
    Ring.prime(3), Ring.prime(7), Ring.prime(65537), Ring.prime(4294967291), Ring.prime(2**61 - 1),
    Ring.prime(2**127 - 1), Ring(10), Ring(2**32 - 1), Ring(2**32 + 1), Ring(3 * 2**62), Ring(Q),
]
RING_IDS = [repr(r) if len(repr(r)) < 30 else f"Ring({r.bits}bits)" for r in RINGS]


def ints(a) -> list[int]:
    """Elements as Python ints, flattened; an array nested inside an object array is an error, not an int."""
    flat = np.asarray(a).ravel()
    assert not any(isinstance(v, np.ndarray) for v in flat), f"nested array in {a!r}"
    return [int(v) for v in flat]


# ------------------------------------------------------------------------------------------------ construction
def test_the_tutorials_q_is_a_ring_but_not_a_field():
    assert Q == 3 * 7913543281253413162241
    ring = Ring(Q)
    assert ring.modulus == Q and not ring.is_field and ring.dtype == object and ring.bits == 75
    with pytest.raises(NotAFieldError, match=f"{Q} is not prime \\(it has the factor 3\\)"):
        Ring.prime(Q)


@pytest.mark.parametrize("p", [2, 3, 5, 251, 65537, 2**31 - 1, 4294967291, 2**61 - 1, 2**89 - 1, 2**127 - 1,
                               2**255 - 19])
def test_prime_fields(p):
    ring = Ring.prime(p)
    assert ring.modulus == p and ring.is_field


@pytest.mark.parametrize("n", [4, 561, 2047, 3215031751, 2**64 + 1, 2**61 + 1, (2**61 - 1) * (2**31 - 1),
                               3825123056546413051, 318665857834031151167461, 2**128])
def test_composites_are_refused_as_fields(n):
    """Includes Carmichael 561, strong pseudoprimes to base 2 (2047) and to bases 2..7 (3215031751), to the first
    9 prime bases (3825123056546413051) and to the first 12 (318665857834031151167461)."""
    assert not is_probable_prime(n)
    with pytest.raises(NotAFieldError, match=re.escape(f"{n} is not prime")):
        Ring.prime(n)
    assert Ring(n).modulus == n  # still a ring


def test_primality_agrees_with_a_sieve():
    limit = 20000
    sieve = np.ones(limit, dtype=bool)
    sieve[:2] = False
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = False
    assert [n for n in range(limit) if is_probable_prime(n)] == np.flatnonzero(sieve).tolist()


@pytest.mark.parametrize("m", [2.0, 7.5, "7", None, True, np.float64(8)])
def test_non_integer_modulus_is_named(m):
    with pytest.raises(TypeError, match=re.escape(f"Ring modulus must be an integer, got {m!r}")):
        Ring(m)


@pytest.mark.parametrize("m", [1, 0, -7])
def test_modulus_below_two_is_named(m):
    with pytest.raises(ValueError, match=f"at least 2, got {m}"):
        Ring(m)
    with pytest.raises(ValueError, match=f"got {m}"):
        Ring.prime(m)


def test_numpy_integer_modulus_becomes_int():
    ring = Ring(np.uint64(2**32))
    assert type(ring.modulus) is int and ring == Z2_32 and hash(ring) == hash(Z2_32)


def test_ring_is_frozen_and_compares_by_modulus():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Z2_64.modulus = 5  # type: ignore[misc]
    assert Ring(2**64) == Z2_64 and Ring(7) == Ring.prime(7) and Ring(7) != Ring(11)
    assert len({Ring(2**64), Z2_64, Ring(2**32)}) == 2


@pytest.mark.parametrize("ring, dtype", [(Z2_32, np.uint32), (Z2_64, np.uint64), (Ring(2**16), np.uint64),
                                         (Ring(2), np.uint64), (Ring.prime(4294967291), np.uint64),
                                         (Ring(2**32 + 1), object), (Ring(2**65), object), (Ring(Q), object),
                                         (Ring.prime(2**61 - 1), object)])
def test_dtype_table(ring, dtype):
    assert ring.dtype == np.dtype(dtype)
    assert ring.zeros((2, 3)).dtype == np.dtype(dtype) and ints(ring.zeros(4)) == [0] * 4


def test_properties():
    assert (Z2_64.bits, Z2_64.signed_min, Z2_64.signed_max) == (64, -(2**63), 2**63 - 1)
    assert (Ring(7).bits, Ring(7).signed_min, Ring(7).signed_max) == (3, -3, 3)
    assert (Ring(10).signed_min, Ring(10).signed_max) == (-5, 4)
    assert Z2_32.element_bytes == 4 and Z2_64.element_bytes == 8 and Ring(Q).element_bytes == 10
    assert Ring(2**65).element_bytes == 9 and Ring(7).element_bytes == 8


@pytest.mark.parametrize("ring, text", [(Z2_32, "Z2_32"), (Z2_64, "Z2_64"), (Ring(2**8), "Ring(2**8)"),
                                        (Ring(7), "Ring.prime(7)"), (Ring(10), "Ring(10)"), (Ring(Q), f"Ring({Q})"),
                                        (Ring(2**127 - 1), f"Ring({2**127 - 1})")])
def test_repr(ring, text):
    assert repr(ring) == text


# ------------------------------------------------------------------------------------------------ arithmetic
@st.composite
def ring_and_pair(draw, shape=None):
    ring = draw(rst.rings())
    shp = draw(rst.ring_elements(ring, shape=shape).map(np.shape)) if shape is None else shape
    return ring, draw(rst.ring_elements(ring, shape=shp)), draw(rst.ring_elements(ring, shape=shp))


def _boundary_example(ring):
    b = np.array(rst.boundary_values(ring), dtype=object).astype(ring.dtype)
    return ring, b, b[::-1].copy()


@given(ring_and_pair())
@example(_boundary_example(Z2_64)).via("Z2_64 boundaries")
@example(_boundary_example(Z2_32)).via("Z2_32 boundaries")
@example(_boundary_example(Ring(Q))).via("tutorial Q boundaries")
@example(_boundary_example(Ring.prime(2**61 - 1))).via("Mersenne 61 boundaries")
@example(_boundary_example(Ring.prime(4294967291))).via("largest 32-bit prime boundaries")
@example(_boundary_example(Ring(2**65))).via("2**65 boundaries")
def test_arithmetic_matches_python_integers(args):
    ring, a, b = args
    m = ring.modulus
    ia, ib = ints(a), ints(b)
    for name, op, ref in [("add", ring.add, lambda x, y: (x + y) % m), ("sub", ring.sub, lambda x, y: (x - y) % m),
                          ("mul", ring.mul, lambda x, y: x * y % m)]:
        out = op(a, b)
        if np.ndim(a):  # 0-d operands give NumPy scalars (or Python ints for object rings), like NumPy itself
            assert out.dtype == ring.dtype, name
        assert np.shape(out) == np.shape(a), name
        assert ints(out) == [ref(x, y) for x, y in zip(ia, ib)], name
    neg = ring.neg(a)
    assert (not np.ndim(a) or neg.dtype == ring.dtype) and ints(neg) == [(-x) % m for x in ia]
    assert ints(ring.add(a, neg)) == [0] * len(ia)


def test_scalar_operands_on_object_rings_stay_exact():
    """Python ints and 0-d arrays: NumPy would compute on two Python ints in int64 (wrapping silently past 2**63)."""
    ring = Ring(2**64 + 13)
    a = 2**62 + 2**61
    assert int(ring.add(a, a)) == 2 * a % ring.modulus
    assert int(ring.mul(2**40, 2**40)) == 2**80 % ring.modulus
    assert int(ring.sub(0, a)) == -a % ring.modulus
    assert int(ring.neg(np.array(a, dtype=object))) == -a % ring.modulus
    big = Ring(2**89 - 1)
    v = np.array(2**88 + 5, dtype=object)
    assert int(big.add(v, v)) == 2 * (2**88 + 5) % big.modulus
    assert int(big.sum(np.array([2**88, 2**88, 2**88], dtype=object))) == 3 * 2**88 % big.modulus
    assert int(Ring(2**65).add(2**64, 2**64)) == 0


@given(st.data())
def test_sum_matches_python_integers(data):
    ring = data.draw(rst.rings())
    k = data.draw(st.integers(1, 17))
    stack = data.draw(rst.ring_elements(ring, shape=(k, 3)))
    assert ints(ring.sum(stack, axis=0)) == [sum(ints(stack[:, j])) % ring.modulus for j in range(3)]
    assert ints(ring.sum(stack, axis=1)) == [sum(ints(stack[i])) % ring.modulus for i in range(k)]


@pytest.mark.parametrize("ring", [Z2_32, Z2_64], ids=["Z2_32", "Z2_64"])
def test_word_rings_sum_many_maximal_elements_without_overflow(ring):
    m = ring.modulus
    stack = np.full((1000, 2), m - 1, dtype=ring.dtype)
    assert ints(ring.sum(stack)) == [1000 * (m - 1) % m] * 2


@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
def test_reduce_pins_extreme_integers(ring):
    vals = [0, 1, -1, 2**32, 2**64 - 1, 2**64, -(2**64), 2**63, -(2**63), 2**200 + 3, -(2**200) - 3, ring.modulus,
            -ring.modulus, ring.modulus * 5 + 1]
    assert ints(ring.reduce(vals)) == [v % ring.modulus for v in vals]
    assert ints(ring.reduce(np.array(vals, dtype=object))) == [v % ring.modulus for v in vals]


@given(st.data())
def test_reduce_matches_python_modulo(data):
    ring = data.draw(rst.rings())
    vals = data.draw(st.lists(st.one_of(st.integers(), st.integers(-(2**70), 2**70), st.integers(-(2**63), 2**64)),
                              min_size=1, max_size=8))
    out = ring.reduce(vals)
    assert out.dtype == ring.dtype and ints(out) == [v % ring.modulus for v in vals]
    for dtype in (np.int64, np.uint64, np.int32, np.uint8):
        info = np.iinfo(dtype)
        arr = np.array([v for v in vals if info.min <= v <= info.max] or [0], dtype=dtype)
        assert ints(ring.reduce(arr)) == [int(v) % ring.modulus for v in arr]


@given(st.data())
def test_element_accepts_exactly_the_signed_and_unsigned_range(data):
    ring = data.draw(rst.rings())
    m, lo = ring.modulus, ring.signed_min
    v = data.draw(st.integers(lo, m - 1))
    assert ints(ring.element([v])) == [v % m]
    bad = data.draw(st.one_of(st.integers(m, m + 2**70), st.integers(lo - 2**70, lo - 1), st.sampled_from([m, lo - 1])))
    with pytest.raises(OutOfRangeError, match=re.escape(f"value {bad} is outside {ring!r}'s range [{lo}, {m})")):
        ring.element([0, bad])


@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
def test_element_boundaries(ring):
    m = ring.modulus
    good = [0, 1, m - 1, m // 2, -(m // 2), -1]
    assert ints(ring.element(good)) == [v % m for v in good]
    for bad in (m, -(m // 2) - 1):
        with pytest.raises(OutOfRangeError, match=re.escape(f"value {bad} is outside")):
            ring.element(bad)


@pytest.mark.parametrize("x", [1.0, [1.5], np.array([1.0]), np.float32(2), [True], np.array([True]), "3", [1, 2.5],
                               [None], [1 + 2j]])
def test_element_refuses_non_integers(x):
    with pytest.raises(TypeError, match="integer"):
        Z2_64.element(x)
    with pytest.raises(TypeError, match="integer"):
        Ring(Q).element(x)


def test_float_hint_names_fixed_point():
    with pytest.raises(TypeError, match="FixedPoint.encode"):
        Z2_64.element(np.array([0.5]))


def test_element_of_numpy_extremes():
    assert ints(Z2_64.element(np.array([2**64 - 1], dtype=np.uint64))) == [2**64 - 1]
    assert ints(Z2_64.element(np.array([-(2**63)], dtype=np.int64))) == [2**63]
    with pytest.raises(OutOfRangeError, match="value 4294967296 is outside Z2_32"):
        Z2_32.element(np.array([2**32], dtype=np.uint64))
    with pytest.raises(OutOfRangeError, match="value -2147483649 is outside Z2_32"):
        Z2_32.element(np.array([-(2**31) - 1], dtype=np.int64))


@given(st.data())
@example(None)
def test_lift_is_the_signed_view(data):
    if data is None:  # pinned: 0, 1, M-1, M/2, -M/2 on every ring kind
        for ring in RINGS:
            m = ring.modulus
            for v in {0, 1, m - 1, m // 2, (m + 1) // 2, m // 2 - 1}:
                if 0 <= v < m:
                    lifted = int(ring.lift(ring.element([v]))[0])
                    assert lifted == (v - m if 2 * v >= m else v), (ring, v)
            assert int(ring.lift(ring.element([-(m // 2)]))[0]) == -(m // 2)
            assert int(ring.lift(ring.element([ring.signed_max]))[0]) == ring.signed_max
        return
    ring = data.draw(rst.rings())
    a = data.draw(rst.ring_elements(ring, shape=(6,)))
    lifted = ring.lift(a)
    m = ring.modulus
    assert ints(lifted) == [v - m if 2 * v >= m else v for v in ints(a)]
    assert all(ring.signed_min <= v <= ring.signed_max for v in ints(lifted))
    assert lifted.dtype == (np.dtype(np.int64) if ring.dtype != object else np.dtype(object))
    signed = data.draw(rst.ring_elements(ring, shape=(6,), signed=True))
    assert ints(ring.lift(ring.element(signed))) == ints(signed)


# ------------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("ring", RINGS, ids=RING_IDS)
@pytest.mark.parametrize("cipher", ["aes128-ctr", "chacha20"])
def test_sample_is_deterministic_in_range_and_advances_the_stream(ring, cipher):
    key = bytes(range(16 if cipher == "aes128-ctr" else 32))
    s1, s2 = Stream(key, cipher=cipher), Stream(key, cipher=cipher)
    a, b = ring.sample(s1, (3, 7)), ring.sample(s2, (3, 7))
    assert a.shape == (3, 7) and a.dtype == ring.dtype
    assert ints(a) == ints(b)
    assert all(0 <= v < ring.modulus for v in ints(a))
    assert s1.position == s2.position > 0
    c = ring.sample(s1, (3, 7))  # the next draw continues the stream
    if ring.modulus > 2**8:
        assert ints(a) != ints(c)
    assert ring.sample(Stream(key, cipher=cipher), 0).shape == (0,)


@pytest.mark.parametrize("ring", [Z2_32, Z2_64, Ring(2**8), Ring(2**63)], ids=str)
def test_power_of_two_sampling_is_the_masked_keystream(ring):
    s = Stream(bytes(16))
    out = ring.sample(s, 50)
    words = np.frombuffer(Stream(bytes(16)).read(50 * ring.dtype.itemsize).tobytes(), dtype=ring.dtype.newbyteorder("<"))
    assert ints(out) == [int(w) % ring.modulus for w in words]
    assert s.position == 50 * ring.dtype.itemsize


@pytest.mark.parametrize("ring", [Ring(2**65), Ring(Q), Ring.prime(2**61 - 1), Ring(3 * 2**62)], ids=str)
def test_big_ring_sampling_oversamples_by_128_bits(ring):
    width = ring.element_bytes + 16
    s = Stream(bytes(16))
    out = ring.sample(s, 20)
    raw = Stream(bytes(16)).read(20 * width).tobytes()
    expect = [int.from_bytes(raw[i * width:(i + 1) * width], "little") % ring.modulus for i in range(20)]
    assert ints(out) == expect and s.position == 20 * width


class _WordStream:
    """A stand-in for Stream that serves chosen little-endian 64-bit words, to drive the rejection sampler."""

    def __init__(self, words):
        self._bytes = np.array(words, dtype="<u8").tobytes() + bytes(8 * 4096)
        self.position = 0

    def read_into(self, out):
        n = out.nbytes
        out.view(np.uint8)[:] = np.frombuffer(self._bytes[self.position:self.position + n], dtype=np.uint8)
        self.position += n

    def seek(self, offset):
        self.position = offset


@pytest.mark.parametrize("m", [3, 10, 65521, 4294967291, 2**32 - 1])
def test_rejection_sampler_skips_words_in_the_biased_tail(m):
    """Words w >= 2**64 - (2**64 mod M) are rejected; the stream ends right after the last accepted word."""
    limit = 2**64 - 2**64 % m
    words = [limit, 5, 2**64 - 1, limit - 1, limit, 7, 2**64 - 1, 9, 11]
    s = _WordStream(words)
    out = Ring(m).sample(s, 4)
    assert ints(out) == [5 % m, (limit - 1) % m, 7 % m, 9 % m]
    assert s.position == 8 * 8  # 8 words consumed: the 4 accepted and the 4 rejected before the last accepted
    assert ints(Ring(m).sample(s, 1)) == [11 % m]


@pytest.mark.parametrize("m", [3, 10, 1000, 65521, 4294967291])
@pytest.mark.parametrize("cipher", ["aes128-ctr", "chacha20"])
def test_small_modulus_sampling_is_the_rejection_sampler_on_the_keystream(m, cipher):
    key = bytes(range(16 if cipher == "aes128-ctr" else 32))
    s = Stream(key, cipher=cipher)
    out = Ring(m).sample(s, 200)
    limit = 2**64 - 2**64 % m
    words = np.frombuffer(keystream_words(key, cipher, 400), dtype="<u8")
    accepted = [int(w) for w in words if int(w) < limit][:200]
    assert ints(out) == [w % m for w in accepted]
    assert s.position == 8 * 200  # no word of a real stream was rejected (probability < 200 * M / 2**64)


def keystream_words(key, cipher, n):
    return Stream(key, cipher=cipher).read(8 * n).tobytes()


# Modulo bias. M = 3 * 2**62 and 64-bit words: the naive map w % M sends [0, 2**62) twice as often as the rest
# (w and w + M both land there), so the first third of the ring gets probability 1/2 instead of 1/3. refimpl must
# show no such bias; the naive method, fed the very same keystream, must fail the same test (so the test has teeth).
BIAS_M = 3 * 2**62
BIAS_SAMPLES = 6000
BIAS_BINS = 3  # the thirds [0, 2**62), [2**62, 2**63), [2**63, 3 * 2**62)


def _thirds(values) -> np.ndarray:
    return np.bincount([int(v) // 2**62 for v in values], minlength=BIAS_BINS)


@pytest.mark.parametrize("cipher", ["aes128-ctr", "chacha20"])
def test_no_modulo_bias_and_the_naive_method_would_fail(cipher):
    key = bytes(range(16 if cipher == "aes128-ctr" else 32))
    critical = chi_square_critical(BIAS_BINS - 1)
    sampled = Ring(BIAS_M).sample(Stream(key, cipher=cipher), BIAS_SAMPLES)
    stat = chi_square_uniform(_thirds(sampled))
    assert stat < critical, f"refimpl's sampler looks biased: chi2={stat:.1f} >= {critical:.1f}"

    words = np.frombuffer(Stream(key, cipher=cipher).read(8 * BIAS_SAMPLES).tobytes(), dtype="<u8")
    naive = [int(w) % BIAS_M for w in words]
    naive_stat = chi_square_uniform(_thirds(naive))
    # expected ~ N/4 = 1500 for a 1/2-1/4-1/4 split; the 1e-6 critical value for 2 degrees of freedom is 27.6
    assert naive_stat > 10 * critical, f"the naive sampler was not caught: chi2={naive_stat:.1f}"


@pytest.mark.parametrize("ring", [Ring.prime(2**61 - 1), Ring(Q), Ring.prime(65521), Ring(10), Ring(2**65)], ids=str)
def test_sampling_is_uniform_over_buckets(ring):
    """16 equal-width buckets of [0, M) (exact for M a multiple of 16, else within 15/M of equal)."""
    bins = 16
    values = ring.sample(Stream(bytes(range(16))), 8000)
    counts = np.bincount([int(v) * bins // ring.modulus for v in ints(values)], minlength=bins)
    if ring.modulus < 10**6:  # small M: exact expected counts for each bucket
        sizes = np.array([sum(1 for v in range(ring.modulus) if v * bins // ring.modulus == b) for b in range(bins)])
        expected = 8000 * sizes / ring.modulus
        stat = float((((counts - expected) ** 2) / np.where(expected > 0, expected, 1)).sum())
        df = int((sizes > 0).sum()) - 1
    else:
        stat, df = chi_square_uniform(counts), bins - 1
    assert stat < chi_square_critical(df)
