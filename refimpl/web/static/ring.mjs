// Z_M in JavaScript, as refimpl/ring.py stores and samples it.
//
// Storage (the wire layout of refimpl's arrays): Z_2^32 -> Uint32Array; 2^k <= 2^64 and M <= 2^32 -> BigUint64Array
// (8-byte little-endian words); every other M -> an Array of BigInt, `ceil(bits / 8)` bytes per element on the wire.
// Z_2^32 and Z_2^64 arithmetic on typed arrays runs on 32-bit words (no BigInt per element).

const TWO64 = 1n << 64n;

/** A value that is not an element of the ring, or does not fit the encoding (refimpl.errors.OutOfRangeError). */
export class OutOfRangeError extends RangeError {
  constructor(message) { super(message); this.name = 'OutOfRangeError'; }
}

function bitLength(v) { return v === 0n ? 0 : v.toString(2).length; }

export class Ring {
  constructor(modulus) {
    const m = BigInt(modulus);
    if (m < 2n) throw new RangeError(`ring modulus must be at least 2, got ${m}`);
    this.modulus = m;
    this.bits = bitLength(m - 1n);
    this.isPowerOfTwo = (m & (m - 1n)) === 0n;
    if (m === 1n << 32n) this.storage = 'u32';
    else if ((this.isPowerOfTwo && m <= TWO64) || m <= 1n << 32n) this.storage = 'u64';
    else this.storage = 'big';
    this.elementBytes = this.storage === 'u32' ? 4 : this.storage === 'u64' ? 8 : Math.ceil(this.bits / 8);
    Object.freeze(this);
  }

  get name() {
    const m = this.modulus;
    if (m === 1n << 32n) return 'Z2_32';
    if (m === TWO64) return 'Z2_64';
    return `Ring(${m})`;
  }

  equals(other) { return other instanceof Ring && other.modulus === this.modulus; }

  /** A zeroed array of `count` elements in this ring's storage. */
  zeros(count) {
    if (this.storage === 'u32') return new Uint32Array(count);
    if (this.storage === 'u64') return new BigUint64Array(count);
    return new Array(count).fill(0n);
  }

  /** Elements from BigInts / decimal strings / numbers, each checked to lie in [0, M). */
  fromValues(values) {
    const out = this.zeros(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = BigInt(values[i]);
      if (v < 0n || v >= this.modulus) throw new OutOfRangeError(`${v} is not an element of ${this.name}`);
      out[i] = this.storage === 'u32' ? Number(v) : v;
    }
    return out;
  }

  /** Elements as BigInts. */
  toBigInts(arr) { return Array.from(arr, (v) => BigInt(v)); }

  /** The signed view: v - M when 2v >= M. */
  lift(v) {
    const b = BigInt(v);
    return 2n * b >= this.modulus ? b - this.modulus : b;
  }

  /** Any integer reduced into [0, M). */
  reduce(v) {
    const r = BigInt(v) % this.modulus;
    return r < 0n ? r + this.modulus : r;
  }

  /** a - b elementwise (new array). */
  sub(a, b) { const out = this.copy(a); this.subInPlace(out, b); return out; }
  /** a + b elementwise (new array). */
  add(a, b) { const out = this.copy(a); this.addInPlace(out, b); return out; }

  copy(a) { return this.storage === 'big' ? a.slice() : a.slice(); }

