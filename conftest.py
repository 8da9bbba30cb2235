"""Root pytest configuration: without the optional JAX stack (or Numba), the modules that need it are not collected
for doctests (their tests in tests/ skip with a reason naming the missing package)."""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("jax") is None:
    collect_ignore_glob += ["refimpl/_jax_*.py", "refimpl/fl/*.py"]
if importlib.util.find_spec("optax") is None:
    collect_ignore_glob += ["refimpl/fl/*.py"]
if importlib.util.find_spec("numba") is None:
    collect_ignore_glob += ["refimpl/jit/aes.py", "refimpl/jit/kernels.py"]
