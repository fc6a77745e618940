"""docs/ARCHITECTURE.md's package layout lists every module of harness/, and only modules that exist;
each module says what it owns in a short docstring."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = re.compile(r"^\| `(harness/[^`]+\.py)` \| (.+) \|$", re.M)


def _layout() -> dict[str, str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    return dict(LAYOUT.findall(text))


def test_the_layout_lists_every_module_once_and_nothing_else() -> None:
    listed = _layout()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("*.py")}
    assert sorted(modules - set(listed)) == [], "modules missing from docs/ARCHITECTURE.md's layout"
    assert sorted(set(listed) - modules) == [], "docs/ARCHITECTURE.md lists modules that do not exist"


def test_module_docstrings_say_what_they_own_in_a_few_lines() -> None:
    """A summary plus at most a few lines (rules and figures belong in docs/)."""
    long = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc:
            long[path.relative_to(ROOT).as_posix()] = 0
        elif doc.count("\n") + 1 > 12:
            long[path.relative_to(ROOT).as_posix()] = doc.count("\n") + 1
    assert long == {}, "module docstrings missing (0) or longer than 12 lines"
