"""One ``harness report`` run in a fresh process, for the report benchmarks: its wall time, peak
RSS and report.json size (``python benchmarks/report_run.py PAGES OUT``; prints one JSON line).

``PAGES`` is ``default`` (the 5 built-in pages) or a number N: N generated pages sharing the letter
page's size (hence every shape key), named ``letter-000`` ... The counts run in one process
(``jobs=1``) so the figures do not depend on the machine's idle CPUs.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def main(pages: str, out: str) -> dict:
    started = time.perf_counter()
    from harness.cli import _plan, build_parser
    from harness.inputs.pages import Page, builtin_pages
    from harness.report.build import run_report

    args = build_parser().parse_args(["report", "--out", out])
    plan = _plan(args, ["report"])
    if pages != "default":
        letter = next(p for p in builtin_pages("default") if p.page_id == "letter")
        plan.pages = [Page(f"letter-{i:03d}", letter.width, letter.height, letter.path, letter.mode, letter.category)
                      for i in range(int(pages))]
        plan.plot_page, plan.page_set, plan.pages_source = plan.pages[0].page_id, None, f"{pages} generated pages"
    result = run_report(plan, Path(out), progress=False, jobs=1, started=started)
    return {"pages": len(plan.pages), "seconds": result.seconds, "measure_seconds": result.collected.measure_seconds,
            "model_runs": result.collected.model_runs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "report_json_mb": (Path(out) / "report.json").stat().st_size / 1e6, "exit_code": result.exit_code}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
