"""Fixtures of the integration tests (helpers live in integration_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_harness import fast_dir


@pytest.fixture
def fast_tmp() -> Iterator[Path]:
    """A temporary directory on a tmpfs when there is one (see integration_harness)."""
    with fast_dir() as path:
        yield path
