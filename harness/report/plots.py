"""The report's plots (PNG, matplotlib's Agg backend, never a display).

Per target:

* ``stage_bars_<target>_<page>.png``: per mode and stage, the analytic FLOPs and each counter's,
  stacked by op key (element-wise class hatched on top), one panel per stage with its own scale;
* ``vision_vs_tokens_<target>.png``: vision FLOPs (all vision stages) against vision tokens over
  the built-in corpus, by mode (analytic), with the measured torch counts of this report on top;
* ``unexplained_<target>.png``: the unexplained remainder relative to the analytic matmul FLOPs,
  page x stage, one panel per counter;
* ``decode_<target>.png``: decode FLOPs per generated token against the context length
  (analytic by part), with the measured decode counts of this report.

FLOPs = 2 x MACs on every axis.
"""

from __future__ import annotations

import math
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
#: Above this many page x mode rows the heatmap shows one row per layout group.
MAX_HEATMAP_ROWS = 45
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
    cells = {(r.mode, r.stage, r.spec): r for r in collected.records if r.target == target and r.page == page}
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
            ax.set_title(f"{mode} · {stage}\nanalytic matmul {units.flop(info.cost.matmul_flops)}", fontsize=8)
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
        # measured torch (patched) vision totals of this report's pages
        mx, my = [], []
        for page in collected.plan.pages:
            total = 0
            ok = True
            for stage in vision:
                r = next((r for r in collected.records if r.target == target and r.mode == mode
                          and r.page == page.page_id and r.stage == stage and r.counter == "torch"
                          and r.variant == "patched"), None)
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


# ----------------------------------------------------------------------- unexplained heatmap
def unexplained_heatmap(collected: Collected, target: str, path: Path) -> None:
    import numpy as np
    from matplotlib.colors import LogNorm

    plan = collected.plan
    tplan = next(t for t in plan.targets if t.name == target)
    stages = collected.stages_of(target)
    rows = [(page.page_id, mode) for page in plan.pages for mode in tplan.modes]
    labels = [f"{p} / {m}" for p, m in rows]
    if len(rows) > MAX_HEATMAP_ROWS:
        # many pages: one row per layout group (pages sharing every stage's shape key have
        # identical counts, so identical remainders)
        from harness.report.render import layout_groups

        rows, labels = [], []
        for mode, groups in layout_groups(collected)[target].items():
            for pages, _ in groups:
                rows.append((pages[0], mode))
                more = f" (+{len(pages) - 1} pages)" if len(pages) > 1 else ""
                labels.append(f"{pages[0]}{more} / {mode}")
    specs = plan.counters or []
    cells = {(r.page, r.mode, r.stage, r.spec): r for r in collected.records if r.target == target}
    ncols = max(1, len(specs))
    fig, axes = plt.subplots(1, ncols, figsize=(1.6 + 2.3 * ncols, 1.9 + 0.28 * len(rows)), squeeze=False,
                             sharey=True, layout="constrained")
    floor, ceil = 1e-9, 1.0
    norm = LogNorm(vmin=floor, vmax=ceil)
    cmap = plt.get_cmap("OrRd")
    image = None
    for c, spec in enumerate(specs or [None]):
        ax = axes[0][c]
        data = np.full((len(rows), len(stages)), np.nan)
        for i, (page, mode) in enumerate(rows):
            for j, stage in enumerate(stages):
                r = cells.get((page, mode, stage, spec)) if spec is not None else None
                if r is not None and r.explanation is not None:
                    rel = abs(r.explanation.remainder_rel) if math.isfinite(r.explanation.remainder_rel) else ceil
                    data[i, j] = rel
        shown = np.where(np.isnan(data), np.nan, np.clip(data, floor, ceil))
        image = ax.imshow(np.where(data == 0, np.nan, shown), cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(stages)):
                value = data[i, j]
                r = cells.get((rows[i][0], rows[i][1], stages[j], spec)) if spec is not None else None
                if np.isnan(value):
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#DDDDDD", hatch="xx",
                                               edgecolor="#999999", linewidth=0))
                    ax.text(j, i, "n/m", ha="center", va="center", fontsize=6.5, color="#B00020")
                    continue
                if value == 0:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#E8F5E9", linewidth=0))
                    text = "0"
                else:
                    text = f"{value:.1e}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6.5)
                if r is not None and r.within_band is False:
                    ax.add_patch(plt.Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, edgecolor="#B00020",
                                               linewidth=1.5))
        ax.set_xticks(range(len(stages)))
        ax.set_xticklabels(stages, rotation=45, ha="right", fontsize=7.5)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=7.5)
        ax.set_title(spec.label if spec is not None else "no counters", fontsize=9)
    if image is not None:
        bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, pad=0.01)
        bar.set_label("|unexplained| / analytic matmul FLOPs", fontsize=8)
    fig.suptitle(f"{target}: unexplained remainder after explain_delta, page / mode x stage, per counter\n"
                 "green 0 = every FLOP of the delta explained; red frame = above the verify band; "
                 "n/m = not measured", fontsize=10)
    _save(fig, path)


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
    for r in collected.records:
        if r.target != target or r.stage != "decode" or r.count is None or r.variant != "patched":
            continue
        t = int(r.shape_key[1])
        point = (r.counter, t)
        if point in plotted:
            continue
        plotted.add(point)
        ax.scatter([t], [r.count.matmul_flops / 1e9], marker=markers.get(r.counter, "x"), s=60, facecolor="none",
                   edgecolor={"torch": "#DD8452", "fvcore": "#55A868", "thop": "#8172B2"}.get(r.counter, "k"),
                   linewidth=1.5, zorder=5,
                   label=f"{r.counter}: measured decode step (this report's contexts)" if not any(
                       p[0] == r.counter for p in plotted - {point}) else None)
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


def plot_jobs(collected: Collected) -> list[tuple[str, str, Any]]:
    """``(file name, caption, draw(path))`` of every plot, in drawing order."""
    jobs: list[tuple[str, str, Any]] = []
    page = collected.plan.plot_page
    for tplan in collected.plan.targets:
        t = tplan.name
        if page is not None:
            jobs.append((f"stage_bars_{t}_{page}.png",
                         f"{t}: FLOPs per stage on page {page!r}, analytic vs each counter, by op key",
                         lambda p, t=t: stage_bars(collected, t, page, p)))
        jobs.append((f"vision_vs_tokens_{t}.png", f"{t}: vision FLOPs against vision tokens over the corpus, by mode",
                     lambda p, t=t: vision_vs_tokens(collected, t, p)))
        jobs.append((f"unexplained_{t}.png", f"{t}: unexplained remainder, page x stage, per counter",
                     lambda p, t=t: unexplained_heatmap(collected, t, p)))
        jobs.append((f"decode_{t}.png", f"{t}: decode FLOPs per token against context length",
                     lambda p, t=t: decode_per_token(collected, t, p)))
    return jobs


def make_plots(collected: Collected, out_dir: Path, *, tick: Any = None) -> dict[str, str]:
    """Draw every plot into ``out_dir``; returns file name -> caption, in drawing order.

    ``tick(name)`` is called after each plot (progress)."""
    out_dir = Path(out_dir)
    made: dict[str, str] = {}
    for name, caption, draw in plot_jobs(collected):
        draw(out_dir / name)
        made[name] = caption
        if tick is not None:
            tick(name)
    return made
