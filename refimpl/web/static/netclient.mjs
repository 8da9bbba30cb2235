// A browser client of `python -m refimpl aggregator` (the client protocol documented in refimpl/fl/aggregator.py),
// as refimpl/fl/net_client.py speaks it:
//
//   lead:            join {size} -> round {round, protocol, params, sizes, weight, lr, epochs, batch, codec, ...}
//   additive:        share server s: upload {round, client, server: s, payload: uint64 (d) | 16-byte key, prg} -> {ok}
//                    lead: submit {round, stage: "ShareUpload"} -> the next round message, abort, or finished
//   secagg(+):       lead: submit {round, stage, ...} for AdvertiseKeys, ShareKeys, MaskedInputCollection and
//                    Unmasking (bonawitz.mjs), each answered when the stage closes
//
// The contribution is clip(weight * (local - params)) from local training (train.mjs, the batch order drawn as the
// Python client draws it), or with `synthetic` the public test vector of net_client.synthetic_contribution.

import { deriveKey, freshKey, Stream } from './prg.mjs';
import { Z2_64 } from './ring.mjs';
import { AdditiveClient, AdditiveConfig } from './secagg.mjs';
import { Link } from './transport.mjs';
import { decode, encode } from './wire.mjs';
import { accuracy, trainLocal } from './train.mjs';
import { SecAggClient, SecAggConfig } from './bonawitz.mjs';

/** net_client.synthetic_contribution: multiples of 2^-8 in [-clip/2, clip/2] (exact in fixed point). */
export function syntheticContribution(client, round, length, clip) {
  const out = new Float64Array(length);
  for (let k = 0; k < length; k++) {
    const steps = ((client * 7919 + round * 104729 + k * 31) % 257) - 128;
    out[k] = (steps / 256) * clip;
  }
  return out;
}

/** The public batch order of (client, round, epoch e): argsort of keystream words, as the Python client. */
export async function batchOrder(stream, n) {
  const words = new BigUint64Array(n);
  await stream.readInto(words);
  return Array.from({ length: n }, (_, k) => k).sort((a, b) => (words[a] < words[b] ? -1 : words[a] > words[b] ? 1 : a - b));
}

export class AggregatorClient {
  /**
   * @param {string} leadUrl ws:// address of the lead aggregator (started with --insecure-plaintext).
   * @param {number} clientId this client's id k (party name client-k).
   * @param {{images: Uint8Array, labels: Uint8Array}|null} data the tab's partition (null with --synthetic).
   */
  constructor(leadUrl, clientId, data, { test = null, onEvent = () => {}, delayUploadMs = 0, delayRound = null } = {}) {
    Object.assign(this, { leadUrl, id: clientId, data, test, onEvent, delayUploadMs, delayRound });
    this.name = `client-${clientId}`;
    this.lead = new Link(leadUrl, 'aggregator', this.name);
    this.shareLinks = new Map();
    this.key = freshKey(16);
    this.updates = {};
    this.timings = {};
    this.closed = false;
  }

  get bytesSent() {
    let n = this.lead.bytesWritten;
    for (const l of this.shareLinks.values()) n += l.bytesWritten;
    return n;
  }

