// The client of Bonawitz et al.'s SecAgg (and SecAgg+) as refimpl/secagg/bonawitz/client.py runs it, bit for bit:
// the same key derivations, Shamir shares (16-bit limbs over Z_(2^31 - 1)), AES-128-GCM share encryption, masks.
//
// Per round r, client u: X25519 keys c_u, s_u = derive_key(master, "secagg/x25519-c" | "secagg/x25519-s", r, u);
// self-mask seed b_u; (1) AdvertiseKeys; (2) ShareKeys: s_u^SK and b_u Shamir-shared t-of-|N[u]| among the
// neighbours that advertised, share v AES-GCM-encrypted (zero nonce; key HKDF(X25519(c_u, c_v), r, u, v); AAD
// "refimpl/secagg" | r | u | v); (3) y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv) over the
// neighbours in U2; (4) Unmasking: for each neighbour w in U2, its share of b_w if w survived, else of s_w^SK.

import { deriveKey, freshKey, keyLength, Stream, subtle, x25519, x25519ImportPrivate, x25519PublicOf } from './prg.mjs';
import { OutOfRangeError, Ring, Z2_64 } from './ring.mjs';
import { FixedPoint } from './encoding.mjs';
import { ProtocolError } from './secagg.mjs';
import { shareBytes, ThresholdError } from './shamir.mjs';

export const STAGES = Object.freeze(['AdvertiseKeys', 'ShareKeys', 'MaskedInputCollection', 'Unmasking']);
export const KEY_LIMBS = 16;

