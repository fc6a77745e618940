"""--update-golden: the regenerate -> pass -> change -> fail -> regenerate cycle."""

from __future__ import annotations

import json

from conftest import literal


def test_missing_golden_fails_with_the_command(fake_suite):
    result = fake_suite.run()
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "*golden fake-base-letter-sam-torch: no golden file golden/fake/base/letter.json.*",
        literal("*pytest --update-golden 'test_fake.py::test_stage[fake-base-letter-sam-torch]'*"),
    ])
    assert not fake_suite.golden_dir.exists(), "a normal run must never write goldens"


def test_regenerate_pass_change_fail_regenerate(fake_suite):
    result = fake_suite.run("--update-golden")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*harness goldens*", "2 golden file(s) written, 0 unchanged"])
    doc = json.loads(fake_suite.golden("letter").read_text())
    assert doc["schema"] == 1
    assert (doc["target"], doc["mode"], doc["page"]) == ("fake", "base", "letter")
    assert doc["stages"]["sam"]["torch"]["flops"] == 1000
    assert doc["layout"] == {"tokens": 273, "views": [[1024, 1]]}
    assert doc["environment"]["dtype"] == "float32"
    assert doc["environment"]["device"] == "cpu"
    assert "torch" in doc["environment"] and "harness" in doc["environment"]

    fake_suite.run().assert_outcomes(passed=4)

    fake_suite.set_values(sam=1010, prefill=2_000_000)
    result = fake_suite.run()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*golden fake-base-letter-sam-torch: measured counts differ from the golden.",
        "golden: golden/fake/base/letter.json",
        "band: rel 0, abs 0 (default (exact))",
        "*field*obtained*expected*difference*",
        literal("*by_op[aten.mm]*1,010*1,000*+10 (+1.000%)"),
        "*flops*1,010*1,000*+10 (+1.000%)",
        "*raw*1,010*1,000*+10 (+1.000%)",
        "If the change is deliberate, regenerate this golden with:",
        literal("  pytest --update-golden 'test_fake.py::test_stage[fake-base-letter-sam-torch]'"),
    ])
    # the harness's frames are hidden: the failure points at the test, not at golden_session.py
    assert "golden_session.py" not in result.stdout.str()

    result = fake_suite.run("--update-golden")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["2 golden file(s) written, 0 unchanged"])
    fake_suite.run().assert_outcomes(passed=4)


def test_regenerating_after_delete_is_byte_identical(fake_suite):
    fake_suite.run("--update-golden").assert_outcomes(passed=4)
    before = fake_suite.golden("grid-1").read_bytes()
    fake_suite.golden("grid-1").unlink()
    result = fake_suite.run("--update-golden")
    result.stdout.fnmatch_lines(["1 golden file(s) written, 1 unchanged"])
    assert fake_suite.golden("grid-1").read_bytes() == before
    # deterministic text: sorted keys, two-space indent, trailing newline
    text = before.decode()
    assert text.endswith("}\n") and json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n" == text


def test_unchanged_goldens_are_not_rewritten(fake_suite):
    fake_suite.run("--update-golden")
    mtime = fake_suite.golden().stat().st_mtime_ns
    result = fake_suite.run("--update-golden")
    result.stdout.fnmatch_lines(["0 golden file(s) written, 2 unchanged"])
    assert fake_suite.golden().stat().st_mtime_ns == mtime


def test_new_op_after_an_upgrade_fails_with_a_readable_diff(fake_suite):
    fake_suite.run("--update-golden")
    fake_suite.set_values(sam=1000, prefill=2_000_000, extra_ops={"aten._grouped_mm": 0},
                          unknown_ops={"aten._grouped_mm": 11})
    result = fake_suite.run("-k", "letter-sam")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        literal("*by_op[aten._grouped_mm]*0*-*new op"),
        literal("*unknown_ops[aten._grouped_mm]*11*-*new op"),
    ])


def test_filtered_update_merges_into_the_file(fake_suite):
    fake_suite.run("--update-golden")
    fake_suite.set_values(sam=5, prefill=7)
    fake_suite.run("--update-golden", "-k", "letter-sam").assert_outcomes(passed=1, deselected=3)
    doc = json.loads(fake_suite.golden("letter").read_text())
    assert doc["stages"]["sam"]["torch"]["flops"] == 5
    assert doc["stages"]["prefill"]["torch"]["flops"] == 2_000_000, "entries not rerun are kept"


def test_update_still_runs_the_test_body(fake_suite):
    """--update-golden records instead of comparing, but other assertions of the test still hold."""
    fake_suite.pytester.makepyfile(test_other='''
import pytest

@pytest.mark.golden("fake-base-other-sam-torch")
def test_fails_anyway(golden):
    golden.check({"flops": 1, "convention": "flop"})
    assert False, "verification failed"
''')
    result = fake_suite.run("--update-golden", "test_other.py")
    result.assert_outcomes(failed=1)
