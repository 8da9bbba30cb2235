"""Multi-party computation on stacked sharings: multiplication on shares with a crypto provider (Beaver triples),
and truncation of fixed-point products.

The **dealer** (the tutorial's ``crypto_provider``) holds its own key and hands out correlated randomness, each item
drawn from its own derived stream (``derive_key(key, "refimpl/dealer", kind, index)``: first the item's values,
then the shares of parties ``1 .. n-1``, party 0 getting the difference) and shared among the ``n`` parties:
triples ``(a, b, a*b)`` for elementwise products, ``(A, B, A@B)`` for matrix products, pairs ``(a, a**2)``
for squares, AND triples on 64-bit words, daBits and truncation pairs. Every item can be consumed exactly once;
using it twice raises :class:`~refimpl.errors.TripleReuseError` (a reused triple leaks ``x - x'``).

**Beaver multiplication** of sharings ``[x]``, ``[y]`` with a triple ``([a], [b], [c])``: the parties open
``eps = x - a`` and ``delta = y - b`` (both in one round), then locally

    ``[z] = [c] + eps * [b] + [a] * delta + eps * delta``   (the public term added by party 0)

so ``z = x * y``; ``@`` in place of ``*`` gives matrix products. ``eps`` and ``delta`` are uniform: nothing leaks.
Matrix products over Z_2^64 / Z_2^32 run on float64 BLAS with split limbs where that is faster, bit-identical to
the integer matmul (:mod:`refimpl.mpc.limb`).

**Truncation** of a fixed-point product (scale ``2**(2f)`` back to ``2**f``), in a ring Z_2^l:

* :func:`truncate_local` (two parties, no communication; SecureML): party 0 computes ``s0 >> f``, party 1
  ``-((-s1) >> f)``. For a signed value ``x`` and a uniform mask the result is ``floor(x / 2**f)`` or one more,
  except with probability exactly ``|x| / 2**l`` (at most ``2**(l_x - l)`` for ``|x| < 2**l_x``), when it is off
  by about ``+-2**(l - f)``. Example: l = 64, f = 16, a product of values below 2**10 in magnitude has
  ``|x| < 2**52``, so each element fails with probability below ``2**-12``.
* :func:`truncate` (any ``n``, one round; dealer-assisted, after Catrina-Saxena / Escudero et al.): the dealer
  shares ``r``, ``(r mod 2**(l-1)) >> f`` and the top bit of ``r``; the parties open ``c = x + 2**(l-2) + r``.
  For every ``x`` in ``[-2**(l-2), 2**(l-2))`` the result is ``floor(x / 2**f)`` or ``floor(x / 2**f) + 1``,
  never anything else (error below 1 ulp), and it is ``+1`` with probability ``(x mod 2**f) / 2**f``: unbiased
  stochastic rounding. No failure probability.

Naive truncation (every party shifting its own share) is wrong whenever the shares wrap around M, which for
uniform shares is about half the time; the tests pin such cases.

Communication is counted by a :class:`Channel` (rounds, messages, bytes), which records every opening and every
dealer item in a :class:`refimpl.net.accounting.Ledger`; ``refimpl.workers`` provides one that sends every share
through serialised messages between workers.

**The fixed-point algebra** (:mod:`refimpl.mpc.algebra`): :class:`StackedTensor` (made by :func:`share_tensor`)
gives stacked shares real-number semantics from their encoding, division by any public integer (:func:`divide`,
so base-10 encodings are exact; :func:`check_product_headroom` refuses encodings whose products cannot fit), NumPy's
tensor operations, exact comparisons, ``relu``, ``max``/``argmax`` and the non-linear functions of
:mod:`refimpl.mpc.functions` with documented bounds; ``refimpl.workers.SharedTensor`` runs the same algebra with
one share per worker.

Example:
    >>> from refimpl import share, reconstruct, Z2_64
    >>> dealer = Dealer(3, key=bytes(16))
    >>> channel = Channel()
    >>> x, y = share([3, -4, 5], 3), share([7, 8, -9], 3)
    >>> Z2_64.lift(reconstruct(mul(x, y, dealer, channel)))
    array([ 21, -32, -45])
    >>> channel.rounds, channel.messages, channel.bytes      # one round: eps and delta opened together
    (1, 6, 288)

References:
    D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991.
    P. Mohassel, Y. Zhang, "SecureML: A System for Scalable Privacy-Preserving Machine Learning", IEEE S&P 2017.
    O. Catrina, A. Saxena, "Secure Computation with Fixed-Point Numbers", FC 2010.
    D. Escudero, S. Ghosh, M. Keller, R. Rachuri, P. Scholl, "Improved Primitives for MPC over Mixed
    Arithmetic-Binary Circuits", CRYPTO 2020.
"""


from refimpl.mpc.algebra import TensorAlgebra
from refimpl.mpc.arithmetic import MaskedOperand, beaver_parts, mask_operand, matmul, matmul_masked, mul, square
from refimpl.mpc.channel import Channel
from refimpl.mpc.dealer import Dealer, Triple, ring_matmul
from refimpl.mpc.headroom import check_product_headroom
from refimpl.mpc.shape_ops import concatenate, stack
from refimpl.mpc.stacked import StackedTensor, share_tensor
from refimpl.mpc.truncation import (
    divide,
    divide_local,
    division_range,
    local_truncation_failure_probability,
    truncate,
    truncate_local,
    truncation_offset,
    truncation_parts,
)

__all__ = [
    "Channel",
    "Dealer",
    "MaskedOperand",
    "StackedTensor",
    "TensorAlgebra",
    "Triple",
    "beaver_parts",
    "check_product_headroom",
    "concatenate",
    "divide",
    "divide_local",
    "division_range",
    "local_truncation_failure_probability",
    "mask_operand",
    "matmul",
    "matmul_masked",
    "mul",
    "ring_matmul",
    "share_tensor",
    "square",
    "stack",
    "truncate",
    "truncate_local",
    "truncation_offset",
    "truncation_parts",
]
