"""The top of report.md: the verdict a performance engineer acts on.

* one matrix, stage x counter: each counter's signed delta against the analytic matmul FLOPs
  (the range over every measured page x mode) and whether the suite verifies it;
* which counter to trust for what, and how far each stock tool is off and why;
* each stage's share of the FLOPs of a request (vision, prefill, N - 1 decode steps);
* per page (pages sharing every shape key fold into one row): the totals of a request that
  generates N tokens, with the roofline-predicted TTFT, TPOT and time when ``--gpu`` is given.

Every figure is computed from keyed tables (one entry per shape key), never by scanning records
per page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.report import units

__all__ = ["DeltaCell", "delta_matrix", "verdict_lines", "exit_findings", "ExitFindings", "EXIT_CODES"]

#: Exit codes of ``harness report`` (docs/report.md); when several apply, the smallest is returned.
EXIT_CODES: dict[int, str] = {
    0: "every requested cell measured, verified, and equal to its golden where one exists",
    1: "an unexpected failure (a traceback)",
    2: "bad input (a clear error naming the input; nothing written)",
    3: "a count differs from its golden, or its golden file cannot be read (corrupt, truncated)",
    4: "a delta is not explained: an unexplained remainder above its band, a torch op key that differs "
       "from the analytic model, or an unknown blind spot",
    5: "a requested target, counter or timing measured nothing",
    130: "interrupted",
}
EXIT_GOLDEN, EXIT_UNEXPLAINED, EXIT_NOTHING = 3, 4, 5


@dataclass
class DeltaCell:
    """Every measurement of one target x stage x counter spec: delta range and verdicts."""

    rels: list[float] = field(default_factory=list)         # delta / analytic matmul, per measurement
    contexts: set[int] = field(default_factory=set)
    measured: int = 0
    not_measured: int = 0
    failed: int = 0                                         # measured, not verified
    causes: dict[str, int] = field(default_factory=dict)    # blind spot -> FLOPs (largest seen)
    reason: str = ""

    def text(self) -> str:
        if not self.rels:
            return "n/m"
        lo, hi = min(self.rels), max(self.rels)
        span = _pct(lo) if _pct(lo) == _pct(hi) else f"{_pct(lo)} … {_pct(hi)}"
        mark = "✓" if not self.failed else f"✗ {self.failed}"
        return f"{span} {mark}" + (" (+n/m)" if self.not_measured else "")


def _pct(rel: float) -> str:
    if rel == 0:
        return "0"
    value = rel * 100
    text = f"{value:+.2g}%" if abs(value) < 0.1 else f"{value:+.1f}%"
    return text.replace("-", "−")


def delta_matrix(collected: Any) -> dict[tuple[str, str, Any], DeltaCell]:
    """(target, stage, spec) -> DeltaCell, over the report's measurements (one per shape key) and
    its not-measured cells."""
    matrix: dict[tuple[str, str, Any], DeltaCell] = {}
    for tplan in collected.plan.targets:
        for stage in collected.stages_of(tplan.name):
            for spec in collected.plan.counters:
                matrix[(tplan.name, stage, spec)] = DeltaCell()
    for m in collected.measurements.values():
        cell = matrix.get((m.target, m.stage, m.spec))
        if cell is None:
            continue
        if m.count is None or m.explanation is None:
            cell.not_measured += 1
            cell.reason = m.error or ""
            continue
        e = m.explanation
        cell.measured += 1
        cell.rels.append(e.delta / e.analytic_matmul if e.analytic_matmul else 0.0)
        if m.shape_key and m.shape_key[0] == "T":
            cell.contexts.add(int(m.shape_key[1]))
        if not m.verified:
            cell.failed += 1
        for c in e.components:
            if c.name in ("convention", "element-wise class") or not c.flops:
                continue
            if abs(c.flops) > abs(cell.causes.get(c.name, 0)):
                cell.causes[c.name] = c.flops
    for r in collected.records:           # cells never attempted (not measurable here, build failed)
        if r.measured is None:
            cell = matrix.get((r.target, r.stage, r.spec))
            if cell is not None:
                cell.not_measured += 1
                cell.reason = r.error or ""
    return matrix


def _stage_label(collected: Any, target: str, stage: str, cell_contexts: set[int]) -> str:
    if stage != "decode":
        return stage
    contexts = sorted(cell_contexts) or sorted({collected.layout_record(t, m, p)["prefill_length"]
                                                for (t, m, p) in collected.layouts if t == target})
    if not contexts:
        return "decode"
    span = str(contexts[0]) if len(contexts) == 1 else f"{contexts[0]}–{contexts[-1]}"
    return f"decode (1 token at context {span})"


def _trust_lines(collected: Any, matrix: dict) -> list[str]:
    """Which counter to trust for what; how far each stock tool is off, and why."""
    lines = []
    specs = collected.plan.counters
    silent: dict[str, list[str]] = {}       # reason -> counters that measured nothing for it
    for spec in specs:
        cells = [(t, s, c) for (t, s, sp), c in matrix.items() if sp == spec]
        measured = [(t, s, c) for t, s, c in cells if c.rels]
        if not measured:
            why = next((c.reason for _, _, c in cells if c.reason), "")
            silent.setdefault(_short(why) if why else "", []).append(spec.label)
            continue
        exact = all(max(abs(r) for r in c.rels) == 0 for _, _, c in measured)
        failed = sum(c.failed for _, _, c in measured)
        missing = [s for t, s, c in cells if not c.rels]
        gaps = f"; not measured here: {', '.join(dict.fromkeys(missing))}" if missing else ""
        if spec.variant == "patched":
            if exact and not failed:
                what = "equal to the analytic matmul FLOPs in every measured stage: trust it for every stage it measures"
            elif not failed:
                what = ("every delta explained (element-wise work in its own convention; sized deviations) within "
                        "the verify band: trust its matmul class")
            else:
                what = f"**{failed} measurement(s) not verified**: do not trust it where marked ✗"
            lines.append(f"- **{spec.label}** (the suite's variant): {what}{gaps}.")
            continue
        off = []
        for t, s, c in measured:
            worst = max(c.rels, key=abs)
            if abs(worst) < 5e-4 and not c.causes:
                continue
            cause = max(c.causes, key=lambda k: abs(c.causes[k])) if c.causes else "element-wise work in its own convention"
            label = f"{t} {s}" if len(collected.plan.targets) > 1 else s
            off.append(f"{label} {_pct(worst)} ({cause})")
        if off:
            lines.append(f"- **{spec.label}** (as shipped) is off by: {'; '.join(off)}{gaps}.")
        else:
            lines.append(f"- **{spec.label}** (as shipped): within 0.05% of the analytic model in every measured "
                         f"stage{gaps}.")
    for why, labels in silent.items():
        lines.append(f"- **{', '.join(labels)}**: measured nothing" + (f" ({why})" if why else "") + ".")
    return lines


def _short(text: str, limit: int = 140) -> str:
    return units.short_reason(text, limit)


_md_table = units.md_table


def verdict_lines(collected: Any, *, perf: Any = None, findings: "ExitFindings | None" = None,
                  new_tokens: int = 1000) -> list[str]:
    """The ``## Verdict`` section of report.md."""
    plan = collected.plan
    lines = ["## Verdict", ""]
    if findings is not None:
        lines += [findings.sentence(), ""]
    if plan.counters:
        matrix = delta_matrix(collected)
        specs = plan.counters
        rows = []
        for tplan in plan.targets:
            for stage in collected.stages_of(tplan.name):
                cells = [matrix[(tplan.name, stage, s)] for s in specs]
                contexts = set().union(*(c.contexts for c in cells))
                label = _stage_label(collected, tplan.name, stage, contexts)
                if len(plan.targets) > 1:
                    label = f"{tplan.name} {label}"
                failed = sum(c.failed for c in cells)
                nm = sum(1 for c in cells if not c.rels)
                verdict = "✗ not verified" if failed else ("✓ verified" + (f" ({nm} counter(s) n/m)" if nm else ""))
                if all(not c.rels for c in cells):
                    verdict = "**nothing measured**"
                rows.append([label, *[c.text() for c in cells], verdict])
        lines += ["Signed Δ of each counter against the analytic matmul FLOPs, over every measured page and mode "
                  "(a range where they differ); ✓ = verified by the suite's rule (every FLOP of the delta "
                  "explained by named causes, the remainder within its band), ✗ n = n measurements not verified, "
                  "n/m = not measured (reason below).", ""]
        lines += _md_table(["stage", *[s.label for s in specs], "verdict"], rows, align="l" + "r" * len(specs) + "l")
        reasons: dict[str, list[str]] = {}
        for (target, stage, spec), cell in matrix.items():
            if cell.not_measured and cell.reason:
                where = f"{target} {stage}" if len(plan.targets) > 1 else stage
                reasons.setdefault(_short(cell.reason, 200), []).append(f"{spec.label} {where}")
        if reasons:
            every = len(matrix)
            lines += [""] + [f"n/m: {'every cell' if len(cells) == every else ', '.join(cells)}: {why}."
                             for why, cells in reasons.items()]
        lines += ["", "**Which counter to trust.**", ""] + _trust_lines(collected, matrix) + [""]
    # stage shares and request totals
    if perf is not None and perf.requests:
        lines += _request_lines(collected, perf, new_tokens)
    return lines


