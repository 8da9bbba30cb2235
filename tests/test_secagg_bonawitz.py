"""Tests of single-server SecAgg (Bonawitz et al. 2017) and SecAgg+ (refimpl.secagg.bonawitz.client)."""

import itertools

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from refimpl import Z2_32, RingMismatchError, ShapeMismatchError
from refimpl.errors import ConfigurationError, ProtocolError, ReplayError, ThresholdError
from refimpl.prg import Stream
from refimpl.ring import Ring
from refimpl.secagg import (
    STAGES,
    Codec,
    MaskedInput,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    ShareKeys,
    harary_neighbours,
    run_secagg_round,
)

KEYS = {u: bytes([u]) * 16 for u in range(1, 200)}


def _client(cfg, u, round_, key=None):
    client = SecAggClient(cfg, u, key=key)
    client.begin_round(round_)
    return client


def _server(cfg, round_):
    server = SecAggServer(cfg)
    server.begin_round(round_)
    return server


def _inputs(n, length, seed):
    return {u: Ring(256).sample(Stream(bytes([seed % 256]) * 16, offset=64 * u), length).astype(np.int64)
            for u in range(1, n + 1)}


def _plain(xs, clients):
    return sum((xs[u] for u in clients), np.zeros_like(next(iter(xs.values())))) % 2**32


class SecAggRound(RuleBasedStateMachine):
    """Drives one SecAgg round stage by stage; clients drop at arbitrary points, messages are replayed or forged.

    Model: the server's output equals the plaintext sum over U3 (clients whose masked input arrived), and the round
    aborts with ThresholdError exactly when a stage ends with fewer than t participants (complete graph).
    """

    @initialize(n=st.integers(3, 7), data=st.data())
    def setup(self, n, data):
        t = data.draw(st.integers(2, n - 1), label="t")  # n - t + 1 drops abort; fewer are survived
        self.cfg = SecAggConfig(num_clients=n, threshold=t, codec=Codec(length=3, max_clients=n, bits=8, ring=Z2_32))
        self.round = data.draw(st.integers(0, 2**40), label="round")
        self.xs = _inputs(n, 3, self.round)
        self.server = _server(self.cfg, self.round)
        self.clients = {u: _client(self.cfg, u, self.round, KEYS[u]) for u in range(1, n + 1)}
        self.alive = set(self.clients)
        self.drop_stages: set[int] = set()
        self.sent_now: dict[int, object] = {}
        self.broadcast = None
        self.finished = False

    @precondition(lambda self: not self.finished and self.alive and self.server.stage not in self.drop_stages)
    @rule(data=st.data())
    def drop(self, data):
        """At most one client drops per stage (anywhere within it), so that rounds often complete."""
        self.alive.discard(data.draw(st.sampled_from(sorted(self.alive)), label="dropped"))
        self.drop_stages.add(self.server.stage)

    def _pending(self):
        return sorted(self.alive & self.server.sets[-1] - set(self.sent_now)) if not self.finished else []

    @precondition(lambda self: len(self._pending()) > 0)
    @rule(data=st.data())
    def send_one(self, data):
        self._send(data.draw(st.sampled_from(self._pending()), label="sender"))

    def _send(self, u):
        stage, c = self.server.stage, self.clients[u]
        if stage == 0:
            msg = c.advertise_keys()
        elif stage == 1:
            msg = c.share_keys(self.broadcast)
        elif stage == 2:
            msg = c.masked_input(self.broadcast[u], encoded=self.xs[u])
        else:
            msg = c.unmask(self.broadcast)
        self.server.receive(msg)
        self.sent_now[u] = msg

    @precondition(lambda self: not self.finished and len(self.sent_now) > 0)
    @rule(data=st.data())
    def replay(self, data):
        msg = self.sent_now[data.draw(st.sampled_from(sorted(self.sent_now)), label="replayed")]
        with pytest.raises(ReplayError, match="replay rejected"):
            self.server.receive(msg)

    @precondition(lambda self: not self.finished and len(self.sent_now) > 0)
    @rule(data=st.data())
    def wrong_round(self, data):
        msg = self.sent_now[data.draw(st.sampled_from(sorted(self.sent_now)), label="forged")]
        with pytest.raises(ProtocolError, match=f"carries round {self.round + 1}"):
            self.server.receive(msg._replace(round=self.round + 1))

    @precondition(lambda self: not self.finished and len(self._pending()) == 0)
    @rule()
    def finish(self):
        self._finish()

    def teardown(self):
        """Whatever the rules did, drive the round to its end (everyone still alive sends) and check the model."""
        while not getattr(self, "finished", True):
            for u in self._pending():
                self._send(u)
            self._finish()

    def _finish(self):
        stage, senders = self.server.stage, set(self.sent_now)
        t = self.cfg.threshold
        self.sent_now = {}
        if stage < 3 and len(senders) < t:
            with pytest.raises(ThresholdError, match=f"fewer than the threshold t={t}"):
                self.server.finish_stage()
            event(f"aborted at stage {stage}")
            self.finished = True
            return
        if stage == 3 and len(senders) < t:
            with pytest.raises(ThresholdError, match=f"fewer than t={t}"):
                self.server.finish_stage()
            self.finished = True
            return
        out = self.server.finish_stage()
        if stage == 3:
            u3 = self.server.sets[3]
            assert np.array_equal(out, _plain(self.xs, u3).astype(np.uint32))
            event(f"round completed, {len(self.server.sets[2] - u3)} masked-input dropouts recovered")
            self.finished = True
        else:
            self.broadcast = out

    @precondition(lambda self: self.finished)
    @rule()
    def after_the_end_nothing_more_happens(self):
        before = list(self.server.sets)
        with pytest.raises((ProtocolError, ThresholdError)):
            self.server.finish_stage()
        assert self.server.sets == before

    @invariant()
    def stage_sets_shrink(self):
        sets = self.server.sets
        assert all(b <= a for a, b in itertools.pairwise(sets))


