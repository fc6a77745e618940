"""`StageCount`, the `Counter` interface, the counter registry and `count()`.

Every number a counter produces carries its convention: ``raw`` is the tool's own figure in the
tool's own unit (``convention`` = ``"flop"`` or ``"mac"``), ``flops`` is that figure converted to
FLOPs (FLOPs = 2 x MACs). ``by_op`` keeps the tool's own op names, ``by_key`` maps the same FLOPs
onto the analytic op keys (:mod:`.keys`). Work the tool did not count is never a silent zero:
``unknown_ops`` lists what ran with no formula/handle/rule, ``unseen`` sizes the matmul-class
part of it (reference formulas, FLOPs, by op key), ``ignored_ops`` lists what the tool leaves out
on purpose.
"""

from __future__ import annotations

import abc
import difflib
import time
from collections import Counter as Tally
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

from harness.run.modelrun import counting

from .keys import ELEMENTWISE_KEYS, GENERIC_KEYS, KEY_CLASS, MATMUL_KEYS, UNMAPPED, is_matmul_like
from .observe import check_call

__all__ = [
    "StageCount",
    "Counter",
    "CounterError",
    "UncountedOpError",
    "UnknownCounterError",
    "register_counter",
    "get_counter",
    "available_counters",
    "count",
    "count_variants",
    "uncounted_error",
    "VARIANTS",
    "CONVENTIONS",
    "Tallies",
]

VARIANTS = ("patched", "stock")
CONVENTIONS = ("flop", "mac")


class CounterError(RuntimeError):
    """A counter could not count a stage; the message says why and what to do."""


class UnknownCounterError(KeyError):
    """An unknown counter name; the message lists the close matches and what is available."""

    def __str__(self) -> str:  # KeyError would show the repr, escaping the newline
        return str(self.args[0]) if self.args else ""


class UncountedOpError(CounterError):
    """A matmul- or attention-like op ran and the counter counted nothing for it."""

    def __init__(self, message: str, result: "StageCount") -> None:
        super().__init__(message)
        self.result = result


