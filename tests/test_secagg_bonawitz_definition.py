"""SecAgg's client and server messages against the protocol's definitions, term by term.

The client shares both its secrets in one vectorised Shamir pass, reuses the X25519 secrets of ShareKeys to decrypt
in Unmasking, and folds its masks into the input chunk by chunk; the server checks advertised keys against the
low-order points and rebuilds seeds in groups. These tests recompute every message from the definitions (HKDF
labels, one X25519 exchange per pair, ``share_bytes`` one secret at a time, ``PRG`` masks added one by one) and
require equality, bit for bit.
"""

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.errors import ProtocolError
from refimpl.prg import Stream, derive_key, key_length
from refimpl.ring import Ring
from refimpl.secagg import Codec, SecAggClient, SecAggConfig, SecAggServer
from refimpl.secagg.bonawitz.masks import LOW_ORDER_U, aad, check_public_key, enc_key, pair_seed
from refimpl.sharing.shamir import share_bytes

P25519 = 2**255 - 19


def _definition_keys(master, r, u, prg):
    """What begin_round derives, by its definition."""
    c = X25519PrivateKey.from_private_bytes(derive_key(master, "secagg/x25519-c", r, u, length=32))
    s = X25519PrivateKey.from_private_bytes(derive_key(master, "secagg/x25519-s", r, u, length=32))
    return c, s, derive_key(master, "secagg/self-mask", r, u, length=key_length(prg)), \
        derive_key(master, "secagg/shamir", r, u)


def _dh(private, public):
    return private.exchange(X25519PublicKey.from_public_bytes(public))


@st.composite
def rounds(draw):
    n = draw(st.integers(3, 8))
    degree = draw(st.sampled_from([None] + [k for k in (2, 4) if k < n - 1]))
    size = n if degree is None else degree + 1
    t = draw(st.integers(2, size))
    ring = draw(st.sampled_from([Ring(2**64), Ring(2**32)]))
    prg = draw(st.sampled_from(["aes128-ctr", "chacha20"]))
    length = draw(st.integers(1, 300))
    cfg = SecAggConfig(num_clients=n, threshold=t, degree=degree, prg=prg,
                       codec=Codec(length=length, max_clients=n, bits=8, ring=ring))
    masters = {u: draw(st.binary(min_size=16, max_size=16), label=f"key {u}") for u in range(1, n + 1)}
    xs = {u: np.array(draw(st.lists(st.integers(0, 255), min_size=length, max_size=length)), dtype=np.int64)
          for u in range(1, n + 1)}
    # at most one client drops before MaskedInputCollection, and only if every neighbourhood keeps t members
    dropped = draw(st.sampled_from([None, *range(1, n + 1)]))
    if dropped is not None and any(len(cfg.closed_neighbourhood(u) - {dropped}) < t for u in range(1, n + 1)):
        dropped = None
    return cfg, masters, xs, dropped, draw(st.integers(0, 2**40))


