"""The encode-and-mask loop of :func:`refimpl.secagg.fused.encode_mask`, compiled by Numba where it is installed.

NumPy computes a chunk of a fused client pass in six array passes (widen, scale, round, convert, subtract the
keystream, undo the rounding offset); this loop makes one, element by element, with the same float64 arithmetic:
``out[i] = ring(int64(rint(float64(src[i]) * factor))) - mask[i]``. On the README's FedAvg round (10 clients,
199,210 coordinates) the clients' pass takes 1.76 ms of CPU against NumPy's 3.01 (``bench/bench_secure_round.py``).

It is an accelerator only: the NumPy pass stays the definition, and the tests compare the two bit for bit
(``tests/test_secagg_compiled.py``: float32 / float64 sources, both rings, ties, the range bound, NaN and
infinity). ``REFIMPL_JIT=0`` turns it off; without the ``numba`` package (``pip install "refimpl[jit]"``) NumPy
runs. Numba keeps IEEE float64 semantics here (no ``fastmath``: no contraction of the multiply and the rounding),
and ``np.rint`` rounds half to even as NumPy's does.

Example:
    >>> import numpy as np
    >>> out = np.empty(3, np.uint64)
    >>> ok = encode_sub(np.array([0.5, -1.5, 2.25], np.float32), 4.0, np.zeros(3, np.uint64), out, 2.0**20)
    >>> ok, out.view(np.int64).tolist()          # rint([2, -6, 9]), nothing subtracted
    (True, [2, -6, 9])
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from refimpl.errors import ConfigurationError

__all__ = ["ENV", "available", "encode_sub", "set_enabled"]

ENV = "REFIMPL_JIT"
"""``0`` turns the compiled loop off (NumPy runs), ``1`` requires it (an error when Numba is missing); unset: used
where Numba imports."""

_lock = threading.Lock()
_kernel: Any = None
_state: bool | None = None
_forced: bool | None = None  # set_enabled's setting


def available() -> bool:
    """Whether the compiled loop runs in this process: :data:`ENV`, else whether Numba imports (decided once).

    Raises:
        ConfigurationError: :data:`ENV` is neither ``0`` nor ``1``, or it is ``1`` and Numba does not import.
    """
    global _state, _kernel
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            choice = os.environ.get(ENV, "")
            if choice not in ("", "0", "1"):
                raise ConfigurationError(f"{ENV} must be 0 or 1 (or unset), got {choice!r}")
            kernel = None
            if choice != "0":
                try:
                    kernel = _kernel or _compile()
                except ImportError as err:
                    if choice == "1":
                        raise ConfigurationError(f"{ENV}=1 needs the numba package ({err}); "
                                                 'pip install "refimpl[jit]"') from err
            _kernel = kernel or _kernel
            _state = kernel is not None
    return _state


def set_enabled(flag: bool | None) -> bool | None:
    """Turn the compiled loop on (True: Numba must import) or off (False) in this process, or back to the default
    (None: :data:`ENV`, else whether Numba imports); returns the previous setting (None where it was the default).
    For comparisons in one process (tests, ``bench/bench_secure_round.py --no-jit``); not thread-safe against
    running kernels.

    Raises:
        ConfigurationError: True where Numba does not import.
    """
    global _state, _kernel, _forced
    previous = _forced
    with _lock:
        if flag:
            try:
                _kernel = _kernel or _compile()
            except ImportError as err:
                raise ConfigurationError(f"the compiled loop needs the numba package ({err}); "
                                         'pip install "refimpl[jit]"') from err
        _state, _forced = (None, None) if flag is None else (bool(flag), bool(flag))
    return previous


def encode_sub(src: np.ndarray, factor: float, mask: np.ndarray, out: np.ndarray, bound: float) -> bool:
    """``out[i] = int64(rint(float64(src[i]) * factor)) - mask[i]`` in ``out``'s ring words (wrap-around), for a
    1-D float32 / float64 ``src`` and equally long uint32 / uint64 ``mask`` and ``out``; returns whether every
    ``|rint(...)|`` is at most ``bound`` (< 2^51; NaN fails). Where one is not, ``out`` holds garbage there (the
    caller discards it).

    Raises:
        ConfigurationError: the compiled loop is not available (:func:`available` is False).
    """
    if not available():
        raise ConfigurationError(f"the compiled loop is off ({ENV}=0) or numba is not installed; "
                                 'pip install "refimpl[jit]"')
    return bool(_kernel(src, np.float64(factor), mask, out, np.float64(bound)))


def _compile() -> Any:
    import numba  # an optional dependency: ImportError means NumPy runs

    @numba.njit(nogil=True, error_model="numpy")  # no fastmath: IEEE float64 throughout
    def kernel(src: Any, factor: Any, mask: Any, out: Any, bound: Any) -> Any:  # pragma: no cover (compiled)
        ok = True
        for i in range(src.size):
            r = np.rint(np.float64(src[i]) * factor)
            inside = np.abs(r) <= bound  # False for NaN
            ok &= inside
            r = r if inside else 0.0  # never convert an out-of-range float (undefined in LLVM)
            out[i] = np.uint64(np.int64(r)) - np.uint64(mask[i])  # stored mod 2^32 in uint32 words
        return ok

    return kernel
