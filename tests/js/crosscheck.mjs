// Cross-check helper for tests/test_web_vectors.py: reads a JSON batch of fresh inputs on stdin, computes them with
// the JavaScript module and writes the results as JSON on stdout (integers as decimal strings, bytes as hex).
import { readFileSync } from 'node:fs';
import { bytesToHex, hasX25519, hexToBytes } from '../../refimpl/web/static/prg.mjs';
import { Ring } from '../../refimpl/web/static/ring.mjs';
import { FixedPoint } from '../../refimpl/web/static/encoding.mjs';
import { shareCompressed } from '../../refimpl/web/static/sharing.mjs';
import { decode, encode } from '../../refimpl/web/static/wire.mjs';
import { SecAggClient, SecAggConfig } from '../../refimpl/web/static/bonawitz.mjs';

const req = JSON.parse(readFileSync(0, 'utf8'));
const out = { encode: [], share: [], wire: [], secagg: [] };
if (req.secagg && !(await hasX25519())) out.no_x25519 = true;
for (const c of req.encode ?? []) {
  const fp = new FixedPoint({ fracBits: c.frac_bits, base: c.base, ring: new Ring(BigInt(c.modulus)) });
  out.encode.push(Array.from(fp.encode(c.x.map(Number)), (v) => BigInt(v).toString()));
}
for (const c of req.share ?? []) {
  const ring = new Ring(BigInt(c.modulus));
  const cs = await shareCompressed(ring.fromValues(c.secret), c.n, { ring, key: hexToBytes(c.key), prg: c.prg });
  out.share.push({ first: Array.from(cs.first, (v) => BigInt(v).toString()), keys: cs.keys.map(bytesToHex) });
}
for (const hex of req.wire ?? []) out.wire.push(bytesToHex(encode(decode(hexToBytes(hex)))));
for (const c of out.no_x25519 ? [] : req.secagg ?? []) { // one client's four SecAgg stages under a fixed master key
  const cfg = await SecAggConfig.fromRound({ ...c.secagg, graph_key: hexToBytes(c.secagg.graph_key) }, c.codec);
  const cl = new SecAggClient(cfg, c.client, hexToBytes(c.key));
  await cl.beginRound(c.round);
  const adv = await cl.advertiseKeys();
  const roster = new Map(Object.entries(c.roster).map(([v, k]) => [Number(v), k.map(hexToBytes)]));
  const cts = await cl.shareKeys(roster);
  const masked = await cl.maskedInput(new Map(Object.entries(c.inbox).map(([v, h]) => [Number(v), hexToBytes(h)])), c.values);
  const um = await cl.unmask(c.survivors);
  const hexMap = (m) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Array.from(v, String)]));
  out.secagg.push({ c_public: bytesToHex(adv.c_public), s_public: bytesToHex(adv.s_public),
    ciphertexts: Object.fromEntries(Object.entries(cts).map(([k, v]) => [k, bytesToHex(v)])),
    masked: Array.from(masked, String), key_shares: hexMap(um.key_shares), seed_shares: hexMap(um.seed_shares) });
}
process.stdout.write(JSON.stringify(out));
