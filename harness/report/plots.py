"""The report's plots (PNG, matplotlib's Agg backend, never a display).

Per target: FLOPs by op key per stage and counter, vision FLOPs against vision tokens, Δ% against
the analytic model, decode FLOPs against context, and the roofline with ``--gpu``/``--measure``.
FLOPs = 2 x MACs on every axis. The list: docs/report.md.
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

__all__ = ["make_plots", "PLOT_DPI", "place_labels", "roofline_plot"]

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
    from harness.inputs.pages import builtin_pages
    from harness.inputs.workload import compute_view_layout, get_workload

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
#: Offsets tried for a label, in display pixels from its point: rings of growing radius, each ring
#: in 16 directions, right and up first.
_LABEL_RINGS = (8, 16, 26, 38, 52, 70, 92, 120, 155, 200, 250, 310, 380)
_LABEL_DIRECTIONS = 24


def _box_gap(box: tuple[float, float, float, float], x: float, y: float) -> float:
    """Distance from the point (x, y) to the rectangle (x0, y0, x1, y1) (0 inside)."""
    dx = max(box[0] - x, 0.0, x - box[2])
    dy = max(box[1] - y, 0.0, y - box[3])
    return (dx * dx + dy * dy) ** 0.5


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float], pad: float = 0.0) -> bool:
    return a[0] - pad < b[2] and b[0] - pad < a[2] and a[1] - pad < b[3] and b[1] - pad < a[3]


def _crosses(box: tuple[float, float, float, float], a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the segment a-b passes through ``box`` (sampled every few pixels)."""
    steps = max(2, int(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5 / 2))
    return any(box[0] <= a[0] + (b[0] - a[0]) * t / steps <= box[2] and box[1] <= a[1] + (b[1] - a[1]) * t / steps <= box[3]
               for t in range(steps + 1))


def _leader(box: tuple[float, float, float, float], x: float, y: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The leader line from a point to the nearest point of its label's box."""
    return (x, y), (min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3]))


def _search(px: list[tuple[float, float]], i: int, w: float, h: float, frame: tuple[float, float, float, float],
            placed: list[dict[str, Any]], markers: list[tuple[float, float, float, float]],
            leaders: list[Any], curve: Any) -> tuple[float, float, float, float] | None:
    """The first free place for point ``i``'s label of size w x h (see :func:`place_labels`)."""
    import math

    px_x, px_y = px[i]
    for radius in _LABEL_RINGS:
        for k in range(_LABEL_DIRECTIONS):
            angle = 2 * math.pi * k / _LABEL_DIRECTIONS + math.pi / 8
            cx, cy = px_x + radius * math.cos(angle), px_y + radius * math.sin(angle)
            # the box sits on the side of the direction: its nearest corner/edge at (cx, cy)
            x0 = cx if math.cos(angle) > 0.2 else (cx - w if math.cos(angle) < -0.2 else cx - w / 2)
            y0 = cy if math.sin(angle) > 0.2 else (cy - h if math.sin(angle) < -0.2 else cy - h / 2)
            box = (x0, y0, x0 + w, y0 + h)
            if not (box[0] >= frame[0] and box[1] >= frame[1] and box[2] <= frame[2] and box[3] <= frame[3]):
                continue
            if any(_overlap(box, p["box"], 2) for p in placed) or any(_overlap(box, m) for m in markers):
                continue
            if curve is not None and any(box[1] - 2 <= curve(x) <= box[3] + 2
                                         for x in (box[0] + (box[2] - box[0]) * t / 8 for t in range(9))):
                continue
            own = _box_gap(box, px_x, px_y)
            # near its point: nearer it than any other point; further away: joined by a leader line
            if own <= 14 and any(_box_gap(box, ox, oy) <= own + 3 for j, (ox, oy) in enumerate(px) if j != i):
                continue
            if any(_crosses(box, *seg) for seg in leaders):
                continue
            if own > 14:
                seg = _leader(box, px_x, px_y)
                inner = (seg[0][0] + (seg[1][0] - seg[0][0]) * 0.1, seg[0][1] + (seg[1][1] - seg[0][1]) * 0.1)
                if any(_crosses(p["box"], inner, seg[1]) for p in placed) or \
                        any(_crosses(m, inner, seg[1]) for j, m in enumerate(markers) if j != i):
                    continue
            return box
    return None