def _request_lines(collected: Any, perf: Any, new_tokens: int) -> list[str]:
    requests = perf.requests
    gpu = perf.gpu_peak
    lines = [f"**Share of a request's FLOPs by stage** (a request generating N = {new_tokens} tokens: vision, "
             f"prefill, then N − 1 = {new_tokens - 1} decode steps; analytic matmul class; page "
             f"{collected.plan.plot_page!r}).", ""]
    shares = []
    for r in requests:
        if collected.plan.plot_page not in r.pages:
            continue
        costs = _stage_flops(collected, r)
        total = sum(costs.values()) or 1
        shares.append([f"{r.target} {r.mode}" if len(collected.plan.targets) > 1 else r.mode,
                       *[_share(v, total) for v in costs.values()], units.flop(total)])
        header = list(costs)
    if shares:
        lines += _md_table(["mode", *header, "total"], shares) + [""]
    title = (f"**Per page: a request generating N = {new_tokens} tokens** (pages sharing every shape key "
             "share a row)")
    if gpu is not None:
        title += (f"; times predicted by the roofline on **{gpu.label}** ({gpu.dtype}, {gpu.tflops:g} TFLOP/s dense, "
                  f"{gpu.bandwidth_gbps:g} GB/s)")
    lines += [title + ".", ""]
    rows = []
    for r in requests:
        row = [_pages_text(r.pages), f"{r.target} {r.mode}" if len(collected.plan.targets) > 1 else r.mode,
               str(r.prefill_length), units.flop(r.vision_flops), units.flop(r.prefill_flops),
               units.flop(r.decode_flops), f"**{units.flop(r.total_flops)}**"]
        if gpu is not None:
            row += [_ms(r.ttft_s), _ms(r.tpot_s), f"**{_s(r.total_s)}**"]
        rows.append(row)
    header = ["pages", "mode", "L (context)", "vision", "prefill", f"decode ×{new_tokens - 1}", "total FLOPs"]
    if gpu is not None:
        header += ["TTFT", "TPOT (at L)", f"time for {new_tokens} tokens"]
    lines += _md_table(header, rows, align="ll" + "r" * (len(header) - 2)) + [""]
    return lines


