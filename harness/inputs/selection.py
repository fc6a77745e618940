"""One selection vocabulary for the suite's options and the CLI: names, their errors, the pages.

``--target/--mode/--page/--stage/--counter`` (pytest) and ``--target/--modes/--counters`` (the
``harness`` CLI) accept repeated or comma-separated names; an unknown name is an error that says
which option, suggests close names and lists what exists. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from harness.inputs.pages import Page

__all__ = ["COUNTERS", "MEASURES", "PAGE_SETS", "Selection", "SelectionError", "split_names", "unknown_name",
           "target_stages", "target_modes", "suite_pages", "validate_selection", "selection_from_config"]

#: The FLOP counters the suite measures (their patched variants).
COUNTERS: tuple[str, ...] = ("torch", "fvcore", "thop")
#: Everything a count fact can be measured by: the FLOP counters and the byte counter.
MEASURES: tuple[str, ...] = COUNTERS + ("bytes",)
#: ``--page-set`` choices; "all" is grid + corpus (the default set is a subset of grid).
PAGE_SETS: tuple[str, ...] = ("all", "grid", "corpus", "default")


class SelectionError(ValueError):
    """A selection option names something that does not exist (the message says what does)."""


def split_names(values: Iterable[str] | str | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (order kept, duplicates dropped, blanks ignored)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return list(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))


def unknown_name(kind: str, name: str, known: Iterable[str], option: str) -> str:
    """``--mode 'gundm': unknown mode. Did you mean 'gundam'? Available: ...``."""
    known = list(dict.fromkeys(known))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{option} {name!r}: unknown {kind}.{hint} Available: {', '.join(known)}"


def target_stages() -> dict[str, tuple[str, ...]]:
    from harness.inputs.targets import TARGET_STAGES

    return dict(TARGET_STAGES)


def target_modes() -> dict[str, tuple[str, ...]]:
    from harness.inputs.workload import MODES

    return {t: tuple(m) for t, m in MODES.items()}


def suite_pages(page_set: str = "all") -> dict[str, "Page"]:
    """The built-in pages of a set, by id, in manifest order (``all``: grid then corpus)."""
    from harness.inputs.pages import builtin_pages

    sets = ("grid", "corpus") if page_set == "all" else (page_set,)
    pages: dict[str, Page] = {}
    for name in sets:
        for page in builtin_pages(name):
            pages.setdefault(page.page_id, page)
    return pages


@dataclass(frozen=True)
class Selection:
    """What the options select; None means everything."""

    targets: tuple[str, ...] | None = None
    modes: tuple[str, ...] | None = None
    pages: tuple[str, ...] | None = None
    stages: tuple[str, ...] | None = None
    counters: tuple[str, ...] | None = None
    page_set: str = "all"

    def wants(self, kind: str, name: str) -> bool:
        chosen = getattr(self, kind)
        return chosen is None or name in chosen

    @property
    def narrowed(self) -> bool:
        return any(getattr(self, k) for k in ("targets", "modes", "pages", "stages", "counters")) \
            or self.page_set != "all"


def _names(values: Sequence[str] | None) -> tuple[str, ...] | None:
    names = split_names(values)
    return tuple(names) or None


def selection_from_config(config: Any) -> Selection:
    """The :class:`Selection` of pytest's ``--target/--mode/--page/--stage/--counter/--page-set``."""
    return Selection(
        targets=_names(config.getoption("harness_target", None)),
        modes=_names(config.getoption("harness_mode", None)),
        pages=_names(config.getoption("harness_page", None)),
        stages=_names(config.getoption("harness_stage", None)),
        counters=_names(config.getoption("harness_counter", None)),
        page_set=config.getoption("harness_page_set", None) or "all")


def validate_selection(selection: Selection) -> list[str]:
    """Error messages for names the options give that do not exist (empty: all known)."""
    errors = []
    stages, modes = target_stages(), target_modes()
    for name in selection.targets or ():
        if name not in stages:
            errors.append(unknown_name("target", name, stages, "--target"))
    targets = [t for t in (selection.targets or stages) if t in stages]
    for name in selection.modes or ():
        if not any(name in modes.get(t, ()) for t in targets):
            errors.append(unknown_name("mode", name, (m for t in targets for m in modes.get(t, ())), "--mode"))
    for name in selection.stages or ():
        if not any(name in stages[t] for t in targets):
            errors.append(unknown_name("stage", name, (s for t in targets for s in stages[t]), "--stage"))
    for name in selection.counters or ():
        if name not in MEASURES:
            errors.append(unknown_name("counter", name, MEASURES, "--counter"))
    if selection.pages:
        pages = suite_pages(selection.page_set)
        for name in selection.pages:
            if name not in pages:
                errors.append(unknown_name(f"page (of page set {selection.page_set!r})", name, pages, "--page"))
    return errors