def place_labels(ax: Any, points: list[tuple[str, float, float, str]], *, fontsize: float = 7,
                 marker_px: float = 5.0, avoid: list[Any] | None = None,
                 curve: Any = None) -> list[dict[str, Any]]:
    """Label each point (label, x, y, color) of ``ax`` (axes limits already set) so that no label
    overlaps another label or any point's marker, every label lies inside the axes, and every
    label is nearer its own point than any other point; a leader line joins a label set away from its
    point; no label sits on another label's leader line, nor on the artists in ``avoid`` (the legend);
    ``curve`` (display x -> display y, the roof) is kept clear where a place allows.
    Returns, per label: text, the point and the label's box in display pixels."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    frame = (frame.x0, frame.y0, frame.x1, frame.y1)
    to_px = ax.transData.transform
    px = [tuple(to_px((x, y))) for _, x, y, _ in points]
    markers = [(x - marker_px, y - marker_px, x + marker_px, y + marker_px) for x, y in px]
    for artist in avoid or []:
        e = artist.get_window_extent(renderer)
        markers.append((e.x0, e.y0, e.x1, e.y1))
    leaders: list[tuple[tuple[float, float], tuple[float, float]]] = []
    placed: list[dict[str, Any]] = []
    # the most crowded points choose first (their free places are the fewest)
    crowd = [sum(1 for q in px if 0 < ((q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2) ** 0.5 < 80) for p in px]
    order = sorted(range(len(points)), key=lambda i: (-crowd[i], px[i][0], px[i][1]))
    for i in order:
        label, x, y, color = points[i]
        text = ax.text(0, 0, label, fontsize=fontsize, color=color)
        extent = text.get_window_extent(renderer)
        text.remove()
        w, h = extent.width + 2, extent.height + 2
        px_x, px_y = px[i]
        for keep_clear in ((True, False) if curve is not None else (False,)):
            best = _search(px, i, w, h, frame, placed, markers, leaders,
                           curve if keep_clear else None)
            if best is not None:
                break
        if best is None:   # no free place: beside the point, flagged (the test fails on it)
            best = (px_x + 6, px_y + 6, px_x + 6 + w, px_y + 6 + h)
        data = ax.transData.inverted().transform((best[0] + 1, best[1] + 1))
        far = _box_gap(best, px_x, px_y) > 14
        if far:
            leaders.append(_leader(best, px_x, px_y))
        note = ax.annotate(label, (points[i][1], points[i][2]), xytext=tuple(data), textcoords="data",
                           fontsize=fontsize, color=color, ha="left", va="bottom", zorder=7,
                           arrowprops=dict(arrowstyle="-", color=color, linewidth=0.6, shrinkA=0, shrinkB=3)
                           if far else None)
        placed.append({"label": label, "point": (px_x, px_y), "box": best, "index": i, "artist": note,
                       "leader": far})
    fig.canvas.draw()
    for p in placed:   # the boxes as drawn (what the test checks), not as planned
        from matplotlib.text import Text

        box = Text.get_window_extent(p.pop("artist"), renderer)   # the text alone, not its leader line
        p["box"] = (box.x0, box.y0, box.x1, box.y1)
    for p in placed:
        p["frame"] = frame
    return placed


def _merged_label(labels: list[str]) -> str:
    """One label for points drawn as one: labels that differ only in their first word (the mode)
    share the rest ("gundam/gundam6 projector"), one line per distinct rest."""
    rests: dict[str, list[str]] = {}
    for label in labels:
        first, _, rest = label.partition(" ")
        rests.setdefault(rest, []).append(first)
    return "\n".join(f"{'/'.join(firsts)} {rest}".strip() for rest, firsts in rests.items())


def roofline_plot(points: list[tuple[str, float, float, str]], peak: Any, path: Path, title: str,
                  measured: list[tuple[str, float, float]] | None = None) -> list[dict[str, Any]]:
    """Roofline of ``peak``: attainable FLOP/s = min(peak, bandwidth x intensity); each stage a point
    at its analytic intensity and roofline-attainable rate (``points``: label, FLOP/B, FLOP/s, bound),
    measured rates as open markers joined to their stage's point (``measured``: label, FLOP/B,
    achieved FLOP/s; the label must be one of ``points``'). Points at the same place share one label.
    Returns the labels' placement (:func:`place_labels`), in pixels of the saved figure."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(8.5, 5.6), dpi=PLOT_DPI)   # pixels as saved
    peak_flops = peak.tflops * 1e12
    bw = peak.bandwidth_gbps * 1e9
    xs_all = [p[1] for p in points] + [m[1] for m in (measured or [])] + [peak.ridge]
    ys_all = [p[2] for p in points] + [m[2] for m in (measured or [])] + [peak_flops]
    lo = max(min(x for x in xs_all if x > 0) / 4, 1e-2)
    hi = max(xs_all) * 4
    grid = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(grid, np.minimum(peak_flops, bw * grid), color="#222222", linewidth=2,
            label=f"roof: {peak.tflops:.4g} TFLOP/s, {peak.bandwidth_gbps:.4g} GB/s (ridge {peak.ridge:.3g} FLOP/B)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    y_lo = min(y for y in ys_all if y > 0) / 6
    ax.set_xlim(lo, hi)
    ax.set_ylim(y_lo, peak_flops * 3)
    # one label per place: points within a marker of each other (two modes with one layout, decode
    # at nearby contexts) share one marker and one label
    to_px = ax.transData.transform
    merged: dict[tuple[float, float], list[str]] = {}
    bounds: dict[tuple[float, float], str] = {}
    for label, x, y, bound in points:
        here = to_px((x, y))
        key = next((k for k in merged if ((to_px(k) - here) ** 2).sum() ** 0.5 < 4), (x, y))
        merged.setdefault(key, []).append(label)
        bounds[key] = bound
    colors = {}
    for n, key in enumerate(merged):
        colors[key] = _MODE_COLORS[n % len(_MODE_COLORS)]
        ax.scatter([key[0]], [key[1]], s=55, color=colors[key], zorder=5,
                   marker="o" if bounds[key] == "compute" else "s")
    where = {label: key for key, labels in merged.items() for label in labels}
    for n, (label, x, y) in enumerate(measured or []):
        ax.scatter([x], [y], s=70, facecolor="none", edgecolor="#B00020", linewidth=1.5, marker="D", zorder=6,
                   label="measured (achieved), dotted to its stage's roofline point" if n == 0 else None)
        if label in where:
            ax.plot([x, where[label][0]], [y, where[label][1]], ":", color="#B00020", linewidth=0.9, zorder=4)
    ax.set_xlabel("arithmetic intensity (analytic matmul FLOPs / bytes, FLOP/B)")
    ax.set_ylabel("FLOP/s (FLOPs = 2 x MACs)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    labelled = [(_merged_label(labels), key[0], key[1], colors[key]) for key, labels in merged.items()]
    labelled += [(m[0] + " (measured)", m[1], m[2], "#B00020") for m in (measured or []) if m[0] not in where]
    import math

    def roof_px(x_px: float) -> float:   # the roof's display y at display x
        x = ax.transData.inverted().transform((x_px, 0.0))[0]
        return float(to_px((x, min(peak_flops, bw * x)))[1]) if x > 0 else -math.inf

    placed = place_labels(ax, labelled, avoid=[legend], curve=roof_px)
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return placed


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
            measured = [(f"{m.target + ' ' if multi else ''}{m.mode} {m.label}", m.flops / m.bytes, m.achieved_flops)
                        for m in perf.measured]
            roofline_plot(points, perf.device_peak, path,
                          f"Measured on {perf.device_peak.label}: achieved FLOP/s (red) against the roofline of the "
                          "measured peak\n(filled = roofline-attainable; circle = compute bound, square = memory bound)",
                          measured)

        jobs.append(("roofline_measured.png", f"measured FLOP/s against the roofline of {perf.device_peak.label}",
                     draw_measured))
    return jobs


# ------------------------------------------------------------------------------------ serving
_EXECUTION_STYLE = {"vendor": "-", "engine": "--"}


def _log_panels(axes: Any, xlabel: str, ylabels: tuple[str, ...]) -> None:
    """Log-log panels (x in powers of two) with their labels and grid; the legend on the first."""
    for ax, name in zip(axes, ylabels):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")


def serving_plot(perf: Any, target: str, path: Path) -> None:
    """Per mode: pages/day and output tokens/s per GPU against the batch, vendor code (solid) and
    serving engine (dashed, where it differs), the largest batch that fits marked with a star."""
    from harness.report.perf_render import _engine_same

    modes = [s for s in perf.serving if s.target == target]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), squeeze=False)
    for n, s in enumerate(modes):
        color = _MODE_COLORS[n % len(_MODE_COLORS)]
        for execution in ("vendor", "engine"):
            if execution == "engine" and _engine_same(s):
                continue
            rows = [r for r in s.rows if r.execution == execution and r.fits]
            if not rows:
                continue
            cap = s.capacity[execution].max_concurrency
            for ax, value in zip(axes[0], (lambda r: r.pages_per_day, lambda r: r.tokens_per_s)):
                ax.plot([r.batch for r in rows], [value(r) for r in rows], _EXECUTION_STYLE[execution], marker="o",
                        markersize=4, color=color, label=f"{s.mode} ({execution})")
                top = [r for r in rows if r.batch == cap]
                if top:
                    ax.scatter([cap], [value(top[0])], marker="*", s=160, color=color, zorder=6, edgecolor="black",
                               linewidth=0.5)
    _log_panels(axes[0], "batch (concurrent pages)", ("pages per day per GPU", "output tokens/s per GPU"))
    peak = perf.gpu_peak
    fig.suptitle(f"{target} on {peak.label} ({peak.dtype}): predicted throughput upper bound against batch, "
                 f"{modes[0].new_tokens if modes else ''} output tokens per page\nsolid = vendor code, dashed = "
                 "serving engine (where it differs); star = the largest batch whose KV cache fits", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def request_vs_tokens(collected: Collected, perf: Any, target: str, path: Path) -> None:
    """Per mode: predicted time (batch 1, the roofline of ``--gpu``) and matmul FLOPs of one request
    against the tokens it generates, vendor code (solid) and serving engine (dashed, where it differs)."""
    from harness.gpu.serving import request_curve
    from harness.report.perf import _dtype_bytes

    tplan = next(t for t in collected.plan.targets if t.name == target)
    page = collected.plan.plot_page or collected.plan.pages[0].page_id
    tokens = sorted({int(round(2 ** (e / 4))) for e in range(0, 4 * 13 + 1)})
    attn = collected.target_environment.get(target, {}).get("attn_implementation")
    peak = perf.gpu_peak
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), squeeze=False)
    for n, mode in enumerate(tplan.modes):
        color = _MODE_COLORS[n % len(_MODE_COLORS)]
        layout = collected.layouts[(target, mode, page)]
        length = collected.layout_record(target, mode, page)["prefill_length"]
        curves = {}
        for execution in ("vendor", "engine"):
            curves[execution] = request_curve(target, layout, length, tokens, peak, execution=execution,
                                              bytes_convention=perf.plan.bytes_convention, attn_implementation=attn,
                                              dtype_bytes=_dtype_bytes(peak.dtype))
        for execution, curve in curves.items():
            if execution == "engine" and curve == curves["vendor"]:
                continue
            axes[0][0].plot([c[0] for c in curve], [c[1] for c in curve], _EXECUTION_STYLE[execution], color=color,
                            label=f"{mode} (L = {length}, {execution})")
            axes[0][1].plot([c[0] for c in curve], [c[2] / 1e12 for c in curve], _EXECUTION_STYLE[execution],
                            color=color, label=f"{mode} ({execution})")
    _log_panels(axes[0], "generated tokens N", ("predicted time per request (s)", "matmul FLOPs per request (TFLOP)"))
    fig.suptitle(f"{target}, page {page!r}: one request (batch 1) against the tokens it generates, per mode; time "
                 f"= roofline on {peak.label} ({peak.dtype})\nsolid = vendor code, dashed = serving engine (where it "
                 "differs); FLOPs = 2 x MACs", fontsize=10)
    fig.tight_layout()
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
    if perf is not None and perf.gpu_peak is not None:
        for tplan in collected.plan.targets:
            t = tplan.name
            if perf.serving:
                jobs.append((f"serving_{t}.png", f"{t}: predicted pages/day and output tokens/s per GPU against batch, "
                             "per mode", lambda p, t=t: serving_plot(perf, t, p)))
            jobs.append((f"request_vs_tokens_{t}.png", f"{t}: predicted time and FLOPs per request against generated "
                         "tokens, per mode", lambda p, t=t: request_vs_tokens(collected, perf, t, p)))
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
