"""The measuring engine shared by the pytest suite and ``harness report``: builds, layouts, analytic
costs, and counts memoised per shape key (:mod:`harness.inputs.shapes`).

Every page that shares a shape key is a lookup. A failed measurement is memoised too: every page of
that key fails with the same message at once. Nothing here imports torch at import time.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.golden.records import built_environment, environment_versions
from harness.inputs.shapes import shape_key

if TYPE_CHECKING:  # pragma: no cover
    from harness.inputs.pages import Page
    from harness.inputs.workload import ViewLayout

__all__ = ["VARIANT", "DEVICE", "BYTES", "BYTES_DTYPE", "AS_BUILT", "Case", "Engine", "Measurement"]

#: The byte counter's name among the counters of a count fact: op-level memory traffic, measured
#: by :func:`harness.measure.bytes.count_bytes` on a bf16 build on meta (the dtype production runs).
BYTES = "bytes"
BYTES_DTYPE = "bfloat16"

#: The counter variant the suite asserts and records in goldens (formulas/handles added where the
#: stock tool is blind, so the remaining unknown ops are findings).
VARIANT = "patched"
#: Where the engine builds the models (stages a target must run on real tensors say so themselves).
DEVICE = "meta"


#: :meth:`Engine.analytic`'s default attention implementation: the built model's.
AS_BUILT: Any = type("AsBuilt", (), {"__repr__": lambda self: "AS_BUILT"})()


@dataclass(frozen=True)
class Case:
    """One measured cell: a stage of one page in one mode, by one counter."""

    target: str
    mode: str
    page: str
    stage: str
    counter: str

    @property
    def id(self) -> str:
        return f"{self.target}-{self.mode}-{self.page}-{self.stage}-{self.counter}"


# ------------------------------------------------------------------------------------ cache
@dataclass
class Measurement:
    """A memoised count (or the error it raised) and what it cost."""

    count: Any = None
    error: BaseException | None = None
    seconds: float = 0.0
    page: str = ""
    failure: str = ""


@dataclass
class Engine:
    """Built models, layouts, analytic costs, and counts memoised per shape key."""

    model_path: Any = None
    trust_remote_code: bool = False
    device: str = DEVICE
    text_tokens: int | None = None
    targets: dict[str, Any] = field(default_factory=dict)
    built: dict[str, Any] = field(default_factory=dict)
    build_errors: dict[str, BaseException] = field(default_factory=dict)
    layouts: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    inputs: dict[tuple, Any] = field(default_factory=dict)
    analytic_costs: dict[tuple, Any] = field(default_factory=dict)
    measurements: dict[tuple, Measurement] = field(default_factory=dict)
    lookups: int = 0
    build_seconds: dict[str, float] = field(default_factory=dict)
    #: Per-call work kept on meta for the session (a view's upstream outputs, fvcore's trace, torch's
    #: and thop's counts of a call that several shape keys share), see :mod:`harness.run.callmemo`;
    #: created on the first measurement.
    call_memo: Any = None
    _pages: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.text_tokens is None:
            from harness.inputs.workload import DEFAULT_PROMPT_TOKENS

            self.text_tokens = DEFAULT_PROMPT_TOKENS

    # pages and layouts --------------------------------------------------------------------
    def page(self, page_id: str) -> "Page":
        if self._pages is None:
            self._pages = self._builtin_pages()
        return self._pages[page_id]

    @staticmethod
    def _builtin_pages() -> dict[str, "Page"]:
        from harness.inputs.pages import builtin_pages

        from harness.inputs.selection import suite_pages

        pages = suite_pages("all")
        for name in ("default",):
            for page in builtin_pages(name):
                pages.setdefault(page.page_id, page)
        return pages

    def register_pages(self, pages: Iterable["Page"], *, builtin: bool = True) -> None:
        """Make ``pages`` known by id (e.g. a report's own files), next to the built-in sets.

        ``builtin=False`` on a cache that knows no pages yet: these pages are all it knows (the
        built-in sets are not loaded). A page whose id the cache knows at another size is a
        ValueError (its layouts and counts would be the other page's); at the same size the known
        page stays.
        """
        if self._pages is None:
            self._pages = self._builtin_pages() if builtin else {}
        for page in pages:
            known = self._pages.get(page.page_id)
            if known is None:
                self._pages[page.page_id] = page
            elif (known.width, known.height) != (page.width, page.height):
                raise ValueError(f"page {page.page_id!r}: {page.width}x{page.height} here, but the shared "
                                 f"cache knows a page of that id at {known.width}x{known.height}; rename it")

    def layout(self, target: str, mode: str, page_id: str) -> "ViewLayout":
        key = (target, mode, page_id)
        if key not in self.layouts:
            from harness.inputs.workload import compute_view_layout, get_workload

            page = self.page(page_id)
            self.layouts[key] = compute_view_layout(get_workload(target, mode), page.width, page.height)
        return self.layouts[key]

    def shape_key(self, case: Case) -> tuple:
        return shape_key(case.stage, self.layout(case.target, case.mode, case.page), text_tokens=self.text_tokens)

    # models ---------------------------------------------------------------------------------
    def target(self, name: str) -> Any:
        if name not in self.targets:
            from harness.targets import get_target

            self.targets[name] = get_target(name, model_path=self.model_path,
                                            trust_remote_code=self.trust_remote_code)
        return self.targets[name]

    def built_if_made(self, name: str) -> Any:
        """The target's float32 build if it was made (None: not built, or its build failed)."""
        return self.built.get(name)

    def built_model(self, name: str, dtype: str = "float32") -> Any:
        """The target built on :data:`DEVICE` in ``dtype`` (once per session; a failure is memoised).
        The FLOP counters run the float32 build; the byte counter the :data:`BYTES_DTYPE` one."""
        key = name if dtype == "float32" else f"{name}:{dtype}"
        if key in self.build_errors:
            raise self.build_errors[key]
        if key not in self.built:
            import torch

            start = time.perf_counter()
            try:
                self.built[key] = self.target(name).build(self.device, getattr(torch, dtype))
            except BaseException as exc:
                self.build_errors[key] = exc
                raise
            finally:
                self.build_seconds[key] = time.perf_counter() - start
        return self.built[key]

    # analytic ---------------------------------------------------------------------------------
    def analytic(self, case: Case, *, attn_implementation: Any = AS_BUILT,
                 experts_implementation: str | None = None) -> Any:
        """The analytic Cost of the case's stage for an attention implementation and an experts byte
        model (memoised per shape key). By default the built model's attention and experts byte model
        (built if need be; :func:`harness.analytic.experts_model`); ``attn_implementation=None``: the
        analytic model's own default (a target not built here), experts then the loop unless named.
        The FLOPs never depend on the experts model, the op-level bytes do."""
        if attn_implementation is AS_BUILT:
            built = self.built_model(case.target)
            attn_implementation = built.attn_implementation
            if experts_implementation is None:
                from harness.analytic import experts_model

                experts_implementation = experts_model(case.target, built.experts_implementation)
        experts = experts_implementation or "loop"
        layout = self.layout(case.target, case.mode, case.page)
        key = (case.target, case.stage, self.shape_key(case), attn_implementation, experts)
        if key not in self.analytic_costs:
            from harness.analytic import stage_costs

            costs = stage_costs(case.target, layout, text_tokens=self.text_tokens,
                                attn_implementation=attn_implementation, experts_implementation=experts)
            for stage, cost in costs.items():
                probe = Case(case.target, case.mode, case.page, stage, case.counter)
                self.analytic_costs[(case.target, stage, self.shape_key(probe), attn_implementation, experts)] = cost
        return self.analytic_costs[key]

    # measured -----------------------------------------------------------------------------------
    def measurement_key(self, case: Case, variant: str = VARIANT) -> tuple:
        """The memo key of ``case`` under ``variant``: ``(target, stage, counter, shape key)`` for the
        suite's patched variant; ``<counter>:<variant>`` in the counter slot otherwise."""
        counter = case.counter if variant == VARIANT else f"{case.counter}:{variant}"
        return (case.target, case.stage, counter, self.shape_key(case))

    def measure(self, case: Case, variant: str = VARIANT, *, also: Iterable[str] = ()) -> Any:
        """The case's StageCount under ``variant`` ("patched": the suite's; "stock": the tool as
        shipped, whose blind spots ``harness report`` sizes), measured once per (target, stage,
        counter, variant, shape key).

        ``also``: variants its caller (or a reader of the same memo) wants too. Where the counter
        reads every variant from one run (:attr:`Counter.shares_variant_runs`: fvcore's trace,
        thop's forward) those not memoised yet are measured by the same run; a counter that runs
        once per variant measures each when it is asked for."""
        key = self.measurement_key(case, variant)
        found = self.measurements.get(key)
        if found is None:
            self._store(case, self._measure(case, self._variants(case, variant, also)))
            found = self.measurements[key]
        else:
            self.lookups += 1
        if found.error is not None:
            raise found.error
        return found.count

    def measurement(self, case: Case, variant: str = VARIANT) -> Measurement | None:
        """The memoised :class:`Measurement` of the case's shape key (None: not measured yet)."""
        return self.measurements.get(self.measurement_key(case, variant))

    def adopt(self, case: Case, variant: str, measurement: Measurement) -> None:
        """Memoise a measurement this engine's ``measure`` made in another process (``harness
        report``'s forked workers) for the case's shape key; one already memoised here is an error
        (it would be measured twice)."""
        key = self.measurement_key(case, variant)
        if key in self.measurements:
            raise ValueError(f"adopt {case.id} ({variant}): the shape key {key} is measured already")
        self.measurements[key] = measurement

    def first_page(self, case: Case, variant: str = VARIANT) -> str:
        """The page on which the case's shape key was measured."""
        found = self.measurement(case, variant)
        return found.page if found else case.page

    def failure_text(self, case: Case, variant: str = VARIANT) -> str:
        """The formatted error of a failed measurement (the traceback's tail)."""
        found = self.measurement(case, variant)
        return found.failure if found else ""

    def _inputs(self, case: Case, dtype: str = "float32") -> Any:
        # the per-page memo layer: one StageInputs per (target, mode, page[, dtype]); the target
        # keeps upstream stage outputs on it (harness.run.callmemo.memoised_upstream), so sam ->
        # encoder -> projector -> prefill share work
        key = (case.target, case.mode, case.page) + (() if dtype == "float32" else (dtype,))
        if key not in self.inputs:
            import torch

            page = self.page(case.page)
            self.inputs[key] = self.target(case.target).prepare(
                (page.width, page.height), case.mode, self.text_tokens, device=self.device,
                dtype=getattr(torch, dtype))
        return self.inputs[key]

    def session_memo(self) -> Any:
        """The session's :class:`harness.run.callmemo.CallMemo` (made on first use): measurements run
        inside it, and so may other work on this engine's models (``with call_memo(...)``)."""
        if self.call_memo is None:
            from harness.run.callmemo import CallMemo

            self.call_memo = CallMemo()
        return self.call_memo

    @staticmethod
    def _dtype(case: Case) -> str:
        """The build a case's counter runs: :data:`BYTES_DTYPE` for the byte counter, float32 for the
        FLOP counters."""
        return BYTES_DTYPE if case.counter == BYTES else "float32"

    def _variants(self, case: Case, variant: str, also: Iterable[str]) -> tuple[str, ...]:
        """What one run of the case measures: ``variant``, and those of ``also`` that the same run
        gives (a counter with shared variant runs) and that are not memoised yet."""
        if case.counter == BYTES:
            return (variant,)
        from harness.measure import get_counter

        if not get_counter(case.counter).shares_variant_runs:
            return (variant,)
        return tuple(dict.fromkeys((variant, *(v for v in also if self.measurement(case, v) is None))))

    def _store(self, case: Case, found: dict[str, Measurement]) -> None:
        for variant, measurement in found.items():
            self.measurements[self.measurement_key(case, variant)] = measurement

    def _measure(self, case: Case, variants: tuple[str, ...]) -> dict[str, Measurement]:
        """One run of the case's stage: ``{variant: Measurement}``, failures included (memoised: every
        page of this shape key fails the same way). The memo layers, decided here once per run:
        the engine's table (per shape key, :meth:`measure`), the page's upstream outputs (on its
        StageInputs, :meth:`_inputs`) and the session's :class:`~harness.run.callmemo.CallMemo`
        (per call on meta: a view's upstream outputs, fvcore's trace, torch's and thop's counts of
        a call), opened around the run; the run itself goes through the one boundary,
        :func:`harness.run.modelrun.run_measurement`."""
        from harness.run.callmemo import call_memo
        from harness.run.modelrun import run_measurement

        # the build (the vendor LM: GBs of weights kept all session) is made here, in the calling
        # thread, not on the measuring thread where the run's short-lived tensors come and go; a
        # failed build is memoised and recorded as this measurement's error inside
        model = None
        with contextlib.suppress(Exception):
            model = self.built_model(case.target, self._dtype(case)).model
        start = time.perf_counter()
        try:
            with call_memo(self.session_memo()):
                results, seconds = run_measurement(model, self._count, case, variants)
        except Exception as exc:
            text = "".join(traceback.format_exception(exc, limit=-12))
            return {variants[0]: Measurement(None, exc, time.perf_counter() - start, case.page, text)}
        seconds /= len(variants)
        found = {}
        for v, result in results.items():
            error = None
            if case.counter != BYTES and len(variants) > 1 and v == VARIANT:
                from harness.measure import uncounted_error

                error = uncounted_error(result)          # patched is strict
            found[v] = Measurement(None if error else result, error, seconds, case.page,
                                   "".join(traceback.format_exception(error, limit=-12)) if error else "")
        return found

    def _count(self, case: Case, variants: tuple[str, ...]) -> tuple[dict[str, Any], float]:
        """The counter's results of one run of the case's stage (in the boundary): ``{variant:
        count}`` and the seconds it took; the first variant's strictness raises as ``count`` does."""
        from harness.measure import count, count_variants

        start = time.perf_counter()
        dtype = self._dtype(case)
        built = self.built_model(case.target, dtype)
        calls = self.target(case.target).stage_calls(built, self._inputs(case, dtype), case.stage)
        if case.counter == BYTES:
            from harness.measure.bytes import count_bytes

            results = {variants[0]: count_bytes(calls, target=case.target, stage=case.stage)}
        elif len(variants) == 1:
            # stock: blind spots are the finding, reported rather than raised (count's default)
            results = {variants[0]: count(case.counter, calls, variant=variants[0], target=case.target,
                                          stage=case.stage)}
        else:
            results = count_variants(case.counter, calls, variants=variants, target=case.target,
                                     stage=case.stage, strict=False)
        return results, time.perf_counter() - start

    def config_path(self, target: str) -> str | None:
        """The model directory whose configuration sizes ``target``'s analytic model: the one the
        engine builds from, for a target that reads one (dsocr); else None (built-in sizes)."""
        from harness.inputs.targets import target_facts

        return str(self.model_path) if self.model_path and target_facts(target).needs_model_path else None

    def byte_cost(self, case: Case) -> Any:
        """The analytic op-level Cost of the case's stage on the byte counter's build (:data:`BYTES_DTYPE`):
        its dtype bytes, attention and experts byte model (memoised per shape key)."""
        from harness.analytic import experts_model

        built = self.built_model(case.target, BYTES_DTYPE)
        experts = experts_model(case.target, built.experts_implementation)
        key = (case.target, case.stage, self.shape_key(case), BYTES, built.attn_implementation, experts)
        if key not in self.analytic_costs:
            from harness.analytic import stage_costs

            costs = stage_costs(case.target, self.layout(case.target, case.mode, case.page),
                                text_tokens=self.text_tokens, dtype_bytes=built.dtype.itemsize,
                                attn_implementation=built.attn_implementation, experts_implementation=experts,
                                config=self.config_path(case.target))
            for stage, cost in costs.items():
                probe = Case(case.target, case.mode, case.page, stage, case.counter)
                self.analytic_costs[(case.target, stage, self.shape_key(probe), BYTES,
                                     built.attn_implementation, experts)] = cost
        return self.analytic_costs[key]

    def environment(self, case: Case) -> dict[str, Any]:
        """What made the counts: versions, device, dtype, implementations, counter variant."""
        return {**environment_versions(), **built_environment(self.built_model(case.target)),
                "counter_variant": VARIANT}

    # statistics -------------------------------------------------------------------------------
    def stats_lines(self) -> list[str]:
        """Model runs, lookups and time, for the terminal summary."""
        if not self.measurements and not self.built:
            return []
        runs = len(self.measurements)
        seconds = sum(m.seconds for m in self.measurements.values())
        failed = sum(1 for m in self.measurements.values() if m.error is not None)
        reused = ", ".join(f"{n} {kind}" for kind, n in sorted((self.call_memo.hits if self.call_memo else {}).items()))
        lines = [f"{runs} measured count(s) ({failed} failed) in {seconds:.1f} s, "
                 f"{self.lookups} memoised lookup(s), call memo: {reused or 'no reuse'}; builds: "
                 + (", ".join(f"{t} {s:.1f} s" for t, s in sorted(self.build_seconds.items())) or "none")]
        slow = sorted(self.measurements.items(), key=lambda kv: -kv[1].seconds)[:5]
        for (target, stage, counter, key), m in slow:
            lines.append(f"  {m.seconds:7.2f} s  {target} {stage} {counter} {key}")
        return lines
