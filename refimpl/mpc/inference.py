"""Encrypted inference of an MLP ("protecting the model"): weights and inputs secret-shared, exact ReLU.

The model owner secret-shares the weights and biases of an MLP (fixed point, Z_2^64, 16 fractional bits) among
``n`` servers; a client secret-shares a batch of images among the same servers. The servers run the forward pass
on shares, with a crypto provider (dealer) supplying correlated randomness:

* ``h @ W``: Beaver matrix product (one round; the weights are masked once at set-up as ``W - B`` for a dealer
  mask ``B``, so each inference opens only ``h - A``), then dealer-assisted truncation (one round, error below 1 ulp,
  any ``n``; or SecureML local truncation for two servers, zero rounds, failure probability ``|x| / 2**64`` per
  element), then ``+ b`` locally;
* ``relu``: exact, by CrypTen's arithmetic-to-binary conversion, a Kogge-Stone adder on bit-packed AND triples,
  B2A of the sign bit with a daBit, and one Beaver product (:mod:`refimpl.mpc.comparison`);
* the logits' shares go to the client only, who reconstructs and decodes them.

Nothing but masked values is ever opened to the servers. The whole batch is one vectorised computation, so the
number of rounds does not grow with the batch: ``2 + 9`` rounds per hidden layer (one more carry-save round per
ReLU for each level of 3-to-2 reduction when ``n > 2``) and 2 for the output layer.

Example:
    >>> import numpy as np
    >>> params = {"w0": 0.1 * np.sin(np.arange(24.0)).reshape(6, 4), "b0": np.zeros(4),
    ...           "w1": 0.1 * np.cos(np.arange(12.0)).reshape(4, 3), "b1": np.zeros(3)}
    >>> x = (np.arange(30.0).reshape(5, 6) % 7) / 7
    >>> model = EncryptedMLP(params, n=3, key=bytes(16))
    >>> logits = model.logits(x)
    >>> bool(np.abs(logits - plaintext_logits(params, x)).max() < 1e-3)
    True
    >>> model.channel.rounds - model.setup["rounds"]   # hidden layer: 2 + 10 (ReLU, with a carry-save round
    14
    >>> model.setup["rounds"]                          # for 3 servers); output layer: 2.  Set-up: mask 2 weights
    2

References:
    B. Knott et al., "CrypTen: Secure Multi-Party Computation Meets Machine Learning", NeurIPS 2021.
    P. Mohassel, Y. Zhang, "SecureML", IEEE S&P 2017.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from refimpl import nn
from refimpl._checks import check_party_count
from refimpl.encoding import FixedPoint
from refimpl.errors import ShapeMismatchError
from refimpl.mpc.arithmetic import MaskedOperand, mask_operand, matmul_masked
from refimpl.mpc.channel import Channel
from refimpl.mpc.comparison import relu
from refimpl.mpc.dealer import Dealer
from refimpl.mpc.headroom import check_product_headroom
from refimpl.mpc.truncation import divide, divide_local
from refimpl.prg import Stream, derive_key, fresh_key
from refimpl.sharing.additive import CompressedShares, Shares, share_compressed
from refimpl.sharing.api import share

__all__ = ["EncryptedMLP", "plaintext_logits", "train_mlp"]


def plaintext_logits(params: Mapping[str, ArrayLike], x: ArrayLike) -> np.ndarray:
    """The MLP's logits in float64: ``relu(x W0 + b0) ... W_last + b_last`` (:func:`refimpl.nn.logits`)."""
    return nn.logits(params, x)


def train_mlp(x: ArrayLike, y: ArrayLike, sizes: Sequence[int] = (784, 128, 10), *, epochs: int = 8,
              batch: int = 64, lr: float = 0.05, momentum: float = 0.9, seed: int = 0) -> dict[str, np.ndarray]:
    """Train an MLP with softmax cross-entropy by minibatch SGD with momentum, in float64 NumPy, deterministically.

    Initialisation is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and the batch order a permutation, both drawn from a keyed
    stream derived from ``seed`` (the model is the secret this module protects, so even its initialisation uses
    refimpl's cryptographic streams, not NumPy's generators). Same inputs and seed give the same weights on one
    machine. The forward and backward passes are :mod:`refimpl.nn`'s.

    Returns:
        ``{"w0", "b0", "w1", "b1", ...}`` as float32 arrays (the layout of :mod:`refimpl.fl.model`).
    """
    xs, ys = np.asarray(x, np.float64), np.asarray(y)
    stream = Stream(derive_key(bytes(16), "refimpl/train_mlp", int(seed)))
    params = nn.init_params(sizes, stream=stream)
    velocity: dict[str, np.ndarray] = {}
    for _ in range(epochs):
        order = np.argsort(nn.uniform(stream, len(xs)), kind="stable")
        for start in range(0, len(xs), batch):
            idx = order[start : start + batch]
            _, grads = nn.loss_and_grad(params, xs[idx], ys[idx])
            nn.sgd_step(params, grads, lr, momentum=momentum, velocity=velocity)
    return {k: v.astype(np.float32) for k, v in params.items()}


