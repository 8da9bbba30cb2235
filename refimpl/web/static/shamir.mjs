// t-of-n Shamir sharing over a prime field, bit-identical to refimpl/sharing/shamir.py (BigInt arithmetic).
//
// The t - 1 coefficients of every element's polynomial are drawn in one call, row-major, by Ring.sample from the
// stream of derive_key(key, "refimpl/shamir") (16 bytes for AES-128-CTR, 32 for ChaCha20); the party at point x
// holds f(x). shareBytes shares a byte string as little-endian 16-bit limbs (how SecAgg protects its seeds).

import { checkCipher, deriveKey, freshKey, keyLength, Stream } from './prg.mjs';
import { OutOfRangeError, Ring } from './ring.mjs';

export const DEFAULT_FIELD = new Ring((1n << 31n) - 1n);

/** Too few shares, or an impossible threshold (refimpl.errors.ThresholdError). */
export class ThresholdError extends RangeError {
  constructor(message) { super(message); this.name = 'ThresholdError'; }
}

function checkPoints(points, p) {
  const xs = points.map((x) => BigInt(x));
  for (const x of xs) if (x <= 0n || x >= p) throw new RangeError(`evaluation points must lie in [1, ${p - 1n}], got ${x}`);
  if (new Set(xs.map(String)).size !== xs.length) throw new RangeError(`evaluation points must be distinct: ${xs}`);
  return xs;
}

/**
 * Shares of `secret` (BigInts / numbers in [-floor(p/2), p)) among n parties, any t of which reconstruct.
 * Returns {field, t, xs (BigInt points), data: [one BigInt array per party, in the order of xs]}.
 */
export async function shamirShare(secret, n, t, { field = DEFAULT_FIELD, key = null, points = null,
  prg = 'aes128-ctr' } = {}) {
  checkCipher(prg);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`the number of parties must be at least 1, got ${n}`);
  if (!Number.isInteger(t) || t < 1 || t > n) throw new ThresholdError(`threshold must satisfy 1 <= t <= n=${n}, got t=${t}`);
  const p = field.modulus;
  const xs = checkPoints(points ?? Array.from({ length: n }, (_, i) => i + 1), p);
  if (xs.length !== n) throw new RangeError(`got ${xs.length} evaluation points for n=${n} parties`);
  const s = secret.map((v) => {
    const b = BigInt(v);
    if (b < -(p / 2n) || b >= p) throw new OutOfRangeError(`${b} is not an element of ${field.name}`);
    return b < 0n ? b + p : b;
  });
  const master = key ?? freshKey(16);
  const stream = new Stream(await deriveKey(master, ['refimpl/shamir'], keyLength(prg)), { cipher: prg });
  const drawn = t > 1 ? Array.from(await field.sample(stream, (t - 1) * s.length), (v) => BigInt(v)) : [];
  const data = xs.map((x) => s.map((s0, e) => {
    let acc = 0n; // Horner: f(x) = s0 + x (a1 + x (a2 + ...))
    for (let k = t - 1; k >= 1; k--) acc = (acc * x + drawn[(k - 1) * s.length + e]) % p;
    return (acc * x + s0) % p;
  }));
  return { field, t, xs, data };
}

function modInverse(a, p) {
  let [r0, r1, s0, s1] = [((a % p) + p) % p, p, 1n, 0n];
  while (r1 !== 0n) { const q = r0 / r1; [r0, r1] = [r1, r0 - q * r1]; [s0, s1] = [s1, s0 - q * s1]; }
  return ((s0 % p) + p) % p;
}

/** lambda_i = prod_{j != i} (at - x_j) / (x_i - x_j) mod p. */
export function lagrangeCoefficients(points, field = DEFAULT_FIELD, at = 0n) {
  const p = field.modulus;
  const xs = checkPoints(points, p);
  const a = BigInt(at);
  return xs.map((xi, i) => {
    let num = 1n, den = 1n;
    xs.forEach((xj, j) => { if (j !== i) { num = (num * (a - xj)) % p; den = (den * (xi - xj)) % p; } });
    return (((num * modInverse(den, p)) % p) + p) % p;
  });
}

/** f(0) from at least t shares ({field, t, xs, data}); exactly the first t are used. */
export function shamirReconstruct({ field, t, xs, data }) {
  if (xs.length < t) throw new ThresholdError(`need at least t=${t} shares to reconstruct, got ${xs.length}`);
  const p = field.modulus;
  const lam = lagrangeCoefficients(xs.slice(0, t), field);
  return data[0].map((_, e) => lam.reduce((acc, l, i) => (acc + l * BigInt(data[i][e])) % p, 0n));
}

/** shareBytes(bytes, n, t, options): the little-endian 16-bit limbs of `bytes`, Shamir-shared. */
export function shareBytes(bytes, n, t, options = {}) {
  if (bytes.length % 2) throw new RangeError(`shareBytes takes an even number of bytes, got ${bytes.length}`);
  const limbs = Array.from({ length: bytes.length / 2 }, (_, i) => bytes[2 * i] | (bytes[2 * i + 1] << 8));
  return shamirShare(limbs, n, t, options);
}

/** Inverse of shareBytes. */
export function reconstructBytes(shares) {
  const limbs = shamirReconstruct(shares);
  const out = new Uint8Array(2 * limbs.length);
  limbs.forEach((v, i) => {
    if (v >= 65536n) throw new RangeError('reconstructed limbs are not 16-bit values: the shares are inconsistent');
    out[2 * i] = Number(v & 0xffn); out[2 * i + 1] = Number(v >> 8n);
  });
  return out;
}