/** The SecAgg+ graph: Harary graph H(k, n) on clients 1..n, labels permuted by a keyed stream (graph.py). */
export async function hararyNeighbours(n, degree, key) {
  if (degree % 2 || degree < 2 || degree >= n) throw new RangeError(`SecAgg+ degree must be even and in [2, n-1], got ${degree}`);
  const stream = new Stream(await deriveKey(key, ['secagg/graph', n, degree], 16));
  const perm = Array.from({ length: n }, (_, i) => i + 1);
  for (let i = n - 1; i > 0; i--) {
    const j = Number((await new Ring(BigInt(i + 1)).sample(stream, 1))[0]);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const half = degree / 2;
  const graph = new Map();
  for (let i = 0; i < n; i++) {
    const nb = new Set();
    for (let o = -half; o <= half; o++) if (o) nb.add(perm[(((i + o) % n) + n) % n]);
    graph.set(perm[i], nb);
  }
  return graph;
}

export class SecAggConfig {
  /** Build from the aggregator's round message: {secagg: {num_clients, threshold, degree, graph_key, prg}, codec}. */
  static async fromRound(secagg, codec) {
    const cfg = new SecAggConfig();
    cfg.numClients = Number(secagg.num_clients);
    cfg.threshold = Number(secagg.threshold);
    cfg.degree = secagg.degree === null || secagg.degree === undefined ? null : Number(secagg.degree);
    cfg.prg = secagg.prg;
    cfg.ring = Z2_64;
    cfg.length = Number(codec.length);
    cfg.clip = Number(codec.clip);
    cfg.fixedPoint = new FixedPoint({ fracBits: Number(codec.frac_bits), ring: Z2_64 });
    const n = cfg.numClients;
    if (cfg.degree === null || cfg.degree >= n - 1) {
      cfg.graph = new Map(Array.from({ length: n }, (_, i) => [i + 1,
        new Set(Array.from({ length: n }, (_, j) => j + 1).filter((v) => v !== i + 1))]));
    } else {
      cfg.graph = await hararyNeighbours(n, cfg.degree, secagg.graph_key);
    }
    const size = Math.min(...[...cfg.graph.values()].map((s) => s.size)) + 1;
    if (cfg.threshold < 2 || cfg.threshold > size) {
      throw new ThresholdError(`threshold t=${cfg.threshold} is impossible: it must satisfy 2 <= t <= ${size}`);
    }
    return cfg;
  }

  closedNeighbourhood(u) { return new Set([...this.graph.get(u), u]); }

  encode(values) {
    for (const v of values) if (!(Math.abs(v) <= this.clip)) throw new OutOfRangeError(`value ${v} is outside the clip range [-${this.clip}, ${this.clip}]`);
    if (values.length !== this.length) throw new RangeError(`a contribution has ${this.length} coordinates, got ${values.length}`);
    return this.fixedPoint.encode(values);
  }
}

function aad(round, sender, receiver) {
  const head = new TextEncoder().encode('refimpl/secagg');
  const out = new Uint8Array(head.length + 16);
  out.set(head);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(head.length, BigInt(round), false);
  dv.setUint32(head.length + 8, sender, false);
  dv.setUint32(head.length + 12, receiver, false);
  return out;
}

async function aesGcm(op, key, data, ad) {
  const k = await subtle().importKey('raw', key, 'AES-GCM', false, [op]);
  const fn = op === 'encrypt' ? 'encrypt' : 'decrypt';
  return new Uint8Array(await subtle()[fn]({ name: 'AES-GCM', iv: new Uint8Array(12), additionalData: ad,
    tagLength: 128 }, k, data));
}

const encKey = (secret, r, s, v) => deriveKey(secret, ['secagg/share-encryption', r, s, v], 16);
const sorted = (set) => [...set].sort((a, b) => a - b);

export class SecAggClient {
  #master;
  constructor(config, clientId, key = null) {
    if (!Number.isInteger(clientId) || clientId < 1 || clientId > config.numClients) {
      throw new RangeError(`client id must lie in [1, ${config.numClients}], got ${clientId}`);
    }
    this.config = config;
    this.id = clientId;
    this.#master = key ?? freshKey(32);
    this.round = null;
    this.stage = 4;
  }

  async beginRound(round) {
    if (this.round !== null && round <= this.round) {
      throw new ProtocolError(`round numbers must increase: client ${this.id} was in round ${this.round}, asked to begin round ${round}`);
    }
    const m = this.#master, u = this.id;
    this.round = round;
    this.cRaw = await deriveKey(m, ['secagg/x25519-c', round, u], 32);
    this.sRaw = await deriveKey(m, ['secagg/x25519-s', round, u], 32);
    this.cSk = await x25519ImportPrivate(this.cRaw);
    this.sSk = await x25519ImportPrivate(this.sRaw);
    this.b = await deriveKey(m, ['secagg/self-mask', round, u], keyLength(this.config.prg));
    this.shamirKey = await deriveKey(m, ['secagg/shamir', round, u], 16);
    this.stage = 0;
    this.roster = new Map();
    this.inbox = new Map();
    this.u2 = new Set();
    this.own = null;
  }

  #advance(stage) {
    if (this.round === null) throw new ProtocolError(`client ${this.id} has not begun a round`);
    if (this.stage !== stage) throw new ProtocolError(`client ${this.id} is at stage ${STAGES[this.stage] ?? 'done'}, not ${STAGES[stage]}`);
    this.stage++;
  }

  /** Stage AdvertiseKeys: {c_public, s_public} (32 raw bytes each). */
  async advertiseKeys() {
    this.#advance(0);
    return { c_public: await x25519PublicOf(this.cSk), s_public: await x25519PublicOf(this.sSk) };
  }

  /** Stage ShareKeys given U1's keys (Map v -> [c_pk, s_pk]): {v: ciphertext} for each neighbour v != u. */
  async shareKeys(roster) {
    this.#advance(1);
    const cfg = this.config, u = this.id, r = this.round;
    const holders = sorted([...cfg.closedNeighbourhood(u)].filter((v) => roster.has(v)));
    if (holders.length < cfg.threshold) {
      throw new ThresholdError(`client ${u}: only ${holders.length} of its neighbourhood advertised keys, fewer than t=${cfg.threshold}`);
    }
    this.roster = new Map(roster);
    const sk = await shareBytes(this.sRaw, holders.length, cfg.threshold, { points: holders,
      key: await deriveKey(this.shamirKey, ['s'], 16) });
    const bk = await shareBytes(this.b, holders.length, cfg.threshold, { points: holders,
      key: await deriveKey(this.shamirKey, ['b'], 16) });
    const cts = {};
    for (const [j, v] of holders.entries()) {
      const limbs = [...sk.data[j], ...bk.data[j]];
      if (v === u) { this.own = [sk.data[j], bk.data[j]]; continue; }
      const plain = new Uint8Array(Uint32Array.from(limbs, Number).buffer);
      const secret = await x25519(this.cSk, roster.get(v)[0]);
      cts[String(v)] = await aesGcm('encrypt', await encKey(secret, r, u, v), plain, aad(r, u, v));
    }
    return cts;
  }

  /** Stage MaskedInputCollection given the ciphertexts addressed to u (Map sender -> bytes): the masked input. */
  async maskedInput(inbox, values) {
    this.#advance(2);
    const cfg = this.config, u = this.id, r = this.round;
    const x = cfg.encode(values);
    const unknown = [...inbox.keys()].filter((v) => !this.roster.has(v));
    if (unknown.length) throw new ProtocolError(`client ${u} got ciphertexts from clients ${unknown} outside U1`);
    this.inbox = new Map(inbox);
    this.u2 = new Set([...inbox.keys(), u]);
    if ([...cfg.closedNeighbourhood(u)].filter((v) => this.u2.has(v)).length < cfg.threshold) {
      throw new ThresholdError(`client ${u}: fewer than t=${cfg.threshold} neighbours shared keys`);
    }
    const ring = cfg.ring;
    const stream = async (seed) => ring.sample(new Stream(seed, { cipher: cfg.prg }), cfg.length);
    ring.addInPlace(x, await stream(this.b));
    for (const v of sorted([...cfg.graph.get(u)].filter((w) => this.u2.has(w)))) {
      const secret = await x25519(this.sSk, this.roster.get(v)[1]);
      const seed = await deriveKey(secret, ['secagg/pairwise-mask', r, Math.min(u, v), Math.max(u, v)], keyLength(cfg.prg));
      if (u < v) ring.addInPlace(x, await stream(seed)); else ring.subInPlace(x, await stream(seed));
    }
    return x;
  }

  /** Stage Unmasking given U3: {key_shares: {w: limbs}, seed_shares: {w: limbs}} (BigUint64Arrays). */
  async unmask(survivors) {
    this.#advance(3);
    const cfg = this.config, u = this.id, r = this.round;
    const u3 = new Set(survivors.map(Number));
    const nu = cfg.closedNeighbourhood(u);
    const outside = [...u3].filter((w) => nu.has(w) && !this.u2.has(w));
    if (outside.length) throw new ProtocolError(`client ${u}: U3 has neighbours ${outside} that never shared keys (not in U2)`);
    if ([...nu].filter((w) => u3.has(w)).length < cfg.threshold) {
      throw new ThresholdError(`client ${u}: fewer than t=${cfg.threshold} neighbours survive; refusing to unmask`);
    }
    const keyShares = {}, seedShares = {};
    for (const w of sorted([...nu].filter((v) => this.u2.has(v)))) {
      let skShare, bShare;
      if (w === u) {
        [skShare, bShare] = this.own;
      } else {
        const secret = await x25519(this.cSk, this.roster.get(w)[0]);
        let plain;
        try {
          plain = await aesGcm('decrypt', await encKey(secret, r, w, u), this.inbox.get(w), aad(r, w, u));
        } catch {
          throw new ProtocolError(`client ${u}: the share ciphertext from client ${w} does not authenticate`);
        }
        const limbs = Array.from(new Uint32Array(plain.buffer, plain.byteOffset, plain.length / 4), BigInt);
        skShare = limbs.slice(0, KEY_LIMBS);
        bShare = limbs.slice(KEY_LIMBS);
      }
      if (u3.has(w)) seedShares[String(w)] = BigUint64Array.from(bShare, BigInt);
      else keyShares[String(w)] = BigUint64Array.from(skShare, BigInt);
    }
    return { key_shares: keyShares, seed_shares: seedShares };
  }
}
