"""Verdicts: is a measured fact what the analytic model says, and if not, why not.

``fact(engine, case, measured, bands) -> Verdict(rows, problems)`` is the one verdict of one count
fact, for the suite and the report (:mod:`.fact`); the same checks serve ``harness.count``'s expected
count and the GPU suite's device comparison (:mod:`.flops`) and the byte counter (:mod:`.bytes`).
:mod:`.delta` splits a FLOP delta into named causes. Counters only measure (:mod:`harness.measure`).
"""

from .verdict import Verdict
from .delta import (KNOWN_BLIND_SPOTS, TOOL_PROPERTIES, BlindSpot, DeltaComponent, DeltaExplanation,
                    PairExplanation, ToolProperty, explain_delta, explain_pair)
from .flops import (ExpectedVerdict, FlopVerdict, device_verdict, expected_verdict, flop_verdict,
                    key_differences, key_rows, matmul_by_key)
from .bytes import BytesRow, BytesVerdict, bytes_verdict
from .fact import fact

__all__ = [
    "Verdict", "fact", "FlopVerdict", "flop_verdict", "key_differences", "key_rows", "ExpectedVerdict",
    "expected_verdict", "matmul_by_key", "device_verdict", "BytesRow", "BytesVerdict", "bytes_verdict",
    "explain_delta", "DeltaExplanation", "DeltaComponent", "BlindSpot", "KNOWN_BLIND_SPOTS",
    "explain_pair", "PairExplanation", "ToolProperty", "TOOL_PROPERTIES",
]
