"""The README's "Layout" map matches the tree.

The map is the first fenced block of the "## Layout" section. An entry is a line indented by 0
(a path from the repository root) or 2 spaces (a path under the ``src/securemsg/`` entry)
whose first word is the path; lines indented further continue the previous description.
Every package and top-level module under src/securemsg must be in the map, and every path the
map names must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "securemsg"
PACKAGE_ENTRY = "src/securemsg/"


def _layout_block(readme: str) -> list[str]:
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```[^\n]*\n(.*?)^```", section, re.M | re.S)
    assert match, "the Layout section has no fenced file map"
    return match.group(1).splitlines()


def layout_entries(readme: str) -> tuple[set[str], set[str]]:
    """(paths from the repository root, paths under src/securemsg/), as the map names them."""
    top: set[str] = set()
    package: set[str] = set()
    in_package = False
    for line in _layout_block(readme):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        word = line.split()[0]
        if indent == 0:
            in_package = word == PACKAGE_ENTRY
            top.add(word)
        elif indent == 2:
            assert in_package, f"an indented entry outside {PACKAGE_ENTRY}: {line!r}"
            package.add(word)
    return top, package


def tree_entries() -> set[str]:
    """Every package (``name/``, nested ones as ``a/b/``) and top-level module under SRC."""
    found = {p.name for p in SRC.glob("*.py")}
    for init in SRC.rglob("__init__.py"):
        if init.parent != SRC:
            found.add(init.parent.relative_to(SRC).as_posix() + "/")
    return found


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_every_package_and_top_level_module_is_in_the_map() -> None:
    _, package = layout_entries(_readme())
    missing = sorted(tree_entries() - package)
    assert missing == [], f"add these to the README's Layout map: {missing}"


def test_every_path_in_the_map_exists() -> None:
    top, package = layout_entries(_readme())
    assert PACKAGE_ENTRY in top
    absent = [p for p in sorted(top) if not (ROOT / p).exists()]
    absent += [PACKAGE_ENTRY + p for p in sorted(package) if not (SRC / p).exists()]
    assert absent == [], f"the README's Layout map names paths that do not exist: {absent}"


def test_directories_are_written_with_a_slash() -> None:
    top, package = layout_entries(_readme())
    wrong = [p for p in top if (ROOT / p).is_dir() != p.endswith("/")]
    wrong += [p for p in package if (SRC / p).is_dir() != p.endswith("/")]
    assert wrong == []


def test_the_check_sees_a_missing_and_a_made_up_entry() -> None:
    readme = _readme()
    without = readme.replace("\n  records/ ", "\n  records_gone/ ", 1)
    _, package = layout_entries(without)
    assert "records/" in tree_entries() - package
    assert not (SRC / "records_gone/").exists()
