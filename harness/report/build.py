"""``harness report`` end to end: collect, render, plot, write atomically, summarise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.report import render
from harness.report.collect import Collected, collect
from harness.report.inputs import ReportPlan
from harness.report.output import OutLock, ReportDir, check_out_dir

__all__ = ["ReportResult", "run_report", "FILES"]

#: The data files of a report (plots come on top), with what each holds.
FILES = {
    "report.md": "the report to read: configuration, headline, stage tables per mode, blind spots, pages, plots",
    "report.json": "machine-readable: one record per page x mode x stage x counter with layout and environment",
    "report.csv": "the same records as flat columns (pandas.read_csv)",
    "static_compute.json": "per page x mode x stage: parameters, analytic FLOPs, bytes, activations, intensity",
    "static_compute.md": "the same, as tables",
}


@dataclass
class ReportResult:
    out: Path
    collected: Collected
    files: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0            # the whole run, files written (from ``started`` when given)
    summary_line: str = ""
    perf: Any = None                # harness.report.perf.PerfResult
    findings: Any = None            # harness.report.verdict.ExitFindings

    @property
    def exit_code(self) -> int:
        return 0 if self.findings is None else self.findings.code


def _dimensions(plan: ReportPlan) -> str:
    modes = [(t.name, len(t.modes)) for t in plan.targets]
    if len(modes) == 1:
        mode_text = f"{modes[0][1]} modes"
    else:
        mode_text = f"{sum(n for _, n in modes)} modes ({', '.join(f'{t} {n}' for t, n in modes)})"
    return (f"{len(plan.pages)} pages × {mode_text} × {plan.stage_count} stages × "
            f"{len(plan.counters)} counters")


def summary_line(plan: ReportPlan, collected: Collected, out: Path, data_files: list[str],
                 plots: list[str], seconds: float | None, findings: Any = None) -> str:
    """One line: dimensions, where, what, how long (``None``: left out) and the findings."""
    counts = render.summary_counts(collected)
    extra = []
    if counts["key_mismatches"]:
        extra.append(f"{counts['key_mismatches']} torch op-key mismatches")
    if counts["unknown_blind_spots"]:
        extra.append(f"{counts['unknown_blind_spots']} unknown blind spots")
    if counts["golden_differs"]:
        extra.append(f"{counts['golden_differs']} counts DIFFER from their golden")
    # stated at 0 too: a reader gating on the line sees that every cell was measured
    extra.append(f"{counts['not_measured']} cells NOT MEASURED" + (" (see report.md)" if counts["not_measured"] else ""))
    took = "" if seconds is None else f" in {seconds:.1f} s"
    verdict = ""
    if findings is not None:
        verdict = f"; exit {findings.code}" if findings.code else "; pass"
    return (f"report: {_dimensions(plan)} → {out} ({', '.join(data_files[:3])}, "
            f"{', '.join(data_files[3:])}{', ' if data_files[3:] else ''}{len(plots)} plots){took}; "
            f"{counts['above_band']} unexplained deltas above band"
            + ("; " + "; ".join(extra) if extra else "") + verdict)


def run_report(plan: ReportPlan, out: Path | str, *, progress: bool | None = None,
               stream: TextIO | None = None, engine: Any = None, plots: bool = True,
               jobs: int = 1, perf: Any = None, started: float | None = None,
               requested_counters: tuple[str, ...] = ()) -> ReportResult:
    """Measure, render and write the report of ``plan`` into ``out`` (atomically).

    ``perf`` (:class:`harness.report.perf.PerfPlan`) adds the roofline (``--gpu``) and the measured
    time (``--measure``); ``started`` (a ``time.perf_counter()`` value) is when the run began, so the
    summary's time covers it all."""
    from tqdm import tqdm

    from harness.report.perf import PerfPlan, run_perf
    from harness.report.verdict import exit_findings

    start = time.perf_counter() if started is None else started
    stream = stream if stream is not None else sys.stderr
    out = Path(out)
    inputs = page_inputs(plan)
    check_out_dir(out, inputs=inputs)
    with OutLock(out):      # one run at a time into one --out: a second refuses, naming this one
        return _run_locked(plan, out, inputs, progress=progress, stream=stream, engine=engine, plots=plots,
                           jobs=jobs, perf=perf, start=start, requested_counters=requested_counters)


def page_inputs(plan: ReportPlan) -> list[str]:
    """Every file the report reads its pages from (``--out`` may hold none of them)."""
    found = [str(p) for p in plan.page_inputs]
    found += [str(page.path) for page in plan.pages if page.path is not None]
    return list(dict.fromkeys(found))


def _run_locked(plan: ReportPlan, out: Path, inputs: list[str], *, progress: bool | None, stream: TextIO,
                engine: Any, plots: bool, jobs: int, perf: Any, start: float,
                requested_counters: tuple[str, ...]) -> ReportResult:
    from tqdm import tqdm

    from harness.report.perf import PerfPlan, run_perf
    from harness.report.verdict import exit_findings

    check_out_dir(out, inputs=inputs)    # again under the lock: what a finished run left is seen

    def say(text: str) -> None:
        if progress is not False:
            print(text, file=stream, flush=True)

    def bar(total: int, desc: str = "counting (one run per shape key)", unit: str = "count") -> Any:
        disable = True if progress is False else (False if progress else None)   # None: only on a TTY
        return tqdm(total=total, desc=desc, unit=unit, file=stream, disable=disable, dynamic_ncols=True,
                    mininterval=0.5)

    collected = collect(plan, progress=bar if progress is not False else None, status=say, engine=engine,
                        jobs=jobs)
    perf_result = run_perf(collected, perf if perf is not None else PerfPlan(), say=say)
    findings = exit_findings(collected, perf_result, requested_counters=requested_counters)
    say("writing the report ...")
    data_files = list(FILES)
    with ReportDir(out, check_out_dir(out, inputs=inputs)) as tmp:
        tmp.write_text("report.csv", render.report_csv(collected))
        static = render.static_compute(collected)
        tmp.write_text("static_compute.json", render.dumps(static))
        tmp.write_text("static_compute.md", render.static_compute_markdown(collected))
        made: dict[str, str] = {}
        if plots:
            from harness.report.plots import make_plots, plot_jobs

            with bar(len(plot_jobs(collected, perf_result)), desc="plotting", unit="plot") as plot_bar:
                made = make_plots(collected, tmp.path, tick=lambda name: plot_bar.update(1), perf=perf_result)
        written = time.perf_counter() - start
        line = summary_line(plan, collected, out, data_files, list(made), None, findings)
        extra = {"summary_line": line, "files": data_files, "plots": list(made),
                 "seconds_before_writing": round(written, 3), "exit": findings.as_dict()}
        doc = render.report_json(collected, extra)
        doc["performance"] = perf_result.as_dict()
        tmp.write_text("report.json", render.dumps_lines(doc))
        del doc
        tmp.write_text("report.md", render.report_markdown(collected, summary_line=line, plots=made,
                                                           files={**FILES, **made}, perf=perf_result,
                                                           findings=findings))
        tmp.commit()
    if tmp.kept:     # saved into --out during the run: kept beside the new report, never deleted
        print(f"harness report: warning: --out {out}: kept {', '.join(tmp.kept)}, saved into it during the run "
              "(not part of the report)", file=stream, flush=True)
    seconds = time.perf_counter() - start
    line = summary_line(plan, collected, out, data_files, list(made), seconds, findings)
    return ReportResult(out=out, collected=collected, files=data_files, plots=list(made), seconds=seconds,
                        summary_line=line, perf=perf_result, findings=findings)