def _share(part: int, total: int) -> str:
    value = 100 * part / total
    return f"{value:.1f}%" if value >= 0.1 or part == 0 else f"{value:.2g}%"


def _stage_flops(collected: Any, r: Any) -> dict[str, int]:
    stages = collected.stages_of(r.target)
    out = {}
    for stage in stages[:3]:
        out[stage] = collected.stages[(r.target, r.mode, r.pages[0], stage)].cost.matmul_flops
    out["prefill"] = r.prefill_flops
    out[f"decode ×{r.new_tokens - 1}"] = r.decode_flops
    return out


def _pages_text(pages: tuple[str, ...] | list[str], limit: int = 4) -> str:
    return units.pages_text(pages, limit, "pages with the same shapes")


def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    ms = seconds * 1e3
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.3g} s" if seconds >= 1 else _ms(seconds)


# ----------------------------------------------------------------------------------- exit code
@dataclass
class ExitFindings:
    """What decides ``harness report``'s exit code (:data:`EXIT_CODES`)."""

    golden_differs: list[str] = field(default_factory=list)
    #: golden files that exist but cannot be read (the suite fails on them too): exit 3, each named
    golden_corrupt: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    nothing: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        if self.golden_differs or self.golden_corrupt:
            return EXIT_GOLDEN
        if self.unexplained:
            return EXIT_UNEXPLAINED
        if self.nothing:
            return EXIT_NOTHING
        return 0

    def lines(self, limit: int = 10) -> list[str]:
        out = []
        for title, items in (("count differs from its golden", self.golden_differs),
                             ("golden file cannot be used", self.golden_corrupt),
                             ("delta not explained", self.unexplained), ("measured nothing", self.nothing)):
            for item in items[:limit]:
                out.append(f"{title}: {item}")
            if len(items) > limit:
                out.append(f"{title}: ... and {len(items) - limit} more (report.md)")
        return out

    def sentence(self) -> str:
        if not self.code:
            return "**Verdict: pass** (exit 0): every requested cell measured where it can be, verified, and equal to its golden where one exists."
        parts = []
        if self.golden_differs:
            parts.append(f"{len(self.golden_differs)} count(s) differ from their golden")
        if self.golden_corrupt:
            parts.append(f"{len(self.golden_corrupt)} golden file(s) cannot be used (corrupt)")
        if self.unexplained:
            parts.append(f"{len(self.unexplained)} delta(s) not explained")
        if self.nothing:
            parts.append(f"{len(self.nothing)} requested target/counter/timing measured nothing")
        return f"**Verdict: FAIL** (exit {self.code}): " + "; ".join(parts) + ". " + " ".join(
            f"`{line}`" for line in self.lines(3))

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": self.code, "golden_differs": self.golden_differs,
                "golden_corrupt": self.golden_corrupt, "unexplained": self.unexplained,
                "measured_nothing": self.nothing}


