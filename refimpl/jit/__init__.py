"""Loops compiled by Numba where it is installed: accelerators of the NumPy / OpenSSL definitions, never definitions.

Two families of kernels live in :mod:`refimpl.jit.kernels` (imported, and compiled, only on first use):

* the secure-aggregation clients' encode-and-mask loop (:func:`~refimpl.jit.kernels.encode_sub`,
  :func:`refimpl.secagg.fused.encode_mask`): ``out[i] = ring(int64(rint(float64(src[i]) * factor))) - mask[i]`` in
  one pass instead of NumPy's six;
* AES-128-CTR keystreams computed by the CPU's AES instructions (:mod:`refimpl.jit.aes`: VAES on 512- or 256-bit
  vectors, else AES-NI) and consumed where they are made -- added to a running sum, subtracted from an encoded
  update, written as mask rows next to party 0's share -- instead of OpenSSL writing each keystream into a buffer
  that a second pass reads back (:func:`refimpl.sharing.kernels.fold_keystreams`, ``share_words``,
  ``fill_keystreams``). The keystream is the one :class:`refimpl.prg.Stream` reads (offset 0, default nonce), bit
  for bit; the tests compare the two on random keys, offsets, lengths and the 2^64 counter carry.

Switches: ``REFIMPL_JIT=0`` turns every compiled loop off (NumPy and OpenSSL run), ``1`` requires Numba (an error
without it); ``REFIMPL_JIT_AES=0`` turns only the compiled AES off, ``1`` requires it, ``128`` / ``256`` / ``512``
force a vector width the CPU must support (the widest supported is the default). :func:`set_enabled` and
:func:`set_aes` change the same settings in one process (tests, benchmarks). Without the ``numba`` package
(``pip install "refimpl[jit]"``) nothing here is compiled and ``import refimpl`` never imports Numba.

Example:
    >>> from refimpl import jit
    >>> isinstance(jit.available(), bool), jit.aes_width() in (0, 128, 256, 512)
    (True, True)
"""

from __future__ import annotations

import os
import platform
import threading
from types import ModuleType

from refimpl.errors import ConfigurationError

__all__ = ["AES_ENV", "AES_MIN_BYTES", "ENV", "aes_available", "aes_kernels", "aes_width", "available",
           "compiled_kernels", "set_aes", "set_enabled"]

ENV = "REFIMPL_JIT"
"""``0`` turns the compiled loops off, ``1`` requires them (an error without Numba); unset: used where Numba
imports."""

AES_ENV = "REFIMPL_JIT_AES"
"""``0`` turns the compiled AES-CTR off (OpenSSL computes every keystream), ``1`` requires it, ``128`` / ``256`` /
``512`` force that vector width; unset: the widest the CPU supports, where :func:`available`."""

AES_MIN_BYTES = 1 << 20
"""Keystream bytes below which a call keeps OpenSSL even where the compiled AES-CTR runs: a compiled kernel's first
call in a process compiles it (about a second, and Numba's import), while OpenSSL makes 1 MiB in ~50 us. Shares,
masks and aggregators' key expansions of a real model are above it."""

_AES_CHOICES = ("", "0", "1", "128", "256", "512")
_lock = threading.Lock()
_state: bool | None = None  # whether the compiled loops run (decided once, or set by set_enabled)
_forced: bool | None = None  # set_enabled's setting
_aes_state: bool | None = None
_aes_forced: bool | None = None
_width: int | None = None


def available() -> bool:
    """Whether the compiled loops run in this process: :data:`ENV`, else whether Numba imports (decided once).

    Raises:
        ConfigurationError: :data:`ENV` is neither ``0`` nor ``1``, or it is ``1`` and Numba does not import.
    """
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            choice = os.environ.get(ENV, "")
            if choice not in ("", "0", "1"):
                raise ConfigurationError(f"{ENV} must be 0 or 1 (or unset), got {choice!r}")
            ok = False
            if choice != "0":
                try:
                    _import_numba()
                    ok = True
                except ImportError as err:
                    if choice == "1":
                        raise ConfigurationError(f"{ENV}=1 needs the numba package ({err}); "
                                                 'pip install "refimpl[jit]"') from err
            _state = ok
    return _state


def set_enabled(flag: bool | None) -> bool | None:
    """Turn the compiled loops on (True: Numba must import) or off (False) in this process, or back to the default
    (None: :data:`ENV`, else whether Numba imports); returns the previous setting (None where it was the default).
    For comparisons in one process (tests, benchmarks); not thread-safe against running kernels.

    Raises:
        ConfigurationError: True where Numba does not import.
    """
    global _state, _forced
    previous = _forced
    with _lock:
        if flag:
            try:
                _import_numba()
            except ImportError as err:
                raise ConfigurationError(f"the compiled loops need the numba package ({err}); "
                                         'pip install "refimpl[jit]"') from err
        _state, _forced = (None, None) if flag is None else (bool(flag), bool(flag))
    return previous


