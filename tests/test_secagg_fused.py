"""The fused secure round (refimpl.secagg.fused, Codec.mask_scaled, the two-part ShareUpload, the aggregators' running
sums, SecureAggregator(fused=True)) against the unfused definitions: bit for bit the same shares, totals, reports
and errors -- with the clients' pass in NumPy, compiled with OpenSSL's keystream, and compiled with the compiled
AES-CTR (refimpl.jit)."""

import importlib.util

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refimpl import Z2_32, Z2_64, jit
from refimpl.errors import OutOfRangeError
from refimpl.fl.secure import SecureAggregator, make_secure_aggregator
from refimpl.prg import Stream
from refimpl.secagg import AdditiveClient, AdditiveConfig, Codec, run_additive_round
from refimpl.secagg.codec import ScaledPieces
from refimpl.secagg.fused import CHUNK, MAGIC_LIMIT, chunk_size, encode_mask, scaled_bounds

RINGS = {"Z2_64": Z2_64, "Z2_32": Z2_32}


@pytest.fixture(scope="module", autouse=True, params=["numpy", "compiled", "compiled-aes"])
def client_pass(request):
    """Every test here runs three times: the clients' pass (and the aggregators' key expansion) in NumPy and OpenSSL;
    through the compiled loop with OpenSSL's keystream; and with the compiled AES-CTR (refimpl.jit)."""
    if request.param != "numpy" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed: the compiled client pass (refimpl.jit) is not tested")
    if request.param == "compiled-aes" and not jit.aes_width():
        pytest.skip("this CPU has no AES instructions: the compiled AES-CTR (refimpl.jit.aes) is not tested")
    previous = jit.set_enabled(request.param != "numpy")
    previous_aes = jit.set_aes(request.param == "compiled-aes")
    saved, jit.AES_MIN_BYTES = jit.AES_MIN_BYTES, 0  # the small arrays here take the compiled AES too
    yield request.param
    jit.AES_MIN_BYTES = saved
    jit.set_aes(previous_aes)
    jit.set_enabled(previous)
EVEN = chunk_size(2 * CHUNK + 2)  # 2 CHUNK + 2 elements go in three equal chunks of EVEN


def _definition(pieces, factor, keys, ring):
    """The unfused share: ring elements of rint(concat(pieces) * factor), minus each key's keystream."""
    x = ring.element(ScaledPieces(tuple(pieces), factor).encoded())
    for k in keys:
        x = ring.sub(x, ring.sample(Stream(k), x.shape))
    return np.asarray(x, dtype=ring.dtype)


