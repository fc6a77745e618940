"""Collecting the report's numbers through the verification suite's own engine.

Each record is one ``target x mode x page x stage x counter`` cell, measured by
:class:`harness.run.engine.Engine` (stock variants included) and verified by the suite's own
:func:`harness.verify.fact`; the byte facts are :class:`ByteFact`, one per stage and shape key.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.report.inputs import CounterSpec, ReportPlan
from harness.run.engine import VARIANT as SUITE_VARIANT
from harness.run.engine import BYTES, BYTES_DTYPE, Case, Engine, Measurement
from harness.golden.records import built_environment, layout_record


__all__ = ["Record", "KeyCount", "ByteFact", "GoldenCell", "GoldenChecker", "StageInfo", "Collected", "collect", "environment_versions", "golden_dir", "BANDS_FILE"]

#: ``golden/tolerances.toml`` next to the package (an editable install / checkout).
BANDS_FILE = "tolerances.toml"


def golden_dir() -> Path:
    """The repository's ``golden/`` directory (goldens and tolerance bands)."""
    return Path(__file__).resolve().parents[2] / "golden"


@dataclass
class StageInfo:
    """The analytic side of one ``target x mode x page x stage``."""

    target: str
    mode: str
    page: str
    stage: str
    cost: Any                       # harness.analytic.Cost
    params: int | None              # parameters of the stage's modules (None: model not built)
    shape_key: tuple
    attn_implementation: str
    #: the experts byte model of ``cost``'s op-level bytes: the build's (OCR-2 on meta: batched_mm),
    #: the loop when nothing was built (harness.analytic.experts_model)
    experts_model: str = "loop"


@dataclass(eq=False)
class ByteFact:
    """The byte fact of one stage at one shape key (every page x mode of that key references it):
    the byte counter's op-level bytes on the bf16 build beside the analytic op-level bytes of that
    build's experts model, and the suite's byte verdict (:func:`harness.verify.fact`)."""

    id: str                         # "b<N>": report.json's reference
    target: str
    stage: str
    shape_key: tuple
    first: str                      # "page/mode" of the first cell that used it in this report
    build: str = ""                 # the build the byte counter ran (dtype, device, attention, experts)
    verdict: Any = None             # harness.verify.BytesVerdict (None: not measured)
    error: str | None = None
    seconds: float = 0.0

    @property
    def total(self) -> Any:
        """The stage's ``total`` BytesRow (analytic, measured, difference, named, unexplained)."""
        return None if self.verdict is None else self.verdict.total

    @property
    def verified(self) -> bool | None:
        return None if self.verdict is None else self.verdict.verified


@dataclass(eq=False)
class KeyCount:
    """The report's view of one shape key's count (the engine's :class:`~harness.run.engine.Measurement`
    of that key, read once): a count under its memo key ``(target, stage, counter[:variant], shape key)``,
    verified once against the analytic cost of that shape key. Every page x mode whose stage has
    that shape key references this one object (in memory and in report.json), so the report's
    size follows the shape keys, not the pages."""

    id: str                         # "m<N>": report.json's reference
    key: tuple                      # Engine.measurement_key
    target: str
    stage: str
    spec: CounterSpec
    shape_key: tuple
    first: str                      # "page/mode" of the first cell that used it in this report
    fresh: bool                     # measured by this report (False: memoised earlier in the process)
    seconds: float = 0.0            # model time of the measurement
    count: Any = None               # harness.measure.StageCount (None: it raised with nothing counted)
    error: str | None = None
    explanation: Any = None         # harness.verify.DeltaExplanation
    band: Any = None                # harness.golden.Band ("verify")
    within_band: bool | None = None
    key_mismatches: list[str] = field(default_factory=list)   # torch: matmul keys != analytic
    unknown_blind_spots: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool | None:
        if self.count is None:
            return None
        return bool(self.within_band) and not self.key_mismatches and not self.unknown_blind_spots


_NO_LIST: list[str] = []


