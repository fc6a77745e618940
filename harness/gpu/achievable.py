"""Achievable peak of the device you have: dense matmul FLOP/s for a dtype and copy bandwidth.

``harness peak`` and ``harness report --measure`` use this measured figure, never a guess; the
datasheet peak (:mod:`harness.gpu.peaks`) stands beside it where known. Method (a ladder of square
matmuls, best median; one large copy, bytes = 2 x size; the timing policy of
:func:`harness.gpu.timing.time_stage`): docs/report.md ("harness peak").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.gpu.peaks import DTYPE_KEYS, UnknownDeviceError, lookup_peak
from harness.gpu.timing import TimingResult, time_stage

__all__ = ["MeasuredPeak", "measure_peak", "matmul_sizes", "copy_bytes", "peak_markdown"]

#: Square matmul sizes tried per device type (the best median wins).
MATMUL_SIZES = {"cpu": (512, 1024, 2048), "cuda": (2048, 4096, 8192)}
#: Bytes of the copied buffer per device type.
COPY_BYTES = {"cpu": 64 * 2**20, "cuda": 1 * 2**30}


def matmul_sizes(device: str) -> tuple[int, ...]:
    return MATMUL_SIZES["cuda" if device.startswith("cuda") else "cpu"]


def copy_bytes(device: str) -> int:
    return COPY_BYTES["cuda" if device.startswith("cuda") else "cpu"]


@dataclass(frozen=True)
class MeasuredPeak:
    """What ``harness peak`` measured on one device for one dtype, and the datasheet beside it."""

    device: str                     # "cpu", "cuda:0"
    device_name: str                # torch.cuda.get_device_name, or the CPU's name
    dtype: str                      # a DTYPE_KEYS entry
    tflops: float                   # best median matmul rate over the size ladder (dense, 2 x MACs)
    matmul_n: int                   # the size that reached it
    bandwidth_gbps: float           # copy: 2 x bytes / median seconds
    matmul: dict[int, TimingResult] = field(default_factory=dict)
    copy: TimingResult | None = None
    copy_nbytes: int = 0
    threads: int | None = None      # torch.get_num_threads() on CPU
    datasheet_tflops: float | None = None
    datasheet_bandwidth_gbps: float | None = None
    datasheet_label: str | None = None

    @property
    def source(self) -> str:
        return (f"measured by harness peak on {self.device_name} ({self.dtype}: {self.matmul_n}^3 matmul, "
                f"{self.copy_nbytes / 2**20:.0f} MiB copy)")

    @property
    def ridge_intensity(self) -> float:
        return self.tflops * 1e12 / (self.bandwidth_gbps * 1e9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "device_name": self.device_name, "dtype": self.dtype,
            "tflops": self.tflops, "matmul_n": self.matmul_n, "bandwidth_gbps": self.bandwidth_gbps,
            "threads": self.threads, "source": self.source,
            "matmul": {str(n): {"flops": 2 * n ** 3, "tflops": 2 * n ** 3 / t.median_s / 1e12, **t.as_dict()}
                       for n, t in self.matmul.items()},
            "copy": None if self.copy is None else {"bytes_moved": 2 * self.copy_nbytes, **self.copy.as_dict()},
            "datasheet": None if self.datasheet_label is None else {
                "label": self.datasheet_label, "tflops": self.datasheet_tflops,
                "bandwidth_gbps": self.datasheet_bandwidth_gbps},
        }


def _torch_dtype(key: str) -> Any:
    import torch

    if key not in DTYPE_KEYS:
        raise ValueError(f"dtype {key!r}: expected one of {', '.join(DTYPE_KEYS)}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}[key]


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def measure_peak(device: str = "cpu", dtype: str = "fp32", *, sizes: tuple[int, ...] | None = None,
                 nbytes: int | None = None, warmup: int = 2, repeats: int = 5) -> MeasuredPeak:
    """Measure the achievable dense matmul rate for ``dtype`` and the copy bandwidth on ``device``."""
    import torch

    from harness.gpu.peaks import device_name

    tdtype = _torch_dtype(dtype)
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: a peak is measured on cpu or cuda[:N]")
    sizes = tuple(sizes or matmul_sizes(device))
    nbytes = int(nbytes or copy_bytes(device))
    name = device_name(device) if dev.type == "cuda" else _cpu_name()
    previous = torch.get_float32_matmul_precision()
    if dtype in ("tf32", "fp32"):
        torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
    try:
        generator = torch.Generator(device="cpu").manual_seed(0)
        matmul: dict[int, TimingResult] = {}
        with torch.inference_mode():
            for n in sizes:
                a = torch.randn(n, n, generator=generator).to(device=dev, dtype=tdtype)
                b = torch.randn(n, n, generator=generator).to(device=dev, dtype=tdtype)
                out = torch.empty(n, n, device=dev, dtype=tdtype)
                matmul[n] = time_stage(lambda a=a, b=b, out=out: torch.matmul(a, b, out=out), warmup, repeats,
                                       device=device)
                del a, b, out
            elements = max(1, nbytes // 4)
            src = torch.ones(elements, device=dev, dtype=torch.float32)
            dst = torch.empty_like(src)
            copy = time_stage(lambda: dst.copy_(src), warmup, repeats, device=device)
            del src, dst
    finally:
        torch.set_float32_matmul_precision(previous)
    best_n = max(matmul, key=lambda n: 2 * n ** 3 / matmul[n].median_s)
    tflops = 2 * best_n ** 3 / matmul[best_n].median_s / 1e12
    bandwidth = 2 * elements * 4 / copy.median_s / 1e9
    sheet = None
    if dev.type == "cuda":
        try:
            sheet = lookup_peak(name)
        except UnknownDeviceError:
            sheet = None
    return MeasuredPeak(
        device=str(dev), device_name=name, dtype=dtype, tflops=tflops, matmul_n=best_n,
        bandwidth_gbps=bandwidth, matmul=matmul, copy=copy, copy_nbytes=elements * 4,
        threads=torch.get_num_threads() if dev.type == "cpu" else None,
        datasheet_tflops=None if sheet is None else sheet.tflops[dtype],
        datasheet_bandwidth_gbps=None if sheet is None else sheet.bandwidth_gbps,
        datasheet_label=None if sheet is None else sheet.label)


def peak_markdown(peak: MeasuredPeak) -> str:
    """The measurement as a short Markdown table (``harness peak``'s output)."""
    lines = [f"Achievable peak on {peak.device} ({peak.device_name}), {peak.dtype}"
             + (f", {peak.threads} threads" if peak.threads else ""), "",
             "| what | size | median | IQR | rate |", "| --- | ---: | ---: | ---: | ---: |"]
    for n, t in peak.matmul.items():
        mark = " (best)" if n == peak.matmul_n else ""
        lines.append(f"| matmul {peak.dtype}{mark} | {n}x{n}x{n} | {t.median_s * 1e3:.3f} ms | {t.iqr_s * 1e3:.3f} ms "
                     f"| {2 * n ** 3 / t.median_s / 1e12:.4g} TFLOP/s |")
    if peak.copy is not None:
        t = peak.copy
        lines.append(f"| copy | {peak.copy_nbytes / 2**20:.0f} MiB | {t.median_s * 1e3:.3f} ms | {t.iqr_s * 1e3:.3f} ms "
                     f"| {peak.bandwidth_gbps:.4g} GB/s (read + write) |")
    lines += ["", f"Achievable: **{peak.tflops:.4g} TFLOP/s** dense {peak.dtype} matmul (FLOPs = 2 x MACs), "
              f"**{peak.bandwidth_gbps:.4g} GB/s** copy bandwidth; ridge {peak.ridge_intensity:.3g} FLOP/B."]
    if peak.datasheet_label:
        lines.append(f"Datasheet ({peak.datasheet_label}): {peak.datasheet_tflops:g} TFLOP/s dense {peak.dtype}, "
                     f"{peak.datasheet_bandwidth_gbps:g} GB/s; measured = {peak.tflops / peak.datasheet_tflops:.0%} "
                     f"and {peak.bandwidth_gbps / peak.datasheet_bandwidth_gbps:.0%} of it.")
    else:
        lines.append("Datasheet: none in the peak table for this device (harness/gpu/peaks.py).")
    return "\n".join(lines) + "\n"
