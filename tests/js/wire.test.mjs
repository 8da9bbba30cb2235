// The wire format and the transport framing: round trips, and corrupt or malformed input rejected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32, decode, encode, WireFormatError } from '../../refimpl/web/static/wire.mjs';
import { Assembler, CHUNK, frames, REQUEST, TransportProtocolError } from '../../refimpl/web/static/transport.mjs';

test('wire: round trip of every supported value', () => {
  const msg = { type: 'upload', round: 3, big: 2n ** 70n, neg: -(2n ** 60n), key: new Uint8Array([1, 2, 3]),
    arr: new BigUint64Array([1n, 2n ** 64n - 1n]), f: new Float64Array([0.5, NaN]), u32: new Uint32Array([7]),
    list: [1, null, true, 'x', -Infinity], nested: { a: { b: [] } } };
  const back = decode(encode(msg));
  assert.equal(back.big, 2n ** 70n);
  assert.equal(back.neg, -(2n ** 60n));
  assert.deepEqual(Array.from(back.key), [1, 2, 3]);
  assert.deepEqual(Array.from(back.arr), [1n, 2n ** 64n - 1n]);
  assert.ok(Number.isNaN(back.f[1]) && back.f[0] === 0.5);
  assert.deepEqual(back.list, [1, null, true, 'x', -Infinity]);
  assert.deepEqual(back.nested, { a: { b: [] } });
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926); // the CRC-32 check value
});

test('wire: corrupt, truncated and foreign bytes are refused', () => {
  const raw = encode({ a: new Float64Array([1, 2]) });
  const flipped = raw.slice(); flipped[raw.length - 6] ^= 1;
  assert.throws(() => decode(flipped), WireFormatError);
  assert.throws(() => decode(raw.subarray(0, raw.length - 1)), WireFormatError);
  assert.throws(() => decode(new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n')), WireFormatError);
  assert.throws(() => encode({ f: () => 1 }), TypeError);
});

test('transport: a message of several chunks reassembles; chunks out of order are refused', () => {
  const payload = Uint8Array.from({ length: CHUNK * 2 + 17 }, (_, i) => i % 251);
  const fs = [...frames(REQUEST, 7, 'upload', payload)];
  assert.equal(fs.length, 3);
  assert.ok(fs.every((f) => f.length <= CHUNK + 16));
  const asm = new Assembler();
  assert.equal(asm.feed(fs[0]), null);
  assert.equal(asm.feed(fs[1]), null);
  const msg = asm.feed(fs[2]);
  assert.equal(msg.kind, 'upload');
  assert.equal(msg.req, 7);
  assert.deepEqual(msg.data, payload);
  const bad = new Assembler();
  bad.feed(fs[0]);
  assert.throws(() => bad.feed(fs[2]), TransportProtocolError);
  assert.throws(() => new Assembler().feed(new Uint8Array(5)), TransportProtocolError);
});
