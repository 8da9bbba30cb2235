"""Machinery of :mod:`refimpl.testing.conformance`: the result type, the property runner, exact comparisons and a
distribution-free uniformity test. Private: the public names are re-exported by ``conformance``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

__all__ = ["CheckResult", "Checker", "ConformanceError", "PropertyFailure", "dkw_uniformity", "to_ints"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one conformance check.

    Truthy when the check passed, so ``assert check_sharing(...)`` works; :meth:`assert_passed` raises a
    :class:`ConformanceError` (an ``AssertionError``) whose message names the property and the counterexample.

    Attributes:
        check: the check's name, e.g. ``"check_sharing"``.
        passed: whether every property held.
        property: the first property that failed (None when passed).
        counterexample: the inputs and outputs that falsify it, as plain Python values (ints, floats, lists,
            hex strings), or None when passed.
        message: one readable paragraph: what was called, what came back, what was expected.
        checked: the properties that were checked, in order (the failed one last).
        skipped: the properties not checked, each with the reason (e.g. an operation that was not supplied).
    """

    check: str
    passed: bool
    property: str | None = None
    counterexample: dict[str, Any] | None = None
    message: str = ""
    checked: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            text = f"{self.check}: passed ({', '.join(self.checked)})"
        else:
            text = f"{self.check}: property {self.property!r} FAILED: {self.message}"
        if self.skipped:
            text += f"; skipped: {'; '.join(self.skipped)}"
        return text

    def assert_passed(self) -> CheckResult:
        """Raise :class:`ConformanceError` if the check failed; return ``self`` otherwise."""
        if not self.passed:
            raise ConformanceError(self)
        return self


class ConformanceError(AssertionError):
    """A conformance check failed; ``.result`` holds the :class:`CheckResult` with the counterexample."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(str(result))
        self.result = result


class PropertyFailure(Exception):
    """Raised inside a property body: the property does not hold for this input."""

    def __init__(self, prop: str, counterexample: dict[str, Any], message: str) -> None:
        super().__init__(f"{prop}: {message}")
        self.prop = prop
        self.counterexample = counterexample
        self.message = message


def to_ints(values: Any, what: str, prop: str, context: dict[str, Any]) -> list[int]:
    """Flatten an implementation's output to Python ints, or fail the property if it is not integers."""
    try:
        arr = np.array(values, dtype=object) if isinstance(values, (list, tuple)) else np.asarray(values)
    except Exception as exc:  # noqa: BLE001 - anything the third party returns
        raise PropertyFailure(prop, {**context, "got": repr(values)[:200]},
                              f"{what} returned {type(values).__name__}, which is not an array of integers "
                              f"({exc})") from None
    flat = arr.ravel().tolist() if arr.dtype != object else list(arr.ravel())
    if arr.dtype.kind not in "iuO" or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in flat):
        raise PropertyFailure(prop, {**context, "got": [repr(v) for v in flat[:8]]},
                              f"{what} returned dtype {arr.dtype}, not integers")
    return [int(v) for v in flat]


def dkw_uniformity(values: Sequence[int], modulus: int, alpha: float) -> tuple[float, float]:
    """Kolmogorov distance between the empirical distribution of ``values`` and the uniform distribution on
    ``[0, modulus)``, and the Dvoretzky-Kiefer-Wolfowitz-Massart threshold ``sqrt(ln(2/alpha) / (2N))``: for truly
    uniform independent values the distance exceeds the threshold with probability at most ``alpha`` (for any
    ``modulus``; for a discrete distribution the bound is conservative).

    References:
        P. Massart, "The tight constant in the Dvoretzky-Kiefer-Wolfowitz inequality", Ann. Probab. 18 (1990).
    """
    vals = sorted(int(v) for v in values)
    n = len(vals)
    dist = 0.0
    for i, v in enumerate(vals):
        # empirical CDF just after v (>= (i+1)/n) vs P(X <= v); just before v (<= i/n) vs P(X < v)
        dist = max(dist, (i + 1) / n - (v + 1) / modulus, v / modulus - i / n)
    return dist, math.sqrt(math.log(2 / alpha) / (2 * n))


