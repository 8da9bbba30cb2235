// Fixed-point encoding into a ring, bit-identical to refimpl/encoding.py.
//
// x encodes as k = round_half_even(x * scale), scale = base ** fracBits, stored as k mod M; the rounding is decided
// on the exact product (x is read as mantissa * 2^exponent with BigInts), never on a rounded float64 product.
// |k| must be <= floor((M - 1) / 2): NaN, infinities and anything larger throw OutOfRangeError. Decoding lifts to the
// signed k and returns the float64 nearest to k / scale (correctly rounded, also for |k| > 2^53).

import { OutOfRangeError, Ring, Z2_64 } from './ring.mjs';

const TWO32 = 4294967296;
const F64 = new Float64Array(1);
const U64 = new BigUint64Array(F64.buffer);

function isPow2(v) { return (v & (v - 1n)) === 0n; }
function bitLength(v) { return v === 0n ? 0 : v.toString(2).length; }

/** round_half_even of a float64 that is already an integer-or-half (|v| < 2^53 or any integer float). */
function rintEven(v) {
  const r = Math.round(v); // half up (toward +infinity)
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** round_half_even(x * scale) exactly, as a BigInt (x finite). */
export function roundExact(x, scale) {
  F64[0] = x;
  const bits = U64[0];
  const neg = bits >> 63n === 1n;
  const expField = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  const m = expField === 0 ? frac : frac | (1n << 52n);
  const e = expField === 0 ? -1074 : expField - 1075;
  const prod = m * scale;
  let q;
  if (e >= 0) {
    q = prod << BigInt(e);
  } else {
    const den = 1n << BigInt(-e);
    q = prod >> BigInt(-e);
    const twice = 2n * (prod - q * den);
    if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
  }
  return neg ? -q : q;
}

/** The float64 nearest to p / q (BigInts, q > 0), ties to even. */
export function ratioToFloat(p, q) {
  if (p === 0n) return 0;
  const neg = p < 0n;
  const a = neg ? -p : p;
  const s = 55 - (bitLength(a) - bitLength(q)); // quotient gets 55 or 56 bits
  const num = s >= 0 ? a << BigInt(s) : a;
  const den = s >= 0 ? q : q << BigInt(-s);
  const quo = num / den;
  const sticky = num % den !== 0n;
  const extra = bitLength(quo) - 53;
  let mant = quo >> BigInt(extra);
  const low = quo & ((1n << BigInt(extra)) - 1n);
  const half = 1n << BigInt(extra - 1);
  if (low > half || (low === half && (sticky || (mant & 1n) === 1n))) mant += 1n;
  const exp = extra - s;
  // two steps: 2^exp alone may overflow or underflow where the product does not
  const h = Math.trunc(exp / 2);
  const v = Number(mant) * 2 ** h * 2 ** (exp - h);
  return neg ? -v : v;
}

export class FixedPoint {
  /**
   * @param {{fracBits?: number, base?: number, ring?: Ring}} options defaults: 16 fractional bits, base 2, Z_2^64.
   */
  constructor({ fracBits = 16, base = 2, ring = Z2_64 } = {}) {
    for (const [name, v] of [['fracBits', fracBits], ['base', base]]) {
      if (!Number.isInteger(v)) throw new TypeError(`FixedPoint ${name} must be an integer, got ${v}`);
    }
    if (!(ring instanceof Ring)) throw new TypeError(`FixedPoint ring must be a Ring, got ${ring}`);
    if (base < 2) throw new RangeError(`FixedPoint base must be at least 2, got ${base}`);
    if (fracBits < 0) throw new RangeError(`FixedPoint frac_bits must be non-negative, got ${fracBits}`);
    const scale = BigInt(base) ** BigInt(fracBits);
    if (!isPow2(scale) && scale > 2n ** 53n) {
      throw new RangeError(`scale ${base}**${fracBits} = ${scale} exceeds 2**53 and is not exact in float64`);
    }
    if (scale > 2n ** 1000n) throw new RangeError(`scale ${base}**${fracBits} is too large for float64 inputs`);
    if (2n * scale >= ring.modulus) {
      throw new RangeError(`scale ${scale} leaves no integer range in ${ring.name} (needs scale < M/2)`);
    }
    Object.assign(this, { fracBits, base, ring, scale, scaleNumber: Number(scale), limit: (ring.modulus - 1n) / 2n });
    this.fastEncode = isPow2(scale) && (ring.storage === 'u32' || ring.modulus === 1n << 64n);
    Object.freeze(this);
  }

  toString() { return `FixedPoint(frac_bits=${this.fracBits}, base=${this.base}, ring=${this.ring.name})`; }

  #rangeError(x) {
    if (!Number.isFinite(x)) return new OutOfRangeError(`cannot encode non-finite value ${x} in ${this}`);
    const lim = this.limit;
    return new OutOfRangeError(`value ${x} does not fit ${this}: round(x * ${this.scale}) must lie in [${-lim}, ` +
      `${lim}], i.e. |x| <= ${ratioToFloat(lim, this.scale).toPrecision(12)}`);
  }

  /** The signed integer round_half_even(x * scale), range-checked (a BigInt). */
  encodeInteger(x) {
    if (typeof x !== 'number') throw new TypeError(`FixedPoint.encode takes numbers, got ${typeof x}`);
    if (!Number.isFinite(x)) throw this.#rangeError(x);
    const k = roundExact(x, this.scale);
    if (k > this.limit || -k > this.limit) throw this.#rangeError(x);
    return k;
  }

  /** Encode an array of numbers (Array or Float64Array) into ring elements (the ring's storage). */
  encode(values) {
    const n = values.length;
    const out = this.ring.zeros(n);
    this.encodeInto(values, out);
    return out;
  }

  /** Encode into a preallocated ring array `out` (as returned by ring.zeros(values.length)). */
  encodeInto(values, out) {
    const n = values.length;
    if (out.length !== n) throw new RangeError(`output holds ${out.length} elements, input ${n}`);
    if (this.fastEncode) {
      const sc = this.scaleNumber;
      const bound = Math.min(Number(this.limit > 2n ** 53n - 1n ? 2n ** 53n - 1n : this.limit), 2 ** 53 - 1);
      const words = this.ring.storage === 'u32' ? out : new Uint32Array(out.buffer, out.byteOffset, 2 * n);
      const wide = this.ring.storage !== 'u32';
      for (let i = 0; i < n; i++) {
        const x = values[i];
        if (typeof x !== 'number') throw new TypeError(`FixedPoint.encode takes numbers, got ${typeof x}`);
        const k = rintEven(x * sc); // a power-of-two scale: the product is exact
        if (!(k >= -bound && k <= bound)) { // NaN, infinities, large values: the exact path decides (or throws)
          const big = this.encodeInteger(x);
          out[i] = wide ? BigInt.asUintN(64, big) : Number(BigInt.asUintN(32, big));
          continue;
        }
        if (k >= -2147483648 && k <= 2147483647) { // the common case: 32-bit integer ops, two's complement
          const ki = k | 0;
          if (wide) { words[2 * i] = ki; words[2 * i + 1] = ki >> 31; } else { words[i] = ki; }
          continue;
        }
        const lo = ((k % TWO32) + TWO32) % TWO32;
        if (wide) {
          words[2 * i] = lo;
          words[2 * i + 1] = ((Math.floor(k / TWO32) % TWO32) + TWO32) % TWO32;
        } else {
          words[i] = lo;
        }
      }
      return out;
    }
    for (let i = 0; i < n; i++) {
      const r = this.ring.reduce(this.encodeInteger(values[i]));
      out[i] = this.ring.storage === 'u32' ? Number(r) : r;
    }
    return out;
  }

  /** Decode ring elements (the ring's storage, or BigInts / decimal strings) to a Float64Array. */
  decode(elements) {
    const n = elements.length;
    const out = new Float64Array(n);
    const pow2 = isPow2(this.scale);
    const sc = this.scaleNumber;
    if (elements instanceof BigUint64Array && this.ring.modulus === 1n << 64n) {
      const signed = new BigInt64Array(elements.buffer, elements.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = this.#decodeOne(signed[i], pow2, sc);
      return out;
    }
    if (elements instanceof Uint32Array && this.ring.storage === 'u32') {
      const signed = new Int32Array(elements.buffer, elements.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = signed[i] / sc; // |k| < 2^31: exact operands, one rounding
      return out;
    }
    for (let i = 0; i < n; i++) {
      const v = BigInt(elements[i]);
      if (v < 0n || v >= this.ring.modulus) {
        throw new OutOfRangeError(`decode takes ring elements in [0, ${this.ring.modulus}), got ${v}`);
      }
      out[i] = this.#decodeOne(this.ring.lift(v), pow2, sc);
    }
    return out;
  }

  #decodeOne(k, pow2, sc) {
    if (pow2 || (k <= 9007199254740992n && k >= -9007199254740992n)) return Number(k) / sc;
    return ratioToFloat(k, this.scale);
  }
}
