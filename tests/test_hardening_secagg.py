"""Secure aggregation with misbehaving clients and careless callers (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.errors import ConfigurationError, KeyReuseError, ProtocolError, ThresholdError
from refimpl.fl.secure import make_secure_aggregator
from refimpl.ring import Z2_32
from refimpl.secagg import (
    AdditiveClient,
    AdditiveConfig,
    AdvertiseKeys,
    Codec,
    PartialSum,
    SecAggClient,
    SecAggConfig,
    ShareKeys,
    ShareMessage,
    UnmaskingResponse,
    run_additive_round,
    run_secagg_round,
)

LOW_ORDER = [bytes(32), (1).to_bytes(32, "little"),  # 0 and 1, and a point of order 8 on Curve25519
             bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]


def _cfg(n=5, t=3, length=4):
    return SecAggConfig(num_clients=n, threshold=t, codec=Codec(length=length, max_clients=n, bits=8, ring=Z2_32))


class EvilAdvertiser(SecAggClient):
    """Advertises a low-order X25519 public key (which makes every shared secret with it all zeros)."""

    point = LOW_ORDER[0]

    def advertise_keys(self):
        msg = super().advertise_keys()
        return msg._replace(s_public=self.point)


class ShortSharer(SecAggClient):
    """Answers Unmasking with seed shares one limb short."""

    def unmask(self, survivors):
        msg = super().unmask(survivors)
        return msg._replace(seed_shares={u: s[:-1] for u, s in msg.seed_shares.items()})


@pytest.mark.parametrize("point", LOW_ORDER)
def test_an_invalid_x25519_key_drops_and_names_that_client_and_the_round_finishes(point):
    cfg = _cfg()
    xs = {u: np.array([u, 1, 2, 3]) for u in range(1, 6)}
    evil = EvilAdvertiser(cfg, 3)
    evil.point = point
    clients = {u: SecAggClient(cfg, u) for u in xs} | {3: evil}
    res = run_secagg_round(cfg, xs, encoded=True, clients=clients)
    assert set(res.rejected) == {3} and "client 3's masking public key is an invalid (low-order)" in res.rejected[3]
    assert res.clients == {1, 2, 4, 5}
    assert res.total.tolist() == [12, 4, 8, 12]


def test_too_many_invalid_keys_abort_with_the_threshold_error():
    cfg = _cfg(n=4, t=3)
    xs = {u: np.arange(4) for u in range(1, 5)}
    clients = {u: (EvilAdvertiser if u in (1, 2) else SecAggClient)(cfg, u) for u in xs}
    with pytest.raises(ThresholdError, match="only 2 clients completed stage AdvertiseKeys"):
        run_secagg_round(cfg, xs, encoded=True, clients=clients)


def test_wrong_length_unmasking_shares_are_rejected_naming_the_client_and_the_round_goes_on():
    cfg = _cfg()
    xs = {u: np.array([u, 0, 0, 1]) for u in range(1, 6)}
    clients = {u: SecAggClient(cfg, u) for u in xs} | {4: ShortSharer(cfg, 4)}
    res = run_secagg_round(cfg, xs, encoded=True, clients=clients)
    assert set(res.rejected) == {4} and "client 4's share of client" in res.rejected[4]
    assert "must be 8 integer limbs, got shape (7,)" in res.rejected[4]
    assert res.clients == {1, 2, 3, 4, 5} and res.total.tolist() == [15, 0, 0, 5]  # 4's input still counts


def test_the_same_key_never_pads_two_secrets():
    key = bytes(range(16))
    cfg = AdditiveConfig(codec=Codec(length=2, max_clients=4, clip=1.0), servers=2)
    with pytest.raises(KeyReuseError, match="clients 1 and 2 were given the same master key"):
        run_additive_round(cfg, {1: [0.1, 0.2], 2: [0.3, 0.4]}, keys={1: key, 2: key})
    with pytest.raises(KeyReuseError, match="clients 1 and 2 were given the same master key"):
        run_secagg_round(_cfg(), {u: np.zeros(4, np.int64) for u in (1, 2, 3)}, encoded=True,
                         keys={1: key, 2: key, 3: bytes(16)})
    # one client object cannot contribute twice in a round, nor go back to a round
    c = AdditiveClient(cfg, 1, key=key)
    c.begin_round(5)
    c.contribute([0.1, 0.2])
    with pytest.raises(ProtocolError, match="already contributed to round 5"):
        c.contribute([0.5, 0.5])
    with pytest.raises(ProtocolError, match="must increase"):
        c.begin_round(5)
    # two client objects with one key (a broken client library): the second is refused by the server
    from refimpl.secagg import AdditiveServer
    srv = AdditiveServer(cfg, 0)  # receives client 1's and client 3's stream keys
    srv.begin_round(0, [1, 3])
    for attempt in (1, 2):
        client = AdditiveClient(cfg, 1, key=key)  # both claim id 1
        client.begin_round(0)
        msg = next(m for m in client.contribute([0.1, 0.2 * attempt]) if m.server == 0)
        if attempt == 1:
            srv.receive(msg)
        else:
            with pytest.raises(ProtocolError, match="replay rejected"):
                srv.receive(msg)
            with pytest.raises(KeyReuseError, match="client 3 sent the same stream key as client 1"):
                srv.receive(ShareMessage(0, 3, 0, msg.ring, msg.payload, msg.prg))
    # SecAgg: two clients advertising the same public keys
    sc = SecAggConfig(num_clients=3, threshold=2, codec=Codec(length=1, max_clients=3, bits=4, ring=Z2_32))
    a = SecAggClient(sc, 1, key=key)
    a.begin_round(0)
    ad = a.advertise_keys()
    from refimpl.secagg import SecAggServer
    s = SecAggServer(sc)
    s.begin_round(0)
    s.receive(ad)
    with pytest.raises(KeyReuseError, match="client 2 advertised the same X25519 public key as client 1"):
        s.receive(ad._replace(client=2))


def test_protocol_message_reprs_hold_no_secrets():
    cfg = AdditiveConfig(codec=Codec(length=3, max_clients=2, clip=1.0), servers=2)
    c = AdditiveClient(cfg, 0, key=bytes(range(16)))
    c.begin_round(0)
    msgs = c.contribute([0.5, 0.25, -1.0])
    key_msg = next(m for m in msgs if isinstance(m.payload, bytes))
    text = " ".join(repr(m) for m in msgs) + repr(c)
    assert key_msg.payload.hex() not in text and repr(key_msg.payload) not in text and "stream key, 16 bytes" in text
    assert str(int(msgs[0].payload[0])) not in text
    ps = PartialSum(0, 1, frozenset({1, 2}), np.array([123456789, 987654321], np.uint64))
    assert "123456789" not in repr(ps) and "2 elements" in repr(ps)
    ur = UnmaskingResponse(0, 1, {2: np.array([4242, 4343])}, {3: np.array([777777])})
    assert "4242" not in repr(ur) and "777777" not in repr(ur) and "key shares of [2]" in repr(ur)
    ad = AdvertiseKeys(0, 1, b"\x11" * 32, b"\x22" * 32)
    assert "11" * 4 not in repr(ad) and "\\x11" not in repr(ad)
    sk = ShareKeys(0, 1, {2: b"\x33" * 40})
    assert "\\x33" not in repr(sk) and "[2]" in repr(sk)
    assert "key=<hidden>" in repr(SecAggClient(_cfg(), 1, key=bytes(16)))


def test_additive_aggregator_never_releases_one_client():
    """At 70% dropout many rounds keep one survivor: with min_clients=2 (default) those rounds abort instead of
    releasing that client's update as 'the mean'."""
    agg = make_secure_aggregator("additive", dropout=0.7, key=b"k" * 16)
    upd = {"w": np.linspace(-1, 1, 6 * 3).reshape(6, 3).astype(np.float32)}
    for _ in range(40):
        agg(upd, np.ones(6))
    released = [r for r in agg.history if not r.aborted]
    assert all(r.survivors >= 2 for r in released) and any(r.aborted for r in agg.history)
    assert all(r.threshold == 2 for r in agg.history)
    with pytest.raises(ConfigurationError, match="min_clients"):
        make_secure_aggregator("additive", min_clients=0)
    with pytest.raises(ConfigurationError, match="min_clients"):
        AdditiveConfig(codec=Codec(length=1, max_clients=3), min_clients=4)
    assert AdditiveConfig(codec=Codec(length=1, max_clients=3)).min_clients == 2


