// The MLP against a finite-difference gradient, and its update's clipping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { paramCount, trainLocal } from '../../refimpl/web/static/train.mjs';

function loss(w, sizes, images, labels) {
  // one full-batch step with lr = 0 leaves w unchanged; recompute the loss through trainLocal's reported mean
  return trainLocal(w, images, labels, { sizes, epochs: 1, batch: labels.length, lr: 0, clip: 10 }).then((r) => r.loss);
}

test('one SGD step moves the parameters along minus the finite-difference gradient', async () => {
  const sizes = [6, 5, 3];
  const n = paramCount(sizes);
  const w = Float64Array.from({ length: n }, (_, j) => Math.sin(3 * j + 1) * 0.5);
  const images = Uint8Array.from({ length: 4 * 6 }, (_, j) => (j * 37) % 256);
  const labels = Uint8Array.from([0, 2, 1, 2]);
  const lr = 1e-3;
  const { delta } = await trainLocal(w, images, labels, { sizes, epochs: 1, batch: 4, lr, clip: 10 });
  for (const j of [0, 7, 29, 31, n - 1]) {
    const e = 1e-6;
    const wp = Float64Array.from(w); wp[j] += e;
    const wm = Float64Array.from(w); wm[j] -= e;
    const g = ((await loss(wp, sizes, images, labels)) - (await loss(wm, sizes, images, labels))) / (2 * e);
    assert.ok(Math.abs(-delta[j] / lr - g) < 1e-5 * Math.max(1, Math.abs(g)), `coordinate ${j}: ${-delta[j] / lr} vs ${g}`);
  }
});

test('the update is clipped to [-clip, clip] and scaled by the weight', async () => {
  const sizes = [4, 2];
  const w = new Float64Array(paramCount(sizes));
  const images = Uint8Array.from([255, 255, 255, 255, 0, 0, 0, 0]);
  const labels = Uint8Array.from([1, 0]);
  const big = await trainLocal(w, images, labels, { sizes, lr: 100, clip: 0.25 });
  assert.ok(big.delta.every((d) => Math.abs(d) <= 0.25));
  assert.ok(big.clipped > 0);
  const a = await trainLocal(w, images, labels, { sizes, lr: 0.01, clip: 1 });
  const b = await trainLocal(w, images, labels, { sizes, lr: 0.01, clip: 1, weight: 0.5 });
  a.delta.forEach((d, j) => assert.equal(b.delta[j], d * 0.5));
});