TestSecAggRound = SecAggRound.TestCase
TestSecAggRound.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


@given(st.integers(3, 9), st.data())
def test_arbitrary_dropout_stages_against_plaintext_sum(n, data):
    t = data.draw(st.integers(2, n))
    drops = data.draw(st.dictionaries(st.integers(1, n), st.sampled_from(STAGES)))
    cfg = SecAggConfig(num_clients=n, threshold=t, codec=Codec(length=4, max_clients=n, bits=8, ring=Z2_32))
    xs = _inputs(n, 4, n)
    alive_at = [n - sum(1 for s in drops.values() if STAGES.index(s) <= i) for i in range(4)]
    if min(alive_at) < t:
        with pytest.raises(ThresholdError):
            run_secagg_round(cfg, xs, keys=KEYS, dropouts=drops)
        return
    res = run_secagg_round(cfg, xs, keys=KEYS, dropouts=drops)
    u3 = {u for u in xs if drops.get(u) not in STAGES[:3]}
    assert res.clients == u3
    assert np.array_equal(res.total, _plain(xs, u3))


@pytest.mark.parametrize("degree", [None, 10])
def test_thirty_percent_dropout_at_random_stages_every_round_completes(degree):
    """n=20, 6 clients (30%) drop at keyed-random stages, 5 rounds: all complete with the survivors' sum.

    Complete graph t=11: at least 14 survive every stage. SecAgg+ k=10, t=5: a closed neighbourhood of 11 keeps at
    least 11 - 6 = 5 members, so recovery is guaranteed whatever the placement."""
    n, t = 20, 5 if degree else 11
    cfg = SecAggConfig(num_clients=n, threshold=t, codec=Codec(length=50, max_clients=n, clip=1.0), degree=degree,
                       graph_key=b"g" * 16)
    for r in range(5):
        s = Stream(bytes([r]) * 16)
        order = np.argsort(Ring(2**32).sample(s, n)) + 1
        drops = {int(u): STAGES[int(v)] for u, v in zip(order[:6], Ring(4).sample(s, 6))}
        xs = {u: np.linspace(-1, 1, 50) * (u / n) for u in range(1, n + 1)}
        res = run_secagg_round(cfg, xs, round_=r, dropouts=drops)
        u3 = {u for u in xs if drops.get(u) not in STAGES[:3]}
        assert res.clients == u3
        np.testing.assert_allclose(res.total, sum(xs[u] for u in u3), atol=len(u3) * 2.0**-17)


