"""Encrypted training ("protecting the model"): SGD on an MLP whose weights AND data stay secret-shared.

The model owner secret-shares the MLP's weights (fixed point, ``scale = base**frac_bits``, any base) among
``n >= 2`` compute parties; data owners secret-share images and one-hot labels among the same parties; a crypto
provider (:class:`Dealer`) supplies correlated randomness. One step on a batch of ``B`` examples, all on shares
(``u = 1 / scale``; "divide" is the dealer-assisted division :func:`refimpl.mpc.divide`, 1 round, ``floor`` or
one more, unbiased):

* forward, per layer: ``a_i = divide(h_i @ W_i, scale) + b_i`` (Beaver matmul, 1 round; division, 1 round);
  hidden layers ``d_i = [a_i >= 0]`` (exact comparison, :func:`refimpl.mpc.comparison.drelu`) and
  ``h_{i+1} = a_i * d_i`` (1 round);
* loss gradient ``delta = dL/dz`` (times ``B``): ``z - onehot(y)`` for the squared error (local, 0 rounds) or
  ``softmax(z) - onehot(y)`` for cross-entropy (the algebra's softmax, :mod:`refimpl.mpc.training_loss`);
* backward, per layer (both products in ONE round, :func:`refimpl.mpc.batched.matmul_many`):
  ``G_i = h_i^T @ delta_i`` (scale ``scale**2``), ``g_i = sum_rows(delta_i)``, and below a hidden layer
  ``delta_{i-1} = divide((delta_i @ W_i^T) * d_{i-1}, scale)`` (1 round for the product with the bit, 1 to
  divide);
* SGD: with the public step ``s = round(lr / B * 2**k) / 2**k`` (``k`` = :attr:`EncryptedTrainer.step_bits`),
  ``W_i -= divide(G_i * round(s 2**k), scale 2**k)``, ``b_i -= divide(g_i * round(s 2**k), 2**k)``: every
  update divided in ONE round (:func:`refimpl.mpc.batched.divide_many`), stochastic rounding, unbiased.

Nothing is opened but Beaver-masked values and masked division inputs; at the end only the model owner
reconstructs (:meth:`EncryptedTrainer.reconstruct`), or the shares go straight to encrypted inference
(:meth:`EncryptedTrainer.to_inference`). :class:`PlaintextTwin` is the same computation in float64 NumPy (same
initial weights, batch order and step ``s``), so the two can be compared step by step;
:func:`gradient_error_bound` bounds the difference of one step's gradients.

Rounds per step, MSE, ``n = 2``, one hidden layer: forward 2 + 9 + 2 (the exact ReLU: 8 rounds for its
bit, 1 for the product), backward 3 + 1, update 1 = 18.

Example:
    >>> from refimpl import nn
    >>> params = nn.init_params((6, 4, 3), seed=1)
    >>> x, y = (np.arange(30.0).reshape(5, 6) % 7) / 7, np.array([0, 1, 2, 1, 0])
    >>> trainer = EncryptedTrainer(params, lr=0.5)
    >>> twin = PlaintextTwin(params, lr=0.5, step_bits=trainer.step_bits)
    >>> trainer.step(*trainer.share_batch(x, y)); twin.step(x, y)
    >>> bool(max(np.abs(trainer.reconstruct()[k] - twin.params[k]).max() for k in params) < 1e-3)
    True
    >>> trainer.channel.rounds
    18
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from refimpl import nn
from refimpl._checks import check_key, check_party_count
from refimpl.encoding import FixedPoint
from refimpl.errors import ConfigurationError, ShapeMismatchError
from refimpl.mpc.batched import divide_many, matmul_many, mul_many, sum_rows, transpose
from refimpl.mpc.channel import Channel
from refimpl.mpc.comparison import drelu
from refimpl.mpc.dealer import Dealer
from refimpl.mpc.functions import BOUNDS
from refimpl.mpc.headroom import check_product_headroom
from refimpl.mpc.training_loss import check_loss, loss_delta
from refimpl.prg import Stream, derive_key, fresh_key
from refimpl.sharing.additive import Shares
from refimpl.sharing.api import share

__all__ = ["EncryptedTrainer", "PlaintextTwin", "batch_order", "gradient_error_bound", "step_bits_for", "step_scale"]

_HEADROOM_BITS = 10  # |lr/B * gradient| may reach 2**10 before an update's division input leaves its range


def step_bits_for(encoding: FixedPoint) -> int:
    """Fractional bits ``k`` of the public SGD step: ``floor(l - 2 - 2 log2(scale) - 10)`` (the update's division
    input ``G * round(s 2**k)`` at scale ``scale**2 2**k`` stays below ``2**(l-2)`` for updates below ``2**10``)."""
    return int(math.floor(encoding.ring.bits - 2 - 2 * math.log2(encoding.scale) - _HEADROOM_BITS))


def step_scale(lr: float, batch: int, step_bits: int) -> float:
    """The public per-example step ``round(lr / batch * 2**k) / 2**k`` both the trainer and its twin use."""
    return round(lr / batch * 2.0**step_bits) / 2.0**step_bits


def batch_order(count: int, epoch: int, *, seed: int = 0) -> np.ndarray:
    """The permutation of ``count`` examples for ``epoch``, from a keyed stream (shared by trainer and twin)."""
    stream = Stream(derive_key(bytes(16), "refimpl/encrypted-training/order", int(seed), int(epoch)))
    return np.argsort(nn.uniform(stream, count), kind="stable")


def _check_encoding(encoding: FixedPoint) -> FixedPoint:
    if not isinstance(encoding, FixedPoint):
        raise TypeError(f"encoding must be a FixedPoint, got {type(encoding).__name__}")
    check_product_headroom(encoding)
    if step_bits_for(encoding) < 8:
        raise ConfigurationError(
            f"{encoding!r} leaves {step_bits_for(encoding)} bits for the SGD step (needs >= 8: ring bits - 2 - "
            f"2 log2(scale) - {_HEADROOM_BITS}); use Z_2^64 or fewer fractional digits")
    return encoding


class EncryptedTrainer:
    """Minibatch SGD on a secret-shared MLP over secret-shared data (see the module docstring for the protocol).

    Args:
        params: the model owner's initial weights ``{"w0", "b0", ...}`` (shared at once; kept nowhere).
        n: number of compute parties (>= 2).
        encoding: fixed point, any base (default: 16 fractional bits in Z_2^64).
        lr: learning rate for the MEAN loss over a batch (the step per example is ``lr / B``, see
            :func:`step_scale`).
        loss: ``"mse"`` (``||z - onehot||^2 / 2``, 0 rounds) or ``"xent"`` (softmax cross-entropy).
        key: the model owner's key (shares of the weights; None: fresh from the OS).
        dealer_key: the crypto provider's key (None: fresh). Step ``t`` uses a :class:`Dealer` keyed by
            ``derive_key(dealer_key, "step", t)``, so no item is ever reused and a resumed run draws exactly the
            items the uninterrupted run would have.
        data_key: the data owners' key for sharing batches (None: fresh); the batch of step ``t`` is shared with
            keys derived from it and ``t``.
        channel: counts the openings and dealer items (a workers' ``LedgerChannel`` records them in the ledger).

    Range: every division's input must lie in :func:`~refimpl.mpc.truncation.division_range`, i.e. every
    pre-activation and back-propagated value below ``2**(l-2) / scale**2`` (``2**30`` for 16 fractional bits in
    Z_2^64) and every parameter update ``|lr / B * G|`` below ``2**10`` (:func:`step_bits_for`); outside it the
    division's result is undefined. Usual MLP training stays many orders of magnitude inside.

    Raises:
        ConfigurationError: an encoding the protocol cannot train with.
        ValueError: malformed ``params``, an unknown loss or a non-positive ``lr``.
    """

    def __init__(self, params: Mapping[str, ArrayLike], *, n: int = 2, encoding: FixedPoint | None = None,
                 lr: float = 0.1, loss: str = "mse", key: bytes | None = None, dealer_key: bytes | None = None,
                 data_key: bytes | None = None, channel: Channel | None = None) -> None:
        self.n = check_party_count(n)
        self.encoding = _check_encoding(encoding or FixedPoint())
        check_loss(loss, self.encoding)
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr, self.loss = float(lr), loss
        self.step_bits = step_bits_for(self.encoding)
        self.model_key = fresh_key(16) if key is None else check_key(key, what="model owner key")
        self.dealer_key = fresh_key(16) if dealer_key is None else check_key(dealer_key, what="dealer key")
        self.data_key = fresh_key(16) if data_key is None else check_key(data_key, what="data key")
        self.channel = channel or Channel()
        self.steps = 0
        self._dealer: Dealer | None = None
        self._dealer_step = -1
        lay = nn.layers(params)
        self.sizes = (lay[0][0].shape[0], *(w.shape[1] for w, _ in lay))
        self.weights: dict[str, Shares] = {}
        for i, (w, b) in enumerate(lay):
            self.weights[f"w{i}"] = self._share(w, derive_key(self.model_key, "model", i, "w"))
            self.weights[f"b{i}"] = self._share(b, derive_key(self.model_key, "model", i, "b"))

    def _share(self, value: np.ndarray, key: bytes) -> Shares:
        return share(self.encoding.encode(value), self.n, ring=self.encoding.ring, key=key)

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    def __repr__(self) -> str:
        return f"EncryptedTrainer(sizes={self.sizes}, n={self.n}, loss={self.loss!r}, steps={self.steps})"

    # ---------------------------------------------------------------- the data owners' side
    def share_batch(self, x: ArrayLike, y: ArrayLike, *, key: bytes | None = None) -> tuple[Shares, Shares]:
        """A data owner's side: encode and share images ``x`` (B, d0) and the one-hot rows of labels ``y``.

        ``key`` is the data owner's for this batch (None: derived from ``data_key`` and the step number).
        """
        xs = np.asarray(x, np.float64)
        if xs.ndim != 2 or xs.shape[1] != self.sizes[0]:
            raise ShapeMismatchError(f"images must have shape (batch, {self.sizes[0]}), got {xs.shape}")
        ys = np.asarray(y)
        if ys.shape != (len(xs),) or ys.dtype.kind not in "iu" or ys.size and not 0 <= ys.min() <= ys.max() < \
                self.sizes[-1]:
            raise ValueError(f"labels must be {len(xs)} integers in [0, {self.sizes[-1]}), got {ys!r}")
        key = key or derive_key(self.data_key, "data", self.steps)
        return (self._share(xs, derive_key(key, "x")),
                self._share(nn.one_hot(ys, self.sizes[-1]), derive_key(key, "y")))

    # ---------------------------------------------------------------- the compute parties' side
    @property
    def dealer(self) -> Dealer:
        """The crypto provider's dealer for the current step (a fresh key per step)."""
        if self._dealer is None or self._dealer_step != self.steps:
            self._dealer = Dealer(self.n, ring=self.encoding.ring, key=derive_key(self.dealer_key, "step", self.steps))
            self._dealer_step = self.steps
        return self._dealer

    def forward(self, x: Shares) -> tuple[Shares, list[Shares], list[Shares]]:
        """Logits on shares, and the cache of the backward pass: layer inputs ``hs`` and ReLU bits."""
        scale, hs, bits = self.encoding.scale, [x], []
        a = x
        for i in range(self.layers):
            (prod,) = matmul_many([(hs[-1], self.weights[f"w{i}"])], self.dealer, self.channel)
            (a,) = divide_many([(prod, scale)], self.dealer, self.channel)
            b = self.weights[f"b{i}"]
            a = Shares(a.ring, a.ring.add(a.data, b.data[:, None, :]))
            if i < self.layers - 1:
                bit = drelu(a, self.dealer, self.channel)
                (h,) = mul_many([(a, bit)], self.dealer, self.channel)
                hs.append(h)
                bits.append(bit)
        return a, hs, bits

    def _raw_gradients(self, x: Shares, y: Shares) -> dict[str, Shares]:
        """Summed gradients: weights at scale ``scale**2`` (not yet divided), biases at ``scale``."""
        if x.shape[0] != y.shape[0]:
            raise ShapeMismatchError(f"{x.shape[0]} images with {y.shape[0]} labels")
        scale = self.encoding.scale
        z, hs, bits = self.forward(x)
        delta = loss_delta(self.loss, z, y, self.encoding, self.dealer, self.channel)
        grads: dict[str, Shares] = {}
        for i in reversed(range(self.layers)):
            pairs = [(transpose(hs[i]), delta)]
            if i > 0:
                pairs.append((delta, transpose(self.weights[f"w{i}"])))
            products = matmul_many(pairs, self.dealer, self.channel)
            grads[f"w{i}"], grads[f"b{i}"] = products[0], sum_rows(delta)
            if i > 0:
                (masked,) = mul_many([(products[1], bits[i - 1])], self.dealer, self.channel)
                (delta,) = divide_many([(masked, scale)], self.dealer, self.channel)
        return grads

    def gradients(self, x: Shares, y: Shares) -> dict[str, Shares]:
        """The summed gradients ``B * dL/dparam`` on shares, all at the encoding's scale (tests, diagnostics)."""
        raw = self._raw_gradients(x, y)
        names = [k for k in raw if k.startswith("w")]
        out = dict(zip(names, divide_many([(raw[k], self.encoding.scale) for k in names], self.dealer,
                                          self.channel)))
        return {k: out.get(k, raw[k]) for k in self.weights}

    def step(self, x: Shares, y: Shares) -> None:
        """One SGD step on a shared batch (images ``x``, one-hot labels ``y``), in place on the weights' shares."""
        raw = self._raw_gradients(x, y)
        k = self.step_bits
        step = int(round(step_scale(self.lr, x.shape[0], k) * 2.0**k))
        names = list(self.weights)
        updates = divide_many([(raw[name] * step, self.encoding.scale * 2**k if name.startswith("w") else 2**k)
                               for name in names], self.dealer, self.channel)
        for name, upd in zip(names, updates):
            self.weights[name] = self.weights[name] - upd
        self.steps += 1

    # ---------------------------------------------------------------- the model owner's side
    def reconstruct(self) -> dict[str, np.ndarray]:
        """The model owner's opening of the trained weights (float64)."""
        return {k: self.encoding.decode(v.reconstruct()) for k, v in self.weights.items()}

    def party_state(self, party: int) -> dict[str, Any]:
        """What party ``party`` holds (its own share of every parameter) plus public metadata, for checkpoints."""
        if not 0 <= party < self.n:
            raise ValueError(f"party must be in [0, {self.n}), got {party}")
        return {"party": party, "n": self.n, "steps": self.steps, "sizes": list(self.sizes),
                "shares": {k: np.array(v.data[party]) for k, v in self.weights.items()}}

    def load_party_states(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Replace the weights' shares by the parties' checkpointed shares (one state per party, in order).

        Raises:
            ValueError: states of other parties, sizes or step counts.
        """
        if [int(s["party"]) for s in states] != list(range(self.n)):
            raise ValueError(f"need one state per party 0..{self.n - 1}, got parties {[s['party'] for s in states]}")
        if len({int(s["steps"]) for s in states}) != 1 or any(list(s["sizes"]) != list(self.sizes) for s in states):
            raise ValueError("party states disagree on the step count or model sizes")
        ring = self.encoding.ring
        for name, old in self.weights.items():
            data = np.stack([np.asarray(s["shares"][name], dtype=ring.dtype) for s in states])
            if data.shape != old.data.shape:
                raise ShapeMismatchError(f"{name}: checkpointed shares {data.shape}, expected {old.data.shape}")
            self.weights[name] = Shares(ring, data)
        self.steps = int(states[0]["steps"])

    def to_inference(self) -> Any:
        """An :class:`~refimpl.mpc.inference.EncryptedMLP` on the trained shares, never opened."""
        from refimpl.mpc.inference import EncryptedMLP

        layers = [(self.weights[f"w{i}"], self.weights[f"b{i}"]) for i in range(self.layers)]
        dealer = Dealer(self.n, ring=self.encoding.ring, key=derive_key(self.dealer_key, "inference"))
        return EncryptedMLP.from_shares(layers, encoding=self.encoding, dealer=dealer, channel=self.channel,
                                        key=derive_key(self.data_key, "inference"))


class PlaintextTwin:
    """The same training in float64 NumPy: same initial weights, batch order and SGD step as the trainer.

    The gradient of a batch is summed over its examples and multiplied by :func:`step_scale`, exactly the public
    step the encrypted trainer applies.
    """

    def __init__(self, params: Mapping[str, ArrayLike], *, lr: float = 0.1, loss: str = "mse",
                 step_bits: int = step_bits_for(FixedPoint())) -> None:
        self.params = {k: np.array(v, np.float64) for k, v in params.items()}
        nn.layers(self.params)
        self.lr, self.loss, self.step_bits, self.steps = float(lr), loss, int(step_bits), 0

    def gradients(self, x: ArrayLike, y: ArrayLike) -> dict[str, np.ndarray]:
        """Summed gradients ``B * dL/dparam`` (the trainer's :meth:`EncryptedTrainer.gradients`)."""
        ys = np.asarray(y)
        _, grads = nn.loss_and_grad(self.params, x, ys, loss=self.loss)
        return {k: g * len(ys) for k, g in grads.items()}

    def step(self, x: ArrayLike, y: ArrayLike) -> None:
        grads = self.gradients(x, y)
        nn.sgd_step(self.params, grads, step_scale(self.lr, len(np.asarray(y)), self.step_bits))
        self.steps += 1


def gradient_error_bound(params: Mapping[str, ArrayLike], x: ArrayLike, y: ArrayLike, encoding: FixedPoint,
                         loss: str = "mse") -> dict[str, np.ndarray]:
    """Elementwise bound on ``|gradients on shares - PlaintextTwin.gradients|`` for one batch.

    Propagates absolute errors through the computation with ``u = 1 / encoding.scale``: encoding error ``u/2`` on
    each input, weight and bias, ``u`` per division (the result is ``floor`` or one more), none for the exact ReLU
    and products. Where a pre-activation lies within its error bound of 0 the ReLU bit may differ from the
    twin's; there the bound takes the whole back-propagated term. For ``"xent"`` the softmax adds its documented
    bound (:data:`refimpl.mpc.functions.BOUNDS`, plus ``u``) and half the row's largest logit error (softmax is
    1/2-Lipschitz in the max norm). Float64 rounding of the twin is ignored.
    """
    u = 1.0 / encoding.scale
    lay = nn.layers(params)
    cache = nn.forward(params, x)
    e_h, e_a_list = np.full(cache.hs[0].shape, u / 2), []
    for i, (w, _) in enumerate(lay):
        e_a = e_h @ (np.abs(w) + u / 2) + np.abs(cache.hs[i]) @ np.full(w.shape, u / 2) + u + u / 2
        e_a_list.append(e_a)
        e_h = e_a
    z = cache.pre[-1]
    if check_loss(loss, encoding) == "mse":
        delta, e_d = z - nn.one_hot(y, z.shape[1]), e_a_list[-1]
    else:
        delta = nn.softmax(z) - nn.one_hot(y, z.shape[1])
        e_d = BOUNDS["softmax"][2](z) + u + 0.5 * e_a_list[-1].max(axis=1, keepdims=True)
    bounds: dict[str, np.ndarray] = {}
    for i in reversed(range(len(lay))):
        w = lay[i][0]
        h = cache.hs[i]
        e_hi = e_a_list[i - 1] if i > 0 else np.full(h.shape, u / 2)
        bounds[f"w{i}"] = e_hi.T @ (np.abs(delta) + e_d) + np.abs(h).T @ e_d + u
        bounds[f"b{i}"] = e_d.sum(axis=0)
        if i > 0:
            back = delta @ w.T
            e_back = e_d @ (np.abs(w) + u / 2).T + np.abs(delta) @ np.full(w.T.shape, u / 2)
            pre = cache.pre[i - 1]
            flip = np.abs(pre) <= e_a_list[i - 1]
            e_d = np.where(flip, np.abs(back) + e_back, e_back) + u
            delta = back * (pre > 0)
    return bounds
