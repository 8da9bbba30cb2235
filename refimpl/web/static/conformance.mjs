// refimpl's known-answer vectors (refimpl/testing/vectors/*.json) checked against this JavaScript implementation.
//
// checkVectors(name, doc) runs every case of one vector file and returns {name, checked, failures}; a failure names
// the case and what differed. The same function runs under `node --test` (tests/js/) and in the browser (the page's
// self-check and tests/test_web_*.py), so both runtimes are held to the reference bit for bit.

import { bytesToHex, deriveKey, hexToBytes, kdfInfo, keystream, Stream } from './prg.mjs';
import { Ring } from './ring.mjs';
import { FixedPoint } from './encoding.mjs';
import { expand, share, shareCompressed } from './sharing.mjs';
import { AdditiveClient, AdditiveConfig } from './secagg.mjs';
import { lagrangeCoefficients, reconstructBytes, shamirReconstruct, shamirShare, shareBytes } from './shamir.mjs';

/** The vector files this module checks. */
export const CHECKED_VECTORS = Object.freeze(['streams', 'kdf', 'ring', 'encoding', 'share', 'share_compressed',
  'shamir', 'secagg_additive']);

const parseFloatStr = (s) => (s === 'nan' ? NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s));
const ringOf = (r) => new Ring(BigInt(r.modulus));
const strs = (arr) => Array.from(arr, (v) => BigInt(v).toString());
const sameFloat = (a, b) => Object.is(a, b) || (a === b);

function label(l) {
  if (l.type === 'int') return BigInt(l.value);
  if (l.type === 'str') return l.value;
  return hexToBytes(l.value);
}

class Checker {
  constructor(name) { this.name = name; this.checked = 0; this.failures = []; }
  eq(what, got, want) {
    this.checked++;
    const g = JSON.stringify(got), w = JSON.stringify(want);
    if (g !== w) this.failures.push(`${what}: got ${g.slice(0, 160)}, expected ${w.slice(0, 160)}`);
  }
  ok(what, cond, detail = '') {
    this.checked++;
    if (!cond) this.failures.push(`${what}${detail ? ': ' + detail : ''}`);
  }
  async throws(what, fn, errorName) {
    this.checked++;
    try {
      await fn();
      this.failures.push(`${what}: did not throw`);
    } catch (e) {
      if (errorName && e.name !== errorName) this.failures.push(`${what}: threw ${e.name} (${e.message}), expected ${errorName}`);
    }
  }
  result() { return { name: this.name, checked: this.checked, failures: this.failures }; }
}

async function streams(doc, c) {
  for (const [i, v] of [...doc.cases.map((v, i) => [`case ${i}`, v]), ...doc.published.map((v) => [v.source, v])]) {
    const counter = Number(v.counter);
    let nonce = hexToBytes(v.nonce);
    if (v.cipher === 'chacha20') {
      const n16 = new Uint8Array(16);
      new DataView(n16.buffer).setUint32(0, counter, true);
      n16.set(nonce, 4);
      nonce = n16;
    }
    const ks = await keystream(hexToBytes(v.key), Number(v.nbytes), { cipher: v.cipher, nonce, offset: Number(v.offset) });
    c.eq(`${i} (${v.cipher}, offset ${v.offset}, ${v.nbytes} bytes)`, bytesToHex(ks), v.keystream);
    if (v.plaintext) {
      const pt = hexToBytes(v.plaintext);
      c.eq(`${i} ciphertext`, bytesToHex(pt.map((b, j) => b ^ ks[j])), v.ciphertext);
    }
  }
  // sequential reads of a Stream equal one read (seekable, position-tracking)
  const s = new Stream(hexToBytes(doc.cases[0].key), { cipher: doc.cases[0].cipher });
  const a = await s.read(7), b = await s.read(25);
  const whole = await keystream(hexToBytes(doc.cases[0].key), 32, { cipher: doc.cases[0].cipher });
  c.eq('Stream.read in pieces', bytesToHex(a) + bytesToHex(b), bytesToHex(whole));
}

async function kdf(doc, c) {
  for (const [i, v] of doc.cases.entries()) {
    const labels = v.labels.map(label);
    c.eq(`case ${i} info`, bytesToHex(kdfInfo(Number(v.length), labels)), v.info);
    c.eq(`case ${i} key`, bytesToHex(await deriveKey(hexToBytes(v.master), labels, Number(v.length))), v.key);
  }
}

