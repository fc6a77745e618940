"""``harness profile``'s options and run (``python -m harness.gpu`` too): time every stage of a
target on one device and write the table.

Example (GPU): ``harness profile --target ocr2 --mode base --page letter --device cuda:0
--out reports/gpu``. On CPU (``--device cpu --small``) the achievable peak is measured first, as
``harness report --measure --device cpu`` does; the peak overrides win where given.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from harness.gpu.measure import DEFAULT_DECODE_CONTEXTS
from harness.inputs.targets import DEFAULT_TARGET, FACTS, TARGETS
from harness.gpu.peaks import PEAK_BANDWIDTH_ENV, PEAK_TFLOPS_ENV, UnknownDeviceError


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness profile", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``harness profile``."""
    parser.add_argument("--target", default=DEFAULT_TARGET, choices=TARGETS)
    parser.add_argument("--mode", default="base")
    parser.add_argument("--page", default="letter", help="built-in page id or an image path (default letter)")
    parser.add_argument("--device", default="cuda:0", help="cuda:N (default cuda:0) or cpu (its peak measured here)")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"),
                        help="model dtype (default bf16, as the vendor runs)")
    parser.add_argument("--small", action="store_true", help="the shrunken configuration (CPU smoke runs)")
    parser.add_argument("--stage", action="append", dest="stages", metavar="STAGE",
                        help="time only this stage (repeatable; default all)")
    parser.add_argument("--decode-contexts", type=_ints, default=DEFAULT_DECODE_CONTEXTS,
                        help="cached tokens at which one decode token is timed (default "
                             f"{','.join(map(str, DEFAULT_DECODE_CONTEXTS))})")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help=f"dense peak TFLOP/s for the dtype (overrides the table and ${PEAK_TFLOPS_ENV})")
    parser.add_argument("--peak-bandwidth", type=float, default=None,
                        help=f"memory bandwidth GB/s (overrides the table and ${PEAK_BANDWIDTH_ENV})")
    parser.add_argument("--bytes", choices=("fused", "op"), default="fused", dest="bytes_convention",
                        help="the bytes the roofline divides by the bandwidth, as harness report --bytes: "
                             "'fused' (default) or 'op'")
    parser.add_argument("--attn-implementation", default=None,
                        help="; ".join(f"{t}: {', '.join(f.attn_implementations)} (default {f.default_attention})"
                                       for t, f in FACTS.items()))
    parser.add_argument("--experts-implementation", default=None,
                        help="eager (target default on real tensors), batched_mm or grouped_mm")
    parser.add_argument("--model-path", default=None, help="dsocr: the vendor directory (vendor environment)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--out", default="reports/gpu", help="directory for the .md and .json (default reports/gpu)")


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Profile as ``args`` say (``args.device`` already checked); 2 on an unknown device or page."""
    from harness.gpu.profile import DTYPES, profile_target

    try:
        profile = profile_target(
            args.target, device=args.device, dtype=DTYPES[args.dtype], mode=args.mode, page=args.page,
            small=args.small, stages=args.stages, decode_contexts=args.decode_contexts, warmup=args.warmup,
            repeats=args.repeats, peak_tflops=args.peak_tflops, bandwidth_gbps=args.peak_bandwidth,
            attn_implementation=args.attn_implementation, experts_implementation=args.experts_implementation,
            model_path=args.model_path, trust_remote_code=args.trust_remote_code,
            bytes_convention=args.bytes_convention)
    except (UnknownDeviceError, ValueError) as exc:
        print(f"harness profile: error: {exc}", file=stderr)
        return 2
    md, js = profile.write(args.out)
    print(profile.markdown(), file=stdout)
    print(f"wrote {md} and {js}", file=stderr)
    return 0

