"""The report's plots (PNG, matplotlib's Agg backend, never a display).

Per target:

* ``stage_bars_<target>_<page>.png``: per mode and stage, the analytic FLOPs and each counter's,
  stacked by op key (element-wise class hatched on top), one panel per stage with its own scale;
* ``vision_vs_tokens_<target>.png``: vision FLOPs (all vision stages) against vision tokens over
  the built-in corpus, by mode (analytic), with the measured torch counts of this report on top;
* ``delta_<target>.png``: signed Δ% against the analytic matmul FLOPs per stage and counter,
  stock beside patched (median over the shape keys, range as a line);
* ``roofline_table.png`` (``--gpu``) / ``roofline_measured.png`` (``--measure``): each stage as a
  point under the roof of the peak-table entry / of the measured peak;
* ``decode_<target>.png``: decode FLOPs per generated token against the context length
  (analytic by part), with the measured decode counts of this report.

FLOPs = 2 x MACs on every axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=True)  # no display, ever (set before pyplot is imported)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from harness.report import units  # noqa: E402
from harness.report.collect import Collected  # noqa: E402

__all__ = ["make_plots", "PLOT_DPI"]

PLOT_DPI = 110
_KEY_COLORS = {
    "linear": "#4C72B0", "linear_functional": "#8172B2", "experts": "#DD8452", "conv": "#55A868",
    "einsum": "#937860", "sdpa_qk": "#C44E52", "sdpa_av": "#E17C7F", "matmul_qk": "#8C1C13",
    "matmul_av": "#BF4342", "rotary": "#DA8BC3", "lm_head": "#64B5CD", "unmapped": "#000000",
}
_ELEMENTWISE_COLOR = "#BBBBBB"
_MODE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2", "#937860", "#DA8BC3"]


def _scale(value: float) -> tuple[float, str]:
    for factor, name in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if value >= factor:
            return factor, name
    return 1.0, "FLOP"


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=PLOT_DPI, bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------------- stage bars
def stage_bars(collected: Collected, target: str, page: str, path: Path) -> None:
    from harness.analytic import OP_CLASS

    plan = collected.plan
    tplan = next(t for t in plan.targets if t.name == target)
    stages = collected.stages_of(target)
    modes = tplan.modes
    specs = plan.counters
    cells = {(mode, stage, spec): collected.cell(target, mode, page, stage, spec)
             for mode in modes for stage in stages for spec in specs}
    fig, axes = plt.subplots(len(modes), len(stages), figsize=(3.1 * len(stages), 2.9 * len(modes) + 0.8),
                             squeeze=False)
    used_keys: set[str] = set()
    labels = ["analytic"] + [s.label for s in specs]
    for i, mode in enumerate(modes):
        for j, stage in enumerate(stages):
            ax = axes[i][j]
            info = collected.stages[(target, mode, page, stage)]
            bars: list[tuple[dict[str, int], int, bool]] = [
                ({k: v for k, v in info.cost.flops.items() if OP_CLASS[k] == "matmul"},
                 info.cost.elementwise_flops, True)]
            for spec in specs:
                r = cells.get((mode, stage, spec))
                if r is None or r.count is None:
                    bars.append(({}, 0, False))
                else:
                    matmul = {k: v for k, v in r.count.by_key.items() if k in _KEY_COLORS and v}
                    bars.append((matmul, r.count.elementwise_flops, True))
            top = max((sum(m.values()) + e) for m, e, _ in bars) or 1
            factor, unit = _scale(top)
            for x, (matmul, elementwise, ok) in enumerate(bars):
                bottom = 0.0
                for key in _KEY_COLORS:
                    value = matmul.get(key, 0) / factor
                    if value:
                        ax.bar(x, value, bottom=bottom, color=_KEY_COLORS[key], width=0.75, edgecolor="white",
                               linewidth=0.3)
                        bottom += value
                        used_keys.add(key)
                if elementwise:
                    ax.bar(x, elementwise / factor, bottom=bottom, color=_ELEMENTWISE_COLOR, hatch="///",
                           width=0.75, edgecolor="#777777", linewidth=0.3)
                if not ok:
                    ax.text(x, 0.02 * top / factor, "not\nmeasured", ha="center", va="bottom", fontsize=6.5,
                            color="#B00020", rotation=90, fontweight="bold")
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylabel(unit, fontsize=7)
            from harness.report.render import stage_label

            ax.set_title(f"{mode} · {stage_label(stage, info.shape_key)}\nanalytic matmul "
                         f"{units.flop(info.cost.matmul_flops)}", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
    handles = [Patch(color=_KEY_COLORS[k], label=k) for k in _KEY_COLORS if k in used_keys]
    handles.append(Patch(facecolor=_ELEMENTWISE_COLOR, hatch="///", edgecolor="#777777",
                         label="element-wise class (each tool's convention)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(7, len(handles)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{target}, page {page!r}: FLOPs per stage, analytic vs each counter, stacked by op key "
                 "(FLOPs = 2 x MACs)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    _save(fig, path)


# ---------------------------------------------------------------------- vision vs tokens (corpus)
def vision_vs_tokens(collected: Collected, target: str, path: Path) -> dict[str, Any]:
    from harness.analytic import stage_costs
    from harness.pages import builtin_pages
    from harness.workload import compute_view_layout, get_workload

    tplan = next(t for t in collected.plan.targets if t.name == target)
    vision = collected.stages_of(target)[:3]
    corpus = builtin_pages("corpus")
    memo: dict[tuple, int] = {}
    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    stats: dict[str, Any] = {}
    for n, mode in enumerate(tplan.modes):
        workload = get_workload(target, mode)
        points: dict[tuple[int, int], int] = {}
        for page in corpus:
            layout = compute_view_layout(workload, page.width, page.height)
            key = tuple((v.role, v.batch, v.size) for v in layout.views)
            if key not in memo:
                costs = stage_costs(target, layout, text_tokens=collected.text_tokens)
                memo[key] = sum(costs[s].matmul_flops for s in vision)
            xy = (layout.vision_tokens, memo[key])
            points[xy] = points.get(xy, 0) + 1
        xs = [p[0] for p in points]
        ys = [p[1] / 1e12 for p in points]
        sizes = [18 + 14 * c for c in points.values()]
        color = _MODE_COLORS[n % len(_MODE_COLORS)]
        ax.scatter(xs, ys, s=sizes, color=color, alpha=0.55, edgecolor="none",
                   label=f"{mode} (analytic, {len(corpus)} corpus pages)")
        for (x, y), pages_here in points.items():
            ax.annotate(f"{pages_here}", (x, y / 1e12), textcoords="offset points", xytext=(11, 7 - 9 * n),
                        fontsize=7, color=color)
        stats[mode] = {"points": len(points), "pages": len(corpus)}
        # measured torch (patched) vision totals of this report's pages (one point per layout)
        from harness.report.inputs import CounterSpec

        torch_spec = CounterSpec("torch", "patched")
        mx, my = [], []
        firsts = {}
        for page in collected.plan.pages:
            layout = collected.layouts[(target, mode, page.page_id)]
            firsts.setdefault(tuple((v.role, v.batch, v.size) for v in layout.views), page)
        for page in firsts.values():
            total = 0
            ok = True
            for stage in vision:
                r = collected.cell(target, mode, page.page_id, stage, torch_spec)
                if r is None or r.count is None:
                    ok = False
                    break
                total += r.count.matmul_flops
            if ok:
                mx.append(collected.layouts[(target, mode, page.page_id)].vision_tokens)
                my.append(total / 1e12)
        if mx:
            ax.scatter(mx, my, s=70, facecolor="none", edgecolor=color, linewidth=1.6, marker="D",
                       label=f"{mode}: torch count, this report's pages")
    from matplotlib.ticker import FormatStrFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="both", which="minor", labelsize=7)
    ax.set_xlabel("vision tokens (encoder outputs over all views)")
    ax.set_ylabel("vision FLOPs, matmul class (TFLOP)")
    ax.set_title(f"{target}: vision FLOPs ({' + '.join(vision)}) against vision tokens, by mode\n"
                 "built-in OmniDocBench-shaped corpus; marker area and number = pages at that point", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(fontsize=8, loc="upper left")
    for handle in legend.legend_handles:   # uniform legend markers (the plot's sizes encode counts)
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([45])
    fig.tight_layout()
    _save(fig, path)
    return stats


# ------------------------------------------------------------------------------ signed delta
def delta_bars(collected: Collected, target: str, path: Path) -> None:
    """Signed Δ% (counter FLOPs − analytic matmul, over analytic matmul) per stage and counter,
    stock beside patched; the bar is the median over every measured shape key, the whisker the range.
    Not-measured cells say so; a cell not verified is framed in red."""
    import numpy as np

    from harness.report.verdict import delta_matrix

    matrix = delta_matrix(collected)
    stages = collected.stages_of(target)
    counters = list(dict.fromkeys(s.counter for s in collected.plan.counters))
    variants = ("patched", "stock")
    specs = {(s.counter, s.variant): s for s in collected.plan.counters}
    fig, axes = plt.subplots(1, max(1, len(counters)), figsize=(1.2 + 3.6 * max(1, len(counters)), 1.4 + 0.62 * len(stages)),
                             squeeze=False, sharey=True)
    colors = {"patched": "#4C72B0", "stock": "#DD8452"}
    ys = np.arange(len(stages))
    for c, counter in enumerate(counters or ["(none)"]):
        ax = axes[0][c]
        values_seen = []
        for v, variant in enumerate(variants):
            spec = specs.get((counter, variant))
            offset = (v - 0.5) * 0.38
            for i, stage in enumerate(stages):
                y = ys[i] + offset
                cell = matrix.get((target, stage, spec)) if spec is not None else None
                if spec is None:
                    continue
                if cell is None or not cell.rels:
                    ax.text(0, y, "  not measured", va="center", ha="left", fontsize=7, color="#B00020")
                    continue
                rels = [100 * r for r in cell.rels]
                mid = float(np.median(rels))
                values_seen += rels
                ax.barh(y, mid, height=0.36, color=colors[variant], edgecolor="#B00020" if cell.failed else "none",
                        linewidth=1.6 if cell.failed else 0, label=variant if i == 0 else None)
                if min(rels) != max(rels):
                    ax.plot([min(rels), max(rels)], [y, y], color="#333333", linewidth=1)
                text = "0" if mid == 0 else f"{mid:+.2g}%"
                ax.text(mid, y, f" {text}", va="center", ha="left" if mid >= 0 else "right", fontsize=7)
        span = max([abs(x) for x in values_seen] + [0.5])
        ax.set_xlim(-1.35 * span, 1.35 * span)
        ax.axvline(0, color="#222222", linewidth=0.8)
        ax.set_yticks(ys)
        labels = [stage_label_for(collected, target, s) for s in stages]
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("Δ vs analytic matmul FLOPs (%)", fontsize=8)
        ax.set_title(counter, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
        handles, names = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, names, fontsize=7, loc="lower right")
    fig.suptitle(f"{target}: signed Δ per stage and counter, stock (as shipped) against patched (the suite's)\n"
                 "bar = median over the measured shape keys, line = range; red frame = not verified", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def stage_label_for(collected: Collected, target: str, stage: str) -> str:
    if stage != "decode":
        return stage
    contexts = sorted({collected.layout_record(t, m, p)["prefill_length"] for (t, m, p) in collected.layouts
                       if t == target})
    if not contexts:
        return stage
    return f"decode\n(context {contexts[0]}" + (f"–{contexts[-1]})" if len(contexts) > 1 else ")")


# ------------------------------------------------------------------------------------ roofline
def roofline_plot(points: list[tuple[str, float, float, str]], peak: Any, path: Path, title: str,
                  measured: list[tuple[str, float, float]] | None = None) -> None:
    """Roofline of ``peak``: attainable FLOP/s = min(peak, bandwidth x intensity); each stage a point
    at its analytic intensity and roofline-attainable rate (``points``: label, FLOP/B, FLOP/s, bound),
    measured rates as open markers (``measured``: label, FLOP/B, achieved FLOP/s)."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    peak_flops = peak.tflops * 1e12
    bw = peak.bandwidth_gbps * 1e9
    xs_all = [p[1] for p in points] + [m[1] for m in (measured or [])] + [peak.ridge]
    lo = max(min(x for x in xs_all if x > 0) / 4, 1e-2)
    hi = max(xs_all) * 4
    grid = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(grid, np.minimum(peak_flops, bw * grid), color="#222222", linewidth=2,
            label=f"roof: {peak.tflops:.4g} TFLOP/s, {peak.bandwidth_gbps:.4g} GB/s (ridge {peak.ridge:.3g} FLOP/B)")
    for n, (label, x, y, bound) in enumerate(points):
        color = _MODE_COLORS[n % len(_MODE_COLORS)]
        ax.scatter([x], [y], s=55, color=color, zorder=5, marker="o" if bound == "compute" else "s")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, -10 - 9 * (n % 5)), fontsize=7,
                    color=color)
    for n, (label, x, y) in enumerate(measured or []):
        ax.scatter([x], [y], s=70, facecolor="none", edgecolor="#B00020", linewidth=1.5, marker="D", zorder=6,
                   label="measured (achieved)" if n == 0 else None)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4 + 9 * (n % 5)), fontsize=7,
                    color="#B00020")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (analytic matmul FLOPs / bytes, FLOP/B)")
    ax.set_ylabel("FLOP/s (FLOPs = 2 x MACs)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _roofline_jobs(collected: Collected, perf: Any) -> list[tuple[str, str, Any]]:
    jobs: list[tuple[str, str, Any]] = []
    if perf is None:
        return jobs
    multi = len(collected.plan.targets) > 1
    if perf.gpu_peak is not None and perf.roofline:
        head = collected.plan.plot_page
        rows = [r for r in perf.roofline if head in r.pages] or perf.roofline

        def draw_table(path: Path, rows=rows) -> None:
            points = [(f"{r.target + ' ' if multi else ''}{r.mode} {r.label}", r.intensity,
                       r.flops / r.predicted_s if r.predicted_s else 0.0, r.bound) for r in rows]
            roofline_plot(points, perf.gpu_peak, path,
                          f"Roofline on {perf.gpu_peak.label} ({perf.gpu_peak.dtype}), page {head!r}: each stage "
                          "at its analytic intensity\n(circle = compute bound, square = memory bound)")

        jobs.append(("roofline_table.png", f"roofline on {perf.gpu_peak.label}: every stage as a point", draw_table))
    if perf.device_peak is not None and perf.measured:
        def draw_measured(path: Path) -> None:
            points = [(f"{m.target + ' ' if multi else ''}{m.mode} {m.label}", m.flops / m.bytes,
                       m.flops / m.predicted_s, m.bound) for m in perf.measured]
            measured = [(f"{m.mode} {m.stage}", m.flops / m.bytes, m.achieved_flops) for m in perf.measured]
            roofline_plot(points, perf.device_peak, path,
                          f"Measured on {perf.device_peak.label}: achieved FLOP/s (red) against the roofline of the "
                          "measured peak\n(filled = roofline-attainable; circle = compute bound, square = memory bound)",
                          measured)

        jobs.append(("roofline_measured.png", f"measured FLOP/s against the roofline of {perf.device_peak.label}",
                     draw_measured))
    return jobs


# ------------------------------------------------------------------------------------ decode
def decode_per_token(collected: Collected, target: str, path: Path) -> None:
    from harness.analytic import decode_cost

    attention = ("sdpa_qk", "sdpa_av", "matmul_qk", "matmul_av")
    contexts = sorted({int(round(10 ** (e / 8))) for e in range(0, 8 * 5 + 1)} | {32768})
    contexts = [t for t in contexts if t <= 32768]
    env = collected.target_environment.get(target, {})
    attn = env.get("attn_implementation")
    series = {"total (matmul class)": [], "weights (linear, experts, gate, lm_head)": [],
              "attention QK^T + AV": [], "element-wise class": []}
    for t in contexts:
        cost = decode_cost(target, t, attn_implementation=attn)
        att = sum(cost.flops.get(k, 0) for k in attention)
        series["total (matmul class)"].append(cost.matmul_flops / 1e9)
        series["attention QK^T + AV"].append(att / 1e9)
        series["weights (linear, experts, gate, lm_head)"].append((cost.matmul_flops - att) / 1e9)
        series["element-wise class"].append(cost.elementwise_flops / 1e9)
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    styles = {"total (matmul class)": ("#222222", "-", 2.2), "weights (linear, experts, gate, lm_head)": ("#4C72B0", "--", 1.5),
              "attention QK^T + AV": ("#C44E52", "--", 1.5), "element-wise class": ("#999999", ":", 1.5)}
    for name, ys in series.items():
        color, style, width = styles[name]
        ax.plot(contexts, ys, style, color=color, linewidth=width, label=f"analytic: {name}")
    markers = {"torch": "o", "fvcore": "s", "thop": "^"}
    plotted = set()
    for r in collected.measurements.values():
        if r.target != target or r.stage != "decode" or r.count is None or r.spec.variant != "patched":
            continue
        t = int(r.shape_key[1])
        point = (r.spec.counter, t)
        if point in plotted:
            continue
        plotted.add(point)
        ax.scatter([t], [r.count.matmul_flops / 1e9], marker=markers.get(r.spec.counter, "x"), s=60, facecolor="none",
                   edgecolor={"torch": "#DD8452", "fvcore": "#55A868", "thop": "#8172B2"}.get(r.spec.counter, "k"),
                   linewidth=1.5, zorder=5,
                   label=f"{r.spec.counter}: measured decode step (this report's contexts)" if not any(
                       p[0] == r.spec.counter for p in plotted - {point}) else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context length T (tokens already in the KV cache)")
    ax.set_ylabel("FLOPs per generated token (GFLOP)")
    ax.set_title(f"{target}: decode FLOPs per generated token against context length\n"
                 f"one query over T + 1 keys; attention {attn or 'default'}; FLOPs = 2 x MACs", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def plot_jobs(collected: Collected, perf: Any = None) -> list[tuple[str, str, Any]]:
    """``(file name, caption, draw(path))`` of every plot, in drawing order."""
    jobs: list[tuple[str, str, Any]] = _roofline_jobs(collected, perf)
    page = collected.plan.plot_page
    for tplan in collected.plan.targets:
        t = tplan.name
        if page is not None:
            jobs.append((f"stage_bars_{t}_{page}.png",
                         f"{t}: FLOPs per stage on page {page!r}, analytic vs each counter, by op key",
                         lambda p, t=t: stage_bars(collected, t, page, p)))
        jobs.append((f"vision_vs_tokens_{t}.png", f"{t}: vision FLOPs against vision tokens over the corpus, by mode",
                     lambda p, t=t: vision_vs_tokens(collected, t, p)))
        if collected.plan.counters:
            jobs.append((f"delta_{t}.png", f"{t}: signed Δ per stage and counter, stock against patched",
                         lambda p, t=t: delta_bars(collected, t, p)))
        jobs.append((f"decode_{t}.png", f"{t}: decode FLOPs per token against context length",
                     lambda p, t=t: decode_per_token(collected, t, p)))
    return jobs


def make_plots(collected: Collected, out_dir: Path, *, tick: Any = None, perf: Any = None) -> dict[str, str]:
    """Draw every plot into ``out_dir``; returns file name -> caption, in drawing order.

    ``tick(name)`` is called after each plot (progress)."""
    out_dir = Path(out_dir)
    made: dict[str, str] = {}
    for name, caption, draw in plot_jobs(collected, perf):
        draw(out_dir / name)
        made[name] = caption
        if tick is not None:
            tick(name)
    return made