@dataclass(eq=False, slots=True)
class Record:
    """One ``target x mode x page x stage x counter`` cell of the report: a reference to its
    :class:`KeyCount` (shared by every cell of the same shape key) plus what is the page's own
    (the golden comparison, which page measured it first)."""

    target: str
    mode: str
    page: str
    stage: str
    spec: CounterSpec
    shape_key: tuple
    status: str                     # "measured" | "not measured"
    measured: KeyCount | None = None
    reused_from: str | None = None  # page/mode whose identical shape key was measured first
    reason: str | None = None       # why not measured, when no measurement was attempted
    golden: str = "n/a"             # "match" | "differs" | "no golden" | "n/a" (see GoldenChecker)
    golden_differences: list[str] = field(default_factory=list)

    @property
    def counter(self) -> str:
        return self.spec.counter

    @property
    def variant(self) -> str:
        return self.spec.variant

    # the measurement's fields, read through the reference
    @property
    def count(self) -> Any:
        return None if self.measured is None else self.measured.count

    @property
    def error(self) -> str | None:
        return self.reason if self.measured is None else self.measured.error

    @property
    def explanation(self) -> Any:
        return None if self.measured is None else self.measured.explanation

    @property
    def band(self) -> Any:
        return None if self.measured is None else self.measured.band

    @property
    def within_band(self) -> bool | None:
        return None if self.measured is None else self.measured.within_band

    @property
    def key_mismatches(self) -> list[str]:
        return _NO_LIST if self.measured is None else self.measured.key_mismatches

    @property
    def unknown_blind_spots(self) -> list[str]:
        return _NO_LIST if self.measured is None else self.measured.unknown_blind_spots

    @property
    def seconds(self) -> float:
        """Model time of the measurement for the cell that ran it; 0 for a reuse."""
        m = self.measured
        return m.seconds if m is not None and m.fresh and self.reused_from is None else 0.0

    @property
    def verified(self) -> bool | None:
        """The suite's verdict for this cell (None: not measured)."""
        if self.status != "measured":
            return None
        return bool(self.within_band) and not self.key_mismatches and not self.unknown_blind_spots

    @property
    def golden_key(self) -> str:
        return f"{self.target}-{self.mode}-{self.page}-{self.stage}-{self.counter}"


@dataclass
class Collected:
    """Everything measured and computed for one report."""

    plan: ReportPlan
    layouts: dict[tuple[str, str, str], Any] = field(default_factory=dict)     # (t, mode, page) -> ViewLayout
    stages: dict[tuple[str, str, str, str], StageInfo] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    #: memo key -> the one KeyCount every cell of that shape key references
    measurements: dict[tuple, KeyCount] = field(default_factory=dict)
    #: (target, mode, page, stage, spec) -> Record: every lookup is keyed, nothing scans the list
    cells: dict[tuple, Record] = field(default_factory=dict)
    #: (target, mode, page, stage) -> the ByteFact of its shape key (measured on meta only)
    byte_facts: dict[tuple[str, str, str, str], ByteFact] = field(default_factory=dict)
    #: memo key -> the one ByteFact every page x mode of that shape key references
    byte_measurements: dict[tuple, ByteFact] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    target_environment: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    build_seconds: dict[str, float] = field(default_factory=dict)
    measure_seconds: float = 0.0
    model_runs: int = 0
    reuses: int = 0
    engine: Engine | None = None
    text_tokens: int = 0

    def cell(self, target: str, mode: str, page: str, stage: str, spec: CounterSpec) -> Record | None:
        return self.cells.get((target, mode, page, stage, spec))

    def add(self, record: Record) -> None:
        self.records.append(record)
        self.cells[(record.target, record.mode, record.page, record.stage, record.spec)] = record

    def stages_of(self, target: str) -> tuple[str, ...]:
        from harness.analytic.stages import TARGET_STAGES

        return TARGET_STAGES[target]

    def layout_record(self, target: str, mode: str, page: str) -> dict[str, Any]:
        layout = self.layouts[(target, mode, page)]
        record = layout_record(layout, text_tokens=self.text_tokens)
        record["vision_tokens"] = layout.vision_tokens
        record["n_views"] = layout.n_views
        return record


