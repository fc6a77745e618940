"""harness.verify: one verdict per fact, and the layering that keeps counters measuring only.

Here: the verdict shapes on hand-made counts, and the imports of measure/ and run/engine.py (the
byte verdict on the engine's own measurement: tests/test_bytes.py, which shares its measurements).
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

from harness.analytic import Cost
from harness.verify import Verdict, device_verdict, expected_verdict
from tests.test_count_api import stage_count as _count

ROOT = Path(__file__).resolve().parents[1] / "harness"


def _harness_imports(path: Path) -> set[str]:
    """Every ``harness...`` module a file imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "harness":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "harness")
    return found


def test_counters_only_measure_they_import_no_target_and_no_verdict():
    """measure/ (the counters) reads the analytic op keys and the run mechanics (counting on the kept
    thread, the call memo), nothing above: no target, no verdict, no golden, no report."""
    imports = {f.name: _harness_imports(f) for f in sorted((ROOT / "measure").glob("*.py"))}
    assert "delta.py" not in imports           # explaining a delta is a verdict's job (verify/delta.py)
    used = set().union(*imports.values())
    assert used == {"harness.analytic.cost", "harness.run.callmemo", "harness.run.modelrun"}, imports


def test_the_engine_measures_and_does_not_verify():
    imports = _harness_imports(ROOT / "run" / "engine.py")
    assert not {m for m in imports if m.startswith(("harness.verify", "harness.golden.compare"))}, imports
    source = (ROOT / "run" / "engine.py").read_text()
    for name in ("def verification", "def verification_problems", "def key_rows", "def bytes_problems"):
        assert name not in source


def test_expected_verdict_states_each_failure_once_as_a_problem():
    torch_count = _count(raw=1_000, flops=1_000, by_key={"linear": 1_000})
    thop_count = _count(counter="thop", convention="mac", raw=510, flops=1_020, by_key={"linear": 1_020})
    verdict = expected_verdict(1_000, {"torch patched": torch_count, "thop patched": thop_count}, torch_count)
    # thop's +20 FLOPs have no named cause: its remainder is outside rtol 0; torch is exact
    assert {k: d.remainder for k, d in verdict.rows.items()} == {"torch patched": 0, "thop patched": 20}
    assert not verdict.passed and verdict.reasons == ()
    assert verdict.problems == ("thop patched: remainder +20 FLOPs outside the band (rel 0 of 1,000)",)
    loose = expected_verdict(1_000, {"thop patched": thop_count}, torch_count, rtol=0.02)
    assert loose.passed and loose.problems == () and isinstance(loose, Verdict)


def test_device_verdict_rows_hold_each_matmul_key_on_both_devices_and_the_model():
    def count(by_key, complete=True):
        return SimpleNamespace(by_key=by_key, complete=complete, summary=lambda: str(by_key))

    analytic = Cost(flops={"linear": 600, "sdpa_qk": 200, "norm": 9})
    same = device_verdict(count({"linear": 600, "sdpa_qk": 200}), count({"linear": 600, "sdpa_qk": 200, "norm": 4}),
                          analytic)
    assert same.verified and same.rows == (("linear", 600, 600, 600), ("sdpa_qk", 200, 200, 200))
    cuda_blind = device_verdict(count({"linear": 600}, complete=False), count({"linear": 600, "sdpa_qk": 200}),
                                analytic)
    assert cuda_blind.rows == (("linear", 600, 600, 600), ("sdpa_qk", 0, 200, 200))
    assert len(cuda_blind.problems) == 3 and not cuda_blind
