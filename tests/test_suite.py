"""The verification suite: target x mode x page x stage x counter, ids ``<target>-<mode>-<page>-<stage>-<counter>``.

``test_stage`` (one per case) asserts two things:

* verification: the analytic model against the measured counter, within the ``verify`` band of
  (stage, counter, convention) in golden/tolerances.toml, after the counter's known blind spots
  are explained (``explain_delta``); the matmul class is exact against torch, op key by op key;
* regression: the measured count equals its golden (``regress`` band), and the sets of ops and
  unknown ops are unchanged.

``test_vendor_golden`` (dsocr, torch) runs everywhere, the CI included: it checks the analytic
model against the torch counts the vendor environment recorded in golden/dsocr/**, although this
environment cannot load the vendor code.

Counts are memoised per shape key (see harness.suite), so hundreds of pages cost a handful of
model runs; the selection options (--target, --mode, --page, --page-set, --stage, --counter)
narrow the cases.
"""

from __future__ import annotations

import pytest

from harness.golden import Mismatch, format_mismatch
from harness.suite import (
    NOT_MEASURABLE_ON_META,
    Case,
    SuiteCache,
    entry_record,
    key_rows,
    layout_record,
    native_transformers,
    needs_vendor,
    not_measurable,
    selection_from_config,
    suite_cases,
    verification_problems,
)

NO_NATIVE_OCR2 = ("ocr2 needs transformers >= 5 (native DeepSeek-OCR-2); this is the vendor "
                  "environment: run the ocr2 suite in the main environment")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``case`` from the selection options; marks carry the golden key."""
    if "case" not in metafunc.fixturenames:
        return
    selection = selection_from_config(metafunc.config)
    vendor_check = metafunc.function.__name__ == "test_vendor_golden"
    if vendor_check:
        cases = [c for c in suite_cases(selection, counters=("torch",)) if needs_vendor(c.target)]
    else:
        cases = suite_cases(selection)
    native = native_transformers()
    cache = SuiteCache()        # layouts only (pure arithmetic): the xdist groups
    params = []
    for case in cases:
        marks = [pytest.mark.golden(case.id)]
        # under `pytest -n N --dist loadgroup`, the pages of one prefill length (hence mostly one
        # view layout) stay on one worker, so each worker measures each shape key once
        length = cache.shape_key(Case(case.target, case.mode, case.page, "prefill", case.counter))[1]
        marks.append(pytest.mark.xdist_group(f"{case.target}-L{length}"))
        if not vendor_check and needs_vendor(case.target):
            marks.append(pytest.mark.vendor)
        if not vendor_check and case.target == "ocr2" and not native:
            marks.append(pytest.mark.skip(reason=NO_NATIVE_OCR2))
        reason = not_measurable(case)
        if reason and not vendor_check:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def _measure(suite_cache, case: Case):
    __tracebackhide__ = True
    try:
        return suite_cache.measure(case)
    except Exception as exc:
        first = suite_cache.first_page(case)
        pytest.fail(f"measuring {case.id} failed (memoised: every page with the shape key "
                    f"{suite_cache.shape_key(case)} fails the same way; first measured on page {first!r}):\n"
                    f"{suite_cache.failure_text(case) or f'{type(exc).__name__}: {exc}'}", pytrace=False)


def test_stage(case: Case, suite_cache, golden, bands) -> None:
    """Analytic vs measured within the band; measured vs golden; ops unchanged."""
    measured = _measure(suite_cache, case)
    analytic = suite_cache.analytic(case)
    problems = verification_problems(case, analytic, measured, bands)
    layout = layout_record(suite_cache.layout(case.target, case.mode, case.page),
                           text_tokens=suite_cache.text_tokens)
    try:
        golden.check(entry_record(measured), layout=layout, environment=suite_cache.environment(case))
    except pytest.fail.Exception as exc:
        problems.append(str(exc))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def vendor_command(case: Case) -> str:
    """How the vendor golden of ``case`` is made: in the vendor environment, from the vendor code."""
    return ("make golden-vendor MODEL_PATH=<DeepSeek-OCR directory>   # all vendor goldens; or, in the "
            "vendor environment (make vendor-env):\n  .venv-vendor/bin/python -m pytest -m vendor "
            "--model-path <DeepSeek-OCR directory> --trust-remote-code --update-golden "
            f"--target {case.target} --mode {case.mode} --page {case.page}")


def test_vendor_golden(case: Case, suite_cache, golden, bands) -> None:
    """Analytic model vs the torch counts recorded in the vendor environment (golden/dsocr/**)."""
    if golden.update and not golden.exists():
        pytest.skip("no vendor golden yet; this run regenerates goldens (make golden-vendor)")
    entry, doc = golden.read(command=vendor_command(case))
    layout = layout_record(suite_cache.layout(case.target, case.mode, case.page),
                           text_tokens=suite_cache.text_tokens)
    rows = [Mismatch(f"layout.{k}", layout.get(k), v, "layout changed")
            for k, v in sorted((doc.get("layout") or {}).items()) if layout.get(k) != v]
    if rows:
        pytest.fail(format_mismatch(
            f"vendor golden {case.id}: the workload's layout (obtained) is not the layout the vendor "
            "counts were made for (expected); regenerate the vendor goldens (make golden-vendor).", rows),
            pytrace=False)
    analytic = suite_cache.analytic(case, attn_implementation=doc["environment"].get("attn_implementation"))
    from harness.analytic import MATMUL_KEYS

    rows = key_rows(dict(analytic.flops), entry.get("by_key", {}), MATMUL_KEYS)
    if rows:
        pytest.fail(format_mismatch(
            f"vendor golden {case.id}: the analytic model (expected) differs from the torch count the "
            f"vendor code gave (obtained, transformers {doc['environment'].get('transformers')}); the "
            "matmul class must be exact, op key by op key.", rows), pytrace=False)


@pytest.mark.parametrize("target, stage, counter", [
    pytest.param(t, s, c, id=f"{t}-{s}-{c}".replace("*", "ocr2"),
                 marks=[pytest.mark.vendor] if needs_vendor(t) else [])
    for (t, s, c) in NOT_MEASURABLE_ON_META])
def test_still_not_measurable(target, stage, counter, suite_cache) -> None:
    """Each NOT_MEASURABLE_ON_META entry still fails on one page (else: remove it, regenerate)."""
    target = "ocr2" if target == "*" else target
    if target == "ocr2" and not native_transformers():
        pytest.skip(NO_NATIVE_OCR2)
    case = Case(target, "base", "letter", stage, counter)
    try:
        suite_cache.measure(case)
    except Exception:
        return
    pytest.fail(f"{counter} now measures {target} {stage} on meta: remove the entry from "
                f"harness.suite.NOT_MEASURABLE_ON_META and run `pytest --update-golden`", pytrace=False)
