"""report.md's roofline and measured-time sections (from :class:`harness.report.perf.PerfResult`)."""

from __future__ import annotations

from typing import Any

from harness.gpu.table import fmt_ms as _ms
from harness.report import units

__all__ = ["perf_lines"]


_md_table = units.md_table


def _pages(pages: Any) -> str:
    return units.pages_text(pages, 3)


def _rate(flops_per_s: float) -> str:
    return units.flop(flops_per_s) + "/s"


def perf_lines(collected: Any, perf: Any, plots: dict[str, str]) -> list[str]:
    lines: list[str] = [f"**Warning:** {warning}" + "\n" for warning in getattr(perf, "warnings", [])]
    multi = len(collected.plan.targets) > 1
    if perf.gpu_peak is not None:
        peak = perf.gpu_peak
        lines += [f"## Roofline on {peak.label} (predicted, offline)", "",
                  f"Peak: **{peak.tflops:g} TFLOP/s** dense {peak.dtype}, **{peak.bandwidth_gbps:g} GB/s**; ridge "
                  f"{peak.ridge:.0f} FLOP/B ({peak.source}).", "", f"*Assumptions.* {perf.assumptions}", ""]
        rows = []
        for r in perf.roofline:
            rows.append([_pages(r.pages), f"{r.target} {r.mode}" if multi else r.mode, r.label,
                         units.flop(r.flops), units.flop(r.causal_flops) if r.causal_flops != r.flops else "=",
                         units.nbytes(r.bytes), units.sig(r.intensity, 3), r.bound, _ms(r.predicted_s)])
        lines += _md_table(["pages", "mode", "stage", "matmul FLOPs (executed)", "causal convention", "bytes",
                            "FLOP/B", "bound", "predicted ms"], rows, align="lll" + "r" * 6)
        lines.append("")
        for name, caption in plots.items():
            if name.startswith("roofline_") and "table" in name:
                lines += [units.md_image(caption, name), ""]
    if perf.device_peak is not None or perf.problems:
        ctx = perf.measured_context
        lines += [f"## Measured time and MFU on {ctx.get('device', perf.plan.measure_device)}", ""]
        peak = perf.device_peak
        if peak is not None:
            lines.append(f"Achievable peak (measured, `harness peak`): **{peak.tflops:.4g} TFLOP/s** dense "
                         f"{peak.dtype} matmul, **{peak.bandwidth_gbps:.4g} GB/s** copy; ridge {peak.ridge:.3g} FLOP/B. "
                         f"{peak.source}."
                         + (f" Datasheet: {peak.datasheet}." if peak.datasheet else
                            " Datasheet: none in the peak table for this device."))
            lines.append("")
        if ctx:
            lines.append("Timed: " + "; ".join(f"{k} {v}" for k, v in ctx.items()) + ". Each stage: warm-up, then "
                         "repeats; median and inter-quartile range (CUDA events on CUDA, the monotonic clock "
                         "elsewhere). MFU = analytic matmul FLOPs / median time / the achievable peak; the causal "
                         "convention column halves the prefill's QK^T and AV work (flash-attn / Megatron MFU).")
            lines.append("")
        rows = []
        for m in perf.measured:
            rows.append([f"{m.target} {m.mode}" if multi else m.mode, m.label, units.flop(m.flops),
                         _ms(m.timing.median_s), _ms(m.timing.iqr_s), _rate(m.achieved_flops), f"{m.mfu:.1%}",
                         f"{m.mfu_causal:.1%}" if m.causal_flops != m.flops else "=", _ms(m.predicted_s), m.bound,
                         f"{m.timing.median_s / m.predicted_s:.2f}×"])
        if rows:
            lines += _md_table(["mode", "stage", "matmul FLOPs", "median ms", "IQR ms", "achieved", "MFU",
                                "MFU (causal convention)", "roofline ms", "bound", "measured / roofline"], rows,
                               align="ll" + "r" * 7 + "lr")
            lines.append("")
        for problem in perf.problems:
            lines += [f"**{problem}**", ""]
        for name, caption in plots.items():
            if name.startswith("roofline_") and "measured" in name:
                lines += [units.md_image(caption, name), ""]
    return lines