class Checker:
    """Runs a check's properties in order and stops at the first failure.

    Each property is a body ``f(value)`` that raises :class:`PropertyFailure`; it runs first on a deterministic
    example list (boundaries, known traps) and then on ``examples`` hypothesis examples, shrunk on failure.
    Exceptions raised by the implementation under test are failures too (their type and message are reported).
    """

    def __init__(self, name: str, *, examples: int, seed: int | None) -> None:
        if isinstance(examples, bool) or not isinstance(examples, numbers.Integral) or examples < 0:
            raise ValueError(f"examples must be a non-negative integer, got {examples!r}")
        self.name: str = name
        self.examples: int = int(examples)
        self.seed: int | None = seed
        self.checked: list[str] = []
        self.skipped: list[str] = []
        self.failure: PropertyFailure | None = None
        self.note: str = ""

    def skip(self, prop: str, reason: str) -> None:
        self.skipped.append(f"{prop} ({reason})")

    def _call(self, prop: str, body: Callable[[Any], None], value: Any) -> None:
        try:
            body(value)
        except PropertyFailure:
            raise
        except Exception as exc:
            raise PropertyFailure(prop, {"input": _plain(value), "exception": f"{type(exc).__name__}: {exc}"},
                                  f"raised {type(exc).__name__}: {exc} on input {_plain(value)!r}") from exc

    def run(self, prop: str, body: Callable[[Any], None], *, fixed: Iterable[Any] = (),
            strategy: st.SearchStrategy[Any] | None = None, examples: int | None = None,
            narrow: Callable[[Any, PropertyFailure], Any] | None = None) -> bool:
        """Check one property; return False (and remember the failure) if it does not hold.

        ``narrow(value, failure)`` may return a smaller input to retry when a fixed example fails (e.g. the one
        element that failed); the smaller counterexample is reported if it fails too.
        """
        if self.failure is not None:
            return False
        self.checked.append(prop)
        try:
            for value in fixed:
                self._call(prop, body, value)
        except PropertyFailure as failure:
            self.failure = failure
            smaller = narrow(value, failure) if narrow is not None else None
            if smaller is not None:
                try:
                    self._call(prop, body, smaller)
                except PropertyFailure as retry:
                    self.failure = retry
            return False
        budget = self.examples if examples is None else examples
        if strategy is None or budget == 0:
            return True
        seen: list[PropertyFailure] = []

        @settings(max_examples=budget, database=None, deadline=None, report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        @given(strategy)
        def search(value: Any) -> None:
            try:
                self._call(prop, body, value)
            except PropertyFailure as failure:
                seen.append(failure)
                raise

        if self.seed is not None:
            search = hypothesis_seed(self.seed)(search)
        try:
            search()
        except PropertyFailure as failure:
            self.failure = failure  # hypothesis re-raises the failure of the shrunk (minimal) example
            return False
        except Exception as exc:
            if not seen:
                raise
            self.failure = seen[-1]
            self.note = (f" (hypothesis reported {type(exc).__name__}: the failure did not reproduce on replay, "
                         "so the implementation is nondeterministic for this input)")
            return False
        return True

    def result(self) -> CheckResult:
        f = self.failure
        if f is None:
            return CheckResult(self.name, True, checked=tuple(self.checked), skipped=tuple(self.skipped))
        return CheckResult(self.name, False, property=f.prop, counterexample=f.counterexample,
                           message=f.message + self.note, checked=tuple(self.checked), skipped=tuple(self.skipped))


def _plain(value: Any) -> Any:
    """Inputs as plain Python values for messages (arrays become lists, bytes become hex)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.dtype != object else [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
