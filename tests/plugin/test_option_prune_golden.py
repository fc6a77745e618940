"""--prune-golden: deletes exactly the goldens the suite definition no longer expects, and only
after a complete run in which every expected case of the target ran and passed; otherwise it
refuses (a ``PRUNE REFUSED`` line, exit 1) and deletes nothing."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import GOLDEN_FILES, N_TESTS, UNUSED

REFUSED_INCOMPLETE = "PRUNE REFUSED: nothing pruned: not a complete run ({reason})"


def test_plain_run_lists_unused_goldens_and_the_command(unused):
    result = unused.run()
    result.assert_outcomes(passed=N_TESTS)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "3 unused golden(s) (the suite definition no longer expects them); remove them with "
        "`pytest --prune-golden` in a run of all their target's cases", *sorted(UNUSED)])
    assert unused.snapshot() == unused.unused_snapshot


def test_prune_after_a_full_run_deletes_exactly_the_unused_goldens(unused):
    result = unused.run("--prune-golden")
    result.assert_outcomes(passed=N_TESTS)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["3 unused golden(s) pruned",
                                 *[u.replace("unused:", "pruned:") for u in sorted(UNUSED)]])
    pruned = unused.snapshot()
    assert sorted(pruned) == GOLDEN_FILES                                  # the unused count file is gone
    docs = unused.assert_all_valid()
    assert sorted(docs["fake/count/sam/g1024.json"]["counters"]) == ["torch"]   # the unused entry is gone
    assert sorted(docs["fake/layout/base.json"]["pages"]) == ["grid-1", "letter"]   # the unused page is gone
    before = unused.unused_snapshot
    for name in ("fake/count/prefill/L273.json", "fake/count/prefill/L300.json"):
        assert pruned[name] == before[name], "a golden without unused parts is not touched"

    # exactly: what is left is what a fresh --update-golden of the definition makes, byte for byte
    shutil.rmtree(unused.golden_dir)
    unused.update()
    assert unused.snapshot() == pruned

    result = unused.run("--prune-golden")
    assert result.ret == 0
    result.stdout.no_fnmatch_line("*unused golden*")
    result.stdout.no_fnmatch_line("*pruned*")


def test_prune_with_update_writes_then_prunes(unused):
    unused.set_flops(sam_g1024=1234)
    result = unused.run("--update-golden", "--prune-golden")
    result.assert_outcomes(passed=N_TESTS)
    result.stdout.fnmatch_lines(["1 golden file(s) written, 3 unchanged", "*", "3 unused golden(s) pruned"])
    doc = json.loads(unused.count().read_text())
    assert doc["counters"] == {"torch": doc["counters"]["torch"]} and doc["counters"]["torch"]["raw"] == 1234


@pytest.mark.parametrize("args, refused", [
    pytest.param(("-k", "sam"), "PRUNE REFUSED: fake: 3 unused golden(s) kept: 5 expected case(s) of fake did not "
                 "run and pass in this session (e.g. count:fake-prefill-thop-L273); prune in a run that runs all "
                 "of fake's cases", id="k"),
    pytest.param(("--deselect", "test_fake.py::test_layout[fake-base-grid-1]"),
                 "PRUNE REFUSED: fake: 3 unused golden(s) kept: 1 expected case(s) of fake did not run and pass in "
                 "this session (e.g. layout:fake-base-grid-1)*", id="deselect"),
    pytest.param(("--ignore=test_fake.py",), "PRUNE REFUSED: fake: 3 unused golden(s) kept: 6 expected case(s)*",
                 id="ignore"),
    pytest.param(("--collect-only",), REFUSED_INCOMPLETE.format(reason="--collect-only"), id="collect-only"),
])
def test_prune_of_a_partial_run_is_refused(unused, args, refused):
    result = unused.run("--prune-golden", *args)
    assert result.ret == (pytest.ExitCode.NO_TESTS_COLLECTED if "--ignore" in args[0] else pytest.ExitCode.TESTS_FAILED)
    result.stdout.fnmatch_lines([refused])
    assert unused.snapshot() == unused.unused_snapshot


def test_prune_with_a_failing_case_is_refused(unused):
    unused.set_flops(prefill_L300=1)
    result = unused.run("--prune-golden")
    result.assert_outcomes(passed=N_TESTS - 1, failed=1)
    result.stdout.fnmatch_lines([
        "PRUNE REFUSED: fake: 3 unused golden(s) kept: 1 expected case(s) of fake did not run and pass in this "
        "session (e.g. count:fake-prefill-torch-L300)*"])
    assert unused.snapshot() == unused.unused_snapshot


def test_prune_with_a_skipped_case_is_refused(unused):
    unused.pytester.makeconftest(unused.pytester.path.joinpath("conftest.py").read_text() + '''

def pytest_runtest_setup(item):
    if "L300" in item.name:
        import pytest
        pytest.skip("cannot run here")
''')
    result = unused.run("--prune-golden")
    result.assert_outcomes(passed=N_TESTS - 1, skipped=1)
    result.stdout.fnmatch_lines(["PRUNE REFUSED: fake: 3 unused golden(s) kept: 1 expected case(s)*"])
    assert unused.snapshot() == unused.unused_snapshot


def test_prune_stopped_by_x_is_refused(unused):
    """-x stops at a failure after every expected case ran and passed: still not a complete run."""
    unused.pytester.makepyfile(test_zz_fail="def test_fail():\n    assert False\n")
    unused.pytester.makepyfile(test_zz_more="def test_more():\n    pass\n")
    result = unused.run("--prune-golden", "-x")
    result.assert_outcomes(passed=N_TESTS, failed=1)
    result.stdout.fnmatch_lines([REFUSED_INCOMPLETE.format(reason="stopped early")])
    assert unused.snapshot() == unused.unused_snapshot


def test_prune_interrupted_is_refused(unused):
    unused.at(prefill_torch_L300="interrupt")
    result = unused.run("--prune-golden")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["PRUNE REFUSED: nothing pruned: not a complete run (*interrupted*)"])
    assert unused.snapshot() == unused.unused_snapshot


def test_prune_with_a_collection_error_is_refused(unused):
    """Every expected case ran and passed, but another module did not import."""
    unused.pytester.makepyfile(test_broken="import no_such_module_here\n")
    result = unused.run("--prune-golden", "--continue-on-collection-errors")
    result.assert_outcomes(passed=N_TESTS, errors=1)
    result.stdout.fnmatch_lines([REFUSED_INCOMPLETE.format(reason="collection errors")])
    assert unused.snapshot() == unused.unused_snapshot


def _other_target_golden(project, counters):
    """A count golden of target ``other`` (made from fake's, as another environment would)."""
    other = project.golden_dir / "other" / "count" / "sam" / "g1024.json"
    other.parent.mkdir(parents=True)
    doc = json.loads(project.count().read_text())
    doc.update(target="other")
    doc["counters"] = {c: dict(doc["counters"]["torch"]) for c in counters}
    other.write_text(json.dumps(doc))
    return other


def test_prune_is_per_target(unused):
    """A target whose expected cases did not run here (the vendor target in CI) keeps its unused
    goldens, while the target that ran completely is pruned."""
    unused.definition["also_expected"] = [["other", "sam", "g1024", ["torch"]]]
    unused.save()
    other = _other_target_golden(unused, ["torch", "fvcore"])
    before = other.read_bytes()
    result = unused.run("--prune-golden")
    result.stdout.fnmatch_lines([
        "3 unused golden(s) pruned",
        "*",
        "*",
        "*",
        "1 unused golden(s) (the suite definition no longer expects them)*",
        "  unused: count:other-sam-fvcore-g1024",
        "PRUNE REFUSED: other: 1 unused golden(s) kept: 1 expected case(s) of other did not run and pass in "
        "this session (e.g. count:other-sam-torch-g1024); prune in a run that runs all of other's cases"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert other.read_bytes() == before
    assert sorted(unused.snapshot()) == sorted(GOLDEN_FILES + ["other/count/sam/g1024.json"])


def test_prune_removes_a_target_the_definition_no_longer_names(unused):
    """A target the definition no longer has expects nothing, so a complete run prunes its goldens."""
    other = _other_target_golden(unused, ["torch"])
    result = unused.run("--prune-golden")
    result.stdout.fnmatch_lines(["4 unused golden(s) pruned", "*", "*", "*", "  pruned: count:other-sam-*-g1024"])
    assert result.ret == 0
    assert not other.exists()


def test_prune_removes_a_mode_table_the_definition_no_longer_has(made):
    made.definition["modes"]["large"] = ["letter"]
    made.definition["counts"]["sam"]["g1024"]["pages"].append("large/letter")
    made.save()
    made.run("--update-golden").assert_outcomes(passed=N_TESTS + 1)
    made.definition["modes"].pop("large")
    made.definition["counts"]["sam"]["g1024"]["pages"].pop()
    made.save()
    result = made.run("--update-golden")          # no count golden holds the pages reaching its key
    result.stdout.fnmatch_lines(["0 golden file(s) written, 4 unchanged", "1 unused golden(s)*",
                                 "  unused: layout:fake-large-*"])
    assert made.layout("large").exists()
    result = made.run("--prune-golden")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["1 unused golden(s) pruned", "  pruned: layout:fake-large-*"])
    assert not made.layout("large").exists()
    assert sorted(made.snapshot()) == GOLDEN_FILES
