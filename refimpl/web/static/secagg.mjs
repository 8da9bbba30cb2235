// The client of refimpl's multi-server additive secure aggregation (refimpl/secagg/additive.py), bit for bit.
//
// Round r, client k: encode the update in fixed point (|x| <= clip, fracBits), share it with shareCompressed among
// S aggregators under the round key derive_key(clientKey, "secagg/additive", r, k); party p (0 = the array, 1..S-1
// = 16-byte stream keys) goes to aggregator (k + p) mod S. Upload: one encoded update plus 16 (S - 1) bytes.

import { checkCipher, deriveKey, freshKey } from './prg.mjs';
import { OutOfRangeError, Ring, Z2_64 } from './ring.mjs';
import { FixedPoint } from './encoding.mjs';
import { shareCompressed } from './sharing.mjs';

/** A configuration the ring cannot hold (refimpl.errors.ConfigurationError). */
export class ConfigurationError extends RangeError {
  constructor(message) { super(message); this.name = 'ConfigurationError'; }
}

/** A message out of protocol (refimpl.errors.ProtocolError). */
export class ProtocolError extends Error {
  constructor(message) { super(message); this.name = 'ProtocolError'; }
}

/** Public parameters of a round, sizing-checked like refimpl's AdditiveConfig (fixed-point mode). */
export class AdditiveConfig {
  constructor({ length, servers = 2, maxClients = 100, clip = 1.0, fracBits = 16, ring = Z2_64,
    prg = 'aes128-ctr', minClients = 1 }) {
    if (!Number.isInteger(length) || length < 1) throw new ConfigurationError(`length must be at least 1, got ${length}`);
    if (!Number.isInteger(servers) || servers < 2) throw new RangeError(`a sharing needs at least 2 parties, got ${servers}`);
    if (!Number.isInteger(maxClients) || maxClients < 1) {
      throw new ConfigurationError(`max_clients must be at least 1, got ${maxClients}`);
    }
    if (!(typeof clip === 'number' && Number.isFinite(clip) && clip > 0)) {
      throw new ConfigurationError(`clip range must be positive and finite, got clip=${clip}`);
    }
    if (!(ring instanceof Ring)) throw new TypeError('ring must be a Ring');
    checkCipher(prg);
    if (!Number.isInteger(minClients) || minClients < 1 || minClients > maxClients) {
      throw new ConfigurationError(`min_clients must lie in [1, max_clients=${maxClients}], got ${minClients}`);
    }
    const fixedPoint = new FixedPoint({ fracBits, ring });
    const bound = BigInt(Math.ceil(clip * 2 ** fracBits));
    const limit = (ring.modulus - 1n) / 2n;
    if (BigInt(maxClients) * bound > limit) {
      throw new ConfigurationError(`sizing: ${maxClients} clients x per-client bound ${bound} exceeds the signed ` +
        `range ${limit} of ${ring.name}, so the sum could wrap`);
    }
    Object.assign(this, { length, servers, maxClients, clip, fracBits, ring, prg, minClients, fixedPoint,
      perClientBound: bound });
    Object.freeze(this);
  }

  /** From the JSON form used by the vectors and the round server (decimal-string modulus). */
  static fromJSON(c) {
    return new AdditiveConfig({
      length: Number(c.length), servers: Number(c.servers), maxClients: Number(c.max_clients),
      clip: Number(c.clip), fracBits: Number(c.frac_bits),
      ring: new Ring(BigInt(typeof c.ring === 'object' ? c.ring.modulus : c.ring)),
      prg: c.prg ?? 'aes128-ctr', minClients: Number(c.min_clients ?? 1),
    });
  }

  /** Bytes of one encoded contribution. */
  get encodedNbytes() { return this.length * this.ring.elementBytes; }

  /** Encode one contribution (|x| <= clip, never clipped silently). */
  encode(values) {
    if (values.length !== this.length) {
      throw new RangeError(`a contribution has shape (${this.length},), got (${values.length},)`);
    }
    const c = this.clip;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!(Math.abs(v) <= c)) throw new OutOfRangeError(`value ${v} is outside the clip range [-${c}, ${c}]`);
    }
    return this.fixedPoint.encode(values);
  }

  /** Decode a reconstructed total. */
  decodeSum(total) { return this.fixedPoint.decode(total); }
}

/** The aggregator that receives party `party` of client `client`'s sharing. */
export function serverOf(client, party, servers) { return (client + party) % servers; }

export class AdditiveClient {
  #key;
  #rounds = new Set();
  constructor(config, clientId, key = null) {
    if (!Number.isInteger(clientId) || clientId < 0) throw new RangeError(`client id must be >= 0, got ${clientId}`);
    this.config = config;
    this.id = clientId;
    this.#key = key ?? freshKey(16);
  }

  /**
   * ShareUpload messages of round `round`: [{round, client, server, kind, payload}]: kind 'array' with the one full
   * share (a ring array), then kind 'key' with a Uint8Array stream key for each other aggregator. Pass `values` (numbers) or `{encoded}` (ring elements).
   */
  async contribute(round, values, { encoded = null } = {}) {
    if (this.#rounds.has(round)) {
      throw new ProtocolError(`client ${this.id} already contributed to round ${round}; a round key is used once`);
    }
    const cfg = this.config;
    const x = encoded ? cfg.ring.copy(encoded) : cfg.encode(values);
    const roundKey = await deriveKey(this.#key, ['secagg/additive', round, this.id], 16);
    const cs = await shareCompressed(x, cfg.servers, { ring: cfg.ring, key: roundKey, prg: cfg.prg, inPlace: true });
    this.#rounds.add(round);
    const msgs = [{ round, client: this.id, server: serverOf(this.id, 0, cfg.servers), kind: 'array',
      payload: cs.first }];
    cs.keys.forEach((k, i) => msgs.push({ round, client: this.id, server: serverOf(this.id, i + 1, cfg.servers),
      kind: 'key', payload: k }));
    return msgs;
  }
}
