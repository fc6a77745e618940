"""``harness report``: the stage-by-stage FLOP report (Markdown, JSON, CSV, static compute, plots).

The numbers come from the verification suite's own engine (:class:`harness.run.engine.Engine`,
whose ``measure`` also gives the stock counter variants, memoised in the same table, and
:func:`harness.verify.fact`), so a report and a suite run on the same environment can
never disagree. FLOPs = 2 x MACs everywhere.
"""

from harness.report.build import FILES, ReportResult, run_report
from harness.report.collect import Collected, Record
from harness.report.inputs import CounterSpec, InputError, ReportPlan, TargetPlan
from harness.report.output import OutputError

__all__ = ["run_report", "ReportResult", "FILES", "Collected", "Record",
           "ReportPlan", "TargetPlan", "CounterSpec", "InputError", "OutputError"]