def test_secagg_plus_graph_has_logarithmic_degree_and_masks_only_neighbours():
    n, k = 32, 6  # k = log2(32) + 1 rounded up to even: O(log n)
    g = harary_neighbours(n, k, b"x" * 16)
    assert all(len(v) == k for v in g.values()) and all(u in g[v] for u in g for v in g[u])
    assert g != harary_neighbours(n, k, b"y" * 16)  # the placement depends on the key
    cfg = SecAggConfig(num_clients=n, threshold=5, codec=Codec(length=8, max_clients=n, bits=4, ring=Z2_32), degree=k,
                       graph_key=b"x" * 16)
    xs = _inputs(n, 8, 3)
    xs = {u: v % 16 for u, v in xs.items()}
    res = run_secagg_round(cfg, xs, keys=KEYS, dropouts={1: "MaskedInputCollection", 2: "Unmasking"})
    assert np.array_equal(res.total, _plain(xs, res.clients))
    per_client = res.ledger.sent("client 5")
    codec = Codec(length=8, max_clients=n, bits=4, ring=Z2_32)
    full = run_secagg_round(SecAggConfig(num_clients=n, threshold=17, codec=codec), xs, keys=KEYS)
    assert per_client < full.ledger.sent("client 5") / 3  # k shares instead of n - 1
    with pytest.raises(ConfigurationError, match="even"):
        harary_neighbours(10, 3, bytes(16))


def test_masked_input_hides_the_input_and_is_reproducible_with_keys():
    cfg = SecAggConfig(num_clients=3, threshold=2, codec=Codec(length=1000, max_clients=3, bits=1, ring=Z2_32))
    srv = _server(cfg, 7)
    cl = {u: _client(cfg, u, 7, KEYS[u]) for u in (1, 2, 3)}
    ads = {u: c.advertise_keys() for u, c in cl.items()}
    for a in ads.values():
        srv.receive(a)
    roster = srv.finish_stage()
    for c in cl.values():
        srv.receive(c.share_keys(roster))
    inbox = srv.finish_stage()
    y = cl[1].masked_input(inbox[1], encoded=np.zeros(1000, dtype=np.int64)).masked
    # a masked zero vector looks uniform: each of 32 bit planes is about half ones (1000 * 32 bits; 6 sigma band)
    ones = np.unpackbits(y.view(np.uint8)).mean()
    assert abs(ones - 0.5) < 6 * 0.5 / np.sqrt(32_000)
    assert _client(cfg, 1, 7, KEYS[1]).advertise_keys() == ads[1]  # same key, same round: same keys
    assert _client(cfg, 1, 8, KEYS[1]).advertise_keys().s_public != ads[1].s_public  # new round: new keys
    assert _client(cfg, 2, 7, KEYS[1]).advertise_keys().s_public != ads[1].s_public  # another id: other keys


