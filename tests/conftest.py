"""Test configuration: hypothesis profiles (``dev`` fast, ``ci`` derandomized and broader), chosen by the
HYPOTHESIS_PROFILE environment variable (default ``dev``)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
