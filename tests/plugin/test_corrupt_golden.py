"""A corrupt golden (truncated, not JSON, wrong schema) is a clear error naming the file and the fix."""

from __future__ import annotations

import json

import pytest

from conftest import literal


@pytest.mark.parametrize("content, problem", [
    ('{"schema": 1, "stages": {"sam": {"tor', " is not valid JSON (line 1, column *"),
    ("", " is not valid JSON (line 1, column 1: Expecting value); it may be truncated or hand-edited."),
    ("[1, 2]", ": expected a JSON object, got list."),
    ('{"schema": 99, "stages": {}}', ": schema 99, this harness reads schema 1."),
    ('{"schema": 1, "target": "fake", "mode": "base", "page": "letter", "stages": {"sam": 3}}',
     ": 'stages' must map stage -> counter -> entry objects."),
])
def test_corrupt_golden_names_the_file_and_the_command(fake_suite, content, problem):
    fake_suite.run("--update-golden")
    fake_suite.golden("letter").write_text(content)
    result = fake_suite.run()
    result.assert_outcomes(passed=2, failed=2)     # grid-1 is fine
    result.stdout.fnmatch_lines([
        f"golden file golden/fake/base/letter.json{problem}",
        "To regenerate it, run:",
        literal("  pytest --update-golden 'test_fake.py::test_stage[fake-base-letter-sam-torch]'"),
    ])
    # a pytrace-free failure: no harness internals in the report
    assert "golden_session.py" not in result.stdout.str()


def test_update_golden_replaces_a_corrupt_file(fake_suite):
    fake_suite.run("--update-golden")
    good = fake_suite.golden("letter").read_bytes()
    fake_suite.golden("letter").write_text("{ not json")
    result = fake_suite.run("--update-golden")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["1 golden file(s) written, 1 unchanged, 1 corrupt file(s) replaced"])
    assert fake_suite.golden("letter").read_bytes() == good


def test_missing_entry_lists_what_the_file_has(fake_suite):
    fake_suite.run("--update-golden")
    doc = json.loads(fake_suite.golden("letter").read_text())
    del doc["stages"]["sam"]
    fake_suite.golden("letter").write_text(json.dumps(doc))
    result = fake_suite.run("-k", "letter-sam")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "golden fake-base-letter-sam-torch: could not find stage 'sam' counter 'torch' in "
        "golden/fake/base/letter.json (it has: prefill/torch).",
        "To create it, run:",
    ])


def test_broken_tolerance_file_is_a_usage_error(fake_suite):
    fake_suite.golden_dir.mkdir()
    (fake_suite.golden_dir / "tolerances.toml").write_text('[verify."*"."*"]\nrel = -1\n')
    result = fake_suite.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tolerance bands: */golden/tolerances.toml: verify.*.*.rel must be a finite number >= 0, got -1*"])
