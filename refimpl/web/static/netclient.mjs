// A browser client of `python -m refimpl aggregator --protocol additive` (the client protocol documented in
// refimpl/fl/aggregator.py), as refimpl/fl/net_client.py speaks it:
//
//   lead:            join {size} -> round {round, params, sizes, weight, lr, epochs, batch, codec, additive, ...}
//   share server s:  upload {round, client, server: s, payload: uint64 (d) | 16-byte key, prg} -> {ok}
//   lead:            submit {round, stage: "ShareUpload"} -> the next round message, abort, or finished
//
// The contribution is clip(weight * (local - params)) from local training (train.mjs, the batch order drawn as the
// Python client draws it), or with `synthetic` the public test vector of net_client.synthetic_contribution.

import { deriveKey, freshKey, Stream } from './prg.mjs';
import { Z2_64 } from './ring.mjs';
import { AdditiveClient, AdditiveConfig } from './secagg.mjs';
import { Link } from './transport.mjs';
import { decode, encode } from './wire.mjs';
import { accuracy, trainLocal } from './train.mjs';

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
    if (msg.protocol !== 'additive') {
      throw new Error(`this browser client speaks the additive protocol; the aggregator runs ${msg.protocol}`);
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
    if (this.delayUploadMs && (this.delayRound === null || this.delayRound === r)) {
      this.onEvent('delay', { round: r, ms: this.delayUploadMs });
      await new Promise((res) => setTimeout(res, this.delayUploadMs));
    }
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
    if (next.op === 'round' && this.test && next.synthetic == null) { // the new global model: its accuracy here
      const acc = accuracy(next.params, this.test.images, this.test.labels, next.sizes.map(Number));
      this.onEvent('result', { round: r, clients: null, accuracy: acc });
    } else if (next.op !== 'abort') {
      this.onEvent('result', { round: r, clients: null, accuracy: null });
    }
    return next;
  }

  close() {
    this.closed = true;
    this.lead.close();
    for (const l of this.shareLinks.values()) l.close();
  }
}
