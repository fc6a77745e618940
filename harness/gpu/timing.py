"""Wall time of one stage: warm-up, repeats, median and spread.

On ``cuda[:N]`` each repeat is bracketed by CUDA events on the device's current stream and the
device is synchronised before every repeat, so a repeat measures the latency of one isolated call
(host launch gaps included, queued work from earlier repeats excluded). On any other device, or
with ``device=None``, the host clock :func:`time.perf_counter` is used (the unit tests use this).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["TimingResult", "time_stage", "timing_from_samples"]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        raise ValueError("no samples")
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class TimingResult:
    """Per-repeat seconds of one stage and their summary; the spread is the inter-quartile range."""

    times_s: tuple[float, ...]
    warmup: int
    clock: str  # "cuda_event" | "perf_counter"
    device: str

    def __post_init__(self) -> None:
        if not self.times_s:
            raise ValueError("TimingResult needs at least one repeat")
        if any(t < 0 for t in self.times_s):
            raise ValueError(f"negative time in {self.times_s}")

    @property
    def repeats(self) -> int:
        return len(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def mean_s(self) -> float:
        return statistics.fmean(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    @property
    def stdev_s(self) -> float:
        return statistics.stdev(self.times_s) if len(self.times_s) > 1 else 0.0

    @property
    def q1_s(self) -> float:
        return _quantile(sorted(self.times_s), 0.25)

    @property
    def q3_s(self) -> float:
        return _quantile(sorted(self.times_s), 0.75)

    @property
    def iqr_s(self) -> float:
        """Inter-quartile range, the spread reported next to the median."""
        return self.q3_s - self.q1_s

    @property
    def relative_spread(self) -> float:
        """IQR / median (0 when the median is 0)."""
        median = self.median_s
        return self.iqr_s / median if median > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "clock": self.clock, "warmup": self.warmup, "repeats": self.repeats,
                "median_s": self.median_s, "iqr_s": self.iqr_s, "mean_s": self.mean_s,
                "stdev_s": self.stdev_s, "min_s": self.min_s, "max_s": self.max_s,
                "times_s": list(self.times_s)}


def timing_from_samples(times_s: Sequence[float], *, warmup: int = 0, clock: str = "perf_counter",
                        device: str = "cpu") -> TimingResult:
    """A :class:`TimingResult` from seconds measured elsewhere (e.g. pytest-benchmark's data)."""
    return TimingResult(tuple(float(t) for t in times_s), warmup, clock, device)


def _check_counts(warmup: int, repeats: int) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")


def time_stage(call: Callable[[], object], warmup: int = 3, repeats: int = 10, *,
               device: "str | torch.device | None" = None,
               reset: Callable[[], object] | None = None) -> TimingResult:
    """Run ``call`` ``warmup`` times untimed, then ``repeats`` times timed; return the samples.

    ``reset`` (untimed) runs before every call, warm-up included: use it to undo state a call
    leaves behind, e.g. crop a KV cache back so every decode repeat sees the same context.
    ``device`` ``cuda[:N]`` selects CUDA-event timing on that device; anything else the host clock.
    """
    _check_counts(warmup, repeats)
    if not callable(call):
        raise TypeError(f"time_stage needs a zero-argument callable, got {type(call).__name__}")
    cuda = None
    label = "cpu" if device is None else str(device)
    if device is not None:
        import torch

        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"time_stage(device={label!r}) but CUDA is not available")
            cuda = dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
            label = str(cuda)

    for _ in range(warmup):
        if reset is not None:
            reset()
        call()
    if cuda is None:
        return TimingResult(tuple(_host_samples(call, repeats, reset)), warmup, "perf_counter", label)
    return TimingResult(tuple(_cuda_samples(call, repeats, reset, cuda)), warmup, "cuda_event", label)


def _host_samples(call: Callable[[], object], repeats: int,
                  reset: Callable[[], object] | None) -> list[float]:
    samples = []
    for _ in range(repeats):
        if reset is not None:
            reset()
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _cuda_samples(call: Callable[[], object], repeats: int, reset: Callable[[], object] | None,
                  device: "torch.device") -> list[float]:
    import torch

    pairs = []
    with torch.cuda.device(device):
        for _ in range(repeats):
            if reset is not None:
                reset()
            torch.cuda.synchronize(device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize(device)
    return [start.elapsed_time(end) / 1e3 for start, end in pairs]  # elapsed_time is in ms