def compiled_kernels() -> ModuleType:
    """:mod:`refimpl.jit.kernels` (each kernel compiles on its first call with new argument types, ~0.3 s).

    Raises:
        ConfigurationError: the compiled loops are off (:func:`available` is False).
    """
    if not available():
        raise ConfigurationError(f"the compiled loops are off ({ENV}=0) or numba is not installed; "
                                 'pip install "refimpl[jit]"')
    from refimpl.jit import kernels as module

    return module


def aes_width() -> int:
    """The vector width (bits) of the compiled AES-CTR on this CPU: 512 (VAES + AVX-512), 256 (VAES + AVX), 128
    (AES-NI), or 0 (none, or not an x86-64 CPU, or Numba missing). :data:`AES_ENV` may force a narrower width.
    Where Numba compiles for a named CPU (``NUMBA_CPU_NAME``) only that CPU's listed features count.

    Raises:
        ConfigurationError: :data:`AES_ENV` is not one of ``0 1 128 256 512``, or forces a width this CPU lacks.
    """
    global _width
    if _width is not None:
        return _width
    with _lock:
        if _width is None:
            choice = os.environ.get(AES_ENV, "")
            if choice not in _AES_CHOICES:
                raise ConfigurationError(f"{AES_ENV} must be 0, 1, 128, 256 or 512 (or unset), got {choice!r}")
            best = _best_width()
            if choice in ("128", "256", "512"):
                if int(choice) > best:
                    raise ConfigurationError(f"{AES_ENV}={choice}: this CPU's widest AES instructions are "
                                             f"{best or 'none'} bits wide")
                best = int(choice)
            _width = best
    return _width


def aes_available() -> bool:
    """Whether keystreams of ``aes128-ctr`` are computed by the compiled AES here: the compiled loops are on
    (:func:`available`), :data:`AES_ENV` is not ``0`` (nor :func:`set_aes` False), and the CPU has AES
    instructions (:func:`aes_width`).

    Raises:
        ConfigurationError: :data:`AES_ENV` is ``1`` (or a width) and the compiled AES cannot run here.
    """
    global _aes_state
    choice = os.environ.get(AES_ENV, "") if _aes_state is None else None  # None: decided (or set) already
    if choice is not None and choice not in _AES_CHOICES:
        raise ConfigurationError(f"{AES_ENV} must be 0, 1, 128, 256 or 512 (or unset), got {choice!r}")
    if not available():  # checked at every call: set_enabled may change it; Numba is not imported when off
        if choice not in (None, "", "0"):
            raise ConfigurationError(f"{AES_ENV}={choice} needs the compiled loops: numba installed, {ENV} not 0")
        return False
    if _aes_state is None:
        ok = choice != "0" and aes_width() > 0
        if choice not in ("", "0") and not ok:
            raise ConfigurationError(f"{AES_ENV}={choice} needs a CPU with AES instructions")
        _aes_state = ok
    return _aes_state


def set_aes(flag: bool | None) -> bool | None:
    """Turn the compiled AES-CTR on (True: it must be able to run) or off (False) in this process, or back to the
    default (None); returns the previous setting (None where it was the default).

    Raises:
        ConfigurationError: True where it cannot run (no Numba, compiled loops off, no AES instructions).
    """
    global _aes_state, _aes_forced
    previous = _aes_forced
    if flag and not (available() and aes_width() > 0):
        raise ConfigurationError("the compiled AES-CTR needs numba (compiled loops on) and a CPU with AES "
                                 "instructions")
    _aes_state, _aes_forced = (None, None) if flag is None else (bool(flag), bool(flag))
    return previous


def aes_kernels(nbytes: int) -> ModuleType | None:
    """:mod:`refimpl.jit.kernels` for a call that makes ``nbytes`` of AES-CTR keystream, where :func:`aes_available`
    and ``nbytes >= AES_MIN_BYTES``; else None (the caller then uses OpenSSL)."""
    return compiled_kernels() if nbytes >= AES_MIN_BYTES and aes_available() else None


def _import_numba() -> None:
    import numba  # noqa: F401  (an optional dependency: ImportError means NumPy runs)


def _best_width() -> int:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return 0
    try:
        import llvmlite.binding as llvm
        import numba
    except ImportError:
        return 0
    name = getattr(numba.config, "CPU_NAME", None)
    if name and name != "host":  # Numba compiles for a named CPU: only its listed features count
        listed = getattr(numba.config, "CPU_FEATURES", None) or ""
        features = {f[1:] for f in listed.split(",") if f.startswith("+")}
    else:
        features = {k for k, v in llvm.get_host_cpu_features().items() if v}
    if {"aes", "vaes", "avx512f"} <= features:
        return 512
    if {"aes", "vaes", "avx"} <= features:
        return 256
    return 128 if "aes" in features else 0
