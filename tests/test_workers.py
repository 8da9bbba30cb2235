"""Virtual workers, pointers, the wire format, the ledger, and values shared across workers."""

from __future__ import annotations

import gc
import struct
import zlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from refimpl import Z2_32, FixedPoint, Ring, share
from refimpl.errors import PartyCountError, PointerError, ShapeMismatchError, WireFormatError
from refimpl.mpc import Channel, Dealer, matmul, mul
from refimpl.mpc.comparison import relu
from refimpl.net import wire
from refimpl.sharing.binary import share_binary
from refimpl.workers import Ledger, Pointer, VirtualWorker, send
from refimpl.workers.shared_tensor import LedgerChannel, share_among


def make(*names: str, ledger: Ledger | None = None) -> list[VirtualWorker]:
    ledger = ledger or Ledger()
    return [VirtualWorker(n, ledger) for n in names]


def stored(*workers: VirtualWorker) -> int:
    gc.collect()
    return sum(len(w.objects) for w in workers)


# ---------------------------------------------------------------- the tutorial's pointer walkthrough
def test_send_get_move_chain_remote_get_copy_clear():
    bob, alice, jake, john = make("bob", "alice", "jake", "john")
    x = send(np.array([1, 2, 3, 4, 5]), bob)
    assert isinstance(x, Pointer) and list(bob.objects) == [x.id]
    assert (x.get() == [1, 2, 3, 4, 5]).all() and len(bob.objects) == 0
    with pytest.raises(PointerError, match="stale"):
        x.get()

    y = send(np.array([7]), bob).move(alice)
    assert (len(bob.objects), len(alice.objects)) == (0, 1)
    assert y.location is alice and y.get().tolist() == [7]

    chain = send(np.array([1, 2]), jake).send(john)          # me -> john -> jake
    assert isinstance(john.objects[chain.id], Pointer) and len(jake.objects) == 1
    hop = chain.get()                                         # a pointer to jake's object
    assert isinstance(hop, Pointer) and hop.location is jake and hop.owner.name == "me"
    assert hop.get().tolist() == [1, 2] and stored(jake, john) == 0

    chain = send(np.array([3]), jake).send(john)
    chain.remote_get()                                        # john pulls the object from jake
    assert stored(jake) == 0 and isinstance(john.objects[chain.id], np.ndarray)
    assert chain.get().tolist() == [3]

    z = send(np.array([4.5]), bob)
    c = z.copy()
    assert c.id != z.id and c.get().tolist() == [4.5] and z.get().tolist() == [4.5]
    deep = send(np.array([9]), jake).send(john).copy()        # copying a chain copies every hop
    assert stored(jake, john) == 2 and deep.get().get().tolist() == [9]
    assert stored(jake, john) == 0  # the original chain pointer was a temporary: freed, with its target

    w = send(np.array([1]), bob)
    bob.clear_objects()
    with pytest.raises(PointerError, match="does not exist at 'bob'"):
        w.get()


def test_pointer_arithmetic_runs_at_the_location():
    bob, alice = make("bob", "alice")
    x, y = send(np.array([1, 2, 3]), bob), send(np.array([10, 20, 30]), bob)
    assert (x + y).get().tolist() == [11, 22, 33]
    assert (x * 2 - y).get().tolist() == [-8, -16, -24]
    assert (np.array([1, 1, 1]) - x).get().tolist() == [0, -1, -2]
    m = send(np.eye(2), bob)
    assert (m @ np.array([[1.0], [2.0]])).get().tolist() == [[1.0], [2.0]]
    with pytest.raises(ValueError, match="'bob' and 'alice'"):
        x + send(np.array([1]), alice)
    with pytest.raises(ValueError, match="operands could not be broadcast"):
        (x + send(np.array([1, 2]), bob)).get()


def test_deleting_the_last_pointer_frees_the_object_and_the_chain_behind_it():
    bob, alice, carol = make("bob", "alice", "carol")
    x = send(np.arange(3), bob)
    del x
    assert stored(bob) == 0
    chain = send(np.arange(3), bob).send(alice).send(carol)  # me -> carol -> alice -> bob
    assert stored(bob, alice, carol) == 3
    del chain
    assert stored(bob, alice, carol) == 0
    ledger = bob.ledger
    assert ledger.messages_by_kind["delete"] >= 4


