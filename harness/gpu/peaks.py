"""Dense peak throughput and memory bandwidth per GPU, matched on the name torch reports.

Every TFLOP/s figure is the **dense** rate (FLOPs = 2 x MACs) for the dtype's matmul path as torch
runs it, bandwidth in GB/s. An unknown device is an error naming the device and the override
(:data:`PEAK_TFLOPS_ENV` / :data:`PEAK_BANDWIDTH_ENV`, or ``peak_tflops=`` / ``bandwidth_gbps=``),
never a silent default. The table and its conventions: docs/gpu.md ("Peak table").
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DTYPE_KEYS",
    "PEAK_TFLOPS_ENV",
    "PEAK_BANDWIDTH_ENV",
    "DevicePeak",
    "ResolvedPeak",
    "UnknownDeviceError",
    "PEAKS",
    "known_device_names",
    "peak_table_markdown",
    "lookup_peak",
    "resolve_peak",
    "dtype_key",
    "device_name",
]

#: dtype keys of :attr:`DevicePeak.tflops`.
DTYPE_KEYS: tuple[str, ...] = ("bf16", "fp16", "tf32", "fp32")
#: Dense peak TFLOP/s for the measured dtype; overrides the table (required for unknown devices).
PEAK_TFLOPS_ENV = "HARNESS_PEAK_TFLOPS"
#: Memory bandwidth in GB/s; overrides the table (required for unknown devices).
PEAK_BANDWIDTH_ENV = "HARNESS_PEAK_BANDWIDTH_GBPS"


class UnknownDeviceError(LookupError):
    """A device that is not in :data:`PEAKS` and has no override."""


@dataclass(frozen=True)
class DevicePeak:
    """One GPU SKU: dense TFLOP/s per dtype key, bandwidth in GB/s, the names torch reports."""

    label: str
    torch_names: tuple[str, ...]
    tflops: Mapping[str, float]
    bandwidth_gbps: float
    capability: tuple[int, int]
    source: str

    def __post_init__(self) -> None:
        missing = [key for key in DTYPE_KEYS if key not in self.tflops]
        if missing:
            raise ValueError(f"DevicePeak {self.label!r}: no TFLOP/s for {missing}")


def _peak(label: str, names: tuple[str, ...], *, bf16: float, fp16: float, tf32: float, fp32: float,
          bandwidth: float, capability: tuple[int, int], source: str) -> DevicePeak:
    return DevicePeak(label, names, {"bf16": bf16, "fp16": fp16, "tf32": tf32, "fp32": fp32},
                      bandwidth, capability, source)


_A100_SOURCE = ("NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4): "
                "TF32 156 | BF16/FP16 312 TFLOPS dense (312*/624* sparse), FP32 19.5; "
                "the PCIe and SXM columns list the same peaks")
_H100_SOURCE = ("NVIDIA H100 Tensor Core GPU datasheet: figures marked * are with sparsity, "
                "'specifications 1/2 lower without sparsity'")
_H200_SOURCE = ("NVIDIA H200 Tensor Core GPU datasheet: figures marked * are with sparsity, "
                "'specifications 1/2 lower without sparsity'")

#: The table. Datasheet sparse figures are written as ``<sparse> / 2`` so the halving is visible.
PEAKS: tuple[DevicePeak, ...] = (
    # A100 datasheet: HBM2 40GB 1,555 GB/s (SXM and PCIe); 80GB HBM2e 2,039 GB/s SXM, 1,935 GB/s PCIe.
    _peak("A100 SXM4 40GB", ("NVIDIA A100-SXM4-40GB",),
          bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5, bandwidth=1555.0, capability=(8, 0),
          source=_A100_SOURCE),
    _peak("A100 SXM4 80GB", ("NVIDIA A100-SXM4-80GB",),
          bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5, bandwidth=2039.0, capability=(8, 0),
          source=_A100_SOURCE),
    _peak("A100 PCIe 40GB", ("NVIDIA A100-PCIE-40GB",),
          bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5, bandwidth=1555.0, capability=(8, 0),
          source=_A100_SOURCE),
    _peak("A100 PCIe 80GB", ("NVIDIA A100 80GB PCIe",),
          bf16=312.0, fp16=312.0, tf32=156.0, fp32=19.5, bandwidth=1935.0, capability=(8, 0),
          source=_A100_SOURCE),
    # H100 SXM: BF16/FP16 1,979*, TF32 989*, FP32 67, 3.35 TB/s HBM3.
    _peak("H100 SXM5 80GB", ("NVIDIA H100 80GB HBM3",),
          bf16=1979.0 / 2, fp16=1979.0 / 2, tf32=989.0 / 2, fp32=67.0, bandwidth=3350.0,
          capability=(9, 0), source=_H100_SOURCE + " (H100 SXM column)"),
    # H100 PCIe: BF16/FP16 1,513*, TF32 756*, FP32 51, 2.0 TB/s HBM2e.
    _peak("H100 PCIe 80GB", ("NVIDIA H100 PCIe",),
          bf16=1513.0 / 2, fp16=1513.0 / 2, tf32=756.0 / 2, fp32=51.0, bandwidth=2000.0,
          capability=(9, 0), source=_H100_SOURCE + " (H100 PCIe column)"),
    # H100 NVL (per GPU, 94GB): BF16/FP16 1,671*, TF32 835*, FP32 60, 3.9 TB/s HBM3.
    _peak("H100 NVL 94GB", ("NVIDIA H100 NVL",),
          bf16=1671.0 / 2, fp16=1671.0 / 2, tf32=835.0 / 2, fp32=60.0, bandwidth=3900.0,
          capability=(9, 0), source=_H100_SOURCE + " (H100 NVL column, per GPU)"),
    # H200 SXM: BF16/FP16 1,979*, TF32 989*, FP32 67, 4.8 TB/s HBM3e, 141GB.
    _peak("H200 SXM 141GB", ("NVIDIA H200",),
          bf16=1979.0 / 2, fp16=1979.0 / 2, tf32=989.0 / 2, fp32=67.0, bandwidth=4800.0,
          capability=(9, 0), source=_H200_SOURCE + " (H200 SXM column)"),
    # H200 NVL: BF16/FP16 1,671*, TF32 835*, FP32 60, 4.8 TB/s.
    _peak("H200 NVL 141GB", ("NVIDIA H200 NVL",),
          bf16=1671.0 / 2, fp16=1671.0 / 2, tf32=835.0 / 2, fp32=60.0, bandwidth=4800.0,
          capability=(9, 0), source=_H200_SOURCE + " (H200 NVL column)"),
    # L40S datasheet: BF16/FP16 362.05 | 733*, TF32 183 | 366*, FP32 91.6, 864 GB/s GDDR6.
    _peak("L40S 48GB", ("NVIDIA L40S",),
          bf16=362.05, fp16=362.05, tf32=183.0, fp32=91.6, bandwidth=864.0, capability=(8, 9),
          source="NVIDIA L40S datasheet: BF16/FP16 tensor 362.05 dense (733* sparse), TF32 183 (366*), "
                 "FP32 91.6 TFLOPS, 864 GB/s"),
    # Ada whitepaper appendix (RTX 4090): FP16/BF16 tensor with FP32 accumulate 165.2 (330.4 sparse),
    # TF32 82.6 (165.2 sparse), FP32 82.6; 1,008 GB/s GDDR6X. (FP16 accumulate: 330.3, not torch's path.)
    _peak("GeForce RTX 4090 24GB", ("NVIDIA GeForce RTX 4090",),
          bf16=330.4 / 2, fp16=330.4 / 2, tf32=165.2 / 2, fp32=82.6, bandwidth=1008.0, capability=(8, 9),
          source="NVIDIA Ada Lovelace GPU architecture whitepaper, appendix table (RTX 4090), "
                 "FP32-accumulate tensor rates"),
    # RTX Blackwell whitepaper appendix (RTX 5090): FP16/BF16 tensor with FP32 accumulate 209.5
    # (419 sparse), TF32 104.8 (209.5 sparse), FP32 104.8; 1,792 GB/s GDDR7.
    _peak("GeForce RTX 5090 32GB", ("NVIDIA GeForce RTX 5090",),
          bf16=419.0 / 2, fp16=419.0 / 2, tf32=209.5 / 2, fp32=104.8, bandwidth=1792.0, capability=(12, 0),
          source="NVIDIA RTX Blackwell GPU architecture whitepaper, appendix table (RTX 5090), "
                 "FP32-accumulate tensor rates"),
)


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def _index() -> dict[str, DevicePeak]:
    index: dict[str, DevicePeak] = {}
    for peak in PEAKS:
        for name in peak.torch_names:
            key = _normalise(name)
            if key in index:
                raise RuntimeError(f"duplicate device name {name!r} in PEAKS "
                                   f"({index[key].label!r} and {peak.label!r})")
            index[key] = peak
    return index


_BY_NAME = _index()


def known_device_names() -> tuple[str, ...]:
    """Every ``torch.cuda.get_device_name()`` string the table knows, in table order."""
    return tuple(name for peak in PEAKS for name in peak.torch_names)


def _override_hint() -> str:
    return (f"set {PEAK_TFLOPS_ENV}=<dense TFLOP/s for the dtype> and {PEAK_BANDWIDTH_ENV}=<GB/s> "
            "(or pass --peak-tflops / --peak-bandwidth), or add the device to PEAKS in harness/gpu/peaks.py")


def lookup_peak(device_name: str) -> DevicePeak:
    """The table entry for a ``torch.cuda.get_device_name()`` string (case and spacing ignored)."""
    peak = _BY_NAME.get(_normalise(device_name))
    if peak is not None:
        return peak
    known = known_device_names()
    close = difflib.get_close_matches(device_name, known, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(repr(n) for n in close)}?" if close else ""
    raise UnknownDeviceError(
        f"Unknown device {device_name!r}: no dense peak TFLOP/s or bandwidth for it.{hint}\n"
        f"To measure MFU on it, {_override_hint()}.\nKnown: {', '.join(known)}")


@dataclass(frozen=True)
class ResolvedPeak:
    """The peak a measurement is divided by: dense TFLOP/s for ``dtype``, GB/s, and where they came from."""

    device_name: str
    dtype: str
    tflops: float
    bandwidth_gbps: float
    source: str

    @property
    def flops_per_s(self) -> float:
        return self.tflops * 1e12

    @property
    def bytes_per_s(self) -> float:
        return self.bandwidth_gbps * 1e9

    @property
    def ridge_intensity(self) -> float:
        """FLOP/byte above which the roofline is compute bound."""
        return self.flops_per_s / self.bytes_per_s


def peak_table_markdown() -> str:
    """:data:`PEAKS` as a Markdown table (docs/gpu.md embeds exactly this text)."""
    lines = ["| GPU | `torch.cuda.get_device_name()` | bf16 | fp16 | tf32 | fp32 | GB/s | sm |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for peak in PEAKS:
        t = peak.tflops
        names = ", ".join(f"`{n}`" for n in peak.torch_names)
        lines.append(f"| {peak.label} | {names} | {t['bf16']:g} | {t['fp16']:g} | {t['tf32']:g} | {t['fp32']:g} "
                     f"| {peak.bandwidth_gbps:g} | {peak.capability[0]}.{peak.capability[1]} |")
    return "\n".join(lines) + "\n"


def _positive(value: object, what: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return number


def resolve_peak(device_name: str, dtype: "str | torch.dtype", *, peak_tflops: float | str | None = None,
                 bandwidth_gbps: float | str | None = None,
                 env: Mapping[str, str] | None = None) -> ResolvedPeak:
    """Dense peak and bandwidth for ``device_name`` running ``dtype``.

    Precedence: the explicit arguments (the pytest options), then :data:`PEAK_TFLOPS_ENV` /
    :data:`PEAK_BANDWIDTH_ENV`, then :data:`PEAKS`. A device not in the table needs both overrides.
    """
    env = os.environ if env is None else env
    key = dtype if isinstance(dtype, str) else dtype_key(dtype)
    if key not in DTYPE_KEYS:
        raise ValueError(f"dtype key {key!r}: expected one of {DTYPE_KEYS}")
    tflops_given = peak_tflops if peak_tflops is not None else env.get(PEAK_TFLOPS_ENV) or None
    bandwidth_given = bandwidth_gbps if bandwidth_gbps is not None else env.get(PEAK_BANDWIDTH_ENV) or None
    tflops_from = "--peak-tflops" if peak_tflops is not None else PEAK_TFLOPS_ENV
    bandwidth_from = "--peak-bandwidth" if bandwidth_gbps is not None else PEAK_BANDWIDTH_ENV
    table: DevicePeak | None
    try:
        table = lookup_peak(device_name)
    except UnknownDeviceError as err:
        if tflops_given is None or bandwidth_given is None:
            missing = [n for n, v in ((PEAK_TFLOPS_ENV, tflops_given), (PEAK_BANDWIDTH_ENV, bandwidth_given))
                       if v is None]
            raise UnknownDeviceError(f"{err}\n(missing for this run: {', '.join(missing)})") from None
        table = None
    sources = []
    if tflops_given is not None:
        tflops = _positive(tflops_given, tflops_from)
        sources.append(f"{tflops_from}={tflops:g}")
    else:
        assert table is not None
        tflops = table.tflops[key]
        sources.append(f"table {table.label} {key}")
    if bandwidth_given is not None:
        bandwidth = _positive(bandwidth_given, bandwidth_from)
        sources.append(f"{bandwidth_from}={bandwidth:g}")
    else:
        assert table is not None
        bandwidth = table.bandwidth_gbps
        sources.append(f"table {table.label} bandwidth")
    return ResolvedPeak(device_name, key, tflops, bandwidth, "; ".join(sources))


def dtype_key(dtype: "torch.dtype", *, float32_matmul_precision: str | None = None) -> str:
    """The :data:`DTYPE_KEYS` entry whose peak a matmul in ``dtype`` runs at.

    fp32 is ``tf32`` when ``torch.get_float32_matmul_precision()`` is "high" or "medium".
    """
    import torch

    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    if dtype == torch.float32:
        precision = float32_matmul_precision or torch.get_float32_matmul_precision()
        return "fp32" if precision == "highest" else "tf32"
    raise ValueError(f"no peak-table entry for dtype {dtype}: expected bfloat16, float16 or float32")


def device_name(device: "str | torch.device") -> str:
    """The name the peak table is keyed on: ``torch.cuda.get_device_name`` for ``cuda[:N]``.

    Any other device gets its type (``"cpu"``), which is never in the table, so MFU on it needs
    the overrides.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return dev.type
