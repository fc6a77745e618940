"""The per-stage performance table (Markdown for ``reports/``, JSON beside it)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.gpu.roofline import StagePerf

__all__ = ["COLUMNS", "perf_table_markdown", "perf_table_json", "write_perf_report"]

#: Column headers of :func:`perf_table_markdown`, in order.
COLUMNS: tuple[str, ...] = (
    "stage", "GFLOP (matmul)", "MB moved", "median ms", "IQR ms", "TFLOP/s", "MFU",
    "roofline ms", "bound", "measured / roofline",
)


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds, to a precision that follows the size (the perf tables' cells)."""
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.3f}"
    return f"{ms:.4f}"


def _num(value: float) -> str:
    """Two decimals from 1 up, three significant digits below (CPU runs are far under 1 TFLOP/s)."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _row(perf: StagePerf) -> tuple[str, ...]:
    line = perf.roofline
    return (
        perf.stage,
        f"{perf.flops / 1e9:.3f}",
        f"{perf.bytes / 1e6:.1f}",
        fmt_ms(perf.timing.median_s),
        fmt_ms(perf.timing.iqr_s),
        _num(perf.achieved_tflops),
        f"{perf.mfu:.1%}",
        fmt_ms(line.predicted_s),
        line.bound,
        f"{1 / perf.roofline_fraction:.2f}×",        # as harness report states it
    )


def perf_table_markdown(rows: Sequence[StagePerf], *, title: str | None = None,
                        context: Mapping[str, object] | None = None) -> str:
    """A Markdown table, one row per stage: time median/IQR, TFLOP/s, MFU, roofline time and bound.

    The header states the device, the dtype, the peak and bandwidth used and their source, and how
    the time was taken; ``context`` adds lines (target, mode, page, versions...).
    """
    if not rows:
        raise ValueError("perf_table_markdown needs at least one row")
    peaks = {(r.peak.device_name, r.peak.dtype, r.peak.tflops, r.peak.bandwidth_gbps, r.peak.source) for r in rows}
    if len(peaks) != 1:
        raise ValueError(f"rows measured against different peaks: {sorted(peaks)}")
    peak = rows[0].peak
    timing = rows[0].timing
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines.append(f"- device: {peak.device_name}; dtype: {peak.dtype}")
    lines.append(f"- dense peak: {peak.tflops:g} TFLOP/s; bandwidth: {peak.bandwidth_gbps:g} GB/s "
                 f"(ridge {peak.ridge_intensity:.0f} FLOP/B); source: {peak.source}")
    lines.append(f"- time: {timing.clock}, {timing.warmup} warm-up, {timing.repeats} repeats, "
                 "median and inter-quartile range")
    for key, value in (context or {}).items():
        lines.append(f"- {key}: {value}")
    lines.append("- FLOPs: analytic matmul class (2 per multiply-add); MFU = TFLOP/s / dense peak; "
                 "roofline = max(FLOPs / peak, bytes / bandwidth)")
    lines.append("")
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * 7 + ["---", "---:"]) + " |")
    for perf in rows:
        lines.append("| " + " | ".join(_row(perf)) + " |")
    return "\n".join(lines) + "\n"


def perf_table_json(rows: Sequence[StagePerf], *, context: Mapping[str, object] | None = None) -> dict[str, Any]:
    """The same table as plain data."""
    return {"context": dict(context or {}), "rows": [r.as_dict() for r in rows]}


def write_perf_report(rows: Sequence[StagePerf], out_dir: str | Path, *, name: str = "gpu-perf",
                      title: str | None = None, context: Mapping[str, object] | None = None) -> tuple[Path, Path]:
    """Write ``<name>.md`` and ``<name>.json`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{name}.md"
    js = out / f"{name}.json"
    md.write_text(perf_table_markdown(rows, title=title, context=context), encoding="utf-8")
    js.write_text(json.dumps(perf_table_json(rows, context=context), indent=2, default=str) + "\n",
                  encoding="utf-8")
    return md, js
