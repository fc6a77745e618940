"""harness.run.plan (the definition), harness.inputs.selection and harness.run.engine (memoised per shape key).

The suite measures each shape key once and answers every other page from memory; that is only
sound if the count really depends on nothing else. ``test_shape_key_is_sound`` measures two pages
with one key but different sizes and tile grids (letter, 2x3 tiles, vs slide, 3x2) without the
memo and requires identical counts.
"""

from __future__ import annotations

import pytest

from harness.run.engine import Case, Engine

from harness.inputs.shapes import key_name

from harness.golden.records import entry_record
from harness.inputs.selection import Selection, suite_pages, validate_selection
from harness.run.plan import count_cases, expected, layout_cases, shape_index
from harness.targets import target_class

#: These measure OCR-2, which needs transformers >= 5 (not the vendor environment).
needs_ocr2 = pytest.mark.skipif(target_class("ocr2").environment_problem() is not None,
                                reason="ocr2 needs transformers >= 5")


@pytest.mark.parametrize("key, name", [
    (("views", ("global", 1, 1024, 256), ("crops", 6, 768, 144)), "g1024+6x768"),
    (("views", ("crops", 6, 640, 100), ("global", 1, 1024, 256)), "6x640+g1024"),
    (("views", ("global", 1, 512, 64)), "g512"),
    (("L", 1131), "L1131"),
    (("T", 913), "T913"),
])
def test_key_names(key, name):
    assert key_name(key) == name


def test_letter_page_selection_narrows_counts_to_its_keys():
    """ocr2 gundam letter (1700x2200 -> 2x3 tiles of 768 + a 1024 global view): L = 1131."""
    cases, left_out = count_cases(Selection(targets=("ocr2",), modes=("gundam",), pages=("letter",)))
    assert sorted({(c.stage, c.key) for c in cases}) == sorted([
        ("sam", "g1024+6x768"), ("encoder", "g1024+6x768"), ("projector", "g1024+6x768"),
        ("prefill", "L1131"), ("decode", "T1131")])
    # torch, fvcore, thop and the byte counter (the letter page's keys), fvcore's SAM on meta too
    assert len(cases) == 5 * 4 and not left_out
    assert [c.id for c in cases][:4] == ["ocr2-sam-bytes-g1024+6x768", "ocr2-sam-fvcore-g1024+6x768",
                                         "ocr2-sam-thop-g1024+6x768", "ocr2-sam-torch-g1024+6x768"]
    fact = next(c for c in cases if c.stage == "prefill")
    assert fact.first == ("gundam", "letter") and fact.pages[0] == "gundam/letter"   # the selected page measures it
    assert len(fact.pages) > 1                     # other pages of the definition reach L1131 too


def test_definition_states_each_fact_once():
    pages = suite_pages("all")
    assert set(suite_pages("grid")) | set(suite_pages("corpus")) == set(pages)
    assert set(suite_pages("default")) <= set(pages)
    layouts = layout_cases()
    from harness.inputs.workload import MODES

    assert len(layouts) == sum(len(m) for m in MODES.values()) * len(pages) == 9 * 143
    cases, left_out = count_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    # every (target, stage, key) of the definition, by every counter that can measure it on meta
    exp = expected()
    assert sum(len(v[1]) for v in exp.counts.values()) == len(cases)
    # the byte counter measures the keys of the letter page: 5 stages x 3 modes (ocr2), x 6 (dsocr),
    # less the vision keys two modes share (dsocr gundam and gundam6 reach one layout on letter)
    assert sum(1 for c in cases if c.counter == "bytes" and c.target == "ocr2") == 15
    assert len(exp.counts) == len(shape_index("ocr2")) + len(shape_index("dsocr")) == 35 + 88


