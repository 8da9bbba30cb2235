"""Import smoke test: the curated public API, the exception hierarchy, and a light ``import refimpl``."""

from __future__ import annotations

import inspect
import json
import pathlib
import subprocess
import sys

import pytest

import refimpl

EXPECTED_ALL = [
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

ERRORS = ["RefimplError", "RingMismatchError", "PartyCountError", "ShapeMismatchError", "OutOfRangeError",
          "NotAFieldError", "KeyFormatError", "BackendError", "ThresholdError", "ConfigurationError", "ProtocolError",
          "ReplayError", "KeyReuseError", "TripleReuseError", "WireFormatError", "PointerError",
          "WorkerUnavailable", "DataError", "DatasetNotFoundError", "TraceFormatError", "CheckpointError"]


def test_every_exception_is_public_under_refimpl_errors():
    """Every exception class lives in the public refimpl.errors module and is re-exported from refimpl."""
    import refimpl.errors

    classes = {n for n, o in vars(refimpl.errors).items() if inspect.isclass(o) and issubclass(o, Exception)}
    assert classes == set(ERRORS) == set(refimpl.errors.__all__)
    for name in ERRORS:
        cls = getattr(refimpl, name)
        assert cls is getattr(refimpl.errors, name) and cls.__module__ == "refimpl.errors", name


def test_public_names_exactly():
    assert refimpl.__all__ == EXPECTED_ALL, "refimpl.__all__ changed: update EXPECTED_ALL deliberately"
    assert len(set(refimpl.__all__)) == len(refimpl.__all__)
    for name in refimpl.__all__:
        assert hasattr(refimpl, name), name


def test_issue_names_are_public():
    for name in ("Ring", "Z2_32", "Z2_64", "FixedPoint", "share", "reconstruct", "Shares"):
        assert name in refimpl.__all__


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from refimpl import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED_ALL)


def test_public_callables_are_documented():
    for name in refimpl.__all__:
        obj = getattr(refimpl, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"refimpl.{name} has no docstring"


def test_exception_hierarchy():
    for name in ERRORS:
        cls = getattr(refimpl, name)
        assert issubclass(cls, refimpl.RefimplError) and issubclass(cls, ValueError), name
    # a missing dataset is also what `except FileNotFoundError` expects; a bad trace is a kind of bad data
    assert issubclass(refimpl.DatasetNotFoundError, FileNotFoundError)
    assert issubclass(refimpl.TraceFormatError, refimpl.DataError)


def test_version_and_py_typed():
    assert isinstance(refimpl.__version__, str) and refimpl.__version__.count(".") == 2
    assert (pathlib.Path(refimpl.__file__).parent / "py.typed").is_file()


HEAVY = ["jax", "jaxlib", "optax", "hypothesis", "pytest", "scipy", "tensorflow", "torch", "matplotlib", "numba",
         "llvmlite"]


def _modules_after(code: str) -> list[str]:
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_refimpl_does_not_import_jax_or_test_tools():
    loaded = _modules_after("import refimpl")
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert heavy == [], f"import refimpl imported {heavy}"


def test_core_operations_do_not_import_jax():
    code = ("import numpy as np, refimpl\n"
            "x = refimpl.share(refimpl.FixedPoint().encode(np.ones(4)), 3, key=bytes(16))\n"
            "refimpl.reconstruct(x + x); refimpl.share_compressed([1], 2).expand()\n"
            "refimpl.FixedPoint().decode(refimpl.reconstruct(x * 2))")
    loaded = _modules_after(code)
    assert [m for m in loaded if m.split(".")[0] in ("jax", "jaxlib")] == []


def test_the_fused_client_pass_runs_without_numba():
    code = ("import sys; sys.modules['numba'] = None  # import numba now raises ImportError\n"
            "import numpy as np\n"
            "from refimpl.prg import Stream\n"
            "from refimpl import jit\n"
            "from refimpl.secagg.fused import encode_mask\n"
            "out = np.empty(3, np.uint64)\n"
            "x = [np.array([0.5, -1.5, 2.25], np.float32)]\n"
            "assert encode_mask(x, 4.0, out, [bytes(16)], 'aes128-ctr', bound=99)\n"
            "mask = Stream(bytes(16)).read(24).view(np.uint64)\n"
            "assert (out + mask).view(np.int64).tolist() == [2, -6, 9], out\n"
            "assert jit.available() is False and jit.aes_available() is False\n"
            "from refimpl import share, reconstruct\n"
            "assert reconstruct(share(np.arange(5, dtype=np.uint64), 3)).tolist() == [0, 1, 2, 3, 4]")
    loaded = _modules_after(code)
    assert "refimpl.jit" in loaded and "refimpl.jit.kernels" not in loaded


def test_import_refimpl_testing_needs_no_hypothesis():
    loaded = _modules_after("import refimpl.testing")
    assert "hypothesis" not in loaded


@pytest.mark.parametrize("module", ["refimpl.ring", "refimpl.prg", "refimpl.encoding", "refimpl.sharing",
                                    "refimpl.errors"])
def test_core_modules_declare_all(module):
    mod = __import__(module, fromlist=["__all__"])
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)
