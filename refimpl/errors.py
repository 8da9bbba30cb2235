"""The exception hierarchy of refimpl (public: ``refimpl.errors.X``, every class re-exported from ``refimpl``).

Every exception refimpl raises on bad input is one of these (or a built-in ``TypeError`` for wrong types).
All derive from :class:`RefimplError`, itself a ``ValueError``. The shared argument validators that raise them
live in :mod:`refimpl._checks`.
"""

from __future__ import annotations

__all__ = [
    "RefimplError",
    "RingMismatchError",
    "PartyCountError",
    "ShapeMismatchError",
    "OutOfRangeError",
    "NotAFieldError",
    "KeyFormatError",
    "BackendError",
    "TripleReuseError",
    "WireFormatError",
    "PointerError",
    "ThresholdError",
    "ConfigurationError",
    "ProtocolError",
    "ReplayError",
    "WorkerUnavailable",
    "DataError",
    "DatasetNotFoundError",
    "TraceFormatError",
    "CheckpointError",
    "KeyReuseError",
]


class RefimplError(ValueError):
    """Base class of refimpl's value errors (a ValueError, so ``except ValueError`` catches it)."""


class RingMismatchError(RefimplError):
    """Two operands live in different rings."""


class PartyCountError(RefimplError):
    """Two sharings have different numbers of parties, or a party count is invalid."""


class ShapeMismatchError(RefimplError):
    """Operands have shapes that do not match."""


class OutOfRangeError(RefimplError):
    """A value does not fit the ring or the fixed-point range; refimpl never wraps it silently."""


class NotAFieldError(RefimplError):
    """A modulus that must be prime is not."""


class KeyFormatError(RefimplError):
    """A key or nonce has the wrong length or type."""


class BackendError(RefimplError):
    """The array backend cannot do an operation exactly: a ring whose elements JAX cannot hold (Z_2^64 without
    JAX's 64-bit mode, moduli above 2**64), or a stream cipher with no JAX implementation under ``jax.jit``."""


class ThresholdError(RefimplError):
    """A threshold is invalid, or fewer than the threshold of shares (or surviving parties) are available."""


class ConfigurationError(RefimplError):
    """A protocol is configured with parameters that cannot work (bad sizes, clip ranges, party counts)."""


class ProtocolError(RefimplError):
    """A protocol message is malformed, addressed to the wrong round or party, or arrives out of order."""


class ReplayError(ProtocolError):
    """A protocol message was already received (a replay); it is rejected and changes nothing."""


class KeyReuseError(ProtocolError):
    """One key would pad two secrets: two parties given the same key in one round, or one key batched over many
    secrets (``jax.vmap`` of ``share``); the second use is refused."""


class TripleReuseError(RefimplError):
    """A crypto provider's correlated randomness (a Beaver triple, truncation pair, daBit) was used twice."""


class WireFormatError(RefimplError):
    """Bytes received from another party do not decode: truncated, corrupted, or not a refimpl message."""


class PointerError(RefimplError):
    """A pointer is stale (its object was fetched, moved or deleted) or names no object at its worker."""


class WorkerUnavailable(RefimplError):
    """A party on the network did not answer: it cannot be reached, its connection broke (a killed process), it
    missed a request's deadline or its pings, or it restarted and lost the session. The message names the party."""


class DataError(RefimplError):
    """A dataset file exists but is corrupt, truncated, of the wrong shape, or holds a different dataset."""


class DatasetNotFoundError(RefimplError, FileNotFoundError):
    """No source of the requested dataset was found; the message lists every place tried and how to get it."""


class TraceFormatError(DataError):
    """An availability trace CSV is malformed: the message names the file, the line and the bad value."""


class CheckpointError(RefimplError):
    """A checkpoint is unreadable or does not fit the run that tries to resume from it."""
