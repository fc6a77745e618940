"""The ``harness`` command: ``report`` (the main job), ``layout``, ``count``, ``peak`` and ``profile``.

``harness report`` needs nothing but the install (OCR-2 on meta, the built-in pages, every mode and
counter; ``--model-path DIR --trust-remote-code`` adds the vendor model); bad input exits 2 and
touches nothing in ``--out``. ``harness count`` is :mod:`harness.count.cli`. Exit codes and
options: docs/report.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_BAD_INPUT"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_OUT = "out/report"
DEFAULT_PLOT_PAGE = "letter"
MAX_DEFAULT_JOBS = 4
#: Bounds of the numbers a user types: past them a number means nothing (a typo, inf, nan).
MAX_NEW_TOKENS = 10_000_000
MAX_PEAK_TFLOPS = 1e6          # 1 EFLOP/s on one device
MAX_PEAK_GBPS = 1e6            # 1 PB/s


def _add_page_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pages")
    group.add_argument("--pages", nargs="+", metavar="PATH", default=None,
                       help="page images, PDFs (one page per PDF page, ids FILE-p001, ..., sized as "
                            "DeepSeek-OCR renders them at 144 dpi), directories of them, or OmniDocBench-style "
                            "JSON manifests ([{\"page_info\": {\"width\", \"height\", \"image_path\"}}, ...])")
    group.add_argument("--page-set", choices=("default", "grid", "corpus"), default=None,
                       help="a built-in page set instead of --pages (default: 'default', 5 pages: "
                            "letter, a4, slide, small, strip-h)")


def _add_target_options(parser: argparse.ArgumentParser, *, model: bool) -> None:
    parser.add_argument("--target", action="append", metavar="NAME", default=None,
                        help="ocr2 (DeepSeek-OCR-2, transformers-native; the default) and/or dsocr (vendor "
                             "DeepSeek-OCR; the default too when --model-path is given); comma-separated "
                             "or repeated")
    parser.add_argument("--modes", action="append", metavar="MODE[,MODE]", default=None,
                        help="modes to cover (default: every mode of each target), e.g. base,gundam")
    if model:
        parser.add_argument("--model-path", metavar="DIR", default=None,
                            help="local vendor DeepSeek-OCR directory (config.json + remote code; weights "
                                 "optional): adds target dsocr")
        parser.add_argument("--trust-remote-code", action="store_true",
                            help="allow running the Python files of --model-path (required with it)")


def _add_perf_options(report: argparse.ArgumentParser) -> None:
    """Roofline, measured time, MFU and the exit-code opt-out of ``harness report``."""
    from harness.report.perf import DEFAULT_NEW_TOKENS

    perf = report.add_argument_group("roofline and time")
    perf.add_argument("--gpu", metavar="NAME", default=None,
                      help="predict each stage's time on a GPU of the peak table (harness/gpu/peaks.py; e.g. "
                           "'H100 SXM5 80GB', 'a100 sxm4 80', 'NVIDIA H200'): intensity, bound, predicted "
                           "time; TTFT, TPOT and the time for --new-tokens per page; a roofline plot")
    perf.add_argument("--bytes", choices=("fused", "op"), default="fused", dest="bytes_convention",
                      help="the bytes the roofline divides by the bandwidth: 'fused' (default: what production "
                           "GPU kernels move; flash SDPA reads Q, K, V and writes O; see docs/bytes.md) or 'op' "
                           "(every aten op's reads and writes, no fusion, routed experts as a loop over the experts hit)")
    perf.add_argument("--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, metavar="N",
                      help=f"tokens a request generates, for the per-page totals (default {DEFAULT_NEW_TOKENS})")
    perf.add_argument("--batch", default=None, metavar="B[,B]",
                      help="with --gpu: the serving table, throughput and latency per page at each batch (e.g. "
                           "1,8,32,128) and at the largest concurrency that fits the card's memory (docs/serving.md); "
                           "with --measure: time the stages at the first batch")
    perf.add_argument("--dtype", choices=("bf16", "fp16", "tf32", "fp32"), default=None,
                      help="dtype of the roofline and of the timed run (default: bf16; fp32 when --measure "
                           "runs on cpu)")
    perf.add_argument("--measure", action="store_true",
                      help="also time every stage for real on --device (cpu or cuda:N; the counts stay on "
                           "meta): median/IQR, achieved FLOP/s, MFU against the peak measured there "
                           "(harness peak), measured against roofline-predicted time")
    perf.add_argument("--small", action="store_true",
                      help="--measure the shrunken configuration (random weights; seconds on a CPU)")
    perf.add_argument("--warmup", type=int, default=3, metavar="N", help="--measure: untimed runs per stage and per peak kernel (default 3)")
    perf.add_argument("--repeats", type=int, default=10, metavar="N", help="--measure: timed runs per stage and per peak kernel (default 10)")
    perf.add_argument("--peak-tflops", type=float, default=None, metavar="TFLOPS",
                      help="--measure: use this dense peak instead of the measured one")
    perf.add_argument("--peak-bandwidth", type=float, default=None, metavar="GBPS",
                      help="--measure: use this bandwidth (GB/s) instead of the measured one")
    report.add_argument("--exit-zero", action="store_true",
                        help="exit 0 even when a count differs from its golden, a delta is not explained or a "
                             "requested target/counter measured nothing (the report and summary still say so)")


def _add_peak_parser(sub: Any) -> None:
    peak = sub.add_parser("peak", help="measure the achievable matmul FLOP/s and copy bandwidth of a device",
                          description="Time dense square matmuls (a size ladder; the best median wins) and one "
                                      "large copy on --device, with warm-up, repeats, median and IQR; print the "
                                      "achievable peak and, where the peak table knows the device, its datasheet "
                                      "figures beside it.")
    peak.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    peak.add_argument("--dtype", choices=("bf16", "fp16", "tf32", "fp32"), default=None,
                      help="matmul dtype (default: fp32 on cpu, bf16 on cuda)")
    peak.add_argument("--sizes", default=None, metavar="N[,N]", help="square matmul sizes (default: by device)")
    peak.add_argument("--warmup", type=int, default=2)
    peak.add_argument("--repeats", type=int, default=5)
    peak.add_argument("--json", action="store_true", help="print JSON instead of Markdown")


def _add_profile_parser(sub: Any) -> None:
    from harness.gpu.profile_cli import add_arguments

    profile = sub.add_parser("profile", help="time every stage of one target x mode x page on a device "
                                             "(MFU, roofline; writes .md and .json)",
                             description="Build a target (random weights) on --device, time each stage "
                                         "(decode at several contexts) and write the per-stage table.")
    add_arguments(profile)


def build_parser() -> argparse.ArgumentParser:
    import harness

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Stage-by-stage FLOP verification of DeepSeek-OCR / DeepSeek-OCR-2 (FLOPs = 2 x MACs).")
    parser.add_argument("--version", action="version", version=f"harness {harness.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    report = sub.add_parser(
        "report", help="measure and write the FLOP report (Markdown, JSON, CSV, static compute, plots)",
        description="Count every stage of every mode on every page with every installed counter (patched "
                    "and stock), explain each delta against the analytic model, and write report.md, "
                    "report.json, report.csv, static_compute.{json,md} and PNG plots into --out "
                    "(atomically: a failed run leaves the previous report in place).")
    _add_target_options(report, model=True)
    _add_page_options(report)
    report.add_argument("--counters", action="append", metavar="NAME[:VARIANT]", default=None,
                        help="torch, fvcore, thop; NAME counts both the patched variant (what the suite "
                             "asserts) and the stock one (as shipped: its blind spots are sized), "
                             "NAME:patched or NAME:stock only one (default: every installed counter, both "
                             "variants; torch stock only off meta, where it equals patched)")
    report.add_argument("--device", default="meta",
                        help="where the models are built and counted: meta (default; no weights, fast), "
                             "cpu, cuda[:N] (real random weights, slow at full size)")
    report.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"output directory (default: {DEFAULT_OUT}); created, or replaced if it holds "
                             "a previous report; a directory holding anything else is refused")
    report.add_argument("--force", action="store_true",
                        help="let --out replace a directory holding files that are not the previous "
                             "report's: they are listed, then deleted")
    report.add_argument("--plot-page", default=None, metavar="PAGE",
                        help=f"page of the per-stage bar plot and headline tables (default: "
                             f"{DEFAULT_PLOT_PAGE!r} if present, else the first page)")
    report.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes for the counts on meta (default: the idle CPUs, i.e. the CPU "
                             f"count minus the 1-minute load average, at most {MAX_DEFAULT_JOBS}; one "
                             "process when fewer than 2 are idle); 1 counts in this process")
    report.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress output (the summary line stays)")
    _add_perf_options(report)

    layout = sub.add_parser(
        "layout", help="print the view layout and token counts of pages x modes (no model)",
        description="For each page and mode: the views SAM sees, the crop grid, vision tokens, image "
                    "placeholders, the paper's valid tokens and the prefill length.")
    _add_target_options(layout, model=False)
    _add_page_options(layout)
    layout.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="output format (default: an aligned table)")
    from harness.count.cli import add_count_parser

    add_count_parser(sub)
    _add_peak_parser(sub)
    _add_profile_parser(sub)
    return parser


# -------------------------------------------------------------------------------------- report
def _plan(args: argparse.Namespace, argv: Sequence[str]):
    from harness.report.inputs import (InputError, ReportPlan, resolve_counters, resolve_device, resolve_modes,
                                       resolve_pages, resolve_targets)

    targets = resolve_targets(args.target, args.model_path, args.trust_remote_code)
    mode_notes = resolve_modes(targets, args.modes)
    page_warnings: list[str] = []
    pages, source = resolve_pages(args.pages, args.page_set, warnings=page_warnings)
    device = resolve_device(args.device)
    choice = resolve_counters(args.counters, device)
    ids = [p.page_id for p in pages]
    plot_page = args.plot_page
    if plot_page is not None and plot_page not in ids:
        import difflib

        close = difflib.get_close_matches(plot_page, ids, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise InputError(f"--plot-page {plot_page!r}: not one of the report's pages.{hint} Pages: {', '.join(ids)}")
    if plot_page is None:
        plot_page = DEFAULT_PLOT_PAGE if DEFAULT_PLOT_PAGE in ids else ids[0]
    return ReportPlan(pages=pages, pages_source=source, targets=targets, counters=choice.specs,
                      skipped_counters=choice.skipped, device=device,
                      page_set=args.page_set or (None if args.pages else "default"),
                      model_path=args.model_path, trust_remote_code=args.trust_remote_code,
                      plot_page=plot_page, command=shlex.join(["harness", *argv]), notes=mode_notes,
                      warnings=page_warnings, page_inputs=[str(p) for p in args.pages or []])


def _perf_plan(args: argparse.Namespace) -> Any:
    """The roofline / measured-time part of the report; with --measure, --device is where stages are
    timed and the counts run on meta."""
    from harness.report.inputs import InputError, resolve_device
    from harness.report.perf import PerfPlan, context_limit, gpu_entry

    perf = PerfPlan(new_tokens=args.new_tokens, small=args.small, warmup=args.warmup, repeats=args.repeats,
                    peak_tflops=args.peak_tflops, peak_bandwidth=args.peak_bandwidth,
                    bytes_convention=args.bytes_convention)
    if not 1 <= args.new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"--new-tokens {args.new_tokens}: expected a number of generated tokens from 1 to "
                         f"{MAX_NEW_TOKENS:,}, far past any LM's context (ocr2: {context_limit('ocr2'):,})")
    if args.warmup < 0 or args.repeats < 1:
        raise InputError(f"--warmup {args.warmup} / --repeats {args.repeats}: expected >= 0 and >= 1")
    for name, value, unit, most in (("--peak-tflops", args.peak_tflops, "TFLOP/s", MAX_PEAK_TFLOPS),
                                    ("--peak-bandwidth", args.peak_bandwidth, "GB/s", MAX_PEAK_GBPS)):
        if value is not None and not (math.isfinite(value) and 0 < value <= most):
            raise InputError(f"{name} {value}: expected a finite positive number of {unit}, at most {most:,.0f} "
                             f"(a measured or datasheet peak; the MFU and the roofline divide by it)")
    if args.gpu is not None:
        perf.gpu = gpu_entry(args.gpu)
    if args.batch is not None:
        from harness.gpu.serving import parse_batches

        try:
            perf.batches = parse_batches(args.batch)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if args.gpu is None and not args.measure:
            raise InputError("--batch needs --gpu NAME (the serving table) or --measure (timing at that batch)")
    if args.measure:
        device = resolve_device(args.device)
        if device == "meta":
            raise InputError("--measure times real execution: pass --device cpu or --device cuda:N "
                             "(the counts stay on meta)")
        perf.measure_device = device
        args.device = "meta"
    elif args.small or args.peak_tflops is not None or args.peak_bandwidth is not None:
        raise InputError("--small, --peak-tflops and --peak-bandwidth apply to --measure; add --measure --device D")
    perf.dtype = args.dtype or "bf16"
    perf.measure_dtype = args.dtype or ("fp32" if (perf.measure_device or "").startswith("cpu") else "bf16")
    return perf


def _report(args: argparse.Namespace, argv: Sequence[str], stdout: TextIO, stderr: TextIO,
            started: float | None = None, engine: Any = None) -> int:
    from harness.report.build import page_inputs, run_report
    from harness.report.output import check_out_dir

    from harness.report.inputs import InputError, split_names

    perf = _perf_plan(args)
    plan = _plan(args, argv)
    # before any work: a bad --out costs nothing
    check_out_dir(args.out, force=args.force, inputs=page_inputs(plan),
                  warn=lambda text: print(f"harness report: warning: {text}", file=stderr))
    for warning in plan.warnings:
        print(f"harness report: warning: {warning}", file=stderr)
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: expected a positive number of worker processes")
    jobs = args.jobs if args.jobs is not None else default_jobs()
    for note in plan.notes:
        print(f"note: {note}", file=stderr)
    for name, why in plan.skipped_counters.items():
        if name in ("torch stock",):
            continue    # a choice, stated in the report, not a problem of the environment
        print(f"note: counter {name} skipped: {why}", file=stderr)
    for target in plan.targets:
        if target.unavailable:
            print(f"WARNING: {target.name}: counters cannot run in this environment ({target.unavailable}); "
                  "its analytic model and layouts are reported", file=stderr)
    requested = tuple(n.partition(":")[0] for n in split_names(args.counters))
    result = run_report(plan, Path(args.out), progress=False if args.quiet else None, stream=stderr,
                        plots=not args.no_plots, jobs=jobs, perf=perf, started=started,
                        requested_counters=requested, engine=engine)
    for warning in (result.perf.warnings if result.perf is not None else []):
        print(f"harness report: warning: {warning}", file=stderr)
    print(result.summary_line, file=stdout)
    if result.perf is not None and result.perf.serving:
        from harness.report.perf_render import serving_lines

        print("\n".join(serving_lines(result.perf, heading="#")), file=stdout)
    if result.exit_code:
        for line in result.findings.lines():
            print(f"harness report: {line}", file=stderr)
        if args.exit_zero:
            print(f"harness report: exit {result.exit_code} suppressed by --exit-zero", file=stderr)
            return EXIT_OK
    return result.exit_code


def default_jobs() -> int:
    """Worker processes worth starting: the idle CPUs (CPU count minus the 1-minute load), at most
    :data:`MAX_DEFAULT_JOBS`. Forked workers repeat some warm-up, so on a busy machine one process
    is faster; below 2 idle CPUs the counts run in this process."""
    import os

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        idle = cpus - os.getloadavg()[0]
    except (AttributeError, OSError):
        idle = cpus
    jobs = min(MAX_DEFAULT_JOBS, cpus, int(idle + 0.5))
    return jobs if jobs >= 2 else 1


# -------------------------------------------------------------------------------------- layout
def layout_rows(targets, pages) -> list[dict]:
    """One row per target x page x mode: views, grid and token counts."""
    from harness.inputs.workload import compute_view_layout, get_workload, prefill_length

    rows = []
    for target in targets:
        for page in pages:
            for mode in target.modes:
                layout = compute_view_layout(get_workload(target.name, mode), page.width, page.height)
                rows.append({
                    "target": target.name, "mode": mode, "page": page.page_id, "width": page.width,
                    "height": page.height,
                    "crop_grid": f"{layout.crop_cols}x{layout.crop_rows}" if layout.n_crops else "-",
                    "n_crops": layout.n_crops,
                    "views": " + ".join(f"{v.batch}x{v.size}px {v.role}" for v in layout.views),
                    "n_views": layout.n_views, "vision_tokens": layout.vision_tokens,
                    "image_tokens": layout.image_tokens, "valid_tokens": layout.valid_tokens,
                    "valid_tokens_vendor": layout.valid_tokens_vendor,
                    "prefill_length": prefill_length(layout),
                })
    return rows


def _layout(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from harness.report.inputs import TargetPlan, names_given, resolve_modes, resolve_pages
    from harness.inputs.targets import DEFAULT_TARGET, TARGETS

    names = names_given(args.target, "--target", DEFAULT_TARGET) or list(TARGETS)
    for name in names:
        if name not in TARGETS:
            from harness.report.inputs import unknown_name

            raise unknown_name("target", name, TARGETS, "--target")
    targets = [TargetPlan(n) for n in names]
    resolve_modes(targets, args.modes)
    page_warnings: list[str] = []
    pages, _ = resolve_pages(args.pages, args.page_set, warnings=page_warnings)
    for warning in page_warnings:
        print(f"harness layout: warning: {warning}", file=stderr)
    rows = layout_rows(targets, pages)
    if args.format == "json":
        stdout.write(json.dumps(rows, indent=2) + "\n")
    elif args.format == "csv":
        import csv

        writer = csv.DictWriter(stdout, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        columns = [("target", "target"), ("mode", "mode"), ("page", "page"), ("size", None),
                   ("crop grid", "crop_grid"), ("views", "views"), ("vision tok", "vision_tokens"),
                   ("placeholders", "image_tokens"), ("valid (Eq. 1)", "valid_tokens"),
                   ("vendor valid", "valid_tokens_vendor"), ("L", "prefill_length")]
        table = [[f"{r['width']}x{r['height']}" if key is None else "-" if r[key] is None else str(r[key])
                  for _, key in columns] for r in rows]
        widths = [max([len(h)] + [len(row[i]) for row in table]) for i, (h, _) in enumerate(columns)]
        numeric = {6, 7, 8, 9, 10}
        fmt = lambda cells: "  ".join(c.rjust(w) if i in numeric else c.ljust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        stdout.write(fmt([h for h, _ in columns]) + "\n")
        stdout.write("  ".join("-" * w for w in widths) + "\n")
        for row in table:
            stdout.write(fmt(row) + "\n")
        from harness.inputs.workload import OCR2_SMALL_PAGE_CONVENTION, VALID_TOKEN_CONVENTION

        stdout.write("vision tok: encoder outputs over all views; placeholders: image tokens in input_ids; "
                     "L: prefill length (BOS + prompt + placeholders)\n")
        stdout.write(f"{VALID_TOKEN_CONVENTION} (dsocr only; '-' for ocr2)\n")
        if any(r["target"] == "ocr2" for r in rows):
            stdout.write(f"{OCR2_SMALL_PAGE_CONVENTION}\n")
    return EXIT_OK


# ------------------------------------------------------------------------------- peak, profile
def _peak(args: argparse.Namespace, stdout: TextIO) -> int:
    from harness.gpu.achievable import measure_peak, peak_markdown
    from harness.report.inputs import InputError, resolve_device

    device = resolve_device(args.device)
    if device == "meta":
        raise InputError("--device meta has no time: pass --device cpu or --device cuda:N")
    sizes = None
    if args.sizes:
        try:
            sizes = tuple(int(v) for v in args.sizes.split(",") if v.strip())
        except ValueError:
            sizes = ()
        if not sizes or any(n < 1 for n in sizes):
            raise InputError(f"--sizes {args.sizes!r}: expected comma-separated positive integers, e.g. 1024,2048")
    if args.warmup < 0 or args.repeats < 1:
        raise InputError(f"--warmup {args.warmup} / --repeats {args.repeats}: expected >= 0 and >= 1")
    dtype = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")
    peak = measure_peak(device, dtype, sizes=sizes, warmup=args.warmup, repeats=args.repeats)
    if args.json:
        stdout.write(json.dumps(peak.as_dict(), indent=2) + "\n")
    else:
        stdout.write(peak_markdown(peak))
    return EXIT_OK


def _profile(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from harness.gpu.profile_cli import run
    from harness.report.inputs import resolve_device

    args.device = resolve_device(args.device)
    return run(args, stdout, stderr)


# ---------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
         engine: Any = None) -> int:
    """Run ``harness`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code. ``engine``
    (:class:`harness.run.engine.Engine`): ``harness report`` measures in it, reusing what it holds
    (default: a new one)."""
    import time

    started = time.perf_counter()
    from harness.report.inputs import InputError
    from harness.inputs.pages import ManifestError, PageError, SettingError
    from harness.report.output import OutputError
    from harness.golden.bands import BandsError

    argv = list(sys.argv[1:] if argv is None else argv)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # argparse: usage errors are 2, --help is 0
        return int(exc.code or 0)
    try:
        with _signals_interrupt():
            return _dispatch(args, argv, stdout, stderr, started, engine)
    except (InputError, OutputError, PageError, ManifestError, SettingError) as exc:
        print(f"harness {args.command}: error: {exc}", file=stderr)
        return EXIT_BAD_INPUT
    except BandsError as exc:       # golden/tolerances.toml, read by the report's verification
        text = " ".join(str(exc).split())
        print(f"harness {args.command}: error: the tolerance bands cannot be used: {text}", file=stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        _quiet_stdout(stdout)
        print(f"harness {args.command}: error: the output was closed before it was all written (broken pipe, "
              "e.g. piped into head); write it to a file to keep all of it", file=stderr)
        return EXIT_BAD_INPUT
    except Terminated as exc:
        print(f"harness {args.command}: {exc.name} received: stopped; its workers stopped too, nothing was "
              "written and a previous report in --out is as it was", file=stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted; nothing was written", file=stderr)
        return EXIT_INTERRUPTED


def _quiet_stdout(stdout: TextIO) -> None:
    """After a broken pipe: point the stream's descriptor at /dev/null, so the flush at exit is silent."""
    import os

    try:
        fd = stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: unwinds like Ctrl-C, so worker pools and temporary directories are
    cleaned up on the way out."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def _signals_interrupt():
    """While ``main`` runs in the main thread: SIGTERM and SIGHUP raise :class:`Terminated` (the default
    would end this process at once, leaving forked workers orphaned). The previous handlers come back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    saved = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):    # never take over a handler someone set
            saved[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in saved.items():
            signal.signal(signum, old)


def _dispatch(args: argparse.Namespace, argv: Sequence[str], stdout: TextIO, stderr: TextIO,
              started: float, engine: Any) -> int:
    if args.command == "report":
        return _report(args, argv, stdout, stderr, started, engine)
    if args.command == "count":
        from harness.count.cli import run_count

        return run_count(args, stdout, stderr)
    if args.command == "peak":
        return _peak(args, stdout)
    if args.command == "profile":
        return _profile(args, stdout, stderr)
    return _layout(args, stdout, stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
