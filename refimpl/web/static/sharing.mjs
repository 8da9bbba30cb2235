// n-party additive secret sharing with seed compression, bit-identical to refimpl/sharing/additive.py.
//
// Party p >= 1 holds the keystream sample of derive_key(key, "refimpl/share", p) (16 bytes for AES-128-CTR, 32 for
// ChaCha20; zero nonce, offset 0); party 0 holds secret - sum of the others mod M. In compressed form parties
// 1 .. n-1 receive only their key and party 0 a full array: an upload of about one plaintext whatever n is.

import { checkCipher, deriveKey, freshKey, KeyFormatError, keyLength, Stream } from './prg.mjs';
import { Ring } from './ring.mjs';

function checkParties(n) {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`a sharing needs at least 2 parties, got n=${n}`);
  return n;
}

function checkMaster(key) {
  if (!(key instanceof Uint8Array)) throw new TypeError('the master key must be a Uint8Array');
  if (key.length !== 16 && key.length !== 32) {
    throw new KeyFormatError(`master key must be 16 or 32 bytes long, got ${key.length} bytes`);
  }
  return key;
}

/** The stream keys of parties 1 .. n-1 (refimpl.sharing.additive.party_keys). No key: 16 fresh bytes. */
export async function partyKeys(key, n, prg = 'aes128-ctr') {
  const master = key == null ? freshKey(16) : checkMaster(key);
  checkParties(n);
  const len = keyLength(prg);
  const keys = [];
  for (let p = 1; p < n; p++) keys.push(await deriveKey(master, ['refimpl/share', p], len));
  return keys;
}

/** A party's share expanded from its key: `count` elements of `ring`. */
export function expandKey(ring, key, count, prg = 'aes128-ctr') {
  return ring.sample(new Stream(key, { cipher: prg }), count);
}

/**
 * Seed-compressed sharing of `secret` (ring elements in the ring's storage) among n parties.
 * Returns {ring, prg, first (party 0's share), keys (parties 1 .. n-1), nbytes, expandedNbytes}.
 * With `inPlace`, party 0's share is computed in `secret` itself (the caller hands the array over).
 */
export async function shareCompressed(secret, n, { ring, key = null, prg = 'aes128-ctr', inPlace = false } = {}) {
  if (!(ring instanceof Ring)) throw new TypeError('shareCompressed needs a ring');
  checkCipher(prg);
  checkParties(n);
  const keys = await partyKeys(key, n, prg);
  const first = inPlace ? secret : ring.copy(secret);
  for (const k of keys) ring.subInPlace(first, await expandKey(ring, k, secret.length, prg));
  const nbytes = first.length * ring.elementBytes + keys.reduce((a, k) => a + k.length, 0);
  return { ring, prg, first, keys, nbytes, expandedNbytes: n * first.length * ring.elementBytes };
}

/** Full sharing: n arrays, party 0 first (refimpl.share with the same key). */
export async function share(secret, n, options = {}) {
  const c = await shareCompressed(secret, n, options);
  return expand(c);
}

/** Every party's share of a compressed sharing. */
export async function expand(c) {
  const out = [c.first];
  for (const k of c.keys) out.push(await expandKey(c.ring, k, c.first.length, c.prg));
  return out;
}

/** The opened secret: the sum of all shares mod M. */
export function reconstruct(ring, shares) {
  const acc = ring.copy(shares[0]);
  for (const s of shares.slice(1)) ring.addInPlace(acc, s);
  return acc;
}
