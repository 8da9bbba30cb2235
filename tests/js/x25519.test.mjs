// X25519 through WebCrypto: RFC 7748 section 6.1's Diffie-Hellman test vector, and AES-GCM as SecAgg uses it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bytesToHex, hasX25519, hexToBytes, x25519, x25519ImportPrivate, x25519PublicOf } from '../../refimpl/web/static/prg.mjs';

test('X25519: RFC 7748 6.1', async (t) => {
  if (!(await hasX25519())) { t.skip('this runtime has no X25519 in WebCrypto'); return; }
  const alice = await x25519ImportPrivate(hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
  const bob = await x25519ImportPrivate(hexToBytes('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
  const pa = await x25519PublicOf(alice), pb = await x25519PublicOf(bob);
  assert.equal(bytesToHex(pa), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assert.equal(bytesToHex(pb), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(bytesToHex(await x25519(alice, pb)), shared);
  assert.equal(bytesToHex(await x25519(bob, pa)), shared);
  await assert.rejects(() => x25519(alice, new Uint8Array(32))); // a low-order point: refused, never all zeros
});