def test_errors_are_specific():
    (bob,) = make("bob")
    with pytest.raises(TypeError, match="cannot send an object of type object"):
        send(object(), bob)
    with pytest.raises(TypeError, match="VirtualWorker"):
        send(1, "bob")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already exists"):
        VirtualWorker("bob", bob.ledger)
    with pytest.raises(ValueError, match="different ledgers"):
        send(np.array([1]), bob).move(VirtualWorker("elsewhere"))
    with pytest.raises(TypeError, match="non-empty string"):
        VirtualWorker("")


# ---------------------------------------------------------------- wire format
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**200), 2**200), st.floats(allow_nan=False), st.text(max_size=8),
    st.binary(max_size=16),
    st.sampled_from([np.float64("nan"), float("inf"), -float("inf")]),
)
values = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=12)


def same(a, b) -> bool:
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values)
@example(2**53)
@example(-(2**63))
@example({"$int": "5"})  # a user dict that looks like a tag stays a dict
def test_wire_round_trips_values(v):
    assert same(wire.decode(wire.encode(v)), v)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                                   "float32", "float64", ">u8"])
def test_wire_round_trips_arrays(dtype):
    arr = (np.arange(12) % 2).astype(dtype).reshape(3, 4)
    out = wire.decode(wire.encode(arr))
    assert out.shape == (3, 4) and (out == arr).all() and out.flags.writeable


def test_wire_round_trips_sharings_and_big_integers():
    big = Ring(2**127 - 1)
    for s in (share([1, -2, 3], 3), share([[1, 2]], 2, ring=Z2_32), share([5, 2**126], 4, ring=big)):
        out = wire.decode(wire.encode(s))
        assert out.ring == s.ring and (out.data == s.data).all()
    b = share_binary(np.array([1, 2**64 - 1], dtype=np.uint64), 3)
    assert (wire.decode(wire.encode(b)).data == b.data).all()
    obj = np.array([-(2**100), 0, 2**90], dtype=object)
    assert wire.decode(wire.encode(obj)).tolist() == obj.tolist()


@given(pos=st.integers(0, 10**6), flip=st.integers(1, 255))
@example(pos=0, flip=1)
def test_any_corrupted_byte_is_detected(pos, flip):
    raw = bytearray(wire.encode({"op": "store", "objs": [np.arange(5, dtype=np.uint64)], "ids": [3]}))
    raw[pos % len(raw)] ^= flip
    with pytest.raises(WireFormatError):
        wire.decode(bytes(raw))


def forge(header: bytes, payload: bytes = b"") -> bytes:
    body = wire.MAGIC + struct.pack("<I", len(header)) + header + payload
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("header,payload,match", [
    (b'{"$array":{"dtype":"|O","shape":[1],"offset":0,"length":8}}', bytes(8), "not allowed"),
    (b'{"$array":{"dtype":"<u8","shape":[2],"offset":0,"length":8}}', bytes(8), "needs 16 bytes"),
    (b'{"$array":{"dtype":"<u8","shape":[1],"offset":4,"length":8}}', bytes(8), "runs past the payload"),
    (b'{"$pickle":"x"}', b"", "unknown tag"),
    (b'{"a":1,"b":2}', b"", "unexpected header value"),
    (b'{"$int":5}', b"", "bad \\$int"),
    (b'[1,2', b"", "not valid JSON"),
    (b'{"$pointer":{"location":"bob","id":1}}', b"", "unknown tag"),
    (b'{"$shares":{"modulus":"7","data":{"dtype":"<u8","shape":[2,1],"offset":0,"length":16}}}',
     (7).to_bytes(8, "little") + bytes(8), "must lie in \\[0, 7\\)"),
    (b'{"$shares":{"modulus":"1","data":{"dtype":"<u8","shape":[2],"offset":0,"length":16}}}',
     bytes(16), "bad \\$shares"),
    (b"[" + b"9" * 5000 + b"]", b"", "not valid JSON"),
])
def test_forged_messages_with_valid_checksums_are_refused(header, payload, match):
    with pytest.raises(WireFormatError, match=match):
        wire.decode(forge(header, payload))


