"""Single-server secure aggregation with dropout recovery (Bonawitz et al., CCS 2017), optionally SecAgg+.

Clients ``u = 1..n`` hold vectors ``x_u`` over Z_R; the server learns ``sum_{u in U3} x_u`` and nothing else about
them (honest-but-curious server, fewer than ``t`` colluding clients). One protocol round ``r`` has four named
stages (the paper's Rounds 0, 1, 2 and 4; the consistency check of Round 3 and signatures, which protect against an
actively malicious server, are not implemented):

0. **AdvertiseKeys** -- ``u`` sends two X25519 public keys ``c_u^PK`` (encryption) and ``s_u^PK`` (masking).
   The server forwards the list U1 to everyone.
1. **ShareKeys** -- ``u`` draws a self-mask seed ``b_u`` and Shamir-shares ``b_u`` and its mask private key
   ``s_u^SK`` t-of-|N[u]| among its neighbours in U1 (:mod:`refimpl.sharing.shamir`, 16-bit limbs over Z_(2^31-1));
   share
   ``v`` travels AES-128-GCM-encrypted under ``HKDF(X25519(c_u^SK, c_v^PK))`` through the server. U2 = senders.
2. **MaskedInputCollection** -- ``u`` sends ``y_u = x_u + PRG(b_u) + sum_{v in N(u) cap U2} +-PRG(s_uv)``, with
   ``s_uv = HKDF(X25519(s_u^SK, s_v^PK), round, min(u,v), max(u,v))`` and ``+`` iff ``u < v``. U3 = senders.
3. **Unmasking** -- the server announces U3; each surviving ``v`` returns, for each neighbour ``u`` in U2, its share
   of ``b_u`` if ``u`` is in U3, else its share of ``s_u^SK`` (never both). From ``t`` shares each the server
   rebuilds the dropped clients' pairwise masks and the survivors' self masks and outputs
   ``sum_{u in U3} y_u - sum_{u in U3} PRG(b_u) -+ (masks of dropped clients) = sum_{u in U3} x_u``.

The server side (:class:`~refimpl.secagg.bonawitz.server.SecAggServer`) and an in-process round driver
(:func:`~refimpl.secagg.bonawitz.server.run_secagg_round`) live in :mod:`refimpl.secagg.bonawitz.server`.

Dropouts at any stage are survived while every needed neighbourhood still has ``t`` members; otherwise the round
aborts with :class:`~refimpl.errors.ThresholdError`. Every mask, seed and key comes from keyed streams and HKDF
labels that include the round number, so no stream is reused across rounds, pairs or purposes.

With ``degree=k`` the neighbour graph is a Harary graph H(k, n) with randomly permuted labels (SecAgg+): each
client agrees keys with, shares with and masks against only ``k = O(log n)`` neighbours.

Example:
    >>> from refimpl.secagg import run_secagg_round          # the server and the round driver
    >>> from refimpl.secagg import Codec
    >>> cfg = SecAggConfig(num_clients=5, threshold=3, codec=Codec(length=2, max_clients=5, clip=8.0))
    >>> xs = {u: [float(u), -0.5] for u in range(1, 6)}
    >>> res = run_secagg_round(cfg, xs, round_=0, dropouts={2: "MaskedInputCollection", 5: "Unmasking"})
    >>> sorted(res.clients), res.total.tolist()          # client 2 dropped before masking; 5 after
    ([1, 3, 4, 5], [13.0, -2.0])

References:
    K. Bonawitz, V. Ivanov, B. Kreuter, A. Marcedone, H. B. McMahan, S. Patel, D. Ramage, A. Segal, K. Seth,
    "Practical Secure Aggregation for Privacy-Preserving Machine Learning", ACM CCS 2017.
    J. H. Bell, K. A. Bonawitz, A. Gascon, T. Lepoint, M. Raykova, "Secure Single-Server Aggregation with
    (Poly)Logarithmic Overhead", ACM CCS 2020 (SecAgg+).
"""


from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from numpy.typing import ArrayLike

from refimpl._checks import check_key
from refimpl.errors import ConfigurationError, ProtocolError, ThresholdError
from refimpl.prg import derive_key, fresh_key, key_length
from refimpl.secagg.bonawitz.config import KEY_LIMBS, LIMB, STAGES, SecAggConfig
from refimpl.secagg.bonawitz.masks import aad, enc_key, exchange, fold_masks, pair_seed
from refimpl.secagg.bonawitz.messages import AdvertiseKeys, MaskedInput, ShareKeys, UnmaskingResponse
from refimpl.sharing.shamir import share_bytes_many

