// refimpl's keyed counter-mode streams and key derivation, in JavaScript (browser and Node >= 20).
//
// Bit-identical to refimpl/prg.py:
//   * AES-128-CTR through WebCrypto (crypto.subtle): the 16-byte initial counter block (nonce, default zero)
//     increments as a 128-bit big-endian integer, wrapping mod 2^128 (NIST SP 800-38A).
//   * ChaCha20 (RFC 8439) in plain JavaScript (WebCrypto has no ChaCha20): 12-byte nonce, 32-bit block counter.
//   * deriveKey: HKDF-SHA256 (RFC 5869) through WebCrypto, salt "refimpl/v1/kdf", info = the output length then the
//     labels, each as tag ("i" int, "s" string, "b" bytes) + 4-byte big-endian body length + body.
//   * X25519 key agreement through WebCrypto where the runtime has it (Chromium, Node 20).
// Reading the keystream at byte `offset` gives bytes offset .. offset + nbytes - 1 of the stream.

export const CIPHERS = Object.freeze(['aes128-ctr', 'chacha20']);
const KEY_LENGTH = { 'aes128-ctr': 16, chacha20: 32 };
const KDF_SALT = new TextEncoder().encode('refimpl/v1/kdf');

/** Bad key bytes or key lengths (refimpl.errors.KeyFormatError). */
export class KeyFormatError extends RangeError {
  constructor(message) { super(message); this.name = 'KeyFormatError'; }
}

/** A stream used past its capacity (refimpl.errors.RefimplError). */
export class StreamExhaustedError extends Error {
  constructor(message) { super(message); this.name = 'StreamExhaustedError'; }
}

// Browsers and Node >= 19 have globalThis.crypto; Node 18 (Debian bookworm's) exposes WebCrypto as node:crypto's.
const webcrypto = globalThis.crypto?.subtle ? globalThis.crypto
  : (typeof process !== 'undefined' && process.versions?.node) ? (await import('node:crypto')).webcrypto : undefined;

/** WebCrypto's SubtleCrypto (throws, saying why, where the runtime has none). */
export function subtle() {
  const c = webcrypto;
  if (!c || !c.subtle) {
    throw new Error('WebCrypto (crypto.subtle) is unavailable: browsers expose it only in a secure context ' +
      '(https:// or http://127.0.0.1 / localhost), Node from version 20');
  }
  return c.subtle;
}

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || hex.length % 2 || /[^0-9a-fA-F]/.test(hex)) {
    throw new TypeError(`expected a hex string of whole bytes, got ${String(hex).slice(0, 40)}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

export function checkCipher(cipher) {
  if (!CIPHERS.includes(cipher)) {
    throw new RangeError(`unknown stream cipher ${JSON.stringify(cipher)}; choose one of 'aes128-ctr', 'chacha20'`);
  }
  return cipher;
}

export function keyLength(cipher) { return KEY_LENGTH[checkCipher(cipher)]; }

function checkKey(key, lengths, what) {
  if (!(key instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array, got ${typeof key}`);
  if (!lengths.includes(key.length)) {
    throw new KeyFormatError(`${what} must be ${lengths.join(' or ')} bytes long, got ${key.length} bytes`);
  }
  return key;
}

