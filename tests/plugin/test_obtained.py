"""``<golden>.obtained.json``: a mismatch writes what the run obtained beside the golden (the golden's
document with the obtained values in place, marked ours), the failure message names it, and a
passing run removes it only when it is provably ours (name and marker) and what it named passes.
Also: a count golden written by an older harness with a ``pages`` list loses that list, and
nothing else, in a writing run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import GOLDEN_FILES, N_TESTS

REPO = Path(__file__).resolve().parents[2]


def _obtained(made, stage="sam", key="g1024") -> Path:
    return made.count(stage, key).with_name(f"{key}.obtained.json")


def test_a_count_mismatch_writes_the_obtained_file_and_names_it(made):
    golden_before = made.snapshot()
    made.set_flops(sam_g1024=1010)
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines(["*obtained: golden/fake/count/sam/g1024.obtained.json (written when the run ends*",
                                 "*1 obtained file(s) written beside their golden*"])
    assert made.snapshot() == golden_before                 # the golden itself is untouched
    path = _obtained(made)
    text = path.read_text()
    doc = json.loads(text)
    assert doc["obtained"] is True and doc["obtained_differs"] == ["count:fake-sam-torch-g1024"]
    assert doc["counters"]["torch"]["flops"] == 1010         # the obtained value, where the golden has 1000
    golden = json.loads(made.count().read_text())
    assert golden["counters"]["torch"]["flops"] == 1000
    rest = {k: v for k, v in doc.items() if k not in ("obtained", "obtained_differs", "counters")}
    assert rest == {k: v for k, v in golden.items() if k != "counters"}    # a reviewer's diff shows the change only
    made.run().assert_outcomes(passed=N_TESTS - 1, failed=1)
    assert path.read_text() == text                          # deterministic text


def test_a_passing_run_removes_only_our_stale_obtained_file(made):
    made.set_flops(sam_g1024=1010)
    made.run()
    path = _obtained(made)
    assert path.exists()
    made.set_flops(sam_g1024=1000)
    made.run("-k", "L273").assert_outcomes(passed=2, deselected=N_TESTS - 2)
    assert path.exists(), "what it names did not run: not provably stale"
    result = made.run()
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["*1 stale obtained file(s) removed*"])
    assert not path.exists()


def test_a_file_of_that_name_that_is_not_ours_is_never_touched(made):
    path = _obtained(made)
    mine = '{"my": "notes"}\n'
    path.write_text(mine)
    made.run().assert_outcomes(passed=N_TESTS)                   # passing: not ours, so not removed
    assert path.read_text() == mine
    made.set_flops(sam_g1024=1010)
    result = made.run()
    result.stdout.fnmatch_lines(["*obtained file not written: golden/fake/count/sam/g1024.obtained.json exists and "
                                 "is not one harness wrote; left as it is*"])
    assert path.read_text() == mine


def test_a_layout_mismatch_writes_the_layout_table_obtained(made):
    made.values["sizes"]["letter"] = [1000, 1000]
    made.save()
    result = made.run("-k", "layout")
    result.stdout.fnmatch_lines(["*obtained: golden/fake/layout/base.obtained.json*"])
    doc = json.loads(made.layout().with_name("base.obtained.json").read_text())
    assert doc["pages"]["letter"]["size"] == {"height": 1000, "width": 1000}
    assert doc["pages"]["grid-1"] == json.loads(made.layout().read_text())["pages"]["grid-1"]


def test_obtained_files_are_not_goldens(made):
    """Not listed as unused, not read as goldens, and ignored by git in the repository."""
    made.set_flops(sam_g1024=1010)
    made.run()
    result = made.run("--update-golden")
    result.stdout.fnmatch_lines(["1 golden file(s) written, 3 unchanged", "*"])
    assert "unused" not in result.stdout.str()
    assert sorted(made.snapshot()) == GOLDEN_FILES
    assert not _obtained(made).exists(), "recorded in this run: stale, and ours"
    probe = REPO / "golden" / "ocr2" / "count" / "sam" / "g1024.obtained.json"
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(probe)], check=False)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, ".gitignore must ignore *.obtained.json"


def test_a_legacy_pages_list_is_dropped_and_nothing_else(made):
    """A count golden of the previous format (with the pages reaching its key) is rewritten by a
    writing run with that list removed and every other byte kept; a normal run reads it as is."""
    path = made.count()
    doc = json.loads(path.read_text())
    assert "pages" not in doc
    legacy = dict(doc, pages=["base/letter", "base/grid-1"])
    from harness.golden import dumps_golden

    path.write_text(dumps_golden(legacy))
    made.run().assert_outcomes(passed=N_TESTS)                      # read, the list ignored
    assert json.loads(path.read_text())["pages"] == ["base/letter", "base/grid-1"]
    made.run("--update-golden", "--collect-only")                    # collect-only touches nothing
    assert "pages" in json.loads(path.read_text())
    result = made.run("--update-golden", "-k", "L273")              # any writing run migrates
    result.stdout.fnmatch_lines(["1 golden file(s) rewritten without the fields their kind no longer holds*"])
    assert path.read_text() == dumps_golden(doc)


def test_under_xdist_the_controller_writes_one_obtained_file_per_golden(made):
    """Two counters of one golden differ on (possibly) two workers: one obtained file holds both,
    byte for byte what a serial run writes."""
    made.set_flops(prefill_L273=2_000_010)         # torch and thop of prefill/L273 both differ
    made.run().assert_outcomes(passed=N_TESTS - 2, failed=2)
    path = _obtained(made, "prefill", "L273")
    serial = path.read_text()
    path.unlink()
    made.run("-n", "2").assert_outcomes(passed=N_TESTS - 2, failed=2)
    assert path.read_text() == serial
    doc = json.loads(serial)
    assert doc["obtained_differs"] == ["count:fake-prefill-thop-L273", "count:fake-prefill-torch-L273"]
    assert (doc["counters"]["torch"]["flops"], doc["counters"]["thop"]["raw"]) == (2_000_010, 1_000_005)


def test_a_legacy_golden_that_cannot_be_rewritten_is_named_and_the_run_goes_on(made, monkeypatch):
    """One legacy file the migration cannot write: the run names it and fails, and every other
    legacy file is still migrated (no internal error, the goldens' own write still runs)."""
    from harness.golden import dumps_golden, store

    first, second = made.count("sam", "g1024"), made.count("prefill", "L273")
    docs = {p: json.loads(p.read_text()) for p in (first, second)}
    for p, doc in docs.items():
        p.write_text(dumps_golden(dict(doc, pages=["base/letter"])))
    real = store.write_atomic

    def refuse_first(path, text):
        if Path(path) == first:
            raise OSError(30, "Read-only file system")
        return real(path, text)

    monkeypatch.setattr(store, "write_atomic", refuse_first)
    result = made.run("--update-golden")
    monkeypatch.undo()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR: could not rewrite golden/fake/count/sam/g1024.json without its legacy "
                                 "fields: [[]Errno 30[]] Read-only file system"])
    assert second.read_text() == dumps_golden(docs[second])          # migrated all the same


def test_the_lock_holder_leaves_obtained_files_temporaries_alone(tmp_path):
    """Runs that only check write obtained files without the update lock: a writing run's sweep of
    crashed golden writes must not delete one of those mid-write."""
    from harness.golden import UpdateLock
    from harness.golden.store import sweep_temp_files

    folder = tmp_path / "fake" / "count" / "sam"
    folder.mkdir(parents=True)
    stale = folder / ".g1024.json.x1y2.tmp"
    writing = folder / ".g1024.obtained.json.a3b4.tmp"
    stale.write_text("{")
    writing.write_text("{")
    lock = UpdateLock(tmp_path)
    lock.acquire("test")
    try:
        assert sweep_temp_files(tmp_path, lock) == [stale]
    finally:
        lock.release()
    assert writing.exists() and not stale.exists()
