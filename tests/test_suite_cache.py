"""harness.suite: cases, selection, and the session cache that memoises counts per shape key.

The suite measures each shape key once and answers every other page from memory; that is only
sound if the count really depends on nothing else. ``test_shape_key_is_sound`` measures two pages
with one key but different sizes and tile grids (letter, 2x3 tiles, vs slide, 3x2) without the
cache and requires identical counts.
"""

from __future__ import annotations

import pytest

from harness.suite import (Case, Selection, SuiteCache, entry_record, native_transformers, suite_cases, suite_pages,
                           validate_selection)

#: These measure OCR-2, which needs transformers >= 5 (not the vendor environment).
needs_ocr2 = pytest.mark.skipif(not native_transformers(), reason="ocr2 needs transformers >= 5")


def test_case_ids_are_golden_keys():
    cases = suite_cases(Selection(targets=("ocr2",), modes=("base",), pages=("letter",), page_set="grid"))
    assert [c.id for c in cases][:3] == ["ocr2-base-letter-sam-torch", "ocr2-base-letter-sam-fvcore",
                                         "ocr2-base-letter-sam-thop"]
    assert len(cases) == 5 * 3


def test_default_selection_is_every_mode_and_both_page_sets():
    pages = suite_pages("all")
    assert set(suite_pages("grid")) | set(suite_pages("corpus")) == set(pages)
    assert set(suite_pages("default")) <= set(pages)
    cases = suite_cases()
    from harness.analytic.stages import TARGET_STAGES
    from harness.workload import MODES

    expected = sum(len(MODES[t]) * len(TARGET_STAGES[t]) for t in TARGET_STAGES) * len(pages) * 3
    assert len(cases) == expected
    assert len({c.id for c in cases}) == len(cases)


@pytest.mark.parametrize("selection, message", [
    (Selection(targets=("ocr3",)), "Unknown target 'ocr3'. Did you mean: 'ocr2'"),
    (Selection(modes=("gundam7",)), "Unknown mode 'gundam7'. Did you mean: 'gundam'"),
    (Selection(counters=("fvcor",)), "Unknown counter 'fvcor'. Did you mean: 'fvcore'?"),
    (Selection(stages=("clip",), targets=("ocr2",)), "Unknown stage 'clip'."),
    (Selection(pages=("leter",)), "Unknown page (in page set 'all') 'leter'. Did you mean: 'letter'"),
])
def test_unknown_names_are_reported_with_suggestions(selection, message):
    errors = validate_selection(selection)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_selection_options_are_usage_errors(pytester):
    pytester.makeconftest('pytest_plugins = ["harness.plugin"]\n')
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:hypothesispytest", "--counter", "fvcor")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*Unknown counter 'fvcor'. Did you mean: 'fvcore'?"])


@pytest.fixture(scope="module")
def cache():
    return SuiteCache()


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
        fresh = SuiteCache()
        records.append(entry_record(fresh.measure(Case("ocr2", "gundam", page, stage, "torch"))))
    assert records[0] == records[1]


@needs_ocr2
def test_failed_measurements_are_memoised(cache, monkeypatch):
    import harness.counters

    calls = []

    def broken(counter, *args, **kwargs):
        calls.append(counter)
        raise RuntimeError("counter exploded")

    monkeypatch.setattr(harness.counters, "count", broken)
    cases = [Case("ocr2", "small", page, "decode", "thop") for page in ("letter", "a4", "slide")]
    for case in cases:
        with pytest.raises(RuntimeError, match="counter exploded"):
            cache.measure(case)
    assert calls == ["thop"]
    assert "RuntimeError: counter exploded" in cache.failure_text(cases[2])
    assert cache.first_page(cases[2]) == "letter"
