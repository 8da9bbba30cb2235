// refimpl.net.transport's framing over a browser WebSocket: a client Link to one party (the lead aggregator or a
// share server of `python -m refimpl aggregator`).
//
// A message travels as binary WebSocket messages of at most CHUNK payload bytes, each behind a 16-byte header
// "RN" | type u8 | flags u8 | request id u64 LE | chunk index u32 LE; the first chunk starts with total length u64 LE |
// kind length u8 | kind. The connection opens with HELLO {party: me, to: name, version: 1}, answered by HELLO
// {party, boot} (or FAIL with the reason). Requests carry increasing ids and are answered by REPLY (bytes), ACK
// (empty) or FAIL (rejected). Browsers cannot present client certificates, so this Link speaks ws:// to a party
// started with --insecure-plaintext on loopback: there the name in HELLO is an unauthenticated claim.

export const CHUNK = 1 << 20;
export const HELLO = 0, REQUEST = 1, NOTIFY = 2, REPLY = 3, ACK = 4, FAIL = 5;
const LAST = 1;
const HDR = 16;

/** The party is unreachable or broke the connection (refimpl.errors.WorkerUnavailable). */
export class WorkerUnavailable extends Error {
  constructor(message) { super(message); this.name = 'WorkerUnavailable'; }
}

/** The party rejected a request (refimpl.errors.ProtocolError). */
export class TransportProtocolError extends Error {
  constructor(message) { super(message); this.name = 'ProtocolError'; }
}

/** The WebSocket messages of one transport message. */
export function* frames(typ, req, kind, payload) {
  const kb = new TextEncoder().encode(kind);
  const first = new Uint8Array(9 + kb.length);
  const fv = new DataView(first.buffer);
  fv.setBigUint64(0, BigInt(payload.length), true);
  first[8] = kb.length;
  first.set(kb, 9);
  let index = 0, pos = 0;
  for (;;) {
    const size = index === 0 ? CHUNK - first.length : CHUNK;
    const part = payload.subarray(pos, pos + size);
    pos += part.length;
    const last = pos >= payload.length;
    const out = new Uint8Array(HDR + (index === 0 ? first.length : 0) + part.length);
    const dv = new DataView(out.buffer);
    out[0] = 0x52; out[1] = 0x4e; // "RN"
    out[2] = typ; out[3] = last ? LAST : 0;
    dv.setBigUint64(4, BigInt(req), true);
    dv.setUint32(12, index, true);
    let at = HDR;
    if (index === 0) { out.set(first, at); at += first.length; }
    out.set(part, at);
    yield out;
    if (last) return;
    index++;
  }
}

/** Reassembles frames into {typ, req, kind, data}; throws TransportProtocolError on anything malformed. */
export class Assembler {
  constructor(maxMessage = 2 ** 34) { this.maxMessage = maxMessage; this.cur = null; }
  feed(frame) {
    if (frame.length < HDR) throw new TransportProtocolError(`malformed frame of ${frame.length} bytes`);
    const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const typ = frame[2], flags = frame[3];
    const req = Number(dv.getBigUint64(4, true)), index = dv.getUint32(12, true);
    if (frame[0] !== 0x52 || frame[1] !== 0x4e || typ > FAIL || (flags & ~LAST)) {
      throw new TransportProtocolError('malformed frame header');
    }
    let body = frame.subarray(HDR);
    let cur = this.cur;
    if (index === 0) {
      if (cur) throw new TransportProtocolError(`message ${req} starts before message ${cur.req} ended`);
      if (body.length < 9) throw new TransportProtocolError('malformed first chunk');
      const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
      const total = Number(bv.getBigUint64(0, true));
      if (total > this.maxMessage) throw new TransportProtocolError(`message of ${total} bytes exceeds the limit`);
      const klen = body[8];
      const kind = new TextDecoder().decode(body.subarray(9, 9 + klen));
      cur = this.cur = { typ, req, kind, data: new Uint8Array(total), filled: 0, index: 0 };
      body = body.subarray(9 + klen);
    } else if (!cur || req !== cur.req || typ !== cur.typ || index !== cur.index + 1) {
      throw new TransportProtocolError(`chunk ${index} of message ${req} out of sequence`);
    }
    cur.index = index;
    if (cur.filled + body.length > cur.data.length) throw new TransportProtocolError(`message ${req} is too long`);
    cur.data.set(body, cur.filled);
    cur.filled += body.length;
    if (flags & LAST) {
      this.cur = null;
      if (cur.filled !== cur.data.length) throw new TransportProtocolError(`message ${req} ended early`);
      return cur;
    }
    return null;
  }
}