class EncryptedMLP:
    """An MLP whose weights are secret-shared among ``n`` servers, evaluated on secret-shared inputs.

    Args:
        params: ``{"w0": (d0, d1), "b0": (d1,), ...}`` real weights (the model owner's secret).
        n: number of servers (>= 2).
        encoding: the fixed-point encoding (default: 16 fractional bits in Z_2^64).
        truncation: ``"dealer"`` (any ``n``, 1 round, never fails) or ``"local"`` (``n = 2`` only, 0 rounds,
            fails with probability ``|x| / 2**64`` per element).
        key: master key for the model's shares, the dealer and the client's input shares (None: fresh).
        channel: counts (or, a :class:`refimpl.workers.shared_tensor.LedgerChannel`, records) the communication.

    Raises:
        ValueError: malformed params, a bad ``truncation`` or ``"local"`` with ``n != 2``.
    """

    def __init__(self, params: Mapping[str, ArrayLike], *, n: int = 2, encoding: FixedPoint | None = None,
                 truncation: str = "dealer", key: bytes | None = None, channel: Channel | None = None) -> None:
        self.n = check_party_count(n)
        self.encoding = encoding or FixedPoint()
        check_product_headroom(self.encoding)
        if truncation not in ("dealer", "local"):
            raise ValueError(f"truncation must be 'dealer' or 'local', got {truncation!r}")
        if truncation == "local" and self.n != 2:
            raise ValueError(f"local truncation works for exactly 2 servers, got n={self.n}")
        self.truncation = truncation
        self._key = fresh_key(16) if key is None else key
        self.dealer = Dealer(self.n, ring=self.encoding.ring, key=derive_key(self._key, "refimpl/inference-dealer"))
        self.channel = channel or Channel()
        self._inputs = 0
        ring, fp = self.encoding.ring, self.encoding
        self.layers: list[tuple[MaskedOperand, Shares]] = []
        for i, (w, b) in enumerate(nn.layers(params)):
            w_shares = share(fp.encode(w), self.n, ring=ring, key=derive_key(self._key, "model", i, "w"))
            b_shares = share(fp.encode(b), self.n, ring=ring, key=derive_key(self._key, "model", i, "b"))
            # set-up, once per model: open W - B for a dealer mask B, so inferences open only x - A
            self.layers.append((mask_operand(w_shares, self.dealer, self.channel), b_shares))
        self.setup = self.channel.summary()

    @classmethod
    def from_shares(cls, layers: Sequence[tuple[Shares, Shares]], *, encoding: FixedPoint, dealer: Dealer,
                    channel: Channel | None = None, key: bytes | None = None) -> EncryptedMLP:
        """A model on weights that are already shared (e.g. by encrypted training): they are never opened.

        ``layers`` holds ``(W_i, b_i)`` sharings at the encoding's scale; ``dealer`` serves the same parties.
        Truncation is the dealer's. The set-up masks each ``W_i`` once, as :class:`EncryptedMLP` does.
        """
        self = cls.__new__(cls)
        self.n, self.encoding, self.truncation = dealer.n, encoding, "dealer"
        self._key = fresh_key(16) if key is None else key
        self.dealer, self.channel, self._inputs = dealer, channel or Channel(), 0
        before = self.channel.summary()
        self.layers = [(mask_operand(w, dealer, self.channel), b) for w, b in layers]
        self.setup = {k: v - before[k] for k, v in self.channel.summary().items()}
        return self

    @property
    def input_size(self) -> int:
        return self.layers[0][0].shape[0]

    def share_input(self, x: ArrayLike) -> Shares:
        """The client's side: encode and share a batch ``(batch, d0)`` of inputs among the servers."""
        arr = np.asarray(x, np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.input_size:
            raise ShapeMismatchError(f"inputs must have shape (batch, {self.input_size}), got {arr.shape}")
        self._inputs += 1
        key = derive_key(self._key, "client-input", self._inputs)
        return share(self.encoding.encode(arr), self.n, ring=self.encoding.ring, key=key)

    def share_input_compressed(self, x: ArrayLike) -> CompressedShares:
        """Like :meth:`share_input`, seed-compressed: servers ``1 .. n-1`` receive a key instead of an array
        (``.expand()`` gives the sharing to run :meth:`forward` on)."""
        arr = np.asarray(x, np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.input_size:
            raise ShapeMismatchError(f"inputs must have shape (batch, {self.input_size}), got {arr.shape}")
        self._inputs += 1
        key = derive_key(self._key, "client-input", self._inputs)
        return share_compressed(self.encoding.encode(arr), self.n, ring=self.encoding.ring, key=key)

    def _truncate(self, x: Shares) -> Shares:
        """Divide a product by the encoding's scale (``base**frac_bits``, any base)."""
        scale = self.encoding.scale
        if self.truncation == "local":
            return divide_local(x, scale)
        return divide(x, scale, self.dealer, self.channel)

    def forward(self, x: Shares) -> Shares:
        """The servers' side: logits (fixed point) as shares, from shared inputs; no value is opened."""
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = self._truncate(matmul_masked(h, w, self.dealer, self.channel))
            h = Shares(h.ring, h.ring.add(h.data, b.data[:, None, :]))  # + b, share by share (batch broadcast)
            if i < len(self.layers) - 1:
                h = relu(h, self.dealer, self.channel)
        return h

    def logits(self, x: ArrayLike) -> np.ndarray:
        """Share ``x``, run :meth:`forward`, and reconstruct the logits as the client does (float64)."""
        return self.encoding.decode(self.forward(self.share_input(x)).reconstruct())

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Class predictions (arg-max of the decoded logits), revealed to the client only."""
        return np.argmax(self.logits(x), axis=-1)
