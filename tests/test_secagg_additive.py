"""Tests of multi-server additive secure aggregation (refimpl.secagg.additive)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import (
    Z2_32,
    Z2_64,
    KeyFormatError,
    PartyCountError,
    Ring,
    RingMismatchError,
    ShapeMismatchError,
)
from refimpl.errors import ConfigurationError, OutOfRangeError, ProtocolError, ReplayError, ThresholdError
from refimpl.secagg import (
    HEADER_BYTES,
    AdditiveClient,
    AdditiveConfig,
    AdditiveServer,
    Codec,
    PartialSum,
    ShareMessage,
    agree,
    combine_partial_sums,
    run_additive_round,
)

KEYS = {c: bytes([c % 256]) * 16 for c in range(64)}


def _client(cfg, c, key=None, round_=0):
    client = AdditiveClient(cfg, c, key=key)
    client.begin_round(round_)
    return client


@st.composite
def rounds(draw):
    servers = draw(st.integers(2, 4))
    k = draw(st.integers(1, 8))
    length = draw(st.integers(1, 6))
    clip = draw(st.sampled_from([0.5, 1.0, 100.0]))
    xs = {c: np.array(draw(st.lists(st.floats(-clip, clip), min_size=length, max_size=length)))
          for c in range(k)}
    lost = draw(st.sets(st.tuples(st.integers(0, k - 1), st.integers(0, servers - 1)), max_size=k))
    ring = draw(st.sampled_from([Z2_64, Ring(2**48), Ring.prime(2**61 - 1)]))
    min_clients = draw(st.integers(1, min(k, 3)))
    codec = Codec(length=length, max_clients=k, clip=clip, ring=ring)
    return AdditiveConfig(codec=codec, servers=servers, min_clients=min_clients), xs, lost


@given(rounds(), st.integers(0, 2**40))
def test_total_is_exactly_the_sum_over_the_agreed_clients(case, round_):
    cfg, xs, lost = case
    lost_clients = {c for c, _ in lost}
    if len(set(xs) - lost_clients) < cfg.min_clients:
        with pytest.raises(ThresholdError, match=f"only {len(set(xs) - lost_clients)} clients agreed"):
            run_additive_round(cfg, xs, round_=round_, keys=KEYS, lost=lost)
        return
    res = run_additive_round(cfg, xs, round_=round_, keys=KEYS, lost=lost)
    assert res.clients == frozenset(xs) - lost_clients
    ring = cfg.ring
    expected = ring.zeros(cfg.length)
    for c in res.clients:
        expected = ring.add(expected, cfg.codec.encode(xs[c]))
    assert np.array_equal(res.ring_total, expected)  # exact in the ring
    plain = sum((xs[c] for c in res.clients), np.zeros(cfg.length))
    bound = len(res.clients) / 2 ** (cfg.codec.frac_bits + 1) + 1e-9 * (1 + np.abs(plain))  # rounding of each encode
    assert np.all(np.abs(res.total - plain) <= bound)


def test_integer_mode_is_exact():
    cfg = AdditiveConfig(codec=Codec(length=4, max_clients=5, bits=8, ring=Z2_32), servers=3)
    xs = {c: np.array([255, 0, c, 17]) for c in range(5)}
    res = run_additive_round(cfg, xs, keys=KEYS)
    assert res.total.tolist() == [1275, 0, 10, 85]


@pytest.mark.parametrize("servers", [2, 3, 5])
@pytest.mark.parametrize("ring,length", [(Z2_64, 1000), (Z2_32, 1000), (Z2_64, 100_000)])
def test_upload_is_at_most_1_05_times_the_encoded_update(servers, ring, length):
    cfg = AdditiveConfig(codec=Codec(length=length, max_clients=4, clip=1.0, frac_bits=8, ring=ring), servers=servers)
    xs = {c: np.full(length, 0.5) for c in range(2)}
    res = run_additive_round(cfg, xs)
    sent = res.ledger.sent("client 0")
    assert sent == cfg.encoded_nbytes + 16 * (servers - 1) + HEADER_BYTES * servers
    assert sent / cfg.encoded_nbytes <= 1.05
    assert res.ledger.messages_sent["client 0"] == servers
    assert res.ledger.sent("client 0", round=0) == sent  # per-round figures: the ledger keeps every message


def test_sizing_errors_name_the_numbers():
    with pytest.raises(ConfigurationError, match=r"1048576 clients x per-client bound 65536 .* Z2_32"):
        AdditiveConfig(codec=Codec(length=1, max_clients=2**20, clip=1.0, ring=Z2_32))
    with pytest.raises(ConfigurationError, match=r"2 clients x per-client bound 4294967295"):
        AdditiveConfig(codec=Codec(length=1, max_clients=2, bits=32, ring=Z2_32))
    AdditiveConfig(codec=Codec(length=1, max_clients=1, bits=32, ring=Z2_32), min_clients=1)  # K (2^b - 1) = M - 1
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigurationError, match="positive and finite"):
            AdditiveConfig(codec=Codec(length=1, max_clients=100, clip=bad))
    with pytest.raises(ConfigurationError, match="bits"):
        AdditiveConfig(codec=Codec(length=1, max_clients=100, bits=0))
    with pytest.raises(PartyCountError, match="at least 2"):
        AdditiveConfig(codec=Codec(length=1, max_clients=100), servers=1)
    with pytest.raises(ConfigurationError, match="min_clients"):
        AdditiveConfig(codec=Codec(length=1, max_clients=3), min_clients=4)


def test_contributions_out_of_range_are_refused_not_clipped():
    cfg = AdditiveConfig(codec=Codec(length=2, max_clients=100, clip=1.0))
    with pytest.raises(OutOfRangeError, match="1.5"):
        _client(cfg, 0).contribute([0.0, 1.5])
    with pytest.raises(OutOfRangeError, match="nan"):
        _client(cfg, 0).contribute([0.0, math.nan])
    with pytest.raises(ShapeMismatchError, match=r"\(3,\)"):
        _client(cfg, 0).contribute([0.0, 0.0, 0.0])
    with pytest.raises(OutOfRangeError, match="65537"):
        _client(cfg, 0).contribute(encoded=np.array([65537, 0]))


def _setup(cfg, clients=(0, 1, 2), round_=5):
    servers = [AdditiveServer(cfg, s) for s in range(cfg.servers)]
    for s in servers:
        s.begin_round(round_, clients)
    msgs = {c: _client(cfg, c, KEYS[c], round_).contribute(np.full(cfg.length, 0.25 * (c + 1)))
            for c in clients}
    return servers, msgs


def _finish(cfg, servers):
    agreed = agree([s.received for s in servers])
    return agreed, cfg.codec.decode_sum(combine_partial_sums(cfg, [s.partial_sum(agreed) for s in servers]))


def test_malformed_messages_are_rejected_and_leave_the_aggregate_intact():
    cfg = AdditiveConfig(codec=Codec(length=3, max_clients=4), servers=2)
    servers, msgs = _setup(cfg)
    for c in (0, 1):
        for m in msgs[c]:
            servers[m.server].receive(m)
    arr_msg = next(m for m in msgs[2] if isinstance(m.payload, np.ndarray))
    key_msg = next(m for m in msgs[2] if isinstance(m.payload, bytes))
    srv, ksrv = servers[arr_msg.server], servers[key_msg.server]
    good = arr_msg.payload

    def forge(m, **kw):
        fields = {"round": m.round, "client": m.client, "server": m.server, "ring": m.ring, "payload": m.payload,
                  "prg": m.prg}
        fields.update(kw)
        return ShareMessage(**fields)

    cases = [
        (forge(arr_msg, payload=good[:2]), ShapeMismatchError, r"shape \(2,\)"),
        (forge(arr_msg, payload=good.astype(np.uint32)), RingMismatchError, "uint32"),
        (forge(arr_msg, ring=Z2_32), RingMismatchError, "Z2_32"),
        (forge(arr_msg, round=4), ProtocolError, "round 4"),
        (forge(arr_msg, client=9), ProtocolError, "client 9 is not in round 5"),
        (forge(arr_msg, server=1 - arr_msg.server), ProtocolError, "addressed to server"),
        (forge(arr_msg, payload=b"k" * 16), ProtocolError, "expects client 2's share array"),
        (forge(key_msg, payload=b"short"), KeyFormatError, "5 bytes"),
        (forge(key_msg, payload=good), ProtocolError, "stream key"),
        (forge(key_msg, prg="chacha20"), ProtocolError, "chacha20"),
    ]
    for msg, err, pattern in cases:
        target = srv if pattern == "addressed to server" else servers[msg.server]
        with pytest.raises(err, match=pattern):
            target.receive(msg)
    assert srv.received == ksrv.received == frozenset({0, 1})
    for m in msgs[2]:
        servers[m.server].receive(m)
    with pytest.raises(ReplayError, match="client 2 .* replay"):  # replay of an accepted message
        srv.receive(arr_msg)
    with pytest.raises(ReplayError):
        ksrv.receive(key_msg)
    agreed, total = _finish(cfg, servers)
    assert agreed == {0, 1, 2} and total.tolist() == [1.5, 1.5, 1.5]
    with pytest.raises(TypeError, match="ShareMessage"):
        srv.receive(PartialSum(5, 0, frozenset(), good))


def test_rounds_are_domain_separated_and_old_rounds_rejected():
    cfg = AdditiveConfig(codec=Codec(length=4, max_clients=2), servers=2)
    client = _client(cfg, 1, KEYS[1], 0)
    a = client.contribute(np.zeros(4))
    client.begin_round(1)
    b = client.contribute(np.zeros(4))
    assert a[1].payload != b[1].payload and not np.array_equal(a[0].payload, b[0].payload)
    with pytest.raises(ProtocolError, match="already contributed to round 1"):
        client.contribute(np.zeros(4))
    with pytest.raises(ProtocolError, match="must increase"):
        client.begin_round(1)
    srv = AdditiveServer(cfg, a[0].server)
    srv.begin_round(1, [1])
    with pytest.raises(ProtocolError, match="carries round 0, but this party is in round 1"):
        srv.receive(a[0])
    with pytest.raises(ProtocolError, match="must increase"):
        srv.begin_round(1, [1])
    other = _client(cfg, 2, KEYS[1], 0)  # same master key, different client: different streams
    assert other.contribute(np.zeros(4))[-1].payload != a[1].payload


def test_agreement_and_release_rules():
    cfg = AdditiveConfig(codec=Codec(length=2, max_clients=4), servers=3, min_clients=2)
    with pytest.raises(ThresholdError, match="only 1 clients agreed"):
        run_additive_round(cfg, {0: [0.0, 0.0], 1: [1.0, 1.0]}, lost={(1, 0)})
    servers, msgs = _setup(cfg)
    for c in msgs:
        for m in msgs[c]:
            if not (c == 0 and m.server == 2):
                servers[m.server].receive(m)
    assert agree([s.received for s in servers]) == {1, 2}
    with pytest.raises(ProtocolError, match=r"no share from clients \[0\]"):
        servers[2].partial_sum({0, 1, 2})
    parts = [s.partial_sum({1, 2}) for s in servers]
    with pytest.raises(ProtocolError, match="different client sets"):
        combine_partial_sums(cfg, [*parts[:2], parts[2]._replace(clients=frozenset({1}))])
    with pytest.raises(ProtocolError, match="each of servers 0..2"):
        combine_partial_sums(cfg, parts[:2])
    with pytest.raises(ConfigurationError, match="exceed max_clients=4"):
        servers[0].begin_round(9, range(5))


def test_a_single_aggregator_sees_shares_that_do_not_depend_on_the_secret():
    """Each aggregator's share is a one-time pad: for the server holding the array, x + (uniform) -- with fixed
    keys the array for x and for x' differ by exactly x - x', and the key-holders receive identical keys."""
    cfg = AdditiveConfig(codec=Codec(length=3, max_clients=2, bits=4, ring=Z2_32), servers=2)
    m1 = _client(cfg, 0, KEYS[0]).contribute(np.array([1, 2, 3]))
    m2 = _client(cfg, 0, KEYS[0]).contribute(np.array([9, 9, 9]))  # (never do this: see the key-reuse tests)
    assert m1[1].payload == m2[1].payload
    assert (m2[0].payload - m1[0].payload).tolist() == [8, 7, 6]


@pytest.mark.parametrize("take", [False, True])
def test_receive_copies_the_share_unless_it_is_handed_over(take):
    # the default keeps a copy (a sender changing its array later changes nothing); take=True (the in-process
    # simulation, whose clients share into fresh arrays) keeps the array itself; the sum is the same either way
    cfg = AdditiveConfig(codec=Codec(length=4, max_clients=2), servers=2)
    xs = {1: np.array([0.5, -1.0, 0.75, 0.25]), 2: np.array([1.0, 1.0, -0.5, 0.0])}
    msgs = {c: _client(cfg, c, KEYS[c], 3).contribute(x) for c, x in xs.items()}
    servers = [AdditiveServer(cfg, s) for s in range(2)]
    for srv in servers:
        srv.begin_round(3, xs)
    arrays = []
    for c in xs:
        for m in msgs[c]:
            servers[m.server].receive(m, take=take)
            if isinstance(m.payload, np.ndarray):
                arrays.append(m.payload)
    kept = [s for srv in servers for s in srv._shares.values() if isinstance(s, np.ndarray)]
    assert len(arrays) == len(kept) == 2
    assert all(any(k is a for a in arrays) == take for k in kept)
    total = combine_partial_sums(cfg, [srv.partial_sum({1, 2}) for srv in servers])
    np.testing.assert_allclose(cfg.codec.decode_sum(total), xs[1] + xs[2], atol=1e-6)
    ref = run_additive_round(cfg, xs, round_=3, keys={c: KEYS[c] for c in xs})
    assert np.array_equal(total, ref.ring_total)
