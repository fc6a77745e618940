"""--target, --mode, --page, --page-set, --stage, --counter narrow both kinds of fact of the real
suite; a page selection narrows the counts to the shape keys its pages reach. And on the real
suite and its committed goldens: ``--collect-only --update-golden`` touches nothing, and the
goldens hold nothing the definition does not expect.

In-process collect-only runs of a copy of tests/test_suite.py: no model is built, nothing measured.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import PLUGIN_CONFTEST

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "tests" / "test_suite.py"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(PLUGIN_CONFTEST)          # the real suite's definition applies
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest -p no:benchmark -p no:anyio\n")
    # another basename: the outer run may already have imported a module called test_suite
    pytester.makepyfile(test_selected_suite=SUITE.read_text())
    return pytester


def _ids(result: pytest.RunResult) -> list[str]:
    return [line.split("::", 1)[1] for line in result.outlines if line.startswith("test_selected_suite.py::")]


def test_selection_narrows_both_kinds_to_readable_ids(suite):
    result = suite.runpytest("--collect-only", "-q", "--target", "ocr2", "--mode", "base", "--page", "letter",
                             "--counter", "torch,thop", "--stage", "sam", "--stage", "prefill")
    assert [i for i in _ids(result) if not i.startswith("test_still")] == [
        "test_layout[ocr2-base-letter]",
        "test_count[ocr2-sam-thop-g1024]", "test_count[ocr2-sam-torch-g1024]",
        "test_count[ocr2-prefill-thop-L267]", "test_count[ocr2-prefill-torch-L267]",
    ]


def test_counts_are_per_shape_key_not_per_page(suite):
    """Every page of base mode reaches one SAM shape key: one count fact, 143 layout facts."""
    from harness.inputs.selection import suite_pages

    result = suite.runpytest("--collect-only", "-q", "--target", "ocr2", "--mode", "base", "--stage", "sam",
                             "--counter", "torch")
    ids = _ids(result)
    assert sum(i.startswith("test_layout[") for i in ids) == len(suite_pages("all"))
    assert [i for i in ids if i.startswith("test_count[")] == ["test_count[ocr2-sam-torch-g1024]"]


def test_vendor_target_without_its_environment_is_left_out_with_the_reason(suite):
    result = suite.runpytest("--collect-only", "-q", "--target", "dsocr", "--mode", "gundam", "--page", "letter")
    ids = _ids(result)
    assert not any(i.startswith("test_count[") for i in ids)
    analytic = [i for i in ids if i.startswith("test_golden_analytic[")]
    assert analytic and all(i.startswith("test_golden_analytic[dsocr-") for i in analytic)
    assert "test_layout[dsocr-gundam-letter]" in ids
    result.stdout.fnmatch_lines(["harness: * case(s) left out, by reason:", "* -- target dsocr *"])


@pytest.mark.parametrize("page_set", ["grid", "corpus", "default"])
def test_page_set(suite, page_set):
    from harness.inputs.selection import suite_pages

    result = suite.runpytest("--collect-only", "-q", "--target", "ocr2", "--mode", "base", "--stage", "sam",
                             "--counter", "torch", "--page-set", page_set)
    layouts = [i for i in _ids(result) if i.startswith("test_layout")]
    assert [i[len("test_layout[ocr2-base-"):-1] for i in layouts] == list(suite_pages(page_set))


def test_bad_page_set_is_a_usage_error(suite):
    result = suite.runpytest("--collect-only", "--page-set", "grids")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --page-set: invalid choice: 'grids'*"])


@pytest.mark.parametrize("args, message", [
    (("--mode", "gundam7"), "--mode 'gundam7': unknown mode. Did you mean 'gundam', 'gundam6'? Available: tiny, *"),
    (("--target", "ocr2", "--stage", "clip"), "--stage 'clip': unknown stage. Available: sam, encoder, *"),
    (("--page", "leter"), "--page 'leter': unknown page (of page set 'all'). Did you mean 'letter'*"),
    (("--counter", "thob"), "--counter 'thob': unknown counter. Did you mean 'thop'? *"),
])
def test_unknown_names_are_usage_errors(suite, args, message):
    result = suite.runpytest("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: " + message.replace("(", "[(]").replace(")", "[)]")])


def test_collect_only_update_on_the_real_goldens_touches_nothing(suite, tmp_path):
    """The whole real suite collected with --update-golden: no golden written or deleted, none
    unused (the committed goldens hold nothing the definition does not expect)."""
    copy = tmp_path / "golden"
    shutil.copytree(REPO / "golden", copy)
    before = _files(copy)
    result = suite.runpytest("--collect-only", "-q", f"--golden-dir={copy}", "--update-golden")
    assert result.ret == pytest.ExitCode.OK
    assert sum(i.startswith("test_layout[") for i in _ids(result)) > 100
    result.stdout.fnmatch_lines(["0 golden file(s) written, 0 unchanged"])
    result.stdout.no_fnmatch_line("*unused golden*")
    assert _files(copy) == before


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != ".harness-golden.lock"}


def test_a_selection_runs_only_the_facts_it_names(suite):
    """A slice is the facts it names: other tests (here a unit test beside the suite) are left out
    with one header line, so a slice costs seconds, not the whole suite."""
    suite.makepyfile(test_unit="def test_unit():\n    pass\n")
    result = suite.runpytest("--collect-only", "-q", "--target", "ocr2", "--mode", "base", "--page", "letter",
                             "--stage", "projector", "--counter", "torch")
    assert _ids(result) == ["test_layout[ocr2-base-letter]", "test_count[ocr2-projector-torch-g1024]"]
    assert not any(line.startswith("test_unit.py::") for line in result.outlines)
    result.stdout.fnmatch_lines(["*-- not a fact of the selection: *"])
    plain = suite.runpytest("--collect-only", "-q", "test_unit.py")
    assert "test_unit.py::test_unit" in plain.outlines