@pytest.mark.parametrize("selection, message", [
    (Selection(targets=("ocr3",)), "--target 'ocr3': unknown target. Did you mean 'ocr2'"),
    (Selection(modes=("gundam7",)), "--mode 'gundam7': unknown mode. Did you mean 'gundam'"),
    (Selection(counters=("fvcor",)), "--counter 'fvcor': unknown counter. Did you mean 'fvcore'?"),
    (Selection(stages=("clip",), targets=("ocr2",)), "--stage 'clip': unknown stage."),
    (Selection(pages=("leter",)), "--page 'leter': unknown page (of page set 'all'). Did you mean 'letter'"),
])
def test_unknown_names_are_reported_with_suggestions(selection, message):
    errors = validate_selection(selection)
    assert len(errors) == 1 and errors[0].startswith(message), errors


@pytest.fixture(scope="module")
def cache():
    return Engine()


@needs_ocr2
def test_counts_are_memoised_per_shape_key(cache):
    letter = Case("ocr2", "gundam", "letter", "prefill", "torch")
    slide = Case("ocr2", "gundam", "slide", "prefill", "torch")
    assert cache.layout("ocr2", "gundam", "letter").crop_grid != cache.layout("ocr2", "gundam", "slide").crop_grid
    assert cache.shape_key(letter) == cache.shape_key(slide) == ("L", 1131)
    before = len(cache.measurements)
    first = cache.measure(letter)
    lookups = cache.lookups
    assert cache.measure(slide) is first
    assert len(cache.measurements) == before + 1 and cache.lookups == lookups + 1


@needs_ocr2
@pytest.mark.parametrize("stage", ["sam", "prefill"])
def test_shape_key_is_sound(stage):
    """Two pages, one shape key, measured independently (no memo): identical counts."""
    records = []
    for page in ("letter", "slide"):
        fresh = Engine()
        records.append(entry_record(fresh.measure(Case("ocr2", "gundam", page, stage, "torch"))))
    assert records[0] == records[1]


@needs_ocr2
def test_failed_measurements_are_memoised(cache, monkeypatch):
    import harness.measure

    calls = []

    def broken(counter, *args, **kwargs):
        calls.append(counter)
        raise RuntimeError("counter exploded")

    monkeypatch.setattr(harness.measure, "count", broken)
    cases = [Case("ocr2", "small", page, "decode", "thop") for page in ("letter", "a4", "slide")]
    for case in cases:
        with pytest.raises(RuntimeError, match="counter exploded"):
            cache.measure(case)
    assert calls == ["thop"]
    assert "RuntimeError: counter exploded" in cache.failure_text(cases[2])
    assert cache.first_page(cases[2]) == "letter"


@needs_ocr2
@pytest.mark.parametrize("counter", ["fvcore", "thop"])
def test_variants_asked_together_come_from_one_run_and_equal_separate_runs(counter):
    """``measure(case, also=("stock",))`` (the report's stock beside patched): one fvcore trace /
    thop forward gives both; each equals what a separate measurement gives, field by field.
    (Decode: the mechanism is the stage's, and decode needs no upstream outputs, so three engines do
    not recompute them; tests/test_counters_variants.py proves the other full-size stages.)"""
    case = Case("ocr2", "base", "letter", "decode", counter)
    shared = Engine()
    patched = shared.measure(case, also=("stock",))
    runs = len(shared.measurements)
    stock = shared.measure(case, "stock")
    assert len(shared.measurements) == runs == 2 and shared.lookups == 1    # stock was memoised already
    separate = Engine()
    fields = lambda count: {**count.to_dict(), "wall_time_s": 0}      # noqa: E731 - every field but time
    assert fields(separate.measure(case, "stock")) == fields(stock)
    assert fields(separate.measure(case)) == fields(patched)
    assert stock.variant == "stock" and patched.variant == "patched"


@needs_ocr2
def test_variants_asked_together_add_no_run_to_a_counter_that_runs_once_per_variant():
    """torch runs the model once per variant: a variant asked for ``also`` would be a second forward
    nobody needs yet, so it is measured when asked, not before."""
    case = Case("ocr2", "base", "letter", "decode", "torch")
    engine = Engine()
    engine.measure(case, also=("stock",))
    assert list(engine.measurements) == [engine.measurement_key(case)]
    engine.measure(case, "stock")
    assert len(engine.measurements) == 2 and engine.lookups == 0