def _pieces(sizes, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        v = rng.normal(0, scale, n)
        v[rng.random(n) < 0.05] = 0.0
        v[rng.random(n) < 0.05] = -0.0
        half = rng.random(n) < 0.1  # exact halves: the ties rint breaks to even
        v[half] = (rng.integers(-64, 64, int(half.sum())) + 0.5) / 16
        out.append(v.astype(dtype))
    return out


@given(sizes=st.lists(st.integers(0, 2 * CHUNK + 3), min_size=1, max_size=4).filter(lambda s: sum(s) > 0),
       ring=st.sampled_from(sorted(RINGS)), nkeys=st.integers(0, 3), dtype=st.sampled_from(["float32", "float64"]),
       factor_exp=st.integers(0, 20), magic=st.booleans(), seed=st.integers(0, 2**16))
@example(sizes=[CHUNK], ring="Z2_64", nkeys=1, dtype="float32", factor_exp=4, magic=True, seed=0)
@example(sizes=[CHUNK - 1, 1, CHUNK + 1], ring="Z2_64", nkeys=2, dtype="float32", factor_exp=16, magic=True, seed=1)
@example(sizes=[CHUNK + 1, 0, 3], ring="Z2_32", nkeys=1, dtype="float64", factor_exp=4, magic=False, seed=2)
@example(sizes=[2 * CHUNK], ring="Z2_32", nkeys=3, dtype="float32", factor_exp=20, magic=True, seed=3)
@example(sizes=[1], ring="Z2_64", nkeys=0, dtype="float64", factor_exp=0, magic=False, seed=4)
@example(sizes=[EVEN, EVEN, EVEN], ring="Z2_64", nkeys=1, dtype="float32", factor_exp=12, magic=True, seed=5)
@example(sizes=[EVEN - 1, 2, EVEN - 1, EVEN], ring="Z2_32", nkeys=2, dtype="float32", factor_exp=8, magic=True, seed=6)
@example(sizes=[EVEN + 1, 2 * EVEN - 1], ring="Z2_64", nkeys=0, dtype="float64", factor_exp=3, magic=False, seed=7)
def test_encode_mask_is_the_unfused_definition_bit_for_bit(sizes, ring, nkeys, dtype, factor_exp, magic, seed):
    ring_ = RINGS[ring]
    pieces = _pieces(sizes, dtype, seed, scale=4.0)
    factor = 2.0**factor_exp * 0.8125  # weight x 2^f: not a power of two, so the product rounds
    keys = [bytes([seed % 256, j]) * 8 for j in range(nkeys)]
    out = np.full(sum(sizes), 7, ring_.dtype)  # stale contents, as in a reused buffer
    limit = 2.0**40 if magic else float(MAGIC_LIMIT)  # the caller's bound decides the rounding method
    encode_mask(pieces, factor, out, keys, "aes128-ctr", limit=limit)
    np.testing.assert_array_equal(out, _definition(pieces, factor, keys, ring_))


@given(st.floats(-3.0, 3.0) | st.sampled_from([np.nan, np.inf, -np.inf]),
       st.sampled_from([0, 1, 3, chunk_size(CHUNK + 4) - 1, chunk_size(CHUNK + 4), CHUNK + 2]),
       st.sampled_from(sorted(RINGS)), st.integers(1, 40), st.booleans())
@example(1.0, 0, "Z2_64", 16, False)
@example(1.0 + 2.0**-17, 0, "Z2_64", 16, False)  # t = B + 0.5: rint ties to the even B
@example(1.0 + 3 * 2.0**-17, CHUNK + 2, "Z2_64", 16, False)  # t = B + 1.5: over the bound, in the second chunk
@example(1.0 + 3 * 2.0**-17, 3, "Z2_64", 16, True)
@example(-1.0 - 2.0**-17, 1, "Z2_32", 16, True)
@example(np.nan, CHUNK + 2, "Z2_64", 16, False)
@example(1.0 + 3 * 2.0**-17, chunk_size(CHUNK + 4), "Z2_64", 16, False)  # the first value of the second chunk
@example(np.inf, chunk_size(CHUNK + 4) - 1, "Z2_32", 16, False)  # the last value of the first chunk
def test_mask_scaled_refuses_exactly_what_check_encoded_refuses(value, position, ring, frac_bits, given_bounds):
    codec = Codec(length=CHUNK + 4, max_clients=2, clip=1.0, frac_bits=min(frac_bits, 28), ring=RINGS[ring])
    x = np.zeros(codec.length)
    x[position] = value
    # checked up front from the caller's bounds, or chunk by chunk as the fused pass goes
    bounds = (x.min(), x.max()) if given_bounds else None
    scaled = ScaledPieces((x[:2], x[2:]), 2.0**codec.frac_bits, bounds)
    try:
        codec.check_encoded(scaled.encoded())  # NaN / infinity: encoded() refuses them
        ok = True
    except OutOfRangeError:
        ok = False
    got = codec.mask_scaled(scaled, [bytes(16)], "aes128-ctr")
    assert (got is not None) == ok
    if ok:
        np.testing.assert_array_equal(got, _definition(scaled.pieces, scaled.factor, [bytes(16)], codec.ring))


def test_scaled_bounds_are_the_extreme_encoded_integers():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, 1000).astype(np.float32)
    low, high = scaled_bounds(x.min(), x.max(), 0.3 * 2**20)
    enc = ScaledPieces((x,), 0.3 * 2**20).encoded()
    assert (low, high) == (enc.min(), enc.max())
    assert np.isnan(scaled_bounds(np.float32("nan"), 1.0, 2.0)[0])


@pytest.mark.parametrize("ring", sorted(RINGS))
@pytest.mark.parametrize("keys_first", [False, True])
def test_a_client_sends_the_same_messages_fused_or_not(ring, keys_first):
    codec = Codec(length=CHUNK + 5, max_clients=4, clip=8.0, frac_bits=16, ring=RINGS[ring])
    cfg = AdditiveConfig(codec=codec, servers=3)
    pieces = tuple(_pieces([CHUNK, 5], "float32", 7, scale=2.0))
    buf = np.empty(codec.length, codec.ring.dtype)
    scaled = ScaledPieces(pieces, 0.75 * 2.0**16, out=buf)
    sent = []
    for encoded in (scaled, scaled.encoded()):
        client = AdditiveClient(cfg, 2, key=b"k" * 16)
        client.begin_round(5)
        msgs = client.share_keys() if keys_first else []
        msgs += client.contribute(encoded=encoded)
        sent.append(sorted(msgs, key=lambda m: m.server))
    assert sent[0][0].payload is buf or any(m.payload is buf for m in sent[0])  # written into the given buffer
    for a, b in zip(*sent):
        assert (a.round, a.client, a.server, a.ring) == (b.round, b.client, b.server, b.ring)
        if isinstance(a.payload, np.ndarray):
            np.testing.assert_array_equal(a.payload, b.payload)
        else:
            assert a.payload == b.payload


