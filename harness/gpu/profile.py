"""Profile a target end to end: build, prepare a page, time every stage, write the table.

The glue between :mod:`harness.targets` (what runs), :mod:`harness.analytic` (what it costs) and
:mod:`harness.gpu` (how long it takes, against which peak). ``harness profile`` is its CLI.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.gpu.measure import DEFAULT_DECODE_CONTEXTS, profile_stages
from harness.gpu.peaks import ResolvedPeak, UnknownDeviceError, device_name, dtype_key, resolve_peak
from harness.gpu.roofline import StagePerf
from harness.gpu.table import perf_table_json, perf_table_markdown, write_perf_report

__all__ = ["GPU_OUT_ENV", "gpu_out_dir", "Profile", "profile_target", "profile_peak", "unshare_expanded_parameters",
           "analytic_config", "find_page", "environment_info", "report_name"]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: Where the GPU suite writes its tables and raw counts (uploaded by the nightly workflow).
GPU_OUT_ENV = "HARNESS_GPU_OUT"
DEFAULT_GPU_OUT = "out/gpu"


def gpu_out_dir() -> Path:
    """``$HARNESS_GPU_OUT`` (default ``out/gpu``), created."""
    path = Path(os.environ.get(GPU_OUT_ENV) or DEFAULT_GPU_OUT)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Profile:
    """The rows of one profiling run and the facts that say what was run."""

    rows: list[StagePerf]
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def peak(self) -> ResolvedPeak:
        return self.rows[0].peak

    def title(self) -> str:
        c = self.context
        return f"{c.get('target')} {c.get('mode')} {c.get('page')} on {self.peak.device_name} ({self.peak.dtype})"

    def markdown(self) -> str:
        return perf_table_markdown(self.rows, title=self.title(), context=self.context)

    def as_json(self) -> dict[str, Any]:
        return perf_table_json(self.rows, context=self.context)

    def write(self, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
        return write_perf_report(self.rows, out_dir, name=name or report_name(self.context, self.peak),
                                 title=self.title(), context=self.context)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-").replace("--", "-")


def report_name(context: dict[str, Any], peak: ResolvedPeak) -> str:
    """``<kind>-perf-<device>-<target>-<mode>-<page>-<dtype>``, file-name safe; ``<kind>`` is
    ``gpu`` on CUDA, else the device type (``context["device"]``, e.g. ``cpu``)."""
    kind = str(context.get("device") or "cuda").split(":")[0]
    parts = [peak.device_name, str(context.get("target")), str(context.get("mode")), str(context.get("page")),
             peak.dtype]
    return f"{'gpu' if kind == 'cuda' else kind}-perf-" + "-".join(_slug(p) for p in parts)


def profile_peak(device: str, dtype: str, *, peak_tflops: float | None = None, bandwidth_gbps: float | None = None,
                 warmup: int = 3, repeats: int = 10) -> ResolvedPeak:
    """The peak a profile divides by. A CUDA device in the peak table (or both overrides, or
    their environment variables): as :func:`harness.gpu.peaks.resolve_peak` says. Any other device
    (a CPU, a GPU the table lacks): its achievable peak measured here, as ``harness report
    --measure`` does (:func:`harness.gpu.roofline.measured_peak`; an override given wins, and the
    source says so)."""
    try:
        return resolve_peak(device_name(device), dtype, peak_tflops=peak_tflops, bandwidth_gbps=bandwidth_gbps)
    except UnknownDeviceError:
        pass
    from harness.gpu.achievable import measure_peak
    from harness.gpu.roofline import measured_peak

    used = measured_peak(measure_peak(device, dtype, warmup=warmup, repeats=repeats),
                         tflops=peak_tflops, bandwidth=bandwidth_gbps)
    return ResolvedPeak(used.label, used.dtype, used.tflops, used.bandwidth_gbps, used.source)


def unshare_expanded_parameters(model: nn.Module) -> int:
    """Give every expanded (stride-0) parameter its own storage; return how many were copied.

    A full-size random build shares one expert tensor per layer, expanded over the experts: free on
    CPU, and values never change FLOPs, but a timing would read one expert's weights from cache
    instead of n_experts' from memory. Timing needs the real footprint.
    """
    copied = 0
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or param.numel() <= 1:
                continue
            if any(stride == 0 and size > 1 for stride, size in zip(param.stride(), param.shape)):
                module._parameters[name] = nn.Parameter(param.detach().contiguous(),
                                                        requires_grad=param.requires_grad)
                copied += 1
    return copied


def analytic_config(built: Any, model_path: str | Path | None = None) -> Any:
    """The ``config=`` for :func:`harness.analytic.stage_costs` matching a built model.

    ocr2: the built model's own configuration (small or a user's), through a JSON file the
    analytic loader reads; dsocr: the vendor directory (None = the built-in copy).
    """
    from harness.analytic.config import ocr2_dims_from_config

    if built.target == "dsocr":
        return str(model_path) if model_path is not None else None
    config = built.config
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    # straight from memory: no file in a shared directory that another user could plant or change
    return ocr2_dims_from_config(json.loads(json.dumps(data, default=str)))


def find_page(page: str) -> Any:
    """A built-in page by id (``letter``, ``a4``, ...; its image drawn if needed), or an image path."""
    from harness.inputs import pages

    if Path(page).suffix and Path(page).exists():
        return page
    known: list[str] = []
    for set_name in ("default", "grid", "corpus"):
        for candidate in pages.builtin_pages(set_name):
            if candidate.page_id == page:
                pages.ensure_page_image(candidate)  # fixture pages are drawn on demand
                return candidate
            known.append(candidate.page_id)
    raise ValueError(f"unknown page {page!r}: not an image file and not a built-in page "
                     f"({', '.join(sorted(set(known)))})")


def environment_info(device: str) -> dict[str, Any]:
    """Versions and the device, for the report header and the benchmark machine_info."""
    import transformers

    info: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "python": platform.python_version(), "device": device}
    dev = torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update({"gpu_name": props.name, "gpu_capability": f"{props.major}.{props.minor}",
                     "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def profile_target(target: str = "ocr2", *, device: str, dtype: torch.dtype = torch.bfloat16, mode: str = "base",
                   page: str = "letter", small: bool = False, stages: Sequence[str] | None = None,
                   decode_contexts: Sequence[int] = DEFAULT_DECODE_CONTEXTS, warmup: int = 3, repeats: int = 10,
                   peak_tflops: float | None = None, bandwidth_gbps: float | None = None,
                   attn_implementation: str | None = None, experts_implementation: str | None = None,
                   model_path: str | Path | None = None, trust_remote_code: bool = False,
                   bytes_convention: str = "fused") -> Profile:
    """Build ``target`` on ``device`` in ``dtype`` (random weights), time its stages on one page.

    The peak comes first (:func:`profile_peak`: the table, the overrides, or measured here), so a
    bad peak fails before minutes of building. The roofline divides ``bytes_convention``'s bytes
    (``fused``, the default, or ``op``) by the bandwidth, as ``harness report`` does
    (:func:`harness.gpu.roofline.stage_bytes`), so the two agree on each stage's bound.
    """
    from types import SimpleNamespace

    from harness.analytic import stage_costs
    from harness.gpu.roofline import stage_bytes
    from harness.targets import get_target

    stage_bytes(SimpleNamespace(fused_bytes=0, total_bytes=0), bytes_convention)   # a bad name fails here
    peak = profile_peak(device, dtype_key(dtype), peak_tflops=peak_tflops, bandwidth_gbps=bandwidth_gbps,
                        warmup=warmup, repeats=repeats)
    tgt = get_target(target, model_path=model_path, trust_remote_code=trust_remote_code)
    options: dict[str, Any] = {}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    if experts_implementation is not None:
        options["experts_implementation"] = experts_implementation
    built = tgt.build(device, dtype, small=small, **options)
    unshared = unshare_expanded_parameters(built.model)
    inputs = tgt.prepare(find_page(page), mode, device=device, dtype=dtype)
    config = analytic_config(built, model_path)
    itemsize = torch.empty((), dtype=dtype).element_size()

    def costs(decode_context: int | None):
        by_stage = stage_costs(target, inputs.layout, text_tokens=inputs.prompt_tokens, decode_context=decode_context,
                               config=config, dtype_bytes=itemsize, attn_implementation=built.attn_implementation)
        # what the rows read: matmul FLOPs, and the bytes of the convention the report uses
        return {stage: SimpleNamespace(matmul_flops=cost.matmul_flops, total_bytes=stage_bytes(cost, bytes_convention))
                for stage, cost in by_stage.items()}

    rows = profile_stages(tgt, built, inputs, costs=costs, peak=peak, device=device, stages=stages,
                          decode_contexts=decode_contexts, warmup=warmup, repeats=repeats)
    layout = inputs.layout
    context = {
        "target": target, "mode": mode, "page": page, "size": "small" if small else "full",
        "layout": f"{layout.width}x{layout.height}, {layout.n_crops} crops, {layout.image_tokens} image tokens, "
                  f"prefill L={inputs.seq_len}",
        "bytes": f"{bytes_convention} (the roofline's bytes; harness report --bytes)",
        "attention": built.attn_implementation, "experts": built.experts_implementation,
        "weights": built.weights + (f"; {unshared} expanded parameters given their own storage" if unshared else ""),
        **environment_info(device),
    }
    return Profile(rows, context)
