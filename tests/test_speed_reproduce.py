"""The README's training figures are those of the recorded runs that scripts/reproduce.py regenerates.

Fast: no training here. ``python scripts/reproduce.py --quick | --full`` reruns the runs and rewrites
``docs/figures.json``; this checks that (1) ``docs/figures.json`` is what the recorded ``docs/*/metrics.jsonl`` files
say, and (2) the README quotes every one of those figures with the same text.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((ROOT / "docs" / "figures.json").read_text())


def test_figures_file_matches_the_recorded_runs(recorded):
    fresh = _reproduce().figures()
    assert fresh.keys() == recorded.keys()
    for key, f in fresh.items():
        want = recorded[key]
        assert f["text"] == want["text"], key
        if isinstance(f["value"], float):
            assert math.isclose(f["value"], want["value"], rel_tol=0, abs_tol=0), key
        else:
            assert f["value"] == want["value"], key


def test_readme_quotes_every_recorded_figure(recorded):
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks inside a sentence do not matter
    missing = {key: f["text"] for key, f in recorded.items() if " ".join(f["text"].split()) not in readme}
    assert not missing, f"README does not quote these figures of docs/figures.json: {missing}"


def test_every_recorded_run_has_its_flags():
    """Each run directory's config.json records the flags that scripts/reproduce.py passes (the run is regenerable)."""
    module = _reproduce()
    for name, (flags, _quick) in module.RUNS.items():
        config = json.loads((ROOT / "docs" / name / "config.json").read_text())
        for flag, value in zip(flags, [*flags[1:], None]):
            if flag.startswith("--") and value is not None and not value.startswith("--"):
                key = flag[2:].replace("-", "_")
                if key == "rounds":  # runtime-only: checked by the figures, which read the last round
                    continue
                assert str(config[key]) == value, (name, flag, config[key], value)
