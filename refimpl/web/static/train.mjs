// A multilayer perceptron on typed arrays (refimpl/nn.py's model): the tab's local update in a federated round.
//
// Parameters are one Float64Array in refimpl's flatten order: W0 (sizes[0] x sizes[1], row-major), b0, W1, b1, ...
// Hidden layers use ReLU; the loss is the mean softmax cross-entropy; training is minibatch SGD over pixels scaled
// by 1/255. sizes = [784, 10] is softmax regression. The update returned is (local - global) * weight with each
// coordinate clipped to [-clip, clip]: the secure aggregation encodes only |x| <= clip, and clipping here is explicit,
// never a silent wrap.

export const INPUTS = 784;
export const CLASSES = 10;
export const SOFTMAX = Object.freeze([INPUTS, CLASSES]);

/** The number of parameters of an MLP with layer `sizes`. */
export function paramCount(sizes) {
  let n = 0;
  for (let i = 0; i + 1 < sizes.length; i++) n += sizes[i] * sizes[i + 1] + sizes[i + 1];
  return n;
}
export const PARAMS = paramCount(SOFTMAX);

function layerViews(w, sizes) {
  const out = [];
  let pos = 0;
  for (let i = 0; i + 1 < sizes.length; i++) {
    const a = sizes[i], b = sizes[i + 1];
    out.push({ a, b, W: w.subarray(pos, pos + a * b), B: w.subarray(pos + a * b, pos + a * b + b) });
    pos += a * b + b;
  }
  if (pos !== w.length) throw new RangeError(`a model of sizes [${sizes}] has ${pos} parameters, got ${w.length}`);
  return out;
}

/** Forward pass of `n` rows of `x` (Float64Array n * sizes[0]); returns the activations of every layer. */
function forward(layers, x, n) {
  const acts = [x];
  let h = x;
  layers.forEach(({ a, b, W, B }, li) => {
    const z = new Float64Array(n * b);
    for (let r = 0; r < n; r++) {
      const zr = r * b, hr = r * a;
      for (let c = 0; c < b; c++) z[zr + c] = B[c];
      for (let i = 0; i < a; i++) {
        const hv = h[hr + i];
        if (hv === 0) continue;
        const row = i * b;
        for (let c = 0; c < b; c++) z[zr + c] += hv * W[row + c];
      }
    }
    if (li < layers.length - 1) for (let j = 0; j < z.length; j++) if (z[j] < 0) z[j] = 0; // ReLU
    acts.push(z);
    h = z;
  });
  return acts;
}

function pixels(images, idx, inputs) {
  const x = new Float64Array(idx.length * inputs);
  idx.forEach((k, r) => {
    for (let i = 0; i < inputs; i++) x[r * inputs + i] = images[k * inputs + i] / 255;
  });
  return x;
}

/** One SGD step on the examples `idx`; returns the summed loss. */
function sgdStep(w, sizes, images, labels, idx, lr) {
  const layers = layerViews(w, sizes);
  const n = idx.length;
  const acts = forward(layers, pixels(images, idx, sizes[0]), n);
  const classes = sizes[sizes.length - 1];
  const z = acts[acts.length - 1];
  let delta = new Float64Array(n * classes);
  let loss = 0;
  for (let r = 0; r < n; r++) {
    let m = -Infinity;
    for (let c = 0; c < classes; c++) m = Math.max(m, z[r * classes + c]);
    let s = 0;
    for (let c = 0; c < classes; c++) s += Math.exp(z[r * classes + c] - m);
    const y = labels[idx[r]];
    loss -= z[r * classes + y] - m - Math.log(s);
    for (let c = 0; c < classes; c++) delta[r * classes + c] = (Math.exp(z[r * classes + c] - m) / s - (c === y ? 1 : 0)) / n;
  }
  for (let li = layers.length - 1; li >= 0; li--) {
    const { a, b, W, B } = layers[li];
    const h = acts[li];
    const prev = li > 0 ? new Float64Array(n * a) : null;
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < a; i++) {
        const hv = h[r * a + i];
        const row = i * b;
        if (prev && hv > 0) {
          let s = 0;
          for (let c = 0; c < b; c++) s += delta[r * b + c] * W[row + c];
          prev[r * a + i] = s;
        }
      }
    }
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < a; i++) {
        const hv = h[r * a + i];
        if (hv === 0) continue;
        const row = i * b;
        const g = lr * hv;
        for (let c = 0; c < b; c++) W[row + c] -= g * delta[r * b + c];
      }
      for (let c = 0; c < b; c++) B[c] -= lr * delta[r * b + c];
    }
    if (prev) delta = prev;
  }
  return loss;
}

/**
 * Local SGD from `global` on `images` (uint8, n * sizes[0]) and `labels`. `order(epoch)` gives the example order
 * of an epoch (default: data order). Calls onProgress(fraction) now and then, yielding to the page. Returns
 * {delta (Float64Array: clip((local - global) * weight)), loss (mean over the last epoch), clipped (count)}.
 */
export async function trainLocal(global, images, labels, { sizes = SOFTMAX, epochs = 1, batch = 32, lr = 0.5,
  clip = 1.0, weight = 1.0, order = null, onProgress = null } = {}) {
  const n = labels.length;
  const w = Float64Array.from(global);
  const steps = Math.max(1, epochs * Math.ceil(n / batch));
  let step = 0, lossSum = 0;
  for (let e = 0; e < epochs; e++) {
    const idx = order ? await order(e) : Array.from({ length: n }, (_, k) => k);
    lossSum = 0;
    for (let lo = 0; lo < n; lo += batch) {
      lossSum += sgdStep(w, sizes, images, labels, idx.slice(lo, lo + batch), lr);
      step++;
      if (onProgress && step % 4 === 0) {
        onProgress(step / steps);
        await new Promise((r) => setTimeout(r, 0));
      }
    }
  }
  const delta = new Float64Array(w.length);
  let clipped = 0;
  for (let j = 0; j < w.length; j++) {
    let d = (w[j] - global[j]) * weight;
    if (d > clip) { d = clip; clipped++; } else if (d < -clip) { d = -clip; clipped++; }
    delta[j] = d;
  }
  if (onProgress) onProgress(1);
  return { delta, loss: n ? lossSum / n : 0, clipped };
}

/** Accuracy of parameters `w` (an MLP of `sizes`) on images (uint8) and labels. */
export function accuracy(w, images, labels, sizes = SOFTMAX) {
  const layers = layerViews(Float64Array.from(w), sizes);
  const n = labels.length;
  const z = forward(layers, pixels(images, Array.from({ length: n }, (_, k) => k), sizes[0]), n).at(-1);
  const classes = sizes.at(-1);
  let right = 0;
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (z[r * classes + c] > z[r * classes + best]) best = c;
    if (best === labels[r]) right++;
  }
  return n ? right / n : 0;
}