@given(st.integers(2, 6), st.integers(2, 3), st.sampled_from(sorted(RINGS)), st.integers(0, 2**16),
       st.sets(st.tuples(st.integers(1, 6), st.integers(0, 2))))
def test_running_sums_release_exactly_the_agreed_total(k, servers, ring, seed, lost):
    codec = Codec(length=9, max_clients=k, clip=4.0, frac_bits=12, ring=RINGS[ring])
    cfg = AdditiveConfig(codec=codec, servers=servers, min_clients=1)
    rng = np.random.default_rng(seed)
    xs = {c: rng.uniform(-4, 4, 9) for c in range(1, k + 1)}
    lost = {(c, s) for c, s in lost if c <= k and s < servers}
    try:
        res = run_additive_round(cfg, xs, round_=3, lost=lost)
    except Exception as err:  # only the release rule may refuse: every client lost somewhere
        assert type(err).__name__ == "ThresholdError"
        assert {c for c, _ in lost} == set(xs)
        return
    assert res.clients == frozenset(set(xs) - {c for c, _ in lost})
    want = codec.ring.zeros(9)
    for c in res.clients:
        want = codec.ring.add(want, codec.encode(xs[c]))
    np.testing.assert_array_equal(res.ring_total, want)


def _leaves(m, shapes, seed, dtype=np.float32, scale=0.3):
    rng = np.random.default_rng(seed)
    return {f"l{j}": rng.normal(0, scale, (m, *s)).astype(dtype) for j, s in enumerate(shapes)}


@given(m=st.integers(2, 5), shapes=st.lists(st.lists(st.integers(0, 7), max_size=2).map(tuple), min_size=1,
                                             max_size=3).filter(lambda s: sum(int(np.prod(x)) for x in s) > 0),
       ring=st.sampled_from(sorted(RINGS)), servers=st.integers(2, 3), dropout=st.sampled_from([0.0, 0.4]),
       seed=st.integers(0, 2**16))
@example(m=3, shapes=[(CHUNK + 1,), (3,)], ring="Z2_64", servers=2, dropout=0.0, seed=0)
@example(m=2, shapes=[(CHUNK - 1,), (2,)], ring="Z2_32", servers=3, dropout=0.4, seed=1)
def test_the_fused_aggregator_is_the_unfused_one_bit_for_bit(m, shapes, ring, servers, dropout, seed):
    frac = 32 if ring == "Z2_64" else 12
    upd = _leaves(m, shapes, seed)
    w = np.random.default_rng(seed).integers(1, 600, m).astype(np.float64)
    aggs = [make_secure_aggregator("additive", servers=servers, dropout=dropout, ring=RINGS[ring], frac_bits=frac,
                                   value_range=4.0, key=bytes([seed % 256]) * 16) for _ in range(2)]
    aggs[1].fused = False
    for _ in range(3):  # buffers reused from round to round
        got, want = (a(upd, w) for a in aggs)
        assert sorted(got) == sorted(want)
        for name in got:
            assert got[name].dtype == want[name].dtype == np.float32
            np.testing.assert_array_equal(got[name], want[name])
        upd = {k: -v for k, v in upd.items()}
    assert aggs[0].history == aggs[1].history


@pytest.mark.parametrize("bad", ["nan", "inf", "range", "range+nan"])
def test_the_fused_aggregator_raises_the_unfused_errors(bad):
    upd = _leaves(4, [(5, 3), (2,)], 0)
    if bad in ("range", "range+nan"):
        upd["l0"][1, 2, 1] = 70.0  # beyond value_range 64
    if bad in ("nan", "range+nan"):
        upd["l1"][3, 0] = np.nan  # a later client not finite: the finite check comes first
    if bad == "inf":
        upd["l0"][2, 0, 0] = -np.inf
    errors = []
    for fused in (True, False):
        agg = SecureAggregator(key=bytes(16), fused=fused)
        with pytest.raises(OutOfRangeError) as info:
            agg(upd, np.ones(4))
        errors.append(str(info.value))
        assert agg.round == 1 and not agg.history
    assert errors[0] == errors[1]
    assert ("not finite" in errors[0]) == (bad != "range")


