// Softmax regression (784 -> 10) on typed arrays: the tab's local update in a federated round.
//
// Parameters are one Float64Array: W (inputs x classes, row-major) then b (classes). trainLocal runs `epochs` passes
// of minibatch SGD on the cross-entropy loss over the tab's own images (uint8 pixels, scaled by 1/255) in a fixed
// order, and returns the model delta (local - global), each coordinate clipped to [-clip, clip]: the secure
// aggregation encodes only |x| <= clip, and clipping here is explicit, never a silent wrap. refimpl/web/pyclient.py
// runs the same algorithm in NumPy.

export const INPUTS = 784;
export const CLASSES = 10;
export const PARAMS = INPUTS * CLASSES + CLASSES;

/** Logits of one image (pixels[offset .. offset + 784)) into `out` (length 10). */
function logits(w, pixels, offset, out) {
  const bOff = INPUTS * CLASSES;
  for (let c = 0; c < CLASSES; c++) out[c] = w[bOff + c];
  for (let i = 0; i < INPUTS; i++) {
    const x = pixels[offset + i];
    if (x === 0) continue;
    const xv = x / 255;
    const row = i * CLASSES;
    for (let c = 0; c < CLASSES; c++) out[c] += xv * w[row + c];
  }
}

function softmaxInPlace(z) {
  let m = -Infinity;
  for (const v of z) m = Math.max(m, v);
  let s = 0;
  for (let c = 0; c < z.length; c++) { z[c] = Math.exp(z[c] - m); s += z[c]; }
  for (let c = 0; c < z.length; c++) z[c] /= s;
}

/**
 * Local SGD. `images`: Uint8Array (n * 784), `labels`: Uint8Array (n). Calls onProgress(fraction) now and then
 * (awaiting a macrotask so the page stays responsive). Returns {delta (Float64Array, clipped), loss (mean, last
 * epoch), clipped (coordinates clipped)}.
 */
export async function trainLocal(global, images, labels, { epochs = 1, batch = 32, lr = 0.5, clip = 1.0,
  onProgress = null } = {}) {
  const n = labels.length;
  const w = Float64Array.from(global);
  const grad = new Float64Array(PARAMS);
  const z = new Float64Array(CLASSES);
  const bOff = INPUTS * CLASSES;
  let lossSum = 0;
  const steps = epochs * Math.ceil(n / batch);
  let step = 0;
  for (let e = 0; e < epochs; e++) {
    lossSum = 0;
    for (let start = 0; start < n; start += batch) {
      const stop = Math.min(n, start + batch);
      grad.fill(0);
      for (let k = start; k < stop; k++) {
        const off = k * INPUTS;
        logits(w, images, off, z);
        softmaxInPlace(z);
        lossSum -= Math.log(Math.max(z[labels[k]], 1e-300));
        z[labels[k]] -= 1; // dL/dlogits
        for (let i = 0; i < INPUTS; i++) {
          const x = images[off + i];
          if (x === 0) continue;
          const xv = x / 255;
          const row = i * CLASSES;
          for (let c = 0; c < CLASSES; c++) grad[row + c] += xv * z[c];
        }
        for (let c = 0; c < CLASSES; c++) grad[bOff + c] += z[c];
      }
      const scale = lr / (stop - start);
      for (let j = 0; j < PARAMS; j++) w[j] -= scale * grad[j];
      step++;
      if (onProgress && step % 8 === 0) {
        onProgress(step / steps);
        await new Promise((r) => setTimeout(r, 0));
      }
    }
  }
  const delta = new Float64Array(PARAMS);
  let clipped = 0;
  for (let j = 0; j < PARAMS; j++) {
    let d = w[j] - global[j];
    if (d > clip) { d = clip; clipped++; } else if (d < -clip) { d = -clip; clipped++; }
    delta[j] = d;
  }
  if (onProgress) onProgress(1);
  return { delta, loss: n ? lossSum / n : 0, clipped };
}

/** Accuracy of parameters `w` on images/labels. */
export function accuracy(w, images, labels) {
  const z = new Float64Array(CLASSES);
  let right = 0;
  for (let k = 0; k < labels.length; k++) {
    logits(w, images, k * INPUTS, z);
    let best = 0;
    for (let c = 1; c < CLASSES; c++) if (z[c] > z[best]) best = c;
    if (best === labels[k]) right++;
  }
  return labels.length ? right / labels.length : 0;
}
