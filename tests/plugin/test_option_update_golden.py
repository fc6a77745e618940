"""--update-golden: the regenerate -> pass -> change -> fail -> regenerate cycle; rewritten only
when the facts change; it writes and never deletes."""

from __future__ import annotations

import json

import pytest
from conftest import COUNT_IDS, GOLDEN_FILES, LAYOUT_IDS, N_TESTS, UNUSED, literal


def test_missing_goldens_fail_with_the_command(fake):
    result = fake.run()
    result.assert_outcomes(failed=N_TESTS)
    result.stdout.fnmatch_lines([
        "*layout golden fake-base-letter: no golden file golden/fake/layout/base.json.",
        "To create it, run:",
        literal(f"  pytest --update-golden '{LAYOUT_IDS[0]}'"),
    ])
    result.stdout.fnmatch_lines([
        "*count golden fake-sam-torch-g1024: no golden file golden/fake/count/sam/g1024.json.",
        "To create it, run:",
        literal(f"  pytest --update-golden '{COUNT_IDS[0]}'"),
    ])
    assert not fake.golden_dir.exists(), "a normal run must never write goldens"


def test_regenerate_pass_change_fail_regenerate(fake):
    result = fake.run("--update-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["*harness goldens*", "4 golden file(s) written, 0 unchanged"])
    assert sorted(fake.snapshot()) == GOLDEN_FILES
    docs = fake.assert_all_valid()
    sam = docs["fake/count/sam/g1024.json"]
    assert (sam["kind"], sam["target"], sam["stage"], sam["shape_key"]) == ("count", "fake", "sam", "g1024")
    assert sam["shape"] == {"global": 1024} and "pages" not in sam     # page -> key: the layout's fact
    assert sam["counters"]["torch"]["flops"] == 1000
    assert sam["environment"] == {"dtype": "float32", "torch": "2.13.0", "transformers": "5.23.0"}
    l273 = docs["fake/count/prefill/L273.json"]["counters"]
    assert (l273["thop"]["raw"], l273["thop"]["convention"], l273["torch"]["raw"]) == (1_000_000, "mac", 2_000_000)
    layout = docs["fake/layout/base.json"]
    assert layout["text_tokens"] == 16 and list(layout["pages"]) == ["grid-1", "letter"]
    assert layout["pages"]["letter"]["shape_keys"] == {"prefill": "L273", "sam": "g1024"}

    fake.run().assert_outcomes(passed=N_TESTS)

    fake.set_flops(sam_g1024=1010)
    result = fake.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines([
        "*count golden fake-sam-torch-g1024: measured counts differ from the golden.",
        "golden: golden/fake/count/sam/g1024.json",
        "band: rel 0, abs 0 (default (exact))",
        "",
        "  field           obtained  expected  difference",
        "  --------------  --------  --------  -------------",
        literal("  by_op[aten.mm]     1,010     1,000  +10 (+1.000%)"),
        "  flops              1,010     1,000  +10 (+1.000%)",
        "  raw                1,010     1,000  +10 (+1.000%)",
        "",
        "If the change is deliberate, regenerate this golden with:",
        literal(f"  pytest --update-golden '{COUNT_IDS[0]}'"),
    ])
    # the harness's frames are hidden: the failure points at the test, not at the golden package
    assert "session.py" not in result.stdout.str() and "plugin.py" not in result.stdout.str()

    result = fake.run("--update-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["1 golden file(s) written, 3 unchanged",
                                 "  written: golden/fake/count/sam/g1024.json"])
    fake.run().assert_outcomes(passed=N_TESTS)
    assert json.loads(fake.count().read_text())["counters"]["torch"]["raw"] == 1010


def test_layout_change_fails_with_a_table(made):
    made.values["sizes"]["letter"] = [1700, 2000]
    made.save()
    result = made.run()
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines([
        "*layout golden fake-base-letter: the page's layout differs from the golden.",
        "golden: golden/fake/layout/base.json",
        "*field*obtained*expected*difference*",
        "  layout.size.height     2,000     2,200  -200 (-9.091%)",
        "If the change is deliberate, regenerate this golden with:",
        literal(f"  pytest --update-golden '{LAYOUT_IDS[0]}'"),
    ])