  /** acc -= b (mod M), in place. */
  subInPlace(acc, b) {
    if (acc.length !== b.length) throw new RangeError(`length mismatch: ${acc.length} and ${b.length}`);
    if (this.storage === 'u32') {
      for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] - b[i]) >>> 0;
    } else if (this.modulus === TWO64) {
      words64(acc, b, -1);
    } else {
      const m = this.modulus;
      for (let i = 0; i < acc.length; i++) { const d = BigInt(acc[i]) - BigInt(b[i]); acc[i] = d < 0n ? d + m : d; }
    }
  }

  /** acc += b (mod M), in place. */
  addInPlace(acc, b) {
    if (acc.length !== b.length) throw new RangeError(`length mismatch: ${acc.length} and ${b.length}`);
    if (this.storage === 'u32') {
      for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] + b[i]) >>> 0;
    } else if (this.modulus === TWO64) {
      words64(acc, b, 1);
    } else {
      const m = this.modulus;
      for (let i = 0; i < acc.length; i++) { const s = BigInt(acc[i]) + BigInt(b[i]); acc[i] = s >= m ? s - m : s; }
    }
  }

  /** `count` uniform elements drawn from a Stream, exactly as refimpl's Ring.sample (see ring.json's README). */
  async sample(stream, count) {
    const m = this.modulus;
    if (this.isPowerOfTwo && this.storage !== 'big') {
      const out = this.zeros(count);
      await stream.readInto(out);
      if (this.storage === 'u64' && m !== TWO64) {
        const mask = m - 1n;
        for (let i = 0; i < count; i++) out[i] &= mask;
      }
      return out;
    }
    if (this.storage === 'big') {
      const width = this.elementBytes + 16;
      const raw = await stream.read(count * width);
      const out = new Array(count);
      for (let i = 0; i < count; i++) {
        let v = 0n;
        for (let j = width - 1; j >= 0; j--) v = (v << 8n) | BigInt(raw[i * width + j]);
        out[i] = v % m;
      }
      return out;
    }
    const limit = TWO64 - (TWO64 % m);
    const out = new BigUint64Array(count);
    let filled = 0;
    while (filled < count) {
      const need = count - filled;
      const start = stream.position;
      const words = new BigUint64Array(need + Math.floor(need / 8) + 8);
      await stream.readInto(words);
      // exactly as refimpl: when more than `need` words are accepted, the stream rewinds to just past the last one
      // used; otherwise it stays past every word read
      let taken = 0;
      let lastUsed = -1;
      for (let i = 0; i < words.length; i++) {
        if (words[i] >= limit) continue;
        if (taken === need) { stream.seek(start + 8 * (lastUsed + 1)); break; }
        out[filled + taken++] = words[i] % m;
        lastUsed = i;
      }
      filled += taken;
    }
    return out;
  }

  toString() { return this.name; }
}

// a (+|-) b mod 2^64 on BigUint64Arrays, as pairs of 32-bit words (little-endian host)
function words64(acc, b, sign) {
  const a32 = new Uint32Array(acc.buffer, acc.byteOffset, acc.length * 2);
  const b32 = new Uint32Array(b.buffer, b.byteOffset, b.length * 2);
  const n = acc.length;
  if (sign < 0) {
    for (let i = 0; i < n; i++) {
      const lo = a32[2 * i], blo = b32[2 * i];
      a32[2 * i] = (lo - blo) >>> 0;
      a32[2 * i + 1] = (a32[2 * i + 1] - b32[2 * i + 1] - (lo < blo ? 1 : 0)) >>> 0;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const lo = a32[2 * i] + b32[2 * i];
      a32[2 * i] = lo >>> 0;
      a32[2 * i + 1] = (a32[2 * i + 1] + b32[2 * i + 1] + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    }
  }
}

export const Z2_32 = new Ring(1n << 32n);
export const Z2_64 = new Ring(TWO64);

/** The bytes of a ring array on the wire (refimpl's little-endian layout). */
export function arrayBytes(ring, arr) {
  if (ring.storage !== 'big') return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  const w = ring.elementBytes;
  const out = new Uint8Array(arr.length * w);
  for (let i = 0; i < arr.length; i++) {
    let v = arr[i];
    for (let j = 0; j < w; j++) { out[i * w + j] = Number(v & 0xffn); v >>= 8n; }
  }
  return out;
}

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('refimpl.js needs a little-endian host (typed arrays are read as little-endian words)');
}