@settings(max_examples=25, deadline=None)
@given(rounds())
def test_every_message_is_its_definition(case):
    cfg, masters, xs, dropped, r = case
    ring, prg, t = cfg.ring, cfg.prg, cfg.threshold
    everyone = sorted(masters)
    keys = {u: _definition_keys(masters[u], r, u, prg) for u in everyone}
    clients = {u: SecAggClient(cfg, u, key=masters[u]) for u in everyone}
    server = SecAggServer(cfg)
    server.begin_round(r)
    for u, c in clients.items():
        c.begin_round(r)
        ad = c.advertise_keys()
        assert (ad.c_public, ad.s_public) == tuple(k.public_key().public_bytes_raw() for k in keys[u][:2])
        server.receive(ad)
    roster = server.finish_stage()

    def definition_shares(w):
        """w's shares of (s_w^SK, b_w), one secret at a time, as share_bytes defines them."""
        holders = sorted(cfg.closed_neighbourhood(w))
        _, s_sk, b, shamir = keys[w]
        return (share_bytes(s_sk.private_bytes_raw(), len(holders), t, points=holders, key=derive_key(shamir, "s")),
                share_bytes(b, len(holders), t, points=holders, key=derive_key(shamir, "b")))

    shares = {w: definition_shares(w) for w in everyone}
    for u, c in clients.items():
        msg = c.share_keys(roster)
        assert set(msg.ciphertexts) == set(cfg.graph[u])
        for v, ct in msg.ciphertexts.items():
            secret = _dh(keys[v][0], roster[u][0])  # the receiver's view: X25519(c_v^SK, c_u^PK)
            plain = AESGCM(enc_key(secret, r, u, v)).decrypt(bytes(12), ct, aad(r, u, v))
            sk_sh, b_sh = shares[u]
            assert plain == np.concatenate([sk_sh.share_of(v), b_sh.share_of(v)]).astype("<u4").tobytes()
        server.receive(msg)
    inboxes = server.finish_stage()

    for u, c in clients.items():
        if u == dropped:
            continue
        msg = c.masked_input(inboxes[u], encoded=xs[u])
        expected = ring.add(ring.element(xs[u]), ring.sample(Stream(keys[u][2], cipher=prg), cfg.length))
        for v in sorted(cfg.graph[u]):  # masks added one by one: + PRG(s_uv) if u < v, else -
            seed = pair_seed(_dh(keys[u][1], roster[v][1]), r, u, v, cfg)
            m = ring.sample(Stream(seed, cipher=prg), cfg.length)
            expected = ring.add(expected, m) if u < v else ring.sub(expected, m)
        assert msg.masked.dtype == ring.dtype and np.array_equal(msg.masked, expected)
        server.receive(msg)
    u3 = server.finish_stage()

    for u, c in clients.items():
        if u == dropped:
            continue
        msg = c.unmask(u3)
        for w in sorted(cfg.closed_neighbourhood(u)):
            sk_sh, b_sh = shares[w]
            if w == dropped:
                assert np.array_equal(msg.key_shares[w], sk_sh.share_of(u)) and w not in msg.seed_shares
            else:
                assert np.array_equal(msg.seed_shares[w], b_sh.share_of(u)) and w not in msg.key_shares
        server.receive(msg)
    total = server.finish_stage()
    plain = ring.sum(np.stack([ring.element(xs[u]) for u in u3]), axis=0)
    assert np.array_equal(total, plain)


def _encodings(u):
    """Every 32-byte encoding X25519 reads as u mod p: u, u + p when below 2^255, each with bit 255 set or not."""
    values = [u] + ([u + P25519] if u + P25519 < 2**255 else [])
    return [(v | high).to_bytes(32, "little") for v in values for high in (0, 1 << 255)]


def _exchange_refuses(public):
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("u", sorted(LOW_ORDER_U))
def test_every_encoding_of_a_low_order_point_is_refused_as_exchange_refuses_it(u):
    for public in _encodings(u):
        assert _exchange_refuses(public)
        with pytest.raises(ProtocolError, match="client 4's masking public key is an invalid \\(low-order\\)"):
            check_public_key(public, 4, "masking")
    for near in (u - 1, u + 1):  # the neighbouring u-coordinates are ordinary keys
        if 0 <= near < P25519 and near not in LOW_ORDER_U:
            public = near.to_bytes(32, "little")
            assert not _exchange_refuses(public)
            check_public_key(public, 4, "masking")


@given(st.binary(min_size=32, max_size=32))
def test_public_key_check_agrees_with_exchange(public):
    refused = _exchange_refuses(public)
    if refused:
        with pytest.raises(ProtocolError):
            check_public_key(public, 1, "encryption")
    else:
        check_public_key(public, 1, "encryption")
    assert refused == ((int.from_bytes(public, "little") & ((1 << 255) - 1)) % P25519 in LOW_ORDER_U)