@needs_ocr2
def test_a_measurement_made_elsewhere_is_adopted_once():
    """``adopt``: a measurement of another process (the report's forked workers) joins the memo and
    is what ``measure`` returns; adopting a key measured already is an error (measured twice)."""
    case = Case("ocr2", "base", "letter", "decode", "torch")
    elsewhere = Engine()
    elsewhere.measure(case)
    here = Engine()
    here.adopt(case, "patched", elsewhere.measurement(case))
    assert here.measure(case) is elsewhere.measure(case) and here.lookups == 1
    with pytest.raises(ValueError, match="measured already"):
        here.adopt(case, "patched", elsewhere.measurement(case))


@pytest.fixture(scope="module")
def memo_engine():
    """A fresh engine whose call memo the next test reads, counter by counter."""
    return Engine()


@needs_ocr2
@pytest.mark.parametrize("counter, kept_work", [("fvcore", "fvcore:trace"),
                                                ("torch", "torch:patched:model.multi_modal_projector"),
                                                ("thop", "thop:patched:model.multi_modal_projector")])
def test_a_view_several_keys_share_is_run_once_and_counts_as_a_fresh_run(memo_engine, counter, kept_work):
    """Inside the engine's call memo, the global 1024 view that Base and every Gundam key share is
    run upstream (SAM and encoder: once for every counter), traced by fvcore and counted by torch
    and thop once; the count made of the kept call equals one that runs every call again (every
    field but the wall time)."""
    from harness.measure import count

    engine = memo_engine
    base = Case("ocr2", "base", "letter", "projector", counter)
    gundam = Case("ocr2", "gundam", "letter", "projector", counter)
    engine.measure(base)
    before = dict(engine.call_memo.hits)
    assert kept_work not in before
    kept = engine.measure(gundam)
    # the global view's counted call: kept; the crops: new
    new = {k: n - before.get(k, 0) for k, n in engine.call_memo.hits.items() if k != "forward"}
    assert {k: n for k, n in new.items() if n} == {kept_work: 1}
    # upstream, the global view's SAM and encoder outputs: computed for Base, kept for Gundam
    assert engine.call_memo.hits["forward"] == 2
    calls = engine.target("ocr2").stage_calls(engine.built_model("ocr2"), engine._inputs(gundam), "projector")
    fresh = count(counter, calls, target="ocr2", stage="projector")
    assert {**kept.to_dict(), "wall_time_s": 0} == {**fresh.to_dict(), "wall_time_s": 0}
    assert kept.flops > engine.measure(base).flops > 10**8


def test_meta_signature_is_shapes_and_plain_values_on_meta_only():
    """A call is memoised only where the run is a function of the module and the signature: every
    tensor on meta (shape, stride, dtype, requires_grad), every other argument a plain value."""
    import torch

    from harness.run.callmemo import meta_signature

    module = torch.nn.Linear(2, 2)
    a = torch.empty(3, 4, device="meta")
    assert meta_signature(module, (a,), {"n": 3}) == meta_signature(module, (torch.empty(3, 4, device="meta"),), {"n": 3})
    assert meta_signature(module, (a,), {"n": 3}) != meta_signature(module, (a,), {"n": 4})
    assert meta_signature(module, (a,), {}) != meta_signature(module, (a.t(),), {})          # stride
    assert meta_signature(module, (a,), {}) != meta_signature(module, (a.to(torch.bfloat16),), {})
    assert meta_signature(module, (a,), {}) != meta_signature(torch.nn.Linear(2, 2), (a,), {})
    assert meta_signature(module, (torch.zeros(3, 4),), {}) is None                        # values
    assert meta_signature(module, (a,), {"cache": object()}) is None                       # state
