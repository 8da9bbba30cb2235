"""Tools for testing refimpl and other implementations against it.

* :mod:`refimpl.testing.strategies`: keyword-only hypothesis strategies (rings, ring elements, fixed-point
  encodings and encodable floats, sharings, party counts, keys) for property tests. Needs ``hypothesis``.
* :mod:`refimpl.testing.conformance`: checks of a third-party share / reconstruct / encode / decode
  implementation against refimpl's properties.
* ``vectors/``: known-answer vectors (JSON) with fixed keys, loaded by :func:`load_vectors` (schema:
  ``vectors/README.md``; regenerate with ``python scripts/gen_vectors.py``).

Only :func:`load_vectors` (standard library only) is imported here, so ``import refimpl.testing`` needs neither
hypothesis nor pytest; import the submodule you use, e.g. ``from refimpl.testing import strategies as rst``.
"""

from refimpl.testing._vectors import VECTOR_NAMES, load_vectors

__all__: list[str] = ["VECTOR_NAMES", "load_vectors"]
