"""The package metadata tells the truth: proven lower bounds, pinned tools, a licence."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _minimums() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints" / "minimum.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower()] = Version(spec.version)
    return pins


def test_minimum_constraints_pin_every_declared_lower_bound() -> None:
    """./dev test installs these and runs the unit tests, so the bounds are proven."""
    declared: dict[str, Version] = {}
    for text in PROJECT["dependencies"]:
        req = Requirement(text)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{text}: every runtime dependency needs one lower bound"
        declared[req.name.lower()] = Version(lower[0])
    assert _minimums() == declared


def test_test_and_dev_tools_are_pinned_exactly() -> None:
    for extra in ("test", "dev"):
        for text in PROJECT["optional-dependencies"][extra]:
            req = Requirement(text)
            if req.name == "securemsg":  # dev includes the test extra
                continue
            assert [s.operator for s in req.specifier] == ["=="], f"[{extra}] {text}"


def test_licence_file_and_metadata_agree() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Copyright 2026 The securemsg authors" in text
    assert "Apache License" in text and "Version 2.0, January 2004" in text
