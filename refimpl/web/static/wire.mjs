// refimpl's safe wire format (refimpl/net/wire.py) in JavaScript: no eval, no code from the network.
//
//   "RFW1" | header length (u32 LE) | header (UTF-8 JSON) | payload | CRC-32 of all preceding bytes (u32 LE)
//
// The header is JSON in which non-JSON values are tagged objects with one "$"-key: $int (decimal string, beyond
// 2^53), $bytes ([offset, length] into the payload), $tuple, $dict (string-keyed object), $float ("nan", "inf",
// "-inf"), $array ({dtype, shape, offset, length}; dtypes "<u4", "<u8", "<i8", "<f8", "|u1", ... little-endian).
// JavaScript values: Uint8Array <-> $bytes; BigInt <-> $int; Uint32Array / BigUint64Array / BigInt64Array /
// Float64Array / Float32Array / Int32Array <-> $array (1-D, or {array, shape} objects from decode for N-D); plain
// objects <-> $dict; arrays <-> lists.

const MAGIC = [0x52, 0x46, 0x57, 0x31]; // "RFW1"
const MAX_DEPTH = 64;

/** A malformed, truncated or corrupted message (refimpl.errors.WireFormatError). */
export class WireFormatError extends Error {
  constructor(message) { super(message); this.name = 'WireFormatError'; }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (zlib's) of bytes. */
export function crc32(bytes, crc = 0) {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const DTYPES = {
  '<u4': Uint32Array, '<u8': BigUint64Array, '<i8': BigInt64Array, '<i4': Int32Array, '<f8': Float64Array,
  '<f4': Float32Array, '|u1': Uint8Array, '<u2': Uint16Array, '<i2': Int16Array, '|i1': Int8Array,
};
const DTYPE_OF = new Map([[Uint32Array, '<u4'], [BigUint64Array, '<u8'], [BigInt64Array, '<i8'],
  [Int32Array, '<i4'], [Float64Array, '<f8'], [Float32Array, '<f4'], [Uint16Array, '<u2'], [Int16Array, '<i2'],
  [Int8Array, '|i1']]);

/** Serialise a message to bytes (a Uint8Array). */
export function encode(obj) {
  const chunks = [];
  let size = 0;
  const blob = (bytes) => { const off = size; chunks.push(bytes); size += bytes.length; return [off, bytes.length]; };
  const value = (v) => {
    if (v === null || v === undefined || typeof v === 'boolean' || typeof v === 'string') return v ?? null;
    if (typeof v === 'number') {
      if (Number.isFinite(v)) return v;
      return { $float: Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf' };
    }
    if (typeof v === 'bigint') {
      return v > -(2n ** 53n) && v < 2n ** 53n ? Number(v) : { $int: v.toString() };
    }
    if (v instanceof Uint8Array) return { $bytes: blob(v) };
    if (ArrayBuffer.isView(v) && DTYPE_OF.has(v.constructor)) {
      const [offset, length] = blob(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      return { $array: { dtype: DTYPE_OF.get(v.constructor), shape: [v.length], offset, length } };
    }
    if (Array.isArray(v)) return v.map(value);
    if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      const out = {};
      for (const [k, x] of Object.entries(v)) out[k] = value(x);
      return { $dict: out };
    }
    throw new TypeError(`cannot send a value of type ${v?.constructor?.name ?? typeof v}`);
  };
  // non-ASCII escaped as \uXXXX, as Python's json.dumps writes it: the same message is the same bytes
  const json = JSON.stringify(value(obj)).replace(/[\u0080-\uffff]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const header = new TextEncoder().encode(json);
  const total = 8 + header.length + size + 4;
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(4, header.length, true);
  out.set(header, 8);
  let pos = 8 + header.length;
  for (const c of chunks) { out.set(c, pos); pos += c.length; }
  dv.setUint32(total - 4, crc32(out.subarray(0, total - 4)), true);
  return out;
}

/** Decode bytes made by refimpl's (or this) encoder, checking every length, tag and the CRC-32. */
export function decode(raw) {
  const bytes = raw instanceof Uint8Array ? raw : new Uint8Array(raw);
  if (bytes.length < 12 || MAGIC.some((m, i) => bytes[i] !== m)) {
    throw new WireFormatError(`not a refimpl message: expected magic RFW1 and at least 12 bytes, got ${bytes.length} bytes`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stored = dv.getUint32(bytes.length - 4, true);
  const computed = crc32(bytes.subarray(0, bytes.length - 4));
  if (stored !== computed) throw new WireFormatError(`corrupt message: CRC-32 mismatch (stored ${stored}, computed ${computed})`);
  const hlen = dv.getUint32(4, true);
  if (8 + hlen > bytes.length - 4) throw new WireFormatError(`header length ${hlen} runs past the end of the message`);
  let header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + hlen)));
  } catch (e) {
    throw new WireFormatError(`message header is not valid JSON: ${e.message}`);
  }
  const payload = bytes.subarray(8 + hlen, bytes.length - 4);
  const span = (spec) => {
    if (!Array.isArray(spec) || spec.length !== 2 || !spec.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      throw new WireFormatError(`bad payload span ${JSON.stringify(spec)}`);
    }
    if (spec[0] + spec[1] > payload.length) throw new WireFormatError('payload span runs past the payload: truncated message');
    return new Uint8Array(payload.subarray(spec[0], spec[0] + spec[1])); // a copy: aligned for typed-array views
  };
  const array = (spec) => {
    const T = DTYPES[spec?.dtype];
    if (!T) throw new WireFormatError(`array dtype ${JSON.stringify(spec?.dtype)} is not allowed`);
    const shape = spec.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new WireFormatError(`bad array shape ${JSON.stringify(shape)}`);
    }
    const count = shape.reduce((a, d) => a * d, 1);
    const data = span([spec.offset, spec.length]);
    if (count * T.BYTES_PER_ELEMENT !== data.length) {
      throw new WireFormatError(`array of shape ${JSON.stringify(shape)} and dtype ${spec.dtype} needs ` +
        `${count * T.BYTES_PER_ELEMENT} bytes, the message has ${data.length}`);
    }
    const arr = new T(data.buffer, data.byteOffset, count);
    return shape.length === 1 ? arr : { array: arr, shape };
  };
  const value = (v, depth) => {
    if (depth > MAX_DEPTH) throw new WireFormatError(`message nests deeper than ${MAX_DEPTH} levels`);
    if (v === null || ['boolean', 'string', 'number'].includes(typeof v)) return v;
    if (Array.isArray(v)) return v.map((x) => value(x, depth + 1));
    const keys = Object.keys(v);
    if (keys.length !== 1) throw new WireFormatError(`unexpected header value ${JSON.stringify(v).slice(0, 80)}`);
    const tag = keys[0], body = v[tag];
    switch (tag) {
      case '$int':
        if (typeof body !== 'string' || !/^-?\d{1,9999}$/.test(body)) throw new WireFormatError(`bad $int ${body}`);
        return BigInt(body);
      case '$float':
        if (!['nan', 'inf', '-inf'].includes(body)) throw new WireFormatError(`bad $float ${body}`);
        return body === 'nan' ? NaN : body === 'inf' ? Infinity : -Infinity;
      case '$bytes': return span(body);
      case '$tuple':
        if (!Array.isArray(body)) throw new WireFormatError('bad $tuple');
        return body.map((x) => value(x, depth + 1));
      case '$dict': {
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new WireFormatError('bad $dict');
        const out = {};
        for (const [k, x] of Object.entries(body)) out[k] = value(x, depth + 1);
        return out;
      }
      case '$array': return array(body);
      default: throw new WireFormatError(`unknown tag ${JSON.stringify(tag)} in message header`);
    }
  };
  return value(header, 0);
}