def test_malformed_messages_and_stage_errors():
    cfg = SecAggConfig(num_clients=4, threshold=3, codec=Codec(length=2, max_clients=4, bits=4, ring=Z2_32))
    srv = _server(cfg, 1)
    cl = {u: _client(cfg, u, 1, KEYS[u]) for u in range(1, 5)}
    ads = {u: c.advertise_keys() for u, c in cl.items()}
    with pytest.raises(ProtocolError, match="MaskedInput from client 1 arrived during stage AdvertiseKeys"):
        srv.receive(MaskedInput(1, 1, np.zeros(2, np.uint32)))
    with pytest.raises(ProtocolError, match="must be 32 bytes"):
        srv.receive(ads[1]._replace(c_public=b"short"))
    with pytest.raises(ProtocolError, match="client 9 is not in the set"):
        srv.receive(ads[1]._replace(client=9))
    with pytest.raises(TypeError, match="SecAgg message"):
        srv.receive("hello")
    for u in (1, 2, 3):
        srv.receive(ads[u])
    roster = srv.finish_stage()  # client 4 dropped before advertising
    with pytest.raises(ProtocolError, match="client 4 is not in the set of stage ShareKeys"):
        srv.receive(ShareKeys(1, 4, {}))
    sk = {u: cl[u].share_keys(roster) for u in (1, 2, 3)}
    with pytest.raises(ProtocolError, match=r"outside its neighbourhood in U1"):
        srv.receive(sk[1]._replace(ciphertexts={**sk[1].ciphertexts, 4: b"x"}))
    for u in (1, 2, 3):
        srv.receive(sk[u])
    inbox = srv.finish_stage()
    tampered = {w: (c[:-1] + bytes([c[-1] ^ 1])) for w, c in inbox[3].items()}
    mi = {u: cl[u].masked_input(inbox[u], encoded=np.array([u, 1])) for u in (1, 2)}
    with pytest.raises(ShapeMismatchError, match=r"shape \(3,\)"):
        srv.receive(mi[1]._replace(masked=np.zeros(3, np.uint32)))
    with pytest.raises(RingMismatchError, match="uint32"):
        srv.receive(mi[1]._replace(masked=mi[1].masked.astype(np.uint64)))
    bad3 = _client(cfg, 3, 1, KEYS[3])
    bad3.advertise_keys()
    bad3.share_keys(roster)
    bad3.masked_input(tampered, encoded=np.array([3, 1]))
    with pytest.raises(ProtocolError, match="does not authenticate"):
        bad3.unmask({1, 2, 3})
    mi[3] = cl[3].masked_input(inbox[3], encoded=np.array([3, 1]))
    for u in (1, 2, 3):
        srv.receive(mi[u])
    u3 = srv.finish_stage()
    resp = {u: cl[u].unmask(u3) for u in (1, 2, 3)}
    both = resp[1]._replace(key_shares={2: resp[1].seed_shares[2]})
    with pytest.raises(ProtocolError, match=r"both key and seed shares of \[2\]"):
        srv.receive(both)
    with pytest.raises(ProtocolError, match="did not ask for"):
        srv.receive(resp[1]._replace(seed_shares={**resp[1].seed_shares, 4: resp[1].seed_shares[1]}))
    for u in (1, 2, 3):
        srv.receive(resp[u])
    total = srv.finish_stage()
    assert total.tolist() == [6, 3]
    with pytest.raises(ProtocolError, match="already finished"):
        srv.finish_stage()
    with pytest.raises(ProtocolError, match="at stage done, not Unmasking"):
        cl[1].unmask(u3)


def test_configuration_errors():
    with pytest.raises(ThresholdError, match="t=6"):
        SecAggConfig(num_clients=5, threshold=6, codec=Codec(length=1, max_clients=5))
    with pytest.raises(ThresholdError, match="t=1"):
        SecAggConfig(num_clients=5, threshold=1, codec=Codec(length=1, max_clients=5))
    with pytest.raises(ThresholdError, match=r"2 <= t <= 5 \(the neighbourhood size with n=20, degree=4\)"):
        SecAggConfig(num_clients=20, threshold=6, codec=Codec(length=1, max_clients=20), degree=4)
    with pytest.raises(ConfigurationError, match="Z_2\\^k"):
        SecAggConfig(num_clients=5, threshold=3, codec=Codec(length=1, max_clients=5, ring=Ring.prime(2**31 - 1)))
    with pytest.raises(ConfigurationError, match="sizing"):
        SecAggConfig(num_clients=5, threshold=3, codec=Codec(length=1, max_clients=5, bits=31, ring=Z2_32))
    with pytest.raises(ValueError, match="dropout stages"):
        run_secagg_round(SecAggConfig(num_clients=3, threshold=2, codec=Codec(length=1, max_clients=3)), {1: [0.0]},
                         dropouts={1: "Lunch"})