__all__ = ["SecAggClient"]


class SecAggClient:
    """Client ``u`` of SecAgg; one object serves many rounds, each begun with :meth:`begin_round`.

    Lifecycle per round (the same as :class:`~refimpl.secagg.additive.AdditiveClient`'s): :meth:`begin_round`, then
    the four stage methods in order: :meth:`advertise_keys`, :meth:`share_keys`, :meth:`masked_input`,
    :meth:`unmask`.

    Args:
        config: the public parameters.
        client_id: ``u`` in ``1..n`` (part of every key-derivation label: two ids never share a key or a mask).
        key: the client's 16/32-byte master key (reproducible keys and masks: the caller guarantees it is used by
            this client only), or None (default) for fresh OS randomness.
    """

    def __init__(self, config: SecAggConfig, client_id: int, *, key: bytes | None = None) -> None:
        if isinstance(client_id, bool) or not 1 <= client_id <= config.num_clients:
            raise ConfigurationError(f"client id must lie in [1, {config.num_clients}], got {client_id}")
        self.config, self.id = config, int(client_id)
        self._master = fresh_key(32) if key is None else check_key(key)
        self.round: int | None = None
        self._r = -1
        self._stage = 4

    def __repr__(self) -> str:
        return f"SecAggClient(id={self.id}, round={self.round}, key=<hidden>)"

    def begin_round(self, round_: int) -> None:
        """Start round ``round_`` (strictly after this client's previous one): derive the round's X25519 keys,
        self-mask seed and Shamir key from the master key, labelled by round and client id."""
        if self.round is not None and round_ <= self.round:
            raise ProtocolError(f"round numbers must increase: client {self.id} was in round {self.round}, asked "
                                f"to begin round {round_} (its round keys would mask a second input)")
        master, r, u = self._master, int(round_), self.id
        self.round = self._r = r
        self._c_sk = X25519PrivateKey.from_private_bytes(derive_key(master, "secagg/x25519-c", r, u, length=32))
        self._s_sk = X25519PrivateKey.from_private_bytes(derive_key(master, "secagg/x25519-s", r, u, length=32))
        self._b = derive_key(master, "secagg/self-mask", r, u, length=key_length(self.config.prg))
        self._shamir_key = derive_key(master, "secagg/shamir", r, u)
        self._stage = 0
        self._roster: dict[int, tuple[bytes, bytes]] = {}
        self._own: tuple[np.ndarray, np.ndarray] | None = None
        self._inbox: dict[int, bytes] = {}
        self._u2: frozenset[int] = frozenset()
        self._c_secrets: dict[int, bytes] = {}  # X25519(c_u^SK, c_v^PK) of ShareKeys, reused to decrypt

    def _advance(self, stage: int) -> None:
        if self.round is None:
            raise ProtocolError(f"client {self.id} has not begun a round")
        if self._stage != stage:
            raise ProtocolError(f"client {self.id} is at stage {STAGES[self._stage] if self._stage < 4 else 'done'}, "
                                f"not {STAGES[stage]}")
        self._stage += 1

    def advertise_keys(self) -> AdvertiseKeys:
        """Stage AdvertiseKeys."""
        self._advance(0)
        return AdvertiseKeys(self._r, self.id, self._c_sk.public_key().public_bytes_raw(),
                             self._s_sk.public_key().public_bytes_raw())

    def share_keys(self, roster: Mapping[int, tuple[bytes, bytes]]) -> ShareKeys:
        """Stage ShareKeys, given U1's public keys ``{v: (c_pk, s_pk)}`` (the server's broadcast).

        Raises:
            ThresholdError: fewer than ``t`` of ``N[u]`` in U1.
        """
        self._advance(1)
        cfg, u = self.config, self.id
        holders = sorted(cfg.closed_neighbourhood(u) & set(roster))
        if len(holders) < cfg.threshold:
            raise ThresholdError(f"client {u}: only {len(holders)} of its neighbourhood advertised keys, fewer than "
                                 f"t={cfg.threshold}")
        self._roster = dict(roster)
        # one vectorised sharing of both secrets: columns [:KEY_LIMBS] share s_u^SK, the rest b_u (each with its
        # own coefficient stream, bit for bit what sharing them one at a time gives)
        shares = share_bytes_many([self._s_sk.private_bytes_raw(), self._b], len(holders), cfg.threshold,
                                  points=holders, keys=[derive_key(self._shamir_key, "s"),
                                                        derive_key(self._shamir_key, "b")])
        plains = shares.data.astype(LIMB)
        cts = {}
        for v, row, plain in zip(holders, shares.data, plains):
            if v == u:
                self._own = (row[:KEY_LIMBS], row[KEY_LIMBS:])
                continue
            secret = self._c_secrets[v] = exchange(self._c_sk, roster[v][0], v)  # Unmasking decrypts with it
            cts[v] = AESGCM(enc_key(secret, self._r, u, v)).encrypt(bytes(12), plain.tobytes(), aad(self._r, u, v))
        return ShareKeys(self._r, u, cts)

    def masked_input(self, inbox: Mapping[int, bytes], values: ArrayLike | None = None, *,
                     encoded: ArrayLike | None = None) -> MaskedInput:
        """Stage MaskedInputCollection, given the ciphertexts addressed to ``u`` (``{sender: ciphertext}``).

        U2 is taken to be the senders (plus ``u``): ``u`` masks against its neighbours among them.
        """
        self._advance(2)
        cfg, u = self.config, self.id
        if (values is None) == (encoded is None):
            raise TypeError("give exactly one of values and encoded")
        codec = cfg.codec
        x = codec.check_encoded(encoded) if encoded is not None else codec.encode(values)  # type: ignore[arg-type]
        unknown = sorted(set(inbox) - set(self._roster))
        if unknown:
            raise ProtocolError(f"client {u} got ciphertexts from clients {unknown} outside U1")
        self._inbox = dict(inbox)
        self._u2 = frozenset(inbox) | {u}
        if len(cfg.closed_neighbourhood(u) & self._u2) < cfg.threshold:
            raise ThresholdError(f"client {u}: fewer than t={cfg.threshold} neighbours shared keys")
        plus: list[bytes] = [self._b]  # the self mask, then + PRG(s_uv) for v > u and - PRG(s_uv) for v < u
        minus: list[bytes] = []
        for v in sorted(cfg.graph[u] & self._u2):
            seed = pair_seed(exchange(self._s_sk, self._roster[v][1], v), self._r, u, v, cfg)
            (plus if u < v else minus).append(seed)
        y = np.asarray(x, dtype=cfg.ring.dtype)  # a new array (encode and check_encoded return fresh ones)
        return MaskedInput(self._r, u, fold_masks(y, plus, minus, cfg, in_place=y.flags.writeable))

    def unmask(self, survivors: Iterable[int]) -> UnmaskingResponse:
        """Stage Unmasking, given U3 (the clients whose masked inputs the server holds).

        Raises:
            ProtocolError: U3 is not a subset of U2; ThresholdError: fewer than ``t`` of ``N[u]`` in U3.
        """
        self._advance(3)
        cfg, u = self.config, self.id
        u3 = frozenset(survivors)
        outside = (u3 & cfg.closed_neighbourhood(u)) - self._u2
        if outside:
            raise ProtocolError(f"client {u}: U3 has neighbours {sorted(outside)} that never shared keys (not in U2)")
        if len(cfg.closed_neighbourhood(u) & u3) < cfg.threshold:
            raise ThresholdError(f"client {u}: fewer than t={cfg.threshold} neighbours survive; refusing to unmask")
        nk = KEY_LIMBS
        key_shares, seed_shares = {}, {}
        for w in sorted(cfg.closed_neighbourhood(u) & self._u2):
            if w == u:
                assert self._own is not None
                sk_share, b_share = self._own
            else:
                secret = self._c_secrets.get(w) or exchange(self._c_sk, self._roster[w][0], w)
                try:
                    plain = AESGCM(enc_key(secret, self._r, w, u)).decrypt(bytes(12), self._inbox[w],
                                                                              aad(self._r, w, u))
                except InvalidTag as err:
                    raise ProtocolError(f"client {u}: the share ciphertext from client {w} does not authenticate") \
                        from err
                limbs = np.frombuffer(plain, dtype=LIMB).astype(np.uint64)
                sk_share, b_share = limbs[:nk], limbs[nk:]
            if w in u3:
                seed_shares[w] = b_share
            else:
                key_shares[w] = sk_share
        self._c_secrets = {}  # the round's last use of them
        return UnmaskingResponse(self._r, u, key_shares, seed_shares)
