"""The suite's plan: the facts it states (one test and one golden per fact) and the units of work
that measure them.

* Facts: **layout** ``<target>-<mode>-<page>`` and **count** ``<target>-<stage>-<counter>-<shape key>``
  (measured on the key's first page), over the definition: every built-in page in every mode of
  every target, every stage and counter. :func:`expected` comes from the definition alone;
  selections narrow what is collected. A count golden holds the counts and the environment; which
  pages reach a key is the layout goldens' fact (page -> shape keys), stated once.
* Units of work: a page chain ``<target>-<mode>-<page>`` whose upstream-fed stages share that page's
  upstream outputs (decode apart). The xdist scheduler (:func:`suite_scopes`, root ``conftest.py``)
  and ``harness report``'s worker pool (:func:`work_units`) both group by them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.run.engine import BYTES, DEVICE, Case

from harness.inputs.shapes import key_name, shape_key, shape_record
from harness.golden.session import Expected
from harness.inputs.selection import COUNTERS, Selection, suite_pages, target_modes, target_stages

#: The pages whose shape keys also get a byte fact (``bytes`` counter): the letter page in every
#: mode, where the analytic bytes model is proven against the byte counter key by key.
BYTES_PAGES: tuple[str, ...] = ("letter",)

__all__ = ["LayoutCase", "CountCase", "layout_cases", "count_cases", "shape_index", "expected",
           "not_measurable", "SuiteDefinitionError", "UPSTREAM_STAGES", "unit_of", "work_units",
           "measuring_unit", "suite_scopes"]


class SuiteDefinitionError(RuntimeError):
    """The definition is inconsistent (e.g. two shape keys with one name)."""


@dataclass(frozen=True)
class LayoutCase:
    target: str
    mode: str
    page: str

    @property
    def id(self) -> str:
        return f"{self.target}-{self.mode}-{self.page}"


@dataclass(frozen=True)
class CountCase:
    """One counter's count of one stage at one shape key; measured on its first page."""

    target: str
    stage: str
    counter: str
    key: str                         # the shape key's name, e.g. g1024+6x768
    shape_key: tuple
    first: tuple[str, str]           # (mode, page) the key is measured on
    pages: tuple[str, ...]           # every "mode/page" of the definition reaching it

    @property
    def id(self) -> str:
        return f"{self.target}-{self.stage}-{self.counter}-{self.key}"

    @property
    def case(self) -> Case:
        """The engine's cell that measures this count."""
        return Case(self.target, self.first[0], self.first[1], self.stage, self.counter)

    @property
    def shape(self) -> dict[str, Any]:
        return shape_record(self.shape_key)


@functools.lru_cache(maxsize=None)
def _text_tokens() -> int:
    from harness.inputs.workload import DEFAULT_PROMPT_TOKENS

    return DEFAULT_PROMPT_TOKENS


@functools.lru_cache(maxsize=None)
def _layouts(target: str, mode: str) -> tuple[tuple[str, Any], ...]:
    """``(page id, layout)`` of every page of the definition, in manifest order."""
    from harness.inputs.workload import compute_view_layout, get_workload

    workload = get_workload(target, mode)
    return tuple((pid, compute_view_layout(workload, page.width, page.height))
                 for pid, page in suite_pages("all").items())


@functools.lru_cache(maxsize=None)
def _layout_map(target: str, mode: str) -> dict[str, Any]:
    return dict(_layouts(target, mode))


def page_layout(target: str, mode: str, page: str) -> Any:
    return _layout_map(target, mode)[page]


@functools.lru_cache(maxsize=None)
def shape_index(target: str) -> dict[tuple[str, str], tuple[tuple, tuple[tuple[str, str], ...]]]:
    """``(stage, key name) -> (shape key, ((mode, page), ...))`` over the whole definition."""
    index: dict[tuple[str, str], tuple[tuple, list[tuple[str, str]]]] = {}
    for mode in target_modes()[target]:
        for page, layout in _layouts(target, mode):
            for stage in target_stages()[target]:
                key = shape_key(stage, layout, text_tokens=_text_tokens())
                name = key_name(key)
                known = index.setdefault((stage, name), (key, []))
                if known[0] != key:
                    raise SuiteDefinitionError(f"{target} {stage}: shape keys {known[0]} and {key} share the "
                                               f"name {name!r}; make harness.inputs.shapes.key_name tell them apart")
                known[1].append((mode, page))
    return {k: (key, tuple(pages)) for k, (key, pages) in index.items()}


def layout_record(target: str, mode: str, page: str) -> dict[str, Any]:
    """The layout fact of one page: the workload's layout plus the shape key of each stage."""
    from harness.golden.records import layout_record as record

    layout = page_layout(target, mode, page)
    out = record(layout, text_tokens=_text_tokens())
    out["shape_keys"] = {stage: key_name(shape_key(stage, layout, text_tokens=_text_tokens()))
                         for stage in target_stages()[target]}
    return out


def layout_cases(selection: Selection = Selection()) -> list[LayoutCase]:
    pages = suite_pages(selection.page_set)
    return [LayoutCase(t, m, p)
            for t, modes in target_modes().items() if selection.wants("targets", t)
            for m in modes if selection.wants("modes", m)
            for p in pages if selection.wants("pages", p)]


def not_measurable(target: str, stage: str, counter: str, device: str = DEVICE) -> str | None:
    """Why ``counter`` cannot measure ``stage`` of ``target`` on ``device`` (the target's own rule)."""
    from harness.targets import target_class

    return target_class(target).not_measurable(stage, counter, device)


