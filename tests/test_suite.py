"""The verification suite: one test and one golden per fact (see harness.run.plan).

* ``test_layout[<target>-<mode>-<page>]``: the page's view layout, token counts and the shape key
  each stage reaches, against ``golden/<target>/layout/<mode>.json`` (pure arithmetic);
* ``test_count[<target>-<stage>-<counter>-<shape key>]``: one counter's count of one stage at one
  shape key. Verification: the analytic model against the measured count, within the ``verify``
  band after the counter's known blind spots are explained (``explain_delta``); the matmul class
  exact against torch, op key by op key. Regression: the count equals its golden (``regress``
  band), with the same op sets, shape and pages;
* ``test_golden_analytic[<target>-<stage>-<shape key>]``: for a target this environment cannot
  run (the vendor DeepSeek-OCR in CI), the analytic model against the torch counts its own
  environment recorded in the goldens.

Only what can run here is collected; the run header says once per reason what was left out.
"""

from __future__ import annotations

import pytest

from harness.analytic import MATMUL_KEYS
from harness.run.engine import BYTES
from harness.golden import compare_values, format_mismatch
from harness.pytest.plugin import gate
from harness.inputs.selection import selection_from_config
from harness.run.plan import count_cases, layout_cases, layout_record
from harness.targets import target_class
from harness.verify import fact as verify_fact, key_rows


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the facts from the selection; leave out (and count) what cannot run here."""
    config = metafunc.config
    selection = selection_from_config(config)
    g = gate(config)
    name = metafunc.function.__name__
    if name == "test_layout":
        metafunc.parametrize("fact", [pytest.param(c, id=c.id) for c in layout_cases(selection)])
    elif name == "test_count":
        cases, left_out = count_cases(selection)
        params = []
        for case in cases:
            if not g.runnable.get(case.target, False):
                g.leave_out(g.reasons[case.target])
                continue
            marks = [pytest.mark.xdist_group(case.target)]
            if target_class(case.target).needs_model_path:
                marks.append(pytest.mark.vendor)       # `make test-vendor` selects them with -m vendor
            params.append(pytest.param(case, id=case.id, marks=marks))
        for reason, n in left_out.items():
            g.leave_out(reason, n)
        metafunc.parametrize("fact", params)
    elif name == "test_golden_analytic":
        cases, _ = count_cases(selection, counters=("torch",))
        metafunc.parametrize("fact", [pytest.param(c, id=f"{c.target}-{c.stage}-{c.key}") for c in cases
                                      if not g.runnable.get(c.target, False)])


def test_layout(fact, golden) -> None:
    """The page's layout, tokens and shape keys equal the golden row."""
    from harness.run.plan import _text_tokens

    golden.layout(fact.target, fact.mode, fact.page, layout_record(fact.target, fact.mode, fact.page),
                  text_tokens=_text_tokens())


def _measure(engine, fact):
    __tracebackhide__ = True
    try:
        # the stock tools' tests (test_counters_ocr2) read the stock count of the same trace / forward
        return engine.measure(fact.case, also=("stock",))
    except Exception as exc:
        pytest.fail(f"measuring {fact.id} on page {fact.first[1]!r} ({fact.first[0]}) failed:\n"
                    f"{engine.failure_text(fact.case) or f'{type(exc).__name__}: {exc}'}", pytrace=False)


def test_count(fact, engine, golden, bands) -> None:
    """Analytic vs measured within the band; measured vs golden; ops and shape unchanged."""
    from harness.golden.records import entry_record

    measured = _measure(engine, fact)
    problems = list(verify_fact(engine, fact.case, measured, bands, name=fact.id).problems)
    if fact.counter == BYTES:
        from harness.measure.bytes import bytes_record

        record = bytes_record(measured)
    else:
        record = entry_record(measured)
    if problems and golden.update:      # a count the analytic model does not explain is not recorded
        pytest.fail("\n\n".join(problems + ["(not recorded: fix the count or the model first)"]), pytrace=False)
    try:
        golden.count(fact.target, fact.stage, fact.counter, fact.key, record,
                     shape=fact.shape, environment=engine.environment(fact.case))
    except pytest.fail.Exception as exc:
        problems.append(str(exc))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def vendor_command(fact) -> str:
    """How the goldens of a target this environment cannot run are made."""
    return ("make golden-vendor MODEL_PATH=<DeepSeek-OCR directory>   # in the vendor environment; one "
            f"key: make golden-vendor MODEL_PATH=DIR PYTEST_ADDOPTS='--stage {fact.stage} --counter torch'")


def test_golden_analytic(fact, engine, golden) -> None:
    """The analytic model against the torch count another environment recorded (exact per op key)."""
    entry, doc = golden.read_count(fact.target, fact.stage, fact.key, "torch", command=vendor_command(fact))
    rows = compare_values("shape", fact.shape, doc["shape"])
    if rows:
        pytest.fail(format_mismatch(f"count golden {fact.id}: the shape this key stands for (obtained) is not "
                                    "the one the golden was made for (expected).", rows,
                                    regenerate=vendor_command(fact)), pytrace=False)
    analytic = engine.analytic(fact.case, attn_implementation=doc["environment"].get("attn_implementation"))
    rows = key_rows(dict(analytic.flops), entry.get("by_key", {}), MATMUL_KEYS)
    if rows:
        pytest.fail(format_mismatch(
            f"count golden {fact.id}: the analytic model (expected) differs from the torch count the "
            f"{fact.target} code gave (obtained, transformers {doc['environment'].get('transformers')}); the "
            "matmul class must be exact, op key by op key.", rows), pytrace=False)


def gate_runnable(engine, target: str) -> bool:
    from harness.targets import target_class

    return target_class(target).environment_problem() is None