def environment_versions() -> dict[str, Any]:
    """Package versions (the engine's, as the goldens record them) and the machine: what a reader
    needs to reproduce the numbers."""
    from harness.golden.records import environment_versions as versions

    env: dict[str, Any] = {
        **versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            env["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def _bands():
    from harness.golden import load_bands

    return load_bands(golden_dir() / BANDS_FILE)


def _verify(record: KeyCount, engine: Engine, case: Case, bands: Any) -> None:
    """The suite's verification verdict (:func:`harness.verify.fact`) on one measurement."""
    from harness.verify import fact

    verdict = fact(engine, case, record.count, bands)
    record.explanation = verdict.explanation
    record.band = verdict.band
    record.within_band = verdict.within_band
    record.key_mismatches = verdict.key_lines     # the suite's variant of torch only (exact op keys)
    record.unknown_blind_spots = verdict.unknown_lines


@dataclass(frozen=True)
class GoldenCell:
    """What identifies one measured cell to :class:`GoldenChecker`: where it is (target, mode,
    page, stage), which counter and variant measured it, the stage's shape key, and the count."""

    target: str
    mode: str
    page: str
    stage: str
    counter: str
    variant: str
    shape_key: tuple
    count: Any                      # harness.measure.StageCount


@dataclass(frozen=True)
class CorruptGolden:
    """A golden file that exists but cannot be used (truncated, not JSON, a field of the wrong type)."""

    path: Path
    problem: str


class GoldenChecker:
    """The report's only reader of goldens: a patched count against its golden (regress band).

    Interface (everything else is internal, so the golden store can change underneath):
    ``GoldenChecker(root, bands)`` and ``check_cell(GoldenCell) -> (status, differences)`` with
    ``status`` one of ``"match"``, ``"differs"`` (``differences``: one ``"field: now X, golden Y"``
    line per differing field), ``"corrupt"`` (the golden file exists but cannot be read: one line
    naming it), ``"no golden"`` (none stored for this cell yet) or ``"n/a"`` (stock
    variants have no goldens). ``check(record)`` is the same for a :class:`Record`.

    It reads through the golden engine's store (:class:`harness.golden.GoldenStore`, the suite's
    loader) and compares with its comparison (``compare_entry``); as a reader it never writes into
    the golden directory (no obtained files: the report's own output states the differences).
    """

    def __init__(self, root: Path, bands: Any) -> None:
        from harness.golden import GoldenStore

        self.root = root
        self.bands = bands
        self.store = GoldenStore(root, base=golden_dir().parent, obtained=False)
        self._obtained: dict[int, tuple[Any, Any]] = {}   # id(count) -> (count, its golden record)

    def _entry(self, cell: GoldenCell) -> Any:
        """The stored golden entry of ``cell`` or None: the count golden of its shape key."""
        from harness.inputs.shapes import key_name
        from harness.golden import GoldenError, count_path

        path = count_path(self.root, cell.target, cell.stage, key_name(cell.shape_key))
        try:
            doc = self.store.load(path, "count")
        except GoldenError as exc:
            return CorruptGolden(path, str(exc).split("\n", 1)[0])
        if doc is None:
            return None
        return doc["counters"].get(cell.counter)

    def check_cell(self, cell: GoldenCell) -> tuple[str, list[str]]:
        import json

        from harness.golden.records import entry_record
        from harness.golden import compare_entry

        if cell.variant != SUITE_VARIANT or cell.count is None:
            return "n/a", []
        entry = self._entry(cell)
        if entry is None:
            return "no golden", []
        if isinstance(entry, CorruptGolden):      # the suite fails on it; so does the report (exit 3)
            return "corrupt", [f"{entry.problem}; fix or restore it (git checkout -- {self.store.display(entry.path)}), or "
                               "regenerate it: pytest --update-golden"]
        band = self.bands.lookup("regress", cell.stage, cell.counter, cell.count.convention)
        held = self._obtained.get(id(cell.count))
        if held is None or held[0] is not cell.count:     # one golden record per count (per shape key)
            held = (cell.count, json.loads(json.dumps(entry_record(cell.count))))
            self._obtained[id(cell.count)] = held
        obtained = held[1]
        rows = compare_entry(obtained, entry, band)
        if rows:
            return "differs", [f"{r.field}: now {r.obtained!r}, golden {r.expected!r}" for r in rows[:8]]
        return "match", []

    def check(self, record: "Record") -> tuple[str, list[str]]:
        return self.check_cell(GoldenCell(record.target, record.mode, record.page, record.stage, record.counter,
                                          record.variant, record.shape_key, record.count))


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.strip()


def public_text(text: str) -> str:
    """``text`` without internal symbol names (``(harness.run.plan.NAME)``, ``harness.x.y``): a reader
    of the report needs the reason, not where it is kept."""
    import re

    text = re.sub(r"\s*\(harness(?:\.\w+)+\)", "", text)
    return re.sub(r"\bharness(?:\.\w+)+\.([A-Za-z_]\w*)", r"\1", text)


def _measured(engine: Engine, case: Case, spec: CounterSpec, memo: tuple, key: tuple, where: str, fresh: bool,
              index: int, bands: Any) -> KeyCount:
    """The one :class:`KeyCount` of ``memo``: the engine's count (a memo hit by now), verified once."""
    measured = KeyCount(f"m{index}", memo, case.target, case.stage, spec, key, where, fresh)
    try:
        measured.count = engine.measure(case, spec.variant)
    except Exception as exc:
        measured.count = getattr(exc, "result", None)   # UncountedOpError carries the count
        measured.error = _error_text(exc)
    found = engine.measurement(case, spec.variant)
    measured.seconds = found.seconds if found is not None else 0.0
    if measured.count is not None:
        _verify(measured, engine, case, bands)
    return measured


def _measures_bytes(plan: ReportPlan) -> bool:
    """Byte facts are measured as the suite measures them: the byte counter on meta, beside counters."""
    return plan.device == "meta" and bool(plan.counters)


def _byte_fact(engine: Engine, case: Case, key: tuple, where: str, index: int) -> ByteFact:
    """The one :class:`ByteFact` of ``case``'s shape key: the engine's byte count, verified once."""
    from harness.verify import fact

    found = ByteFact(f"b{index}", case.target, case.stage, key, where)
    try:
        count = engine.measure(case)
        built = engine.built_model(case.target, BYTES_DTYPE)
        found.build = (f"{BYTES_DTYPE} on {engine.device}, attention {built.attn_implementation}, "
                       f"experts {built.experts_implementation}")
        found.verdict = fact(engine, case, count)
    except Exception as exc:      # memoised by the engine; every page of this shape key says why
        found.error = _error_text(exc)
    memo = engine.measurements.get(engine.measurement_key(case))
    found.seconds = memo.seconds if memo is not None else 0.0
    return found


def _not_measurable(plan: ReportPlan, case: Case) -> str | None:
    """The target's documented reason a counter cannot measure a stage on the plan's device."""
    if plan.device != "meta":
        return None
    from harness.run.plan import not_measurable

    return not_measurable(case.target, case.stage, case.counter, plan.device)


def _pending(engine: Engine, plan: ReportPlan, items: list, build_errors: dict[str, str]) -> list[tuple]:
    """``(case, variant, memo key)`` of every shape key still to measure, first occurrence first."""
    tasks, keys = [], set()
    for target, mode, page, stage in items:
        if target in build_errors:
            continue
        for spec in plan.counters:
            case = Case(target, mode, page.page_id, stage, spec.counter)
            if _not_measurable(plan, case):
                continue
            key = engine.measurement_key(case, spec.variant)
            if key in keys or engine.measurement(case, spec.variant) is not None:
                continue
            keys.add(key)
            tasks.append((case, spec.variant, key))
        if _measures_bytes(plan):
            case = Case(target, mode, page.page_id, stage, BYTES)
            key = engine.measurement_key(case)
            if key not in keys and key not in engine.measurements:
                keys.add(key)
                tasks.append((case, SUITE_VARIANT, key))
    return tasks


def _effective_jobs(jobs: int, plan: ReportPlan, n_tasks: int) -> int:
    """Worker processes: only on meta (nothing real to copy), only with fork, never more than tasks."""
    import multiprocessing

    if jobs <= 1 or n_tasks < 2 or plan.device != "meta":
        return 1
    if any(t.name == "dsocr" and not t.unavailable for t in plan.targets):
        return 1   # the vendor LM runs on CPU with real weights: one copy, one process
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return min(jobs, n_tasks)


#: The engine a forked worker measures with, and the queue it reports each count on (set in the
#: parent just before the fork; fork start method only).
_WORKER_ENGINE: Engine | None = None
_WORKER_QUEUE: Any = None
#: ``{counter: variants}`` the report shows: one run of a counter with shared variant runs gives them all
_WORKER_VARIANTS: dict[str, tuple[str, ...]] = {}


def _worker_init() -> None:
    """A worker ends with the report: SIGTERM ends it (the parent's handler is not inherited), Ctrl-C
    is the parent's to handle (it terminates the pool), and the death of the parent, even by
    SIGKILL, sends it SIGKILL (Linux ``PR_SET_PDEATHSIG``)."""
    import signal

    import torch

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    torch.set_num_threads(1)


def _die_with_parent() -> None:
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:       # the parent died before the prctl
        os._exit(1)


def _worker_measure(task: tuple) -> tuple:
    """In a worker: the engine's own measurement of one shape key (with the other variants the
    report shows, where one run gives them), made picklable: ``[(case, variant, Measurement), ...]``."""
    import pickle

    case, variant, _ = task
    engine = _WORKER_ENGINE
    assert engine is not None
    also = _WORKER_VARIANTS.get(case.counter, ())
    raised = None
    try:
        engine.measure(case, variant, also=also)
    except Exception as exc:    # memoised with its error; or raised before the memo (then carried below)
        raised = exc
    out = []
    for v in dict.fromkeys((variant, *also)):
        found = engine.measurement(case, v)
        if found is None:
            if v != variant:
                continue
            found = Measurement(None, raised or RuntimeError("no measurement was made"), 0.0, case.page,
                                f"{type(raised).__name__}: {raised}" if raised else "")
        error = found.error
        if error is not None:
            try:
                pickle.loads(pickle.dumps(error))
            except Exception:
                error = ("remote", type(error).__name__, str(error), getattr(error, "result", None))
        out.append((case, v, Measurement(found.count, error, found.seconds, found.page, found.failure)))
    return out


def _worker_unit(unit: list[tuple]) -> int:
    """In a worker: measure a unit of tasks in order (one StageInputs: upstream outputs computed once)."""
    for task in unit:
        _WORKER_QUEUE.put(_worker_measure(task))
    return len(unit)


def _rebuild_error(error: Any) -> BaseException | None:
    if not isinstance(error, tuple):
        return error
    _, name, message, result = error
    from harness.measure import CounterError, UncountedOpError

    if name == "UncountedOpError" and result is not None:
        return UncountedOpError(message, result)
    rebuilt = CounterError(f"{name}: {message}")
    if result is not None:
        rebuilt.result = result  # type: ignore[attr-defined]
    return rebuilt


def _prefetch_parallel(engine: Engine, tasks: list[tuple], variants: dict[str, tuple[str, ...]], workers: int,
                       bar: Any) -> None:
    """Measure ``tasks`` in forked workers, in the plan's units of work
    (:func:`harness.run.plan.work_units`); the engine adopts each measurement."""
    import multiprocessing
    import queue as queue_module

    from harness.run.plan import work_units

    global _WORKER_ENGINE, _WORKER_QUEUE, _WORKER_VARIANTS
    context = multiprocessing.get_context("fork")
    _WORKER_ENGINE, _WORKER_QUEUE, _WORKER_VARIANTS = engine, context.Queue(), variants
    received = 0
    units = work_units(tasks, lambda task: (task[0].target, task[0].mode, task[0].page, task[0].stage))
    try:
        with context.Pool(workers, initializer=_worker_init) as pool:
            done = pool.map_async(_worker_unit, units, chunksize=1)
            while received < len(tasks):
                try:
                    found = _WORKER_QUEUE.get(timeout=0.5)
                except queue_module.Empty:
                    if done.ready():
                        done.get()      # re-raises a worker's crash
                        if received < len(tasks):
                            raise RuntimeError(f"report workers finished with {len(tasks) - received} "
                                               "counts missing")
                    continue
                for case, variant, measurement in found:
                    if engine.measurement(case, variant) is None:   # a co-variant a task of its own also gives
                        measurement.error = _rebuild_error(measurement.error)
                        engine.adopt(case, variant, measurement)
                case, variant, _ = found[0]
                received += 1
                if bar is not None:
                    bar.set_postfix_str(f"{case.target} {case.stage} {case.counter} {variant}", refresh=False)
                    bar.update(1)
            done.get()
    finally:
        _WORKER_ENGINE, _WORKER_QUEUE, _WORKER_VARIANTS = None, None, {}


def _variants_shown(plan: ReportPlan) -> dict[str, tuple[str, ...]]:
    """``{counter: the variants of it the report shows}``."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in plan.counters:
        out[spec.counter] = (*out.get(spec.counter, ()), spec.variant)
    return out


def work_items(plan: ReportPlan) -> Iterator[tuple[str, str, Any, str]]:
    """``(target, mode, page, stage)`` in report order."""
    from harness.analytic.stages import TARGET_STAGES

    for tplan in plan.targets:
        for mode in tplan.modes:
            for page in plan.pages:
                for stage in TARGET_STAGES[tplan.name]:
                    yield tplan.name, mode, page, stage


def collect(plan: ReportPlan, *, progress: Callable[..., Any] | None = None,
            status: Callable[[str], None] | None = None, engine: Engine | None = None,
            jobs: int = 1) -> Collected:
    """Measure every cell of ``plan`` (memoised per shape key) and compute the analytic side.

    Each shape key not yet in the engine is measured once (``jobs`` > 1: in forked worker
    processes, each running the engine's own ``measure``; the results land in the same memo
    table), then every cell is read from the memo in report order.
    """
    from harness.analytic import experts_model
    from harness.inputs.targets import target_facts
    from harness.inputs.workload import DEFAULT_PROMPT_TOKENS

    say = status or (lambda text: None)
    if engine is None:    # an engine of the report's pages alone
        engine = Engine(model_path=plan.model_path, trust_remote_code=plan.trust_remote_code,
                           device=plan.device)
        engine.register_pages(plan.pages, builtin=False)
    else:                # the suite's session engine: the report's pages join the built-in ones
        engine.register_pages(plan.pages)
    out = Collected(plan=plan, engine=engine, text_tokens=engine.text_tokens or DEFAULT_PROMPT_TOKENS)
    out.environment = environment_versions()
    out.notes.extend(plan.notes)
    bands = _bands()
    goldens = GoldenChecker(golden_dir(), bands)

    # layouts and builds first: the bar then covers the measurements only
    build_errors: dict[str, str] = {}
    for tplan in plan.targets:
        for mode in tplan.modes:
            for page in plan.pages:
                out.layouts[(tplan.name, mode, page.page_id)] = engine.layout(tplan.name, mode, page.page_id)
        if tplan.unavailable:
            build_errors[tplan.name] = tplan.unavailable
            out.notes.append(f"{tplan.name}: counters not run: {tplan.unavailable}. Its analytic model, "
                             "layouts and token counts are reported.")
            continue
        if not plan.counters:
            continue
        label = (f"building {tplan.name} on {plan.device}"
                 + (" (no weights)" if plan.device == "meta" else " (seeded random weights)"))
        build_bar = progress(total=1, desc=label, unit="model") if progress is not None else None
        if build_bar is None or getattr(build_bar, "disable", False) is True:
            say(label + " ...")         # no bar drawn (not a terminal): a line instead
        start = time.perf_counter()
        try:
            built = engine.built_model(tplan.name)
            if _measures_bytes(plan):     # the byte counter's build, before any worker forks: one for all
                try:
                    engine.built_model(tplan.name, BYTES_DTYPE)
                except Exception:         # memoised by the engine; every byte fact of the target says why
                    pass
        except Exception as exc:  # memoised by the engine; every cell of the target says why
            build_errors[tplan.name] = f"building {tplan.name} failed: {_error_text(exc)}"
            out.notes.append(f"{tplan.name}: {build_errors[tplan.name]}")
        else:
            out.target_environment[tplan.name] = {
                **built_environment(built), "parameters": built.parameter_count,
                "build_notes": list(built.notes)}
        finally:
            if build_bar is not None:
                build_bar.update(1)
                build_bar.close()
        out.build_seconds[tplan.name] = time.perf_counter() - start

    items = list(work_items(plan))
    tasks = _pending(engine, plan, items, build_errors)
    bar = (progress(total=len(tasks), desc="counting (one run per shape key)", unit="count")
           if progress is not None and tasks else None)
    start_all = time.perf_counter()
    # one fvcore trace / one thop forward serves every variant the report shows
    variants = _variants_shown(plan)
    try:
        workers = _effective_jobs(jobs, plan, len(tasks))
        if workers > 1:
            say(f"measuring {len(tasks)} shape keys in {workers} worker processes ...")
            _prefetch_parallel(engine, tasks, variants, workers, bar)
        else:
            for case, variant, _ in tasks:
                if bar is not None:
                    bar.set_postfix_str(f"{case.target} {case.mode} {case.page} {case.stage} {case.counter} "
                                        f"{variant}", refresh=False)
                try:
                    engine.measure(case, variant, also=variants.get(case.counter, ()))
                except Exception:
                    pass    # memoised with its error; the record below says why
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    fresh = {key for _, _, key in tasks}

    params_memo: dict[tuple[str, str], int] = {}
    for target, mode, page, stage in items:
        case0 = Case(target, mode, page.page_id, stage, "torch")
        built = engine.built_if_made(target)
        attn = built.attn_implementation if built is not None else None
        key = engine.shape_key(case0)
        if built is not None:
            cost = engine.analytic(case0)      # the build's attention and experts byte model
            experts = experts_model(target, built.experts_implementation)
        else:
            cost = engine.analytic(case0, attn_implementation=None)      # not built: the model's defaults
            experts = "loop"
        if built is not None and (target, stage) not in params_memo:   # per stage, never per page
            params_memo[(target, stage)] = built.stage_parameters(stage)
        params = params_memo.get((target, stage))
        out.stages[(target, mode, page.page_id, stage)] = StageInfo(
            target, mode, page.page_id, stage, cost, params, key,
            attn or target_facts(target).default_attention, experts)
        where = f"{page.page_id}/{mode}"
        if _measures_bytes(plan) and target not in build_errors:
            case = Case(target, mode, page.page_id, stage, BYTES)
            memo = engine.measurement_key(case)
            if memo not in out.byte_measurements:
                out.byte_measurements[memo] = _byte_fact(engine, case, key, where, len(out.byte_measurements))
            out.byte_facts[(target, mode, page.page_id, stage)] = out.byte_measurements[memo]
        for spec in plan.counters:
            case = Case(target, mode, page.page_id, stage, spec.counter)
            record = Record(target, mode, page.page_id, stage, spec, key, "not measured")
            if target in build_errors:
                record.reason = build_errors[target]
                out.add(record)
                continue
            reason = _not_measurable(plan, case)
            if reason:
                record.reason = (f"{public_text(reason)}; count it on real tensors with --device cpu "
                                 "(slow at full size)")
                out.add(record)
                continue
            memo = engine.measurement_key(case, spec.variant)
            measured = out.measurements.get(memo)
            if measured is None:
                measured = _measured(engine, case, spec, memo, key, where, memo in fresh, len(out.measurements),
                                     bands)
                out.measurements[memo] = measured
                if measured.fresh:
                    out.model_runs += 1
                else:
                    record.reused_from = "an earlier run in this process"
                    out.reuses += 1
            else:
                record.reused_from = measured.first
                out.reuses += 1
            record.measured = measured
            if measured.count is not None:
                record.status = "measured"
                record.golden, record.golden_differences = goldens.check_cell(GoldenCell(
                    target, mode, page.page_id, stage, spec.counter, spec.variant, key, measured.count))
            out.add(record)
    out.measure_seconds = time.perf_counter() - start_all
    out.environment["bands"] = str(bands.path) if bands.path is not None else None
    return out
