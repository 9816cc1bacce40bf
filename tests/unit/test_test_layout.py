"""Test and helper modules need unique basenames.

The test folders have no ``__init__.py`` (pytest's default rootdir import mode), so two files
with the same name in different folders break collection with "import file mismatch".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_python_module_basenames_under_tests_and_benchmarks_are_unique() -> None:
    names = Counter(
        p.name
        for folder in ("tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
        if p.name not in ("conftest.py", "__init__.py")
    )
    assert [name for name, count in names.items() if count > 1] == []
