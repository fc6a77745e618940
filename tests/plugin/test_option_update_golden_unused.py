"""Unused goldens: reported; deleted only by --update-golden on a full, unfiltered run; skipped
tests keep theirs (syrupy's rule)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def stale(fake_suite):
    """Goldens for the fake suite, plus a stale page file and a stale entry."""
    fake_suite.run("--update-golden").assert_outcomes(passed=4)
    doc = json.loads(fake_suite.golden("letter").read_text())
    old = dict(doc, page="old")
    (fake_suite.golden_dir / "fake" / "base" / "old.json").write_text(json.dumps(old))
    doc["stages"]["sam"]["fvcore"] = dict(doc["stages"]["sam"]["torch"], convention="mac")
    fake_suite.golden("letter").write_text(json.dumps(doc))
    return fake_suite


def _entries(path):
    doc = json.loads(path.read_text())
    return sorted(f"{s}/{c}" for s, by in doc["stages"].items() for c in by)


def test_full_run_reports_unused_without_deleting(stale):
    result = stale.run()
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([
        "2 unused golden(s) (no collected test maps to them); `pytest --update-golden` on a full run deletes them",
        "  unused: golden/fake/base/old.json",
        "  unused: fake-base-letter-sam-fvcore",
    ])
    assert (stale.golden_dir / "fake" / "base" / "old.json").exists()
    assert "sam/fvcore" in _entries(stale.golden("letter"))


def test_full_update_run_deletes_unused(stale):
    result = stale.run("--update-golden")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["2 unused golden(s) deleted"])
    assert not (stale.golden_dir / "fake" / "base" / "old.json").exists()
    assert _entries(stale.golden("letter")) == ["prefill/torch", "sam/torch"]
    # and the next full run is clean
    result = stale.run()
    result.stdout.no_fnmatch_line("*unused golden*")


@pytest.mark.parametrize("args, reason", [
    (("-k", "letter"), "-k, 2 deselected"),
    (("-m", "not slow"), "-m"),
    (("--deselect", "test_fake.py::test_stage[fake-base-letter-sam-torch]"), "--deselect, 1 deselected"),
    (("test_fake.py",), "explicit test paths"),
    (("--target", "ocr2"), "--target"),
    (("--mode", "base"), "--mode"),
    (("--page-set", "grid"), "--page-set"),
])
def test_filtered_update_run_deletes_nothing(stale, args, reason):
    result = stale.run("--update-golden", *args)
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"unused goldens not checked and none deleted: not a full run ({reason})"])
    assert (stale.golden_dir / "fake" / "base" / "old.json").exists()
    assert "sam/fvcore" in _entries(stale.golden("letter"))


def test_early_stop_deletes_nothing(stale):
    stale.set_values(sam=1, prefill=2)
    stale.pytester.makepyfile(test_zfail="def test_fail():\n    assert False\n")
    result = stale.run("--update-golden", "-x")
    result.stdout.fnmatch_lines(["*not a full run (*stopped early*"])
    assert (stale.golden_dir / "fake" / "base" / "old.json").exists()


def test_skipped_tests_keep_their_goldens(stale):
    """A CPU run skips the gpu tests: their goldens are neither unused nor deleted."""
    stale.pytester.makepyfile(test_fake=stale.test_file.read_text().replace(
        "def test_stage(page, stage, golden):",
        "def test_stage(page, stage, golden):\n    if stage == 'prefill':\n        pytest.skip('needs a GPU')"))
    stale.set_values(sam=77, prefill=99)
    result = stale.run("--update-golden")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["2 unused golden(s) deleted"])   # old.json and sam/fvcore only
    doc = json.loads(stale.golden("letter").read_text())
    assert doc["stages"]["prefill"]["torch"]["flops"] == 2_000_000, "the skipped test's golden is kept"
    assert doc["stages"]["sam"]["torch"]["flops"] == 77
