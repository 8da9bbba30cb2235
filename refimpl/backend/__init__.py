"""NumPy or JAX: :mod:`~refimpl.backend.dispatch` decides, and the JAX kernels on arrays live beside it.

This is the bottom of the array stack: :mod:`refimpl.ring`, :mod:`refimpl.encoding` and :mod:`refimpl.sharing` call
down into ``jax_ring``, ``jax_encoding`` and ``jax_chacha`` (the JAX path of sharing itself is
:mod:`refimpl.sharing.jax_sharing`, because it builds :class:`~refimpl.sharing.Shares`). Nothing here imports JAX
when refimpl is imported: the kernels are imported by the public entry points the first time they see a JAX array.
"""
