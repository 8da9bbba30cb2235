// A line-oriented JSON server over stdin/stdout for tests/test_web_properties.py: one request per line, one answer
// per line, so hypothesis can check many examples against the JavaScript module without a process per example.
import { createInterface } from 'node:readline';
import { bytesToHex, hexToBytes } from '../../refimpl/web/static/prg.mjs';
import { Ring } from '../../refimpl/web/static/ring.mjs';
import { FixedPoint } from '../../refimpl/web/static/encoding.mjs';
import { shareCompressed } from '../../refimpl/web/static/sharing.mjs';

const strs = (arr) => Array.from(arr, (v) => BigInt(v).toString());
const parse = (s) => (s === 'nan' ? NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s));

async function handle(req) {
  if (req.op === 'encode') {
    const fp = new FixedPoint({ fracBits: req.frac_bits, base: req.base, ring: new Ring(BigInt(req.modulus)) });
    const enc = fp.encode(req.x.map(parse));
    return { encoded: strs(enc), decoded: Array.from(fp.decode(enc), (v) => (Object.is(v, -0) ? '-0.0' : String(v))) };
  }
  if (req.op === 'share') {
    const ring = new Ring(BigInt(req.modulus));
    const cs = await shareCompressed(ring.fromValues(req.secret), req.n, { ring, key: hexToBytes(req.key), prg: req.prg });
    return { first: strs(cs.first), keys: cs.keys.map(bytesToHex), nbytes: cs.nbytes };
  }
  throw new Error(`unknown op ${req.op}`);
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  let out;
  try {
    out = await handle(JSON.parse(line));
  } catch (e) {
    out = { error: e.name, message: e.message };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