def _measures(target: str, stage: str, pages: Iterable[tuple[str, str]], counters: Iterable[str]) -> tuple[str, ...]:
    """The counters a (target, stage, key) is measured by: the FLOP counters, and the byte counter
    where a :data:`BYTES_PAGES` page reaches the key."""
    out = tuple(counters)
    if BYTES in out and not any(p in BYTES_PAGES for _, p in pages):
        out = tuple(c for c in out if c != BYTES)
    return out


def count_cases(selection: Selection = Selection(), *, counters: Iterable[str] = COUNTERS + (BYTES,),
                device: str = DEVICE) -> tuple[list[CountCase], dict[str, int]]:
    """The selected count facts, and ``{reason: how many}`` of those that cannot be measured on
    ``device`` (left out, not collected)."""
    chosen_pages = set(suite_pages(selection.page_set)) if (selection.page_set != "all" or selection.pages) else None
    if chosen_pages is not None and selection.pages:
        chosen_pages &= set(selection.pages)
    cases: list[CountCase] = []
    left_out: dict[str, int] = {}
    for target, stages in target_stages().items():
        if not selection.wants("targets", target):
            continue
        for (stage, name), (key, pages) in shape_index(target).items():
            if not selection.wants("stages", stage):
                continue
            reach = [(m, p) for m, p in pages if selection.wants("modes", m)
                     and (chosen_pages is None or p in chosen_pages)]
            if not reach:
                continue
            for counter in _measures(target, stage, pages, counters):
                if not selection.wants("counters", counter):
                    continue
                reason = not_measurable(target, stage, counter, device)
                if reason:
                    left_out[reason] = left_out.get(reason, 0) + 1
                    continue
                cases.append(CountCase(target, stage, counter, name, key, pages[0],
                                       tuple(f"{m}/{p}" for m, p in pages)))
    order = {s: i for t in target_stages().values() for i, s in enumerate(t)}
    cases.sort(key=lambda c: (c.target, order[c.stage], c.key, c.counter))
    return cases, left_out


def expected(counters: Iterable[str] = COUNTERS + (BYTES,)) -> Expected:
    """Every golden the definition expects (independent of any selection or environment)."""
    exp = Expected()
    all_pages = tuple(suite_pages("all"))
    for target, modes in target_modes().items():
        for mode in modes:
            exp.layouts[(target, mode)] = all_pages
        for (stage, name), (key, pages) in shape_index(target).items():
            measurable = tuple(c for c in _measures(target, stage, pages, counters)
                               if not not_measurable(target, stage, c))
            exp.counts[(target, stage, name)] = (shape_record(key), measurable)
    return exp


# ------------------------------------------------------------------------------------ units of work
#: Stages whose inputs are the outputs of earlier stages of the same page (the target keeps those
#: outputs on the page's inputs): measured in one process, they compute them once.
UPSTREAM_STAGES = frozenset({"sam", "clip", "encoder", "projector", "prefill"})


def unit_of(target: str, mode: str, page: str, stage: str) -> str:
    """The unit of work that measures ``stage`` of ``page`` in ``mode``: the page chain
    ``<target>-<mode>-<page>`` for a stage fed by upstream outputs, a unit of its own
    (``<chain>-<stage>``) for one that is not (decode)."""
    chain = f"{target}-{mode}-{page}"
    return chain if stage in UPSTREAM_STAGES else f"{chain}-{stage}"


def work_units(tasks: Iterable[Any], where: Callable[[Any], tuple[str, str, str, str]]) -> list[list[Any]]:
    """``tasks`` grouped by :func:`unit_of` their ``where(task) = (target, mode, page, stage)``, in
    order within a unit; largest units first (ties: first seen first), so the short ones fill the
    gaps at the end. Consumed by ``harness report``'s worker pool."""
    groups: dict[str, list[Any]] = {}
    for task in tasks:
        groups.setdefault(unit_of(*where(task)), []).append(task)
    return sorted(groups.values(), key=len, reverse=True)


def measuring_unit(target: str, mode: str, page: str, stage: str) -> str:
    """The unit in which the suite measures the shape key that ``stage`` of ``page`` reaches in
    ``mode``: that of the key's first page (where its count facts are measured)."""
    try:
        layout = page_layout(target, mode, page)
    except KeyError:
        raise SuiteDefinitionError(f"{target} {mode} {page!r}: not a page of the suite's definition "
                                   f"(the built-in pages: {', '.join(suite_pages('all'))})") from None
    name = key_name(shape_key(stage, layout, text_tokens=_text_tokens()))
    first = shape_index(target)[(stage, name)][1][0]
    return unit_of(target, *first, stage)


def fact_unit(case: CountCase) -> str:
    """The unit a count fact is measured in: its first page's."""
    return unit_of(case.target, *case.first, case.stage)


def suite_scopes(cases: Iterable[CountCase], readers: Mapping[str, tuple[str, ...]]
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """Where xdist runs what reads the engine's memo: ``({fact id: scope}, {reader: scope})``.

    ``readers`` are the tests that read the memoised counts of pages in a mode, ``(target, mode,
    *pages)`` (``@pytest.mark.measures``); each joins every unit that measures a stage of one of
    those pages, and units a reader joins become one scope (named after the first unit in sort
    order). So every shape key is measured in one process, and its readers run there."""
    parent: dict[str, str] = {}

    def root(unit: str) -> str:
        parent.setdefault(unit, unit)
        while parent[unit] != unit:
            parent[unit] = parent[parent[unit]]
            unit = parent[unit]
        return unit

    def join(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    facts = {case.id: fact_unit(case) for case in cases}
    read = {}
    for reader, (target, mode, *pages) in readers.items():
        units = sorted({measuring_unit(target, mode, page, s) for page in pages for s in target_stages()[target]})
        for unit in units[1:]:
            join(units[0], unit)
        read[reader] = units[0]
    return {k: root(u) for k, u in facts.items()}, {k: root(u) for k, u in read.items()}
