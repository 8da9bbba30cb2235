"""Hostile input for the wire decoder (issue 10): only WireFormatError escapes, decoded size stays bounded."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refimpl.errors import WireFormatError
from refimpl.net.wire import EXPANSION_SLACK, MAX_EXPANSION, decode, encode
from refimpl.ring import Z2_64, Ring
from refimpl.sharing import share
from refimpl.testing.hostile import craft, deep_size, mutate, random_header


def _decode_checked(raw):
    """Decode; anything but WireFormatError fails the test; a success must respect the size bound."""
    try:
        obj = decode(raw, pointer=lambda loc, pid: (loc, pid))
    except WireFormatError:
        return None
    assert deep_size(obj) <= MAX_EXPANSION * len(raw) + EXPANSION_SLACK
    return obj


def test_overlapping_and_repeated_spans_are_refused():
    payload = bytes(range(16))
    with pytest.raises(WireFormatError, match="overlaps or repeats"):
        decode(craft([{"$bytes": [0, 16]}, {"$bytes": [0, 16]}], payload))  # repeated
    with pytest.raises(WireFormatError, match="overlaps or repeats"):
        decode(craft([{"$bytes": [0, 8]}, {"$array": {"dtype": "<u8", "shape": [1], "offset": 4, "length": 8}}],
                     payload))
    with pytest.raises(WireFormatError, match="overlaps or repeats"):
        decode(craft([{"$bytes": [8, 8]}, {"$bytes": [4, 8]}], payload))  # overlap from the left
    ok = decode(craft([{"$bytes": [8, 8]}, {"$bytes": [0, 8]}, {"$bytes": [3, 0]}, {"$bytes": [3, 0]}], payload))
    assert ok == [payload[8:], payload[:8], b"", b""]  # disjoint spans in any order, empty spans anywhere


def test_the_amplification_attack_of_the_issue_is_refused():
    """1 MiB of payload referenced 200 times used to decode to 200 MiB; now the second reference is refused."""
    payload = bytes(2**20)
    raw = craft([{"$bytes": [0, 2**20]}] * 200, payload)
    with pytest.raises(WireFormatError, match="overlaps or repeats"):
        decode(raw)
    # one-byte big integers: 1 MiB of payload would be 2^20 Python ints (~40 MiB); refused by the size budget
    raw = craft({"$array": {"dtype": "bigint", "width": 1, "shape": [2**20], "offset": 0, "length": 2**20}}, payload)
    with pytest.raises(WireFormatError, match=f"more than {MAX_EXPANSION}x its size"):
        decode(raw)


def test_float_and_bool_share_payloads_raise_wire_format_error():
    nan = np.array([[np.nan, 1.0], [2.0, 3.0]])
    raw = craft({"$shares": {"modulus": str(2**64), "data": {"dtype": "<f8", "shape": [2, 2], "offset": 0,
                                                              "length": 32}}}, nan.tobytes())
    with pytest.raises(WireFormatError, match="share data must be integers, got dtype float64"):
        decode(raw)
    bools = np.array([[True, False], [False, True]])
    for modulus in (2**64, 2**70):
        raw = craft({"$shares": {"modulus": str(modulus), "data": {"dtype": "|b1", "shape": [2, 2], "offset": 0,
                                                                    "length": 4}}}, bools.tobytes())
        with pytest.raises(WireFormatError, match="share data must be integers, got dtype bool"):
            decode(raw)
    with pytest.raises(WireFormatError, match="not JSON"):
        decode(craft(b"[NaN]"))


@pytest.mark.parametrize("ring", [Z2_64, Ring(2**32), Ring(2**70), Ring.prime(2**61 - 1)])
def test_genuine_messages_still_round_trip(ring):
    s = share(np.arange(6, dtype=np.int64).reshape(2, 3), 3, ring=ring, key=bytes(16))
    msg = {"op": "store", "sh": s, "blob": b"xyz", "t": (1, 2**70), "a": np.arange(4.0), "none": None}
    out = decode(encode(msg))
    assert np.array_equal(out["sh"].reconstruct(), s.reconstruct()) and out["blob"] == b"xyz"
    assert out["t"] == (1, 2**70) and np.array_equal(out["a"], np.arange(4.0))


@st.composite
def hostile(draw):
    """A crafted message (random header biased to the tags, random payload), or a mutated genuine message."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=64))
        return craft(random_header(rng, len(payload)), payload)
    genuine = encode({"x": np.arange(draw(st.integers(0, 8)), dtype=np.uint64), "b": draw(st.binary(max_size=16)),
                      "i": 2**70, "f": float("nan"), "t": (1, [2, {"k": "v"}])})
    return mutate(genuine, rng, fix_crc=draw(st.booleans()))


@settings(max_examples=1500, deadline=None)
@given(hostile())
@example(craft({"$array": {"dtype": "<u8", "shape": [2**62, 0], "offset": 0, "length": 0}}))
@example(craft({"$shares": {"modulus": "9" * 200, "data": {"dtype": "<u8", "shape": [2], "offset": 0, "length": 16}}},
               bytes(16)))
@example(craft({"$int": "9" * 3999}))
@example(craft(b"[" * 100_000))
@example(craft({"$array": {"dtype": "bigint", "width": 2**62, "shape": [0], "offset": 0, "length": 0}}))
def test_fuzz_only_wire_format_error_escapes_and_size_is_bounded(raw):
    _decode_checked(raw)


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(raw):
    _decode_checked(raw)