def test_regenerating_after_delete_is_byte_identical(made):
    before = made.snapshot()
    made.count("prefill", "L273").unlink()
    made.layout().unlink()
    result = made.run("--update-golden")
    result.stdout.fnmatch_lines(["2 golden file(s) written, 2 unchanged"])
    assert made.snapshot() == before
    # deterministic text: sorted keys, two-space indent, trailing newline
    text = before["fake/count/prefill/L273.json"].decode()
    assert json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n" == text


def test_unchanged_goldens_are_not_rewritten(made):
    mtimes = {p: p.stat().st_mtime_ns for p in made.golden_dir.rglob("*.json")}
    result = made.run("--update-golden")
    result.stdout.fnmatch_lines(["0 golden file(s) written, 4 unchanged"])
    assert {p: p.stat().st_mtime_ns for p in made.golden_dir.rglob("*.json")} == mtimes


def test_environment_only_difference_is_shown_not_written(made):
    before = made.snapshot()
    made.values["environment"]["transformers"] = "5.24.0"
    made.save()
    result = made.run()
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines([
        "environment differs from the goldens' (shown, not written): transformers: golden '5.23.0', now '5.24.0'"])

    result = made.run("--update-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines([
        "0 golden file(s) written, 4 unchanged",
        "3 golden file(s) not rewritten: only the environment differs (transformers: '5.23.0' -> '5.24.0'); "
        "the counts are the same",
    ])
    assert made.snapshot() == before

    # a count that changes is written with the environment that made it
    made.set_flops(sam_g1024=1200)
    made.run("--update-golden").stdout.fnmatch_lines(["1 golden file(s) written, 3 unchanged"])
    doc = json.loads(made.count().read_text())
    assert doc["environment"]["transformers"] == "5.24.0" and doc["counters"]["torch"]["raw"] == 1200
    assert json.loads(made.count("prefill", "L273").read_text())["environment"]["transformers"] == "5.23.0"


def test_environment_difference_is_shown_beside_a_failure(made):
    made.values["environment"]["transformers"] = "5.24.0"
    made.set_flops(sam_g1024=999)
    result = made.run("-k", "sam")
    result.assert_outcomes(failed=1, deselected=N_TESTS - 1)
    result.stdout.fnmatch_lines([
        "environment differs from the one that made the golden:",
        "  transformers: golden '5.23.0', now '5.24.0'",
        "",
        "If the change is deliberate, regenerate this golden with:",
    ])


def test_new_op_after_an_upgrade_fails_with_a_readable_diff(made):
    made.values.update(extra_ops={"aten._grouped_mm": 0}, unknown_ops={"aten._grouped_mm": 11})
    made.save()
    result = made.run("-k", "sam")
    result.assert_outcomes(failed=1, deselected=N_TESTS - 1)
    result.stdout.fnmatch_lines([
        literal("*by_op[aten._grouped_mm]*0*-*new op"),
        literal("*unknown_ops[aten._grouped_mm]*11*-*new op"),
    ])


def test_a_string_where_a_number_was_is_a_difference(made):
    made.values["sizes"]["letter"] = ["1700", 2200]
    made.save()
    result = made.run("-k", "layout and letter")
    result.assert_outcomes(failed=1, deselected=N_TESTS - 1)
    result.stdout.fnmatch_lines(['  layout.size.width    "1700"     1,700  type differs (string vs golden number)'])


def test_counter_version_is_information_only(made):
    made.values["counter_version"] = "2.0"
    made.save()
    made.run().assert_outcomes(passed=N_TESTS)


