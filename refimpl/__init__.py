"""refimpl: a reference implementation of privacy-preserving federated learning.

The core (rings, cryptographic streams, fixed point, additive sharing) needs only NumPy and ``cryptography``.
JAX and the federated-learning modules are optional and are imported only when used.
"""

from refimpl.encoding import FixedPoint
from refimpl.errors import (
    BackendError,
    CheckpointError,
    ConfigurationError,
    DataError,
    DatasetNotFoundError,
    KeyFormatError,
    KeyReuseError,
    NotAFieldError,
    OutOfRangeError,
    PartyCountError,
    PointerError,
    ProtocolError,
    RefimplError,
    ReplayError,
    RingMismatchError,
    ShapeMismatchError,
    ThresholdError,
    TraceFormatError,
    TripleReuseError,
    WireFormatError,
    WorkerUnavailable,
)
from refimpl.prg import Stream, derive_key, fresh_key, keystream
from refimpl.ring import Z2_32, Z2_64, Ring
from refimpl.sharing import (
    CompressedShares,
    Shares,
    reconstruct,
    reconstruct_tree,
    share,
    share_compressed,
    share_tree,
    sum_shares,
)

__version__ = "0.1.0"

__all__ = [
    "Ring",
    "Z2_32",
    "Z2_64",
    "FixedPoint",
    "Stream",
    "keystream",
    "derive_key",
    "fresh_key",
    "Shares",
    "CompressedShares",
    "share",
    "share_compressed",
    "reconstruct",
    "sum_shares",
    "share_tree",
    "reconstruct_tree",
    "RefimplError",
    "RingMismatchError",
    "PartyCountError",
    "ShapeMismatchError",
    "OutOfRangeError",
    "NotAFieldError",
    "KeyFormatError",
    "BackendError",
    "ThresholdError",
    "ConfigurationError",
    "ProtocolError",
    "ReplayError",
    "KeyReuseError",
    "TripleReuseError",
    "WireFormatError",
    "PointerError",
    "WorkerUnavailable",
    "DataError",
    "DatasetNotFoundError",
    "TraceFormatError",
    "CheckpointError",
]
