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


# -- a throwaway PostgreSQL server (tests/pg_cluster.py) ------------------------------------

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from pg_cluster import INSTALL_HINT, PgCluster, find_bindir  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgCluster]:
    """One PostgreSQL server for the session (skips without the binaries; fails on CI)."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        msg = "psycopg is not installed: pip install -e '.[test]' (or 'securemsg[postgres]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: PgCluster) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server (dropped afterwards)."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
