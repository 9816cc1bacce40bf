"""Hypothesis profiles for the whole test tree.

``ci`` (the default, and what ``./dev test`` and CI use) cannot fail on timing: no per-example
deadline and no "too slow" health check, so a loaded machine changes how long a run takes,
never its verdict (the project never asserts speed in tests: benchmarks/ measures it).
``timing`` restores Hypothesis's own deadline and health checks, for a developer who wants to
spot a property test that became slow: ``HYPOTHESIS_PROFILE=timing pytest ...``.

Tests that set their own ``@settings`` inherit everything they do not set from the profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,  # a failure prints the blob that reproduces it
)
settings.register_profile("timing", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
