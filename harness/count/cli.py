"""``harness count SPEC``: explained FLOP counts of a model a factory builds.

``SPEC`` is ``package.module:factory`` or ``path/to/file.py:factory``; ``factory()`` returns
``(model, args)``, ``(model, args, kwargs)`` or a :class:`~harness.count.ModelInputs` (see
:mod:`harness.count.factory`). Prints the summary (or a table as CSV / JSON / Markdown).

Exit codes: 0 counted (and, with an expected count, the verdict passed); 1 the verdict failed;
2 bad input (spec, import, factory, counters, device), one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import TextIO

__all__ = ["add_count_parser", "run_count", "EXIT_VERDICT_FAILED"]

EXIT_VERDICT_FAILED = 1
EXIT_BAD_INPUT = 2
FORMATS = ("text", "csv", "json", "markdown")


def add_count_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``count`` subcommand to the ``harness`` parser."""
    from . import TABLE_KINDS

    parser = sub.add_parser(
        "count", help="explained FLOP counts of your own model (every counter, stock and patched)",
        description="Count one call of the model a factory returns with every installed counter "
                    "(torch FlopCounterMode, fvcore, thop), stock and patched, and split every delta "
                    "into named causes (FLOPs = 2 x MACs). SPEC: package.module:factory or "
                    "path/to/file.py:factory; factory() returns (model, args) or (model, args, kwargs). "
                    "Build the model under torch.device('meta') to count without weights.")
    parser.add_argument("spec", metavar="SPEC", help="package.module:factory or path/to/file.py:factory")
    parser.add_argument("--counters", action="append", metavar="NAME[:VARIANT]", default=None,
                        help="torch, fvcore, thop (NAME:stock or NAME:patched for one variant); "
                             "default: every installed counter, both variants")
    parser.add_argument("--variants", default=None, metavar="stock,patched",
                        help="variants for counters named without one (default: both)")
    parser.add_argument("--device", default=None,
                        help="where to count (default: where the model is; meta counts a real model "
                             "on a meta copy); passed to a factory that has a device parameter")
    parser.add_argument("--expected", type=int, default=None, metavar="FLOPS",
                        help="the matmul-class FLOPs you derived: adds a verdict (exit 1 when it fails)")
    parser.add_argument("--rtol", type=float, default=0.0,
                        help="band on each counter's unexplained remainder, relative to --expected (default 0)")
    parser.add_argument("--table", choices=TABLE_KINDS, default=None,
                        help="print this table instead of the summary (counters, keys, modules, ops, deltas)")
    parser.add_argument("--depth", type=int, default=None, metavar="N",
                        help="with --table modules: module paths up to N levels deep")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="output format (text: the summary or an aligned table)")
    return parser


def run_count(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``harness count``: 0 counted, 1 the verdict failed, 2 bad input (one line on stderr)."""
    from .api import CountError, count
    from .factory import FactoryError, call_factory

    try:
        if args.depth is not None and args.depth < 0:
            raise CountError(f"--depth {args.depth}: expected a module path depth >= 0")
        if not (math.isfinite(args.rtol) and 0 <= args.rtol < 1):     # nan failed every count, inf passed any
            raise CountError(f"--rtol {args.rtol}: expected a finite fraction of --expected from 0 (exact) to "
                             "below 1 (e.g. --rtol 0.01 for 1%)")
        inputs = call_factory(args.spec, args.device)
        expected = args.expected if args.expected is not None else inputs.expected
        result = count(inputs.model, *inputs.args, counters=args.counters, variants=args.variants,
                       device=args.device or inputs.device, expected=expected, rtol=args.rtol,
                       call_kwargs=inputs.kwargs)
    except (CountError, FactoryError) as exc:
        text = " ".join(str(exc).split())
        stderr.write(f"harness count: error: {text}\n")
        return EXIT_BAD_INPUT
    if args.table is None and args.format == "text":
        stdout.write(result.summary() + "\n")
    elif args.table is None and args.format == "json":
        stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    else:
        frame = result.table(args.table or "counters", depth=args.depth)
        if args.format == "csv":
            stdout.write(frame.to_csv())
        elif args.format == "json":
            stdout.write(frame.to_json(orient="table", indent=2) + "\n")
        elif args.format == "markdown":
            stdout.write(_markdown(frame) + "\n")
        else:
            stdout.write(frame.to_string() + "\n")
    if result.verdict is not None and not result.verdict.passed:
        return EXIT_VERDICT_FAILED
    return 0


def _markdown(frame) -> str:
    """A Markdown table without the optional ``tabulate`` dependency."""
    frame = frame.reset_index() if frame.index.name else frame
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + " --- |" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])