/** A connection from party `me` to party `name` at `url` (ws://host:port). */
export class Link {
  constructor(url, name, me, { WebSocketImpl = globalThis.WebSocket, deadlineMs = 600_000 } = {}) {
    Object.assign(this, { url, name, me, WebSocketImpl, deadlineMs });
    this.nextId = 1;
    this.pending = new Map();
    this.ws = null;
    this.bytesWritten = 0;
    this.bytesRead = 0;
  }

  #unavailable(why) { return new WorkerUnavailable(`party '${this.name}' at ${this.url} is unavailable: ${why}`); }

  connect() {
    if (this.opening) return this.opening;
    this.opening = new Promise((resolve, reject) => {
      const ws = new this.WebSocketImpl(this.url);
      ws.binaryType = 'arraybuffer';
      let asm = new Assembler(1 << 16);
      let ready = false;
      const fail = (why) => {
        const err = this.#unavailable(why);
        if (!ready) reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        this.ws = null;
        this.opening = null;
      };
      ws.onopen = () => {
        const hello = new TextEncoder().encode(JSON.stringify({ party: this.me, to: this.name, version: 1 }));
        ws.send(frames(HELLO, 0, 'hello', hello).next().value);
      };
      ws.onmessage = (ev) => {
        const frame = new Uint8Array(ev.data);
        this.bytesRead += frame.length;
        let msg;
        try {
          msg = asm.feed(frame);
        } catch (e) {
          ws.close(1002, 'malformed frame');
          fail(`malformed reply (${e.message})`);
          return;
        }
        if (!msg) return;
        if (!ready) {
          if (msg.typ === FAIL) { fail(`it refused us: ${new TextDecoder().decode(msg.data)}`); ws.close(); return; }
          const info = JSON.parse(new TextDecoder().decode(msg.data));
          if (msg.typ !== HELLO || info.party !== this.name) { fail(`unexpected handshake ${JSON.stringify(info)}`); ws.close(); return; }
          ready = true;
          this.boot = info.boot;
          this.ws = ws;
          asm = new Assembler();
          resolve(this);
          return;
        }
        const p = this.pending.get(msg.req);
        if (!p) return;
        this.pending.delete(msg.req);
        if (msg.typ === REPLY) p.resolve(msg.data);
        else if (msg.typ === ACK) p.resolve(null);
        else if (msg.typ === FAIL) {
          p.reject(new TransportProtocolError(`party '${this.name}' rejected the request: ${new TextDecoder().decode(msg.data)}`));
        }
      };
      ws.onclose = (ev) => fail(`connection closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
      ws.onerror = () => {}; // onclose follows with the code
    });
    return this.opening;
  }

  /** Send one request; resolves with the reply's bytes (null for an ACK). */
  async request(kind, payload) {
    await this.connect();
    const req = this.nextId++;
    const answer = new Promise((resolve, reject) => this.pending.set(req, { resolve, reject }));
    for (const f of frames(REQUEST, req, kind, payload)) {
      this.ws.send(f);
      this.bytesWritten += f.length;
    }
    return answer;
  }

  close() { this.ws?.close(1000); }
}
