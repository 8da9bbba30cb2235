"""Loading of the known-answer vectors shipped in ``refimpl/testing/vectors/`` (package data).

The JSON schema is described in ``refimpl/testing/vectors/README.md``; ``scripts/gen_vectors.py`` regenerates the
files from refimpl and ``python scripts/gen_vectors.py --check`` verifies that they are up to date.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["VECTOR_NAMES", "load_vectors"]

VECTOR_NAMES = ("ring", "streams", "kdf", "encoding", "share", "share_compressed", "shamir", "beaver",
                "secagg_additive", "mpc")


def load_vectors(name: str) -> dict[str, Any]:
    """The known-answer vectors of one primitive, parsed from the packaged JSON file ``vectors/<name>.json``.

    Large integers are decimal strings, bytes are lowercase hex strings, floats are ``repr`` strings (shortest
    round-trip decimal, plus ``float.hex`` form); see ``refimpl/testing/vectors/README.md``.

    Args:
        name: one of ``"ring"``, ``"streams"``, ``"kdf"``, ``"encoding"``, ``"share"``, ``"share_compressed"``,
            ``"shamir"``, ``"beaver"``, ``"secagg_additive"``, ``"mpc"``.

    Returns:
        The parsed JSON document: ``{"name", "schema_version", "description", ..., "cases": [...]}``.

    Raises:
        ValueError: an unknown name.

    Example:
        >>> from refimpl.testing import load_vectors
        >>> doc = load_vectors("streams")
        >>> nist = next(c for c in doc["published"] if c["source"].startswith("NIST"))
        >>> nist["ciphertext"][:32]
        '874d6191b620e3261bef6864990db6ce'
    """
    if name not in VECTOR_NAMES:
        raise ValueError(f"unknown vector set {name!r}; choose one of {', '.join(map(repr, VECTOR_NAMES))}")
    path = resources.files("refimpl.testing") / "vectors" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))
