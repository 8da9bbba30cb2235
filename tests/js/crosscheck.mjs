// Cross-check helper for tests/test_web_vectors.py: reads a JSON batch of fresh inputs on stdin, computes them with
// the JavaScript module and writes the results as JSON on stdout (integers as decimal strings, bytes as hex).
import { readFileSync } from 'node:fs';
import { bytesToHex, hexToBytes } from '../../refimpl/web/static/prg.mjs';
import { Ring } from '../../refimpl/web/static/ring.mjs';
import { FixedPoint } from '../../refimpl/web/static/encoding.mjs';
import { shareCompressed } from '../../refimpl/web/static/sharing.mjs';
import { decode, encode } from '../../refimpl/web/static/wire.mjs';

const req = JSON.parse(readFileSync(0, 'utf8'));
const out = { encode: [], share: [], wire: [] };
for (const c of req.encode) {
  const fp = new FixedPoint({ fracBits: c.frac_bits, base: c.base, ring: new Ring(BigInt(c.modulus)) });
  out.encode.push(Array.from(fp.encode(c.x.map(Number)), (v) => BigInt(v).toString()));
}
for (const c of req.share) {
  const ring = new Ring(BigInt(c.modulus));
  const cs = await shareCompressed(ring.fromValues(c.secret), c.n, { ring, key: hexToBytes(c.key), prg: c.prg });
  out.share.push({ first: Array.from(cs.first, (v) => BigInt(v).toString()), keys: cs.keys.map(bytesToHex) });
}
for (const hex of req.wire) out.wire.push(bytesToHex(encode(decode(hexToBytes(hex)))));
process.stdout.write(JSON.stringify(out));
