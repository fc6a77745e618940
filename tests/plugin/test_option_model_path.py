"""The vendor target's inputs (--model-path, --trust-remote-code, the vendor environment): vendor
tests that cannot run here are left out with the reason; an explicit vendor request that cannot
be met is one usage error at start, never a green run of skips."""

from __future__ import annotations

import importlib.metadata as md

import pytest
from conftest import PROJECT_CONFTEST

VENDOR_TESTS = '''
import pytest

@pytest.mark.vendor
def test_vendor(model_path):
    pass

def test_plain():
    pass
'''

VENDOR_ENV = md.version("transformers") == "4.46.3"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(PROJECT_CONFTEST)
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest -p no:benchmark -p no:anyio\n")
    (pytester.path / "definition.json").write_text('{"target": "fake", "modes": {}, "counts": {}}')
    pytester.makepyfile(VENDOR_TESTS)
    return pytester


def test_vendor_tests_are_left_out_with_the_reason(project):
    result = project.runpytest()
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["harness: 1 case(s) left out, by reason:", "      1 -- target dsocr *"])
    result.stdout.no_fnmatch_line("*skipped*")


def test_asking_for_vendor_tests_that_cannot_run_is_a_usage_error(project):
    result = project.runpytest("-m", "vendor")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *target dsocr *"])
    result.stdout.no_fnmatch_line("*passed*")


@pytest.mark.skipif(VENDOR_ENV, reason="the main environment's check (transformers 5)")
def test_model_path_in_the_main_environment_is_a_usage_error(project, tmp_path):
    # --model-path=DIR, one word: the plugin's options are the project's (its conftest), and pytest
    # reads a separate word that names a directory outside the project as a test path
    result = project.runpytest(f"--model-path={tmp_path}", "--trust-remote-code")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: target dsocr (the vendor DeepSeek-OCR remote code) needs "
                                 "transformers==4.46.3; this Python has *. Run it in the vendor environment*"])
    result.stdout.no_fnmatch_line("*passed*")
