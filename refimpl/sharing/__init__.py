"""Secret sharing: additive (stacked, seed-compressed), binary (XOR), Shamir, and pytrees of shares.

* :mod:`~refimpl.sharing.additive` -- :class:`Shares`, :class:`CompressedShares`, reconstruct, sums;
* :mod:`~refimpl.sharing.api` -- :func:`share`, where the backend (NumPy or JAX) is chosen;
* :mod:`~refimpl.sharing.binary` -- XOR sharings of 64-bit words;
* :mod:`~refimpl.sharing.shamir` -- t-of-n Shamir sharing over prime fields;
* :mod:`~refimpl.sharing.tree` -- sharing every leaf of a pytree.
"""

from refimpl.sharing.additive import CompressedShares, Shares, reconstruct, share_compressed, sum_shares
from refimpl.sharing.api import share
from refimpl.sharing.binary import BinaryShares, share_binary
from refimpl.sharing.shamir import ShamirShares, shamir_reconstruct, shamir_share
from refimpl.sharing.tree import reconstruct_tree, share_tree

__all__ = [
    "BinaryShares",
    "CompressedShares",
    "ShamirShares",
    "Shares",
    "reconstruct",
    "reconstruct_tree",
    "shamir_reconstruct",
    "shamir_share",
    "share",
    "share_binary",
    "share_compressed",
    "share_tree",
    "sum_shares",
]
