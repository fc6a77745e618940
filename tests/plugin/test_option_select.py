"""--target, --mode, --page, --page-set, --stage, --counter: they narrow the real suite's cases.

Collect-only runs of a copy of tests/test_suite.py: no model is built, nothing is measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "test_suite.py"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["harness.plugin"]\n')
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest -p no:benchmark -p no:anyio\n")
    # another basename: the outer run may already have imported a module called test_suite
    pytester.makepyfile(test_selected_suite=SUITE.read_text())
    return pytester


def _ids(result: pytest.RunResult) -> list[str]:
    return [line.split("::", 1)[1] for line in result.outlines if line.startswith("test_selected_suite.py::")]


def test_selection_narrows_to_readable_ids(suite):
    result = suite.runpytest("--collect-only", "-q", "--target", "ocr2", "--mode", "base",
                             "--page", "letter", "--counter", "torch,thop", "--stage", "sam", "--stage", "prefill")
    ids = [i for i in _ids(result) if i.startswith("test_stage")]
    assert ids == [
        "test_stage[ocr2-base-letter-sam-torch]", "test_stage[ocr2-base-letter-sam-thop]",
        "test_stage[ocr2-base-letter-prefill-torch]", "test_stage[ocr2-base-letter-prefill-thop]",
    ]


def test_vendor_golden_check_is_collected_for_dsocr_torch_only(suite):
    result = suite.runpytest("--collect-only", "-q", "--target", "dsocr", "--mode", "gundam", "--page", "letter")
    ids = _ids(result)
    assert "test_vendor_golden[dsocr-gundam-letter-sam-torch]" in ids
    assert not any(i.startswith("test_vendor_golden") and not i.endswith("-torch]") for i in ids)
    assert sum(i.startswith("test_stage[") for i in ids) == 5 * 3


@pytest.mark.parametrize("page_set", ["grid", "corpus", "default"])
def test_page_set(suite, page_set):
    from harness.suite import suite_pages

    result = suite.runpytest("--collect-only", "-q", "--target", "ocr2", "--mode", "base",
                             "--stage", "sam", "--counter", "torch", "--page-set", page_set)
    ids = [i for i in _ids(result) if i.startswith("test_stage")]
    assert [i[len("test_stage[ocr2-base-"):-len("-sam-torch]")] for i in ids] == list(suite_pages(page_set))


def test_bad_page_set_is_a_usage_error(suite):
    result = suite.runpytest("--collect-only", "--page-set", "grids")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --page-set: invalid choice: 'grids'*"])


@pytest.mark.parametrize("args, message", [
    (("--mode", "gundam7"), "Unknown mode 'gundam7'. Did you mean: 'gundam'*"),
    (("--target", "ocr2", "--stage", "clip"), "Unknown stage 'clip'.*"),
    (("--page", "leter"), "Unknown page (in page set 'all') 'leter'. Did you mean: 'letter'*"),
])
def test_unknown_names_are_usage_errors(suite, args, message):
    result = suite.runpytest("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: " + message.replace("(", "[(]").replace(")", "[)]")])
