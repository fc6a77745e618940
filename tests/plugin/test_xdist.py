"""Under pytest-xdist the controller merges the workers' records: each golden has one writer."""

from __future__ import annotations

import json


def test_xdist_update_is_byte_identical_to_a_serial_update(fake_suite):
    fake_suite.run("--update-golden").assert_outcomes(passed=4)
    serial = {p.name: p.read_bytes() for p in (fake_suite.golden("letter"), fake_suite.golden("grid-1"))}
    for p in (fake_suite.golden("letter"), fake_suite.golden("grid-1")):
        p.unlink()
    result = fake_suite.run("-n", "2", "--update-golden")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["2 golden file(s) written, 0 unchanged"])
    assert {p.name: p.read_bytes() for p in (fake_suite.golden("letter"), fake_suite.golden("grid-1"))} == serial
    fake_suite.run("-n", "2").assert_outcomes(passed=4)


def test_xdist_failures_and_unused(fake_suite):
    fake_suite.run("--update-golden")
    stale = fake_suite.golden_dir / "fake" / "base" / "old.json"
    stale.write_text(json.dumps(dict(json.loads(fake_suite.golden("letter").read_text()), page="old")))
    fake_suite.set_values(sam=3, prefill=2_000_000)
    result = fake_suite.run("-n", "2")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["1 unused golden(s) (no collected test maps to them)*"])
    # deselection happens on the workers; the controller still knows the run is partial
    result = fake_suite.run("-n", "2", "--update-golden", "-k", "sam")
    result.stdout.fnmatch_lines(["unused goldens not checked and none deleted: not a full run (-k, 2 deselected)"])
    assert stale.exists()
    result = fake_suite.run("-n", "2", "--update-golden")
    result.stdout.fnmatch_lines(["1 unused golden(s) deleted"])
    assert not stale.exists()
    assert json.loads(fake_suite.golden("grid-1").read_text())["stages"]["sam"]["torch"]["flops"] == 3
