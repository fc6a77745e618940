"""A corrupt golden (truncated, not JSON, another schema or kind, a mistyped field) is a clear test
failure naming the file and the exact command that regenerates it; --update-golden replaces it."""

from __future__ import annotations

import json

import pytest
from conftest import COUNT_IDS, LAYOUT_IDS, N_TESTS, literal


@pytest.mark.parametrize("content, problem", [
    ('{"schema": 2, "kind": "count", "counters": {"tor', " is not valid JSON (line 1, column *"),
    ("", " is not valid JSON (line 1, column 1: Expecting value); it may be truncated or hand-edited."),
    ("[1, 2]", ": expected a JSON object, got list."),
    ('{"schema": 1, "stages": {}}', ": schema 1, this harness reads schema 2."),
    ('{"schema": 2, "kind": "layout"}', ": kind 'layout', expected 'count'."),
    ('{"schema": 2, "kind": "count", "target": "fake", "stage": "sam", "shape_key": "g1024", "shape": {}, '
     '"pages": [], "counters": {"torch": 3}}', ": every entry of counters must be an object."),
    ('{"schema": 2, "kind": "count", "target": "fake", "stage": "sam", "shape_key": 1024}',
     ": field 'shape_key' must be a str, got int."),
])
def test_corrupt_count_golden_names_the_file_and_the_command(made, content, problem):
    made.count().write_text(content)
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)      # only the test of that golden
    result.stdout.fnmatch_lines([
        f"golden file golden/fake/count/sam/g1024.json{problem}",
        "To regenerate it, run:",
        literal(f"  pytest --update-golden '{COUNT_IDS[0]}'"),
    ])
    # a pytrace-free failure: no harness internals in the report
    assert "session.py" not in result.stdout.str() and "Traceback" not in result.stdout.str()


def test_corrupt_layout_golden_fails_each_of_its_pages(made):
    made.layout().write_text('{"schema": 2, "kind": "layout", "pages": {"letter": ')
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 2, failed=2)
    result.stdout.fnmatch_lines([
        "golden file golden/fake/layout/base.json is not valid JSON*",
        "To regenerate it, run:",
        literal(f"  pytest --update-golden '{LAYOUT_IDS[1]}'"),
    ])


def test_update_golden_replaces_a_corrupt_file(made):
    good = made.snapshot()
    made.count().write_text("{ not json")
    result = made.run("--update-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["1 golden file(s) written, 3 unchanged, 1 corrupt file(s) replaced"])
    assert made.snapshot() == good


@pytest.mark.parametrize("which", ["layout", "count"])
def test_a_narrow_update_never_drops_the_rows_of_a_corrupt_file(made, which):
    """Issue 30 case 7: one wrong-typed field, then an --update-golden of one row: the file was
    rewritten down to that row ("1 corrupt file(s) replaced"). Now it is left as it is and the run
    fails, naming the file and what did not run."""
    path = made.layout() if which == "layout" else made.count("prefill", "L273")
    doc = json.loads(path.read_text())
    if which == "layout":
        doc["text_tokens"] = "many"
        shown, selected = "golden/fake/layout/base.json", LAYOUT_IDS[0]
        left = "1 of the 2 page rows the suite puts in it did not run (e.g. grid-1)"
        field = "field 'text_tokens' must be a int, got str"
        command = "pytest --update-golden --target fake --mode base -k layout"
    else:
        doc["shape_key"] = 273
        shown, selected = "golden/fake/count/prefill/L273.json", COUNT_IDS[1]
        left = "1 of the 2 counter entries the suite puts in it did not run (e.g. thop)"
        field = "field 'shape_key' must be a str, got int"
        command = "pytest --update-golden --target fake --stage prefill"
    path.write_text(json.dumps(doc))
    before = path.read_bytes()
    result = made.run("--update-golden", selected)
    assert path.read_bytes() == before
    assert result.ret != 0
    result.stdout.fnmatch_lines([literal(
        f"ERROR: not updated: golden file {shown}: {field}; {left}, so rewriting it would drop them. Restore it "
        f"(git checkout -- {shown}) or delete it, or update all of its rows: {command}")])
    assert "corrupt file(s) replaced" not in result.stdout.str()


def test_missing_counter_entry_lists_what_the_file_has(made):
    doc = json.loads(made.count("prefill", "L273").read_text())
    del doc["counters"]["thop"]
    made.count("prefill", "L273").write_text(json.dumps(doc))
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines([
        "count golden fake-prefill-thop-L273: golden/fake/count/prefill/L273.json has no entry for counter "
        "'thop' (it has: torch).",
        "To create it, run:",
        literal(f"  pytest --update-golden '{COUNT_IDS[2]}'"),
    ])


def test_missing_layout_row(made):
    doc = json.loads(made.layout().read_text())
    del doc["pages"]["grid-1"]
    made.layout().write_text(json.dumps(doc))
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines([
        "layout golden fake-base-grid-1: no row for this page in golden/fake/layout/base.json.",
        "To create it, run:",
        literal(f"  pytest --update-golden '{LAYOUT_IDS[1]}'"),
    ])


def test_golden_directory_in_place_of_a_file(made):
    made.count().unlink()
    made.count().mkdir()
    result = made.run("-k", "sam")
    result.assert_outcomes(failed=1, deselected=N_TESTS - 1)
    result.stdout.fnmatch_lines(["golden file golden/fake/count/sam/g1024.json is a directory; move it away."])