function checkCount(v, what) {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${what} must be a non-negative integer, got ${v}`);
  return v;
}

/** 16 or 32 fresh bytes from the platform's CSPRNG (crypto.getRandomValues). */
export function freshKey(length = 16) {
  if (length !== 16 && length !== 32) throw new KeyFormatError(`fresh keys are 16 or 32 bytes long, got ${length}`);
  return webcrypto.getRandomValues(new Uint8Array(length));
}

// ------------------------------------------------------------------------------------------------ AES-128-CTR
function aesKey(key) {
  return subtle().importKey('raw', key, 'AES-CTR', false, ['encrypt']);
}

function addToCounter(nonce, blocks) {
  // (nonce + blocks) mod 2^128, nonce read big-endian
  let v = 0n;
  for (const b of nonce) v = (v << 8n) | BigInt(b);
  v = (v + BigInt(blocks)) & ((1n << 128n) - 1n);
  const out = new Uint8Array(16);
  for (let i = 15; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

const AES_PIECE = 1 << 24; // bytes per WebCrypto call (keeps each zero-plaintext buffer bounded)

async function aesKeystreamInto(key, out, nonce, offset) {
  const ck = await aesKey(key);
  const first = Math.floor(offset / 16);
  const skip = offset % 16;
  let pos = 0;
  let block = first;
  while (pos < out.length) {
    const want = Math.min(AES_PIECE, out.length - pos + (pos === 0 ? skip : 0));
    const padded = Math.ceil(want / 16) * 16;
    const counter = addToCounter(nonce, block);
    const ks = new Uint8Array(await subtle().encrypt({ name: 'AES-CTR', counter, length: 128 }, ck,
      new Uint8Array(padded)));
    const from = pos === 0 ? skip : 0;
    const take = Math.min(ks.length - from, out.length - pos);
    out.set(ks.subarray(from, from + take), pos);
    pos += take;
    block += padded / 16;
  }
}

// ------------------------------------------------------------------------------------------------ ChaCha20
function chachaBlocks(key, nonce12, counter, nblocks, out) {
  const k = new Uint32Array(8);
  const kv = new DataView(key.buffer, key.byteOffset, 32);
  for (let i = 0; i < 8; i++) k[i] = kv.getUint32(4 * i, true);
  const nv = new DataView(nonce12.buffer, nonce12.byteOffset, 12);
  const n0 = nv.getUint32(0, true), n1 = nv.getUint32(4, true), n2 = nv.getUint32(8, true);
  const s = new Uint32Array(16);
  const x = new Uint32Array(16);
  const ov = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const QR = (a, b, c, d) => {
    x[a] = (x[a] + x[b]) | 0; x[d] ^= x[a]; x[d] = (x[d] << 16) | (x[d] >>> 16);
    x[c] = (x[c] + x[d]) | 0; x[b] ^= x[c]; x[b] = (x[b] << 12) | (x[b] >>> 20);
    x[a] = (x[a] + x[b]) | 0; x[d] ^= x[a]; x[d] = (x[d] << 8) | (x[d] >>> 24);
    x[c] = (x[c] + x[d]) | 0; x[b] ^= x[c]; x[b] = (x[b] << 7) | (x[b] >>> 25);
  };
  s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
  s.set(k, 4);
  s[13] = n0; s[14] = n1; s[15] = n2;
  for (let blk = 0; blk < nblocks; blk++) {
    s[12] = (counter + blk) >>> 0;
    x.set(s);
    for (let r = 0; r < 10; r++) {
      QR(0, 4, 8, 12); QR(1, 5, 9, 13); QR(2, 6, 10, 14); QR(3, 7, 11, 15);
      QR(0, 5, 10, 15); QR(1, 6, 11, 12); QR(2, 7, 8, 13); QR(3, 4, 9, 14);
    }
    for (let i = 0; i < 16; i++) ov.setUint32(64 * blk + 4 * i, (x[i] + s[i]) >>> 0, true);
  }
}

function chachaKeystreamInto(key, out, nonce16, offset) {
  const first = new DataView(nonce16.buffer, nonce16.byteOffset, 4).getUint32(0, true);
  const nonce12 = nonce16.subarray(4, 16);
  if (first * 64 + offset + out.length > 2 ** 32 * 64) {
    throw new StreamExhaustedError(`ChaCha20 stream exhausted: reading ${out.length} bytes at offset ${offset} ` +
      'passes the 32-bit block counter (256 GiB); derive a new key');
  }
  if (!out.length) return;
  const startBlock = first + Math.floor(offset / 64);
  const skip = offset % 64;
  const nblocks = Math.ceil((skip + out.length) / 64);
  const tmp = new Uint8Array(nblocks * 64);
  chachaBlocks(key, nonce12, startBlock, nblocks, tmp);
  out.set(tmp.subarray(skip, skip + out.length));
}

function normalNonce(cipher, nonce) {
  if (nonce === undefined || nonce === null) return new Uint8Array(16);
  checkKey(nonce, cipher === 'aes128-ctr' ? [16] : [12, 16], 'nonce');
  if (nonce.length === 16) return nonce;
  const out = new Uint8Array(16);
  out.set(nonce, 4);
  return out;
}

/**
 * Fill `out` (a Uint8Array, or any typed array: its bytes) with keystream from byte `offset`.
 * Options: cipher ('aes128-ctr' default | 'chacha20'), nonce (AES: 16 bytes; ChaCha20: 12 bytes, or 16 = 4-byte
 * little-endian initial block counter + 12-byte nonce), offset (bytes, default 0).
 */
export async function keystreamInto(key, out, { cipher = 'aes128-ctr', nonce, offset = 0 } = {}) {
  checkCipher(cipher);
  checkKey(key, [KEY_LENGTH[cipher]], `${cipher} key`);
  checkCount(offset, 'stream offset');
  const bytes = out instanceof Uint8Array ? out : new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  const n16 = normalNonce(cipher, nonce);
  if (cipher === 'aes128-ctr') await aesKeystreamInto(key, bytes, n16, offset);
  else chachaKeystreamInto(key, bytes, n16, offset);
}

/** `nbytes` keystream bytes of `key` starting at byte `offset` (refimpl.prg.keystream). */
export async function keystream(key, nbytes, options = {}) {
  const out = new Uint8Array(checkCount(nbytes, 'number of bytes'));
  await keystreamInto(key, out, options);
  return out;
}

/** A seekable keystream read sequentially (refimpl.prg.Stream). The key is never shown. */
export class Stream {
  #key;
  constructor(key, { cipher = 'aes128-ctr', nonce, offset = 0 } = {}) {
    this.cipher = checkCipher(cipher);
    this.#key = key ?? freshKey(KEY_LENGTH[cipher]);
    checkKey(this.#key, [KEY_LENGTH[cipher]], `${cipher} key`);
    this.nonce = normalNonce(cipher, nonce);
    this.position = checkCount(offset, 'stream offset');
  }
  seek(offset) { this.position = checkCount(offset, 'stream offset'); }
  async readInto(out) {
    const n = out.byteLength;
    await keystreamInto(this.#key, out, { cipher: this.cipher, nonce: this.nonce, offset: this.position });
    this.position += n;
  }
  async read(nbytes) {
    const out = new Uint8Array(checkCount(nbytes, 'number of bytes'));
    await this.readInto(out);
    return out;
  }
  toString() { return `Stream(cipher='${this.cipher}', position=${this.position})`; }
}

// ------------------------------------------------------------------------------------------------ HKDF
/** One KDF label part: tag byte, 4-byte big-endian length, body. Ints are JS integers or BigInts. */
export function encodeLabel(part) {
  let tag, body;
  if (typeof part === 'bigint' || (typeof part === 'number' && Number.isInteger(part))) {
    tag = 'i'; body = new TextEncoder().encode(BigInt(part).toString());
  } else if (typeof part === 'string') {
    tag = 's'; body = new TextEncoder().encode(part);
  } else if (part instanceof Uint8Array) {
    tag = 'b'; body = part;
  } else {
    throw new TypeError(`KDF labels are strings, integers or Uint8Arrays, got ${String(part)} (${typeof part})`);
  }
  const out = new Uint8Array(5 + body.length);
  out[0] = tag.charCodeAt(0);
  new DataView(out.buffer).setUint32(1, body.length, false);
  out.set(body, 5);
  return out;
}

/** The HKDF info of a derivation: the output length, then the labels (refimpl.prg.derive_key). */
export function kdfInfo(length, labels) {
  const parts = [length, ...labels].map(encodeLabel);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let pos = 0;
  for (const p of parts) { out.set(p, pos); pos += p.length; }
  return out;
}

/** deriveKey(master, [labels...], length): HKDF-SHA256 of a 16/32-byte master key, exactly as refimpl's. */
export async function deriveKey(master, labels = [], length = 16) {
  checkKey(master, [16, 32], 'master key');
  if (length !== 16 && length !== 32) throw new KeyFormatError(`derived keys are 16 or 32 bytes long, got ${length}`);
  const info = kdfInfo(length, labels);
  const base = await subtle().importKey('raw', master, 'HKDF', false, ['deriveBits']);
  const bits = await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: KDF_SALT, info }, base, 8 * length);
  return new Uint8Array(bits);
}

// ------------------------------------------------------------------------------------------------ X25519
const PKCS8_X25519_PREFIX = hexToBytes('302e020100300506032b656e04220420');

/** Whether this runtime's WebCrypto implements X25519. */
export async function hasX25519() {
  try {
    await subtle().generateKey({ name: 'X25519' }, false, ['deriveBits']);
    return true;
  } catch {
    return false;
  }
}

/** A fresh X25519 key pair: {privateKey: CryptoKey, publicKey: Uint8Array (32 bytes, raw)}. */
export async function x25519Generate() {
  const kp = await subtle().generateKey({ name: 'X25519' }, true, ['deriveBits']);
  return { privateKey: kp.privateKey, publicKey: new Uint8Array(await subtle().exportKey('raw', kp.publicKey)) };
}

/** Import a raw 32-byte X25519 private scalar (RFC 7748) as a CryptoKey. */
export async function x25519ImportPrivate(raw) {
  checkKey(raw, [32], 'X25519 private key');
  const der = new Uint8Array(PKCS8_X25519_PREFIX.length + 32);
  der.set(PKCS8_X25519_PREFIX);
  der.set(raw, PKCS8_X25519_PREFIX.length);
  return subtle().importKey('pkcs8', der, { name: 'X25519' }, true, ['deriveBits']);
}

/** The raw public key of an X25519 private CryptoKey. */
export async function x25519PublicOf(privateKey) {
  const jwk = await subtle().exportKey('jwk', privateKey);
  const b64 = jwk.x.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The 32-byte X25519 shared secret of our private CryptoKey and a peer's raw public key. */
export async function x25519(privateKey, peerPublic) {
  checkKey(peerPublic, [32], 'X25519 public key');
  const pub = await subtle().importKey('raw', peerPublic, { name: 'X25519' }, true, []);
  return new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
}