def exit_findings(collected: Any, perf: Any = None, *, requested_counters: tuple[str, ...] = ()) -> ExitFindings:
    """The findings that make ``harness report`` exit non-zero, each naming its cell."""
    found = ExitFindings()
    for r in collected.records:
        if r.golden == "differs":
            found.golden_differs.append(f"{r.golden_key} ({'; '.join(r.golden_differences[:2])})")
        elif r.golden == "corrupt" and r.golden_differences[0] not in found.golden_corrupt:
            found.golden_corrupt.append(r.golden_differences[0])     # once per file
    for m in collected.measurements.values():
        if m.count is None or m.verified:
            continue
        why = []
        if m.within_band is False and m.explanation is not None:
            why.append(f"unexplained {units.flop_signed(m.explanation.remainder)} above its band")
        if m.key_mismatches:
            why.append("op keys differ: " + "; ".join(m.key_mismatches[:2]))
        if m.unknown_blind_spots:
            why.append("unknown blind spot: " + "; ".join(m.unknown_blind_spots[:2]))
        found.unexplained.append(f"{m.target}-{m.first.split('/')[1]}-{m.first.split('/')[0]}-{m.stage}-"
                                 f"{m.spec.label.replace(' ', ':')} ({', '.join(why)})")
    for b in getattr(collected, "byte_measurements", {}).values():
        cell = f"{b.target}-{b.first.split('/')[1]}-{b.first.split('/')[0]}-{b.stage}-bytes"
        if b.verified is False:
            keys = [r.key for r in b.verdict.rows if r.unexplained and r.key != "total"]
            found.unexplained.append(f"{cell} (analytic op-level bytes differ from the byte counter's: "
                                     f"{', '.join(keys) or f'total {b.total.unexplained:+,} bytes'} unexplained)")
        elif b.verified is None:
            found.nothing.append(f"{cell}: the byte counter measured nothing ({_short(b.error or '', 160)})")
    measured_any: dict[tuple[str, Any], bool] = {}
    for tplan in collected.plan.targets:
        for spec in collected.plan.counters:
            measured_any[(tplan.name, spec)] = False
    for m in collected.measurements.values():
        if m.count is not None:
            measured_any[(m.target, m.spec)] = True
    for tplan in collected.plan.targets:
        specs = collected.plan.counters
        if specs and not any(measured_any[(tplan.name, s)] for s in specs):
            why = tplan.unavailable or next((r.error for r in collected.records
                                             if r.target == tplan.name and r.error), "")
            found.nothing.append(f"target {tplan.name}: no counter measured any cell"
                                 + (f" ({_short(why, 160)})" if why else ""))
            continue
        for spec in specs:
            if not measured_any[(tplan.name, spec)]:
                found.nothing.append(f"{tplan.name} counter {spec.label}: measured no cell")
    for name, why in collected.plan.skipped_counters.items():
        if " " not in name and name in requested_counters:
            found.nothing.append(f"counter {name} was requested but is unavailable: {why}")
    if perf is not None:
        found.nothing.extend(perf.problems)
    return found