@dataclass
class StageCount:
    """One counter's measurement of one stage (all its calls summed). FLOPs = 2 x MACs."""

    counter: str
    variant: str
    version: str
    target: str
    stage: str
    raw: int | float                 # the tool's own figure, in ``convention`` units
    convention: str                  # "flop" | "mac"
    flops: int                       # raw converted to FLOPs
    by_op: dict[str, int]            # the tool's own op names -> FLOPs
    by_key: dict[str, int]           # analytic op keys (+ "unmapped") -> FLOPs
    unknown_ops: dict[str, int]      # ran, no formula/handle/rule -> occurrences
    ignored_ops: dict[str, int]      # left out on purpose -> occurrences
    wall_time_s: float
    by_module: dict[str, int] = field(default_factory=dict)   # stage path -> FLOPs (inclusive)
    unseen: dict[str, int] = field(default_factory=dict)      # op key -> FLOPs that ran uncounted
    unseen_ops: dict[str, int] = field(default_factory=dict)  # op/function -> FLOPs that ran uncounted
    deviations: dict[str, int] = field(default_factory=dict)  # cause -> FLOPs counted minus reference
    ran_as: dict[str, int] = field(default_factory=dict)      # how counted products ran (torch): FLOPs
    uncalled_modules: tuple[str, ...] = ()
    patches: tuple[str, ...] = ()    # what the patched variant changed
    warnings: list[str] = field(default_factory=list)         # the tool's warnings, not the log's
    notes: list[str] = field(default_factory=list)
    devices: tuple[str, ...] = ()

    @property
    def matmul_flops(self) -> int:
        """FLOPs the counter attributed to matmul-class keys (including ``unmapped``)."""
        return sum(v for k, v in self.by_key.items() if KEY_CLASS.get(k) == "matmul")

    @property
    def elementwise_flops(self) -> int:
        """FLOPs the counter attributed to element-wise keys (its own per-element convention)."""
        return sum(v for k, v in self.by_key.items() if KEY_CLASS.get(k) == "elementwise")

    @property
    def uncounted_matmul_ops(self) -> dict[str, int]:
        """Unknown ops that look like products (matmul, conv, attention): each one is a finding."""
        return {op: n for op, n in self.unknown_ops.items() if is_matmul_like(op)}

    @property
    def complete(self) -> bool:
        """True when no matmul-class work ran uncounted."""
        return not self.uncounted_matmul_ops and not any(self.unseen.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        unit = "MACs" if self.convention == "mac" else "FLOPs"
        lines = [f"{self.counter} ({self.variant}, {self.version}) {self.target}/{self.stage}: "
                 f"{self.flops:,} FLOPs (raw {self.raw:,} {unit}), {self.wall_time_s:.2f} s"]
        for key in (*MATMUL_KEYS, *GENERIC_KEYS, UNMAPPED, *ELEMENTWISE_KEYS):
            if self.by_key.get(key):
                lines.append(f"  {key:<18} {self.by_key[key]:>22,}")
        if self.unseen:
            lines.append("  ran, not counted: " + ", ".join(f"{k} {v:,}" for k, v in self.unseen.items()))
        if self.uncounted_matmul_ops:
            lines.append("  matmul-like ops without a formula: " + ", ".join(
                f"{k} x{v}" for k, v in self.uncounted_matmul_ops.items()))
        return "\n".join(lines)

    __str__ = summary


class Tallies:
    """A counter's running sums before they become a :class:`StageCount`: the raw figure, the
    tallies by op, by op key and by module path, unknown and ignored ops, what ran uncounted, notes.
    Each counter keeps them in its own unit and adds its own fields."""

    _TALLIES = ("by_op", "by_key", "by_module", "unknown", "ignored", "unseen", "unseen_ops")

    def __init__(self) -> None:
        self.raw: int | float = 0
        self.by_op: Tally = Tally()
        self.by_key: Tally = Tally()
        self.by_module: Tally = Tally()
        self.unknown: Tally = Tally()
        self.ignored: Tally = Tally()
        self.unseen: Tally = Tally()
        self.unseen_ops: Tally = Tally()
        self.notes: list[str] = []

    def merge(self, other: "Tallies") -> None:
        """Add the sums of ``other`` (a later call): the raw figure and every tally add, the notes
        follow in call order."""
        self.raw += other.raw
        for name in self._TALLIES:
            getattr(self, name).update(getattr(other, name))
        self.notes.extend(other.notes)


class Counter(abc.ABC):
    """A FLOP counter: runs the calls of one stage and reports a :class:`StageCount`.

    Subclasses set ``name``, ``convention`` (the unit of their raw figure) and implement
    :meth:`version` and :meth:`run`. A counter must leave torch, the model's modules, buffers and
    hooks exactly as it found them, even when the forward raises.
    """

    name: ClassVar[str] = ""
    convention: ClassVar[str] = "flop"
    variants: ClassVar[tuple[str, ...]] = VARIANTS
    description: ClassVar[str] = ""
    #: True when :meth:`run_variants` reads every variant from one model run (fvcore: one trace;
    #: thop: one forward), so a further variant costs little beside the first.
    shares_variant_runs: ClassVar[bool] = False

    @abc.abstractmethod
    def version(self) -> str:
        """The tool's version string, e.g. ``"torch 2.13.0"``."""

    @abc.abstractmethod
    def run(self, calls: Sequence[Any], *, variant: str) -> StageCount:
        """Count ``calls`` (duck-typed StageCalls) and return a StageCount (target/stage empty)."""

    def run_variants(self, calls: Sequence[Any], variants: Sequence[str]) -> dict[str, StageCount]:
        """Count ``calls`` under each of ``variants``: ``{variant: StageCount}`` (target/stage empty).

        The default runs :meth:`run` once per variant. A counter whose variants differ only in how
        they read one run (fvcore: one trace, two handle tables; thop: one forward, two rule sets)
        overrides it to run the model once; the counts must equal the separate runs'.
        """
        return {variant: self.run(calls, variant=variant) for variant in variants}


_COUNTERS: dict[str, Counter] = {}


def register_counter(counter: type[Counter] | Counter) -> Any:
    """Register a counter class (decorator) or instance under its ``name``; duplicates are errors."""
    instance = counter() if isinstance(counter, type) else counter
    if not isinstance(instance, Counter):
        raise TypeError(f"register_counter: expected a Counter subclass or instance, got {counter!r}")
    if not instance.name:
        raise ValueError(f"register_counter: {type(instance).__name__} has no name")
    if instance.convention not in CONVENTIONS:
        raise ValueError(f"register_counter: {instance.name!r} convention {instance.convention!r} "
                         f"is not one of {CONVENTIONS}")
    existing = _COUNTERS.get(instance.name)
    if existing is not None:
        raise RuntimeError(f"duplicate registrations for counter {instance.name!r} "
                           f"(existing={type(existing).__qualname__}, new={type(instance).__qualname__})")
    _COUNTERS[instance.name] = instance
    return counter


def available_counters() -> tuple[str, ...]:
    """Registered counter names, sorted."""
    return tuple(sorted(_COUNTERS))


def get_counter(name: str) -> Counter:
    """The registered counter ``name``; an unknown name raises with the close matches."""
    try:
        return _COUNTERS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(str(name), list(_COUNTERS), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownCounterError(f"Unknown counter {name!r}.{hint}\nAvailable: {', '.join(available_counters())}")


def _check_variant(impl: Counter, counter: str, variant: str) -> None:
    if variant not in impl.variants:
        close = difflib.get_close_matches(str(variant), impl.variants, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown variant {variant!r} for counter {counter!r}.{hint} "
                         f"Available: {', '.join(impl.variants)}")


def checked_calls(calls: Sequence[Any], stage: str, *, who: str, nothing: str = "0") -> list[Any]:
    """``calls`` as a list, each a valid StageCall; an empty stage is an error (it would count
    ``nothing`` silently). ``who`` names the caller in the message."""
    calls = list(calls)
    if not calls:
        raise ValueError(f"{who}: no calls for stage {stage!r}; a stage with nothing "
                         f"to run would count {nothing} silently")
    for call in calls:
        check_call(call)
    return calls


def _checked_calls(counter: str, calls: Sequence[Any], stage: str) -> list[Any]:
    return checked_calls(calls, stage, who=f"count({counter!r})")


def uncounted_error(result: StageCount) -> UncountedOpError | None:
    """The :class:`UncountedOpError` a strict count raises for ``result`` (matmul-class work ran
    uncounted), or None when ``result`` is complete."""
    if result.complete:
        return None
    parts = []
    if result.uncounted_matmul_ops:
        parts.append("ops without a formula: " + ", ".join(
            f"{op} x{n}" for op, n in result.uncounted_matmul_ops.items()))
    if any(result.unseen.values()):
        parts.append("work not counted: " + ", ".join(
            f"{k} {v:,} FLOPs" for k, v in result.unseen.items() if v))
    return UncountedOpError(
        f"{result.counter} ({result.variant}) ran matmul-class work it did not count in stage "
        f"{result.stage!r}: {'; '.join(parts)}. Register a formula/handle for it, or pass "
        f"strict=False to get the StageCount with these listed.", result)


def _finish(result: StageCount, counter: str, variant: str, calls: list[Any], target: str, stage: str,
            strict: bool | None, wall_time_s: float) -> StageCount:
    """Stamp target/stage/time on a counter's result; raise for uncounted work when strict."""
    result.wall_time_s = wall_time_s
    result.target = target
    result.stage = stage or ",".join(dict.fromkeys(str(c.stage) for c in calls))
    if strict is None:
        strict = variant == "patched"
    error = uncounted_error(result) if strict else None
    if error is not None:
        raise error
    return result


def count(counter: str, calls: Sequence[Any], *, variant: str = "patched", target: str = "",
          stage: str = "", strict: bool | None = None) -> StageCount:
    """Count one stage (all its ``calls``) with ``counter`` (``variant`` "patched" or "stock").

    ``strict`` (default: True for "patched", False for "stock") raises :class:`UncountedOpError`
    when a matmul-, conv- or attention-like op ran and the counter counted nothing for it; the
    exception carries the StageCount. The stock variants report such ops (``unknown_ops``,
    ``unseen``) instead: their blind spots are the finding.
    """
    impl = get_counter(counter)
    _check_variant(impl, counter, variant)
    calls = _checked_calls(counter, calls, stage)
    start = time.perf_counter()
    with counting():
        result = impl.run(calls, variant=variant)
    return _finish(result, counter, variant, calls, target, stage, strict, time.perf_counter() - start)


def count_variants(counter: str, calls: Sequence[Any], *, variants: Sequence[str] = ("stock", "patched"),
                   target: str = "", stage: str = "", strict: bool | None = None) -> dict[str, StageCount]:
    """Count one stage under several variants of ``counter`` from one model run where the counter
    allows it: ``{variant: StageCount}``, each equal to ``count(counter, calls, variant=v, ...)``.

    fvcore traces each call once and reads the trace with each variant's handle table; thop runs
    each call once with both rule sets observed; other counters run once per variant. Every
    StageCount's ``wall_time_s`` is the time of the whole shared run (all variants).
    ``strict`` as in :func:`count`, per variant (default: True for "patched" only); the first
    variant that fails it raises :class:`UncountedOpError`.
    """
    impl = get_counter(counter)
    variants = tuple(dict.fromkeys(variants))
    if not variants:
        raise ValueError(f"count_variants({counter!r}): no variants; choose from {', '.join(impl.variants)}")
    for variant in variants:
        _check_variant(impl, counter, variant)
    calls = _checked_calls(counter, calls, stage)
    start = time.perf_counter()
    with counting():
        results = impl.run_variants(calls, variants)
    seconds = time.perf_counter() - start
    if set(results) != set(variants):
        raise CounterError(f"{counter}: run_variants returned {sorted(results)} for variants {list(variants)}")
    return {v: _finish(results[v], counter, v, calls, target, stage, strict, seconds) for v in variants}