async function ring(doc, c) {
  for (const v of doc.cases) {
    const r = ringOf(v.ring);
    const o = v.ops;
    const M = r.modulus;
    for (const op of ['add', 'sub']) {
      const got = r[op](r.fromValues(o[op].a), r.fromValues(o[op].b));
      c.eq(`${r.name} ${op}`, strs(got), o[op].expected);
    }
    c.eq(`${r.name} mul`, o.mul.a.map((a, j) => ((BigInt(a) * BigInt(o.mul.b[j])) % M).toString()), o.mul.expected);
    c.eq(`${r.name} lift`, o.lift.a.map((a) => r.lift(a).toString()), o.lift.expected);
    c.eq(`${r.name} reduce`, o.reduce.a.map((a) => r.reduce(a).toString()), o.reduce.expected);
    for (const smp of o.sample) {
      const got = await r.sample(new Stream(hexToBytes(smp.key), { cipher: smp.cipher }), Number(smp.count));
      c.eq(`${r.name} sample (${smp.cipher})`, strs(got), smp.expected);
    }
  }
}

async function encoding(doc, c) {
  for (const v of doc.cases) {
    const cfg = v.config;
    const fp = new FixedPoint({ fracBits: Number(cfg.frac_bits), base: Number(cfg.base), ring: ringOf(cfg.ring) });
    const xs = v.encode.x.map(parseFloatStr);
    const enc = fp.encode(xs);
    c.eq(`${fp} encode`, strs(enc), v.encode.expected);
    // element by element too: the typed-array fast path and the exact BigInt path must agree
    c.eq(`${fp} encode one by one`, xs.map((x) => fp.ring.reduce(fp.encodeInteger(x)).toString()), v.encode.expected);
    const dec = Array.from(fp.decode(enc));
    const want = v.encode.decoded.map(parseFloatStr);
    c.ok(`${fp} decode(encode(x))`, dec.every((d, j) => sameFloat(d, want[j])), `got ${dec.slice(0, 6)}`);
    const r = fp.ring.fromValues(v.decode.r);
    const got = Array.from(fp.decode(r));
    const wantD = v.decode.expected.map(parseFloatStr);
    const bad = got.findIndex((d, j) => !sameFloat(d, wantD[j]));
    c.ok(`${fp} decode`, bad < 0, bad < 0 ? '' : `r=${v.decode.r[bad]}: got ${got[bad]}, expected ${wantD[bad]}`);
    const bigDec = Array.from(fp.decode(v.decode.r)); // the generic BigInt path
    c.ok(`${fp} decode (BigInt input)`, bigDec.every((d, j) => sameFloat(d, wantD[j])));
    for (const x of v.encode_rejects.x) await c.throws(`${fp} rejects ${x}`, () => fp.encode([parseFloatStr(x)]), 'OutOfRangeError');
    const maxE = parseFloatStr(v.max_encodable);
    c.ok(`${fp} encodes max_encodable ${v.max_encodable}`, fp.encode([maxE, -maxE]).length === 2);
  }
}

async function shareCases(doc, c) {
  for (const [i, v] of doc.cases.entries()) {
    const r = ringOf(v.ring);
    const shares = await share(r.fromValues(v.secret), Number(v.n), { ring: r, key: hexToBytes(v.key), prg: v.prg });
    c.eq(`case ${i} (${r.name}, n=${v.n}, ${v.prg})`, shares.map(strs), v.shares);
  }
}

async function shareCompressedCases(doc, c) {
  for (const [i, v] of doc.cases.entries()) {
    const r = ringOf(v.ring);
    const cs = await shareCompressed(r.fromValues(v.secret), Number(v.n), { ring: r, key: hexToBytes(v.key), prg: v.prg });
    const what = `case ${i} (${r.name}, n=${v.n}, ${v.prg})`;
    c.eq(`${what} first`, strs(cs.first), v.first);
    c.eq(`${what} keys`, cs.keys.map(bytesToHex), v.keys);
    c.eq(`${what} nbytes`, [cs.nbytes, cs.expandedNbytes], [Number(v.nbytes), Number(v.expanded_nbytes)]);
    const full = await expand(cs);
    const sum = full.slice(1).reduce((acc, s) => r.add(acc, s), full[0]);
    c.eq(`${what} expands to the secret`, strs(sum), v.secret);
  }
}

