"""Achieved TFLOP/s, MFU and the roofline bound of one stage, from an analytic cost and a timing.

Conventions:

* FLOPs are the analytic **matmul-class** FLOPs (``Cost.matmul_flops``, 2 per multiply-add); the
  element-wise class (norms, softmax, activations) runs on CUDA cores and is left out of both the
  numerator and the tensor-core peak, as MFU is usually quoted.
* MFU = achieved FLOP/s / the device's **dense** peak for the dtype (:mod:`harness.gpu.peaks`).
* Roofline: predicted time = max(flops / peak FLOP/s, bytes / bandwidth), with the analytic
  ``Cost.total_bytes`` (weights + activations read + written, each once: a lower bound on traffic).
  The bound is "compute" when the flops term is the larger one, else "memory".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from harness.gpu.peaks import ResolvedPeak
from harness.gpu.timing import TimingResult

__all__ = ["CostLike", "PeakUsed", "Roofline", "StagePerf", "achieved_tflops", "measured_peak", "mfu", "roofline",
           "stage_bytes", "stage_perf", "sum_max_affine", "table_peak"]


class CostLike(Protocol):
    """What :func:`stage_perf` reads from ``harness.analytic.Cost``."""

    @property
    def matmul_flops(self) -> int: ...

    @property
    def total_bytes(self) -> int: ...


def _check_seconds(seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")


def achieved_tflops(flops: float, seconds: float) -> float:
    """FLOPs / seconds, in TFLOP/s (1e12)."""
    _check_seconds(seconds)
    return flops / seconds / 1e12


def mfu(flops: float, seconds: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved TFLOP/s over the dense peak TFLOP/s (a fraction, not %)."""
    if not peak_tflops > 0:
        raise ValueError(f"peak_tflops must be > 0, got {peak_tflops!r}")
    return achieved_tflops(flops, seconds) / peak_tflops


@dataclass(frozen=True)
class Roofline:
    """The two roofline terms of one stage and which one bounds it."""

    compute_s: float
    memory_s: float

    @property
    def predicted_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        """"compute" or "memory" (a tie counts as compute)."""
        return "compute" if self.compute_s >= self.memory_s else "memory"


def roofline(flops: float, nbytes: float, peak_tflops: float, bandwidth_gbps: float) -> Roofline:
    """Roofline terms: flops / (peak_tflops * 1e12) and nbytes / (bandwidth_gbps * 1e9) seconds."""
    if flops < 0 or nbytes < 0:
        raise ValueError(f"flops and bytes must be >= 0, got {flops!r}, {nbytes!r}")
    if not peak_tflops > 0 or not bandwidth_gbps > 0:
        raise ValueError(f"peak and bandwidth must be > 0, got {peak_tflops!r}, {bandwidth_gbps!r}")
    return Roofline(flops / (peak_tflops * 1e12), nbytes / (bandwidth_gbps * 1e9))


@dataclass(frozen=True)
class StagePerf:
    """One row of the per-stage table: what was timed, its analytic work, and the peak it is held to.

    ``stage`` is a row label: a stage name, or ``decode@<context>`` for one decode token at a context.
    """

    stage: str
    flops: int
    bytes: int
    timing: TimingResult
    peak: ResolvedPeak

    @property
    def achieved_tflops(self) -> float:
        return achieved_tflops(self.flops, self.timing.median_s)

    @property
    def mfu(self) -> float:
        return mfu(self.flops, self.timing.median_s, self.peak.tflops)

    @property
    def roofline(self) -> Roofline:
        return roofline(self.flops, self.bytes, self.peak.tflops, self.peak.bandwidth_gbps)

    @property
    def roofline_fraction(self) -> float:
        """Roofline-predicted time / measured median: 1.0 means the stage runs at its bound."""
        return self.roofline.predicted_s / self.timing.median_s

    def as_dict(self) -> dict[str, Any]:
        line = self.roofline
        return {"stage": self.stage, "matmul_flops": self.flops, "bytes": self.bytes,
                "timing": self.timing.as_dict(), "achieved_tflops": self.achieved_tflops, "mfu": self.mfu,
                "roofline_compute_s": line.compute_s, "roofline_memory_s": line.memory_s,
                "roofline_predicted_s": line.predicted_s, "bound": line.bound,
                "roofline_fraction": self.roofline_fraction,
                "peak": {"device_name": self.peak.device_name, "dtype": self.peak.dtype,
                         "tflops": self.peak.tflops, "bandwidth_gbps": self.peak.bandwidth_gbps,
                         "source": self.peak.source}}


