// Fixed point: the typed-array fast path against the exact BigInt path, on many values; range errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FixedPoint, ratioToFloat } from '../../refimpl/web/static/encoding.mjs';
import { OutOfRangeError, Ring, Z2_32, Z2_64 } from '../../refimpl/web/static/ring.mjs';

function values() {
  const out = [0, -0, 0.5, -0.5, 1.5, -2.5, 2 ** -17, -(2 ** -17), 3 * 2 ** -17, 32767.99998, -32767.99998,
    2 ** 31 / 65536, -(2 ** 31) / 65536, (2 ** 31 - 1) / 65536, 1e-300, -5e-324];
  let s = 12345;
  for (let i = 0; i < 3000; i++) { // a small LCG: public test inputs, not randomness for secrets
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const mant = s / 2 ** 31 - 0.5;
    out.push(mant * 2 ** ((i % 40) - 10));
  }
  return out;
}

for (const ring of [Z2_32, Z2_64]) {
  for (const [base, fracBits] of [[2, 16], [2, 0], [10, 3]]) {
    test(`encode in ${ring.name}, base ${base}, ${fracBits} digits: fast path == exact path`, () => {
      const fp = new FixedPoint({ fracBits, base, ring });
      const xs = values().filter((x) => { try { fp.encodeInteger(x); return true; } catch { return false; } });
      assert.ok(xs.length > 1000);
      const enc = fp.encode(xs);
      xs.forEach((x, i) => assert.equal(BigInt(enc[i]), ring.reduce(fp.encodeInteger(x)), `x = ${x}`));
      const dec = fp.decode(enc);
      const scale = Number(fp.scale);
      xs.forEach((x, i) => assert.ok(Math.abs(dec[i] - x) <= 0.5 / scale * (1 + 1e-12) + Math.abs(x) * 2 ** -52, `x = ${x}`));
    });
  }
}

test('out-of-range and non-finite values raise OutOfRangeError, never wrap', () => {
  const fp = new FixedPoint({ ring: Z2_32 });
  for (const x of [NaN, Infinity, -Infinity, 32768, -32768, 1e300]) {
    assert.throws(() => fp.encode([0, x]), OutOfRangeError, `x = ${x}`);
  }
  assert.throws(() => fp.encode(['1']), TypeError);
  assert.throws(() => new FixedPoint({ fracBits: 32, ring: Z2_32 }), RangeError);
  assert.throws(() => fp.decode([2n ** 32n]), OutOfRangeError);
});

test('halves round to even on the exact product', () => {
  const fp = new FixedPoint({ fracBits: 3, base: 10, ring: new Ring(2n ** 64n) });
  assert.deepEqual([0.0625, 0.1875, -0.0005].map((x) => fp.ring.lift(fp.encodeInteger(x) < 0n
    ? fp.ring.reduce(fp.encodeInteger(x)) : fp.encodeInteger(x))), [62n, 188n, -1n]);
});

test('ratioToFloat is correctly rounded', () => {
  assert.equal(ratioToFloat(1n, 3n), 1 / 3);
  assert.equal(ratioToFloat(-(2n ** 80n) - 1n, 1000n), -(2 ** 80) / 1000);
  assert.equal(ratioToFloat(2n ** 53n + 1n, 1n), 2 ** 53); // a tie: to even
  assert.equal(ratioToFloat(2n ** 53n + 3n, 1n), 2 ** 53 + 4);
});