@given(st.integers(2, 12), st.integers(-3, 20))
def test_thresholds_are_refused_not_clamped(m, t):
    agg = make_secure_aggregator("secagg", threshold=t) if t >= 2 else None
    if t < 2:
        with pytest.raises(ConfigurationError, match="threshold must be an integer >= 2"):
            make_secure_aggregator("secagg", threshold=t)
        return
    if t > m:
        with pytest.raises(ConfigurationError, match=f"t={t} is impossible with {m} clients per round: the valid "
                                                     f"range is 2..{m}"):
            agg.threshold_for(m)
    else:
        assert agg.threshold_for(m) == t
    if not 2 <= t <= m:
        with pytest.raises(ThresholdError, match=f"threshold t={t} is impossible: it must satisfy 2 <= t <= {m}"):
            SecAggConfig(num_clients=m, threshold=t, codec=Codec(length=1, max_clients=m))


def test_configs_are_frozen_keyword_only_and_hold_a_codec():
    codec = Codec(length=2, max_clients=4)
    cfg = AdditiveConfig(codec=codec)
    with pytest.raises(TypeError):
        AdditiveConfig(codec, 2)  # type: ignore[misc]  # keyword-only
    with pytest.raises(TypeError):
        Codec(2, 4)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.servers = 3  # type: ignore[misc]  # frozen
    assert cfg.codec is codec and cfg.length == 2 and cfg.ring == codec.ring
    with pytest.raises(TypeError):
        AdditiveClient(cfg, 1, bytes(16))  # type: ignore[misc]  # key= is keyword-only
    with pytest.raises(ConfigurationError, match="max_clients=4, fewer than num_clients=5"):
        SecAggConfig(num_clients=5, threshold=3, codec=codec)