def test_truncated_and_foreign_bytes_are_refused():
    raw = wire.encode([1, 2, 3])
    with pytest.raises(WireFormatError, match="not a refimpl message"):
        wire.decode(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(WireFormatError):
        wire.decode(raw[:-3])
    with pytest.raises(TypeError, match="bytes"):
        wire.decode("text")  # type: ignore[arg-type]


# ---------------------------------------------------------------- ledger and shared values
def test_ledger_counts_every_message_on_both_ends():
    bob, alice = make("bob", "alice")
    ledger = bob.ledger
    x = send(np.zeros(100, dtype=np.uint64), bob)
    assert ledger.messages == 1 and ledger.bytes_sent["me"] == ledger.bytes_received["bob"] > 800
    x.move(alice).get()
    assert sum(ledger.bytes_sent.values()) == sum(ledger.bytes_received.values()) == ledger.bytes
    assert ledger.messages == len(ledger.log) and ledger.rounds == ledger.messages  # no concurrency declared
    rounds, messages = ledger.rounds, ledger.messages
    with ledger.round():
        kept = send(np.array([1]), bob), send(np.array([2]), alice)
    assert (ledger.rounds, ledger.messages) == (rounds + 1, messages + 2)  # concurrent messages: one round
    assert [p.location.name for p in kept] == ["bob", "alice"]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_shared_tensor_beaver_uses_one_opening_round(n):
    workers = make(*[f"w{i}" for i in range(n)], "provider")
    parties, provider = workers[:n], workers[n]
    ledger = provider.ledger
    x = share_among(np.array([[1, -2], [3, 4]]), parties, crypto_provider=provider)
    y = share_among(np.array([[5, 6], [-7, 8]]), parties, crypto_provider=provider)
    before = dict(ledger.rounds_by_kind), dict(ledger.messages_by_kind)
    z = x * y
    assert ledger.rounds_by_kind["open"] - before[0].get("open", 0) == 1
    assert ledger.messages_by_kind["open"] - before[1].get("open", 0) == n * (n - 1)
    assert ledger.messages_by_kind["dealer"] - before[1].get("dealer", 0) == n
    assert z.get().tolist() == [[5, -12], [-21, 32]]
    assert (x @ y).get().tolist() == (np.array([[1, -2], [3, 4]]) @ np.array([[5, 6], [-7, 8]])).tolist()
    del x, y
    assert stored(*workers) == 0  # no share, triple part or opened piece left behind


ints = st.integers(-(2**20), 2**20)


@settings(max_examples=15)
@given(a=st.lists(ints, min_size=4, max_size=4), b=st.lists(ints, min_size=4, max_size=4), n=st.integers(2, 3),
       k=st.integers(-5, 5))
@example(a=[2**20, -(2**20), 0, 1], b=[2**20, 2**20, -1, 0], n=2, k=0)
def test_shared_tensor_matches_numpy(a, b, n, k):
    workers = make(*[f"w{i}" for i in range(n)], "cp")
    parties, cp = workers[:n], workers[n]
    av, bv = np.array(a).reshape(2, 2), np.array(b).reshape(2, 2)
    x, y = share_among(av, parties, crypto_provider=cp), share_among(bv, parties, crypto_provider=cp)
    assert (x + y).get().tolist() == (av + bv).tolist()
    assert (x - y).get().tolist() == (av - bv).tolist()
    assert (k - x).get().tolist() == (k - av).tolist()
    assert (-x + k).get().tolist() == (-av + k).tolist()
    assert (x * y).get().tolist() == (av * bv).tolist()
    assert (x * k).get().tolist() == (av * k).tolist()
    assert (x @ y).get().tolist() == (av @ bv).tolist()
    assert (x @ bv).get().tolist() == (av @ bv).tolist()
    assert (bv @ x).get().tolist() == (bv @ av).tolist()


@settings(max_examples=15)
@given(a=st.floats(-100, 100), b=st.floats(-100, 100))
@example(a=-100.0, b=100.0)
def test_shared_tensor_fixed_point(a, b):
    jake, john, secure, cp = make("jake", "john", "secure_worker", "cp")
    fp = FixedPoint()
    x = send(np.array([a, b]), jake).share(jake, john, secure, crypto_provider=cp, encoding=fp)
    y = share_among(np.array([b, a]), (jake, john, secure), crypto_provider=cp, encoding=fp)
    tol = (abs(a) + abs(b)) / fp.scale + 2 / fp.scale
    assert np.allclose((x * y).get(), [a * b, a * b], rtol=0, atol=tol)
    assert np.allclose((x * 0.5).get(), [a / 2, b / 2], rtol=0, atol=2 / fp.scale)
    assert np.allclose((x + y - 1.5).get(), [a + b - 1.5] * 2, rtol=0, atol=2 / fp.scale)


def test_shared_tensor_wraps_at_the_ring_boundaries():
    a, b, cp = make("a", "b", "cp")
    x = share_among(np.array([-(2**63), 2**63 - 1, 0, -1], dtype=object), (a, b), crypto_provider=cp)
    assert (x + 1).get().tolist() == [-(2**63) + 1, -(2**63), 1, 0]
    assert (x * x).get().tolist() == [0, 1, 0, 1]  # (2**63)**2 and (2**63 - 1)**2 mod 2**64
    y = share_among(np.array([1, 2, 3]), (a, b), ring=Ring(7), crypto_provider=cp)
    assert ((y * y) + 1).get().tolist() == [2, -2, 3]  # 2, 5, 10 mod 7 in the signed view [-3, 3]


def test_shared_tensor_errors():
    a, b, c, cp = make("a", "b", "c", "cp")
    x = share_among(np.array([1, 2]), (a, b), crypto_provider=cp)
    with pytest.raises(PartyCountError, match="at least 2 workers"):
        share_among(np.array([1]), (a,))
    with pytest.raises(ValueError, match="distinct"):
        share_among(np.array([1]), (a, a))
    with pytest.raises(ValueError, match="must not be one of the share holders"):
        share_among(np.array([1]), (a, b), crypto_provider=a)
    with pytest.raises(PartyCountError, match="same workers"):
        x + share_among(np.array([1, 2]), (a, c))
    with pytest.raises(ShapeMismatchError, match=r"\(2,\) and \(3,\)"):
        x * share_among(np.array([1, 2, 3]), (a, b), crypto_provider=cp)
    with pytest.raises(ValueError, match="crypto provider"):
        share_among(np.array([1]), (a, b)) * share_among(np.array([1]), (a, b))
    x.get()
    with pytest.raises(PointerError, match="stale"):
        x + 1
    assert "SharedTensor(workers=('a', 'b')" in repr(share_among(np.array([1]), (a, b)))


def test_ledger_channel_records_stacked_protocols():
    w = make("s0", "s1", "s2", "dealer")
    ch, plain = LedgerChannel(w[:3], w[3]), Channel()
    x, y = share(np.arange(6).reshape(2, 3) - 3, 3), share(np.arange(6).reshape(3, 2), 3)
    d1, d2 = Dealer(3, key=bytes(16)), Dealer(3, key=bytes(16))
    assert (matmul(x, y, d1, ch).reconstruct() == matmul(x, y, d2, plain).reconstruct()).all()
    assert (relu(mul(x, x, d1, ch), d1, ch).reconstruct() == relu(mul(x, x, d2, plain), d2, plain).reconstruct()).all()
    ledger = w[0].ledger
    assert ledger.rounds_by_kind["open"] == ch.rounds == plain.rounds
    assert ledger.messages_by_kind["open"] == ch.messages
    assert ledger.bytes_by_kind["open"] >= ch.bytes  # real messages carry headers and checksums
    assert ledger.messages_by_kind["dealer"] == ch.dealer_messages


# ---------------------------------------------------------------- state machine against a plain model
class PointerWorld(RuleBasedStateMachine):
    """Random sequences of send / get / move / send-on / remote_get / copy / add / delete / clear, checked against
    a dictionary model; the invariant proves that no worker holds an object no live pointer accounts for."""

    NAMES = ("alice", "bob", "carol")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.workers = {n: VirtualWorker(n, self.ledger) for n in self.NAMES}
        self.ptrs: dict[int, Pointer] = {}
        self.model: dict[int, dict] = {}  # key -> {"chain": [names], "value": int, "cut": int | None}
        self.next_key = 0

    def _add(self, ptr: Pointer, chain: list[str], value: int, cut: int | None = None) -> None:
        self.ptrs[self.next_key], self.model[self.next_key] = ptr, {"chain": chain, "value": value, "cut": cut}
        self.next_key += 1

    def _pick(self, data, intact: bool = True) -> int | None:
        keys = [k for k, m in self.model.items() if not intact or m["cut"] is None]
        return data.draw(st.sampled_from(sorted(keys))) if keys else None

    def _drop(self, key: int) -> tuple[Pointer, dict]:
        return self.ptrs.pop(key), self.model.pop(key)

    @rule(worker=st.sampled_from(NAMES), value=st.integers(-1000, 1000))
    def send_value(self, worker, value):
        self._add(send(np.array([value]), self.workers[worker]), [worker], value)

    @rule(data=st.data())
    def get(self, data):
        key = self._pick(data, intact=False)
        if key is None:
            return
        ptr, m = self._drop(key)
        if m["cut"] == 0:
            with pytest.raises(PointerError):
                ptr.get()
            return
        out = ptr.get()
        if len(m["chain"]) == 1:
            assert out.tolist() == [m["value"]]
        else:
            cut = None if m["cut"] is None else m["cut"] - 1
            self._add(out, m["chain"][1:], m["value"], cut)

    @rule(data=st.data(), to=st.sampled_from(NAMES))
    def move(self, data, to):
        key = self._pick(data)
        if key is not None:
            ptr, m = self._drop(key)
            self._add(ptr.move(self.workers[to]), [to] + m["chain"][1:], m["value"])

    @rule(data=st.data(), to=st.sampled_from(NAMES))
    def send_pointer_on(self, data, to):
        key = self._pick(data)
        if key is not None:
            ptr, m = self._drop(key)
            self._add(ptr.send(self.workers[to]), [to] + m["chain"], m["value"])

    @rule(data=st.data())
    def remote_get(self, data):
        key = self._pick(data)
        if key is not None:
            self.ptrs[key].remote_get()
            chain = self.model[key]["chain"]
            self.model[key]["chain"] = chain[:1] + chain[2:]

    @rule(data=st.data())
    def copy(self, data):
        key = self._pick(data)
        if key is not None:
            m = self.model[key]
            self._add(self.ptrs[key].copy(), list(m["chain"]), m["value"])

    @rule(data=st.data())
    def add_at_same_worker(self, data):
        key = self._pick(data)
        if key is None or len(self.model[key]["chain"]) != 1:
            return
        loc = self.model[key]["chain"][0]
        others = [k for k, m in self.model.items() if m["cut"] is None and m["chain"] == [loc]]
        other = data.draw(st.sampled_from(sorted(others)))
        total = self.model[key]["value"] + self.model[other]["value"]
        self._add(self.ptrs[key] + self.ptrs[other], [loc], total)

    @rule(data=st.data())
    def delete(self, data):
        key = self._pick(data, intact=False)
        if key is not None:
            self._drop(key)

    @precondition(lambda self: len(self.model) > 0)
    @rule(worker=st.sampled_from(NAMES))
    def clear(self, worker):
        self.workers[worker].clear_objects()
        for m in self.model.values():
            if worker in m["chain"]:
                first = m["chain"].index(worker)
                m["cut"] = first if m["cut"] is None else min(m["cut"], first)

    @invariant()
    def no_leaks(self):  # no gc.collect(): reference counting alone must free every dropped pointer's object
        expected = sum(len(m["chain"]) if m["cut"] is None else m["cut"] for m in self.model.values())
        assert sum(len(w.objects) for w in self.workers.values()) == expected
        assert sum(self.ledger.bytes_sent.values()) == self.ledger.bytes

    def teardown(self) -> None:
        self.ptrs.clear()
        gc.collect()
        assert sum(len(w.objects) for w in self.workers.values()) == 0


TestPointerWorld = PointerWorld.TestCase
TestPointerWorld.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)
