"""Time the stages of a built target and hold each against its analytic cost and the device peak.

Works on any device: the unit tests drive it on CPU with toy calls; on ``cuda:N`` the timing is
CUDA events (:func:`harness.gpu.timing.time_stage`). Decode is one token per call, measured at
several context lengths; the KV cache a decode call appends to is cropped back before every
repeat, so each repeat sees the same context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from harness.gpu.peaks import ResolvedPeak
from harness.gpu.roofline import CostLike, StagePerf, stage_perf
from harness.gpu.timing import TimingResult, time_stage

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEFAULT_DECODE_CONTEXTS", "decode_label", "run_calls", "kv_cache_reset", "measure_calls",
           "profile_stages"]

#: Context lengths (cached tokens) at which one decode token is timed by default.
DEFAULT_DECODE_CONTEXTS: tuple[int, ...] = (512, 1024, 2048, 4096)


class _Call(Protocol):
    args: tuple
    kwargs: dict

    def __call__(self) -> Any: ...


class _Target(Protocol):
    name: str
    stages: tuple[str, ...]

    def stage_calls(self, built: Any, inputs: Any, stage: str, *, decode_context: int | None = None) -> list: ...


def decode_label(context: int) -> str:
    """Row label of one decode token at ``context`` cached tokens."""
    return f"decode@{context}"


def run_calls(calls: Sequence[Callable[[], Any]]) -> Callable[[], None]:
    """One zero-argument callable running ``calls`` in order under ``torch.inference_mode()``."""
    if not calls:
        raise ValueError("a stage with no calls cannot be timed")
    import torch

    def run() -> None:
        with torch.inference_mode():
            for call in calls:
                call()

    return run


def _caches(value: Any) -> Iterable[Any]:
    if hasattr(value, "crop") and hasattr(value, "get_seq_length"):
        yield value


def kv_cache_reset(calls: Sequence[_Call]) -> Callable[[], None] | None:
    """A reset that crops every KV cache passed to ``calls`` back to its current length, or None.

    A cache is anything with ``crop(-n)`` (remove n tokens) and ``get_seq_length()`` (transformers' ``DynamicCache``,
    4.46 and 5.x). Legacy tuple caches are immutable and need no reset.
    """
    found: list[tuple[Any, int]] = []
    seen: set[int] = set()
    for call in calls:
        for value in (*getattr(call, "args", ()), *getattr(call, "kwargs", {}).values()):
            for cache in _caches(value):
                if id(cache) not in seen:
                    seen.add(id(cache))
                    found.append((cache, int(cache.get_seq_length())))
    if not found:
        return None

    def reset() -> None:
        for cache, length in found:
            grown = int(cache.get_seq_length()) - length
            if grown > 0:
                # A negative argument removes that many tokens in transformers 4.46 and 5.x alike
                # (5.x rejects the old positive "final length" form).
                cache.crop(-grown)
            elif grown < 0:
                raise RuntimeError(f"KV cache shrank from {length} to {length + grown} tokens during a "
                                   "timed call; cannot restore it")

    return reset


def measure_calls(calls: Sequence[_Call], *, warmup: int, repeats: int,
                  device: "str | torch.device | None") -> TimingResult:
    """Time one stage's calls as one unit (with the KV-cache reset when a cache is passed).

    The calls' own ``device`` (``StageCall.device``, where the stage actually runs) wins over
    ``device`` when set: the vendor dsocr LM, for one, may run elsewhere than the vision stages.
    """
    own = getattr(calls[0], "device", "") if calls else ""
    return time_stage(run_calls(calls), warmup, repeats, device=own or device, reset=kv_cache_reset(calls))


def profile_stages(target: _Target, built: Any, inputs: Any, *, costs: Callable[[int | None], Mapping[str, CostLike]],
                   peak: ResolvedPeak, device: "str | torch.device", stages: Sequence[str] | None = None,
                   decode_contexts: Sequence[int] = DEFAULT_DECODE_CONTEXTS, warmup: int = 3,
                   repeats: int = 10) -> list[StagePerf]:
    """One :class:`StagePerf` per stage, with decode split into one row per context length.

    ``costs(decode_context)`` returns the analytic costs of every stage (``stage_costs`` with that
    ``decode_context``); only its "decode" entry depends on the argument.
    """
    stages = tuple(target.stages if stages is None else stages)
    unknown = [s for s in stages if s not in target.stages]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} for target {target.name!r}; stages: {target.stages}")
    rows: list[StagePerf] = []
    base = costs(None)
    for stage in stages:
        if stage == "decode":
            for context in decode_contexts:
                calls = target.stage_calls(built, inputs, "decode", decode_context=context)
                timing = measure_calls(calls, warmup=warmup, repeats=repeats, device=device)
                rows.append(stage_perf(decode_label(context), costs(context)["decode"], timing, peak))
            continue
        calls = target.stage_calls(built, inputs, stage)
        timing = measure_calls(calls, warmup=warmup, repeats=repeats, device=device)
        rows.append(stage_perf(stage, base[stage], timing, peak))
    return rows