def stage_perf(stage: str, cost: CostLike, timing: TimingResult, peak: ResolvedPeak) -> StagePerf:
    """A :class:`StagePerf` from an analytic cost (matmul FLOPs, total bytes) and a timing."""
    return StagePerf(stage, int(cost.matmul_flops), int(cost.total_bytes), timing, peak)


def sum_max_affine(a: float, b: float, c: float, d: float, n: int) -> float:
    """``sum(max(a + b*k, c + d*k) for k in range(n))`` in O(1): the two lines cross at most once,
    so the sum is two arithmetic series split at the crossing."""
    if n <= 0:
        return 0.0

    def series(p: float, q: float, k0: int, k1: int) -> float:
        m = k1 - k0
        return m * p + q * m * (k0 + k1 - 1) / 2 if m > 0 else 0.0

    e, g = a - c, b - d                 # first minus second at k: e + g*k
    if g == 0:
        return series(a, b, 0, n) if e >= 0 else series(c, d, 0, n)
    root = -e / g
    split = 0 if root <= 0 else n if root >= n else math.ceil(root)
    if g > 0:                           # the first term wins from the crossing on
        return series(c, d, 0, split) + series(a, b, split, n)
    return series(a, b, 0, split) + series(c, d, split, n)


# ------------------------------------------------------------------------------ the peak a roofline uses
@dataclass(frozen=True)
class PeakUsed:
    """A peak a roofline divides by: dense TFLOP/s for the dtype, GB/s, and where they came from."""

    label: str
    dtype: str
    tflops: float
    bandwidth_gbps: float
    source: str
    measured: bool = False
    datasheet: str | None = None    # beside a measured peak: the table's figures, when it knows the device

    @property
    def ridge(self) -> float:
        return self.tflops * 1e12 / (self.bandwidth_gbps * 1e9)

    def roof(self, flops: float, nbytes: float) -> Roofline:
        """The two roofline terms under this peak (:func:`harness.gpu.roofline.roofline`)."""
        return roofline(flops, nbytes, self.tflops, self.bandwidth_gbps)

    def time(self, flops: float, nbytes: float) -> tuple[float, float]:
        roof = self.roof(flops, nbytes)
        return roof.compute_s, roof.memory_s

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "dtype": self.dtype, "tflops": self.tflops, "bandwidth_gbps": self.bandwidth_gbps,
                "ridge_flop_per_byte": self.ridge, "source": self.source, "measured": self.measured,
                "datasheet": self.datasheet}


def table_peak(entry: Any, dtype: str) -> PeakUsed:
    return PeakUsed(entry.label, dtype, float(entry.tflops[dtype]), float(entry.bandwidth_gbps),
                    f"peak table: {entry.label}, dense {dtype}, datasheet bandwidth")


def measured_peak(peak: Any, *, tflops: float | None = None, bandwidth: float | None = None) -> PeakUsed:
    """A :class:`PeakUsed` from :class:`harness.gpu.achievable.MeasuredPeak` (overrides win, and say so)."""
    sheet = None
    if peak.datasheet_label:
        sheet = (f"{peak.datasheet_label}: {peak.datasheet_tflops:g} TFLOP/s dense {peak.dtype}, "
                 f"{peak.datasheet_bandwidth_gbps:g} GB/s")
    source = peak.source
    if tflops is not None:
        source += f"; TFLOP/s overridden to {tflops:g}"
    if bandwidth is not None:
        source += f"; bandwidth overridden to {bandwidth:g} GB/s"
    return PeakUsed(f"{peak.device} ({peak.device_name})", peak.dtype, tflops or peak.tflops,
                    bandwidth or peak.bandwidth_gbps, source, True, sheet)


def stage_bytes(cost: Any, convention: str) -> int:
    """``Cost.fused_bytes`` ("fused") or ``Cost.total_bytes`` ("op")."""
    if convention not in ("fused", "op"):
        raise ValueError(f"bytes convention {convention!r}: expected 'fused' or 'op'")
    return int(cost.fused_bytes if convention == "fused" else cost.total_bytes)
