"""Counting speed: one page counted on meta, every stage, for each counter (pytest-benchmark).

DeepSeek-OCR-2 at full size on meta, the Letter page in Gundam (6 crops + global), every stage a
counter can count there (fvcore cannot ``jit.trace`` SAM's ``nn.Conv2d`` on meta). Each counter
counts the variants a report counts on meta: torch patched only (its stock variant equals patched
on meta), fvcore and thop stock and patched, either from one shared run per stage
(``count_variants``) or one run per variant (``count``), so the time one trace / one forward saves
stays visible. These build on meta whatever ``--device`` says (meta has nothing to time for the
stage-latency benchmarks, but counting on meta is exactly what a report does).

    pytest benchmarks/test_count_speed.py --benchmark-only
"""

from __future__ import annotations

import pytest

MODE = "gundam"
#: The variants a report counts on meta (harness.report.inputs.resolve_counters' default).
REPORT_VARIANTS = {"torch": ("patched",), "fvcore": ("stock", "patched"), "thop": ("stock", "patched")}
ROUNDS = 3


class _Page:
    """The built model and one page's stage calls (made once; counting them again is repeatable:
    ``call_inputs`` gives every run a fresh KV cache)."""

    def __init__(self) -> None:
        from harness.analytic import LETTER_PAGE
        from harness.targets import get_target

        target = get_target("ocr2")
        self.built = target.build("meta")
        self.inputs = target.prepare(LETTER_PAGE, MODE, device="meta")
        self.calls = {stage: target.stage_calls(self.built, self.inputs, stage) for stage in target.stages}

    def stages(self, counter: str) -> list[str]:
        # fvcore: torch.jit.trace fails in nn.Conv2d on meta (tests/test_counters_facts.py)
        return [s for s in self.calls if not (counter == "fvcore" and s == "sam")]


@pytest.fixture(scope="module")
def page() -> _Page:
    pytest.importorskip("transformers.models.deepseek_ocr2")   # transformers 5.x (not the vendor env)
    return _Page()


@pytest.mark.parametrize("shared", (True, False), ids=("one-run", "run-per-variant"))
@pytest.mark.parametrize("counter", tuple(REPORT_VARIANTS))
def test_count_one_page_on_meta(benchmark, page, counter, shared):
    from harness.measure import count, count_variants

    variants = REPORT_VARIANTS[counter]
    if not shared and len(variants) == 1:
        pytest.skip(f"{counter} counts one variant on meta: nothing to share")
    stages = page.stages(counter)
    totals: dict[str, int] = {}

    def run() -> None:
        for stage in stages:
            calls = page.calls[stage]
            if shared:
                results = count_variants(counter, calls, variants=variants, stage=stage, strict=False)
            else:
                results = {v: count(counter, calls, variant=v, stage=stage, strict=False) for v in variants}
            for variant, result in results.items():
                totals[f"{stage}:{variant}"] = result.flops

    benchmark.group = f"count one page on meta (ocr2 {MODE}, letter, full size)"
    benchmark.extra_info.update({"counter": counter, "variants": list(variants), "stages": stages,
                                 "shared_run": shared})
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    benchmark.extra_info["flops"] = dict(totals)
    # a real count of every stage, not an empty one
    assert all(totals[f"{stage}:patched"] > 10**9 for stage in stages)



@pytest.mark.parametrize("how", ("run_measurement", "in-place-python-meta"))
@pytest.mark.parametrize("counter", ("torch", "thop"))
def test_count_where_model_code_runs(benchmark, page, counter, how):
    """One page's SAM, encoder and prefill, patched: ``count`` at the suite's and report's boundary
    (harness.run.modelrun.run_measurement: a fresh stack, torch's C++ meta kernels) against ``count``
    called in place here (pytest's stack, torch's Python meta kernels, as shipped). Same counts; the
    time is the difference."""
    from harness.measure import count
    from harness.run.modelrun import run_measurement

    stages = ("sam", "encoder", "prefill")
    totals: dict[str, int] = {}

    def run() -> None:
        for stage in stages:
            calls = page.calls[stage]
            if how == "run_measurement":
                totals[stage] = run_measurement(page.built.model, count, counter, calls, stage=stage,
                                                strict=False).flops
            else:
                totals[stage] = count(counter, calls, stage=stage, strict=False).flops

    benchmark.group = f"where model code runs (ocr2 {MODE}, letter, full size, patched)"
    benchmark.extra_info.update({"counter": counter, "how": how, "stages": list(stages)})
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0, iterations=1)
    benchmark.extra_info["flops"] = dict(totals)
    assert all(totals[stage] > 10**11 for stage in stages)

# The vendor DeepSeek-OCR language model -----------------------------------------------------------
# A meta build runs it on meta with a fixed, balanced routing (harness.targets.dsocr): what a dsocr
# report pays per prefill shape key is a meta forward per counter.
# (-m vendor --model-path DIR --trust-remote-code, vendor environment.)

@pytest.fixture(scope="module")
def vendor_prefill(model_path):
    from harness.analytic import LETTER_PAGE
    from harness.targets import get_target

    target = get_target("dsocr", model_path, trust_remote_code=True)
    built = target.build("meta")
    inputs = target.prepare(LETTER_PAGE, "base", device="meta")   # L = 283
    return inputs.seq_len, target.stage_calls(built, inputs, "prefill")


@pytest.mark.vendor
@pytest.mark.parametrize("shared", (True, False), ids=("one-run", "run-per-variant"))
@pytest.mark.parametrize("counter", tuple(REPORT_VARIANTS))
def test_count_vendor_prefill(benchmark, vendor_prefill, counter, shared):
    from harness.measure import count, count_variants

    length, calls = vendor_prefill
    variants = REPORT_VARIANTS[counter]
    if not shared and len(variants) == 1:
        pytest.skip(f"{counter} counts one variant on meta: nothing to share")
    totals: dict[str, int] = {}

    def run() -> None:
        if shared:
            results = count_variants(counter, calls, variants=variants, stage="prefill", strict=False)
        else:
            results = {v: count(counter, calls, variant=v, stage="prefill", strict=False) for v in variants}
        totals.update({v: r.flops for v, r in results.items()})

    benchmark.group = f"count the vendor LM prefill (dsocr base, letter, L={length}, CPU fp32)"
    benchmark.extra_info.update({"counter": counter, "variants": list(variants), "shared_run": shared,
                                 "prefill_length": length})
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    benchmark.extra_info["flops"] = dict(totals)
    assert totals["patched"] > 10**11
