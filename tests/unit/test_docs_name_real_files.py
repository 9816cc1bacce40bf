"""The docs describe only what is in the repository.

Every ``src/...``, ``tests/...`` and ``docs/...`` path that README.md or a docs/*.md file cites
exists (a ``*`` in a path must match something), and every ``securemsg.x.y`` name they cite is
a module, or a name a module defines.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A repository path: not the tail of a longer path or word (``Mock-Signal-Server/src/x.ts``).
PATH = re.compile(r"(?<![\w./-])((?:src|tests|docs)/[\w.*/-]*)")
MODULE = re.compile(r"(?<![\w./-])(securemsg(?:\.\w+)+)")


def cited_paths(text: str) -> set[str]:
    """The repository paths in ``text``, without trailing punctuation."""
    return {m.group(1).rstrip(".,;:") for m in PATH.finditer(text)}


def cited_modules(text: str) -> set[str]:
    """The dotted ``securemsg.`` names in ``text``."""
    return {m.group(1).rstrip(".") for m in MODULE.finditer(text)}


def path_exists(path: str) -> bool:
    if "*" in path:
        return any(ROOT.glob(path.rstrip("/")))
    return (ROOT / path).exists()


def name_exists(name: str) -> bool:
    """A module, or a module followed by attributes it defines (``securemsg.SecureMsgError``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = SRC.joinpath(*parts[:i])
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            obj: object = importlib.import_module(".".join(parts[:i]))
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cited_paths_exist(doc: Path) -> None:
    missing = sorted(p for p in cited_paths(doc.read_text()) if not path_exists(p))
    assert missing == [], f"{doc.name} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cited_module_names_exist(doc: Path) -> None:
    missing = sorted(n for n in cited_modules(doc.read_text()) if not name_exists(n))
    assert missing == [], f"{doc.name} cites names that do not exist: {missing}"


def test_the_checks_catch_what_is_not_there() -> None:
    text = "see `src/securemsg/wire/keys.py`, securemsg.wire.keys and securemsg.NoSuchName."
    assert cited_paths(text) == {"src/securemsg/wire/keys.py"}
    assert not path_exists("src/securemsg/wire/keys.py")
    assert cited_modules(text) == {"securemsg.wire.keys", "securemsg.NoSuchName"}
    assert not name_exists("securemsg.wire.keys") and not name_exists("securemsg.NoSuchName")
    assert name_exists("securemsg.records.key_storage") and name_exists("securemsg.SecureMsgError")
    assert cited_paths("upstream's `Mock-Signal-Server/src/crypto.ts`") == set()
