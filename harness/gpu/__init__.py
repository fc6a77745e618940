"""GPU side of the harness: stage timing, the dense peak table, MFU and the roofline.

Everything here imports and unit-tests on a CPU-only machine; only :func:`time_stage` with a
``cuda`` device and :func:`device_name` of a ``cuda`` device need a GPU. Heavier pieces are
submodules, imported on use: :mod:`harness.gpu.measure` (time a target's stages),
:mod:`harness.gpu.profile` (build + prepare + time + table; ``harness profile``), :mod:`harness.gpu.achievable` (``harness peak``),
:mod:`harness.gpu.compare` (a stage counted on CUDA and on meta, against the analytic model).
"""

from harness.gpu.device import DEFAULT_CLASS, DeviceClass, device_class, format_device_class, select_expectation
from harness.gpu.peaks import (
    DTYPE_KEYS,
    PEAK_BANDWIDTH_ENV,
    PEAK_TFLOPS_ENV,
    PEAKS,
    DevicePeak,
    ResolvedPeak,
    UnknownDeviceError,
    device_name,
    dtype_key,
    known_device_names,
    lookup_peak,
    peak_table_markdown,
    resolve_peak,
)
from harness.gpu.roofline import Roofline, StagePerf, achieved_tflops, mfu, roofline, stage_perf
from harness.gpu.table import perf_table_json, perf_table_markdown, write_perf_report
from harness.gpu.timing import TimingResult, time_stage, timing_from_samples
from harness.gpu.workers import WorkerDevice, parse_visible_devices, worker_device

__all__ = [
    "DEFAULT_CLASS", "DeviceClass", "device_class", "format_device_class", "select_expectation",
    "DTYPE_KEYS", "PEAK_BANDWIDTH_ENV", "PEAK_TFLOPS_ENV", "PEAKS", "DevicePeak", "ResolvedPeak",
    "UnknownDeviceError", "device_name", "dtype_key", "known_device_names", "lookup_peak", "peak_table_markdown", "resolve_peak",
    "Roofline", "StagePerf", "achieved_tflops", "mfu", "roofline", "stage_perf",
    "perf_table_json", "perf_table_markdown", "write_perf_report",
    "TimingResult", "time_stage", "timing_from_samples",
    "WorkerDevice", "parse_visible_devices", "worker_device",
]
