// A federated client of refimpl's browser round server (refimpl/web/server.py): joins over WebSocket, receives the
// round configuration and its data slice, trains locally and uploads its update as seed-compressed additive shares.
//
// Protocol: every WebSocket message is one binary refimpl wire message (wire.mjs) with a "type":
//   client -> server  hello {token, agent, protocol}          upload {round, client, shares: [{server, array|key}]}
//   server -> client  welcome {client, config, task, data, rounds}   round {round, weights, clients}
//                     ack {round, bytes}   result {round, clients, aggregate, accuracy}   error {message}   done {}

import { freshKey } from './prg.mjs';
import { AdditiveClient, AdditiveConfig } from './secagg.mjs';
import { decode, encode } from './wire.mjs';
import { trainLocal } from './train.mjs';

export const PROTOCOL = 1;

/** The deterministic stand-in update of the synthetic task (benchmarks): values in [-0.9 clip, 0.9 clip]. */
export function syntheticUpdate(length, clientId, round, clip) {
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = 0.9 * clip * Math.sin(0.001 * i + clientId + 7 * round);
  return out;
}

export class RoundClient {
  /**
   * @param {string} url ws:// URL of the round server's /ws endpoint.
   * @param {string} token the enrolment token of the run.
   * @param {{onEvent?: Function, delayUploadMs?: number, delayRound?: number|null, WebSocketImpl?: any}} options
   *   delayUploadMs: wait this long before uploading (in round delayRound only, or every round when null): a slow
   *   device, for demonstrating dropouts.
   */
  constructor(url, token, { onEvent = () => {}, delayUploadMs = 0, delayRound = null,
    WebSocketImpl = globalThis.WebSocket } = {}) {
    Object.assign(this, { url, token, onEvent, delayUploadMs, delayRound, WebSocketImpl });
    this.id = null;
    this.config = null;
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.updates = {}; // round -> the plaintext update this client uploaded (it never leaves the tab in the clear)
    this.timings = {}; // round -> {train_ms, encode_share_ms, upload_ms, upload_bytes}
    this.results = {};
    this.closed = false;
  }

  #send(msg) {
    const raw = encode(msg);
    this.ws.send(raw);
    this.bytesSent += raw.length;
    return raw.length;
  }

  /** Connect and take part until the server says done or the socket closes; resolves with the close reason. */
  run() {
    return new Promise((resolve) => {
      const ws = new this.WebSocketImpl(this.url);
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      let queue = Promise.resolve();
      ws.onopen = () => {
        this.#send({ type: 'hello', token: this.token, agent: 'browser', protocol: PROTOCOL });
        this.onEvent('open', {});
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data === 'string') { this.onEvent('error', { message: 'text frame from server ignored' }); return; }
        this.bytesReceived += ev.data.byteLength;
        let msg;
        try {
          msg = decode(new Uint8Array(ev.data));
        } catch (e) {
          this.onEvent('error', { message: `bad message from server: ${e.message}` });
          return;
        }
        if (msg.type === 'ack' && this.timings[Number(msg.round)]) { // timed on arrival, not when handled
          const t = this.timings[Number(msg.round)];
          t.upload_ms = performance.now() - t.t_sent;
        }
        queue = queue.then(() => this.#handle(msg)).catch((e) => {
          this.onEvent('error', { message: `${e.name}: ${e.message}` });
        });
      };
      ws.onclose = (ev) => {
        this.closed = true;
        this.onEvent('close', { code: ev.code, reason: ev.reason });
        resolve({ code: ev.code, reason: ev.reason });
      };
    });
  }

  close() { this.ws?.close(1000, 'client closed'); }

  async #handle(msg) {
    switch (msg.type) {
      case 'welcome': {
        this.id = Number(msg.client);
        this.config = AdditiveConfig.fromJSON(msg.config);
        this.task = msg.task;
        this.data = msg.data ?? null;
        this.secagg = new AdditiveClient(this.config, this.id, freshKey(16));
        this.onEvent('welcome', { client: this.id, config: this.config, task: this.task, rounds: msg.rounds,
          samples: this.data ? this.data.labels.length : 0 });
        break;
      }
      case 'round': await this.#round(Number(msg.round), msg.weights); break;
      case 'ack': this.onEvent('ack', { round: Number(msg.round), bytes: Number(msg.bytes) }); break;
      case 'result': {
        const r = Number(msg.round);
        this.results[r] = { clients: msg.clients.map(Number), accuracy: msg.accuracy, aggregate: msg.aggregate };
        this.onEvent('result', { round: r, clients: this.results[r].clients, accuracy: msg.accuracy });
        break;
      }
      case 'error': this.onEvent('error', { message: String(msg.message) }); break;
      case 'done': this.onEvent('done', {}); this.close(); break;
      default: this.onEvent('error', { message: `unknown message type ${JSON.stringify(msg.type)}` });
    }
  }

  async #round(round, weights) {
    const cfg = this.config;
    this.onEvent('round', { round });
    const t0 = performance.now();
    let update;
    if (this.task.kind === 'softmax') {
      const res = await trainLocal(weights, this.data.images, this.data.labels, {
        epochs: Number(this.task.epochs), batch: Number(this.task.batch), lr: Number(this.task.lr), clip: cfg.clip,
        onProgress: (f) => this.onEvent('progress', { round, fraction: f }),
      });
      update = res.delta;
      this.onEvent('trained', { round, loss: res.loss, clipped: res.clipped });
    } else {
      update = syntheticUpdate(cfg.length, this.id, round, cfg.clip);
    }
    const t1 = performance.now();
    if (this.delayUploadMs && (this.delayRound === null || this.delayRound === round)) {
      this.onEvent('delay', { round, ms: this.delayUploadMs });
      await new Promise((r) => setTimeout(r, this.delayUploadMs));
    }
    if (this.closed) return;
    const t2 = performance.now();
    const msgs = await this.secagg.contribute(round, update); // encode + seed-compressed shares
    const t3 = performance.now();
    const shares = msgs.map((m) => (m.kind === 'key' ? { server: m.server, key: m.payload }
      : { server: m.server, array: m.payload }));
    this.updates[round] = update;
    const bytes = this.#send({ type: 'upload', round, client: this.id, shares });
    this.timings[round] = { train_ms: t1 - t0, encode_share_ms: t3 - t2, upload_bytes: bytes, t_sent: t3 };
    this.onEvent('uploaded', { round, bytes, encode_share_ms: t3 - t2 });
  }
}