def test_jax_updates_are_read_after_the_keys_are_out():
    jnp = pytest.importorskip("jax.numpy", reason="JAX updates need the fl extra (jax)")
    upd = _leaves(3, [(40, 3), (3,)], 5)
    w = np.array([3.0, 1.0, 2.0])
    aggs = [make_secure_aggregator("additive", servers=2, key=b"j" * 16) for _ in range(2)]
    aggs[1].fused = False
    got = aggs[0]({k: jnp.asarray(v) for k, v in upd.items()}, w)
    want = aggs[1](upd, w)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("bad", [None, 1, 4])
def test_clients_computed_side_by_side_give_the_same_round_and_errors(monkeypatch, bad):
    from refimpl.secagg.additive import simulation
    from refimpl.sharing import kernels

    upd = _leaves(6, [(300, 7), (7,)], 3)
    if bad is not None:
        upd["l0"][bad, 0, 0] = 400.0  # weighted, still beyond value_range: this client's (worker's or caller's) error surfaces
    results = []
    for parallel in (True, False):
        monkeypatch.setattr(simulation, "PARALLEL_BYTES", 0 if parallel else 2**62)
        previous = kernels.set_threads(3 if parallel else 1)
        try:
            agg = make_secure_aggregator("additive", servers=2, dropout=0.3, key=b"p" * 16)
            try:
                results.append([agg(upd, np.arange(1.0, 7.0)) for _ in range(2)])
            except OutOfRangeError as err:
                results.append(str(err))
        finally:
            kernels.set_threads(previous)
    if bad is None:
        assert isinstance(results[0], list) and isinstance(results[1], list)
        for a, b in zip(*results):
            for name in a:
                np.testing.assert_array_equal(a[name], b[name])
    else:
        assert isinstance(results[0], str) and results[0] == results[1] and "outside" in results[0]


@given(st.integers(1, 10 * CHUNK))
@example(CHUNK)
@example(CHUNK + 1)
@example(199210)
def test_chunk_size_cuts_into_the_fewest_chunks_of_at_most_chunk_elements(n):
    c = chunk_size(n)
    assert 1 <= c <= CHUNK
    assert -(-n // c) == -(-n // CHUNK)  # as few chunks as CHUNK allows
    assert c * (-(-n // c) - 1) < n  # no empty last chunk


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=40),
       st.floats(0.01, 1e6), st.integers(0, 40))
@example([1.0, -2.5, 3e-45, 7e38], 1.0, 1)  # float32 subnormal / overflow on the cast
def test_mean_leaves_divides_into_float32_as_divide_then_astype(values, denom, cut):
    from refimpl.fl.secure import _mean_leaves  # the fused round's last step

    total = np.array(values)
    cut = min(cut, total.size)
    with np.errstate(all="ignore"):
        expected = (total / denom).astype(np.float32)
        got = _mean_leaves(total.copy(), denom, ["a", "b"], [(cut,), (1, total.size - cut)])
    assert got["a"].dtype == got["b"].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([got["a"], got["b"].ravel()]).view(np.uint32),
                                  expected.view(np.uint32))


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_parallel_and_serial_clients_give_the_same_round(dropout):
    from refimpl.secagg.fused import PARALLEL_BYTES
    from refimpl.sharing import kernels

    m, d = 4, PARALLEL_BYTES // 32 + 3  # m * d * 8 bytes of shares: over PARALLEL_BYTES, so the pool is used
    upd = _leaves(m, [(d - 2,), (2,)], 9)
    w = np.array([5.0, 1.0, 3.0, 2.0])
    aggs = [make_secure_aggregator("additive", servers=2, dropout=dropout, key=b"p" * 16) for _ in range(2)]
    aggs[0].parallel_clients, aggs[1].parallel_clients = True, False
    previous = kernels.set_threads(2)  # two threads even on a one-core runner
    try:
        for _ in range(2):
            got, want = (a(upd, w) for a in aggs)
            for name in want:
                np.testing.assert_array_equal(got[name], want[name])
    finally:
        kernels.set_threads(previous)
    assert aggs[0].history == aggs[1].history
