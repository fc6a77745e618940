"""report.md's roofline and measured-time sections (from :class:`harness.report.perf.PerfResult`)."""

from __future__ import annotations

from typing import Any

from harness.gpu.table import fmt_ms as _ms
from harness.report import units

__all__ = ["perf_lines", "serving_lines"]


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
        nbytes = "bytes (op-level, experts loop)" if perf.plan.bytes_convention == "op" else "bytes (fused)"
        lines += _md_table(["pages", "mode", "stage", "matmul FLOPs (executed)", "causal convention", nbytes,
                            "FLOP/B", "bound", "predicted ms"], rows, align="lll" + "r" * 6)
        lines.append("")
        for name, caption in plots.items():
            if (name.startswith("roofline_") and "table" in name) or name.startswith("request_vs_tokens_"):
                lines += [units.md_image(caption, name), ""]
    if perf.serving:
        lines += serving_lines(perf, plots)
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


def _engine_same(s: Any) -> bool:
    """Whether the serving engine's rows of one mode are the vendor's, figure for figure."""
    def strip(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "execution"}

    rows = {r.execution: [] for r in s.rows}
    for r in s.rows:
        rows[r.execution].append(strip(r.as_dict()))
    caps = {k: strip(v.as_dict()) for k, v in s.capacity.items()}
    return rows.get("vendor") == rows.get("engine") and caps.get("vendor") == caps.get("engine")


def serving_lines(perf: Any, plots: dict[str, str] | None = None, *, heading: str = "##") -> list[str]:
    """The "serving" section: memory and capacity per mode, then throughput against batch per mode
    and execution, rows beyond the card's capacity marked and left empty."""
    from harness.gpu.serving import BATCH_ASSUMPTIONS, EXECUTION_LABELS, RESERVE_BYTES

    peak = perf.gpu_peak
    lines = [f"{heading} Serving on {peak.label}: throughput against batch (predicted upper bound, offline)", "",
             f"*Batch model.* {BATCH_ASSUMPTIONS}", "",
             "*Executions.* " + "; ".join(f"**{k}**: {v}" for k, v in EXECUTION_LABELS.items())
             + ". The serving-engine rows are an option beside the vendor's; no verified count includes them.", ""]
    multi = len({s.target for s in perf.serving}) > 1
    same = {id(s): _engine_same(s) for s in perf.serving}
    mem = []
    for s in perf.serving:
        for execution, cap in s.capacity.items():
            if execution == "engine" and same[id(s)]:
                continue
            mem.append([f"{s.target} {s.mode}" if multi else s.mode, execution, str(s.prefill_length),
                        str(cap.context), f"{units.nbytes(s.kv_bytes_per_token)} ({s.attention_kind})",
                        units.nbytes(cap.kv_bytes_per_sequence), units.nbytes(s.weight_bytes),
                        units.nbytes(cap.workspace_bytes), f"{cap.memory_bytes / 2**30:g} GiB", str(cap.max_concurrency)])
    lines += [f"Memory: weights are every parameter at {peak.dtype}; the KV cache per token comes from the LM config "
              "(2 x layers x kv_heads x head_dim x dtype bytes); the workspace is an assumption: "
              f"{RESERVE_BYTES >> 30} GiB reserve + one batched prefill's logits and widest MLP activation, at the "
              "largest batch. Context = L + new tokens.", ""]
    lines += _md_table(["mode", "execution", "L", "context", "KV / token", "KV / sequence", "weights",
                        "workspace", "card memory", "max concurrency"], mem, align="ll" + "r" * 8)
    lines.append("")
    rows = []
    for s in perf.serving:
        for r in s.rows:
            if r.execution == "engine" and same[id(s)]:
                continue
            name = f"{s.target} {s.mode}" if multi else s.mode
            cap = s.capacity[r.execution].max_concurrency
            tag = f"{r.batch}" + (" (max fit)" if r.batch == cap else "")
            if not r.fits:
                rows.append([name, r.execution, tag, f"does not fit (max {cap})"] + [""] * 7)
                continue
            rows.append([name, r.execution, tag, _ms(r.ttft_s), _ms(r.tpot_s), _ms(r.batch_s),
                         units.sig(r.pages_per_s, 4), f"{r.pages_per_day:,.0f}", f"{r.tokens_per_s:,.0f}",
                         r.stage_bound["decode"], units.flop(r.request_flops)])
    new_tokens = perf.serving[0].new_tokens
    lines += [f"Throughput per GPU, {new_tokens} output tokens per page (`--new-tokens`), page "
              f"{perf.serving[0].page!r}:", ""]
    lines += _md_table(["mode", "execution", "batch", "TTFT ms", "TPOT ms", "ms per batch", "pages/s", "pages/day",
                        "output tokens/s", "decode bound", "matmul FLOPs / page"], rows, align="lll" + "r" * 6 + "lr")
    lines.append("")
    alike = sorted({s.target for s in perf.serving if same[id(s)]})
    if alike:
        lines += [f"The serving engine executes what the vendor code does for {', '.join(alike)} under these "
                  "conventions (its prefill already keeps one logits row per sequence, and the byte convention "
                  "already assumes a static KV cache), so only its vendor rows are shown.", ""]
    for s in perf.serving:
        name = f"{s.target} {s.mode}" if multi else s.mode
        shown: dict[str, list[str]] = {}
        for execution, b in s.decode_bound.items():
            if execution == "engine" and same[id(s)]:
                continue
            if b.batch is not None:
                text = f"decode turns compute-bound at batch **{b.batch}**"
            else:
                text = (f"decode never turns compute-bound (up to batch {b.limit}): as the batch grows its intensity "
                        f"tends to {b.intensity_limit:.3g} FLOP/B, below the ridge {b.ridge:.3g} FLOP/B, because "
                        "each sequence reads its own KV cache every step")
            kv = ("" if b.kv_over_weights_batch is None else
                  f"; from batch {b.kv_over_weights_batch} the KV-cache read exceeds the weights read")
            shown.setdefault(f"context {b.context}: {text}{kv}", []).append(execution)
        for text, executions in shown.items():
            lines.append(f"- {name} ({' and '.join(executions)}), {text}.")
    lines.append("")
    for name, caption in (plots or {}).items():
        if name.startswith("serving_"):
            lines += [units.md_image(caption, name), ""]
    return lines