  async #call(link, kind, msg) {
    const raw = await link.request(kind, encode(msg));
    return raw ? decode(raw) : {};
  }

  /** Take part until the aggregator says finished; resolves with its reason. */
  async run() {
    const size = this.data ? this.data.labels.length : 1;
    let msg = await this.#call(this.lead, 'join', { op: 'join', size });
    this.onEvent('joined', { client: this.id });
    for (;;) {
      if (this.closed) return 'closed';
      if (msg.op === 'finished') { this.onEvent('done', { reason: msg.reason }); return String(msg.reason); }
      if (msg.op === 'round') {
        try {
          msg = await this.#round(msg);
          continue;
        } catch (e) {
          if (e.name === 'WorkerUnavailable') throw e;
          this.onEvent('error', { message: `round ${msg.round}: ${e.name}: ${e.message}` });
        }
      } else if (msg.error || msg.op === 'abort') {
        this.onEvent(msg.op === 'abort' ? 'abort' : 'error', { message: String(msg.error ?? msg.reason) });
      }
      msg = await this.#call(this.lead, 'join', { op: 'join', size });
    }
  }

  async #round(msg) {
    const r = Number(msg.round);
    const c = msg.codec;
    if (msg.protocol !== 'additive' && msg.protocol !== 'secagg') {
      throw new Error(`unknown secure-aggregation protocol ${JSON.stringify(msg.protocol)}`);
    }
    this.onEvent('round', { round: r, clients: null });
    const t0 = performance.now();
    let update;
    if (msg.synthetic !== null && msg.synthetic !== undefined) {
      update = syntheticContribution(this.id, r, Number(c.length), Number(c.clip));
    } else {
      const stream = new Stream(await deriveKey(new Uint8Array(16), ['refimpl/client-batches', this.id, r], 16));
      const res = await trainLocal(msg.params, this.data.images, this.data.labels, {
        sizes: msg.sizes.map(Number), epochs: Number(msg.epochs), batch: Number(msg.batch), lr: Number(msg.lr),
        clip: Number(c.clip), weight: Number(msg.weight), order: () => batchOrder(stream, this.data.labels.length),
        onProgress: (f) => this.onEvent('progress', { round: r, fraction: f }),
      });
      update = res.delta;
      this.onEvent('trained', { round: r, loss: res.loss, clipped: res.clipped });
    }
    if (msg.protocol === 'secagg') return this.#secagg(msg, r, update, t0);
    await this.#maybeDelay(r);
    const a = msg.additive;
    const cfg = new AdditiveConfig({ length: Number(c.length), servers: a.servers.length,
      maxClients: Number(c.max_clients), clip: Number(c.clip), fracBits: Number(c.frac_bits), ring: Z2_64,
      prg: a.prg, minClients: Number(a.min_clients) });
    const t1 = performance.now();
    const client = new AdditiveClient(cfg, this.id, this.key);
    const shares = await client.contribute(r, update);
    const t2 = performance.now();
    let bytes = 0;
    for (const m of shares) {
      const url = a.servers[m.server];
      let link = this.shareLinks.get(url);
      if (!link) { link = new Link(url, `aggregator-${m.server}`, this.name); this.shareLinks.set(url, link); }
      const before = link.bytesWritten;
      const out = await this.#call(link, 'upload', { op: 'upload', round: r, client: this.id, server: m.server,
        payload: m.payload, prg: m.prg ?? cfg.prg });
      bytes += link.bytesWritten - before;
      if (out.error) throw new Error(`share server ${m.server}: ${out.error}`);
    }
    const t3 = performance.now();
    this.updates[r] = update;
    this.timings[r] = { train_ms: t1 - t0, encode_share_ms: t2 - t1, upload_ms: t3 - t2, upload_bytes: bytes };
    this.onEvent('uploaded', { round: r, bytes, encode_share_ms: t2 - t1 });
    const next = await this.#call(this.lead, 'submit', { op: 'submit', round: r, stage: 'ShareUpload' });
    this.#result(r, next);
    return next;
  }

  async #maybeDelay(r) {
    if (this.delayUploadMs && (this.delayRound === null || this.delayRound === r)) {
      this.onEvent('delay', { round: r, ms: this.delayUploadMs });
      await new Promise((res) => setTimeout(res, this.delayUploadMs));
    }
  }

  async #stage(r, stage, fields, nextStage) {
    const out = await this.#call(this.lead, 'submit', { op: 'submit', round: r, stage, ...fields });
    if (out.op !== 'stage' || out.stage !== nextStage || Number(out.round) !== r) {
      throw new Error(`${this.name}: round ${r} ended at stage ${stage}: ${out.error ?? out.reason ?? JSON.stringify(out.op)}`);
    }
    return out;
  }

  async #secagg(msg, r, update, t0) {
    const cfg = await SecAggConfig.fromRound(msg.secagg, msg.codec);
    this.secaggClient ??= new SecAggClient(cfg, this.id, freshKey(32));
    const cl = this.secaggClient;
    cl.config = cfg;
    const bytes0 = this.bytesSent;
    await cl.beginRound(r);
    let out = await this.#stage(r, 'AdvertiseKeys', await cl.advertiseKeys(), 'ShareKeys');
    const roster = new Map(Object.entries(out.roster).map(([v, k]) => [Number(v), k]));
    out = await this.#stage(r, 'ShareKeys', { ciphertexts: await cl.shareKeys(roster) }, 'MaskedInputCollection');
    await this.#maybeDelay(r);
    const t1 = performance.now();
    const masked = await cl.maskedInput(new Map(Object.entries(out.inbox).map(([u, c]) => [Number(u), c])), update);
    const t2 = performance.now();
    out = await this.#stage(r, 'MaskedInputCollection', { masked }, 'Unmasking');
    this.updates[r] = update;
    this.onEvent('uploaded', { round: r, bytes: this.bytesSent - bytes0, encode_share_ms: t2 - t1 });
    const next = await this.#call(this.lead, 'submit', { op: 'submit', round: r, stage: 'Unmasking',
      ...(await cl.unmask(out.survivors.map(Number))) });
    this.timings[r] = { train_ms: t1 - t0, encode_share_ms: t2 - t1, upload_bytes: this.bytesSent - bytes0 };
    this.#result(r, next);
    return next;
  }

  #result(r, next) {
    if (next.op === 'round' && this.test && next.synthetic == null) { // the new global model: its accuracy here
      const acc = accuracy(next.params, this.test.images, this.test.labels, next.sizes.map(Number));
      this.onEvent('result', { round: r, clients: null, accuracy: acc });
    } else if (next.op !== 'abort') {
      this.onEvent('result', { round: r, clients: null, accuracy: null });
    }
  }

  close() {
    this.closed = true;
    this.lead.close();
    for (const l of this.shareLinks.values()) l.close();
  }
}
