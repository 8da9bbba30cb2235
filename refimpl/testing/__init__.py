"""Tools for testing refimpl and other implementations against it.

* :mod:`refimpl.testing.strategies`: keyword-only hypothesis strategies (rings, ring elements, fixed-point
  encodings and encodable floats, sharings, party counts, keys) for property tests. Needs ``hypothesis``.
* :mod:`refimpl.testing.conformance`: checks of a third-party share / reconstruct / encode / decode
  implementation against refimpl's properties.
* ``vectors/``: known-answer vectors (JSON) with fixed keys.

Nothing is imported here eagerly, so ``import refimpl.testing`` needs neither hypothesis nor pytest; import the
submodule you use, e.g. ``from refimpl.testing import strategies as rst``.
"""

__all__: list[str] = []