async function secaggAdditive(doc, c) {
  for (const v of doc.cases) {
    const cfg = AdditiveConfig.fromJSON(v.config);
    const round = Number(v.round);
    const total = cfg.ring.zeros(cfg.length);
    for (const cl of v.clients) {
      const client = new AdditiveClient(cfg, Number(cl.id), hexToBytes(cl.key));
      c.eq(`client ${cl.id} round key`, bytesToHex(await deriveKey(hexToBytes(cl.key), ['secagg/additive', round,
        Number(cl.id)], 16)), cl.round_key);
      c.eq(`client ${cl.id} encoded`, strs(cfg.encode(cl.values.map(parseFloatStr))), cl.encoded);
      const msgs = await client.contribute(round, cl.values.map(parseFloatStr));
      const arrays = msgs.filter((m) => m.kind === 'array');
      const keys = msgs.filter((m) => m.kind === 'key');
      c.eq(`client ${cl.id} first`, { server: arrays[0].server, array: strs(arrays[0].payload) }, cl.first);
      c.eq(`client ${cl.id} keys`, keys.map((m) => ({ server: m.server, key: bytesToHex(m.payload) })), cl.keys);
      const nbytes = arrays[0].payload.length * cfg.ring.elementBytes + keys.reduce((a, m) => a + m.payload.length, 0);
      c.eq(`client ${cl.id} upload bytes`, nbytes, Number(cl.upload_nbytes));
      await c.throws(`client ${cl.id} refuses a second upload in round ${round}`, () => client.contribute(round,
        cl.values.map(parseFloatStr)), 'ProtocolError');
      const parts = await expand({ ring: cfg.ring, prg: cfg.prg, first: arrays[0].payload, keys: keys.map((m) => m.payload) });
      for (const p of parts) cfg.ring.addInPlace(total, p);
    }
    c.eq('ring_total', strs(total), v.ring_total);
    const dec = Array.from(cfg.decodeSum(total));
    c.ok('total', dec.every((d, j) => sameFloat(d, parseFloatStr(v.total[j]))), `got ${dec}`);
  }
}

async function shamir(doc, c) {
  for (const [i, v] of doc.cases.entries()) {
    const field = ringOf(v.field);
    const what = `case ${i} (p=${field.modulus}, n=${v.n}, t=${v.t}, ${v.prg})`;
    c.eq(`${what} stream key`, bytesToHex(await deriveKey(hexToBytes(v.key), ['refimpl/shamir'],
      v.prg === 'chacha20' ? 32 : 16)), v.stream_key);
    const sh = await shamirShare(v.secret, Number(v.n), Number(v.t), { field, key: hexToBytes(v.key),
      points: v.points.map(Number), prg: v.prg });
    c.eq(`${what} shares`, sh.data.map(strs), v.shares);
    c.eq(`${what} reconstructs`, strs(shamirReconstruct({ ...sh, xs: sh.xs.slice().reverse(), data: sh.data.slice().reverse() })),
      v.secret.map((x) => field.reduce(x).toString()));
  }
  for (const v of doc.lagrange) {
    const field = ringOf(v.field);
    c.eq(`lagrange ${v.points}`, strs(lagrangeCoefficients(v.points.map(Number), field, BigInt(v.at))), v.expected);
  }
  for (const v of doc.share_bytes) {
    const field = ringOf(v.field);
    const sh = await shareBytes(hexToBytes(v.secret), Number(v.n), Number(v.t), { field, key: hexToBytes(v.key),
      points: v.points.map(Number), prg: v.prg });
    c.eq('share_bytes shares', sh.data.map(strs), v.shares);
    c.eq('reconstruct_bytes', bytesToHex(reconstructBytes(sh)), v.secret);
  }
}

const CHECKS = { streams, kdf, ring, encoding, share: shareCases, share_compressed: shareCompressedCases,
  shamir, secagg_additive: secaggAdditive };

/** Check one vector file's parsed JSON; returns {name, checked, failures}. */
export async function checkVectors(name, doc) {
  const fn = CHECKS[name];
  if (!fn) throw new RangeError(`no check for vector set ${JSON.stringify(name)}; checked: ${CHECKED_VECTORS.join(', ')}`);
  if (doc.schema_version !== 1) throw new RangeError(`vector schema ${doc.schema_version} is not 1`);
  const c = new Checker(name);
  try {
    await fn(doc, c);
  } catch (e) {
    c.failures.push(`raised ${e.name}: ${e.message}`);
  }
  return c.result();
}

/** Fetch each vector file from `baseUrl` (browser) and check it. */
export async function checkAll(baseUrl, names = CHECKED_VECTORS) {
  const out = [];
  for (const name of names) {
    const resp = await fetch(`${baseUrl}/${name}.json`);
    if (!resp.ok) throw new Error(`vector file ${name}.json: HTTP ${resp.status}`);
    out.push(await checkVectors(name, await resp.json()));
  }
  return out;
}