def test_filtered_update_merges_into_the_file(made):
    made.set_flops(prefill_L273=4_000_000, sam_g1024=5)
    made.run("--update-golden", "-k", "thop").assert_outcomes(passed=1, deselected=N_TESTS - 1)
    counters = json.loads(made.count("prefill", "L273").read_text())["counters"]
    assert counters["thop"]["raw"] == 2_000_000
    assert counters["torch"]["raw"] == 2_000_000, "an entry that did not run is kept as it was"
    assert json.loads(made.count().read_text())["counters"]["torch"]["raw"] == 1000


def test_filtered_update_keeps_the_rows_of_pages_that_did_not_run(made):
    """Even when the table's text_tokens change: a partial update never drops a row."""
    made.values["text_tokens"] = 17
    made.values["sizes"]["letter"] = [1000, 1000]
    made.save()
    made.run("--update-golden", "-k", "layout and letter").assert_outcomes(passed=1, deselected=N_TESTS - 1)
    doc = json.loads(made.layout().read_text())
    assert doc["text_tokens"] == 17 and sorted(doc["pages"]) == ["grid-1", "letter"]
    assert doc["pages"]["letter"]["size"] == {"height": 1000, "width": 1000}


def test_update_still_runs_the_test_body(fake):
    """--update-golden records instead of comparing, but the test's other assertions still hold."""
    fake.pytester.makepyfile(test_other='''
def test_fails_anyway(golden):
    golden.count("fake", "sam", "torch", "g1024", {"raw": 1, "convention": "flop", "flops": 1},
                 shape={"global": 1024}, environment={})
    assert False, "verification failed"
''')
    result = fake.run("--update-golden", "test_other.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*verification failed*"])


# ------------------------------------------------------------------ never deletes, never half-writes
@pytest.mark.parametrize("args", [
    pytest.param(("--collect-only",), id="collect-only"),
    pytest.param(("--ignore=test_fake.py",), id="ignore"),
    pytest.param(("-k", "sam"), id="k"),
    pytest.param((), id="full"),
])
def test_update_deletes_nothing(unused, args):
    """--update-golden lists unused goldens (with the command that removes them), never deletes them."""
    result = unused.run("--update-golden", *args)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    result.stdout.fnmatch_lines([
        "3 unused golden(s) (the suite definition no longer expects them); remove them with "
        "`pytest --prune-golden` in a run of all their target's cases", *sorted(UNUSED)])
    assert unused.snapshot() == unused.unused_snapshot
    unused.assert_all_valid()


def test_update_with_x_and_a_failing_test_first_deletes_nothing(unused):
    unused.at(base_letter="fail")
    unused.set_flops(sam_g1024=1, prefill_L273=2)
    result = unused.run("--update-golden", "-x")
    result.assert_outcomes(failed=1)
    assert unused.snapshot() == unused.unused_snapshot
    unused.assert_all_valid()


def test_update_interrupted_mid_run_deletes_nothing_and_leaves_valid_goldens(unused):
    """Ctrl-C after two count tests: what ran is written whole, nothing is deleted."""
    unused.at(prefill_thop_L273="interrupt")
    unused.set_flops(sam_g1024=7, prefill_L273=8)
    result = unused.run("--update-golden")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    after = unused.snapshot()
    assert set(after) == set(unused.unused_snapshot)
    docs = unused.assert_all_valid()
    assert docs["fake/count/sam/g1024.json"]["counters"]["torch"]["raw"] == 7
    assert docs["fake/count/sam/g1024.json"]["counters"]["fvcore"], "an unused entry is kept"
    l273 = docs["fake/count/prefill/L273.json"]["counters"]
    assert (l273["torch"]["raw"], l273["thop"]["raw"]) == (8, 1_000_000), "the interrupted test recorded nothing"
    assert after["fake/count/prefill/L999.json"] == unused.unused_snapshot["fake/count/prefill/L999.json"]


def test_a_collection_error_deletes_nothing(unused):
    unused.pytester.makepyfile(test_broken="import no_such_module_here\n")
    result = unused.run("--update-golden")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*1 error*"])
    assert unused.snapshot() == unused.unused_snapshot
